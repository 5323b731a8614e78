"""Batch prediction over folders and manifests: ``topic-id predict --model M DIR_OR_CSV --out preds.csv``.

For thousands of recordings: the inputs (audio files, folders searched recursively, manifest CSVs
with a ``wav`` column) are listed first, then classified ``batch_size`` files at a time, with a
progress bar on stderr. Every batch's rows are appended to the predictions CSV and flushed, so
memory stays bounded (one batch of audio, no rows kept) and an interrupted run loses at most the
batch in flight: rerun with the same ``--out`` and the files already in the CSV are skipped (a last
line torn by the interruption is dropped first). The CSV has one row per file: ``file``,
``duration`` (s), ``topic``, ``p_<topic>`` per topic (the label order of the model, as a run's
``predictions.csv``) and ``text`` (the transcript read) for systems with a text branch. A file that
cannot be read is logged and left out (a rerun tries it again). At the end a summary (files, audio
hours, wall time, real-time factor) is logged and written beside the CSV as ``<out>.summary.json``.
"""

import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

import soundfile

from data_prep.manifest import PrepError

from data_prep.prepared import manifest_columns, read_manifest
from topic_id.errors import ConfigError
from topic_id.serving.inference import InputError, TopicIdentifier, check_audio, classify_signals, load_model

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = frozenset(f".{name.lower()}" for name in soundfile.available_formats()) | {
    ".oga", ".opus", ".mp3"}
"""File name endings taken from a folder: what libsndfile reads (wav, flac, ogg, ...)."""


def list_inputs(sources, data_root=None):
    """The audio files to classify, in order, each once.

    Arguments
    ---------
    sources : list of str or Path
        Audio files; folders (every audio file below them, by name ending, sorted); manifest CSVs
        (their ``wav`` column, ``$data_root`` replaced as training does).
    data_root : str or Path, optional
        What ``$data_root`` stands for (default: the folder of each manifest).

    Returns
    -------
    list of str

    Raises
    ------
    ConfigError
        A source that does not exist, a manifest without a ``wav`` column, or nothing to classify.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "a").mkdir(); (root / "a" / "x.wav").touch(); (root / "notes.txt").touch()
    >>> _ = (root / "m.csv").write_text("ID,wav\\n1,$data_root/a/x.wav\\n2,/data/y.flac\\n")
    >>> [Path(p).name for p in list_inputs([root / "a", root / "m.csv"])]
    ['x.wav', 'y.flac']
    """
    files = {}
    for source in sources:
        source = Path(source)
        if source.is_dir():
            found = sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                logger.warning("%s holds no audio files (%s)", source, ", ".join(sorted(AUDIO_SUFFIXES)))
            files.update(dict.fromkeys(found))
        elif source.suffix.lower() == ".csv" and source.is_file():
            files.update(dict.fromkeys(_manifest_files(source, data_root)))
        elif source.exists() or source.suffix.lower() in AUDIO_SUFFIXES:
            files[str(source)] = None  # an unreadable or missing file is reported with its batch
        else:
            raise ConfigError(f"{source} does not exist: give audio files, folders or manifest CSVs")
    if not files:
        raise ConfigError(f"no audio files in {', '.join(str(s) for s in sources)}")
    return list(files)


def _manifest_files(path, data_root):
    columns = manifest_columns(path)
    if "wav" not in columns:
        raise ConfigError(f"{path} has no wav column (columns: {columns}); a manifest "
                          "lists its audio files in a column named wav")
    try:
        return [row["wav"] for row in read_manifest(path, data_root) if row["wav"]]
    except PrepError as err:
        raise ConfigError(str(err)) from None


def columns(identifier):
    """The predictions CSV's header for a model."""
    return ["file", "duration", "topic"] + [f"p_{label}" for label in identifier.labels] + (
        ["text"] if identifier.uses_text else [])


