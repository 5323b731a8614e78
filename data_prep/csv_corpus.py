"""Prepare any topic-labelled speech corpus into the manifest contract.

Two inputs are understood:

- a metadata CSV with columns ``path`` and ``topic``, and optionally ``transcript``, ``speaker``,
  ``split`` (``train``/``dev``/``test``; ``valid``/``validation``/``val`` and ``eval`` are read as
  dev and test) and ``id`` (or ``ID``), read by :mod:`data_prep.intake` as ``speak`` reads its CSV;
  relative paths are taken from ``audio_root`` (default: the CSV's folder);
- a folder ``ROOT/<topic>/*.{wav,flac}``; a file one folder deeper, ``ROOT/<topic>/<speaker>/``,
  takes that folder as its speaker, and a ``<name>.txt`` beside ``<name>.wav`` is its transcript.

Audio is not converted: manifests point at the original files (``$data_root``-relative when they
lie under the output folder) and the training pipeline resamples on the fly. A train row with a
transcript is ``transcribed``, else ``untranscribed``. Without a ``split`` column, speaker-disjoint
dev and test sets are drawn (from transcribed rows when the corpus has transcripts, since the text
systems are scored on them). ``topics.txt`` is the sorted set of topics of the kept rows, or the
order of a given topics file. Transcripts are normalised for the corpus's ``language`` (Finnish by
default, or English; :mod:`data_prep.text_norm`), recorded in ``summary.json``. A recording of ``max_duration`` or more is dropped, or with
``long="segment"`` cut into 16 kHz segments under ``OUT_DIR/segments/``
(:mod:`data_prep.duration_limit`).
"""

import logging
import re
from pathlib import Path

from data_prep.intake import COLUMN_ALIASES, Intake, check_row, read_metadata, wav_entry
from data_prep.duration_limit import cut_recording, explain_given_up, replace_by_segments, summary_entries
from data_prep.manifest import MAX_DURATION, PrepError, Row, manifest_paths, start, write_prepared
from data_prep.splits import finish_splits, given_splits, hold_out_speakers, require_eval_text
from data_prep.text_norm import normalize_transcript, read_transcript, text_settings
from data_prep.workers import map_jobs

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "topic")
OPTIONAL_COLUMNS = ("transcript", "speaker", "split", "id")
AUDIO_SUFFIXES = (".wav", ".flac")


def prepare_csv_corpus(metadata_csv, out_dir, audio_root=None, dev_fraction=0.1, test_fraction=0.1,
                       topics=None, max_duration=MAX_DURATION, seed=1, force=False, long="drop",
                       num_workers=None, language="fi", numbers=None):
    """Prepare a corpus described by a metadata CSV.

    Arguments
    ---------
    metadata_csv : str or Path
        The CSV (see the module docstring for its columns).
    out_dir : str or Path
        Output folder.
    audio_root : str or Path, optional
        Folder of relative ``path`` values; default: the folder of ``metadata_csv``.
    dev_fraction, test_fraction : float
        Share of the (transcribed) audio drawn for dev and test when there is no ``split`` column.
    topics : str or Path, optional
        A file with one topic per line: the label order; rows with other topics are dropped.
    max_duration : float
        Recordings this long or longer are dropped, or cut (``long``).
    seed : int
        Seed of the speaker draw.
    force : bool
        Rebuild a finished preparation.
    long : str
        ``"drop"`` (the paper's choice) or ``"segment"``: cut recordings of ``max_duration`` or
        more into shorter segments instead (:mod:`data_prep.duration_limit`).
    num_workers : int, optional
        Processes cutting long recordings (default: one per available core and per 256
        recordings, :func:`data_prep.workers.worker_count`); other audio is not converted.
    language, numbers : str
        How transcripts are normalised (:func:`data_prep.text_norm.text_settings`).

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests.
    """
    out_dir, intake = Path(out_dir), Intake(long)
    settings = _settings(language, numbers)
    records = read_metadata(metadata_csv, REQUIRED_COLUMNS, checked=REQUIRED_COLUMNS + OPTIONAL_COLUMNS,
                            aliases=COLUMN_ALIASES)
    if not start(out_dir, force):
        return manifest_paths(out_dir)
    root = Path(audio_root) if audio_root else Path(metadata_csv).parent
    given = bool(records) and any(values and "split" in values for _, values in records)
    extra = {"corpus": "csv", "metadata_csv": str(Path(metadata_csv).resolve()), "audio_root": str(root)}
    return _prepare(records, root, out_dir, given, (dev_fraction, test_fraction), topics, max_duration,
                    seed, extra, intake, num_workers, settings)


