"""Tests of the built-in corpus (data_prep/demo_corpus.py, espeak.py, synthesis.py) and of speaking a
text CSV (data_prep/speak.py)."""

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import read_dropped

from data_prep import demo_corpus, demo_text
from data_prep.demo_corpus import bow_baseline, prepare_demo
from data_prep.espeak import Synthesizer
from data_prep.manifest import COLUMNS, OUTPUTS, PrepError, Row, validate
from data_prep.prepared import read_manifest, read_topics
from data_prep.speak import speak_csv
from data_prep.text_norm import normalize_transcript
from data_prep.topics import TOPICS

SIB200 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sib200_fin"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny demo corpus, built once for the module."""
    out = tmp_path_factory.mktemp("demo")
    paths = prepare_demo(out, seed=0, size="tiny")
    return out, paths


def _rows(out):
    return {split: read_manifest(out / f"{split}.csv") for split in ("train", "dev", "test")}


def _resolve(out, wav):
    return Path(wav.replace("$data_root", str(out)))


def test_tiny_build_writes_valid_manifests(tiny):
    out, paths = tiny
    assert set(paths) == {"train", "dev", "test"}
    assert all((out / name).is_file() for name in OUTPUTS)
    assert read_topics(out) == list(TOPICS)
    with open(out / "train.csv", encoding="utf-8") as f:
        assert tuple(next(csv.reader(f))) == COLUMNS
    rows = _rows(out)
    splits = {s: [Row(**r) for r in rs] for s, rs in rows.items()}
    assert validate(splits, list(TOPICS)) == []
    assert sum(len(r) for r in rows.values()) == sum(demo_corpus.SIZES["tiny"].values())
    for split, split_rows in rows.items():
        assert {r["topic"] for r in split_rows} == set(TOPICS), f"a topic is missing from {split}"
        for r in split_rows:
            path = _resolve(out, r["wav"])
            info = soundfile.info(str(path))
            assert r["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
            assert 1.5 < r["duration"] < 6.0
            assert r["asr_words"] == ""
            if split != "train":
                assert r["subset"] == "" and r["words"]
    train = rows["train"]
    assert {r["subset"] for r in train} == {"transcribed", "untranscribed"}
    assert all(bool(r["words"]) == (r["subset"] == "transcribed") for r in train)


def test_voices_held_out_and_audio_varied(tiny):
    out, _ = tiny
    rows = _rows(out)
    voices = {split: {r["speaker"] for r in split_rows} for split, split_rows in rows.items()}
    assert len(set().union(*voices.values())) >= 6
    assert not voices["train"] & (voices["dev"] | voices["test"])
    assert not voices["dev"] & voices["test"]
    files = [_resolve(out, r["wav"]) for split_rows in rows.values() for r in split_rows]
    assert {soundfile.info(str(f)).samplerate for f in files} >= {16000, 22050, 44100}
    assert {f.suffix for f in files} == {".wav", ".flac"}


def test_transcripts_are_normalised_with_hesitations(tiny):
    out, _ = tiny
    words = [r["words"] for rows in _rows(out).values() for r in rows if r["words"]]
    assert all(w == normalize_transcript(w) for w in words)
    vocabulary = {w for text in words for w in text.split()}
    assert vocabulary & {"öö", "tota", "niinku", "no", "joo"}


def test_summary_accounts_and_reports_bow(tiny):
    out, _ = tiny
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["accounted"] and summary["kept"] + summary["dropped"] == summary["input_rows"]
    bow = summary["bow_logreg"]
    assert bow["test_accuracy"] is not None and bow["test_accuracy"] < 0.97
    assert summary["seed"] == 0 and summary["size"] == "tiny"


def test_default_text_is_learnable_but_not_trivial():
    """The default size's transcripts, without synthesis: BoW well above chance, below 97 %."""
    plans = demo_corpus._plan_demo(0, "default")
    splits = {"train": [], "dev": [], "test": []}
    for p in plans:
        words = normalize_transcript(p["text"]) if p["subset"] != "untranscribed" else ""
        splits[p["split"]].append(Row(p["ID"], "x.wav", 1.0, p["topic"], words, "", p["voice"], p["subset"]))
    bow = bow_baseline(splits)
    assert 0.6 < bow["test_accuracy"] < 0.97
    vocabulary = {w for rows in splits.values() for r in rows for w in r.words.split()}
    assert 250 < len(vocabulary) < 700


def test_lp_like_corpus_has_one_multi_sentence_recording_per_topic_and_split():
    """LP-like durations: the sentences are kept, joined into recordings, not added."""
    plans = demo_corpus._plan_demo(0, "default", demo_corpus.LONG_RECORDINGS["default"])
    assert sum(p.get("sentences", 1) for p in plans) == sum(demo_corpus.SIZES["default"].values())
    by_id = {p["ID"]: p for p in plans}
    for split in ("train", "dev", "test"):
        long = [p for p in plans if p["split"] == split and p["kind"] == "long"]
        assert sorted(p["topic"] for p in long) == sorted(TOPICS)
        for p in long:
            low, high = demo_corpus.LONG_SENTENCES
            assert low <= p["sentences"] == len(p["kinds"]) <= high
            assert p["text"].count(".") == p["sentences"]
            assert p["speech_window"][1] == pytest.approx(p["sentences"] * demo_corpus.SPEECH_SECONDS[1])
    assert len(by_id) == len(plans)
    assert not any(p["kind"] == "long" for p in demo_corpus._plan_demo(0, "default"))


def test_the_default_size_has_lp_like_durations_unless_told(monkeypatch, tmp_path):
    """The built-in corpus itself has LP-like durations; tiny (the tests') not."""
    asked = []

    class Planned(Exception):
        pass

    def plan(seed, size, long_recordings):
        asked.append((size, long_recordings))
        raise Planned

    monkeypatch.setattr(demo_corpus, "ready_synthesizer", lambda: None)
    monkeypatch.setattr(demo_corpus, "_plan_demo", plan)
    for n, (size, told) in enumerate((("default", None), ("tiny", None), ("default", 0), ("large", None))):
        with pytest.raises(Planned):
            prepare_demo(tmp_path / str(n), size=size, long_recordings=told)
    assert asked == [("default", 8), ("tiny", 0), ("default", 0), ("large", 32)]


def test_multi_sentence_recordings_are_spoken_long(tmp_path):
    prepare_demo(tmp_path, seed=0, size="tiny", long_recordings=1)
    rows = _rows(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["recordings"]["train"]["multi_sentence"] == 1 and summary["long_recordings"] == 1
    assert sum(summary["utterance_kinds"]["train"].values()) == demo_corpus.SIZES["tiny"]["train"]
    sentences = {p["ID"]: p["sentences"] for p in demo_corpus._plan_demo(0, "tiny", 1) if p["kind"] == "long"}
    for split, split_rows in rows.items():
        long = [r for r in split_rows if r["ID"] in sentences]
        assert len(long) == summary["recordings"][split]["multi_sentence"], split
        # At least SPEECH_SECONDS[0] of speech per sentence, all of them in the transcript.
        assert all(sentences[r["ID"]] * 1.8 < r["duration"] < 40.0 for r in long)
        assert all(len(r["words"].split()) >= 3 * sentences[r["ID"]] for r in long if r["words"])
        assert max(r["duration"] for r in long) > max(r["duration"] for r in split_rows if r not in long)
        spread = summary["splits"][split]["seconds"]
        assert spread["max"] == pytest.approx(max(r["duration"] for r in split_rows), abs=0.01)


def test_other_seed_changes_text():
    first = [p["text"] for p in demo_corpus._plan_demo(0, "tiny")]
    assert first == [p["text"] for p in demo_corpus._plan_demo(0, "tiny")]
    assert first != [p["text"] for p in demo_corpus._plan_demo(1, "tiny")]


def test_sentence_material_is_complete():
    assert set(demo_text.TOPIC_TEMPLATES) == set(TOPICS)
    slots = set(demo_text.SLOTS)
    templates = [t for ts in demo_text.TOPIC_TEMPLATES.values() for t in ts]
    templates += [t for _, t in demo_text.SHARED_TEMPLATES] + list(demo_text.GENERIC_TEMPLATES)
    templates += list(demo_text.CLOSERS)
    for template in templates:
        assert set(re.findall(r"\{(\w+)\}", template)) <= slots, template
        assert not re.search(r"\d", template)
    for topic in TOPICS:
        assert any(topic in pair for pair, _ in demo_text.SHARED_TEMPLATES), topic


def test_rerun_skips_and_same_seed_rebuilds_identical_manifests(tiny, tmp_path, caplog):
    out, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    stamp = (copy / "train.csv").stat().st_mtime_ns
    with caplog.at_level("WARNING"):
        prepare_demo(copy, seed=4, size="tiny")
    assert (copy / "train.csv").stat().st_mtime_ns == stamp
    assert "seed=0" in caplog.text and "--force" in caplog.text
    # An interrupted run (no summary.json, a half-written manifest, no audio) is rebuilt from
    # scratch, and the same seed gives the same bytes in this second folder.
    (copy / "summary.json").unlink()
    (copy / "train.csv").write_text("ID,wav\n", encoding="utf-8")
    shutil.rmtree(copy / "audio")
    prepare_demo(copy, seed=0, size="tiny")
    assert (copy / "summary.json").is_file()
    for name in ("train.csv", "dev.csv", "test.csv", "topics.txt", "dropped.csv"):
        assert (copy / name).read_bytes() == (out / name).read_bytes(), name


def test_bad_size_and_unknown_voice():
    with pytest.raises(PrepError, match="tiny"):
        prepare_demo("/nonexistent-never-created", size="huge")
    with pytest.raises(PrepError, match="--long-recordings must be 0 or more"):
        prepare_demo("/nonexistent-never-created", long_recordings=-1)
    with pytest.raises(PrepError, match="not found"):
        Synthesizer.get().speak("hei", "no-such-variant")


def test_synthesizer_speaks_finnish():
    synth = Synthesizer.get()
    assert synth.sample_rate == 22050
    speech = synth.speak("no mä kävin eilen metsässä", "m1", rate=175)
    assert 0.8 < len(speech) / synth.sample_rate < 4.0
    assert np.abs(speech).max() > 0.1


def _write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.mark.skipif(not SIB200.is_dir(), reason="the SIB-200 Finnish text set is not beside the checkout")
def test_speak_csv_on_sib200_rows(tmp_path):
    with open(SIB200 / "dev.tsv", encoding="utf-8", newline="") as f:
        source = list(csv.DictReader(f, delimiter="\t"))[:12]
    rows = [[s["index_id"], s["category"], s["text"], ""] for s in source]
    rows[3][3] = "dev"
    rows[4][3] = "test"
    for r in rows[5:]:
        r[3] = "train"
    rows[0][3] = rows[1][3] = rows[2][3] = "train"
    rows.append(["9001", "sports", "", "train"])  # empty text
    rows.append(["9002", "travel", "Hyvä matka.", "validation"])  # dev, as the csv command reads it
    rows.append([source[0]["index_id"], "travel", "Toinen lause.", "train"])  # duplicate ID
    _write_csv(tmp_path / "sib.csv", ["ID", "topic", "text", "split"], rows)
    out = tmp_path / "corpus"
    speak_csv(tmp_path / "sib.csv", out, seed=0)
    kept = _rows(out)
    assert sum(len(r) for r in kept.values()) == 13
    assert read_topics(out) == sorted({s["category"] for s in source})
    dropped = read_dropped(out)
    assert len(dropped) == 2
    reasons = " ".join(d["reason"] for d in dropped)
    assert "empty text" in reasons and "duplicate ID" in reasons
    assert {r["ID"] for r in kept["dev"]} == {source[3]["index_id"], "9002"}
    assert all(r["subset"] == "transcribed" and r["words"] for r in kept["train"])
    first = next(r for r in kept["train"] if r["ID"] == source[0]["index_id"])
    assert first["words"] == normalize_transcript(source[0]["text"])
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["input_rows"] == 15 and summary["accounted"]


def test_speak_csv_auto_split_keeps_speakers_apart(tmp_path):
    sentences = ["mä kävin kaupassa", "koira haukkuu", "tänään sataa vettä", "me pelattiin futista"]
    rows = [[sentences[i % 4], f"topic{i % 2}", f"spk{i % 6}", "untranscribed" if i % 5 == 0 else ""]
            for i in range(24)]
    _write_csv(tmp_path / "t.csv", ["text", "topic", "speaker", "subset"], rows)
    out = tmp_path / "corpus"
    speak_csv(tmp_path / "t.csv", out, seed=1)
    kept = _rows(out)
    assert sum(len(r) for r in kept.values()) == 24
    speakers = {split: {r["speaker"] for r in split_rows} for split, split_rows in kept.items()}
    assert speakers["dev"] and speakers["test"]
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert any(r["subset"] == "untranscribed" and r["words"] == "" for r in kept["train"])
    assert read_topics(out) == ["topic0", "topic1"]


def test_speak_csv_bad_files(tmp_path):
    _write_csv(tmp_path / "nocol.csv", ["sentence", "topic"], [["hei", "a"]])
    with pytest.raises(PrepError, match="lacks the required column.*transcript or text"):
        speak_csv(tmp_path / "nocol.csv", tmp_path / "o1")
    assert not (tmp_path / "o1").exists()
    # A row that is not UTF-8 is dropped, as the csv command drops it; with no row left, the
    # corpus cannot train, and dropped.csv says why.
    (tmp_path / "latin.csv").write_bytes("text,topic\nhyv\xe4 p\xe4iv\xe4,a\n".encode("latin-1"))
    with pytest.raises(PrepError, match="train is empty; dev is empty; test is empty"):
        speak_csv(tmp_path / "latin.csv", tmp_path / "o2")
    with open(tmp_path / "o2" / "dropped.csv", encoding="utf-8") as f:
        assert "non-UTF-8" in next(csv.DictReader(f))["reason"]


def test_speak_csv_drops_malformed_and_too_long_rows(tmp_path):
    long_text = " ".join(["mä kävin eilen kaupassa ja ostin maitoa"] * 40)
    (tmp_path / "t.csv").write_text(
        f"text,topic\nmä kävin kaupassa,a\nno, mä kävin metsässä,b\nkoira haukkuu,b\n{long_text},a\n",
        encoding="utf-8",
    )
    # Two rows are too few to draw dev and test from, so the corpus is written but cannot train.
    with pytest.raises(PrepError, match="dev is empty; test is empty"):
        speak_csv(tmp_path / "t.csv", tmp_path / "corpus")
    with open(tmp_path / "corpus" / "dropped.csv", encoding="utf-8") as f:
        dropped = {d["source"].rsplit(":", 1)[-1]: d["reason"] for d in csv.DictReader(f)}
    assert set(dropped) == {"3", "5"}
    assert "quote" in dropped["3"] and "50 s" in dropped["5"]
    assert read_topics(tmp_path / "corpus") == ["a", "b"]
    # The too-long recording is not left behind.
    assert sorted(p.stem for p in (tmp_path / "corpus" / "audio").iterdir()) == ["utt000001", "utt000003"]
