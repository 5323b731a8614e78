"""Prepare the Lahjoita puhetta (LP, "puhelahjat") corpus into the manifest contract.

Layout read (the Kielipankki ``puhelahjat`` release, v1)::

    puhelahjat/v1/<part>/puhelahjat_<part>_meta.csv     one row per recording; columns include
                                                          recordingId and theme (the label; the
                                                          column "topic" is the prompt id)
    puhelahjat/v1/<part>/audio/<recordingId>.flac       (or audio_annotated/)
    puhelahjat/v1/<part>/annotations/manual_*/<recordingId>.txt   manual transcript, if any
    puhelahjat/v1/<part>/alignments/manual_*/<recordingId>.TextGrid   its word alignment (tier
                                                          "words"): read for recordings cut into
                                                          segments, copied for those kept whole

The 10 themes become the paper's 8 topics through :mod:`data_prep.topics` (Sec. II). Audio of any
rate and channel count is decoded, downmixed and resampled to one declared rate, 16 kHz (LP's
rates vary per device), and written as FLAC under ``OUT_DIR/audio/``. Recordings of 50 s or more
are dropped (Sec. II), or with ``long="segment"`` cut into segments there (:mod:`data_prep.duration_limit`). A cut
recording keeps its manual transcript where its word alignment can be used: each segment gets the
words aligned inside it (:mod:`data_prep.alignments`); otherwise the transcript is given up, and
why the alignment could not be used is logged and counted (``alignments_unusable``). A transcribed
recording kept whole brings its TextGrid to ``OUT_DIR/alignments/<ID>.TextGrid``
(``alignments_copied``), from which ASR training cuts the long ones into aligned segments
(``long_training: segment``, :mod:`topic_id.training.aligned_rows`).
The speaker is the client id, the prefix of ``recordingId`` before the first ``_``. Dev and test are
speaker-disjoint and drawn from recordings with a manual transcript, which the text systems need
for scoring (3 h each by default, as in the paper, but at most a tenth of the transcribed hours
each, so that one part or a pilot subset prepares too), or taken from user-given lists; train
keeps ``transcribed`` and ``untranscribed`` rows.

An annotation file that is empty after normalisation (only noise markers, or blank) says that no
words are known for the recording, not that its audio or topic is wrong: the recording is kept as
``untranscribed`` and reported (log and ``summary.json``), never used as an empty transcript (see
docs/published_recipes.md, 'Empty transcripts').
An annotation file that is not UTF-8 drops its recording with a reason instead: its text cannot be
read, and silently demoting the recording would hide a fixable corpus error.
"""

import logging
from pathlib import Path

import soundfile

from data_prep.alignments import copy_alignments, read_alignment
from corpus_tools.audio import decode_mono, write_clipped
from corpus_tools.files import is_leftover
from data_prep.intake import Intake, read_metadata
from data_prep.duration_limit import cut_recording, explain_given_up, replace_by_segments, summary_entries
from data_prep.manifest import MAX_DURATION, SPLITS, PrepError, Row, manifest_paths, start, write_prepared
from data_prep.splits import (
    PRECEDENCE, finish_splits, hold_out_speakers, read_split_lists, require_eval_text,
    resolve_speaker_conflicts,
)
from data_prep.text_norm import read_transcript
from data_prep.topics import THEME_TO_TOPIC, TOPICS, theme_to_topic
from data_prep.workers import map_jobs

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""The one sample rate of every prepared file, whatever rate each recording came at."""
DEFAULT_HOURS = 3.0
"""The default size of dev and of test: the paper's 3 h each (Sec. II)."""
DEFAULT_SHARE = 0.1
"""A default dev or test set is at most this share of the transcribed hours, so that a first LP
part or a pilot subset prepares with the defaults (the whole corpus' 3 h are under 1 %)."""
REQUIRED_COLUMNS = ("recordingId", "theme")
AUDIO_DIRS = ("audio", "audio_annotated")


def find_parts(corpus_dir):
    """Find the delivery parts of an LP tree.

    Arguments
    ---------
    corpus_dir : str or Path
        The folder holding ``puhelahjat/``, the ``puhelahjat`` or ``v1`` folder itself, or a
        single part.

    Returns
    -------
    list of tuple
        ``(part_dir, metadata_csv)``, sorted by part name.

    Raises
    ------
    PrepError
        When no metadata CSV is found.
    """
    corpus_dir = Path(corpus_dir)
    for root in (corpus_dir / "puhelahjat" / "v1", corpus_dir / "v1", corpus_dir):
        metas = sorted(root.glob("*/puhelahjat_*meta.csv")) or sorted(root.glob("puhelahjat_*meta.csv"))
        if metas:
            return [(meta.parent, meta) for meta in metas]
    raise PrepError(
        f"no LP metadata (<part>/puhelahjat_*_meta.csv) found under {corpus_dir}: point CORPUS_DIR "
        "at the folder that holds puhelahjat/ (or at puhelahjat/v1)"
    )


