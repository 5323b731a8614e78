"""Any corpus: a metadata CSV or ROOT/<topic>/ folders, with full accounting of the input rows."""

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile
from helpers import read_prepared

from data_prep.csv_corpus import prepare_csv_corpus, prepare_folder_corpus
from data_prep.manifest import PrepError

FORMATS = ((16000, "WAV", ".wav"), (22050, "FLAC", ".flac"), (44100, "WAV", ".wav"), (8000, "FLAC", ".flac"))
TOPICS = ("sauna", "kesä", "koira")


def _audio(path, seconds=1.0, k=0):
    rate, fmt, _ = FORMATS[k % len(FORMATS)]
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(k).uniform(-0.3, 0.3, (int(seconds * rate), 1 + k % 2))
    soundfile.write(str(path), noise.astype(np.float32), rate, format=fmt)
    return path


def _corpus(root, n_speakers=6, per_speaker=3, split=False):
    """Audio under ``root/audio`` and its rows: every third row untranscribed."""
    rows = []
    for s in range(n_speakers):
        for i in range(per_speaker):
            k = s * per_speaker + i
            rel = f"audio/spk{s}/utt{i}{FORMATS[k % len(FORMATS)][2]}"
            _audio(root / rel, 1.0 + 0.1 * i, k)
            row = {"path": rel, "topic": TOPICS[k % 3], "speaker": f"spk{s}",
                   "transcript": "" if k % 3 == 2 else f"No .fp {TOPICS[k % 3]} oli kivaa, joo!"}
            if split:
                row["split"] = "test" if s == 0 else "dev" if s == 1 else "train"
            rows.append(row)
    return rows


def _write(path, rows, columns=None):
    columns = columns or list(rows[0])
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_drawn_splits_are_speaker_disjoint_and_accounted(tmp_path):
    meta = _write(tmp_path / "meta.csv", _corpus(tmp_path))
    prepare_csv_corpus(meta, tmp_path / "out", dev_fraction=0.2, test_fraction=0.2)
    rows, dropped, summary = read_prepared(tmp_path / "out")
    assert sum(map(len, rows.values())) + len(dropped) == 18 == summary["input_rows"]
    speakers = {s: {r["speaker"] for r in rs} for s, rs in rows.items()}
    assert speakers["dev"] and speakers["test"] and not speakers["train"] & (speakers["dev"] | speakers["test"])
    assert all(r["words"] and r["subset"] == "" for s in ("dev", "test") for r in rows[s])
    assert {r["subset"] for r in rows["train"]} == {"transcribed", "untranscribed"}
    assert all(d["reason"].startswith("recording") and "speaker-disjoint" in d["reason"] for d in dropped)
    assert (tmp_path / "out" / "topics.txt").read_text().split() == sorted(TOPICS)
    for row in [r for rs in rows.values() for r in rs]:
        assert str(Path(row["wav"]).with_suffix("")) == str(tmp_path / row["ID"].replace("-", "/"))
        assert row["words"] in ("", f"no {row['topic']} oli kivaa joo")


def test_durations_are_measured_from_the_files(tmp_path):
    meta = _write(tmp_path / "meta.csv", _corpus(tmp_path, n_speakers=3))
    prepare_csv_corpus(meta, tmp_path / "out", dev_fraction=0.2, test_fraction=0.2)
    for row in [r for rs in read_prepared(tmp_path / "out")[0].values() for r in rs]:
        assert row["duration"] == pytest.approx(soundfile.info(row["wav"]).duration, abs=1e-3)


def test_given_splits_keep_speakers_apart(tmp_path, caplog):
    rows = _corpus(tmp_path, split=True)
    rows[3]["split"] = "test"  # spk1 in dev and test: its dev rows give way
    rows[6]["split"] = "valid"  # an alias of dev
    rows[9]["split"] = "holdout"  # not a split
    meta = _write(tmp_path / "meta.csv", rows)
    prepare_csv_corpus(meta, tmp_path / "out")
    out, dropped, summary = read_prepared(tmp_path / "out")
    assert summary["accounted"] and summary["given_splits"]
    reasons = {d["source"].split(":")[-1]: d["reason"] for d in dropped}
    assert "speaker 'spk1' is given in dev and in test" in reasons["6"]
    assert "invalid split 'holdout': use train, dev or test" in reasons["11"]
    assert "no transcript for test row" in reasons["4"]  # rows[2]: a test row without text
    assert {r["speaker"] for r in out["test"]} == {"spk0", "spk1"}
    assert {r["speaker"] for r in out["dev"]} == {"spk2"}
    assert not {r["speaker"] for r in out["train"]} & {"spk0", "spk1", "spk2"}


