"""Cutting long recordings into pieces an attention ASR can decode, and joining their hypotheses.

An attention decoder trained on short utterances stops after a few words on much longer input
(issue 14), so long-form transcription (:func:`topic_id.asr.decode`) decodes pieces about as long
as the ASR's training utterances. :func:`segment` finds pauses by short-time energy and cuts there,
merging short neighbours up to the limit; speech with no pause within the limit falls back to fixed
windows that overlap, and :func:`join_hypotheses` keeps the words those overlaps hold once. Pure
NumPy: no model, no download.
"""

import math

import numpy as np

from data_prep.long_recordings import find_pauses


def fixed_windows(start, end, length, overlap):
    """Windows of ``length`` samples covering ``[start, end)``, neighbours overlapping by at least
    ``overlap`` samples, evenly spread, the last ending at ``end``.

    Example
    -------
    >>> fixed_windows(0, 100, 40, 10)
    [(0, 40), (30, 70), (60, 100)]
    >>> fixed_windows(5, 30, 40, 10)
    [(5, 30)]
    """
    if end - start <= length:
        return [(start, end)]
    step = length - overlap
    n = math.ceil((end - start - length) / step) + 1
    starts = [start + round(k * (end - start - length) / (n - 1)) for k in range(n)]
    return [(s, s + length) for s in starts]