def prepare_folder_corpus(root, out_dir, dev_fraction=0.1, test_fraction=0.1, topics=None,
                          max_duration=MAX_DURATION, seed=1, force=False, long="drop", num_workers=None,
                          language="fi", numbers=None):
    """Prepare a corpus laid out as ``ROOT/<topic>/[<speaker>/]*.{wav,flac}``.

    Arguments
    ---------
    root : str or Path
        The corpus folder: one sub-folder per topic.
    out_dir, dev_fraction, test_fraction, topics, max_duration, seed, force, long, num_workers
    language, numbers
        As in :func:`prepare_csv_corpus`.

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests.
    """
    out_dir, root, intake = Path(out_dir), Path(root), Intake(long)
    settings = _settings(language, numbers)
    records = []
    topic_dirs = root.iterdir() if root.is_dir() else []
    for topic_dir in sorted(p for p in topic_dirs if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(topic_dir.rglob("*")):
            rel = path.relative_to(topic_dir)
            if path.suffix.lower() not in AUDIO_SUFFIXES or any(p.startswith(".") for p in rel.parts):
                continue
            text = path.with_suffix(".txt")
            speaker = rel.parts[0] if len(rel.parts) > 1 else ""
            records.append((str(path), {"path": str(path), "topic": topic_dir.name, "speaker": speaker,
                                        "transcript_file": str(text) if text.is_file() else ""}))
    if not records:
        raise PrepError(f"no audio found as {root}/<topic>/*.wav or *.flac: check ROOT and the layout")
    if not start(out_dir, force):
        return manifest_paths(out_dir)
    extra = {"corpus": "folder", "root": str(root.resolve())}
    return _prepare(records, root, out_dir, False, (dev_fraction, test_fraction), topics, max_duration,
                    seed, extra, intake, num_workers, settings)


def _settings(language, numbers):
    try:
        return text_settings(language, numbers)
    except ValueError as err:
        raise PrepError(str(err)) from None


def _derive_id(path, root):
    """An ID from the audio path, relative to ``root`` where possible (``animals/001.wav`` ->
    ``animals-001``), so equal file names in different folders stay apart."""
    try:
        parts = path.relative_to(root).with_suffix("").parts
    except ValueError:
        parts = path.with_suffix("").parts[1:]
    return re.sub(r"[^\w.-]+", "_", "-".join(parts))


def _read_topics(path):
    try:
        return [t.strip() for t in Path(path).read_text(encoding="utf-8").splitlines() if t.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise PrepError(f"cannot read topics file {path} ({err}): "
                        "give a UTF-8 file with one topic per line") from err


def _intake_row(source, values, root, out_dir, allowed, max_duration, intake, settings):
    """Check one record; return ``(Row, split or None)`` or the reason to drop it."""
    split, reason = check_row(values, allowed)
    if reason:
        return reason
    if not values["path"]:
        return "empty path: fill in the audio path"
    path = Path(values["path"])
    path = path if path.is_absolute() else root / path
    rec_id = values.get("id") or _derive_id(path, root)
    # The ID is claimed by the first row that is otherwise valid, so a broken row cannot shadow it.
    reason = intake.claim_id(rec_id, source)
    duration, reason = (None, reason) if reason else intake.check_audio(rec_id, path, max_duration)
    if reason:
        return reason
    words, raw = "", values.get("transcript", "")
    if values.get("transcript_file"):
        words, reason = read_transcript(values["transcript_file"], **settings)
        if reason:
            return reason
    elif raw:
        words = normalize_transcript(raw, **settings)
    if (raw or values.get("transcript_file")) and not words:
        logger.warning("transcript of %s is empty after normalisation; kept without transcript "
                       "(fix the transcript to use it as transcribed)", source)
        intake.counts["empty_transcripts"] += 1
    row = Row(ID=rec_id, wav=wav_entry(path, out_dir), duration=duration, topic=values["topic"],
              words=intake.transcript(rec_id, words), speaker=values.get("speaker", ""))
    return row, split


def _prepare(records, root, out_dir, given, fractions, topics_file, max_duration, seed, extra, intake,
             num_workers, settings):
    """Check the records, split them and write the prepared corpus."""
    allowed = _read_topics(topics_file) if topics_file else None
    rows, split_of = [], {}
    for source, values in records:
        intake.add()
        result = _intake_row(source, values, root, out_dir, allowed, max_duration, intake, settings)
        if isinstance(result, str):
            intake.drop(source, result)
            continue
        rows.append(result[0])
        split_of[result[0].ID] = result[1]
    has_text = any(r.words for r in rows)
    if given:
        splits, conflicts = given_splits(rows, split_of)
        intake.drop_rows(conflicts)
    else:
        if rows and not any(r.speaker for r in rows):
            logger.warning("no speakers known: dev/test are drawn per recording and may share speakers "
                           "with train; add a speaker column (or ROOT/<topic>/<speaker>/) to avoid it")
        total = sum(r.duration for r in rows if r.words or not has_text)
        targets = {"dev": fractions[0] * total, "test": fractions[1] * total}
        eligible = (lambda r: bool(r.words)) if has_text else None
        splits, left_out = hold_out_speakers(rows, targets, seed, eligible=eligible)
        intake.drop_rows(explain_given_up(left_out, intake))
    splits, untranscribed = require_eval_text(splits, has_text)
    intake.drop_rows(explain_given_up(untranscribed, intake))
    # Cut after the splits are settled, so that all segments of a recording land in its split.
    ids = [r.ID for rs in splits.values() for r in rs if r.ID in intake.long]
    jobs = [(intake.long[i], out_dir / "segments", i, max_duration) for i in ids]
    cut = dict(zip(ids, map_jobs(cut_recording, jobs, num_workers)))
    splits = finish_splits(replace_by_segments(splits, cut, intake, out_dir))
    topics = allowed or sorted({r.topic for rs in splits.values() for r in rs})
    missing = [t for t in topics if not any(r.topic == t for r in splits["train"])]
    if missing:
        logger.warning("topics without training rows (their classes cannot be learned): %s",
                       ", ".join(missing))
    extra.update(seed=seed, max_duration=max_duration, given_splits=given, text_normalisation=settings,
                 empty_transcripts=intake.counts["empty_transcripts"], **summary_entries(intake))
    return write_prepared(out_dir, splits, topics, intake.dropped, intake.n_input, extra, intake.segmented)
