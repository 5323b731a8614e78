"""The manifest contract shared by every corpus preparation.

A prepared corpus is a folder with ``train.csv dev.csv test.csv topics.txt dropped.csv
summary.json``. The CSV columns are :data:`COLUMNS`; every input row of a corpus ends up either in a
split manifest or in ``dropped.csv`` with a reason, so ``kept + dropped == input`` always; where
recordings over the duration limit are cut into segments (:mod:`data_prep.duration_limit`), a cut
recording is a third outcome, and ``kept_whole + segmented + dropped == input``.
``summary.json`` is written last and marks a finished preparation: a rerun over a finished folder
skips, a folder without it (an interrupted run) is rebuilt. Every file is written to a temporary
name and renamed, so a crash never leaves a half-written manifest.

Every preparation ends in :func:`write_prepared`, which also checks that what was kept can train a
classifier (:func:`trainability_problems`): when not, the folder is written for inspection, marked
so that a rerun rebuilds it, and the preparation stops with one message saying what to fix,
instead of training failing later deep inside PyTorch.

Whatever reads a manifest outside SpeechBrain's ``DynamicItemDataset.from_csv`` reads it with
:func:`data_prep.prepared.read_manifest`, which resolves ``$data_root`` as that does.
"""

import csv
import json
import logging
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile

from corpus_tools.files import atomic_write, is_leftover

logger = logging.getLogger(__name__)

COLUMNS = ("ID", "wav", "duration", "topic", "words", "asr_words", "speaker", "subset")
"""Manifest columns, in file order. ``words`` is the normalised manual transcript (empty when the
row is untranscribed), ``asr_words`` is filled by ``recipes/transcribe.py``, ``subset`` is
``transcribed`` or ``untranscribed`` on train rows and empty on dev/test rows. ``asr_words`` holds one
ASR's text, recorded in ``asr_words.json`` beside the manifests: a system that reads another ASR's
text (the multi-task system reads its own) gets a copy of the corpus that ASR transcribed
(:func:`linked_copy`; ``needs`` in recipes/systems.csv), never an extra column."""

SPLITS = ("train", "dev", "test")
SUBSETS = ("transcribed", "untranscribed")
DROPPED_COLUMNS = ("source", "reason")
OUTPUTS = ("train.csv", "dev.csv", "test.csv", "topics.txt", "dropped.csv", "summary.json")
DONE_MARKER = "summary.json"
CANNOT_TRAIN = "cannot_train"
"""The ``summary.json`` entry of a preparation whose kept rows cannot train a classifier: the
problems. Absent from a usable preparation."""
MAX_DURATION = 50.0
"""Recordings of this many seconds or more are dropped (paper Sec. II),
or cut into shorter segments (``--long segment``)."""
LONG_CHOICES = ("drop", "segment")
"""What a preparation does with a recording of ``max_duration`` or more: drop it (the paper's
choice, the default) or cut it into segments (:mod:`data_prep.duration_limit`)."""


class PrepError(Exception):
    """A preparation problem with a message that names the file or row and the fix."""


@dataclass
class Row:
    """One utterance of a manifest (see :data:`COLUMNS`)."""

    ID: str
    wav: str
    duration: float
    topic: str
    words: str = ""
    asr_words: str = ""
    speaker: str = ""
    subset: str = ""


@dataclass
class Dropped:
    """One input row that was not kept, and why."""

    source: str
    reason: str


@dataclass
class Segmented:
    """One input row whose recording was cut into segments, each a manifest row."""

    source: str
    ID: str
    segments: int


def accounted_rows(kept, dropped, segmented=None):
    """How many input rows the outcome of a preparation accounts for.

    Arguments
    ---------
    kept : int
        Manifest rows.
    dropped : list of Dropped
        Input rows not kept.
    segmented : list of Segmented, optional
        Input rows cut into segments (their segments are among the ``kept`` rows).

    Returns
    -------
    int
        Rows kept whole, cut or dropped: equal to the input rows when every one is accounted for.

    Example
    -------
    >>> accounted_rows(5, [Dropped("x", "why")], [Segmented("y", "y", 3)])
    4
    """
    segmented = segmented or []
    return kept - sum(s.segments for s in segmented) + len(segmented) + len(dropped)


