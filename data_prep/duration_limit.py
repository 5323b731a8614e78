"""Recordings longer than the duration limit: dropped, as in the paper, or cut into segments.

The paper keeps LP recordings shorter than 50 s (:data:`data_prep.manifest.MAX_DURATION`) and
drops the others; that stays the default (``--long drop``). With ``--long segment`` the ``lp``,
``csv`` and ``folder`` preparations cut such a recording into segments shorter than the limit
instead, each written as its own 16 kHz FLAC file (``OUT_DIR/audio/`` for LP, ``OUT_DIR/segments/``
otherwise) with the ID ``<ID>-seg<k>`` (``k`` from 1, zero-padded to at least two digits and to
the same width within a recording, so that IDs sort in time order) and the recording's topic,
speaker and split.

**Where to cut** (:func:`find_cuts`): short-time energy over 25 ms frames every 10 ms; a pause
is a run of at least :data:`MIN_PAUSE` seconds of frames quieter than the recording's 10th
percentile of frame energy plus the larger of 6 dB and a quarter of its dynamic range (a
recording with less than 10 dB of range has no pauses). Each segment ends in the middle of the
latest pause that keeps it shorter than the limit and at least :data:`MIN_SEGMENT` long, so a
segment is as long as the limit allows and words are not cut; without such a pause the cut is
hard, 1 ms before the limit (so that the manifest's 3-decimal duration is below it too).

**Transcripts**: a manual transcript says which words a recording holds, not when they are
said. Spreading its words over the segments in proportion to their durations would be a guess
that puts words into segments that do not say them. Where a word alignment gives each word its
time (LP: ``alignments/manual_*/<ID>.TextGrid``, read by :mod:`data_prep.alignments`), each
segment gets the words whose midpoint lies inside it, normalised; a train segment with words is
``transcribed`` and one without ``untranscribed``, and a dev/test segment without words is left
out, since the text systems cannot score it (``summary.json``: ``transcripts_aligned``,
``segments_without_words``). Without an alignment (csv and folder corpora, an LP recording
without a TextGrid or with one that cannot be used) the transcript is given up: the segments are
untranscribed, and ``summary.json`` counts these recordings as ``transcripts_given_up``.

**Splits**: whether a recording will be cut, and whether it keeps its transcript, is settled
when it is read, and it is cut only after the splits are drawn or taken from the input; the
speaker-disjoint draw and the given splits therefore see one recording as one unit, and all its
segments land in its split.

**Accounting**: a cut recording is neither kept whole nor dropped: ``summary.json`` has
``segmented`` (recordings cut), ``segment_rows`` (their rows in the manifests), ``kept_whole``
and ``segmented_recordings`` (source, ID and number of segments of each), and
``kept_whole + segmented + dropped == input_rows``. Dev/test segments left out for want of words
(``segments_without_words``) are not among ``segment_rows`` nor their recording's segments; the
recording still counts as ``segmented``.
"""

import glob
import hashlib
import re
from pathlib import Path

from corpus_tools.pauses import MIN_PAUSE, find_pauses
from data_prep.alignments import words_per_segment
from corpus_tools.audio import decode_mono, write_clipped
from data_prep.intake import wav_entry
from data_prep.manifest import Row
SAMPLE_RATE = 16000
"""The rate of every segment file."""
MIN_SEGMENT = 1.0
"""Seconds a segment lasts at least when it ends at a pause."""


