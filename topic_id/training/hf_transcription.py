"""The transcription stage with a pretrained Hugging Face ASR: a corpus's manifests get its text.

:func:`transcribe_with` decodes every row of ``train.csv``, ``dev.csv`` and ``test.csv`` with an
:class:`topic_id.models.hf_asr.HFASR` (Whisper or a CTC model; ``recipes/transcribe.py
--asr-model``), normalises the text as the corpus's transcripts are
(:func:`data_prep.text_norm.normalize_transcript` in the corpus's language,
:func:`data_prep.prepared.text_normalisation`, so that the WER against ``words`` counts words,
not casing or punctuation), and fills one column of all three manifests at once
(:func:`data_prep.transcripts.write_manifests`). The summary ``<corpus>/<column>.json`` names the
model and holds the WER and CER of every split with manual transcripts.

A run is resumable: each decoded batch is appended to ``<corpus>/<column>.partial.jsonl`` (the
model's own text, keyed by split and ID, under a first line naming the model and its settings);
an interrupted run, rerun with the same model, decodes only the rows that file lacks. A rerun
after a finished run skips the corpus when its summary names the same model and the same rows.
"""

import hashlib
import json
import logging
import os
from pathlib import Path

from corpus_tools.audio import decode_mono
from data_prep.manifest import SPLITS, PrepError, manifest_paths
from data_prep.prepared import manifest_columns, read_manifest
from data_prep.prepared import text_normalisation
from data_prep.text_norm import normalize_transcript
from data_prep.transcripts import check_column, write_manifests
from topic_id.training.metrics import error_rates, write_json

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial.jsonl"


def summary_path(manifests, column="asr_words"):
    """The summary of the transcription that filled ``column`` of a prepared corpus."""
    return Path(manifests) / f"{column}.json"


def partial_path(manifests, column="asr_words"):
    """The hypotheses of a transcription not finished yet (:func:`read_partial`)."""
    return Path(manifests) / f"{column}{PARTIAL_SUFFIX}"


def ids_digest(rows):
    """A digest of a manifest's row IDs, in order: which rows a summary's text belongs to.

    Example
    -------
    >>> ids_digest([{"ID": "a"}, {"ID": "b"}]) == ids_digest([{"ID": "a"}, {"ID": "b"}])
    True
    """
    return hashlib.sha1("\n".join(r["ID"] for r in rows).encode()).hexdigest()


