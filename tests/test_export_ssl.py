"""Exports of systems that read a stand-in speech encoder carry it (topic_id.serving.bundled).

``audio_only`` on ``features: ssl`` and the Wav2vec2 row train one epoch on the tiny corpus from a
private copy of the stand-in wav2vec2, are exported, and the copy (and the feature cache) deleted:
the export still loads, computes the features from the waveform, and gives the run's posteriors.
"""

import csv
import json
import shutil

import pytest
import torch

from data_prep.prepared import read_manifest
from topic_id.serving.bundled import SSL_ENCODER_DIR
from topic_id.serving.export import export_run
from topic_id.serving.inference import TopicIdentifier

pytestmark = [pytest.mark.training, pytest.mark.usefixtures("one_thread")]

N_FILES = 4  # test recordings compared, each alone (no padding)


def _trained_on_a_copy(tiny_corpus, train, tmp_path, hparams, *args):
    """Train ``hparams`` on a copy of the stand-in wav2vec2, export it, then delete the copy."""
    source = tmp_path / "w2v"
    shutil.copytree(tiny_corpus / "standin_wav2vec2", source)
    run = train(hparams, tiny_corpus, tmp_path / "run", f"--ssl_source={source}", "--number_of_epochs=1", *args)
    export = export_run(run, tmp_path / "export")
    shutil.rmtree(source)
    return run, export


def _assert_reproduces(model, run, corpus):
    with open(run / "predictions.csv", encoding="utf-8", newline="") as f:
        reference = list(csv.DictReader(f))[:N_FILES]
    rows = {r["ID"]: r for r in read_manifest(corpus / "test.csv")}
    for expected in reference:
        posteriors, _, labels = model.classify_file(rows[expected["ID"]]["wav"].replace("$data_root", str(corpus)))
        assert labels == [expected["predicted"]]
        torch.testing.assert_close(posteriors[0], torch.tensor([float(expected[f"p_{k}"]) for k in model.labels]),
                                   atol=1e-4, rtol=0)


def test_ssl_features_export_carries_its_standin_encoder(tiny_corpus, train, tmp_path, monkeypatch):
    cache = tmp_path / "ssl_cache"
    run, export = _trained_on_a_copy(tiny_corpus, train, tmp_path, "hparams/audio_crdnn.yaml",
                                     "--features=ssl", f"--ssl_cache={cache}")
    assert cache.is_dir()
    shutil.rmtree(cache)  # inference reads the waveform, never the training cache
    monkeypatch.chdir(tmp_path)  # paths inside the export are not read relative to the working folder
    model = TopicIdentifier.from_hparams(source=str(export), run_opts={"device": "cpu"})
    assert model.hparams.system["compute_features"].cache_dir is None
    _assert_reproduces(model, run, tiny_corpus)
    info = json.loads((export / "export.json").read_text())
    assert info["ssl_encoder"] == {"source": str(tmp_path / "w2v"), "bundled": True, "standin": True}
    assert (export / SSL_ENCODER_DIR / "STANDIN.json").is_file()
    assert f"{SSL_ENCODER_DIR}/STANDIN.json" in info["files"]
    text = (export / "hyperparams.yaml").read_text()
    assert str(tmp_path) not in text.split("\n", 2)[2] and "ssl_cache: null" in text


def test_wav2vec2_row_export_carries_its_standin_and_loads_moved(tiny_corpus, train, tmp_path, monkeypatch):
    from speechbrain.inference.interfaces import foreign_class

    run, export = _trained_on_a_copy(tiny_corpus, train, tmp_path, "hparams/audio_wav2vec2.yaml",
                                     "--train_hours=0.004")
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(export, moved)
    monkeypatch.chdir(tmp_path)
    model = foreign_class(source=str(moved), pymodule_file="custom_interface.py",
                          classname="TopicIdentifier", run_opts={"device": "cpu"})
    _assert_reproduces(model, run, tiny_corpus)
    assert json.loads((moved / "export.json").read_text())["ssl_encoder"]["bundled"]
