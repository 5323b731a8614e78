"""``--long segment``: recordings over the duration limit are cut at pauses instead of dropped."""

import csv

import numpy as np
import pytest
import soundfile
from helpers import WORDS, add_recording, make_toy_lp_corpus, read_prepared, textgrid_text

from data_prep.__main__ import main
from data_prep.csv_corpus import prepare_csv_corpus, prepare_folder_corpus
from data_prep.intake import Intake
from data_prep.lahjoita_puhetta import prepare_lahjoita_puhetta
from data_prep.duration_limit import cut_recording, find_cuts, replace_by_segments
from data_prep.alignments import read_alignment
from data_prep.manifest import Row

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


def _segments(rows, rec_id):
    return {s: [r for r in rs if r["ID"].startswith(f"{rec_id}-seg")] for s, rs in rows.items()}


def _check_cuts(out, segments, pauses, total):
    """Each segment a 16 kHz file under the limit; the cuts, in ID order, inside pauses."""
    assert [r["ID"] for r in segments] == sorted(r["ID"] for r in segments)
    ends = []
    for row in segments:
        info = soundfile.info(row["wav"])
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
    rows, dropped, summary = read_prepared(tmp_path)
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
    rows, dropped, summary = read_prepared(tmp_path)
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
    rows, dropped, summary = read_prepared(tmp_path)
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
    rows, dropped, summary = read_prepared(tmp_path / "drop")
    assert len(dropped) == 1 and "not below the 50 s limit" in dropped[0]["reason"]
    assert "segmented" not in summary
    assert main(["-q", "folder", str(root), str(tmp_path / "cut"), "--long", "segment",
                 "--max-duration", "30"]) == 0
    rows, dropped, summary = read_prepared(tmp_path / "cut")
    assert summary["max_duration"] == 30 and summary["segment_rows"] >= 5
    assert max(r["duration"] for rs in rows.values() for r in rs) < 30


def test_hard_cut_where_there_is_no_pause():
    signal = np.sin(np.arange(130 * RATE) / 10).astype(np.float32)
    assert find_cuts(signal, RATE, 50.0) == [0, 799984, 1599968, 130 * RATE]


def _burst_words(pauses, until):
    """Words in every burst of :func:`_bursts` that ends before ``until`` s: a capitalised word, a
    noise marker and a word, as ``[(start_s, end_s, label)]``."""
    starts = [0.0] + [end for _, end in pauses[:-1]]
    words, names = [], iter(WORDS * 10)
    for start, (end, _) in zip(starts, pauses):
        if end < until:
            first, second = next(names), next(names)
            words += [(start + 0.3, start + 0.9, first.capitalize()), (start + 1.0, start + 1.3, ".fp"),
                      (start + 1.5, start + 2.4, second)]
    return words


def _expected_words(segments, words):
    """The normalised words whose midpoint lies inside each segment (manifest rows in time order,
    contiguous from 0)."""
    ends = np.cumsum([r["duration"] for r in segments])
    bounds = list(zip(np.concatenate(([0.0], ends[:-1])), ends))
    return [" ".join(w.lower() for s, e, w in words if a <= (s + e) / 2 < b and w != ".fp")
            for a, b in bounds]


LONG = {"none": "cltlong001_rec0001", "aligned": "cltlong002_rec0001", "malformed": "cltlong003_rec0001",
        "dev": "cltlong004_rec0001"}
"""The long recordings of ``lp_corpus``: 120 s stereo 22.05 kHz without an alignment; 120 s with
one whose words stop at 80 s; 60 s with a truncated TextGrid; 90 s whose words stop at 35 s."""


@pytest.fixture(scope="module")
def lp_corpus(tmp_path_factory):
    """A miniature LP tree plus four transcribed long recordings of new clients (see ``LONG``)."""
    toy = make_toy_lp_corpus(tmp_path_factory.mktemp("lp"), n_clients=12, per_client=3, bad=False)
    part = "2020_part_01"
    signal, pauses = _bursts(120.0, 3)
    rate = 22050
    times = np.arange(int(len(signal) * rate / RATE)) * RATE / rate
    stereo = np.interp(times, np.arange(len(signal)), signal)
    add_recording(toy, part, LONG["none"], np.stack([stereo, stereo], axis=1), rate,
                  transcript="Pitkä .fp tarina koirasta\n")
    aligned, aligned_pauses = _bursts(120.0, 4)
    words = _burst_words(aligned_pauses, 80.0)
    add_recording(toy, part, LONG["aligned"], aligned, RATE, theme="02",
                  transcript=" ".join(w for _, _, w in words), alignment=words)
    add_recording(toy, part, LONG["malformed"], _bursts(60.0, 5)[0], RATE, theme="03",
                  transcript="Toinen tarina", alignment=textgrid_text([(1.0, 2.0, "toinen")], 60.0)[:300])
    dev, dev_pauses = _bursts(90.0, 6)
    dev_words = _burst_words(dev_pauses, 35.0)
    add_recording(toy, part, LONG["dev"], dev, RATE, transcript=" ".join(w for _, _, w in dev_words),
                  alignment=dev_words)
    return toy, pauses, len(signal) / RATE, {LONG["aligned"]: words, LONG["dev"]: dev_words}


