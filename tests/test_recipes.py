"""One CPU run of every registry row on the tiny built-in corpus (no network), in dependency order.

Rows that read ASR text run on a corpus copy transcribed by the registry's own ASR row, as
recipes/run_table.sh does.
"""

import json
import shutil
import subprocess
import sys

import pytest

from data_prep.manifest import read_manifest
from topic_id.registry import load_registry
from conftest import ROOT

ROWS = load_registry()
EXPECTED = ("hyperparams.yaml", "log.txt", "env.log", "metrics.json", "topics.txt")


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory, train):
    """Train every row once, in registry order; returns {name: (run dir, corpus)}."""
    root = tmp_path_factory.mktemp("runs")
    transcribed = None
    out = {}
    for row in ROWS:
        corpus = tiny_corpus
        if row["needs"] == "asr_words":
            if transcribed is None:
                transcribed = root / "transcribed_corpus"
                shutil.copytree(tiny_corpus, transcribed, ignore=shutil.ignore_patterns("audio", "cache"))
                (transcribed / "audio").symlink_to(tiny_corpus / "audio")
                subprocess.run(
                    [sys.executable, str(ROOT / "recipes" / "transcribe.py"), "--asr", str(out["asr"][0]),
                     "--manifests", str(transcribed), "--device", "cpu"],
                    check=True,
                )
            corpus = transcribed
        args = list(row["overrides"])
        if row["init_from"]:
            args.append(f"--init_from={out[row['init_from']][0]}")
        out[row["name"]] = (train(row["hparams"], corpus, root / row["name"], *args), corpus)
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_row_trains_and_writes_its_outputs(row, runs):
    run_dir, corpus = runs[row["name"]]
    for name in EXPECTED:
        assert (run_dir / name).is_file(), name
    result = json.loads((run_dir / "metrics.json").read_text())
    assert set(result) >= {"dev", "test", "params"}
    assert result["params"] > 0
    if row["name"] == "asr":
        assert 0 <= result["test"]["wer"]
        return
    n_test = len(read_manifest(corpus / "test.csv"))
    predictions = (run_dir / "predictions.csv").read_text().splitlines()
    assert len(predictions) == n_test + 1
    assert (run_dir / "confusion.png").stat().st_size > 0
    for split in ("dev", "test"):
        stats = result[split]
        assert 0.0 <= stats["micro_f1"] <= 1.0 and 0.0 <= stats["uar"] <= 1.0
        assert sum(map(sum, stats["confusion"])) == len(read_manifest(corpus / f"{split}.csv"))