def convert_audio(src, dst, reuse=True):
    """Decode, downmix, resample to :data:`SAMPLE_RATE` and write 16-bit FLAC atomically.

    Arguments
    ---------
    src, dst : str or Path
        Input audio and output FLAC.
    reuse : bool
        Keep a ``dst`` newer than ``src`` (left by an interrupted run; written atomically, so
        complete).

    Returns
    -------
    tuple
        ``(duration, reason)``: seconds of the written file and None, or None and why the input
        cannot be decoded.

    Raises
    ------
    PrepError
        When the output cannot be written.
    """
    src, dst = Path(src), Path(dst)
    if reuse and dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
        return soundfile.info(str(dst)).duration, None
    mono, reason = decode_mono(src, SAMPLE_RATE)
    if reason is None:
        write_clipped(dst, mono, SAMPLE_RATE)
    return (None, reason) if reason else (len(mono) / SAMPLE_RATE, None)


def _find_audio(part, rec_id):
    """The recording's FLAC in ``audio/`` or ``audio_annotated/``; the former when in neither."""
    candidates = [part / d / f"{rec_id}.flac" for d in AUDIO_DIRS]
    return next((c for c in candidates if c.is_file()), candidates[0])


def _by_stem(part, pattern):
    """``{stem: path}`` of the files matching ``pattern`` under ``part``; where several
    ``manual_*`` folders hold a stem, the first folder (by name) wins."""
    return {path.stem: path for path in sorted(part.glob(pattern), reverse=True)}


def _alignment_file(part, rec_id, transcript, alignments):
    """The TextGrid of a recording's transcript, or None: the one in the ``alignments/`` folder
    named like the transcript's ``annotations/`` folder first, since it aligns that transcript;
    else that of the first ``manual_*`` folder that has one."""
    path = part / "alignments" / transcript.parent.name / f"{rec_id}.TextGrid"
    return path if path.is_file() else alignments.get(rec_id)


def _alignment(part, rec_id, transcript, alignments, duration, intake):
    """The word alignment of a recording to be cut, or None (logged and counted when unusable;
    which file: :func:`_alignment_file`)."""
    path = _alignment_file(part, rec_id, transcript, alignments)
    if path is None:
        return None
    words, reason = read_alignment(path, duration)
    if reason is not None:
        logger.warning("%s; the transcript of %s is given up for its segments (fix the TextGrid to keep it)",
                       reason, rec_id)
        intake.counts["alignments_unusable"] += 1
    return words


def _read_part(part, meta, intake, max_duration, alignment_files):
    """Check every metadata row of one part; return ``[(Row, audio source)]`` of usable rows, and
    put the TextGrid of each transcribed one kept whole in ``alignment_files`` (``{ID: path}``)."""
    annotations = _by_stem(part, "annotations/manual_*/*.txt")
    alignments = _by_stem(part, "alignments/manual_*/*.TextGrid")
    usable = []
    for source, values in read_metadata(meta, REQUIRED_COLUMNS):
        intake.add()
        if values is None:
            intake.drop(source, f"non-UTF-8 bytes in recordingId or theme: re-save {meta} as UTF-8")
            continue
        rec_id = values["recordingId"]
        source = f"{source} {rec_id}"
        topic = theme_to_topic(values["theme"])
        reason = None if topic else (
            f"unknown theme {values['theme']!r}: expected one of {', '.join(THEME_TO_TOPIC)} "
            "(data_prep/topics.py); fix the metadata row")
        # The ID is claimed by the first row that is otherwise valid, so a broken row cannot shadow it.
        reason = reason or intake.claim_id(rec_id, source, filename=True)
        audio = _find_audio(part, rec_id)
        duration = None
        if reason is None:
            duration, reason = intake.check_audio(rec_id, audio, max_duration)
        words = ""
        if reason is None and rec_id in annotations:
            words, reason = read_transcript(annotations[rec_id])
            if reason is None and not words:
                logger.warning("transcript %s is empty after normalisation; %s kept as untranscribed "
                               "(fix the annotation to use it as transcribed)", annotations[rec_id], rec_id)
                intake.counts["empty_transcripts"] += 1
        if reason is not None:
            intake.drop(source, reason)
            continue
        alignment = None
        if words and rec_id in intake.long:
            alignment = _alignment(part, rec_id, annotations[rec_id], alignments, duration, intake)
        elif words and _alignment_file(part, rec_id, annotations[rec_id], alignments) is not None:
            alignment_files[rec_id] = _alignment_file(part, rec_id, annotations[rec_id], alignments)
        row = Row(ID=rec_id, wav=f"$data_root/audio/{rec_id}.flac", duration=duration, topic=topic,
                  words=intake.transcript(rec_id, words, alignment), speaker=rec_id.split("_")[0])
        usable.append((row, audio))
    return usable


