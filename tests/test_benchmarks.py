"""The CPU benchmark sections run end to end (``python -m benchmarks``), on the tiny corpus.

A smoke test: the figures themselves are machine-dependent and are read from the printed table,
never asserted (speed goals are not test assertions).
"""

import logging
import math

import pytest

from benchmarks import common, cpu, loader


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch):
    """The sections quiet library logging for their table (benchmarks.common.quiet_logs): process-wide
    settings that later tests' log captures rely on, so they are put back."""
    monkeypatch.setenv("TQDM_DISABLE", "1")
    levels = {name: logging.getLogger(name).level for name in common.QUIET_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _check(rows, n):
    assert len(rows) == n
    for row in rows:
        assert row.value and row.measurement and row.baseline
        assert row.ratio is None or (math.isfinite(row.ratio) and row.ratio > 0)


def test_text_cache_section(tiny_corpus, tmp_path):
    rows = cpu.text_cache(tiny_corpus, tmp_path, tiny_corpus / "standin_bert", "tiny stand-in", 1,
                          ("batch", "utterance"), whole_run=True)
    _check(rows, 3)
    assert "cached vs" in rows[0].value and rows[0].goal == "≥ 20×"


def test_data_pipeline_section(tiny_corpus, tmp_path):
    rows = cpu.pipeline_overhead(tiny_corpus, tmp_path, 1, workers=(0,))
    _check(rows, 3)
    assert "audio decoded every epoch" in rows[0].measurement
    assert "items from memory" in rows[1].measurement and "items from memory" in rows[2].measurement


def test_loader_section(tiny_corpus, tmp_path):
    rows = loader.run(tiny_corpus, tmp_path, 300.0, workers=(0, 1), repeats=1)
    _check(rows, 3 + len(loader.ASSUMED_STEP_SECONDS))  # without CUDA: the assumed step times
    assert [r.measurement.rsplit("=", 1)[1] for r in rows[:2]] == ["0", "1"]
    assert "per worker CPU s" in rows[2].value
    assert all("ESTIMATE" in r.measurement and "worker" in r.value for r in rows[3:])
    assert "16 kHz FLAC" in rows[0].measurement and (tmp_path / "lp_format" / "audio").is_dir()


def test_batching_section(tiny_corpus, tmp_path):
    rows = cpu.batching(tiny_corpus, tmp_path, 1)
    _check(rows, 3)
    assert rows[2].met  # the simulated LP-like durations: padding ≤ 10 % at the paper profile


@pytest.mark.training
def test_inference_section(tiny_corpus, tmp_path):
    rows = cpu.inference_rtf(tiny_corpus, tmp_path, 2, paper_sizes=False, long_seconds=20.0)
    audio = [name for name, _, reads_text in cpu.PREDICT_SYSTEMS if not reads_text]
    _check(rows, len(cpu.PREDICT_SYSTEMS) + len(audio) + 1)
    long = [r for r in rows if "on one 20 s recording" in r.measurement]
    assert len(long) == len(audio) and all("forward" in r.value for r in long)
    assert "ASR transcription" in rows[-1].measurement and "upper bound" in rows[-1].measurement
