"""topic_id.models.bow: the bag-of-words baseline rows (bow_man, bow_asr) and their outputs."""

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest

from data_prep import demo_corpus
from data_prep.text_norm import normalize_transcript
from topic_id import cli
from corpus_tools.text_classifier import build_model, fit_model
from topic_id.models.bow import posteriors
from topic_id.config.registry import load_registry
from topic_id.reporting.report import write_report
from conftest import REGISTRY

TOY = {"animals": ["kissa koira", "koira hevonen", "kissa lehmä", "hevonen lehmä koira"],
       "sports": ["pallo maali", "maali juoksu", "juoksu pallo", "pallo hiihto"],
       "media": ["uutiset lehti", "lehti radio", "radio uutiset", "uutiset televisio"]}
LABELS = ["media", "animals", "summer", "sports"]  # not sorted, and one topic never seen
BOW = {row["name"]: row for row in load_registry(REGISTRY) if row["hparams"] == "hparams/bow.yaml"}


def _toy():
    texts = [t for topic in TOY for t in TOY[topic]]
    return texts, [topic for topic in TOY for _ in TOY[topic]]


@pytest.mark.parametrize("vectorizer", ["counts", "tfidf"])
def test_learns_a_separable_set_in_label_order(vectorizer):
    texts, topics = _toy()
    model = fit_model(texts, topics, vectorizer=vectorizer, ngram_range=[1, 2], C=10.0)
    probs = posteriors(model, ["koira kissa", "maali pallo", "radio", ""], LABELS)
    assert probs.shape == (4, len(LABELS))
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert [LABELS[i] for i in probs[:3].argmax(axis=1)] == ["animals", "sports", "media"]
    assert (probs[:, LABELS.index("summer")] == 0).all()


def test_bad_options_and_inputs_say_what_is_wrong():
    with pytest.raises(ValueError, match="vectorizer must be one of"):
        build_model("word2vec")
    with pytest.raises(ValueError, match="at least two topics"):
        fit_model(["kissa", "koira"], ["animals", "animals"])
    with pytest.raises(ValueError, match="hold no word"):
        fit_model(["a", "b"], ["animals", "sports"])
    model = fit_model(*_toy())
    with pytest.raises(ValueError, match="label list"):
        posteriors(model, ["kissa"], ["animals", "sports"])


def test_fails_on_shuffled_labels():
    """On the default demo text (no synthesis), real topics are learnt and shuffled ones are not."""
    plans = demo_corpus._plan_demo(0, "default")
    data = {split: [(normalize_transcript(p["text"]), p["topic"]) for p in plans
                    if p["split"] == split and p["subset"] != "untranscribed"] for split in ("train", "test")}
    texts, topics = zip(*data["train"])
    shuffled = list(topics)
    random.Random(0).shuffle(shuffled)

    def test_accuracy(train_topics):
        model = fit_model(texts, train_topics)
        return np.mean(model.predict([t for t, _ in data["test"]]) == np.array([y for _, y in data["test"]]))

    assert test_accuracy(topics) > 0.75
    assert test_accuracy(shuffled) < 0.35


