"""Export and inference: tiny runs -> ``topic-id export`` -> TopicIdentifier.

An export must reproduce its run's ``predictions.csv``, load with SpeechBrain's ``foreign_class``,
work after being moved, and ``topic-id predict`` must take any rate and channel count and turn bad
input into one line and a non-zero exit. CPU, offline, on the tiny built-in corpus.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from speechbrain.utils.data_utils import batch_pad_right

from data_prep.prepared import read_manifest
from topic_id import cli
from topic_id.training.dataio import load_audio
from topic_id.serving.export import export_run
from topic_id.serving.inference import TopicIdentifier
from conftest import ROOT

pytestmark = [pytest.mark.training, pytest.mark.usefixtures("one_thread")]

AUDIO_YAML = next(p for p in ("hparams/audio_crdnn.yaml", "hparams/audio_tdnn.yaml") if (ROOT / p).is_file())
AUDIO_NAME = Path(AUDIO_YAML).name
SYSTEMS = {"audio": AUDIO_YAML, "text": "hparams/text.yaml"}
if (ROOT / "hparams/hybrid_crdnn.yaml").is_file():
    SYSTEMS["hybrid"] = "hparams/hybrid_crdnn.yaml"  # audio + manual text (eval_text=words)


@pytest.fixture(scope="module")
def runs(tiny_corpus, tmp_path_factory, train):
    root = tmp_path_factory.mktemp("inference_runs")
    # One epoch is enough to have a best checkpoint; the override also travels into the export.
    return {name: train(path, tiny_corpus, root / name, "--number_of_epochs=1")
            for name, path in SYSTEMS.items()}


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    return {name: export_run(run, root / name) for name, run in runs.items()}


def _predictions(run):
    with open(run / "predictions.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _test_rows(corpus):
    return {r["ID"]: r for r in read_manifest(corpus / "test.csv")}


def _wav(row, corpus):
    return row["wav"].replace("$data_root", str(corpus))


def _classify_test_set(model, corpus, ids):
    """Posteriors and labels of the test utterances ``ids``, all in one padded batch."""
    rows = _test_rows(corpus)
    wavs = lens = texts = None
    if model.uses_audio:
        wavs, lens = batch_pad_right([model.load_audio(_wav(rows[i], corpus)) for i in ids])
    if model.uses_text:
        texts = [rows[i]["words"] for i in ids]
    posteriors, index, labels = model.classify_batch(wavs, lens, texts)
    assert index.tolist() == posteriors.argmax(-1).tolist()
    return posteriors, labels


def _assert_reproduces(model, run, corpus):
    reference = _predictions(run)
    posteriors, labels = _classify_test_set(model, corpus, [r["ID"] for r in reference])
    expected = torch.tensor([[float(r[f"p_{label}"]) for label in model.labels] for r in reference])
    assert labels == [r["predicted"] for r in reference]
    torch.testing.assert_close(posteriors, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_export_reproduces_the_runs_predictions(system, runs, exports, tiny_corpus):
    model = TopicIdentifier.from_hparams(source=str(exports[system]), run_opts={"device": "cpu"})
    assert model.labels == (runs[system] / "topics.txt").read_text().split("\n")[:-1]
    # The whole test set in one padded batch (training evaluated other batches): pooling and the
    # encoders ignore padding, so the posteriors are the run's.
    _assert_reproduces(model, runs[system], tiny_corpus)
    first = _predictions(runs[system])[0]
    row = _test_rows(tiny_corpus)[first["ID"]]
    posteriors, _, labels = model.classify_file(_wav(row, tiny_corpus) if model.uses_audio else None,
                                                text=row["words"] if model.uses_text else None)
    assert labels == [first["predicted"]]
    assert abs(posteriors[0, model.labels.index(first["predicted"])].item()
               - float(first[f"p_{first['predicted']}"])) < 1e-4


def test_export_holds_weights_labels_and_the_text_encoder_only(runs, exports):
    audio, text = exports["audio"], exports["text"]
    info = json.loads((audio / "export.json").read_text())
    assert info["inputs"] == "audio" and info["asr"] is None and info["text_encoder"] is None
    assert (audio / "normalize.ckpt").is_file() and (audio / "head.ckpt").is_file()
    for name in ("optimizer", "counter", "lr_annealing"):
        assert not list(audio.glob(f"{name}*.ckpt")), name
    assert (audio / AUDIO_NAME).read_text() == (ROOT / AUDIO_YAML).read_text()
    assert (audio / "modules" / "features.yaml").is_file()
    assert f"system: !include:{AUDIO_NAME}" in (audio / "hyperparams.yaml").read_text()
    assert (audio / "topics.txt").read_text() == (runs["audio"] / "topics.txt").read_text()
    # A stand-in text encoder travels with the model; no ASR transcribed this corpus.
    info = json.loads((text / "export.json").read_text())
    assert info["inputs"] == "text" and info["text_encoder"]["bundled"] and info["asr"] is None
    assert (text / "text_encoder" / "STANDIN.json").is_file()
    assert "text_encoder_source: text_encoder" in (text / "hyperparams.yaml").read_text()
    assert str(runs["text"]) not in (text / "hyperparams.yaml").read_text().split("\n", 2)[2]


def test_foreign_class_loads_a_moved_export(runs, exports, tiny_corpus, tmp_path, monkeypatch):
    from speechbrain.inference.interfaces import foreign_class

    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(exports["text"], tmp_path / "copy")
    shutil.move(tmp_path / "copy", moved)
    monkeypatch.chdir(tmp_path)
    model = foreign_class(source=str(moved), pymodule_file="custom_interface.py",
                          classname="TopicIdentifier", run_opts={"device": "cpu"})
    assert type(model).__name__ == "TopicIdentifier"
    assert model.text_encoder.source == str(moved / "text_encoder")
    _assert_reproduces(model, runs["text"], tiny_corpus)


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_predict_on_the_test_files_reproduces_predictions_csv(system, runs, exports, tiny_corpus, capsys):
    """An export reproduces its run: export -> `topic-id predict` on the test files -> the run's predictions."""
    reference = _predictions(runs[system])
    rows = _test_rows(tiny_corpus)
    model = json.loads((exports[system] / "export.json").read_text())
    files = [_wav(rows[r["ID"]], tiny_corpus) for r in reference] if "audio" in model["inputs"] else []
    texts = [a for r in reference for a in ("--text", rows[r["ID"]]["words"])] if "text" in model["inputs"] else []
    assert cli.main(["predict", "--model", str(exports[system]), "--json", "--device", "cpu", *files, *texts]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["topic"] for r in results] == [r["predicted"] for r in reference]
    for result, expected in zip(results, reference):
        for label, p in result["posteriors"].items():
            assert abs(p - float(expected[f"p_{label}"])) < 1e-4