def test_bad_rows_are_dropped_by_name_and_the_rest_kept(tmp_path, caplog):
    rows = _corpus(tmp_path, n_speakers=4)
    bad = tmp_path / "audio" / "bad"
    bad.mkdir()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "text.wav").write_text("not audio\n" * 30)
    soundfile.write(str(bad / "long.wav"), np.zeros(8000 * 50, np.float32), 8000)
    _audio(bad / "odd.wav")
    _audio(bad / "quiet.wav")
    base = {"topic": "sauna", "speaker": "spkX", "transcript": "moi"}
    rows += [dict(base, path="audio/bad/missing.wav"), dict(base, path="audio/bad/empty.wav"),
             dict(base, path="audio/bad/text.wav"), dict(base, path="audio/bad/long.wav"),
             dict(base, path="audio/bad/odd.wav", topic="lentopallo"), dict(base, path="audio/bad/odd.wav"),
             dict(base, path="audio/bad/odd.wav", topic=""), dict(base, path=""),
             dict(base, path="audio/bad/odd.wav"),
             dict(base, path="audio/bad/quiet.wav", transcript=".laugh .br", speaker="spkQ")]
    meta = _write(tmp_path / "meta.csv", rows)
    (tmp_path / "topics.txt").write_text("sauna\nkesä\nkoira\n")
    with caplog.at_level(logging.WARNING):
        prepare_csv_corpus(meta, tmp_path / "out", topics=tmp_path / "topics.txt")
    out, dropped, summary = read_prepared(tmp_path / "out")
    assert summary["accounted"] and summary["input_rows"] == len(rows)
    reasons = {int(d["source"].rsplit(":", 1)[-1]): d["reason"] for d in dropped}
    expected = {14: ("missing audio file", "missing.wav", "restore it"), 15: ("empty audio file", "empty.wav"),
                16: ("non-audio", "text.wav", "convert"), 17: ("not below the 50 s limit", "--max-duration"),
                18: ("unknown topic 'lentopallo'", "topics file"), 20: ("empty topic", "fill in"),
                21: ("empty path", "fill in"), 22: ("duplicate ID 'audio-bad-odd', first at", ":19")}
    for line, words in expected.items():
        assert all(w in reasons[line] for w in words), reasons[line]
    assert "audio-bad-odd" in {r["ID"] for rs in out.values() for r in rs}
    (quiet,) = [r for r in out["train"] if r["ID"] == "audio-bad-quiet"]
    assert quiet["subset"] == "untranscribed" and "empty after normalisation" in caplog.text
    assert (tmp_path / "out" / "topics.txt").read_text().split() == ["sauna", "kesä", "koira"]


def test_non_utf8_row_is_dropped(tmp_path):
    meta = _write(tmp_path / "meta.csv", _corpus(tmp_path, n_speakers=3))
    meta.write_bytes(meta.read_bytes() + b"audio/spk0/utt9.wav,sauna,spkZ,J\xe4\n")
    prepare_csv_corpus(meta, tmp_path / "out")
    _, dropped, summary = read_prepared(tmp_path / "out")
    assert summary["accounted"] and summary["input_rows"] == 10
    (bad,) = [d for d in dropped if d["source"] == f"{meta}:11"]
    assert "non-UTF-8" in bad["reason"] and "re-save" in bad["reason"]