def find_cuts(signal, rate, limit, min_pause=MIN_PAUSE):
    """Where to cut a recording so that every segment is shorter than ``limit`` seconds.

    Arguments
    ---------
    signal : numpy.ndarray
        Mono samples.
    rate : int
        Their rate.
    limit : float
        Seconds every segment must stay below.
    min_pause : float
        Seconds of quiet that make a pause.

    Returns
    -------
    list of int
        Segment boundaries in samples: ``0``, the cuts, ``len(signal)``.

    Example
    -------
    Tone, a 1 s pause, tone, a 1 s pause, tone; under a 6 s limit the cuts fall in the pauses:

    >>> import numpy as np
    >>> rate = 1000
    >>> tone, pause = 0.5 * np.sin(np.arange(4 * rate)), np.zeros(rate)
    >>> signal = np.concatenate([tone, pause, tone, pause, tone[:2 * rate]])
    >>> [round(b / rate, 1) for b in find_cuts(signal, rate, 6.0)]
    [0.0, 4.5, 9.5, 12.0]

    Without pauses the cuts are hard, just under the limit:

    >>> [b / rate for b in find_cuts(np.zeros(12 * rate), rate, 6.0)]
    [0.0, 5.999, 11.998, 12.0]
    """
    longest = round((limit - 0.001) * rate)
    shortest = round(min(MIN_SEGMENT, limit / 2) * rate)
    pauses = find_pauses(signal, rate, min_pause)
    bounds = [0]
    while len(signal) - bounds[-1] > longest:
        low, high = bounds[-1] + shortest, bounds[-1] + longest
        cut = high
        for start, end in reversed(pauses):
            start, end = max(start, low), min(end, high)
            if start < end:
                cut = (start + end) // 2
                break
        bounds.append(cut)
    bounds.append(len(signal))
    return bounds


def segment_ids(rec_id, n):
    """The IDs of the ``n`` segments of a recording, in time order.

    >>> segment_ids("clt0012345_rec0003", 3)
    ['clt0012345_rec0003-seg01', 'clt0012345_rec0003-seg02', 'clt0012345_rec0003-seg03']
    >>> segment_ids("a", 120)[-1]
    'a-seg120'
    """
    width = max(2, len(str(n)))
    return [f"{rec_id}-seg{k:0{width}d}" for k in range(1, n + 1)]


def file_stem(seg_id):
    """A file name for a segment ID: the ID itself where it is a safe name, else a safe form of it
    with a hash of the ID, so that two IDs that differ only in unsafe characters stay apart.

    >>> file_stem("clt1_rec2-seg01"), file_stem("my rec/1-seg01")
    ('clt1_rec2-seg01', 'my_rec_1-seg01-6c5df4f3')
    """
    safe = re.sub(r"[^\w.-]+", "_", seg_id).lstrip(".")
    if safe == seg_id:
        return safe
    return f"{safe}-{hashlib.sha1(seg_id.encode('utf-8')).hexdigest()[:8]}"


def cut_recording(src, folder, rec_id, limit):
    """Decode a recording, cut it at pauses and write each segment as a 16 kHz FLAC file.

    Arguments
    ---------
    src : str or Path
        The recording, any rate and channel count.
    folder : str or Path
        Where the segment files go.
    rec_id : str
        The recording's ID, which the segment IDs extend.
    limit : float
        Seconds every segment must stay below.

    Returns
    -------
    tuple
        ``(pieces, reason)``: ``[(segment ID, path, seconds)]`` and None, or None and why the
        recording cannot be decoded.

    Raises
    ------
    PrepError
        When a segment cannot be written.
    """
    signal, reason = decode_mono(src, SAMPLE_RATE)
    if reason is not None:
        return None, reason
    bounds = find_cuts(signal, SAMPLE_RATE, limit)
    pieces = []
    for seg_id, start, end in zip(segment_ids(rec_id, len(bounds) - 1), bounds, bounds[1:]):
        path = Path(folder) / f"{file_stem(seg_id)}.flac"
        write_clipped(path, signal[start:end], SAMPLE_RATE)
        pieces.append((seg_id, path, (end - start) / SAMPLE_RATE))
    remove_stale_segments(folder, rec_id, {path for _, path, _ in pieces})
    return pieces, None


def remove_stale_segments(folder, rec_id, keep):
    """Delete segment files of ``rec_id`` that an earlier cut wrote and this one did not.

    A rerun with another limit cuts a recording into other pieces; the earlier pieces would stay
    beside the new ones, referenced by no manifest. Only files whose name is exactly
    :func:`file_stem` of one of this recording's segment IDs are removed, so a recording whose ID
    makes the same safe name keeps its own.

    Arguments
    ---------
    folder : str or Path
        The segment folder.
    rec_id : str
        The recording's ID.
    keep : set of Path
        The segment files of the new cut.
    """
    prefix = re.sub(r"[^\w.-]+", "_", f"{rec_id}-seg").lstrip(".")
    for path in Path(folder).glob(glob.escape(prefix) + "*.flac"):
        match = re.fullmatch(re.escape(prefix) + r"(\d+)(-[0-9a-f]{8})?", path.stem)
        if match and path not in keep and file_stem(f"{rec_id}-seg{match.group(1)}") == path.stem:
            path.unlink()


