"""Speaker-disjoint splits: drawn for a seed, or given and cleaned of speaker leaks."""

import pytest

from data_prep.manifest import PrepError, Row
from data_prep.splits import (
    finish_splits, hold_out_speakers, read_split_lists, require_eval_text, resolve_speaker_conflicts,
)


def _rows(n_speakers=10, per_speaker=3, untranscribed_every=4):
    rows = []
    for s in range(n_speakers):
        for i in range(per_speaker):
            words = "" if (s * per_speaker + i) % untranscribed_every == 0 else "hei"
            rows.append(Row(ID=f"s{s:02d}_u{i}", wav="w", duration=10.0 + s, topic="a", words=words,
                            speaker=f"s{s:02d}"))
    return rows


def _speakers(rows):
    return {r.speaker for r in rows}


def test_hold_out_is_speaker_disjoint_sized_and_eligible_only():
    rows = _rows()
    splits, left_out = hold_out_speakers(rows, {"dev": 60.0, "test": 60.0}, seed=1,
                                         eligible=lambda r: bool(r.words))
    dev, test, train = (_speakers(splits[s]) for s in ("dev", "test", "train"))
    assert dev and test and not (dev & test) and not (train & (dev | test))
    assert all(r.words for s in ("dev", "test") for r in splits[s])
    for split in ("dev", "test"):
        assert sum(r.duration for r in splits[split]) == pytest.approx(60.0, abs=25.0)
    kept = sum(len(v) for v in splits.values())
    assert kept + len(left_out) == len(rows)
    for row, reason in left_out:
        assert row.speaker in dev | test and row.ID in reason and "speaker-disjoint" in reason


def test_hold_out_prefers_fully_eligible_speakers():
    rows = _rows(untranscribed_every=5)
    splits, left_out = hold_out_speakers(rows, {"dev": 30.0, "test": 30.0}, seed=3,
                                         eligible=lambda r: bool(r.words))
    assert left_out == []


def test_hold_out_is_deterministic_and_order_free_but_seed_dependent():
    rows = _rows()
    first, _ = hold_out_speakers(rows, {"dev": 40.0, "test": 40.0}, seed=7)
    again, _ = hold_out_speakers(list(reversed(rows)), {"dev": 40.0, "test": 40.0}, seed=7)
    assert {k: _speakers(v) for k, v in first.items()} == {k: _speakers(v) for k, v in again.items()}
    others = {frozenset(_speakers(hold_out_speakers(rows, {"dev": 40.0}, seed=s)[0]["dev"])) for s in range(5)}
    assert len(others) > 1


def test_hold_out_leaves_a_speaker_for_train():
    rows = _rows(n_speakers=2, per_speaker=1)
    splits, _ = hold_out_speakers(rows, {"dev": 1000.0, "test": 1000.0}, seed=0)
    assert len(splits["train"]) == 1 and len(splits["dev"]) == 1 and splits["test"] == []


def test_rows_without_speaker_are_their_own_speaker():
    rows = [Row(ID=f"u{i}", wav="w", duration=1.0, topic="a") for i in range(10)]
    splits, _ = hold_out_speakers(rows, {"dev": 2.0, "test": 2.0}, seed=0)
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [6, 2, 2]


def test_conflicting_speakers_stay_in_test_then_dev():
    rows = _rows(n_speakers=3, per_speaker=3)
    given = {"train": rows[0:2] + rows[3:4], "dev": rows[2:3] + rows[4:6] + rows[6:7], "test": rows[7:9]}
    kept, conflicts = resolve_speaker_conflicts(given)
    assert _speakers(kept["test"]) == {"s02"} and _speakers(kept["dev"]) == {"s00", "s01"}
    assert kept["train"] == [] and len(kept["dev"]) == 3
    reasons = {row.ID: reason for row, reason in conflicts}
    assert set(reasons) == {"s00_u0", "s00_u1", "s01_u0", "s02_u0"}
    assert "speaker 's02' is given in dev and in test" in reasons["s02_u0"]
    assert "speaker 's00' is given in train and in dev" in reasons["s00_u0"]
    assert "fix the split column or split lists" in reasons["s00_u0"]


def test_require_eval_text_only_when_the_corpus_has_text():
    rows = _rows(n_speakers=1, per_speaker=4)
    assert rows[0].words == ""
    splits = {"train": rows[1:2], "dev": [rows[0], rows[2]], "test": rows[3:]}
    kept, dropped = require_eval_text(splits, has_text=True)
    assert [(r.ID, "no transcript for dev row 's00_u0'" in why) for r, why in dropped] == [("s00_u0", True)]
    assert kept["dev"] == [rows[2]] and kept["train"] == rows[1:2]
    assert require_eval_text(splits, has_text=False) == (splits, [])


def test_finish_splits_sets_subsets_and_sorts():
    rows = _rows(n_speakers=2, per_speaker=2)
    out = finish_splits({"train": list(reversed(rows[:3])), "test": rows[3:]})
    assert [r.ID for r in out["train"]] == sorted(r.ID for r in rows[:3]) and out["dev"] == []
    assert {r.subset for r in out["train"]} == {"transcribed", "untranscribed"}
    assert {r.subset for r in out["test"]} == {""}


def test_read_split_lists(tmp_path):
    (tmp_path / "dev.txt").write_text("# comment\na spk\n\nb\n")
    (tmp_path / "test.txt").write_text("c\n")
    assert read_split_lists(tmp_path) == {"dev": {"a", "b"}, "test": {"c"}}
    (tmp_path / "test.txt").write_bytes("\xe4".encode("latin-1"))
    with pytest.raises(PrepError, match="not UTF-8"):
        read_split_lists(tmp_path)
    (tmp_path / "test.txt").unlink()
    with pytest.raises(PrepError, match="test.txt is missing"):
        read_split_lists(tmp_path)


def test_a_huge_speaker_does_not_swallow_a_small_target():
    rows = [Row(ID=f"big{i}", wav="w", duration=3600.0, topic="a", speaker="big") for i in range(5)]
    rows += [Row(ID=f"s{i}", wav="w", duration=100.0, topic="a", speaker=f"s{i}") for i in range(20)]
    for seed in range(5):
        splits, _ = hold_out_speakers(rows, {"dev": 300.0, "test": 300.0}, seed=seed)
        assert "big" not in _speakers(splits["dev"]) | _speakers(splits["test"])
        assert sum(r.duration for r in splits["dev"]) == 300.0
    splits, _ = hold_out_speakers(rows[:5] + rows[-1:], {"dev": 10.0}, seed=0)
    assert _speakers(splits["dev"]) == {"s19"}