def test_missing_required_column_is_fatal_and_named(tmp_path):
    meta = _write(tmp_path / "meta.csv", _corpus(tmp_path, n_speakers=1), columns=["path", "speaker"])
    with pytest.raises(PrepError, match=rf"{meta}.*lacks the required column\(s\) topic"):
        prepare_csv_corpus(meta, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_audio_root_and_data_root_paths(tmp_path):
    out = tmp_path / "out"
    rows = _corpus(out, n_speakers=3)
    meta = _write(tmp_path / "meta.csv", rows)
    prepare_csv_corpus(meta, out, audio_root=out)
    written = []  # the manifests' wav column as written, before any reader resolves $data_root
    for split in ("train", "dev", "test"):
        with open(out / f"{split}.csv", encoding="utf-8", newline="") as f:
            written += [r["wav"] for r in csv.DictReader(f)]
    assert written and all(w.startswith("$data_root/audio/spk") for w in written)


def test_no_speakers_warns_and_still_splits(tmp_path, caplog):
    rows = _corpus(tmp_path, n_speakers=4)
    meta = _write(tmp_path / "meta.csv", rows, columns=["path", "topic"])
    with caplog.at_level(logging.WARNING):
        prepare_csv_corpus(meta, tmp_path / "out", dev_fraction=0.2, test_fraction=0.2)
    out, dropped, _ = read_prepared(tmp_path / "out")
    assert "add a speaker column" in caplog.text and not dropped
    assert out["dev"] and out["test"] and {r["subset"] for r in out["train"]} == {"untranscribed"}


def test_rerun_skips(tmp_path, caplog):
    meta = _write(tmp_path / "meta.csv", _corpus(tmp_path, n_speakers=3))
    prepare_csv_corpus(meta, tmp_path / "out")
    stamp = (tmp_path / "out" / "summary.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prepare_csv_corpus(meta, tmp_path / "out")
    assert "skipping" in caplog.text and (tmp_path / "out" / "summary.json").stat().st_mtime_ns == stamp


def test_folder_corpus(tmp_path):
    root = tmp_path / "root"
    for k, topic in enumerate(TOPICS * 4):
        _audio(root / topic / f"spk{k % 4}" / f"take{k}.wav", k=k)
        (root / topic / f"spk{k % 4}" / f"take{k}.txt").write_text(f"Nyt .fp {topic}")
    _audio(root / "sauna" / "take0.wav", k=1)  # no speaker folder, no transcript; name as elsewhere
    _audio(root / "kesä" / ".hidden.wav")
    (root / "kesä" / "notes.md").write_text("not audio")
    (root / "koira" / "broken.flac").write_bytes(b"")
    prepare_folder_corpus(root, tmp_path / "out", dev_fraction=0.25, test_fraction=0.25)
    out, dropped, summary = read_prepared(tmp_path / "out")
    assert summary["input_rows"] == 14 and summary["accounted"]
    assert [d["reason"].split(" ")[0] for d in dropped] == ["empty"]
    ids = {r["ID"]: r for rs in out.values() for r in rs}
    assert ids["sauna-take0"]["words"] == "" and ids["sauna-take0"]["subset"] == "untranscribed"
    assert ids["sauna-spk0-take0"]["words"] == "nyt sauna"
    assert ids["sauna-spk0-take0"]["speaker"] == "spk0" and ids["sauna-spk0-take0"]["topic"] == "sauna"
    speakers = {s: {r["speaker"] for r in rs} for s, rs in out.items()}
    assert not speakers["train"] & (speakers["dev"] | speakers["test"])


def test_folder_without_audio_is_a_clear_error(tmp_path):
    (tmp_path / "root" / "sauna").mkdir(parents=True)
    with pytest.raises(PrepError, match="no audio found"):
        prepare_folder_corpus(tmp_path / "root", tmp_path / "out")


@pytest.mark.parametrize("language, numbers, expected", [
    ("fi", None, "no sauna oli kivaa joo"),
    ("en", None, "it's sauna 2 times don't"),
    ("en", "drop", "it's sauna times don't"),
])
def test_transcripts_are_normalised_in_the_corpus_language(tmp_path, language, numbers, expected):
    rows = _corpus(tmp_path, n_speakers=3, split=True)
    for row in rows:
        row["transcript"] = "No .fp sauna oli kivaa, joo!" if language == "fi" else "It's sauna 2 times, DON'T!"
    meta = _write(tmp_path / "meta.csv", rows)
    prepare_csv_corpus(meta, tmp_path / "out", language=language, numbers=numbers)
    out, _, summary = read_prepared(tmp_path / "out")
    assert {r["words"] for rs in out.values() for r in rs} == {expected}
    assert summary["text_normalisation"]["language"] == language
