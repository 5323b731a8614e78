"""Reading input rows and accounting for each one, shared by the LP and csv/folder preparations.

:class:`Intake` counts every input row and records every row it does not keep with a reason that
names the row and the fix, so ``kept + dropped == input`` holds by construction (DESIGN.md).
"""

import csv
import logging
import os
import re
from collections import Counter
from pathlib import Path

from data_prep.manifest import Dropped, PrepError, audio_duration, check_duration

logger = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[\w][\w.\-]*$")


def read_metadata(path, required, checked=None):
    """Read a metadata CSV whose rows may be individually broken.

    The delimiter (``,`` ``;`` or tab) is taken from the header. A row with bytes that are not
    UTF-8 in a column that is used is returned with ``None`` instead of its values, so that the
    caller drops that row and keeps the others; such bytes in unused columns do no harm.

    Arguments
    ---------
    path : str or Path
        The CSV file, with a header line.
    required : iterable of str
        Columns that must be in the header.
    checked : iterable of str, optional
        Columns whose values must be UTF-8 (default: ``required``).

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
        columns = [c.strip() for c in next(reader, [])]
        missing = [c for c in required if c not in columns]
        if missing:
            raise PrepError(
                f"metadata file {path} lacks the required column(s) {', '.join(missing)} "
                f"(header: {', '.join(columns) or 'empty'}): add or rename the column"
            )
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            padded = values + [""] * (len(columns) - len(values))
            row = {c: padded[i].strip() for i, c in enumerate(columns)}
            try:
                "".join(row.get(c, "") for c in checked).encode("utf-8")
            except UnicodeEncodeError:
                row = None
            rows.append((f"{path}:{reader.line_num}", row))
        return rows


def check_audio(path, max_duration):
    """Measure an audio file; return ``(duration, reason)`` with a reason to drop it, or None."""
    duration, reason = audio_duration(path)
    if reason is None:
        reason = check_duration(duration, path, max_duration)
    return duration, reason


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
    """The accounting of input rows: counts them and collects the dropped ones with reasons."""

    def __init__(self):
        self.n_input = 0
        self.dropped = []
        self.counts = Counter()
        """Notable kept rows by kind (e.g. ``empty_transcripts``), for ``summary.json``."""
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