def held_out_hours(dev_hours, test_hours, transcribed_hours):
    """The dev and test sizes to draw: the given ones, or :data:`DEFAULT_HOURS` capped at
    :data:`DEFAULT_SHARE` of the transcribed hours (with a warning that says so).

    Arguments
    ---------
    dev_hours, test_hours : float or None
        The sizes asked for; None: the default.
    transcribed_hours : float
        Hours of the recordings with a manual transcript, from which dev and test are drawn.

    Returns
    -------
    dict
        ``{"dev": hours, "test": hours}``.

    Example
    -------
    >>> held_out_hours(None, None, 400.0)
    {'dev': 3.0, 'test': 3.0}
    >>> held_out_hours(None, 0.05, 2.0)
    {'dev': 0.2, 'test': 0.05}
    """
    asked = {"dev": dev_hours, "test": test_hours}
    cap = DEFAULT_SHARE * transcribed_hours
    capped = [split for split, hours in asked.items() if hours is None and cap < DEFAULT_HOURS]
    if capped:
        each = " each" if len(capped) > 1 else ""
        logger.warning(
            "the default %s of %g h%s would be over %d %% of the %.3g h of transcribed audio: drawing "
            "%.3g h (%.0f s)%s instead; give --dev-hours/--test-hours to choose the sizes",
            " and ".join(capped), DEFAULT_HOURS, each, round(100 * DEFAULT_SHARE), transcribed_hours,
            cap, cap * 3600, each)
    return {split: (min(DEFAULT_HOURS, cap) if hours is None else hours) for split, hours in asked.items()}


def _check_draw(hours, splits, transcribed):
    """PrepError naming the flags when a held-out split asked for could not be drawn."""
    if not transcribed:
        raise PrepError("no recording has a manual transcript (annotations/manual_*/<recordingId>.txt), "
                        "and dev and test need one to score the text systems: add the annotations "
                        "of the part(s)")
    available = sum(r.duration for r in transcribed) / 3600
    empty = [split for split, h in hours.items() if h > 0 and not splits[split]]
    if not empty and sum(hours.values()) < available:
        return
    drawn = ", ".join(f"{split} {sum(r.duration for r in splits[split]) / 3600:.3g} h" for split in hours)
    why = (f"{' and '.join(empty)} came out empty (drawn: {drawn}; train keeps a speaker at least)"
           if empty else "together more than there is")
    raise PrepError(
        f"cannot draw dev of {hours['dev']:.3g} h and test of {hours['test']:.3g} h from "
        f"{available:.3g} h of transcribed audio ({len({r.speaker for r in transcribed})} speakers): "
        f"{why}; give smaller --dev-hours/--test-hours (e.g. {DEFAULT_SHARE * available:.2g} each) "
        "or --split-lists DIR"
    )


def _split(rows, intake, hours, split_lists, seed):
    """Assign rows to splits from the lists or by drawing held-out speakers (``hours``:
    :func:`held_out_hours`); PrepError when a drawn split cannot be had."""
    if split_lists is None:
        targets = {split: h * 3600.0 for split, h in hours.items()}
        splits, left_out = hold_out_speakers(rows, targets, seed, eligible=lambda r: bool(r.words))
        _check_draw(hours, splits, [r for r in rows if r.words])
        intake.drop_rows(explain_given_up(left_out, intake))
        return splits
    lists = read_split_lists(split_lists)
    unknown = set().union(*lists.values()) - intake.ids
    if unknown:
        logger.warning("%d ids of the split lists are not in the metadata, e.g. %s",
                       len(unknown), sorted(unknown)[:3])
    splits = {s: [] for s in SPLITS}
    for row in rows:
        split = next((s for s in PRECEDENCE if row.ID in lists.get(s, ())), None)
        if split is None and "train" in lists:
            intake.drop_row(row, f"recording {row.ID!r} is in no split list: add it to train.txt to keep it")
        else:
            splits[split or "train"].append(row)
    splits, conflicts = resolve_speaker_conflicts(splits)
    splits, untranscribed = require_eval_text(splits, has_text=True)
    intake.drop_rows(conflicts + explain_given_up(untranscribed, intake))
    return splits


