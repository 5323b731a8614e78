"""Speaker-disjoint train/dev/test splits, shared by the LP and csv/folder preparations.

A speaker (an LP client id) whose voice is in train and in test makes the test optimistic, so
every split made or accepted here is speaker-disjoint (paper Sec. II). Held-out
speakers are drawn deterministically for a seed; given splits (a ``split`` column, split lists)
are kept as given except where they would leak a speaker.
"""

import logging
import random
from collections import defaultdict
from pathlib import Path

from data_prep.manifest import SPLITS, PrepError

logger = logging.getLogger(__name__)

PRECEDENCE = ("test", "dev", "train")
"""When given splits put one speaker in several splits, the speaker stays in the first of these
that holds it: an evaluation set is usually a fixed benchmark, so the training rows give way."""


def speaker_of(row):
    """The speaker of a row; a row without one is its own speaker."""
    return row.speaker or row.ID


def hold_out_speakers(rows, targets, seed, eligible=None):
    """Draw speaker-disjoint held-out splits of about the requested size.

    Speakers are shuffled with ``seed`` (after sorting, so the input order does not matter) and
    added to a held-out split while that brings its total duration closer to the target.
    Speakers all of whose rows are eligible are tried first, so that as few ineligible rows as
    possible are lost. One speaker is always left for train.

    Arguments
    ---------
    rows : list of Row
        The candidate rows, ``duration`` set.
    targets : dict
        ``{split: seconds}`` in drawing order, e.g. ``{"dev": 10800, "test": 10800}``.
    seed : int
        Seed of the speaker shuffle.
    eligible : callable, optional
        ``eligible(row)``: whether a row may go to a held-out split (LP: it has a manual
        transcript). By default every row is.

    Returns
    -------
    tuple
        ``(splits, left_out)``: ``{"train": [...], <split>: [...]}``, and ``(row, reason)``
        pairs of the ineligible rows of held-out speakers, which can go nowhere without leaking
        their speaker.
    """
    eligible = eligible or (lambda row: True)
    by_speaker = defaultdict(list)
    for row in rows:
        by_speaker[speaker_of(row)].append(row)
    order = sorted(by_speaker)
    random.Random(seed).shuffle(order)
    weight = {s: sum(r.duration for r in by_speaker[s] if eligible(r)) for s in order}
    pure = {s: all(eligible(r) for r in by_speaker[s]) for s in order}
    candidates = [s for s in order if weight[s] > 0]
    candidates.sort(key=lambda s: not pure[s])  # stable: keeps the shuffled order within groups
    remaining = set(order)
    splits = {"train": []}
    left_out = []
    for split, target in targets.items():
        chosen, total = [], 0.0
        for s in candidates:
            closer = abs(total + weight[s] - target) < abs(total - target)
            if s in remaining and len(remaining) > 1 and closer:
                chosen.append(s)
                remaining.discard(s)
                total += weight[s]
        left = [s for s in candidates if s in remaining]
        if target > 0 and not chosen and left and len(remaining) > 1:
            # Every speaker has over twice the target: take the smallest rather than none.
            chosen.append(min(left, key=weight.get))
            remaining.discard(chosen[0])
            total = weight[chosen[0]]
        if target > 0 and not chosen:
            logger.warning("no speaker left for %s; it is empty (ask for less or give more data)", split)
        splits[split] = [r for s in chosen for r in by_speaker[s] if eligible(r)]
        left_out += [(r, (
            f"recording {r.ID!r} without a transcript, of speaker {speaker_of(r)!r}, who was drawn "
            f"for {split}: left out to keep the splits speaker-disjoint (give the splits to choose)"
        )) for s in chosen for r in by_speaker[s] if not eligible(r)]
        logger.info("%s: %d speakers, %.2f h (asked for %.2f h)",
                    split, len(chosen), total / 3600, target / 3600)
    splits["train"] = [r for s in order if s in remaining for r in by_speaker[s]]
    return splits, left_out


