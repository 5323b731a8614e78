"""Transcripts made elsewhere (another ASR, a hand-corrected pass) brought into a prepared corpus.

    python -m data_prep import-transcripts PREPARED_DIR FILE --column NAME [--format kaldi|csv|jsonl]

``FILE`` is one of :data:`FORMATS`:

``kaldi``
    Kaldi's ``text``: one ``ID word word ...`` line per utterance (an ID alone: empty text).
``csv``
    A header naming the ID column (one of :data:`ID_NAMES`) and the text column (one of
    :data:`TEXT_NAMES`, or the ``--column`` name itself), in any case and order; other columns
    are ignored.
``jsonl``
    One JSON object per line with an ID key and a text key, named as for ``csv``.

Without ``--format`` it is taken from the extension (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``)
or else from the first line: ``{`` starts JSON lines, a CSV header with both names a CSV, anything
else is Kaldi ``text``.

Each text is normalised as the corpus's own transcripts are
(:func:`data_prep.text_norm.normalize_transcript`, in the corpus's language:
:func:`data_prep.prepared.text_normalisation`), so that a WER against ``words`` and a text
system trained on either column compare like with like. The column is filled in ``train.csv``,
``dev.csv`` and ``test.csv`` (appended as the last column where a manifest lacks it); every other
column and the row order stay as they were, byte for byte. Every ID is accounted for in the summary
(returned, and written to ``PREPARED_DIR/transcripts_<column>.json``): matched, missing from the file
(left empty), unknown to the manifests. A file that cannot be read or parsed, or that names an ID
twice, changes nothing: all three manifests are rewritten only after the whole file parsed.
"""

import contextlib
import csv
import io
import json
import logging
import re
from pathlib import Path

from corpus_tools.files import atomic_write
from data_prep.manifest import SPLITS, PrepError, manifest_paths, write_rows
from data_prep.prepared import manifest_columns, read_manifest, text_normalisation
from data_prep.text_norm import normalize_transcript

logger = logging.getLogger(__name__)

FORMATS = ("kaldi", "csv", "jsonl")
ID_NAMES = ("id", "utt_id", "utterance_id", "uttid")
"""Header names (any case) taken for the utterance ID of a CSV or JSON lines file."""
TEXT_NAMES = ("text", "transcript", "transcription", "sentence", "hypothesis")
"""Header names (any case) taken for the text, besides the name of the column being filled."""

RESERVED_COLUMNS = ("ID", "wav", "duration", "topic", "words", "speaker", "subset",
                    "text", "text_emb", "text_tokens", "sig", "topic_encoded", "tokens", "tokens_bos",
                    "tokens_eos")
"""Names an imported column may not take: the manifest's own columns (``words`` is the manual
transcript every WER is measured against) and the keys the training pipelines compute, which a
manifest column of the same name would silently shadow in SpeechBrain's dataset."""
_COLUMN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}


def parse_kaldi(text):
    """The entries of a Kaldi ``text`` file: ``ID word word ...`` per line.

    Arguments
    ---------
    text : str
        The file's contents.

    Returns
    -------
    list of tuple
        ``(line number, ID, text)`` per non-blank line, the text as written (an ID alone: ``""``).

    Example
    -------
    >>> parse_kaldi("utt1 No MÄ kävin\\n\\nutt2\\nutt3\\tkesä  mökillä\\n")
    [(1, 'utt1', 'No MÄ kävin'), (3, 'utt2', ''), (4, 'utt3', 'kesä  mökillä')]
    """
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.strip().split(maxsplit=1)
        if fields:
            entries.append((number, fields[0], fields[1] if len(fields) > 1 else ""))
    return entries


def _key(names, column, what, where):
    """The one name of ``names`` that is an ID (``what="id"``) or text name, or PrepError."""
    accepted = ID_NAMES if what == "id" else (*TEXT_NAMES, column.lower())
    found = [n for n in names if isinstance(n, str) and n.strip().lower() in accepted]
    if len(found) > 1:
        raise PrepError(f"{where} has several {what} columns ({', '.join(found)}); keep one")
    if not found:
        raise PrepError(f"{where} has no {what} column ({', '.join(map(str, names)) or 'none'}); name it "
                        f"{' or '.join(accepted)} (any case)")
    return found[0]


def parse_csv(text, column, where="the file"):
    """The entries of a CSV whose header names an ID and a text column (see the module docstring).

    Arguments
    ---------
    text : str
        The file's contents.
    column : str
        The column being filled: also taken as the name of the text column.
    where : str
        The file, for messages.

    Returns
    -------
    list of tuple
        ``(line number, ID, text)`` per data row.

    Raises
    ------
    PrepError
        No or several ID/text columns, a row with too few or too many fields, unparsable quoting.
    """
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if not header:
            raise PrepError(f"{where} is empty: give a CSV with a header naming the ID and text columns")
        id_col = header.index(_key(header, column, "id", where))
        text_col = header.index(_key(header, column, "text", where))
        entries = []
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise PrepError(f"{where}, line {reader.line_num}: {len(fields)} fields, the header has "
                                f"{len(header)}; quote a text that holds commas (\"...\")")
            entries.append((reader.line_num, fields[id_col].strip(), fields[text_col]))
    except csv.Error as err:
        raise PrepError(f"{where} is no readable CSV ({err}): check its quoting, or give --format") from None
    return entries