def _convert_one(src, dst, reuse, limit):
    """:func:`convert_audio`, or with a ``limit`` (a recording to be cut) :func:`cut_recording`
    into segments beside ``dst``; one function, so that one pool runs both kinds of job."""
    if limit is None:
        return convert_audio(src, dst, reuse)
    return cut_recording(src, dst.parent, dst.stem, limit)


def _convert(splits, source_audio, audio_dir, force, num_workers, intake, max_duration):
    """Convert the audio of every kept row, cutting the long ones (:attr:`Intake.long`) into
    segments; drop the rows whose audio cannot be decoded."""
    audio_dir.mkdir(exist_ok=True)
    for leftover in filter(is_leftover, audio_dir.iterdir()):
        leftover.unlink()
    rows = [row for split_rows in splits.values() for row in split_rows]
    jobs = [(source_audio[r.ID], audio_dir / f"{r.ID}.flac", not force,
             max_duration if r.ID in intake.long else None) for r in rows]
    results = map_jobs(_convert_one, jobs, num_workers)
    failed, cut = set(), {}
    for row, (duration, reason) in zip(rows, results):
        if row.ID in intake.long:
            cut[row.ID] = duration, reason
        elif reason is None:
            row.duration = duration
        else:
            intake.drop_row(row, reason)
            failed.add(row.ID)
    splits = {s: [r for r in rs if r.ID not in failed] for s, rs in splits.items()}
    return finish_splits(replace_by_segments(splits, cut, intake, audio_dir.parent))


def prepare_lahjoita_puhetta(corpus_dir, out_dir, dev_hours=None, test_hours=None, split_lists=None,
                             max_duration=MAX_DURATION, seed=1, force=False, num_workers=None, long="drop"):
    """Prepare LP into ``train.csv dev.csv test.csv topics.txt dropped.csv summary.json``.

    Arguments
    ---------
    corpus_dir : str or Path
        The folder holding ``puhelahjat/`` (or ``puhelahjat/v1`` itself, see :func:`find_parts`).
    out_dir : str or Path
        Output folder; the 16 kHz audio goes to ``out_dir/audio/``.
    dev_hours, test_hours : float, optional
        Size of the drawn dev and test sets; by default the paper's 3 h each, at most a tenth of
        the transcribed hours each (:func:`held_out_hours`). Ignored with ``split_lists``.
    split_lists : str or Path, optional
        A folder with ``dev.txt``, ``test.txt`` and optionally ``train.txt`` of recording ids.
    max_duration : float
        Recordings this long or longer are dropped (paper Sec. II: 50 s), or cut (``long``).
    seed : int
        Seed of the speaker draw.
    force : bool
        Rebuild a finished preparation.
    num_workers : int, optional
        Processes converting audio (default: one per available core and per 256 recordings,
        :func:`data_prep.workers.worker_count`).
    long : str
        ``"drop"`` (the paper's choice) or ``"segment"``: cut recordings of ``max_duration`` or
        more into shorter segments instead (:mod:`data_prep.duration_limit`), which keep their
        aligned words where the recording has a usable word alignment.

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests.
    """
    out_dir = Path(out_dir)
    parts = find_parts(corpus_dir)
    if split_lists is not None:
        read_split_lists(split_lists)  # fail before the long part, not after it
    intake = Intake(long)
    if not start(out_dir, force):
        return manifest_paths(out_dir)
    alignment_files = {}
    usable = [item for part, meta in parts
              for item in _read_part(part, meta, intake, max_duration, alignment_files)]
    source_audio = {row.ID: audio for row, audio in usable}
    rows = [row for row, _ in usable]
    hours = None if split_lists else held_out_hours(
        dev_hours, test_hours, sum(r.duration for r in rows if r.words) / 3600)
    splits = _split(rows, intake, hours, split_lists, seed)
    splits = _convert(splits, source_audio, out_dir / "audio", force, num_workers, intake, max_duration)
    # ASR training reads a long transcribed recording as its aligned segments (long_training).
    aligned = copy_alignments(splits, alignment_files, out_dir)
    extra = {"corpus": "lahjoita_puhetta", "corpus_dir": str(Path(corpus_dir).resolve()),
             "parts": [part.name for part, _ in parts], "sample_rate": SAMPLE_RATE, "seed": seed,
             "dev_hours": hours["dev"] if hours else None,
             "test_hours": hours["test"] if hours else None,
             "max_duration": max_duration,
             "split_lists": str(split_lists) if split_lists else None,
             "empty_transcripts": intake.counts["empty_transcripts"], "alignments_copied": aligned,
             **summary_entries(intake)}
    if long == "segment":
        extra["alignments_unusable"] = intake.counts["alignments_unusable"]
    return write_prepared(out_dir, splits, list(TOPICS), intake.dropped, intake.n_input, extra,
                          intake.segmented)