@pytest.mark.training
def test_manual_text_row_writes_every_output(tiny_corpus, registry_runs):
    run_dir, _ = registry_runs("bow_man")
    text_dir, _ = registry_runs("text_man")
    result = json.loads((run_dir / "metrics.json").read_text())
    reference = json.loads((text_dir / "metrics.json").read_text())
    assert set(result) >= set(reference)
    for split in ("dev", "test"):
        assert set(result[split]) == set(reference[split])
    assert result["train"]["micro_f1"] >= 0.9
    assert result["text_encoder"].startswith("bag of words (scikit-learn counts")
    assert result["audio_encoder"] is None and result["params"] % (result["vocabulary"] + 1) == 0
    for name in ("hyperparams.yaml", "run.json", "log.txt", "topics.txt", "confusion.png",
                 "predictions_dev.csv"):
        assert (run_dir / name).is_file(), name
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("p_")) - 1) < 1e-4 for r in rows)
    # The built-in corpus' summary.json scores the same model on the same text.
    summary = json.loads((tiny_corpus / "summary.json").read_text())["bow_logreg"]
    assert result["test"]["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-4)
    assert "micro-F1" in (run_dir / "log.txt").read_text()


@pytest.mark.training
def test_seeds_agree_and_training_rows_without_text_are_left_out(tiny_corpus, train, tmp_path):
    args = BOW["bow_man"]["overrides"]
    first = train("hparams/bow.yaml", tiny_corpus, tmp_path / "1", *args, "--seed=1")
    other = train("hparams/bow.yaml", tiny_corpus, tmp_path / "2", *args, "--seed=2",
                  "--train_subset=all", "--vectorizer=tfidf", "--ngram_range=[1, 2]")
    again = train("hparams/bow.yaml", tiny_corpus, tmp_path / "3", *args, "--seed=3")
    a, b, c = (json.loads((d / "metrics.json").read_text()) for d in (first, other, again))
    assert a["test"] == c["test"]  # deterministic: the seed changes nothing
    assert b["train_rows"] == a["train_rows"]  # untranscribed rows have no manual text
    assert "n-grams 1-2" in b["text_encoder"]
    assert "have no text in 'words' and are left out" in (other / "log.txt").read_text()


@pytest.mark.training
def test_asr_text_without_transcription_is_a_clear_error(tiny_corpus, train, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train("hparams/bow.yaml", tiny_corpus, tmp_path / "run", *BOW["bow_asr"]["overrides"])
    assert stop.value.code == 2 and "run recipes/transcribe.py first" in capsys.readouterr().err


@pytest.mark.training
def test_report_puts_bow_beside_the_text_rows(registry_runs, tmp_path):
    root = tmp_path / "results"
    for name in ("bow_man", "text_man"):
        (root / name).mkdir(parents=True)
        (root / name / "1").symlink_to(registry_runs(name)[0])
    table_md, _ = write_report(root, corpus="lp", registry=REGISTRY)
    lines = {line.split(" | ")[0]: line for line in table_md.splitlines()}
    bow = lines["| BoW man trn (ours)"]
    assert "bag of words (scikit-learn" in bow and bow.rstrip(" |").endswith("— | — | — | — | —")
    order = [line.split(" | ")[0][2:] for line in table_md.splitlines()[2:]]
    assert order.index("text semi-sup") < order.index("BoW man trn (ours)") < order.index("audio BL")
    assert "Rows marked `(ours)`" in (root / "report" / "report.md").read_text()


def _posteriors(rows, labels):
    return np.array([[float(r[f"p_{label}"]) for label in labels] for r in rows])


@pytest.mark.training
def test_exported_bow_row_predicts_text_and_audio_like_the_other_text_systems(registry_runs, tmp_path):
    """bow_asr (ASR text everywhere) exports with the ASR that transcribed its corpus: text and audio
    through `topic-id predict`, batch predict and SpeechBrain's foreign_class, from a moved folder."""
    import shutil

    from speechbrain.inference.interfaces import foreign_class
    from speechbrain.utils.data_utils import batch_pad_right

    from data_prep.prepared import read_manifest
    from topic_id.serving.batch_predict import predict_to_csv
    from topic_id.serving.inference import predict

    run, corpus = registry_runs("bow_asr")
    export = tmp_path / "export"
    assert cli.main(["export", str(run), str(export)]) == 0
    info = json.loads((export / "export.json").read_text())
    assert info["inputs"] == "text" and "bow.ckpt" in info["files"] and info["checkpoint"] is None
    assert info["asr"]["run"] == str(registry_runs("asr")[0].resolve())
    with open(run / "predictions.csv", newline="") as f:
        reference = list(csv.DictReader(f))
    labels = (run / "topics.txt").read_text().split()
    rows = {r["ID"]: r for r in read_manifest(corpus / "test.csv")}
    # `topic-id predict --text ...` (what the CLI calls; SpeechBrain's logs share its stdout here).
    results = predict(export, [], texts=[rows[r["ID"]]["asr_words"] for r in reference], device="cpu")
    assert [r["topic"] for r in results] == [r["predicted"] for r in reference]
    assert np.allclose([[r["posteriors"][label] for label in labels] for r in results],
                       _posteriors(reference, labels), atol=1e-5)

    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(export, moved)
    shutil.rmtree(export)
    model = foreign_class(source=str(moved), pymodule_file="custom_interface.py",
                          classname="TopicIdentifier", run_opts={"device": "cpu"})
    assert model.needs == "text" and model.sample_rate == 16000
    files = [rows[r["ID"]]["wav"] for r in reference[:4]]
    wavs, lens = batch_pad_right([model.load_audio(f) for f in files])
    heard = model.transcribe_batch(wavs, lens)
    from_audio, _, _ = model.classify_batch(wavs, lens)
    from_text, _, _ = model.classify_batch(texts=heard)
    assert np.allclose(from_audio.numpy(), from_text.numpy(), atol=1e-6)
    folder = tmp_path / "audio"
    folder.mkdir()
    for f in files:
        (folder / Path(f).name).symlink_to(f)
    summary = predict_to_csv(model, [folder], tmp_path / "preds.csv", progress=False)
    assert summary["predicted"] == 4 and summary["complete"]
    with open(tmp_path / "preds.csv", newline="") as f:
        batch = list(csv.DictReader(f))
    again, _, topics = model.classify_batch(texts=[r["text"] for r in batch])
    assert topics == [r["topic"] for r in batch]
    assert np.allclose(again.numpy(), _posteriors(batch, labels), atol=1e-5)


@pytest.mark.training
def test_bow_run_folder_classifies_text_and_says_it_has_no_asr_for_audio(registry_runs, capsys):
    run, corpus = registry_runs("bow_man")
    with open(run / "predictions.csv", newline="") as f:
        first = next(csv.DictReader(f))
    from data_prep.prepared import read_manifest
    from topic_id.serving.inference import predict

    row = next(r for r in read_manifest(corpus / "test.csv") if r["ID"] == first["ID"])
    (result,) = predict(run, [], texts=[row["words"]], device="cpu")  # exported on the fly
    assert result["topic"] == first["predicted"]
    capsys.readouterr()
    assert cli.main(["predict", "--model", str(run), row["wav"], "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "no ASR to transcribe audio" in err[-1] and "Traceback" not in "".join(err)
