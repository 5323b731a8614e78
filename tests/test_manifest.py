"""The manifest contract: audio checks, validation, atomic writing, reruns and accounting."""

import json

import numpy as np
import pytest
import soundfile

from data_prep import manifest
from corpus_tools.files import atomic_write
from data_prep.manifest import (
    COLUMNS, DONE_MARKER, Dropped, PrepError, Row, audio_duration, check_duration, start, validate,
    write_prepared,
)
from data_prep.prepared import manifest_columns, read_manifest, read_topics

TOPICS = ["a", "b"]


def _wav(path, seconds=1.0, rate=16000, fmt="WAV"):
    soundfile.write(str(path), np.zeros((int(seconds * rate), 1), np.float32), rate, format=fmt)
    return path


def _row(i, split="train", topic="a", words="hei", speaker=None):
    subset = ("transcribed" if words else "untranscribed") if split == "train" else ""
    return Row(ID=f"u{i}", wav=f"$data_root/u{i}.wav", duration=1.0, topic=topic, words=words,
               speaker=speaker or f"s{i}", subset=subset)


def _trainable():
    """The smallest splits that can train a classifier: two topics, every split filled."""
    return {"train": [_row(1), _row(2, topic="b")], "dev": [_row(3, "dev")], "test": [_row(4, "test", "b")]}


def test_audio_duration_of_good_files(tmp_path):
    assert audio_duration(_wav(tmp_path / "a.wav", 1.5)) == (1.5, None)
    assert audio_duration(_wav(tmp_path / "b.flac", 0.5, 22050, "FLAC"))[0] == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("make, word", [
    (lambda p: p, "missing audio file"),
    (lambda p: p.write_bytes(b""), "empty audio file"),
    (lambda p: _wav(p, 0.0), "zero-length audio"),
    (lambda p: p.write_text("not audio at all\n" * 50), "non-audio"),
])
def test_audio_duration_rejects_bad_files_by_name(tmp_path, make, word):
    path = tmp_path / "x.wav"
    make(path)
    duration, reason = audio_duration(path)
    assert duration is None and word in reason and str(path) in reason


def test_audio_duration_rejects_truncated_flac(tmp_path):
    path = tmp_path / "t.flac"
    soundfile.write(str(path), np.random.default_rng(0).uniform(-0.5, 0.5, 48000), 16000, format="FLAC")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    duration, reason = audio_duration(path)
    assert duration is None and str(path) in reason


def test_check_duration_limit_is_exclusive():
    assert check_duration(49.99, "x.wav") is None
    reason = check_duration(50.0, "x.wav")
    assert "x.wav" in reason and "--max-duration" in reason


def test_validate_names_each_problem():
    splits = {
        "train": [_row(1), _row(2, words="", topic="c"), _row(3, speaker="shared")],
        "dev": [_row(1, "dev"), _row(4, "dev", speaker="shared")],
        "test": [Row("u5", "w", 0.0, "a")],
    }
    splits["train"][1].subset = "transcribed"
    problems = "\n".join(validate(splits, TOPICS))
    assert "dev.csv row 'u1': duplicate ID" in problems
    assert "topic 'c' not in topics.txt" in problems
    assert "transcribed row with an empty transcript" in problems
    assert "speaker 'shared' occurs in several splits" in problems
    assert "test.csv row 'u5': duration must be > 0" in problems
    assert validate({"train": [_row(1)], "dev": [_row(2, "dev")], "test": []}, TOPICS) == []


def test_start_creates_skips_and_cleans(tmp_path, caplog):
    out = tmp_path / "out"
    assert start(out) and out.is_dir()
    write_prepared(out, _trainable(), TOPICS, [], 4)
    with caplog.at_level("INFO"):
        assert not start(out)
    assert "skipping" in caplog.text
    assert start(out, force=True) and not (out / DONE_MARKER).exists()


def test_start_rebuilds_an_interrupted_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.csv").write_text("half")
    (out / ".dev.csv.x2k_9.tmp").write_text("half")  # what an interrupted atomic_write leaves
    (out / "keep.txt").write_text("not ours")
    assert start(out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_start_unwritable_output_is_a_prep_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PrepError, match="cannot write to output directory .*choose another OUT_DIR"):
        start(blocker / "out")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old")

    with pytest.raises(RuntimeError), atomic_write(target, newline="") as f:
        f.write("partial")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_write_prepared_roundtrip_and_summary(tmp_path):
    splits = {"train": [_row(1), _row(2, words="", topic="b")], "dev": [_row(3, "dev")],
              "test": [_row(5, "test")]}
    paths = write_prepared(tmp_path, splits, TOPICS, [Dropped("in.csv:4", "missing audio file x")], 5,
                           {"corpus": "toy"})
    train = read_manifest(paths["train"])
    assert list(train[0]) == list(COLUMNS) and train[1]["subset"] == "untranscribed"
    assert train[0]["duration"] == 1.0
    assert read_topics(tmp_path) == TOPICS
    summary = json.loads((tmp_path / DONE_MARKER).read_text())
    assert summary["accounted"] and summary["input_rows"] == 5 and summary["corpus"] == "toy"
    assert manifest.CANNOT_TRAIN not in summary
    assert summary["splits"]["train"]["topic_subset"]["b/untranscribed"]["count"] == 1


