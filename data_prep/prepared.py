"""Reading a prepared corpus: its manifests (``$data_root`` resolved), its topics, its text
normalisation, a linked copy.

The one reader of the manifest contract of :mod:`data_prep.manifest`: whatever reads a manifest
outside SpeechBrain's ``DynamicItemDataset.from_csv`` reads it with :func:`read_manifest`.
"""

import csv
import json
from pathlib import Path

from data_prep.manifest import DONE_MARKER, PrepError
from data_prep.text_norm import text_settings


DATA_ROOT = "$data_root"
"""Stands, in a manifest's ``wav`` column, for the folder the manifest is read from (or a root given
to :func:`read_manifest`); SpeechBrain's ``DynamicItemDataset.from_csv`` replaces it the same way
given ``replacements={"data_root": ...}``."""


def resolve_data_root(wav, data_root):
    """A ``wav`` value with :data:`DATA_ROOT` replaced by ``data_root``.

    Example
    -------
    >>> resolve_data_root("$data_root/audio/a.flac", "/corpus"), resolve_data_root("/x/b.wav", "/corpus")
    ('/corpus/audio/a.flac', '/x/b.wav')
    """
    return wav.replace(DATA_ROOT, str(data_root))


def manifest_columns(path):
    """The column names of a manifest CSV, in file order (empty for an empty file)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f).fieldnames or [])


def read_manifest(path, data_root=None, as_written=False):
    """The rows of a manifest CSV, in file order, as training reads them.

    Every value is the string the file holds (empty cells ``""``), except ``duration``, a float, and
    ``wav``, where :data:`DATA_ROOT` stands for ``data_root`` (:func:`resolve_data_root`). Columns
    are those of the file: a manifest of audio alone (``ID,wav``) reads as well.

    Arguments
    ---------
    path : str or Path
        The manifest.
    data_root : str or Path, optional
        What ``$data_root`` stands for (default: the manifest's folder).
    as_written : bool
        Every value exactly as the file holds it (``$data_root`` kept, ``duration`` a string): the
        rows of a manifest that is rewritten with a column added.

    Returns
    -------
    list of dict

    Raises
    ------
    PrepError
        A ``duration`` that is not a number.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "test.csv").write_text("ID,wav,duration,words\\na,$data_root/a.flac,1.500,\\n")
    >>> (row,) = read_manifest(folder / "test.csv", data_root="/corpus")
    >>> row
    {'ID': 'a', 'wav': '/corpus/a.flac', 'duration': 1.5, 'words': ''}
    >>> read_manifest(folder / "test.csv")[0]["wav"] == f"{folder}/a.flac"
    True
    >>> read_manifest(folder / "test.csv", as_written=True)[0]["duration"]
    '1.500'
    """
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if as_written:
        return rows
    root = Path(path).parent if data_root is None else data_root
    for row in rows:
        if row.get("wav"):
            row["wav"] = resolve_data_root(row["wav"], root)
        if "duration" in row:
            try:
                row["duration"] = float(row["duration"])
            except (TypeError, ValueError):
                raise PrepError(f"{path}, row {row.get('ID')}: duration {row['duration']!r} is not a "
                                "number; re-prepare the corpus") from None
    return rows


def read_topics(folder):
    """Read the label order of a prepared corpus."""
    path = Path(folder) / "topics.txt"
    if not path.is_file():
        raise PrepError(f"{path} is missing: prepare the corpus first (python -m data_prep ...)")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def text_normalisation(folder):
    """How a prepared corpus's transcripts were normalised: ``{"language", "numbers"}``.

    Text written into the corpus later (an ASR's, an import) is normalised the same way, so that a
    WER against ``words`` and the text systems compare like with like. A corpus prepared before the
    setting was recorded (or without ``summary.json``) is Finnish, as every preparation then was.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> text_normalisation(folder)
    {'language': 'fi', 'numbers': 'drop'}
    >>> _ = (folder / "summary.json").write_text('{"text_normalisation": {"language": "en", "numbers": "keep"}}')
    >>> text_normalisation(folder)
    {'language': 'en', 'numbers': 'keep'}
    """
    path = Path(folder) / DONE_MARKER
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("text_normalisation") or {}
    except (OSError, ValueError):
        recorded = {}
    try:
        return text_settings(recorded.get("language", "fi"), recorded.get("numbers"))
    except ValueError as err:
        raise PrepError(f"{path}: text_normalisation: {err}; re-prepare the corpus") from None


def linked_copy(data, copy):
    """A copy of a prepared corpus's manifests, its audio and caches shared by symlink.

    Each ASR that fills ``asr_words`` writes into a copy of its own, so no ASR's transcripts
    overwrite another's. An existing ``copy`` is left as it is (the copy is the first step of an
    interrupted transcription, which resumes in it).

    Arguments
    ---------
    data : str or Path
        The prepared corpus.
    copy : str or Path
        The folder to create.

    Returns
    -------
    Path
        ``copy``.

    Example
    -------
    >>> import tempfile
    >>> src, dst = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp()) / "copy"
    >>> _ = (src / "train.csv").write_text("ID,wav\\n")
    >>> (src / "audio").mkdir()
    >>> copied = linked_copy(src, dst)
    >>> (copied / "train.csv").is_symlink(), (copied / "audio").is_symlink()
    (False, True)
    """
    import shutil

    copy = Path(copy)
    if not copy.exists():
        # Built beside and renamed, so an interrupted copy is never taken for a finished one.
        partial = copy.with_name(copy.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for item in Path(data).iterdir():
            target = partial / item.name
            if item.is_file():
                shutil.copy2(item, target)
            else:
                target.symlink_to(item.resolve())
        partial.rename(copy)
    return copy
