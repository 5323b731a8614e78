"""The standalone ASR: repetition filter, full-size parameter count, a tiny training run on the
built-in corpus, and the transcription stage (every row filled, atomic, idempotent)."""

import csv
import json
import os

import pytest
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from data_prep.manifest import write_csv

from data_prep.prepared import read_manifest
from topic_id.training import transcription
from topic_id.training.asr_tokenizer import filter_repetitions
from conftest import ROOT

FULL_SIZE_PARAMS = 25_000_298
"""Parameters of hparams/asr.yaml at its (the paper's) sizes, 1000 units, as SpeechBrain 1.1.2 builds
them: CRDNN 20,752,832 + embedding 128,000 + decoder 3,093,466 + ctc_lin 513,000 + seq_lin 513,000.
Exactly the count of the published SB 0.5.11 configuration (docs/published_recipes.md): the layers
involved (Conv2d, LayerNorm, LSTM, BatchNorm1d, GRUCell, location attention, Linear) kept their
parameter shapes between the two versions."""


@pytest.mark.parametrize(
    "words, expected",
    [
        ("mä meen kotiin", "mä meen kotiin"),
        ("no no no", "no no no"),  # a word may repeat 3 times
        ("no no no no no joo", "no no no joo"),
        ("mä meen mä meen kotiin", "mä meen kotiin"),  # a bigram at most once (3 // 2)
        ("a b c a b c a b c d", "a b c d"),
        ("x a b c d a b c d a b c d", "x a b c d"),  # n > 3: one copy
        ("joo joo ja sit joo joo", "joo joo ja sit joo joo"),  # not back to back
        ("", ""),
    ],
)
def test_filter_repetitions(words, expected):
    assert " ".join(filter_repetitions(words.split())) == expected


