"""Batch prediction: ``topic-id predict --model M DIR_OR_CSV --out preds.csv``.

A folder of 50 tiny-corpus recordings (links, in nested folders, beside files that are not audio)
is classified into a CSV; a run interrupted after a few batches, its last line torn, resumes
without classifying any file twice and ends with every file once and the uninterrupted run's
predictions. The acceptance run (1,000 files, interrupted and resumed) is the ``slow`` test.
"""

import csv
import json
import os

import pytest

from data_prep.prepared import read_manifest
from topic_id import cli
from topic_id.serving import batch_predict
from topic_id.serving.export import export_run

pytestmark = [pytest.mark.training, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(autouse=True)
def _no_progress_bar(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


@pytest.fixture(scope="module")
def export(tiny_corpus, tmp_path_factory, train):
    root = tmp_path_factory.mktemp("batch_predict")
    run = train("hparams/audio_crdnn.yaml", tiny_corpus, root / "run", "--number_of_epochs=1")
    return export_run(run, root / "export")


def _audio_folder(corpus, folder, n):
    """``n`` links to the corpus's recordings in nested folders, and files that are not audio."""
    sources = sorted((corpus / "audio").iterdir())
    for i in range(n):
        src = sources[i % len(sources)]
        dst = folder / f"part{i % 3}" / f"sub{i % 2}" / f"{i:04d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dst)
    (folder / "README.txt").write_text("not audio\n")
    (folder / "part0" / "scores.csv").write_text("a,b\n")
    return folder


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _predict(*args):
    return cli.main(["predict", "--device", "cpu", *map(str, args)])


def test_folder_interrupted_torn_and_resumed(export, tiny_corpus, tmp_path, monkeypatch, capsys):
    folder = _audio_folder(tiny_corpus, tmp_path / "audio", 50)
    reference = tmp_path / "reference.csv"
    assert _predict("--model", export, folder, "--out", reference, "--batch-size", 4) == 0
    assert capsys.readouterr().out.strip() == str(reference)
    expected = {r["file"]: r for r in _rows(reference)}
    assert len(expected) == 50 and all(f.startswith(str(folder)) for f in expected)
    summary = json.loads((tmp_path / "reference.summary.json").read_text())
    assert summary["files"] == summary["predicted"] == 50 and summary["complete"] and summary["rtf"] > 0
    assert abs(summary["audio_hours"] * 3600 - sum(float(r["duration"]) for r in expected.values())) < 0.1

    classified = []
    real = batch_predict.classify_signals

    def interrupted_after_three_batches(identifier, files, signals=None, texts=None):
        if len(classified) == 12:
            raise KeyboardInterrupt
        classified.extend(files)
        return real(identifier, files, signals, texts)

    out = tmp_path / "preds.csv"
    monkeypatch.setattr(batch_predict, "classify_signals", interrupted_after_three_batches)
    assert _predict("--model", export, folder, "--out", out, "--batch-size", 4) == 130
    assert len(_rows(out)) == 12
    assert not json.loads((tmp_path / "preds.summary.json").read_text())["complete"]
    # A kill while a row was being written leaves a torn last line.
    text = out.read_text()
    out.write_text(text[: text.rstrip("\n").rfind("\n") + 20])
    classified.clear()
    monkeypatch.setattr(batch_predict, "classify_signals", lambda *a, **k: classified.extend(a[1]) or real(*a, **k))
    assert _predict("--model", export, folder, "--out", out, "--batch-size", 8) == 0
    assert len(classified) == 50 - 11 and len(set(classified)) == len(classified)
    rows = _rows(out)
    assert sorted(r["file"] for r in rows) == sorted(expected)
    for row in rows:
        ref = expected[row["file"]]
        assert row["topic"] == ref["topic"], row["file"]
        for key in ref:
            if key.startswith("p_"):
                assert abs(float(row[key]) - float(ref[key])) < 1e-4
    summary = json.loads((tmp_path / "preds.summary.json").read_text())
    assert (summary["done_before"], summary["predicted"], summary["complete"]) == (11, 39, True)
    # Done is done: a third run classifies nothing.
    classified.clear()
    assert _predict("--model", export, folder, "--out", out) == 0
    assert classified == [] and len(_rows(out)) == 50


def test_manifest_with_data_root_and_an_unreadable_file(export, tiny_corpus, tmp_path, capsys):
    test = read_manifest(tiny_corpus / "test.csv", as_written=True)
    manifest = tmp_path / "corpus" / "test.csv"
    manifest.parent.mkdir()
    (tmp_path / "corpus" / "audio").symlink_to(tiny_corpus / "audio")
    (tmp_path / "corpus" / "broken.wav").write_text("not audio")
    with open(manifest, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ["ID", "wav"])
        writer.writeheader()
        writer.writerows([{"ID": r["ID"], "wav": r["wav"]} for r in test] + [{"ID": "x", "wav": "$data_root/broken.wav"}])
    out = tmp_path / "preds.csv"
    assert _predict("--model", export, manifest, "--out", out) == 0
    rows = _rows(out)
    assert [r["file"] for r in rows] == [r["wav"].replace("$data_root", str(manifest.parent)) for r in test]
    summary = json.loads((tmp_path / "preds.summary.json").read_text())
    assert summary["predicted"] == len(test) and not summary["complete"]
    assert summary["skipped"][0]["file"].endswith("broken.wav") and "not an audio file" in summary["skipped"][0]["reason"]


@pytest.mark.parametrize("case", ["folder without --out", "manifest without wav", "other model's CSV",
                                  "--text with --out", "missing source"])
def test_user_errors_are_one_line_and_exit_2(case, export, tiny_corpus, tmp_path, capsys):
    (tmp_path / "m.csv").write_text("ID,path\n1,a.wav\n")
    (tmp_path / "old.csv").write_text("file,topic,p_a\nx.wav,a,1.0\n")
    args = {
        "folder without --out": ([tiny_corpus / "audio"], "is a folder: give --out"),
        "manifest without wav": ([tmp_path / "m.csv", "--out", tmp_path / "p.csv"], "has no wav column"),
        "other model's CSV": ([tiny_corpus / "audio", "--out", tmp_path / "old.csv"], "holds other columns"),
        "--text with --out": ([tiny_corpus / "audio", "--text", "x", "--out", tmp_path / "p.csv"], "leave out --text"),
        "missing source": ([tmp_path / "nowhere", "--out", tmp_path / "p.csv"], "does not exist"),
    }[case]
    assert _predict("--model", export, *args[0]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert out == "" and len(lines) == 1 and args[1] in lines[0], err


@pytest.mark.slow
def test_a_thousand_files_interrupted_and_resumed(export, tiny_corpus, tmp_path, monkeypatch, capsys):
    """The acceptance run: 1,000 files, interrupted after 40 batches of 8, resumed (numbers: the
    summary line topic_id.serving.batch_predict logs, e.g. with ``--log-cli-level=INFO``)."""
    folder = _audio_folder(tiny_corpus, tmp_path / "audio", 1000)
    out = tmp_path / "preds.csv"
    real = batch_predict.classify_signals
    calls = []

    def interrupted(identifier, files, signals=None, texts=None):
        if len(calls) == 40:
            raise KeyboardInterrupt
        calls.append(len(files))
        return real(identifier, files, signals, texts)

    monkeypatch.setattr(batch_predict, "classify_signals", interrupted)
    assert _predict("--model", export, folder, "--out", out) == 130
    monkeypatch.setattr(batch_predict, "classify_signals", real)
    assert _predict("--model", export, folder, "--out", out) == 0
    rows = _rows(out)
    summary = json.loads((tmp_path / "preds.summary.json").read_text())
    assert len(rows) == len({r["file"] for r in rows}) == 1000
    assert summary["done_before"] == 320 and summary["predicted"] == 680 and summary["complete"]