def read_done(out, header):
    """Files already in a predictions CSV, and their total duration (s); a torn last line is cut.

    An interrupted run can leave a last line without its newline: it is removed from the file, so
    that file is classified again and appended whole.

    Arguments
    ---------
    out : Path
        The predictions CSV (need not exist).
    header : list of str
        The columns it must have (:func:`columns`).

    Returns
    -------
    tuple
        ``(set of file names, seconds of audio)``.

    Example
    -------
    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "p.csv"
    >>> _ = out.write_text("file,duration\\na.wav,2.5\\nb.wav,1.0\\nc.w")
    >>> done, seconds = read_done(out, ["file", "duration"])
    >>> sorted(done), seconds, out.read_text()
    (['a.wav', 'b.wav'], 3.5, 'file,duration\\na.wav,2.5\\nb.wav,1.0\\n')
    """
    if not out.is_file() or out.stat().st_size == 0:
        return set(), 0.0
    with open(out, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            logger.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run", out,
                           len(data) - end)
            f.truncate(end)
    done, seconds = set(), 0.0
    with open(out, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        found = next(reader, None)
        if found is None:
            return set(), 0.0
        if found != header:
            raise ConfigError(f"{out} holds other columns ({','.join(found)}), not this model's "
                              f"predictions ({','.join(header)}): give another --out")
        for row in reader:
            done.add(row[0])
            seconds += float(row[1] or 0)
    return done, seconds


def _summary_path(out):
    return out.with_name(out.name.rsplit(".", 1)[0] + ".summary.json")


def predict_to_csv(model, sources, out, device=None, batch_size=8, chunk_seconds=None, data_root=None,
                   progress=True):
    """Classify every audio file of ``sources`` into the predictions CSV ``out``, resumably.

    Arguments
    ---------
    model : str, Path or TopicIdentifier
        Export or run folder, or a loaded model.
    sources : list of str or Path
        As :func:`list_inputs`.
    out : str or Path
        The predictions CSV; rows are appended to an earlier one of the same model.
    device : str, optional
        Inference device (a folder ``model`` only).
    batch_size : int
        Files per forward pass.
    chunk_seconds : float, optional
        As :func:`topic_id.serving.inference.load_model`.
    data_root : str or Path, optional
        As :func:`list_inputs`.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    dict
        The summary (also written to ``<out>.summary.json``).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    out = Path(out)
    files = list_inputs(sources, data_root)
    if isinstance(model, TopicIdentifier):
        identifier = model
    else:
        identifier = load_model(model, device, chunk_seconds)
    if identifier.sample_rate is None:
        raise ConfigError(f"this system reads text ({identifier.needs}) and has no ASR to transcribe "
                          "audio: export the run again with --asr ASR_RUN")
    header = columns(identifier)
    done, done_seconds = read_done(out, header)
    todo = [f for f in files if f not in done]
    summary = {"model": str(getattr(identifier, "source", model)), "out": str(out), "files": len(files),
               "done_before": len(files) - len(todo), "predicted": 0, "skipped": [], "audio_hours": 0.0,
               "audio_hours_total": done_seconds / 3600, "wall_seconds": 0.0, "predict_seconds": 0.0,
               "rtf": None, "batch_size": batch_size, "chunk_seconds": identifier.chunk_seconds,
               "complete": False}
    logger.info("%d files: %d already in %s, %d to classify", len(files), summary["done_before"], out, len(todo))
    out.parent.mkdir(parents=True, exist_ok=True)
    loop_start = time.perf_counter()
    seconds = 0.0
    bar = tqdm(total=len(files), initial=summary["done_before"], unit="file", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    try:
        with open(out, "a", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            if f.tell() == 0:
                writer.writerow(header)
            for first in range(0, len(todo), batch_size):
                batch, signals = [], []
                for path in todo[first : first + batch_size]:
                    try:
                        check_audio(path)
                        signals.append(identifier.load_audio(path))
                        batch.append(path)
                    except (InputError, RuntimeError, soundfile.LibsndfileError) as err:
                        logger.warning("skipped %s", err)
                        summary["skipped"].append({"file": path, "reason": str(err)})
                if batch:
                    rows = classify_signals(identifier, batch, signals)
                    for row, signal in zip(rows, signals):
                        duration = len(signal) / identifier.sample_rate
                        seconds += duration
                        writer.writerow([row["file"], f"{duration:.3f}", row["topic"]]
                                        + [f"{p:.6f}" for p in row["posteriors"].values()]
                                        + ([row["text"]] if identifier.uses_text else []))
                    # Each batch reaches the file before the next starts: an interruption costs one batch.
                    f.flush()
                    os.fsync(f.fileno())
                    summary["predicted"] += len(batch)
                bar.update(len(todo[first : first + batch_size]))
        summary["complete"] = not summary["skipped"]
    finally:
        bar.close()
        now = time.perf_counter()
        summary.update(audio_hours=seconds / 3600, audio_hours_total=(done_seconds + seconds) / 3600,
                       wall_seconds=now - start, predict_seconds=now - loop_start,
                       rtf=(now - loop_start) / seconds if seconds else None)
        _summary_path(out).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        logger.info("%s: %d files classified (%.2f h of audio) in %.1f s, RTF %s; %d done before, %d skipped%s; "
                    "summary in %s", out, summary["predicted"], summary["audio_hours"], summary["wall_seconds"],
                    "-" if summary["rtf"] is None else f"{summary['rtf']:.4f}", summary["done_before"],
                    len(summary["skipped"]), "" if summary["complete"] else " (incomplete: rerun to finish)",
                    _summary_path(out))
    return summary
