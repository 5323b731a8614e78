"""Word alignments: which words of a manual transcript are said when.

Lahjoita puhetta delivers, beside each manual transcript ``annotations/manual_*/<ID>.txt``, a
Praat TextGrid ``alignments/manual_*/<ID>.TextGrid`` whose interval tier ``words`` gives each
word its start and end. When a long recording is cut into segments
(:mod:`data_prep.duration_limit`), these times say which words each segment holds, so the
segments keep the transcript that a bare transcript could only give up.

The file is read with `praatio <https://pypi.org/project/praatio/>`_, which reads the long and
the short TextGrid formats in UTF-8 or UTF-16. A file that cannot be read or parsed, lacks the
word tier, has no words in it, or places words after the end of the audio is not used: the
reason is returned, never raised, so that one bad file costs its recording's transcript and not
the preparation.
"""

import shutil
from bisect import bisect_right
from itertools import accumulate
from pathlib import Path

from praatio import textgrid
from praatio.data_classes.interval_tier import IntervalTier

from data_prep.text_norm import normalize_transcript

WORD_TIER = "words"
"""The name of the word tier of the LP alignments."""
ALIGNMENTS = "alignments"
"""The folder of a prepared corpus that holds its word alignments."""


def alignment_path(folder, rec_id):
    """Where a prepared corpus keeps the word alignment of recording ``rec_id``.

    >>> alignment_path("prepared", "demo-train-0001").as_posix()
    'prepared/alignments/demo-train-0001.TextGrid'
    """
    return Path(folder) / ALIGNMENTS / f"{rec_id}.TextGrid"


def copy_alignments(splits, files, out_dir):
    """Copy the word alignment of each transcribed manifest row into the prepared corpus
    (:func:`alignment_path`), as it is: its reader checks it against the audio when it is used.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}`` as written to the manifests.
    files : dict
        ``{ID: TextGrid path}`` of the recordings that have one.
    out_dir : str or Path
        The prepared corpus.

    Returns
    -------
    int
        How many were copied.
    """
    copied = 0
    for rows in splits.values():
        for row in rows:
            if row.words and row.ID in files:
                target = alignment_path(out_dir, row.ID)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(files[row.ID], target)
                copied += 1
    return copied


