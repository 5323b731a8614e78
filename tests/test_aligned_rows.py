"""ASR training on long recordings: the built-in corpus's word alignments, and the aligned segments
that replace a long training row (topic_id.training.aligned_rows, data_prep.alignments)."""

import pytest

from data_prep.alignments import aligned_segments, alignment_path, read_alignment, write_alignment
from data_prep.prepared import read_manifest
from data_prep.text_norm import normalize_transcript
from topic_id.errors import ConfigError
from topic_id.training.aligned_rows import long_training_counts, segment_long_rows
from topic_id.training.dataio import read_split


def test_builtin_corpus_aligns_the_words_of_every_transcribed_row(tiny_corpus):
    aligned = 0
    for split in ("train", "dev", "test"):
        for row in read_manifest(tiny_corpus / f"{split}.csv"):
            path = alignment_path(tiny_corpus, row["ID"])
            # An untranscribed row's words are hidden from training, so no alignment gives them away.
            assert path.is_file() == bool(row["words"])
            if row["words"]:
                words, reason = read_alignment(path, row["duration"])
                assert reason is None
                assert normalize_transcript(" ".join(w for _, _, w in words)) == row["words"]
                assert all(s < e <= f for (s, e, _), (f, _, _) in zip(words, words[1:]))
                aligned += 1
    assert aligned >= 32


def test_segments_keep_whole_words_under_the_limit():
    words = [(0.1, 0.5, "No,"), (0.6, 1.0, "mä"), (1.1, 1.9, "kävin."), (2.9, 3.3, "Siellä"),
             (3.4, 4.2, "oli."), (5.0, 9.8, "pitkäääääää"), (10.0, 10.4, "joo.")]
    segments = aligned_segments(words, 4.5)
    # The cut falls in the longest pause (between sentences), the over-long word makes no segment.
    assert [text for _, _, text in segments] == ["no mä kävin", "siellä oli", "joo"]
    assert all(end - start < 4.5 for start, end, _ in segments)
    assert all(a[1] <= b[0] for a, b in zip(segments, segments[1:]))
    assert aligned_segments([], 4.5) == []


def _hparams(folder, limit, mode="segment"):
    return {"data_folder": str(folder), "train_csv": str(folder / "train.csv"), "dev_csv": str(folder / "dev.csv"),
            "test_csv": str(folder / "test.csv"), "train_subset": "transcribed", "avoid_if_longer_than": limit,
            "long_training": mode}


def test_long_rows_become_their_aligned_segments_and_are_accounted(corpus_copy):
    limit = 3.0
    rows = {r["ID"]: r for r in read_manifest(corpus_copy / "train.csv") if r["subset"] == "transcribed"}
    long_ids = sorted(i for i, r in rows.items() if r["duration"] > limit)
    assert len(long_ids) >= 3
    # One long row without its alignment is left out, as without segmenting.
    alignment_path(corpus_copy, long_ids[0]).unlink()
    data, counts = segment_long_rows(rows, corpus_copy, limit)
    assert counts["long_rows"] == len(long_ids)
    assert counts["segmented"] + counts["left_out"] == counts["long_rows"] and counts["left_out"] >= 1
    for rec_id in long_ids[1:]:
        pieces = [(k, r) for k, r in data.items() if k.startswith(f"{rec_id}-seg")]
        if not pieces:
            continue
        assert rec_id not in data
        assert " ".join(r["words"] for _, r in pieces) == rows[rec_id]["words"]
        assert all(r["duration"] < limit and r["wav"] == rows[rec_id]["wav"] for _, r in pieces)
        assert pieces[0][1]["start"] < pieces[-1][1]["stop"] <= rows[rec_id]["duration"]
    assert counts["segments"] == sum("-seg" in k for k in data)
    dataset = read_split(_hparams(corpus_copy, limit), "train")
    ids = set(dataset.data_ids)
    assert long_ids[0] not in ids and ids >= {k for k in data if "-seg" in k}
    assert all(dataset.data[i]["duration"] <= limit for i in ids)
    assert long_training_counts(_hparams(corpus_copy, limit)) == {
        "long_training": "segment", "avoid_if_longer_than": limit, **counts}
    dropped = long_training_counts(_hparams(corpus_copy, limit, "drop"))
    assert dropped["left_out"] == len(long_ids) and dropped["segments"] == 0
    with pytest.raises(ConfigError, match="long_training"):
        read_split(_hparams(corpus_copy, limit, "cut"), "train")


def test_written_alignment_reads_back_within_the_audio(tmp_path):
    path = tmp_path / "x.TextGrid"
    write_alignment(path, [(0.1, 0.5, "No"), (0.6, 1.31, "joo.")], 1.3)
    words, reason = read_alignment(path, 1.3)
    assert reason is None and words == [(0.1, 0.5, "No"), (0.6, 1.3, "joo.")]
