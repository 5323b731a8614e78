"""``--long segment``: recordings over the duration limit are cut at pauses instead of dropped."""

import csv
import json

import numpy as np
import pytest
import soundfile
from lp_fixture import META_COLUMNS, _meta_row, make_toy_lp_corpus

from data_prep.__main__ import main
from data_prep.csv_corpus import prepare_csv_corpus, prepare_folder_corpus
from data_prep.lahjoita_puhetta import prepare_lahjoita_puhetta
from data_prep.long_recordings import cut_recording, find_cuts
from data_prep.manifest import read_manifest

RATE = 16000


def _bursts(seconds, seed):
    """Tone bursts of 3-9 s between 0.5-1 s pauses of faint noise; the signal and the pauses."""
    rng = np.random.default_rng(seed)
    pieces, pauses, t = [], [], 0.0
    while t < seconds:
        burst = rng.uniform(3.0, 9.0)
        n = int(burst * RATE)
        pieces.append(0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * np.arange(n) / RATE))
        gap = rng.uniform(0.5, 1.0)
        pauses.append((t + burst, t + burst + gap))
        pieces.append(np.zeros(int(gap * RATE)))
        t += burst + gap
    signal = np.concatenate(pieces) + 0.001 * rng.standard_normal(sum(map(len, pieces)))
    return signal.astype(np.float32), pauses


def _write(path, signal, rate=RATE):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), signal, rate)
    return path


def _short(path, k, seconds=1.0):
    noise = np.random.default_rng(k).uniform(-0.3, 0.3, int(seconds * RATE))
    return _write(path, noise.astype(np.float32))


def _load(out):
    rows = {s: read_manifest(out / f"{s}.csv") for s in ("train", "dev", "test")}
    with open(out / "dropped.csv", encoding="utf-8") as f:
        dropped = list(csv.DictReader(f))
    return rows, dropped, json.loads((out / "summary.json").read_text())


def _segments(rows, rec_id):
    return {s: [r for r in rs if r["ID"].startswith(f"{rec_id}-seg")] for s, rs in rows.items()}


def _check_cuts(out, segments, pauses, total):
    """Each segment a 16 kHz file under the limit; the cuts, in ID order, inside pauses."""
    assert [r["ID"] for r in segments] == sorted(r["ID"] for r in segments)
    ends = []
    for row in segments:
        info = soundfile.info(str(out / row["wav"].replace("$data_root/", "")))
        assert info.samplerate == RATE and info.duration < 50.0 and row["duration"] < 50.0
        ends.append((ends[-1] if ends else 0.0) + info.duration)
    assert ends[-1] == pytest.approx(total, abs=1e-3)
    for cut in ends[:-1]:
        assert any(start < cut < end for start, end in pauses), cut