def parse_jsonl(text, column, where="the file"):
    """The entries of JSON lines, one object per line with an ID key and a text key.

    Arguments
    ---------
    text : str
        The file's contents.
    column : str
        The column being filled: also taken as the name of the text key.
    where : str
        The file, for messages.

    Returns
    -------
    list of tuple
        ``(line number, ID, text)`` per non-blank line; a ``null`` text reads as ``""``.

    Raises
    ------
    PrepError
        A line that is no JSON object, lacks either key, or holds a text that is no string.
    """
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as err:
            raise PrepError(f"{where}, line {number}: not JSON ({err.msg}); write one "
                            '{"ID": ..., "text": ...} object per line') from None
        if not isinstance(item, dict):
            raise PrepError(f"{where}, line {number}: a JSON {type(item).__name__}, not an object; write "
                            'one {"ID": ..., "text": ...} object per line')
        place = f"{where}, line {number}"
        ident = item[_key(list(item), column, "id", place)]
        value = item[_key(list(item), column, "text", place)]
        if not isinstance(ident, (str, int)) or isinstance(ident, bool):
            raise PrepError(f"{place}: the ID {ident!r} is no string: write it as one")
        if value is not None and not isinstance(value, str):
            raise PrepError(f"{place}: the text {value!r} is no string: write it as one")
        entries.append((number, str(ident).strip(), value or ""))
    return entries


def infer_format(path, text, column=""):
    """The format of a transcript file, from its extension or else its first line.

    A first line that is a CSV header naming an ID column and a text column (:data:`ID_NAMES`,
    :data:`TEXT_NAMES` or ``column``) makes a CSV; one that starts with ``{`` JSON lines.

    Example
    -------
    >>> [infer_format(Path(name), body) for name, body in [("hyp.CSV", ""), ("text", "a hei\\n"),
    ...  ("out.txt", '{"ID": "a", "text": "hei"}'), ("hyp", "utt_id,Text\\na,hei\\n")]]
    ['csv', 'kaldi', 'jsonl', 'csv']
    """
    if path.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[path.suffix.lower()]
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("{"):
        return "jsonl"
    names = {n.strip().lower() for n in next(csv.reader([first]), [])}
    return "csv" if names & set(ID_NAMES) and names & {*TEXT_NAMES, column.lower()} else "kaldi"


def read_transcript_file(file, column, fmt=None):
    """Parse a transcript file into ``{ID: raw text}``.

    Arguments
    ---------
    file : str or Path
        Kaldi ``text``, CSV or JSON lines, UTF-8 (a byte-order mark is allowed).
    column : str
        The column being filled (also accepted as the text column's name of a CSV/JSON lines file).
    fmt : str, optional
        One of :data:`FORMATS`; default: :func:`infer_format`.

    Returns
    -------
    tuple
        ``(format, {ID: text})``, the IDs in file order.

    Raises
    ------
    PrepError
        An unreadable, non-UTF-8, binary, empty or unparsable file, or an ID given twice.
    """
    path = Path(file)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PrepError(f"cannot read {path} ({err.strerror}): give an existing, readable transcript "
                        "file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PrepError(f"{path} is not UTF-8 (byte {err.start}): re-save it as UTF-8, e.g. iconv -f "
                        "latin1 -t utf-8") from None
    if "\x00" in text:
        raise PrepError(f"{path} holds NUL bytes, so it is no text file: give a Kaldi text, CSV or "
                        "JSON lines file")
    if fmt is None:
        fmt = infer_format(path, text, column)
    elif fmt not in FORMATS:
        raise PrepError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
    entries = (parse_kaldi(text) if fmt == "kaldi" else
               parse_csv(text, column, str(path)) if fmt == "csv" else parse_jsonl(text, column, str(path)))
    if not entries:
        raise PrepError(f"{path} holds no transcripts ({fmt}): give a file with one line per utterance")
    found, lines = {}, {}
    for number, ident, value in entries:
        if not ident:
            raise PrepError(f"{path}, line {number}: empty ID; give every line its utterance ID")
        if ident in found:
            raise PrepError(f"{path}, line {number}: ID {ident!r} again (first on line {lines[ident]}); "
                            "keep one transcript per ID")
        found[ident], lines[ident] = value, number
    return fmt, found