def replace_by_segments(splits, results, intake, out_dir):
    """Put the segments of every cut recording in its place, in its split.

    The segments of a recording with a word alignment (:attr:`Intake.aligned
    <data_prep.intake.Intake.aligned>`) get the words aligned inside them
    (:func:`~data_prep.alignments.words_per_segment`); the others get none. A dev/test segment
    without an aligned word is left out (its file removed, ``segments_without_words`` counted):
    every system is scored on the same dev/test rows, the text systems on each row's manual
    transcript, and this segment has none (an empty transcript is no transcript, and the
    recording's whole transcript would name words the segment does not say); the recording's
    other segments stay. A dev/test recording none of whose segments has a word is dropped.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}``; the rows of :attr:`Intake.long <data_prep.intake.Intake.long>` are
        replaced.
    results : dict
        ``{ID: (pieces, reason)}`` of :func:`cut_recording` for each of those rows; a row with a
        reason is dropped with it.
    intake : data_prep.intake.Intake
        The accounting: records each cut recording, and claims its segment IDs.
    out_dir : Path
        The prepared folder (segment paths under it are ``$data_root``-relative).

    Returns
    -------
    dict
        ``{split: [Row]}`` with segment rows instead of the cut recordings.
    """
    out = {}
    for split, rows in splits.items():
        out[split] = []
        for row in rows:
            if row.ID not in intake.long:
                out[split].append(row)
                continue
            pieces, reason = results[row.ID]
            if reason is None:
                pieces, reason = _segment_words(row, pieces, split, intake)
            reason = reason or intake.record_segments(row, [seg_id for seg_id, _, _, _ in pieces])
            if reason is not None:
                for _, path, *_ in pieces or ():
                    path.unlink(missing_ok=True)
                intake.drop_row(row, reason)
                continue
            out[split] += [Row(ID=seg_id, wav=wav_entry(path, out_dir), duration=seconds, topic=row.topic,
                               words=words, speaker=row.speaker)
                           for seg_id, path, seconds, words in pieces]
    return out


def _segment_words(row, pieces, split, intake):
    """The pieces of a cut recording with their aligned words, ``[(seg_id, path, seconds,
    words)]``, less the dev/test ones without words; and the reason to drop the recording when
    none is left (see :func:`replace_by_segments`)."""
    alignment = intake.aligned.get(row.ID)
    if alignment is None:
        return [piece + ("",) for piece in pieces], None
    texts = words_per_segment(alignment, [seconds for _, _, seconds in pieces])
    kept = [piece + (words,) for piece, words in zip(pieces, texts) if words or split == "train"]
    if split != "train":
        for (_, path, _), words in zip(pieces, texts):
            if not words:
                path.unlink(missing_ok=True)
                intake.counts["segments_without_words"] += 1
    if not kept:
        return [], (f"no aligned word in any segment of {split} recording {row.ID!r}: dev/test rows need "
                    "words to score the text systems; check its alignment or move it to train")
    return kept, None


def explain_given_up(pairs, intake):
    """Say, in the reason of a row dropped for lacking a transcript, that it had one until it was
    marked to be cut (the reason is otherwise unchanged)."""
    note = (" (its manual transcript was given up because the recording is over the duration "
            "limit and is cut into segments, and without a usable word alignment a transcript "
            "cannot be shared among them)")
    return [(row, reason + note if row.ID in intake.given_up else reason) for row, reason in pairs]


def summary_entries(intake):
    """The ``summary.json`` entries of the long-recording choice: none for the default drop."""
    if intake.segmented is None:
        return {}
    return {"long": "segment",
            "transcripts_given_up": sum(s.ID in intake.given_up for s in intake.segmented),
            "transcripts_aligned": sum(s.ID in intake.aligned for s in intake.segmented),
            "segments_without_words": intake.counts["segments_without_words"]}