def audio_duration(path):
    """Measure an audio file and reject what cannot be used.

    Arguments
    ---------
    path : str or Path
        An audio file readable by libsndfile (wav, flac, ogg, ...).

    Returns
    -------
    tuple
        ``(duration, reason)``: the duration in seconds and None, or None and the reason the file
        is unusable (missing, not audio, truncated, empty).
    """
    path = Path(path)
    if not path.is_file():
        return None, f"missing audio file {path}: restore it or remove the row"
    if path.stat().st_size == 0:
        return None, f"empty audio file {path} (0 bytes): re-export or remove it"
    try:
        info = soundfile.info(str(path))
        if info.frames <= 0:
            return None, f"zero-length audio in {path}: re-export or remove it"
        # Decode the tail too: a truncated FLAC/WAV often has a valid header.
        with soundfile.SoundFile(str(path)) as f:
            f.seek(max(0, info.frames - 1024))
            tail = f.read(1024)
        if len(tail) == 0:
            return None, f"truncated audio in {path}: re-export or remove it"
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as err:
        return None, f"unreadable or non-audio file {path} ({err}): convert it to wav/flac or remove it"
    return info.frames / info.samplerate, None


def check_duration(duration, path, max_duration=MAX_DURATION):
    """Return the reason to drop a recording that is too long, else None."""
    if duration >= max_duration:
        return (
            f"recording {path} is {duration:.1f} s, not below the {max_duration:g} s limit "
            "(paper Sec. II); raise --max-duration to keep it"
        )
    return None


def validate(splits, topics):
    """Check manifests before they are written.

    Arguments
    ---------
    splits : dict
        ``{"train": [Row, ...], "dev": [...], "test": [...]}``.
    topics : list of str
        The label inventory.

    Returns
    -------
    list of str
        Problems, each naming the row; empty when the manifests are valid.
    """
    problems = []
    seen = {}
    speakers = defaultdict(set)
    for split, rows in splits.items():
        if split not in SPLITS:
            problems.append(f"unknown split {split!r}; expected one of {SPLITS}")
        for row in rows:
            where = f"{split}.csv row {row.ID!r}"
            if not row.ID:
                problems.append(f"{where}: empty ID")
            if row.ID in seen:
                problems.append(f"{where}: duplicate ID, also in {seen[row.ID]}.csv")
            seen[row.ID] = split
            if row.topic not in topics:
                problems.append(f"{where}: topic {row.topic!r} not in topics.txt")
            if not row.duration or row.duration <= 0:
                problems.append(f"{where}: duration must be > 0")
            if split == "train" and row.subset not in SUBSETS:
                problems.append(f"{where}: subset {row.subset!r} must be one of {SUBSETS}")
            if row.subset == "transcribed" and not row.words.strip():
                problems.append(f"{where}: transcribed row with an empty transcript")
            if row.speaker:
                speakers[row.speaker].add(split)
    for speaker, where in sorted(speakers.items()):
        if len(where) > 1:
            problems.append(f"speaker {speaker!r} occurs in several splits: {sorted(where)}")
    return problems


def trainability_problems(splits):
    """What keeps manifests from training and scoring a classifier.

    A classifier needs rows of at least two topics to train on, a dev set to select its
    checkpoint on, a test set to be scored on, and can never predict a topic it did not see in
    training, so a dev/test row of such a topic only makes the scores wrong.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}``.

    Returns
    -------
    list of str
        Problems, each saying what is wrong; empty when the splits can train a classifier.

    Example
    -------
    >>> rows = {"train": [Row("a", "a.wav", 1.0, "x")], "dev": [Row("b", "b.wav", 1.0, "y")]}
    >>> for problem in trainability_problems(rows):
    ...     print(problem)
    train has rows of one topic only (x): a classifier needs at least two
    test is empty
    dev has topic(s) absent from train: y
    """
    problems = []
    train_topics = {r.topic for r in splits.get("train", [])}
    if len(train_topics) == 1:
        problems.append(f"train has rows of one topic only ({min(train_topics)}): a classifier "
                        "needs at least two")
    problems += [f"{split} is empty" for split in SPLITS if not splits.get(split)]
    for split in SPLITS[1:]:
        absent = sorted({r.topic for r in splits.get(split, [])} - train_topics)
        if absent and train_topics:
            problems.append(f"{split} has topic(s) absent from train: {', '.join(absent)}")
    return problems


def _cannot_train_message(problems, out_dir, kept, dropped, n_input):
    """One line: what keeps the corpus from training, how to fix it, and what was kept."""
    why = (f"{len(dropped)} of {n_input} input rows were dropped; {out_dir}/dropped.csv says why "
           "for each" if dropped else f"all {n_input} input rows were kept")
    return (
        f"the prepared corpus cannot train a classifier: {'; '.join(problems)}. Fix or add input "
        "rows so that train has at least two topics, dev and test are not empty (a split column, or "
        "more speakers to draw from) and every dev/test topic occurs in train, then rerun "
        f"({why}; the manifests of the {kept} kept rows are in {out_dir} for inspection)"
    )