@pytest.fixture(scope="module")
def csv_corpus(tmp_path_factory):
    """Six speakers of two 1 s utterances, given splits, and two long transcribed recordings:
    150 s by a train speaker, 60 s by a dev speaker."""
    root = tmp_path_factory.mktemp("csv")
    rows = []
    for s in range(6):
        for i in range(2):
            path = _short(root / f"spk{s}" / f"u{i}.wav", 2 * s + i)
            rows.append({"path": str(path.relative_to(root)), "topic": "ab"[(s + i) % 2],
                         "transcript": "sauna oli kuuma", "speaker": f"spk{s}",
                         "split": "test" if s == 0 else "dev" if s == 1 else "train"})
    signal, pauses = _bursts(150.0, 0)
    _write(root / "long" / "train.wav", signal)
    _write(root / "long" / "dev.wav", _bursts(60.0, 1)[0])
    rows.append({"path": "long/train.wav", "topic": "a", "transcript": "pitkä puhe", "speaker": "spk2",
                 "split": "train", "id": "L1"})
    rows.append({"path": "long/dev.wav", "topic": "b", "transcript": "toinen puhe", "speaker": "spk1",
                 "split": "dev", "id": "L2"})
    with open(root / "meta.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "topic", "transcript", "speaker", "split", "id"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "meta.csv", pauses, len(signal) / RATE


def test_csv_long_recording_is_cut_at_pauses_and_accounted(csv_corpus, tmp_path):
    meta, pauses, total = csv_corpus
    prepare_csv_corpus(meta, tmp_path, long="segment")
    rows, dropped, summary = _load(tmp_path)
    segments = _segments(rows, "L1")
    assert not segments["dev"] and not segments["test"] and len(segments["train"]) == 4
    for row in segments["train"]:
        assert (row["topic"], row["speaker"], row["words"]) == ("a", "spk2", "")
        assert row["subset"] == "untranscribed"
    _check_cuts(tmp_path, segments["train"], pauses, total)
    # The dev recording loses its transcript too, and a dev row without one cannot be scored.
    assert len(dropped) == 1 and "'L2'" in dropped[0]["reason"] and "given up" in dropped[0]["reason"]
    assert not any(r["ID"].startswith("L2") for rs in rows.values() for r in rs)
    assert summary["input_rows"] == 14 and summary["accounted"]
    assert (summary["kept"], summary["kept_whole"], summary["segmented"], summary["segment_rows"],
            summary["dropped"]) == (16, 12, 1, 4, 1)
    assert summary["segmented_recordings"] == [{"source": f"{meta}:14", "ID": "L1", "segments": 4}]
    assert summary["long"] == "segment" and summary["transcripts_given_up"] == 1


def test_csv_long_recordings_are_dropped_by_default(csv_corpus, tmp_path):
    meta, _, _ = csv_corpus
    prepare_csv_corpus(meta, tmp_path)
    rows, dropped, summary = _load(tmp_path)
    assert sorted(d["source"] for d in dropped) == [f"{meta}:14", f"{meta}:15"]
    assert all("not below the 50 s limit" in d["reason"] for d in dropped)
    assert summary["accounted"] and (summary["kept"], summary["dropped"]) == (12, 2)
    assert not {"segmented", "long", "transcripts_given_up"} & set(summary)
    assert not (tmp_path / "segments").exists()


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    """``ROOT/<topic>/*.wav`` without speakers or transcripts: twelve of 10 s, one of 150 s."""
    root = tmp_path_factory.mktemp("folder")
    for k in range(12):
        _short(root / "ab"[k % 2] / f"u{k:02d}.wav", k, seconds=10.0)
    signal, pauses = _bursts(150.0, 2)
    _write(root / "a" / "long.wav", signal)
    return root, pauses, len(signal) / RATE


def test_folder_long_recording_stays_one_unit(folder_corpus, tmp_path):
    root, pauses, total = folder_corpus
    prepare_folder_corpus(root, tmp_path, long="segment")
    rows, dropped, summary = _load(tmp_path)
    segments = _segments(rows, "a-long")
    (split, found), = [(s, rs) for s, rs in segments.items() if rs]
    assert [r["ID"] for r in found] == [f"a-long-seg{k:02d}" for k in range(1, len(found) + 1)]
    assert all(r["topic"] == "a" and r["speaker"] == "" and r["words"] == "" for r in found)
    _check_cuts(tmp_path, found, pauses, total)
    assert not dropped and summary["accounted"] and summary["input_rows"] == 13
    assert summary["segmented"] == 1 and summary["kept_whole"] == 12
    assert summary["transcripts_given_up"] == 0


def test_folder_command_takes_the_choice(folder_corpus, tmp_path):
    root, _, _ = folder_corpus
    assert main(["-q", "folder", str(root), str(tmp_path / "drop")]) == 0
    rows, dropped, summary = _load(tmp_path / "drop")
    assert len(dropped) == 1 and "not below the 50 s limit" in dropped[0]["reason"]
    assert "segmented" not in summary
    assert main(["-q", "folder", str(root), str(tmp_path / "cut"), "--long", "segment",
                 "--max-duration", "30"]) == 0
    rows, dropped, summary = _load(tmp_path / "cut")
    assert summary["max_duration"] == 30 and summary["segment_rows"] >= 5
    assert max(r["duration"] for rs in rows.values() for r in rs) < 30


def test_hard_cut_where_there_is_no_pause():
    signal = np.sin(np.arange(130 * RATE) / 10).astype(np.float32)
    assert find_cuts(signal, RATE, 50.0) == [0, 799984, 1599968, 130 * RATE]


@pytest.fixture(scope="module")
def lp_corpus(tmp_path_factory):
    """A miniature LP tree plus a transcribed 120 s stereo 22.05 kHz recording of a new client."""
    toy = make_toy_lp_corpus(tmp_path_factory.mktemp("lp"), n_clients=12, per_client=3, bad=False)
    part = toy.root / "puhelahjat" / "v1" / "2020_part_01"
    rec_id = "cltlong001_rec0001"
    signal, pauses = _bursts(120.0, 3)
    rate = 22050
    times = np.arange(int(len(signal) * rate / RATE)) * RATE / rate
    stereo = np.interp(times, np.arange(len(signal)), signal)
    _write(part / "audio" / f"{rec_id}.flac", np.stack([stereo, stereo], axis=1).astype(np.float32), rate)
    (part / "annotations" / "manual_1" / f"{rec_id}.txt").write_text("Pitkä .fp tarina koirasta\n")
    meta = part / "puhelahjat_2020_part_01_meta.csv"
    with open(meta, "a", encoding="utf-8", newline="") as f:
        csv.DictWriter(f, fieldnames=META_COLUMNS, lineterminator="\n").writerow(
            _meta_row(rec_id, "01", len(stereo) / rate, rate, 2))
    return toy, rec_id, pauses, len(signal) / RATE


def test_lp_long_recording_is_cut_into_16k_segments(lp_corpus, tmp_path):
    toy, rec_id, pauses, total = lp_corpus
    prepare_lahjoita_puhetta(toy.root, tmp_path, dev_hours=4 / 3600, test_hours=4 / 3600, long="segment")
    rows, dropped, summary = _load(tmp_path)
    segments = _segments(rows, rec_id)
    assert not segments["dev"] and not segments["test"] and len(segments["train"]) == 3
    assert all((r["topic"], r["speaker"], r["words"]) == ("animal_friends", "cltlong001", "")
               for r in segments["train"])
    assert all(r["wav"] == f"$data_root/audio/{r['ID']}.flac" for r in segments["train"])
    _check_cuts(tmp_path, segments["train"], pauses, total)
    assert summary["input_rows"] == toy.n_rows + 1 and summary["accounted"]
    assert summary["kept_whole"] + summary["segmented"] + summary["dropped"] == summary["input_rows"]
    assert summary["segment_rows"] == 3 and summary["transcripts_given_up"] == 1
    assert not (tmp_path / "audio" / f"{rec_id}.flac").exists()


def test_lp_long_recording_is_dropped_by_default(lp_corpus, tmp_path):
    toy, rec_id, _, _ = lp_corpus
    prepare_lahjoita_puhetta(toy.root, tmp_path, dev_hours=4 / 3600, test_hours=4 / 3600)
    rows, dropped, summary = _load(tmp_path)
    assert [d["source"].split()[-1] for d in dropped if "50 s limit" in d["reason"]] == [rec_id]
    assert summary["accounted"] and "segmented" not in summary


def test_recut_with_another_limit_leaves_no_stale_segments(tmp_path):
    signal, _ = _bursts(60.0, seed=3)
    src = _write(tmp_path / "long.wav", signal)
    folder = tmp_path / "segments"
    folder.mkdir()
    other = _short(folder / "rec-seg01x.flac", 0)  # another recording's file with a like name
    fine, _ = cut_recording(src, folder, "rec", 12.0)
    coarse, _ = cut_recording(src, folder, "rec", 30.0)
    assert len(coarse) < len(fine)
    assert sorted(folder.iterdir()) == sorted([path for _, path, _ in coarse] + [other])
    unsafe, _ = cut_recording(src, folder, "my rec/1", 12.0)
    cut_recording(src, folder, "my_rec_1", 30.0)  # same safe name, other ID: keeps the first's files
    assert all(path.is_file() for _, path, _ in unsafe)