def test_write_prepared_refuses_unaccounted_rows_and_writes_nothing(tmp_path):
    with pytest.raises(PrepError, match="5 input rows but 1 kept"):
        write_prepared(tmp_path, {"train": [_row(1)], "dev": [], "test": []}, TOPICS, [], 5)
    assert list(tmp_path.iterdir()) == []


def test_read_topics_missing_says_how_to_fix(tmp_path):
    with pytest.raises(PrepError, match="prepare the corpus first"):
        read_topics(tmp_path)


def test_outputs_are_the_documented_files():
    assert manifest.OUTPUTS[-1] == DONE_MARKER
    assert set(manifest.OUTPUTS) >= {"train.csv", "dev.csv", "test.csv", "topics.txt", "dropped.csv"}


@pytest.mark.parametrize("change, problem", [
    (lambda s: [setattr(r, "topic", "a") for r in s["train"] + s["test"]],
     "train has rows of one topic only (a): a classifier needs at least two"),
    (lambda s: s["dev"].clear(), "dev is empty"),
    (lambda s: s["test"].append(_row(5, "test", "c")), "test has topic(s) absent from train: c"),
])
def test_trainability_problems_name_each_case(change, problem):
    splits = _trainable()
    assert manifest.trainability_problems(splits) == []
    change(splits)
    assert manifest.trainability_problems(splits) == [problem]


def test_untrainable_corpus_is_written_then_refused_and_rebuilt_on_rerun(tmp_path, caplog):
    splits = _trainable()
    splits["test"] = []
    with pytest.raises(PrepError, match=r"cannot train a classifier: test is empty\. .*\(1 of 4 input rows"):
        write_prepared(tmp_path, splits, None, [Dropped("in.csv:9", "missing audio file x")], 4)
    assert read_topics(tmp_path) == ["a", "b"] and read_manifest(tmp_path / "train.csv")
    assert (tmp_path / "dropped.csv").read_text().count("\n") == 2
    summary = json.loads((tmp_path / DONE_MARKER).read_text())
    assert summary[manifest.CANNOT_TRAIN] == ["test is empty"]
    # Not a finished preparation: a rerun (with the input fixed) rebuilds instead of skipping.
    assert not manifest.is_finished(tmp_path) and start(tmp_path)


def test_read_manifest_resolves_data_root_keeps_order_and_empty_values(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    path = folder / "train.csv"
    write_prepared(folder, {"train": [_row(2), _row(1, words="", topic="b")], "dev": [_row(3, "dev")],
                            "test": [_row(4, "test", topic="b")]}, TOPICS, [], 4)
    rows = read_manifest(path)
    assert [r["ID"] for r in rows] == ["u2", "u1"] and list(rows[0]) == list(COLUMNS)
    assert rows[0]["wav"] == f"{folder}/u2.wav" and rows[0]["duration"] == 1.0
    assert rows[1]["words"] == "" and rows[1]["asr_words"] == "" and rows[1]["subset"] == "untranscribed"
    assert read_manifest(path, data_root="/data")[0]["wav"] == "/data/u2.wav"
    written = read_manifest(path, as_written=True)
    assert written[0]["wav"] == "$data_root/u2.wav" and written[0]["duration"] == "1.000"
    assert manifest_columns(path) == list(COLUMNS)


def test_read_manifest_of_audio_alone_and_a_bad_duration(tmp_path):
    (tmp_path / "m.csv").write_text("ID,wav\na,$data_root/a.wav\nb,\n")
    assert read_manifest(tmp_path / "m.csv") == [{"ID": "a", "wav": f"{tmp_path}/a.wav"}, {"ID": "b", "wav": ""}]
    (tmp_path / "bad.csv").write_text("ID,wav,duration\na,a.wav,long\n")
    with pytest.raises(PrepError, match=r"bad.csv, row a: duration 'long' is not a number"):
        read_manifest(tmp_path / "bad.csv")