def duration_spread(durations):
    """How long a split's recordings are: shortest, median, 90th percentile and longest, in s.

    Arguments
    ---------
    durations : list of float
        Seconds, one per recording.

    Returns
    -------
    dict or None
        ``min``, ``median``, ``p90``, ``max`` rounded to 0.01 s; None for no recordings.

    Examples
    --------
    >>> duration_spread([2.0, 3.0, 4.0, 30.0])
    {'min': 2.0, 'median': 3.5, 'p90': 22.2, 'max': 30.0}
    >>> duration_spread([]) is None
    True
    """
    if not durations:
        return None
    values = np.asarray(durations, dtype=float)
    spread = {"min": values.min(), "median": np.median(values), "p90": np.percentile(values, 90),
              "max": values.max()}
    return {k: round(float(v), 2) for k, v in spread.items()}


def summarize(splits, topics, dropped, n_input, extra=None, segmented=None):
    """Counts and hours per split x topic x subset, plus the accounting of input rows.

    With ``segmented`` (a list, possibly empty, when long recordings are cut rather than
    dropped) the accounting also has ``segmented``, ``segment_rows``, ``kept_whole`` and
    ``segmented_recordings``; without it the summary is what it was before segmenting existed.
    """
    table = {}
    for split, rows in splits.items():
        per_topic = {t: {"count": 0, "hours": 0.0} for t in topics}
        per_subset = defaultdict(lambda: {"count": 0, "hours": 0.0})
        per_cell = defaultdict(lambda: {"count": 0, "hours": 0.0})
        for row in rows:
            hours = row.duration / 3600.0
            for cell in (per_topic[row.topic], per_subset[row.subset or "all"],
                         per_cell[f"{row.topic}/{row.subset or 'all'}"]):
                cell["count"] += 1
                cell["hours"] += hours
        table[split] = {
            "count": len(rows),
            "hours": round(sum(r.duration for r in rows) / 3600.0, 4),
            "speakers": len({r.speaker for r in rows if r.speaker}),
            "seconds": duration_spread([r.duration for r in rows]),
            "topic": _rounded(per_topic),
            "subset": _rounded(per_subset),
            "topic_subset": _rounded(per_cell),
        }
    kept = sum(len(rows) for rows in splits.values())
    reasons = defaultdict(int)
    for d in dropped:
        reasons[d.reason.split(" ")[0] if d.reason else "?"] += 1
    summary = {
        "input_rows": n_input,
        "kept": kept,
        "dropped": len(dropped),
        "accounted": accounted_rows(kept, dropped, segmented) == n_input,
        "dropped_by_first_word": dict(sorted(reasons.items())),
        "topics": list(topics),
        "splits": table,
    }
    if segmented is not None:
        segment_rows = sum(s.segments for s in segmented)
        summary.update(segmented=len(segmented), segment_rows=segment_rows,
                       kept_whole=kept - segment_rows, segmented_recordings=[asdict(s) for s in segmented])
    if extra:
        summary.update(extra)
    return summary


def _rounded(cells):
    return {k: {"count": v["count"], "hours": round(v["hours"], 4)} for k, v in sorted(cells.items())}


def manifest_paths(out_dir):
    """``{split: Path}`` of the manifests of a prepared folder.

    >>> manifest_paths("data")["dev"].as_posix()
    'data/dev.csv'
    """
    return {split: Path(out_dir) / f"{split}.csv" for split in SPLITS}