def test_filter_repetitions_leaves_no_loop():
    seq = ("ja sit ja sit ja sit " * 5 + "ööö " * 7 + "mä mä mä mä kävin kävin").split()
    out = filter_repetitions(seq)
    for n in range(1, len(out) // 2 + 1):
        keep = max(1, 3 // n)
        for i in range(len(out) - (keep + 1) * n + 1):
            grams = [tuple(out[i + k * n : i + (k + 1) * n]) for k in range(keep + 1)]
            assert len(set(grams)) > 1, (n, out)
    assert out == "ja sit ööö ööö ööö mä mä mä kävin kävin".split()


def test_full_size_parameter_count(tmp_path):
    with open(ROOT / "hparams" / "asr.yaml", encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out")})
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in hparams["modules"].items()}
    assert counts["audio_encoder"] == 20_752_832
    assert sum(counts.values()) == FULL_SIZE_PARAMS
    # Building the model reads no data and trains no tokenizer.
    assert not (tmp_path / "out" / "tokenizer").exists()



@pytest.mark.parametrize("system", ["asr", "multitask"])
def test_beam_search_keys_reach_the_searcher(tmp_path, system):
    """Top-level decoding keys set the test searcher's, the paper's values by default."""
    overrides = {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out")}
    with open(ROOT / "hparams" / f"{system}.yaml", encoding="utf-8") as f:
        paper = load_hyperpyyaml(f, overrides)["beam_search"]
    with open(ROOT / "hparams" / f"{system}.yaml", encoding="utf-8") as f:
        tuned = load_hyperpyyaml(f, {**overrides, "eos_threshold": 2.5, "temperature": 1.5,
                                     "coverage_penalty": 2.0})["beam_search"]
    assert (paper.eos_threshold, paper.temperature, paper.scorer.weights["coverage"]) == (1.3, 1.25, 4.0)
    assert (tuned.eos_threshold, tuned.temperature, tuned.scorer.weights["coverage"]) == (2.5, 1.5, 2.0)

def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def asr_run(tiny_corpus, tmp_path_factory, train):
    """The ASR trained for 2 epochs with the tiny profile's sizes."""
    return train("hparams/asr.yaml", tiny_corpus, tmp_path_factory.mktemp("asr") / "run")


@pytest.mark.training
def test_run_writes_metrics_hypotheses_and_tokenizer(asr_run, tiny_corpus):
    result = json.loads((asr_run / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert set(result[split]) >= {"wer", "cer", "loss"}
        assert result[split]["wer"] >= 0
        hyps = _rows(asr_run / f"hyps_{split}.csv")
        assert [r["ID"] for r in hyps] and set(hyps[0]) == {"ID", "ref", "hyp"}
        assert sorted(r["ID"] for r in hyps) == sorted(r["ID"] for r in _rows(tiny_corpus / f"{split}.csv"))
        # The WER of short and long recordings apart (the tiny corpus has no long one).
        assert (result[split]["rows_short"], result[split]["rows_long"]) == (len(hyps), 0)
        assert result[split]["wer_short"] == result[split]["wer"] and result[split]["wer_long"] is None
    assert result["params"] > 0
    tokenizer = asr_run / "tokenizer"
    assert (tokenizer / "40_unigram.model").is_file()
    # The tokenizer saw the transcribed training rows only.
    transcribed = [r["words"] for r in _rows(tiny_corpus / "train.csv") if r["subset"] == "transcribed"]
    trained_on = (tokenizer / "train_text.txt").read_text(encoding="utf-8").splitlines()
    assert trained_on == transcribed
    assert any(r["subset"] == "untranscribed" for r in _rows(tiny_corpus / "train.csv"))


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in ("train.csv", "dev.csv", "test.csv")}


def _fake_decode(calls, fail_after=None):
    """Stands in for beam search (tested end to end by the command-line test): the manifest logic
    is what these tests are about, and an untrained model decodes to the maximum length."""

    def decode(hparams, wavs, device="cpu", **options):
        calls.append(len(wavs))
        if fail_after is not None and len(calls) > fail_after:
            raise KeyboardInterrupt
        return [f"hyp {w.shape[0]}" for w in wavs]

    return decode


@pytest.mark.training
def test_transcribe_fills_every_row_and_is_idempotent(asr_run, corpus_copy, monkeypatch):
    calls = []
    monkeypatch.setattr(transcription, "decode", _fake_decode(calls))
    monkeypatch.setattr(transcription, "_run_hyps", lambda *args: None)  # reuse: the next test
    before = {split: _rows(corpus_copy / f"{split}.csv") for split in ("train", "dev", "test")}
    done = transcription.transcribe(asr_run, corpus_copy, batch_size=16)
    assert done == {"train.csv": "decoded", "dev.csv": "decoded", "test.csv": "decoded"}
    for split, old in before.items():
        new = _rows(corpus_copy / f"{split}.csv")
        assert [r["ID"] for r in new] == [r["ID"] for r in old]  # every row, same order
        for a, b in zip(old, new):
            assert {k: v for k, v in a.items() if k != "asr_words"} == {
                k: v for k, v in b.items() if k != "asr_words"}
            assert b["asr_words"].startswith("hyp ")
    assert sum(calls) == sum(len(rows) for rows in before.values())
    record = json.loads((corpus_copy / "asr_words.json").read_text())
    assert set(record) == {"train.csv", "dev.csv", "test.csv"}
    assert record["test.csv"]["asr"] == str(asr_run.resolve())
    assert not [p for p in os.listdir(corpus_copy) if p.startswith(".")]  # no temporary left

    filled, n_calls = _snapshot(corpus_copy), len(calls)
    assert set(transcription.transcribe(asr_run, corpus_copy).values()) == {"skipped"}
    assert _snapshot(corpus_copy) == filled and len(calls) == n_calls
    assert set(transcription.transcribe(asr_run, corpus_copy, force=True).values()) == {"decoded"}
    assert len(calls) > n_calls


@pytest.mark.training
def test_transcribe_takes_the_runs_own_dev_test_hypotheses(asr_run, corpus_copy, monkeypatch):
    """dev/test the run decoded at evaluation are not decoded again; other audio or another
    checkpoint is."""
    calls = []
    monkeypatch.setattr(transcription, "decode", _fake_decode(calls))
    assert transcription.transcribe(asr_run, corpus_copy) == {
        "train.csv": "decoded", "dev.csv": "reused", "test.csv": "reused"}
    assert sum(calls) == len(_rows(corpus_copy / "train.csv"))
    for split in ("dev", "test"):
        hyps = {r["ID"]: r["hyp"] for r in _rows(asr_run / f"hyps_{split}.csv")}
        assert {r["ID"]: r["asr_words"] for r in _rows(corpus_copy / f"{split}.csv")} == hyps
    # The same IDs naming other audio: decoded.
    rows = _rows(corpus_copy / "dev.csv")
    rows[0]["wav"], rows[1]["wav"] = rows[1]["wav"], rows[0]["wav"]
    write_csv(corpus_copy / "dev.csv", list(rows[0]), rows)
    assert transcription.transcribe(asr_run, corpus_copy, force=True)["dev.csv"] == "decoded"
    # Hypotheses of another checkpoint: decoded.
    record = json.loads((asr_run / "hyps.json").read_text())
    ckpt = transcription.load_asr(asr_run)[1]
    assert record["checkpoint"] == str(ckpt.resolve())
    assert transcription._run_hyps(asr_run, ckpt.parent, "test", read_manifest(corpus_copy / "test.csv")) is None


@pytest.mark.training
def test_transcribe_interrupted_keeps_manifests_whole(asr_run, corpus_copy, monkeypatch):
    original = _snapshot(corpus_copy)
    n_train = len(_rows(corpus_copy / "train.csv"))
    monkeypatch.setattr(transcription, "_run_hyps", lambda *args: None)
    # Interrupted in the first batch of dev.csv, after train.csv was written.
    monkeypatch.setattr(transcription, "decode", _fake_decode([], fail_after=n_train))
    with pytest.raises(KeyboardInterrupt):
        transcription.transcribe(asr_run, corpus_copy, batch_size=1)
    now = _snapshot(corpus_copy)
    assert now["train.csv"] != original["train.csv"]
    assert now["dev.csv"] == original["dev.csv"] and now["test.csv"] == original["test.csv"]
    assert not [p for p in os.listdir(corpus_copy) if p.startswith(".")]
    monkeypatch.setattr(transcription, "decode", _fake_decode([]))
    assert transcription.transcribe(asr_run, corpus_copy) == {
        "train.csv": "skipped", "dev.csv": "decoded", "test.csv": "decoded"}


@pytest.mark.training
def test_transcribe_command_line(asr_run, corpus_copy):
    """Real beam search through the command line, on the first rows of each manifest."""
    import subprocess
    import sys

    from data_prep.manifest import write_csv

    for split in ("train", "dev", "test"):
        rows = _rows(corpus_copy / f"{split}.csv")
        write_csv(corpus_copy / f"{split}.csv", list(rows[0]), rows[:3])
    command = [sys.executable, str(ROOT / "recipes" / "transcribe.py"), "--asr", str(asr_run),
               "--manifests", str(corpus_copy), "--device", "cpu", "--batch_size", "3"]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    assert "train.csv: decoded" in out.stdout
    for split in ("train", "dev", "test"):
        rows = _rows(corpus_copy / f"{split}.csv")
        assert len(rows) == 3 and all("asr_words" in r for r in rows)
    bad = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "transcribe.py"), "--asr", str(corpus_copy),
         "--manifests", str(corpus_copy)],
        capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "error:" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.training
def test_dev_decoding_every_nth_epoch_and_at_the_last(train, tiny_corpus, tmp_path):
    """valid_search_interval: epochs without dev decoding log no WER and are not selected by WER;
    valid_interval: epochs without a dev pass log the training loss only."""
    run = train("hparams/asr.yaml", tiny_corpus, tmp_path / "asr", "--number_of_epochs=4",
                "--valid_search_interval=2", "--valid_interval=3")
    logged = [line for line in (run / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    assert ["valid wer" in line for line in logged] == [False, True, False, True]
    assert ["valid loss" in line for line in logged] == [False, True, True, True]
    assert all("train loss" in line for line in logged)
    best = Checkpointer(run / "save").find_checkpoint(min_key="wer")
    assert best.meta["wer"] >= 0 and "wer" in json.loads((run / "metrics.json").read_text())["test"]
