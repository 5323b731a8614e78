"""Cutting long recordings into pieces an attention ASR can decode, and joining their hypotheses.

An attention decoder trained on short utterances stops after a few words on much longer input,
so long-form transcription (:func:`topic_id.training.transcription.decode`) decodes pieces about as long as
the ASR's training utterances. :func:`segment` finds pauses by short-time energy and cuts at the
longest ones until every piece is within the limit (short neighbours stay together); speech with no
pause within the limit falls back to fixed windows that overlap, and :func:`join_hypotheses` keeps
the words those overlaps hold once. Pure NumPy: no model, no download.
"""

import logging
import math

import numpy as np

from corpus_tools.pauses import find_pauses
from data_prep.manifest import PrepError
from data_prep.prepared import read_manifest

logger = logging.getLogger(__name__)


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


def segment(signal, sample_rate, max_segment_seconds, min_pause_seconds=0.15, margin_seconds=0.1,
            overlap_seconds=1.0):
    """Sample ranges of the pieces of a recording, each at most ``max_segment_seconds`` long.

    The rule: a stretch longer than the limit (at first the whole recording) is split at its
    longest pause (of equal ones, the one nearest its middle), each side keeping up to
    ``margin_seconds`` of it, and so on until every piece is within the limit: short neighbours
    stay together, and cuts fall at the long pauses between sentences rather than at a hesitation
    inside one. Pauses are runs of quiet frames at least ``min_pause_seconds`` long
    (:func:`corpus_tools.pauses.find_pauses`, the pause finder data preparation cuts long
    recordings with), quiet relative to the stretch being split, so that a noisier or quieter part
    of the recording is judged on its own (or, where that finds none, relative to the whole
    recording). Silence a stretch begins or ends with is left out beyond the margin. A stretch with
    no pause (continuous speech) is cut into fixed windows that overlap by ``overlap_seconds`` (at
    most half a window), for :func:`join_hypotheses` to join. A recording within the limit is one
    piece, whole.

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
        Pause kept on each side of a cut. Training utterances begin and end with a little
        silence; more than that costs words (on long recordings joined from the built-in
        corpus's test utterances, 0.1 s decoded best of the margins tried).
    overlap_seconds : float
        Overlap of the fixed windows of the fallback.

    Returns
    -------
    list of tuple
        ``(start, end)`` sample ranges (end exclusive), in order; consecutive ranges overlap only
        within a fixed-window run.

    Example
    -------
    Four 1 s tones, 0.5 s apart, with a limit of 3 s: pairs of tones, cut in the middle pause,
    keeping 0.1 s of it on each side.

    >>> rate = 1000
    >>> tone = np.sin(np.arange(rate) * 0.9)
    >>> gap = np.zeros(rate // 2)
    >>> x = np.concatenate([tone, gap, tone, gap, tone, gap, tone])
    >>> segment(x, rate, 3.0)
    [(0, 2600), (2895, 5500)]

    Ten seconds of a tone with no pause: 4 s windows overlapping by at least 1 s.

    >>> segment(np.sin(np.arange(10 * rate) * 0.9), rate, 4.0)
    [(0, 4000), (3000, 7000), (6000, 10000)]
    """
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    limit = int(max_segment_seconds * sample_rate)
    if limit <= 0:
        raise ValueError(f"max_segment_seconds must be positive, got {max_segment_seconds}")
    margin = round(margin_seconds * sample_rate)
    overlap = min(round(overlap_seconds * sample_rate), limit // 2)
    everywhere = find_pauses(x, sample_rate, min_pause_seconds)
    # The last energy frame may end short of the signal: a pause ending within a frame of the end
    # is trailing silence.
    edge = round(0.025 * sample_rate)
    pieces, todo = [], [(0, len(x))]
    while todo:
        s, e = todo.pop()
        if e - s <= limit:
            pieces.append((s, e))
            continue
        # Pauses found with the statistics of this stretch alone, so that a stretch quieter or
        # noisier than the rest of the recording gets its own threshold.
        pauses = [(s + a, s + b) for a, b in find_pauses(x[s:e], sample_rate, min_pause_seconds)]
        if pauses and pauses[0][0] == s and pauses[0][1] - margin > s:  # leading silence
            todo.append((pauses[0][1] - margin, e))
            continue
        if pauses and e - pauses[-1][1] < edge and pauses[-1][0] + margin < e:  # trailing silence
            todo.append((s, pauses[-1][0] + margin))
            continue
        inner = [(a, b) for a, b in pauses if s < a and b <= e - edge]
        if not inner:  # a stretch mostly speech may show no pause of its own: the recording's
            inner = [(a, b) for a, b in everywhere if s < a and b <= e - edge]
        if not inner:
            pieces += fixed_windows(s, e, limit, overlap)
            continue
        a, b = max(inner, key=lambda p: (p[1] - p[0], -abs(p[0] + p[1] - s - e)))
        middle = (a + b) // 2
        todo += [(max(b - margin, middle), e), (s, min(a + margin, middle))]  # left popped first
    return pieces


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


def decode_in_pieces(wavs, sample_rate, max_segment_seconds, decode_batch, batch_size=8):
    """Long-form decoding of waveforms with any decoder of padded batches.

    A batch whose recordings are all within the limit (or no limit) is decoded as one batch, whole.
    Otherwise each recording is cut into pieces (:func:`segment`), the pieces of all recordings are
    decoded ``batch_size`` at a time in order of length (little padding), and each recording's
    hypotheses are joined in order (:func:`join_hypotheses`).

    Arguments
    ---------
    wavs : list of torch.Tensor
        One 1-D waveform per recording.
    sample_rate : int
        Their rate.
    max_segment_seconds : float or None
        The longest piece.
    decode_batch : callable
        Maps a list of waveforms to their hypotheses (strings), in order.
    batch_size : int
        Pieces per call of ``decode_batch``.

    Returns
    -------
    list of str

    Example
    -------
    Within the limit, one call; 25 s of a tone with no pause, three overlapping 10 s windows
    (the words their overlaps share kept once):

    >>> import torch
    >>> rate, seen = 1000, []
    >>> def decoder(batch):
    ...     seen.append([len(w) / rate for w in batch])
    ...     return ["sana"] * len(batch)
    >>> decode_in_pieces([torch.zeros(5 * rate), torch.zeros(3 * rate)], rate, 10.0, decoder)
    ['sana', 'sana']
    >>> tone = torch.sin(torch.arange(25 * rate) * 0.9)
    >>> decode_in_pieces([tone], rate, 10.0, decoder), seen[1]
    (['sana'], [10.0, 10.0, 10.0])
    """
    if max_segment_seconds is None or all(len(w) <= max_segment_seconds * sample_rate for w in wavs):
        return list(decode_batch(wavs))
    ranges = [segment(w.cpu(), sample_rate, max_segment_seconds) for w in wavs]
    pieces = [(i, k) for i, r in enumerate(ranges) for k in range(len(r))]
    pieces.sort(key=lambda p: ranges[p[0]][p[1]][1] - ranges[p[0]][p[1]][0])
    hyps = [[None] * len(r) for r in ranges]
    for start in range(0, len(pieces), batch_size):
        chunk = pieces[start : start + batch_size]
        for (i, k), hyp in zip(chunk, decode_batch([wavs[i][slice(*ranges[i][k])] for i, k in chunk])):
            hyps[i][k] = hyp
    return [join_hypotheses(h, r) for h, r in zip(hyps, ranges)]


DEFAULT_MAX_SEGMENT_SECONDS = 10.0
"""The segment limit of an ASR whose training durations cannot be read (its manifest moved or
is gone): about twice the utterances of common read-speech corpora."""

SEGMENT_HEADROOM = 1.25
"""The segment limit over the usual length of a training utterance (:data:`SEGMENT_QUANTILE`). An
attention decoder copes with input a little longer than it was trained on (it fails at about twice
as long), and dev, test and untranscribed recordings run a little past the transcribed
training rows: those are decoded whole, as before long-form decoding, rather than cut in two."""

SEGMENT_QUANTILE = 0.9
"""Which training duration the segment limit scales: the 90th percentile, not the longest. A
handful of long training recordings does not teach the decoder to read to the end of input that
long, so a limit scaled from the longest one lets through pieces the decoder stops short on; the
usual length does not move with a few outliers (on the built-in corpus, a lower WER than a limit
from the longest). Where the training durations are even, as on a corpus of one sentence per
recording, the two agree."""


def training_duration(train_csv, train_subset="all", avoid_if_longer_than=None, quantile=1.0):
    """A training duration (seconds) of an ASR: the ``quantile`` (1: the longest) of the
    ``duration`` column of the rows of ``train_csv`` it trained on (``subset == train_subset``
    unless ``all``, and not longer than ``avoid_if_longer_than``); None when the manifest cannot be
    read.

    Arguments
    ---------
    train_csv : str or Path
        The run's training manifest.
    train_subset : str
        The run's ``train_subset``.
    avoid_if_longer_than : float, optional
        The run's limit on training durations (:func:`topic_id.training.dataio.read_split`).
    quantile : float
        Between 0 and 1 (linear interpolation between rows, NumPy's default).

    Returns
    -------
    float or None
    """
    try:
        durations = [float(r["duration"]) for r in read_manifest(train_csv)
                     if train_subset in (None, "all") or r.get("subset") == train_subset]
    except (OSError, KeyError, TypeError, ValueError, PrepError):
        return None
    if avoid_if_longer_than:
        durations = [d for d in durations if d <= avoid_if_longer_than]
    return float(np.quantile(durations, quantile)) if durations else None


def segment_limit(hparams, where="the ASR"):
    """The segment limit of long-form decoding for an ASR run's hyperparameters (``train_csv``,
    ``train_subset``): :data:`SEGMENT_HEADROOM` times the :data:`SEGMENT_QUANTILE` of its training
    durations (input the attention decoder has learnt to decode to the end), rounded to 0.1 s;
    :data:`DEFAULT_MAX_SEGMENT_SECONDS`, with a warning, when the training manifest cannot be
    read.

    Arguments
    ---------
    hparams : dict-like
        The run's hyperparameters (built, or as read by :class:`topic_id.training.run_folder.Run`).
    where : str
        Names the run in the warning.

    Returns
    -------
    float
    """
    limit = training_duration(hparams.get("train_csv"), hparams.get("train_subset", "all"),
                              hparams.get("avoid_if_longer_than"), SEGMENT_QUANTILE)
    if limit is None:
        logger.warning("%s: no durations in its training manifest %s; segmenting long audio at %.0f s",
                       where, hparams.get("train_csv"), DEFAULT_MAX_SEGMENT_SECONDS)
        return DEFAULT_MAX_SEGMENT_SECONDS
    return round(SEGMENT_HEADROOM * limit, 1)