@pytest.fixture(scope="module")
def lp_segmented(lp_corpus, tmp_path_factory):
    """``lp_corpus`` prepared with ``long="segment"`` and drawn splits (the long ones in train)."""
    toy = lp_corpus[0]
    out = tmp_path_factory.mktemp("lp_out")
    prepare_lahjoita_puhetta(toy.root, out, dev_hours=4 / 3600, test_hours=4 / 3600, long="segment")
    return out, *read_prepared(out)


def test_lp_long_recording_is_cut_into_16k_segments(lp_corpus, lp_segmented):
    toy, pauses, total, _ = lp_corpus
    out, rows, dropped, summary = lp_segmented
    segments = _segments(rows, LONG["none"])
    assert not segments["dev"] and not segments["test"] and len(segments["train"]) == 3
    assert all((r["topic"], r["speaker"], r["words"], r["subset"])
               == ("animal_friends", "cltlong001", "", "untranscribed") for r in segments["train"])
    assert all(r["wav"] == str(out / "audio" / f"{r['ID']}.flac") for r in segments["train"])
    _check_cuts(out, segments["train"], pauses, total)
    assert summary["input_rows"] == toy.n_rows and summary["accounted"]
    assert summary["kept_whole"] + summary["segmented"] + summary["dropped"] == summary["input_rows"]
    assert summary["segmented"] == 4
    assert summary["segment_rows"] == sum(len(_segments(rows, i)["train"]) for i in LONG.values())
    assert not (out / "audio" / f"{LONG['none']}.flac").exists()


def test_lp_aligned_transcript_is_shared_among_segments(lp_corpus, lp_segmented):
    _, _, _, words = lp_corpus
    out, rows, dropped, summary = lp_segmented
    transcribed = {}
    for rec_id in (LONG["aligned"], LONG["dev"]):
        segments = _segments(rows, rec_id)["train"]
        expected = _expected_words(segments, words[rec_id])
        assert [r["words"] for r in segments] == expected
        assert [r["subset"] for r in segments] == ["transcribed" if w else "untranscribed" for w in expected]
        assert expected[0] and not expected[-1]  # the words stop before the last segment
        assert " ".join(expected).split() == [w.lower() for _, _, w in words[rec_id] if w != ".fp"]
        transcribed[rec_id] = sum(map(bool, expected))
    assert transcribed[LONG["aligned"]] >= 2  # the words are shared, not all in one segment
    assert (summary["transcripts_aligned"], summary["transcripts_given_up"]) == (2, 2)
    assert summary["alignments_unusable"] == 1 and summary["segments_without_words"] == 0


def test_lp_malformed_alignment_gives_up_the_transcript(lp_segmented):
    out, rows, dropped, summary = lp_segmented
    segments = _segments(rows, LONG["malformed"])["train"]
    assert len(segments) == 2 and all((r["words"], r["subset"]) == ("", "untranscribed") for r in segments)
    # Given up: the recording without a TextGrid and this one; counted as unusable: this one.
    assert summary["transcripts_given_up"] == 2 and summary["alignments_unusable"] == 1


