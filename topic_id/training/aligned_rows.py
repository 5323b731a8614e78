"""ASR training rows from long transcribed recordings: their word-aligned segments.

An attention decoder trained on a few long recordings among many short ones learns worse on all
of them, so the ASR leaves training recordings longer than ``avoid_if_longer_than`` out. With
``long_training: segment`` a long transcribed recording whose prepared corpus holds its word
alignment (``<data_folder>/alignments/<ID>.TextGrid``, LP's TextGrid form, which LP preparation
copies and the built-in corpus writes: :mod:`data_prep.alignments`) is not left out but read as
its aligned segments: groups of whole words (sentences, where the pauses between them are the
longest) each shorter than the limit (:func:`data_prep.alignments.aligned_segments`), each a row
``<ID>-seg<k>`` with the recording's file, its ``start`` and ``stop`` seconds and its own words.
The audio pipeline reads the span (:func:`segment_of`). A long recording without a usable
alignment is left out, as before; :func:`segment_long_rows` counts both.
"""

import logging

from data_prep.alignments import aligned_segments, alignment_path, read_alignment
from data_prep.duration_limit import segment_ids

logger = logging.getLogger(__name__)

LONG_TRAINING = ("drop", "segment")
"""What ASR training does with a transcribed recording over ``avoid_if_longer_than``."""


def segment_long_rows(data, data_folder, limit):
    """Replace each aligned training row longer than ``limit`` seconds by its aligned segments.

    Arguments
    ---------
    data : dict
        ``{ID: row}`` as SpeechBrain's ``DynamicItemDataset`` holds a manifest (``duration`` a
        float, ``wav`` a path, ``words`` the transcript; its reserved ``id`` is dropped).
    data_folder : str or Path
        The prepared corpus, whose ``alignments/`` folder holds the TextGrids.
    limit : float
        Seconds every training row stays below (``avoid_if_longer_than``).

    Returns
    -------
    tuple
        ``(data, counts)``: the rows, every one with ``start`` (seconds) and ``stop`` (seconds,
        None for the end of the file), the long ones that have an alignment replaced by their
        segments (the others stay, for the duration filter to leave out); ``counts`` has
        ``long_rows`` (transcribed rows over the limit), ``segmented`` (of them, read as
        segments), ``segments`` (their rows) and ``left_out`` (no usable alignment or no
        segment), so that ``segmented + left_out == long_rows``.

    Example
    -------
    >>> data = {"a": {"wav": "a.wav", "duration": 3.0, "words": "joo"}}
    >>> segment_long_rows(data, "nowhere", 10.0)
    ({'a': {'wav': 'a.wav', 'duration': 3.0, 'words': 'joo', 'start': 0.0, 'stop': None}}, \
{'long_rows': 0, 'segmented': 0, 'segments': 0, 'left_out': 0})
    """
    out = {}
    counts = {"long_rows": 0, "segmented": 0, "segments": 0, "left_out": 0}
    for rec_id, row in data.items():
        # SpeechBrain's datasets add the reserved ``id`` to each row; a new dataset adds its own.
        row = {key: value for key, value in row.items() if key != "id"}
        if float(row["duration"]) <= limit or not str(row.get("words", "")).strip():
            out[rec_id] = dict(row, start=0.0, stop=None)
            continue
        counts["long_rows"] += 1
        segments = []
        path = alignment_path(data_folder, rec_id)
        if path.is_file():
            words, reason = read_alignment(path, float(row["duration"]))
            if reason is None:
                segments = aligned_segments(words, limit, float(row["duration"]))
            else:
                logger.warning("train row %s over %g s is left out: %s", rec_id, limit, reason)
        if not segments:
            counts["left_out"] += 1
            out[rec_id] = dict(row, start=0.0, stop=None)
            continue
        counts["segmented"] += 1
        counts["segments"] += len(segments)
        for seg_id, (start, stop, text) in zip(segment_ids(rec_id, len(segments)), segments):
            out[seg_id] = dict(row, start=start, stop=stop, duration=round(stop - start, 3), words=text)
    return out, counts


def segment_of(wav, start, stop, sample_rate):
    """The span ``start``-``stop`` seconds (None: to the end) of a waveform at ``sample_rate``.

    >>> import torch
    >>> segment_of(torch.arange(10.0), 0.2, 0.5, 10).tolist()
    [2.0, 3.0, 4.0]
    >>> len(segment_of(torch.arange(10.0), 0.0, None, 10))
    10
    """
    first = round(float(start) * sample_rate)
    return wav[first:] if stop is None else wav[first:round(float(stop) * sample_rate)]


def long_training_counts(hparams):
    """What ASR training did with its transcribed rows over ``avoid_if_longer_than``, for the run's
    summary: the counts of :func:`segment_long_rows` (with ``long_training: drop`` every long row
    is ``left_out``), and ``long_training`` itself; None without a limit.

    Arguments
    ---------
    hparams : dict-like
        ``train_csv``, ``train_subset``, ``data_folder``, ``avoid_if_longer_than``,
        ``long_training``.
    """
    from data_prep.prepared import read_manifest

    limit = hparams.get("avoid_if_longer_than")
    if not limit:
        return None
    subset = hparams.get("train_subset", "all")
    rows = {r["ID"]: r for r in read_manifest(hparams["train_csv"])
            if subset == "all" or r.get("subset") == subset}
    mode = hparams.get("long_training", "drop")
    folder = hparams["data_folder"] if mode == "segment" else None
    if folder is None:
        long_rows = sum(r["duration"] > limit and bool(r["words"].strip()) for r in rows.values())
        counts = {"long_rows": long_rows, "segmented": 0, "segments": 0, "left_out": long_rows}
    else:
        counts = segment_long_rows(rows, folder, limit)[1]
    return {"long_training": mode, "avoid_if_longer_than": float(limit), **counts}