def is_finished(out_dir):
    """True when ``out_dir`` holds a finished preparation (all outputs, summary last).

    A preparation that stopped because its corpus cannot train a classifier is written but not
    finished, so that a rerun after fixing the input rebuilds it rather than skipping.
    """
    out_dir = Path(out_dir)
    if not all((out_dir / name).is_file() for name in OUTPUTS):
        return False
    try:
        summary = json.loads((out_dir / DONE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return CANNOT_TRAIN not in summary


def start(out_dir, force=False):
    """Prepare the output folder; return False when a finished preparation is there already.

    Arguments
    ---------
    out_dir : str or Path
        The output folder; created if needed.
    force : bool
        Rebuild even when the folder holds a finished preparation.

    Returns
    -------
    bool
        True when the caller should prepare, False when it should skip.

    Raises
    ------
    PrepError
        When the folder cannot be created or written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise PrepError(
            f"cannot write to output directory {out_dir} ({err.strerror}): "
            "choose another OUT_DIR or fix its permissions"
        ) from err
    if is_finished(out_dir) and not force:
        logger.info("%s holds a finished preparation; skipping (use --force to rebuild)", out_dir)
        return False
    leftovers = [p for p in out_dir.iterdir() if p.name in OUTPUTS or is_leftover(p)]
    if leftovers and not force:
        logger.warning("%s holds an unfinished earlier run; rebuilding it", out_dir)
    for p in leftovers:
        p.unlink()
    return True


def write_rows(f, columns, rows):
    """Write dict-like rows as a CSV with the given columns to a file opened with ``newline=""``.

    The one formatting of a manifest: a caller that replaces several files at once (each in its own
    :func:`~corpus_tools.files.atomic_write`) writes them with this.
    """
    writer = csv.DictWriter(f, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _fmt(row[c]) for c in columns})


def write_csv(path, columns, rows):
    """Atomically write dict-like rows as a CSV with the given columns."""
    with atomic_write(path, newline="") as f:
        write_rows(f, columns, rows)


def _fmt(value):
    return f"{value:.3f}" if isinstance(value, float) else value


def write_prepared(out_dir, splits, topics, dropped, n_input, extra_summary=None, segmented=None):
    """Validate and write a whole prepared corpus: the shared end of every preparation.

    When the rows are valid but cannot train a classifier (:func:`trainability_problems`),
    everything is still written, for inspection, and ``summary.json`` records the problems under
    :data:`CANNOT_TRAIN` (so a rerun rebuilds); then :class:`PrepError` says what to fix.

    Arguments
    ---------
    out_dir : str or Path
        Output folder (already checked by :func:`start`).
    splits : dict
        ``{"train": [Row], "dev": [Row], "test": [Row]}``.
    topics : list of str or None
        Label order written to ``topics.txt``; None: the kept rows' topics, sorted.
    dropped : list of Dropped
        Input rows not kept, with reasons.
    n_input : int
        Number of input rows; must equal kept + dropped (kept whole + segmented + dropped when
        recordings are cut).
    extra_summary : dict, optional
        More entries for ``summary.json``.
    segmented : list of Segmented, optional
        Input rows cut into segments, when long recordings are cut rather than dropped (see
        :func:`summarize`).

    Returns
    -------
    dict
        ``{split: Path}`` of the written manifests.

    Raises
    ------
    PrepError
        When validation fails or rows are unaccounted for (nothing is written then), or when
        the written corpus cannot train a classifier.
    """
    out_dir = Path(out_dir)
    if topics is None:
        topics = sorted({r.topic for rows in splits.values() for r in rows})
    problems = validate(splits, topics)
    kept = sum(len(rows) for rows in splits.values())
    if accounted_rows(kept, dropped, segmented) != n_input:
        cut = (f" ({len(segmented)} recordings cut into {sum(x.segments for x in segmented)} of the kept "
               "rows)" if segmented else "")
        problems.append(f"{n_input} input rows but {kept} kept{cut} + {len(dropped)} dropped")
    if problems:
        raise PrepError("manifest validation failed:\n  " + "\n  ".join(problems))
    paths = manifest_paths(out_dir)
    for split in SPLITS:
        write_csv(paths[split], COLUMNS, [asdict(r) for r in splits.get(split, [])])
    with atomic_write(out_dir / "topics.txt", newline="") as f:
        f.write("".join(t + "\n" for t in topics))
    write_csv(out_dir / "dropped.csv", DROPPED_COLUMNS, [asdict(d) for d in dropped])
    summary = summarize(splits, topics, dropped, n_input, extra_summary, segmented)
    unusable = trainability_problems(splits)
    if unusable:
        summary[CANNOT_TRAIN] = unusable
    # summary.json last: its presence marks a finished preparation.
    with atomic_write(out_dir / DONE_MARKER, newline="") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    for d in dropped:
        logger.warning("dropped %s: %s", d.source, d.reason)
    if unusable:
        raise PrepError(_cannot_train_message(unusable, out_dir, kept, dropped, n_input))
    if segmented:
        logger.info("cut %d recordings over the duration limit into %d segments", len(segmented),
                    sum(s.segments for s in segmented))
    logger.info("prepared %s: %d kept, %d dropped of %d input rows", out_dir, kept, len(dropped), n_input)
    return paths