def segment(signal, sample_rate, max_segment_seconds, min_pause_seconds=0.15, margin_seconds=0.2,
            overlap_seconds=1.0):
    """Sample ranges of the pieces of a recording, each at most ``max_segment_seconds`` long.

    The rule: pauses are runs of quiet frames at least ``min_pause_seconds`` long, quiet relative
    to the recording's own quiet and loud frames (:func:`data_prep.long_recordings.find_pauses`,
    the pause finder data preparation cuts long recordings with); the speech between them, with up
    to ``margin_seconds`` of each neighbouring pause (never past its middle, nor past the limit),
    forms regions. Consecutive regions stay together in one piece while they span at most the
    limit; a longer run is split at its longest pause, recursively (:func:`_group`), so short
    neighbours are merged and cuts fall at sentence boundaries rather than at a hesitation. A
    region longer than the limit (speech with no pause in it) is cut into fixed windows that
    overlap by ``overlap_seconds`` (at most half a window), for :func:`join_hypotheses` to join. A
    recording within the limit is one piece, whole; the middle of long pauses is left out.

    Arguments
    ---------
    signal : array-like
        A 1-D waveform (NumPy array or torch tensor).
    sample_rate : int
        Its rate.
    max_segment_seconds : float
        The longest piece.
    min_pause_seconds : float
        The shortest pause to cut at.
    margin_seconds : float
        Silence kept around speech (training utterances have some too).
    overlap_seconds : float
        Overlap of the fixed windows of the fallback.

    Returns
    -------
    list of tuple
        ``(start, end)`` sample ranges (end exclusive), in order; consecutive ranges overlap only
        within a fixed-window run.

    Example
    -------
    Four 1 s tones, 0.5 s apart, with a limit of 3 s: pairs of tones, cut in the pauses, each
    tone with 0.2 s of its pauses.

    >>> rate = 1000
    >>> tone = np.sin(np.arange(rate) * 0.9)
    >>> gap = np.zeros(rate // 2)
    >>> x = np.concatenate([tone, gap, tone, gap, tone, gap, tone])
    >>> segment(x, rate, 3.0)
    [(0, 2700), (2795, 5500)]

    Ten seconds of a tone with no pause: 4 s windows overlapping by at least 1 s.

    >>> segment(np.sin(np.arange(10 * rate) * 0.9), rate, 4.0)
    [(0, 4000), (3000, 7000), (6000, 10000)]
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    limit = int(max_segment_seconds * sample_rate)
    if limit <= 0:
        raise ValueError(f"max_segment_seconds must be positive, got {max_segment_seconds}")
    if len(x) <= limit:
        return [(0, len(x))]
    regions, start = [], 0
    for a, b in find_pauses(x, sample_rate, min_pause_seconds):
        if a > start:
            regions.append((start, a))
        start = b
    if start < len(x):
        regions.append((start, len(x)))
    if not regions:  # nothing but "pause" (steady noise, a steady tone): keep all of it
        regions = [(0, len(x))]
    margin = round(margin_seconds * sample_rate)
    overlap = min(round(overlap_seconds * sample_rate), limit // 2)
    pieces = []
    for i, j in _group(regions, limit):
        s, e = regions[i][0], regions[j][1]
        if e - s > limit:
            pieces += fixed_windows(s, e, limit, overlap)
            continue
        # Some of each neighbouring pause, never past its middle, nor past the limit.
        grow = min(margin, (limit - (e - s)) // 2)
        s = max(s - grow, (regions[i - 1][1] + s) // 2 if i else 0)
        e = min(e + grow, (e + regions[j + 1][0]) // 2 if j + 1 < len(regions) else len(x))
        pieces.append((s, e))
    return pieces


def _group(regions, limit):
    """Runs ``(first, last)`` of consecutive speech regions spanning at most ``limit`` samples (or
    single regions), in order: a run too long is split at its longest pause (of equal ones, the
    one nearest its middle), recursively. Sentence boundaries are the long pauses, so pieces end
    there rather than at a hesitation inside a sentence."""
    groups, todo = [], [(0, len(regions) - 1)]
    while todo:
        i, j = todo.pop()
        if i == j or regions[j][1] - regions[i][0] <= limit:
            groups.append((i, j))
            continue
        middle = regions[i][0] + regions[j][1]
        k = max(range(i, j), key=lambda k: (regions[k + 1][0] - regions[k][1],
                                            -abs(regions[k][1] + regions[k + 1][0] - middle)))
        todo += [(k + 1, j), (i, k)]  # the left part is popped, and so emitted, first
    return groups


def join_hypotheses(hyps, ranges, max_overlap_words=12):
    """One recording's transcript from the hypotheses of its pieces, in order.

    Pieces cut at pauses are joined with a space. Where two pieces overlap (fixed windows), the
    words of the overlap appear in both hypotheses, the first and last of them often cut in two.
    The simple rule: the longest run of words shared by the last ``max_overlap_words`` words of the
    left hypothesis and the first ``max_overlap_words`` of the right one is kept once, with what
    precedes it on the left and what follows it on the right (the edge of each window is dropped);
    with no word in common the two are joined whole.

    Arguments
    ---------
    hyps : list of str
        One hypothesis per piece.
    ranges : list of tuple
        The pieces' ``(start, end)`` sample ranges (:func:`segment`).
    max_overlap_words : int
        How far into each hypothesis to look for the shared words.

    Returns
    -------
    str

    Example
    -------
    >>> join_hypotheses(["mä meen", "kotiin nyt"], [(0, 10), (12, 20)])
    'mä meen kotiin nyt'
    >>> join_hypotheses(["no mä meen kot", "meen kotiin nyt"], [(0, 10), (6, 20)])
    'no mä meen kotiin nyt'
    >>> join_hypotheses(["sit joo", "kyl"], [(0, 10), (6, 20)])
    'sit joo kyl'
    """
    words = []
    for i, hyp in enumerate(hyps):
        new = hyp.split()
        if i and ranges[i][0] < ranges[i - 1][1]:
            words, new = _drop_shared(words, new, max_overlap_words)
        words += new
    return " ".join(words)


def _drop_shared(left, right, window):
    """``left`` and ``right`` cut so that the longest run of words both hold near the join is kept
    once (of equally long runs, the one nearest the join)."""
    best = None  # (run length, where it starts in left, where it starts in right)
    for i in range(max(0, len(left) - window), len(left)):
        for j in range(min(window, len(right))):
            n = 0
            while i + n < len(left) and j + n < len(right) and left[i + n] == right[j + n]:
                n += 1
            if n and (best is None or (n, i) > best[:2]):
                best = (n, i, j)
    if best is None:
        return left, right
    n, i, j = best
    return left[: i + n], right[j + n :]
