"""LP preparation on a generated miniature tree: accounting, audio, themes, splits, reruns."""

import json
import logging
import os

import pytest
import soundfile
from helpers import make_toy_lp_corpus, read_dropped

from data_prep.__main__ import main
from data_prep.lahjoita_puhetta import find_parts, prepare_lahjoita_puhetta
from data_prep.manifest import COLUMNS, PrepError
from data_prep.prepared import read_manifest
from data_prep.text_norm import normalize_transcript
from data_prep.topics import THEME_TO_TOPIC, TOPICS

SMALL = dict(dev_hours=4 / 3600, test_hours=4 / 3600)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_lp_corpus(tmp_path_factory.mktemp("lp"))


@pytest.fixture(scope="module")
def prepared(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("lp_out")
    paths = prepare_lahjoita_puhetta(toy.root, out, **SMALL)
    rows = {split: read_manifest(path) for split, path in paths.items()}
    return out, rows, read_dropped(out), json.loads((out / "summary.json").read_text())


def _all(rows):
    return [r for split_rows in rows.values() for r in split_rows]


def test_every_input_row_is_kept_or_dropped_with_reason(toy, prepared):
    out, rows, dropped, summary = prepared
    assert len(_all(rows)) + len(dropped) == toy.n_rows == summary["input_rows"]
    assert summary["accounted"] and summary["dropped"] == len(dropped)
    assert all(d["source"] and d["reason"] for d in dropped)
    good = set(toy.themes) - set(toy.bad)
    assert {r["ID"] for r in _all(rows)} == good | {"cltbad0008_rec0001"}


@pytest.mark.parametrize("rec_id, word, fix", [
    ("cltbad0001_rec0001", "missing audio file", "restore it"),
    ("cltbad0002_rec0001", "empty audio file", "re-export"),
    ("cltbad0003_rec0001", "non-audio file", "convert it"),
    ("cltbad0004_rec0001", "unreadable", "convert it"),  # truncated FLAC
    ("cltbad0005_rec0001", "not below the 50 s limit", "raise --max-duration"),
    ("cltbad0006_rec0001", "unknown theme '11'", "fix the metadata row"),
    ("cltbad0007_rec0001", "non-UTF-8 transcript", "re-save it as UTF-8"),
    ("cltbad0009_rec0001", "zero-length audio", "re-export"),
])
def test_bad_rows_dropped_with_file_and_fix(prepared, rec_id, word, fix):
    _, rows, dropped, _ = prepared
    (hit,) = [d for d in dropped if d["source"].endswith(rec_id)]
    assert "_meta.csv:" in hit["source"]  # names the metadata row
    assert word in hit["reason"] and fix in hit["reason"]
    if "theme" not in word:
        assert rec_id + "." in hit["reason"]  # names the audio or transcript file
    assert rec_id not in {r["ID"] for r in _all(rows)}


def test_duplicate_id_keeps_the_first(prepared):
    _, rows, dropped, _ = prepared
    (dup,) = [d for d in dropped if "duplicate ID" in d["reason"]]
    assert "2020_part_02" in dup["source"] and "2020_part_01" in dup["reason"]
    assert "clt0000000_rec0000" in {r["ID"] for r in _all(rows)}


def test_non_utf8_metadata_row_dropped_others_kept(prepared):
    _, rows, dropped, _ = prepared
    (bad,) = [d for d in dropped if "non-UTF-8 bytes" in d["reason"]]
    assert "UTF-8" in bad["reason"] and "_meta.csv" in bad["reason"]
    # every row has a non-ASCII placeOfResidence; only the broken recordingId matters
    assert len(_all(rows)) > 20


def test_empty_transcript_kept_untranscribed_and_reported(toy, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        prepare_lahjoita_puhetta(toy.root, tmp_path / "out", **SMALL)
    (row,) = [r for r in read_manifest(tmp_path / "out" / "train.csv") if r["ID"] == "cltbad0008_rec0001"]
    assert row["subset"] == "untranscribed" and row["words"] == ""
    assert "cltbad0008_rec0001.txt is empty after normalisation" in caplog.text
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["empty_transcripts"] == 1


def test_manifest_columns_transcripts_and_subsets(toy, prepared):
    out, rows, _, _ = prepared
    assert open(out / "train.csv", encoding="utf-8").readline().strip() == ",".join(COLUMNS)
    for split in rows:
        for r in read_manifest(out / f"{split}.csv", as_written=True):
            assert r["wav"] == f"$data_root/audio/{r['ID']}.flac"
            assert r["speaker"] == r["ID"].split("_")[0]
            assert r["words"] == normalize_transcript(toy.transcripts.get(r["ID"], ""))
            assert "." not in r["words"] and "\n" not in r["words"]
            expected = ("transcribed" if r["words"] else "untranscribed") if split == "train" else ""
            assert r["subset"] == expected
    subsets = {r["subset"] for r in rows["train"]}
    assert subsets == {"transcribed", "untranscribed"}


def test_theme_map_merges_media_skills(toy, prepared):
    out, rows, _, _ = prepared
    assert (out / "topics.txt").read_text().split() == list(TOPICS)
    for r in _all(rows):
        assert r["topic"] == THEME_TO_TOPIC[toy.themes[r["ID"]]]
    media = {toy.themes[r["ID"]] for r in _all(rows) if r["topic"] == "media_skills"}
    assert media == {"06", "07", "08"}


def test_audio_is_16k_mono_flac_of_the_same_length(toy, prepared):
    out, rows, _, _ = prepared
    rates = set()
    for r in _all(rows):
        info = soundfile.info(str(out / "audio" / f"{r['ID']}.flac"))
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
        assert r["duration"] == pytest.approx(toy.durations[r["ID"]], abs=2e-3)
        rates.add(open(out / "audio" / f"{r['ID']}.flac", "rb").read(4))
    assert rates == {b"fLaC"}


def test_dev_test_speaker_disjoint_and_transcribed(prepared):
    _, rows, _, summary = prepared
    speakers = {split: {r["speaker"] for r in split_rows} for split, split_rows in rows.items()}
    assert speakers["dev"] and speakers["test"]
    assert not speakers["train"] & speakers["dev"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["dev"] & speakers["test"]
    assert all(r["words"] for split in ("dev", "test") for r in rows[split])
    assert summary["splits"]["dev"]["hours"] > 0


def test_deterministic_and_rerun_skips_force_rebuilds(toy, prepared, tmp_path, caplog):
    out, _, _, _ = prepared
    other = tmp_path / "again"
    prepare_lahjoita_puhetta(toy.root, other, **SMALL)
    for name in ("train.csv", "dev.csv", "test.csv", "topics.txt", "dropped.csv"):
        assert (other / name).read_bytes() == (out / name).read_bytes().replace(
            str(out).encode(), str(other).encode())
    stamp = (other / "train.csv").stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prepare_lahjoita_puhetta(toy.root, other, **SMALL)
    assert "skipping" in caplog.text and (other / "train.csv").stat().st_mtime_ns == stamp
    prepare_lahjoita_puhetta(toy.root, other, force=True, **SMALL)
    assert (other / "train.csv").stat().st_mtime_ns != stamp
    assert (other / "train.csv").read_bytes() == (out / "train.csv").read_bytes()


def test_interrupted_run_is_rebuilt(toy, tmp_path):
    out = tmp_path / "out"
    prepare_lahjoita_puhetta(toy.root, out, **SMALL)
    expected = (out / "train.csv").read_bytes()
    (out / "summary.json").unlink()
    (out / "train.csv").write_text("ID,wav\nhalf")
    (out / ".dev.csv.a1b2c3.tmp").write_text("partial")  # what an interrupted atomic_write leaves
    (out / "audio" / ".clt0000000_rec0000.flac.d4e5f6.tmp").write_bytes(b"partial")
    prepare_lahjoita_puhetta(toy.root, out, **SMALL)
    assert (out / "summary.json").is_file() and (out / "train.csv").read_bytes() == expected
    assert not list(out.glob(".*.tmp")) and not list((out / "audio").glob(".*.tmp"))


@pytest.mark.parametrize("sub", ["", "puhelahjat", "puhelahjat/v1", "puhelahjat/v1/2020_part_01"])
def test_corpus_dir_may_point_at_any_level(toy, sub):
    parts = find_parts(toy.root / sub)
    assert [p.name for p, _ in parts] == (["2020_part_01"] if sub.endswith("01") else
                                          ["2020_part_01", "2020_part_02"])


def test_wrong_corpus_dir_is_a_clear_error(tmp_path):
    with pytest.raises(PrepError, match="point CORPUS_DIR"):
        prepare_lahjoita_puhetta(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_required_column_is_fatal_and_named(tmp_path):
    toy = make_toy_lp_corpus(tmp_path / "c", n_clients=2, per_client=1, bad=False)
    meta = toy.root / "puhelahjat/v1/2020_part_01/puhelahjat_2020_part_01_meta.csv"
    meta.write_text(meta.read_text().replace("theme,", "tema,", 1))
    with pytest.raises(PrepError, match=r"lacks the required column\(s\) theme") as err:
        prepare_lahjoita_puhetta(toy.root, tmp_path / "out", **SMALL)
    assert str(meta) in str(err.value)


def _lists(folder, **ids):
    folder.mkdir()
    for split, names in ids.items():
        (folder / f"{split}.txt").write_text("# ids\n" + "".join(f"{n} spk\n" for n in names))
    return folder


def test_split_lists(toy, tmp_path):
    lists = _lists(tmp_path / "lists", dev=["clt0000001_rec0000", "clt0000001_ses01_rec0001"],
                   test=["clt0000003_rec0000", "clt0000002_rec0002", "not_in_corpus"])
    paths = prepare_lahjoita_puhetta(toy.root, tmp_path / "out", split_lists=lists)
    rows = {s: read_manifest(p) for s, p in paths.items()}
    assert {r["ID"] for r in rows["dev"]} == {"clt0000001_rec0000", "clt0000001_ses01_rec0001"}
    assert {r["ID"] for r in rows["test"]} == {"clt0000003_rec0000"}
    dropped = (tmp_path / "out" / "dropped.csv").read_text()
    # clt0000002_rec0002 has no transcript; other recordings of listed speakers would leak
    assert "no transcript for test row 'clt0000002_rec0002'" in dropped
    assert "speaker 'clt0000001' is given in train and in dev" in dropped
    assert "speaker 'clt0000003' is given in train and in test" in dropped
    assert not {r["speaker"] for r in rows["train"]} & {"clt0000001", "clt0000003"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["accounted"] and summary["input_rows"] == toy.n_rows


def test_split_lists_with_train_list_and_speaker_in_two_lists(toy, tmp_path):
    lists = _lists(tmp_path / "lists", train=["clt0000000_rec0000", "clt0000001_rec0000"],
                   dev=["clt0000001_ses01_rec0001"], test=["clt0000003_rec0000"])
    # One train row cannot train a classifier: the preparation says so, after writing the folder.
    with pytest.raises(PrepError, match="cannot train a classifier: train has rows of one topic only"):
        prepare_lahjoita_puhetta(toy.root, tmp_path / "out", split_lists=lists)
    assert [r["ID"] for r in read_manifest(tmp_path / "out" / "train.csv")] == ["clt0000000_rec0000"]
    dropped = (tmp_path / "out" / "dropped.csv").read_text()
    assert "speaker 'clt0000001' is given in train and in dev" in dropped
    assert "is in no split list: add it to train.txt" in dropped


def test_split_lists_need_dev_and_test(toy, tmp_path):
    lists = _lists(tmp_path / "lists", dev=["clt0000001_rec0000"])
    with pytest.raises(PrepError, match="test.txt is missing"):
        prepare_lahjoita_puhetta(toy.root, tmp_path / "out", split_lists=lists)


def test_parallel_conversion_gives_the_same_manifests(tmp_path):
    small = make_toy_lp_corpus(tmp_path / "c", n_clients=3, per_client=2, bad=False)
    for name, workers in (("serial", 1), ("parallel", 2)):
        # Six recordings of six themes cannot train a classifier; the manifests are written anyway.
        with pytest.raises(PrepError, match="absent from train"):
            prepare_lahjoita_puhetta(small.root, tmp_path / name, num_workers=workers, **SMALL)
    for name in ("train.csv", "dev.csv", "test.csv", *(f"audio/{r}.flac" for r in small.durations)):
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "parallel" / name).read_bytes()



def test_unwritable_output_is_a_clear_error(toy, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PrepError, match="cannot write to output directory"):
        prepare_lahjoita_puhetta(toy.root, blocker / "out", **SMALL)
    assert os.path.isfile(blocker)


@pytest.fixture(scope="module")
def pilot(tmp_path_factory):
    """An LP tree of 126 recordings (about 0.06 h), far under the paper's 3 h dev and test."""
    return make_toy_lp_corpus(tmp_path_factory.mktemp("pilot"), n_clients=42, per_client=3, bad=False)


def test_a_pilot_subset_prepares_with_the_defaults(pilot, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="data_prep.lahjoita_puhetta"):
        paths = prepare_lahjoita_puhetta(pilot.root, tmp_path / "out")
    rows = {split: read_manifest(path) for split, path in paths.items()}
    assert all(rows.values()), {split: len(r) for split, r in rows.items()}
    transcribed = sum(pilot.durations[r] for r in pilot.transcripts) / 3600
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["dev_hours"] == summary["test_hours"] == pytest.approx(0.1 * transcribed, rel=0.02)
    assert len(rows["train"]) > 100
    warning, = [r.getMessage() for r in caplog.records if "default dev and test of 3 h" in r.getMessage()]
    assert "--dev-hours/--test-hours" in warning


def test_held_out_hours_larger_than_the_corpus_name_the_flags(pilot, tmp_path, capsys):
    assert main(["-q", "lp", str(pilot.root), str(tmp_path / "out"), "--dev-hours", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: cannot draw dev of 0.5 h and test of ")
    assert "give smaller --dev-hours/--test-hours" in err and "--split-lists" in err
    assert not (tmp_path / "out" / "audio").exists(), "refused before any audio is converted"


def test_given_hours_are_not_capped(pilot, tmp_path):
    prepare_lahjoita_puhetta(pilot.root, tmp_path / "out", dev_hours=0.01, test_hours=0.008, num_workers=1)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["dev_hours"], summary["test_hours"]) == (0.01, 0.008)
    assert summary["splits"]["dev"]["hours"] > summary["splits"]["test"]["hours"] > 0