def resolve_speaker_conflicts(splits):
    """Keep each speaker of given splits in one split only (see :data:`PRECEDENCE`).

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}`` as given by the user.

    Returns
    -------
    tuple
        ``(splits, conflicts)``: the splits without leaking rows, and ``(row, reason)`` pairs of
        the rows taken out.
    """
    home = {}
    for split in PRECEDENCE:
        for row in splits.get(split, []):
            home.setdefault(speaker_of(row), split)
    kept = {split: [] for split in splits}
    conflicts = []
    for split, rows in splits.items():
        for row in rows:
            first = home[speaker_of(row)]
            if first == split:
                kept[split].append(row)
            else:
                conflicts.append((row, (
                    f"speaker {speaker_of(row)!r} is given in {split} and in {first}: one speaker "
                    f"must be in one split, so this {split} row is left out; fix the split column "
                    "or split lists to keep it"
                )))
    return kept, conflicts


def given_splits(rows, split_of):
    """Put rows in the splits the user gave them, each speaker in one split only.

    Arguments
    ---------
    rows : list of Row
        The kept rows.
    split_of : dict
        ``{ID: split}`` as given (a ``split`` column).

    Returns
    -------
    tuple
        ``(splits, conflicts)`` as :func:`resolve_speaker_conflicts` returns them.

    Example
    -------
    >>> from data_prep.manifest import Row
    >>> rows = [Row("a", "a.wav", 1.0, "x", speaker="s"), Row("b", "b.wav", 1.0, "y", speaker="s")]
    >>> splits, conflicts = given_splits(rows, {"a": "train", "b": "test"})
    >>> [r.ID for r in splits["test"]], [r.ID for r, _ in conflicts]
    (['b'], ['a'])
    """
    return resolve_speaker_conflicts({s: [r for r in rows if split_of[r.ID] == s] for s in SPLITS})


def read_split_lists(folder):
    """Read ``dev.txt``, ``test.txt`` and optional ``train.txt`` (one recording id per line).

    Only the first field of a line counts, so Kaldi ``utt2spk`` files work too; ``#`` starts a
    comment line.

    Returns
    -------
    dict
        ``{split: set of ids}``.
    """
    lists = {}
    for split in SPLITS:
        path = Path(folder) / f"{split}.txt"
        if not path.is_file():
            if split != "train":
                raise PrepError(
                    f"split list {path} is missing: --split-lists needs dev.txt and test.txt "
                    "(one recording id per line); train.txt is optional"
                )
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise PrepError(f"split list {path} is not UTF-8: re-save it as UTF-8") from err
        lists[split] = {ln.split()[0] for ln in lines if ln.strip() and not ln.startswith("#")}
    return lists


def finish_splits(splits):
    """Set ``subset`` (train only) and sort each split by ID, for stable manifests.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}``.

    Returns
    -------
    dict
        ``{split: [Row]}`` with every split of :data:`manifest.SPLITS` present.
    """
    out = {}
    for split in SPLITS:
        rows = sorted(splits.get(split, []), key=lambda r: r.ID)
        for row in rows:
            if split == "train":
                row.subset = "transcribed" if row.words else "untranscribed"
            else:
                row.subset = ""
        out[split] = rows
    return out


def require_eval_text(splits, has_text):
    """Take dev/test rows without a manual transcript out of a corpus that has transcripts.

    Every system of the comparison is scored on the same dev/test rows, and the text systems
    need the manual transcript of each (paper Sec. III), so a dev/test row without one
    cannot stay.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}``.
    has_text : bool
        Whether the corpus has manual transcripts at all; when not, nothing is taken out.

    Returns
    -------
    tuple
        ``(splits, dropped)``: the splits, and ``(row, reason)`` pairs of the rows taken out.
    """
    if not has_text:
        return splits, []
    kept, dropped = {}, []
    for split, rows in splits.items():
        kept[split] = []
        for row in rows:
            if split != "train" and not row.words:
                dropped.append((row, (
                    f"no transcript for {split} row {row.ID!r}: dev/test rows need a manual "
                    "transcript to score the text systems; add one or move the row to train"
                )))
            else:
                kept[split].append(row)
    return kept, dropped