def read_partial(path, model):
    """The hypotheses an interrupted transcription with ``model`` wrote: ``{(split, ID): text}``.

    Arguments
    ---------
    path : Path
        A :func:`partial_path` file.
    model : dict
        :meth:`topic_id.models.hf_asr.HFASR.describe` of the model now transcribing; a file
        another model (or the same one with other settings) wrote gives nothing.

    Returns
    -------
    dict
        Empty when there is no such file; a last line cut short by the interruption is left out.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "asr_words.partial.jsonl"
    >>> _ = path.write_text('{"asr_model": {"name": "m"}}\\n{"split": "dev", "ID": "a", "text": "Hei!"}\\n{"spl')
    >>> read_partial(path, {"name": "m"}), read_partial(path, {"name": "other"})
    ({('dev', 'a'): 'Hei!'}, {})
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    try:
        head = json.loads(lines[0]) if lines else {}
    except ValueError:
        head = {}
    if not isinstance(head, dict) or head.get("asr_model") != model:
        if lines:
            logger.info("%s was written by another model or settings: transcribing from the start", path)
        return {}
    done = {}
    for line in lines[1:]:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and isinstance(item.get("text"), str) and "split" in item and "ID" in item:
            done[(item["split"], item["ID"])] = item["text"]
    return done


class _PartialLog:
    """Appends decoded batches to the partial file, each on disk before the next is decoded."""

    def __init__(self, path, model, fresh):
        self.file = open(path, "w" if fresh else "a", encoding="utf-8")
        if fresh:
            self._write([{"asr_model": model}])

    def _write(self, items):
        self.file.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        self.file.flush()
        os.fsync(self.file.fileno())

    def add(self, split, ids, texts):
        self._write([{"split": split, "ID": i, "text": t} for i, t in zip(ids, texts)])

    def close(self):
        self.file.close()


def _read_audio(path, rate):
    signal, reason = decode_mono(path, rate)
    if reason is not None:
        raise PrepError(reason)
    return signal


def _scores(rows, column):
    """WER and CER (percent) of ``column`` against ``words`` over the rows that have manual text."""
    scored = [r for r in rows if r.get("words", "").strip()]
    if not scored:
        return {"scored": 0, "wer": None, "cer": None}
    rates = error_rates([r["words"] for r in scored], [r[column] for r in scored])
    return {"scored": len(scored), "wer": round(rates["wer"], 2), "cer": round(rates["cer"], 2)}


def _finished(summary_file, model, column, manifests):
    """Whether the summary names ``model`` as the author of ``column`` of exactly these manifests."""
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # Each manifest's entry names the model too: a later run of our own ASR into the same column
    # (recipes/transcribe.py --asr) replaces the entries of the manifests it fills.
    return summary.get("asr_model") == model and all(
        column in header and summary.get(path.name, {}).get("ids") == ids_digest(rows)
        and summary[path.name].get("asr_model") == model["name"]
        for path, (header, rows) in manifests.items())


def transcribe_with(asr, manifests, column="asr_words", batch_size=8, force=False):
    """Fill ``column`` of every row of a prepared corpus's three manifests with a Hugging Face ASR's text.

    Arguments
    ---------
    asr : topic_id.models.hf_asr.HFASR
        The loaded model (:func:`topic_id.models.hf_asr.load_hf_asr`).
    manifests : str or Path
        A prepared corpus folder; ``$data_root`` in ``wav`` stands for this folder.
    column : str
        The column to fill (:func:`data_prep.transcripts.check_column`).
    batch_size : int
        Recordings per batch (they are decoded in order of duration, so a batch pads little).
    force : bool
        Decode again what a finished or interrupted run with this model wrote.

    Returns
    -------
    tuple
        ``(status, summary)``: ``{manifest name: "decoded" | "resumed" | "skipped"}`` and the
        summary written to ``<manifests>/<column>.json``: ``asr_model``
        (:meth:`topic_id.models.hf_asr.HFASR.describe`), ``asr_options`` (the settings as given,
        :data:`topic_id.models.hf_asr.OPTION_KEYS`), ``column``, ``normalisation``; per
        manifest name ``asr_model`` (the model's name), ``ids`` (:func:`ids_digest`), ``rows``,
        ``empty`` (rows whose text normalised to nothing), ``scored`` (rows with a manual
        transcript), ``wer`` and ``cer`` (percent, None when nothing was scored); and ``wer`` and
        ``cer`` per split.

    Raises
    ------
    PrepError
        A bad column, a missing manifest or an undecodable audio file (nothing is written to the
        manifests then).
    """
    manifests = Path(manifests)
    check_column(column)
    model = asr.describe()
    tables, audio = {}, {}
    for split, path in manifest_paths(manifests).items():
        if not path.is_file():
            raise PrepError(f"{path} is missing: give a folder a python -m data_prep command prepared")
        tables[path] = (manifest_columns(path), read_manifest(path, as_written=True))
        audio[split] = read_manifest(path)
    summary_file, partial = summary_path(manifests, column), partial_path(manifests, column)
    if not force and _finished(summary_file, model, column, tables):
        logger.info("%s: %s already holds the text of %s", manifests, column, asr.name)
        return ({p.name: "skipped" for p in tables},
                json.loads(summary_file.read_text(encoding="utf-8")))
    if force:
        partial.unlink(missing_ok=True)
    texts = read_partial(partial, model)
    status = {}
    log = _PartialLog(partial, model, fresh=not texts)
    try:
        for split, rows in audio.items():
            todo = sorted((r for r in rows if (split, r["ID"]) not in texts), key=lambda r: r["duration"])
            status[f"{split}.csv"] = "decoded" if len(todo) == len(rows) else "resumed"
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                hyps = asr.transcribe([_read_audio(r["wav"], asr.sample_rate) for r in chunk], batch_size)
                log.add(split, [r["ID"] for r in chunk], hyps)
                texts.update(((split, r["ID"]), h) for r, h in zip(chunk, hyps))
            logger.info("%s.csv: %d rows decoded by %s (%d from an interrupted run)", split, len(rows),
                        asr.name, len(rows) - len(todo))
    finally:
        log.close()

    settings = text_normalisation(manifests)
    summary = {"asr_model": model, "asr_options": getattr(asr, "options", None), "column": column,
               "normalisation": "data_prep.text_norm.normalize_transcript", "text_normalisation": settings}
    for (path, (header, rows)), split in zip(tables.items(), SPLITS):
        if column not in header:
            header.append(column)
        for row in rows:
            row[column] = normalize_transcript(texts[(split, row["ID"])], **settings)
        summary[path.name] = {"asr_model": asr.name, "ids": ids_digest(rows), "rows": len(rows),
                              "empty": sum(not r[column] for r in rows), **_scores(rows, column)}
    summary["wer"] = {s: summary[f"{s}.csv"]["wer"] for s in SPLITS}
    summary["cer"] = {s: summary[f"{s}.csv"]["cer"] for s in SPLITS}
    write_manifests(tables)
    write_json(summary_file, summary)
    partial.unlink(missing_ok=True)
    return status, summary


def hf_summaries(manifests):
    """The summaries of the Hugging Face ASRs that filled columns of a prepared corpus.

    Returns
    -------
    dict
        ``{column: summary}`` (:func:`transcribe_with`), in column order; empty for a folder
        without any (or that does not exist).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "hyp.json").write_text('{"asr_model": {"name": "m"}, "column": "hyp"}')
    >>> _ = (folder / "summary.json").write_text('{"splits": {}}')
    >>> list(hf_summaries(folder)), hf_summaries(folder / "nowhere")
    (['hyp'], {})
    """
    found = {}
    for path in sorted(Path(manifests).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(record, dict) and isinstance(record.get("asr_model"), dict)
                and record.get("column") == path.stem):
            found[path.stem] = record
    return found


def column_author(manifests, column):
    """Who wrote a text column of a prepared corpus, in words, from the record its writer left.

    A Hugging Face ASR's summary (:func:`transcribe_with`) gives its name, type and test WER; our
    own ASR's record (``recipes/transcribe.py --asr``) its run; an import
    (``python -m data_prep import-transcripts``) its file. ``words`` is the manual transcript.

    Returns
    -------
    str or None
        None when no record says (a column written by hand).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "hyp.json").write_text('{"asr_model": {"name": "org/whisper@abc", "type": "whisper"}, '
    ...                                      '"test.csv": {"wer": 12.345}}')
    >>> _ = (folder / "asr_words.json").write_text('{"test.csv": {"asr": "/out/results/asr/1"}}')
    >>> column_author(folder, "hyp"), column_author(folder, "asr_words")
    ('org/whisper@abc (whisper; test WER 12.35 %)', 'ASR run asr/1')
    >>> column_author(folder, "words"), column_author(folder, "other")
    ('manual', None)
    """
    if column == "words":
        return "manual"
    manifests = Path(manifests)
    for name in (f"{column}.json", f"transcripts_{column}.json"):
        try:
            record = json.loads((manifests / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        if isinstance(record.get("asr_model"), dict):
            model, wer = record["asr_model"], (record.get("test.csv") or {}).get("wer")
            scored = "" if wer is None else f"; test WER {wer:.2f} %"
            return f"{model.get('name')} ({model.get('type')}{scored})"
        if isinstance(record.get("test.csv"), dict) and record["test.csv"].get("asr"):
            run = Path(record["test.csv"]["asr"])  # <results>/<row>/<seed>: named as the table lays it out
            return f"ASR run {run.parent.name}/{run.name}"
        if record.get("file"):
            return f"imported from {record['file']}"
    return None


def text_authors(manifests, *text_keys):
    """Who wrote the text columns a run read (its ``train_text`` and ``eval_text`` values).

    Returns
    -------
    str or None
        E.g. ``asr_words: ASR run asr/1``, one entry per column but ``words``; None for manual
        text only.

    Example
    -------
    >>> text_authors("/nowhere", "words", "words"), text_authors("/nowhere", "words,asr_words", None)
    (None, 'asr_words: not recorded')
    """
    columns = dict.fromkeys(c.strip() for key in text_keys if key for c in str(key).split(",") if c.strip())
    authors = [f"{c}: {column_author(manifests, c) or 'not recorded'}" for c in columns if c != "words"]
    return "; ".join(authors) or None