def check_column(column):
    """PrepError unless ``column`` can be written to a manifest and read by ``train_text``.

    Example
    -------
    >>> check_column("whisper_words")
    >>> check_column("topic")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    data_prep.manifest.PrepError: --column topic is a column the corpus or training uses already; ...
    """
    if column in RESERVED_COLUMNS:
        raise PrepError(f"--column {column} is a column the corpus or training uses already; choose "
                        "another name, e.g. asr_words or whisper_words")
    if not _COLUMN_NAME.match(column):
        raise PrepError(f"--column {column!r}: use letters, digits, '_' and '-' only (a comma would "
                        "read as two columns in --train_text)")


def write_manifests(manifests):
    """Rewrite several manifests together: each is written to its temporary file before any is
    renamed into place, so a failure while writing leaves all of them as they were.

    Arguments
    ---------
    manifests : dict
        ``{path: (header, rows)}``, rows as :func:`data_prep.prepared.read_manifest` gives them
        with ``as_written=True``.
    """
    with contextlib.ExitStack() as stack:
        for path, (header, rows) in manifests.items():
            write_rows(stack.enter_context(atomic_write(path, newline="")), header, rows)


def import_transcripts(prepared_dir, file, column, fmt=None):
    """Fill a column of a prepared corpus's manifests from a transcript file.

    Arguments
    ---------
    prepared_dir : str or Path
        A folder a ``python -m data_prep`` command wrote (``train.csv dev.csv test.csv``).
    file : str or Path
        The transcripts (see the module docstring for the formats).
    column : str
        The manifest column to fill (``asr_words`` or a new name; :func:`check_column`).
    fmt : str, optional
        One of :data:`FORMATS`; default: from the extension or content (:func:`infer_format`).

    Returns
    -------
    dict
        The summary, also written to ``<prepared_dir>/transcripts_<column>.json``: ``file``,
        ``format``, ``column``, ``entries`` (transcripts in the file), ``rows`` (manifest rows),
        ``matched`` (rows filled), ``empty_text`` (matched rows whose text normalised to nothing),
        ``overwritten`` (matched rows whose earlier non-empty value was replaced by another text),
        ``cleared`` (missing rows whose earlier value was emptied), ``missing`` and ``missing_ids``
        (rows of no transcript, in manifest order), ``unknown`` and ``unknown_ids`` (IDs of no row,
        in file order), ``added_to`` (manifests that lacked the column) and ``splits`` (per
        manifest ``rows``, ``matched``, ``missing``).

    Raises
    ------
    PrepError
        A bad file, column or folder; nothing is written then.
    """
    prepared_dir, file = Path(prepared_dir), Path(file)
    check_column(column)
    paths = manifest_paths(prepared_dir)
    for path in paths.values():
        if not path.is_file():
            raise PrepError(f"{path} is missing: give a folder a python -m data_prep command prepared")
    record = prepared_dir / f"{column}.json"
    if record.is_file():
        # recipes/transcribe.py's record would go on naming its ASR as the author of this text.
        raise PrepError(f"{record} records the ASR that filled {column} (recipes/transcribe.py); import "
                        f"into another --column, or into a copy of the corpus, or remove {record.name} "
                        "to replace that ASR's text")
    fmt, found = read_transcript_file(file, column, fmt)
    settings = text_normalisation(prepared_dir)
    texts = {ident: normalize_transcript(raw, **settings) for ident, raw in found.items()}

    manifests, known = {}, set()
    summary = {"file": str(file.resolve()), "format": fmt, "column": column, "entries": len(texts),
               "rows": 0, "matched": 0, "empty_text": 0, "overwritten": 0, "cleared": 0,
               "missing": 0, "missing_ids": [], "unknown": 0, "unknown_ids": [], "added_to": [],
               "splits": {}}
    for split in SPLITS:
        path = paths[split]
        header, rows = manifest_columns(path), read_manifest(path, as_written=True)
        if column not in header:
            header.append(column)
            summary["added_to"].append(path.name)
        matched = 0
        for row in rows:
            known.add(row["ID"])
            before = row.get(column) or ""
            row[column] = texts.get(row["ID"], "")
            if row["ID"] in texts:
                matched += 1
                summary["empty_text"] += not row[column]
                summary["overwritten"] += bool(before) and before != row[column]
            else:
                summary["missing_ids"].append(row["ID"])
                summary["cleared"] += bool(before)
        manifests[path] = (header, rows)
        summary["splits"][split] = {"rows": len(rows), "matched": matched, "missing": len(rows) - matched}
        summary["rows"] += len(rows)
        summary["matched"] += matched
    summary["missing"] = len(summary["missing_ids"])
    summary["unknown_ids"] = [ident for ident in texts if ident not in known]
    summary["unknown"] = len(summary["unknown_ids"])

    write_manifests(manifests)
    with atomic_write(prepared_dir / f"transcripts_{column}.json") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    logger.info("%s: %s filled from %s for %d of %d rows; %d rows missing from the file, %d IDs of it "
                "unknown, %d values overwritten", prepared_dir, column, file, summary["matched"],
                summary["rows"], summary["missing"], summary["unknown"], summary["overwritten"])
    return summary
