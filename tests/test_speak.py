"""``csv`` and ``speak`` read a CSV the same way (data_prep/intake.py, splits.given_splits).

One CSV with audio paths and text serves both commands; they must keep the same rows in the same
splits and drop the same rows for the same reasons.
"""

import csv

import numpy as np
import soundfile

from data_prep.csv_corpus import prepare_csv_corpus
from data_prep.prepared import read_manifest
from data_prep.speak import speak_csv

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
