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

from bisect import bisect_right
from itertools import accumulate

from praatio import textgrid
from praatio.data_classes.interval_tier import IntervalTier

from data_prep.text_norm import normalize_transcript

WORD_TIER = "words"
"""The name of the word tier of the LP alignments."""


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