def test_predict_takes_stereo_44k_audio_and_run_folders(runs, exports, tiny_corpus, tmp_path, capsys):
    first = _predictions(runs["audio"])[0]
    row = _test_rows(tiny_corpus)[first["ID"]]
    frames = load_audio(_wav(row, tiny_corpus), 44100).numpy()
    stereo = tmp_path / "stereo_44k.wav"
    soundfile.write(stereo, np.stack([frames, 0.5 * frames], axis=1), 44100)
    assert soundfile.info(str(stereo)).channels == 2
    assert cli.main(["predict", "--model", str(exports["audio"]), str(stereo), "--json",
                     "--device", "cpu"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["file"] == str(stereo) and result["topic"] in result["posteriors"]
    assert abs(sum(result["posteriors"].values()) - 1) < 1e-4
    # A run folder works as well (exported on the fly) and gives the run's own prediction.
    assert cli.main(["predict", "--model", str(runs["audio"]), _wav(row, tiny_corpus), "--device", "cpu"]) == 0
    header, line = capsys.readouterr().out.strip().split("\n")
    cells = dict(zip(header.split("\t"), line.split("\t")))
    assert cells["topic"] == first["predicted"]
    assert abs(float(cells[f"p({first['predicted']})"]) - float(first[f"p_{first['predicted']}"])) < 1e-3
    # A text system classifies text alone.
    assert cli.main(["predict", "--model", str(exports["text"]), "--text", row["words"], "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().split("\n")[1].split("\t")[1] == \
        _predictions(runs["text"])[0]["predicted"]


def _bad_inputs(tmp_path, exports):
    (tmp_path / "notes.wav").write_text("not audio at all")
    soundfile.write(tmp_path / "empty.wav", np.zeros((0, 1), dtype="float32"), 16000)
    broken = tmp_path / "broken_model"
    shutil.copytree(exports["audio"], broken)
    (broken / "head.ckpt").unlink()
    return {
        "missing file": ([str(tmp_path / "nope.wav")], exports["audio"], "nope.wav: no such file"),
        "non-audio file": ([str(tmp_path / "notes.wav")], exports["audio"], "not an audio file"),
        "empty audio": ([str(tmp_path / "empty.wav")], exports["audio"], "holds no audio"),
        "model folder missing a file": (None, broken, "missing head.ckpt"),
        "no model folder": (None, tmp_path / "no_model", "does not exist"),
        "text model without ASR given audio": (None, exports["text"], "no ASR"),
    }


CASES = ["missing file", "non-audio file", "empty audio", "model folder missing a file",
         "no model folder", "text model without ASR given audio"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_a_nonzero_exit(case, exports, tiny_corpus, tmp_path, capsys):
    cases = _bad_inputs(tmp_path, exports)
    files, model, expected = cases[case]
    if files is None:
        files = [_wav(next(iter(_test_rows(tiny_corpus).values())), tiny_corpus)]
    status = cli.main(["predict", "--model", str(model), *files, "--device", "cpu"])
    out, err = capsys.readouterr()
    assert status != 0 and out == ""
    lines = [line for line in err.splitlines() if not line.startswith(("INFO ", "WARNING "))]
    assert len(lines) == 1 and lines[0].startswith("topic-id predict: error: "), err
    assert expected in lines[0] and "Traceback" not in err


def test_console_script_reports_bad_input_without_traceback(exports, tmp_path):
    done = subprocess.run([sys.executable, "-m", "topic_id.cli", "predict", "--model", str(exports["audio"]),
                           str(tmp_path / "missing.flac")], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"topic-id predict: error: {tmp_path / 'missing.flac'}: no such file"


def test_text_system_classifies_audio_through_the_asr_it_was_trained_with(tiny_corpus, train, tmp_path_factory):
    """The text pipeline row (ASR text everywhere) exported with the ASR that transcribed its corpus."""
    root = tmp_path_factory.mktemp("asr_text")
    asr = train("hparams/asr.yaml", tiny_corpus, root / "asr")
    corpus = root / "corpus"
    shutil.copytree(tiny_corpus, corpus, ignore=shutil.ignore_patterns("audio", "cache"))
    (corpus / "audio").symlink_to(tiny_corpus / "audio")
    subprocess.run([sys.executable, str(ROOT / "recipes" / "transcribe.py"), "--asr", str(asr),
                    "--manifests", str(corpus), "--device", "cpu"], check=True)
    run = train("hparams/text.yaml", corpus, root / "text_pipeline", "--train_subset=all",
                "--train_text=asr_words", "--eval_text=asr_words")
    export = export_run(run, root / "export")
    info = json.loads((export / "export.json").read_text())
    assert info["asr"]["run"] == str(asr.resolve()) and info["inputs"] == "text"
    model = TopicIdentifier.from_hparams(source=str(export), run_opts={"device": "cpu"})
    # transcribe.py decodes the training rows itself, the shortest 8 first: the same batch gives
    # the same hypotheses (an untrained ASR stops only at the length cap, which SpeechBrain sets
    # per batch). Dev and test take the ASR run's own hypotheses, decoded in its test batches.
    batch = sorted(read_manifest(corpus / "train.csv"), key=lambda r: float(r["duration"]))[:8]
    wavs, lens = batch_pad_right([model.load_audio(_wav(r, corpus)) for r in batch])
    assert model.transcribe_batch(wavs, lens) == [r["asr_words"] for r in batch]
    from_audio, _, _ = model.classify_batch(wavs, lens)
    from_text, _, _ = model.classify_batch(texts=[r["asr_words"] for r in batch])
    torch.testing.assert_close(from_audio, from_text)
    test = read_manifest(corpus / "test.csv")
    from_test_text, _, labels = model.classify_batch(texts=[r["asr_words"] for r in test])
    reference = {r["ID"]: r for r in _predictions(run)}
    expected = torch.tensor([[float(reference[r["ID"]][f"p_{label}"]) for label in model.labels] for r in test])
    torch.testing.assert_close(from_test_text, expected, atol=1e-4, rtol=0)
    assert labels == [reference[r["ID"]]["predicted"] for r in test]
    # Batch mode (topic-id predict DIR --out) with a text system: each row carries the transcript
    # it was classified from, and the posteriors are those of that transcript.
    folder = root / "batch"
    folder.mkdir()
    for r in batch:
        (folder / Path(_wav(r, corpus)).name).symlink_to(_wav(r, corpus))
    out = root / "preds.csv"
    assert cli.main(["predict", "--device", "cpu", "--model", str(export), str(folder), "--out", str(out)]) == 0
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(Path(r["file"]).name for r in rows) == sorted(p.name for p in folder.iterdir())
    posteriors, _, predicted = model.classify_batch(texts=[r["text"] for r in rows])
    expected = torch.tensor([[float(r[f"p_{label}"]) for label in model.labels] for r in rows])
    torch.testing.assert_close(posteriors, expected, atol=1e-4, rtol=0)
    assert predicted == [r["topic"] for r in rows]