def test_lp_dev_segments_without_words_are_left_out(lp_corpus, lp_segmented, tmp_path):
    toy = lp_corpus[0]
    all_segments = _segments(lp_segmented[1], LONG["dev"])["train"]
    lists = tmp_path / "lists"
    lists.mkdir()
    clients = sorted({i.split("_")[0] for i in toy.transcripts if i.startswith("clt000")})
    (lists / "dev.txt").write_text("\n".join([LONG["dev"]] + [i for i in toy.transcripts
                                                               if i.startswith(clients[0])]) + "\n")
    (lists / "test.txt").write_text("\n".join(i for i in toy.transcripts if i.startswith(clients[1])) + "\n")
    out = tmp_path / "out"
    prepare_lahjoita_puhetta(toy.root, out, split_lists=lists, long="segment")
    rows, dropped, summary = read_prepared(out)
    segments = _segments(rows, LONG["dev"])
    with_words = [r for r in all_segments if r["words"]]
    assert [(r["ID"], r["words"]) for r in segments["dev"]] == [(r["ID"], r["words"]) for r in with_words]
    assert summary["segments_without_words"] == len(all_segments) - len(with_words) >= 1
    for row in all_segments:
        assert (out / "audio" / f"{row['ID']}.flac").is_file() == bool(row["words"])
    entry = next(s for s in summary["segmented_recordings"] if s["ID"] == LONG["dev"])
    assert entry["segments"] == len(with_words)
    assert summary["accounted"] and summary["transcripts_aligned"] == 2
    assert summary["kept_whole"] + summary["segmented"] + summary["dropped"] == summary["input_rows"]


def test_lp_long_recording_is_dropped_by_default(lp_corpus, tmp_path):
    toy = lp_corpus[0]
    prepare_lahjoita_puhetta(toy.root, tmp_path, dev_hours=4 / 3600, test_hours=4 / 3600)
    rows, dropped, summary = read_prepared(tmp_path)
    too_long = sorted(d["source"].split()[-1] for d in dropped if "50 s limit" in d["reason"])
    assert too_long == sorted(LONG.values())
    assert summary["accounted"] and "segmented" not in summary and "transcripts_aligned" not in summary


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


def test_dev_recording_without_any_aligned_word_is_dropped(tmp_path):
    intake = Intake("segment")
    intake.add()
    intake.claim_id("rec", "meta.csv:2")
    intake.long["rec"] = tmp_path / "rec.flac"
    assert intake.transcript("rec", "sana", [(0.1, 0.2, ".fp")]) == "sana"
    pieces = [(f"rec-seg0{k}", _short(tmp_path / f"rec-seg0{k}.flac", k), 1.0) for k in (1, 2)]
    row = Row(ID="rec", wav="$data_root/rec.flac", duration=2.0, topic="a", words="sana", speaker="s")
    assert replace_by_segments({"dev": [row]}, {"rec": (pieces, None)}, intake, tmp_path) == {"dev": []}
    (dropped,) = intake.dropped
    assert dropped.source == "meta.csv:2" and "no aligned word in any segment of dev" in dropped.reason
    assert intake.counts["segments_without_words"] == 2 and not intake.segmented
    assert not any(path.exists() for _, path, _ in pieces)


def test_csv_cuts_in_two_workers_give_the_same_corpus(csv_corpus, tmp_path):
    meta, _, _ = csv_corpus
    for workers in (1, 2):
        prepare_csv_corpus(meta, tmp_path / str(workers), long="segment", num_workers=workers)
    files = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*")
                   if p.is_file() and p.name != "summary.json")
    assert any(p.suffix == ".flac" for p in files)
    assert files == sorted(p.relative_to(tmp_path / "2") for p in (tmp_path / "2").rglob("*")
                           if p.is_file() and p.name != "summary.json")
    for path in files:
        assert (tmp_path / "1" / path).read_bytes() == (tmp_path / "2" / path).read_bytes(), path


def test_lp_kept_recordings_bring_their_alignment_for_asr_training(lp_corpus, tmp_path):
    toy, _, _, words = lp_corpus
    out = tmp_path / "out"
    prepare_lahjoita_puhetta(toy.root, out, dev_hours=4 / 3600, test_hours=4 / 3600, max_duration=130.0)
    rows, _, summary = read_prepared(out)
    kept = {r["ID"]: r for split in rows.values() for r in split}
    copied = sorted(p.stem for p in (out / "alignments").glob("*.TextGrid"))
    # The two usable TextGrids and the malformed one travel as they are; the reader checks them.
    assert copied == sorted([LONG["aligned"], LONG["dev"], LONG["malformed"]])
    assert summary["alignments_copied"] == 3 and all(kept[i]["words"] for i in copied)
    aligned, reason = read_alignment(out / "alignments" / f"{LONG['aligned']}.TextGrid",
                                     kept[LONG["aligned"]]["duration"])
    assert reason is None and [w for _, _, w in aligned] == [w for _, _, w in words[LONG["aligned"]]]
