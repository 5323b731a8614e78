"""``csv`` and ``speak`` read a CSV the same way (data_prep/intake.py, splits.given_splits).

One CSV with audio paths and text serves both commands; they must keep the same rows in the same
splits and drop the same rows for the same reasons. ``speak --language en`` speaks English with
held-out English voices, and the text and audio rows train on what it speaks.
"""

import csv
import json

import numpy as np
import pytest
import soundfile

from data_prep.csv_corpus import prepare_csv_corpus
from data_prep.prepared import read_manifest
from data_prep.speak import ENGLISH_VOICES, speak_csv

ROWS = [  # ID, text, topic, speaker, split
    ("u1", "mä kävin saunassa", "sauna", "anna", "train"),  # anna is also in test: test keeps her
    ("u2", "kesällä oli kuuma", "kesä", "anna", "Test"),
    ("u3", "sauna oli lämmin", "sauna", "ben", "validation"),  # dev, as csv has always read it
    ("u4", "kesä on paras", "kesä", "cid", "train"),
    ("u5", "löylyt oli hyvät", "sauna", "dan", "train"),
    ("u6", "saunan jälkeen uitiin", "sauna", "eve", "eval"),  # test
    ("u7", "kesäloma alkaa", "kesä", "fay", "holdout"),  # not a split
    ("u1", "toinen lause", "kesä", "gus", "train"),  # duplicate ID
]


def _write(tmp_path):
    path = tmp_path / "meta.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "path", "text", "topic", "speaker", "split"])
        for k, (rec_id, text, topic, speaker, split) in enumerate(ROWS):
            audio = tmp_path / f"a{k}.wav"
            soundfile.write(str(audio), np.zeros(4000, np.float32), 16000)
            writer.writerow([rec_id, audio.name, text, topic, speaker, split])
    return path


def _outcome(out):
    kept = {s: sorted((r["ID"], r["topic"], r["speaker"], r["words"])
                      for r in read_manifest(out / f"{s}.csv")) for s in ("train", "dev", "test")}
    with open(out / "dropped.csv", encoding="utf-8") as f:
        dropped = [(d["source"], d["reason"]) for d in csv.DictReader(f)]
    return kept, dropped, (out / "topics.txt").read_text()


def test_csv_and_speak_keep_and_drop_the_same_rows(tmp_path):
    meta = _write(tmp_path)
    prepare_csv_corpus(meta, tmp_path / "csv")
    speak_csv(meta, tmp_path / "speak")
    assert _outcome(tmp_path / "csv") == _outcome(tmp_path / "speak")
    kept, dropped, _ = _outcome(tmp_path / "csv")
    assert {s: [r[0] for r in rows] for s, rows in kept.items()} == {
        "train": ["u4", "u5"], "dev": ["u3"], "test": ["u2", "u6"]}
    reasons = dict(dropped)
    assert "speaker 'anna' is given in train and in test" in reasons[f"{meta}:2"]
    assert "invalid split 'holdout'" in reasons[f"{meta}:8"]
    assert "duplicate ID 'u1'" in reasons[f"{meta}:9"]
    assert len(dropped) == 3


ENGLISH = {"alarm": ["Wake me up at 7 o'clock", "Set an alarm for six thirty", "Cancel my morning alarm",
                     "Remind me at noon to call mom", "Snooze the alarm for ten minutes", "Don't wake me before eight"],
           "weather": ["Is it going to rain today?", "What's the weather like in Paris", "Will it be sunny this weekend",
                       "How cold is it outside", "Do I need an umbrella tomorrow", "Tell me the forecast for Monday"],
           "music": ["Play some jazz music", "Turn the music up a little", "Skip this song please",
                     "Put on my favourite playlist", "Who sings this track", "Shuffle the rock songs"]}


@pytest.fixture(scope="module")
def english_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("english")
    with open(root / "texts.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "topic"])
        writer.writerows((text, topic) for topic, texts in ENGLISH.items() for text in texts)
    speak_csv(root / "texts.csv", root / "corpus", language="en")
    return root / "corpus"


def test_english_text_is_spoken_by_held_out_english_voices(english_corpus):
    rows = {s: read_manifest(english_corpus / f"{s}.csv") for s in ("train", "dev", "test")}
    voices = {s: {r["speaker"] for r in rs} for s, rs in rows.items()}
    for split, pool in ENGLISH_VOICES.items():
        assert voices[split] and voices[split] <= set(pool)
    assert not voices["train"] & (voices["dev"] | voices["test"])
    words = {r["words"] for rs in rows.values() for r in rs}
    assert "wake me up at 7 o'clock" in words and "don't wake me before eight" in words
    summary = json.loads((english_corpus / "summary.json").read_text())
    assert summary["text_normalisation"] == {"language": "en", "numbers": "keep"}
    assert summary["synthesiser"].endswith("language en") and summary["input_rows"] == 18 == summary["kept"]


@pytest.mark.training
def test_the_text_and_audio_rows_train_on_a_spoken_english_corpus(english_corpus, train, tmp_path):
    from topic_id.standins.bert import build_standin

    from conftest import STANDIN

    texts = [r["words"] for s in ("train", "dev", "test") for r in read_manifest(english_corpus / f"{s}.csv")]
    build_standin(texts, english_corpus / "standin_bert", **STANDIN)
    runs = {}
    for hparams, name in (("hparams/text.yaml", "text"), ("hparams/audio_tdnn.yaml", "audio_bl")):
        run = train(hparams, english_corpus, tmp_path / name, "--number_of_epochs=1")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["n"] == len(read_manifest(english_corpus / "test.csv"))
        runs[name] = run
    # Text given to an exported English system is normalised as English (Finnish would give "its").
    from topic_id.serving.export import export_run
    from topic_id.serving.inference import predict

    export_run(runs["text"], tmp_path / "export")
    row, = predict(tmp_path / "export", [], texts=["It's 3 O'Clock!"])
    assert row["text"] == "it's 3 o'clock"