def write_alignment(path, words, duration, tier=WORD_TIER):
    """Write a word alignment as a long-format TextGrid with one interval tier, LP's form.

    Arguments
    ---------
    path : str or Path
        The TextGrid to write (its folder is created).
    words : list of tuple
        ``[(start_s, end_s, label)]`` in time order, within ``duration``.
    duration : float
        Seconds of the recording: the tier's end.
    tier : str
        The tier's name.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.TextGrid"
    >>> write_alignment(path, [(0.1, 0.5, "No"), (0.6, 1.2, "mökillä")], 1.5)
    >>> read_word_tier(path)
    ([(0.1, 0.5, 'No'), (0.6, 1.2, 'mökillä')], None)
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Rounded to the millisecond, as the manifests' durations; a word's end never passes the audio's.
    entries = [(round(s, 3), round(min(e, duration), 3), w) for s, e, w in words]
    grid = textgrid.Textgrid()
    grid.addTier(IntervalTier(tier, [e for e in entries if e[1] > e[0]], 0.0, round(duration, 3)))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


def read_word_tier(path, tier=WORD_TIER):
    """Read the non-empty intervals of a TextGrid's word tier.

    Arguments
    ---------
    path : str or Path
        A Praat TextGrid, long or short format.
    tier : str
        The name of the interval tier of words.

    Returns
    -------
    tuple
        ``(words, reason)``: ``[(start_s, end_s, label)]`` in time order and None, or None and
        why the file cannot be used.
    """
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=False,
                                     reportingMode="silence", duplicateNamesMode="rename")
    except OSError as err:
        return None, f"unreadable alignment {path} ({err.strerror})"
    # praatio reports a malformed file with whatever its parser hit (IndexError, ValueError,
    # its own ParsingError, ...), so any error of the parse means the same: not a usable file.
    except Exception as err:  # noqa: BLE001
        return None, f"malformed alignment {path} ({type(err).__name__}: {err})"
    if tier not in grid.tierNames:
        return None, (f"alignment {path} has no tier {tier!r} "
                      f"(tiers: {', '.join(grid.tierNames) or 'none'})")
    found = grid.getTier(tier)
    if not isinstance(found, IntervalTier):
        return None, f"alignment {path}: tier {tier!r} is a point tier, not an interval tier"
    words = sorted((float(e.start), float(e.end), e.label.strip()) for e in found.entries if e.label.strip())
    return words, None


def read_alignment(path, duration, tier=WORD_TIER):
    """Read a word alignment for a recording of ``duration`` seconds and check that it fits it.

    An alignment without a word (only noise markers, or empty) cannot carry a transcript, and
    one whose words lie after the end of the audio belongs to other audio (or to another rate);
    using either would give segments wrong text or none.

    Arguments
    ---------
    path : str or Path
        A Praat TextGrid.
    duration : float
        Seconds of the recording.
    tier : str
        The name of the interval tier of words.

    Returns
    -------
    tuple
        ``(words, reason)`` as of :func:`read_word_tier`.
    """
    words, reason = read_word_tier(path, tier)
    if reason is not None:
        return None, reason
    if not normalize_transcript(" ".join(label for _, _, label in words)):
        return None, f"alignment {path}: tier {tier!r} has no word (only silence or noise markers)"
    late = [(s, e, w) for s, e, w in words if (s + e) / 2 > duration]
    if late:
        return None, (f"alignment {path} places {late[0][2]!r} at {late[0][0]:.2f}-{late[0][1]:.2f} s, "
                      f"after the end of the {duration:.2f} s audio: it belongs to other audio")
    return words, None


def words_per_segment(words, durations):
    """Share aligned words among contiguous segments: each goes where its midpoint lies.

    The segments start at 0 and follow each other without gaps, so the cuts are the cumulative
    sums of their durations. A word whose midpoint is exactly at a cut goes to the later segment;
    one before 0 or after the end goes to the first or last (cuts fall in pauses, so neither
    happens to a word that is really said). Each segment's text is normalised with
    :func:`~data_prep.text_norm.normalize_transcript`, so noise markers go.

    Arguments
    ---------
    words : list of tuple
        ``[(start_s, end_s, label)]``, e.g. of :func:`read_word_tier`.
    durations : list of float
        Seconds of each segment, in time order.

    Returns
    -------
    list of str
        The normalised words of each segment; empty where no word lies.

    Example
    -------
    >>> words = [(0.2, 0.6, "No"), (0.7, 1.0, ".fp"), (1.1, 1.6, "mä"), (4.0, 4.5, "kävin"),
    ...          (4.6, 5.2, "mökillä")]
    >>> words_per_segment(words, [2.0, 1.5, 3.0])
    ['no mä', '', 'kävin mökillä']
    """
    cuts = list(accumulate(durations))[:-1]
    labels = [[] for _ in durations]
    for start, end, label in words:
        labels[bisect_right(cuts, (start + end) / 2)].append(label)
    return [normalize_transcript(" ".join(segment)) for segment in labels]


def aligned_segments(words, limit, duration=None):
    """Cut an aligned recording into segments of whole words, each shorter than ``limit`` seconds.

    A segment runs from the middle of the pause before its first word to the middle of the pause
    after its last (the recording's first and last words: 0.1 s beyond them, at most the pause,
    never past ``duration``); each cut is the longest pause in the later half of the span that still keeps the segment
    under the limit (the whole span when that half has no pause), so segments hold whole
    sentences where the pauses between sentences are the longest, and are as long as the limit
    allows. A word longer than the limit on its own makes no segment.

    Arguments
    ---------
    words : list of tuple
        ``[(start_s, end_s, label)]`` in time order, e.g. of :func:`read_word_tier`.
    limit : float
        Seconds every segment stays below.
    duration : float, optional
        Seconds of the recording, which the last segment does not pass.

    Returns
    -------
    list of tuple
        ``[(start_s, end_s, text)]``: the segment's span and its normalised words
        (:func:`~data_prep.text_norm.normalize_transcript`); segments without a word left out.

    Example
    -------
    Three sentences of 3 s with 0.6 s pauses, under a 7 s limit: two, then one.

    >>> words = [(0.2, 1.7, "No mä"), (1.7, 3.2, "kävin."), (3.8, 6.8, "Siellä oli kivaa."),
    ...          (7.4, 10.4, "Joo.")]
    >>> aligned_segments(words, 7.0)
    [(0.1, 3.5, 'no mä kävin'), (3.5, 7.1, 'siellä oli kivaa'), (7.1, 10.5, 'joo')]
    """
    words = [w for w in sorted(words) if w[2].strip()]
    if not words:
        return []
    # Boundaries between word i-1 and i: the middle of the pause (or the shared instant).
    bounds = [max(0.0, words[0][0] - 0.1)]
    bounds += [(words[i - 1][1] + words[i][0]) / 2 for i in range(1, len(words))]
    pauses = [0.0] + [max(0.0, words[i][0] - words[i - 1][1]) for i in range(1, len(words))]
    last_end = words[-1][1] + 0.1 if duration is None else min(words[-1][1] + 0.1, duration)
    segments, first = [], 0
    while first < len(words):
        start = bounds[first]
        if last_end - start < limit:
            segments.append((start, last_end, first, len(words)))
            break
        fits = [i for i in range(first + 1, len(words)) if bounds[i] - start < limit]
        if not fits:
            first += 1
            continue
        late = [i for i in fits if bounds[i] - start >= limit / 2] or fits
        cut = max(late, key=lambda i: (pauses[i], i))
        segments.append((start, bounds[cut], first, cut))
        first = cut
    out = []
    for start, end, i, j in segments:
        text = normalize_transcript(" ".join(label for _, _, label in words[i:j]))
        if text:
            out.append((round(start, 3), round(end, 3), text))
    return out
