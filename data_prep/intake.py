"""Reading input rows and accounting for each one, shared by every preparation.

:class:`Intake` counts every input row and records every row it does not keep with a reason that
names the row and the fix, so ``kept + dropped == input`` holds by construction: no row disappears
without a reason a user can act on.
The two preparations of a user's CSV, ``csv`` (audio + topic) and ``speak`` (text + topic), read
it with :func:`read_metadata` under the same :data:`COLUMN_ALIASES`, and check each row's topic
and split with :func:`check_row` under the same :data:`SPLIT_NAMES`, so a CSV means the same to
both and a bad row is dropped with the same reason by both.

Example
-------
>>> check_row({"topic": "sauna", "split": "Validation"})
('dev', None)
>>> check_row({"topic": "sauna", "split": "holdout"})
(None, "invalid split 'holdout': use train, dev or test (or valid, validation, val, eval)")
"""

import csv
import logging
import os
import re
from collections import Counter
from pathlib import Path

from data_prep.manifest import LONG_CHOICES, Dropped, PrepError, Segmented, audio_duration, check_duration

logger = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[\w][\w.\-]*$")

COLUMN_ALIASES = {"id": ("id", "ID"), "transcript": ("transcript", "text")}
"""Header names read as one column: ``ID`` (the manifest's spelling) is ``id``, and ``text`` (what
``speak`` says) is the ``transcript``. The first name the header has wins."""

SPLIT_NAMES = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "val": "dev",
               "test": "test", "eval": "test"}
"""Values of a ``split`` column (any case) and the split each means."""


def read_metadata(path, required, checked=None, aliases=None):
    """Read a metadata CSV whose rows may be individually broken.

    The delimiter (``,`` ``;`` or tab) is taken from the header. A row with bytes that are not
    UTF-8 in a column that is used is returned with ``None`` instead of its values, so that the
    caller drops that row and keeps the others; such bytes in unused columns do no harm. A row
    with more non-empty fields than the header has columns (typically a text with an unquoted
    separator, which shifts every later column) keeps the surplus under the key ``None``, for
    :func:`check_row` to drop.

    Arguments
    ---------
    path : str or Path
        The CSV file, with a header line.
    required : iterable of str
        Columns that must be in the header.
    checked : iterable of str, optional
        Columns whose values must be UTF-8 (default: ``required``).
    aliases : dict, optional
        ``{column: names}``: the first of ``names`` the header has is read as ``column``
        (:data:`COLUMN_ALIASES` for the CSVs of users).

    Returns
    -------
    list of tuple
        ``(source, values)`` per data row: ``source`` is ``"<path>:<line>"`` and ``values`` a
        dict of stripped strings, or None for a non-UTF-8 row.

    Raises
    ------
    PrepError
        When the file is missing, empty, or lacks a required column.
    """
    path = Path(path)
    checked = tuple(required if checked is None else checked)
    try:
        f = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as err:
        raise PrepError(f"cannot read metadata file {path} ({err.strerror}): check the path") from err
    with f:
        header = f.readline()
        delimiter = max(",;\t", key=header.count)
        f.seek(0)
        reader = csv.reader(f, delimiter=delimiter)
        header = [c.strip() for c in next(reader, [])]
        columns = _aliased(header, aliases or {})
        missing = [c for c in required if c not in columns]
        if missing:
            names = [" or ".join((aliases or {}).get(c, (c,))) for c in missing]
            raise PrepError(
                f"metadata file {path} lacks the required column(s) {', '.join(names)} "
                f"(header: {', '.join(header) or 'empty'}): add or rename the column"
            )
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            padded = values + [""] * (len(columns) - len(values))
            row = {c: padded[i].strip() for i, c in enumerate(columns)}
            surplus = [v for v in values[len(columns):] if v.strip()]
            if surplus:
                row[None] = surplus
            try:
                "".join(row.get(c, "") for c in checked).encode("utf-8")
            except UnicodeEncodeError:
                row = None
            rows.append((f"{path}:{reader.line_num}", row))
        return rows


def _aliased(header, aliases):
    """The header with the first alias of each column renamed to the column."""
    columns = list(header)
    for column, names in aliases.items():
        present = [n for n in names if n in header]
        if present and column not in header:
            columns[header.index(present[0])] = column
    return columns


def check_row(values, allowed=None):
    """The checks every CSV-described corpus applies to a row: readable, topic, split name.

    Arguments
    ---------
    values : dict or None
        A row of :func:`read_metadata` (None: not UTF-8).
    allowed : collection of str, optional
        The topics a row may have (a topics file); by default any non-empty topic.

    Returns
    -------
    tuple
        ``(split, reason)``: the split the row names (None without a ``split`` column) and
        None, or None and the reason to drop the row.
    """
    if values is None:
        return None, "non-UTF-8 bytes in the row: re-save the metadata CSV as UTF-8"
    if None in values:
        return None, (f"{len(values) - 1 + len(values[None])} fields but {len(values) - 1} columns: "
                      "quote a value that contains the separator")
    topic = values.get("topic", "")
    if not topic:
        return None, "empty topic: fill in the topic of the row"
    if allowed is not None and topic not in allowed:
        return None, f"unknown topic {topic!r}: not in the topics file; add it there or fix the row"
    if "split" not in values:
        return None, None
    split = SPLIT_NAMES.get(values["split"].lower())
    if split is None:
        aliases = ", ".join(n for n in SPLIT_NAMES if n not in SPLIT_NAMES.values())
        return None, f"invalid split {values['split']!r}: use train, dev or test (or {aliases})"
    return split, None


