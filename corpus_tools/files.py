"""Writing files and folders so that a crash never leaves a half-written one under its final name.

The one home of the atomic writes of both packages: manifests, audio, metrics, reports, stand-in
encoders, exports and checkpoints of the pretraining all go through :func:`atomic_write` or
:func:`replace_dir`, so a rerun that finds a file or folder can trust it: an interrupted write
leaves the old file or none, never a truncated one.
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="w", **kwargs):
    """Open a temporary file beside ``path`` and rename it to ``path`` when the block succeeds.

    Arguments
    ---------
    path : str or Path
        The final file; its folder is created if needed.
    mode : str
        ``"w"`` (text, UTF-8) or ``"wb"``.
    **kwargs
        Passed to :func:`open` (e.g. ``newline=""`` for CSV).

    Yields
    ------
    file
        The open temporary file. On an exception it is removed and ``path`` is left untouched.

    Example
    -------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with atomic_write(target) as f:
    ...     _ = f.write("done")
    >>> target.read_text()
    'done'
    >>> try:
    ...     with atomic_write(target) as f:
    ...         _ = f.write("half")
    ...         raise KeyboardInterrupt
    ... except KeyboardInterrupt:
    ...     pass
    >>> target.read_text(), sorted(p.name for p in target.parent.iterdir())
    ('done', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_leftover(path):
    """Whether ``path`` is the temporary file of an interrupted :func:`atomic_write`.

    Example
    -------
    >>> is_leftover(Path(".train.csv.k2j4_x.tmp")), is_leftover(Path("train.csv"))
    (True, False)
    """
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def temporary_sibling(target, label="tmp"):
    """A fresh, unused path beside ``target`` for building it (hidden, unique per process).

    Example
    -------
    >>> temporary_sibling(Path("/x/model")).name.startswith(".model.tmp-")
    True
    """
    target = Path(target)
    return target.with_name(f".{target.name}.{label}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def replace_dir(new, target, keep_existing=None):
    """Move the finished folder ``new`` to ``target``, replacing an older one.

    The older folder is renamed aside first and removed last, so ``target`` is never a mix of
    the two builds.

    Arguments
    ---------
    new : Path
        The finished folder (on the same file system, e.g. from :func:`temporary_sibling`).
    target : Path
        Where it belongs.
    keep_existing : callable, optional
        When another process put a folder at ``target`` between the two renames, keep that one
        (and drop ``new``) if ``keep_existing(target)`` is true; otherwise the error propagates.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for build in ("one", "two"):
    ...     new = temporary_sibling(root / "model")
    ...     new.mkdir()
    ...     _ = (new / "build.txt").write_text(build)
    ...     replace_dir(new, root / "model")
    >>> (root / "model" / "build.txt").read_text(), sorted(p.name for p in root.iterdir())
    ('two', ['model'])
    """
    new, target = Path(new), Path(target)
    old = None
    if target.exists():
        old = temporary_sibling(target, "old")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except OSError:
        if keep_existing is None or not keep_existing(target):
            raise
        shutil.rmtree(new, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