def wav_entry(path, out_dir):
    """The manifest ``wav`` value of a file: ``$data_root``-relative when under ``out_dir``.

    SpeechBrain replaces ``$data_root`` by the data folder when it reads a manifest, so a
    prepared folder that holds its audio can be moved; other files keep their absolute path.
    """
    path = Path(path).resolve()
    try:
        return "$data_root/" + path.relative_to(Path(out_dir).resolve()).as_posix()
    except ValueError:
        return str(path)


class Intake:
    """The accounting of input rows: counts them and collects the dropped ones with reasons.

    Arguments
    ---------
    long : str
        What becomes of a recording over the duration limit: ``"drop"`` (the paper's choice) or
        ``"segment"`` (cut into segments, see :mod:`data_prep.duration_limit`).
    """

    def __init__(self, long="drop"):
        if long not in LONG_CHOICES:
            raise PrepError(f"unknown choice for long recordings {long!r}: use {' or '.join(LONG_CHOICES)}")
        self.n_input = 0
        self.dropped = []
        self.counts = Counter()
        """Notable kept rows by kind (e.g. ``empty_transcripts``), for ``summary.json``."""
        self.segmented = [] if long == "segment" else None
        """The :class:`~data_prep.manifest.Segmented` recordings; None when they are dropped."""
        self.long = {}
        """``{ID: audio path}`` of the recordings over the limit that are to be cut."""
        self.given_up = set()
        """IDs of the recordings to be cut whose manual transcript was given up."""
        self.aligned = {}
        """``{ID: [(start_s, end_s, word)]}`` of the recordings to be cut whose manual transcript
        is kept and shared among their segments by a word alignment."""
        self._source = {}

    @property
    def ids(self):
        """The IDs claimed so far."""
        return set(self._source)

    def add(self):
        """Count one input row."""
        self.n_input += 1

    def drop(self, source, reason):
        """Record an input row that is not kept."""
        self.dropped.append(Dropped(source, reason))

    def drop_row(self, row, reason):
        """Record a row taken out after it was accepted (by its ID)."""
        self.drop(self._source[row.ID], reason)

    def drop_rows(self, pairs):
        """Record ``(row, reason)`` pairs taken out after they were accepted."""
        for row, reason in pairs:
            self.drop_row(row, reason)

    def check_audio(self, rec_id, path, max_duration):
        """Measure a row's audio; return ``(duration, reason)`` with a reason to drop it, or None.

        A recording of ``max_duration`` or more is dropped, or, when segmenting, marked to be cut
        (:attr:`long`).
        """
        duration, reason = audio_duration(path)
        if reason is None and self.segmented is not None and duration >= max_duration:
            self.long[rec_id] = Path(path)
        elif reason is None:
            reason = check_duration(duration, path, max_duration)
        return duration, reason

    def transcript(self, rec_id, words, alignment=None):
        """The words a kept row keeps.

        A recording to be cut keeps its transcript only with a word alignment, which says which
        words go to which segment (:func:`data_prep.alignments.words_per_segment`); without one
        the transcript is given up (see :mod:`data_prep.duration_limit`).

        Arguments
        ---------
        rec_id : str
            The row's ID.
        words : str
            Its normalised manual transcript, or "".
        alignment : list of tuple, optional
            ``[(start_s, end_s, word)]`` of the transcript (LP's TextGrid word tier).

        Returns
        -------
        str
        """
        if rec_id in self.long and words:
            if alignment is not None:
                self.aligned[rec_id] = alignment
                return words
            self.given_up.add(rec_id)
            return ""
        return words

    def record_segments(self, row, seg_ids):
        """Account for a row cut into segments; return the reason to drop it instead, or None.

        The segment IDs are claimed like input IDs, so a segment never takes an ID in use.
        """
        source = self._source[row.ID]
        for seg_id in seg_ids:
            reason = self.claim_id(seg_id, source)
            if reason is not None:
                return f"recording {row.ID!r} is cut into segments, but a segment has a {reason}"
        self.segmented.append(Segmented(source, row.ID, len(seg_ids)))
        return None

    def claim_id(self, rec_id, source, filename=False):
        """Reserve an ID; return the reason to drop the row (empty, unsafe, duplicate) or None.

        Arguments
        ---------
        rec_id : str
            The row's ID.
        source : str
            Where the row comes from (file and line).
        filename : bool
            The ID names an output file, so it must be a safe file name.
        """
        if not rec_id:
            return "empty ID: fill in the ID (recordingId/id/path) of the row"
        if filename and (not _SAFE_ID.match(rec_id) or os.sep in rec_id):
            return f"invalid ID {rec_id!r}: use only letters, digits, '.', '_' and '-'"
        if rec_id in self._source:
            return f"duplicate ID {rec_id!r}, first at {self._source[rec_id]}: remove or rename one"
        self._source[rec_id] = source
        return None
