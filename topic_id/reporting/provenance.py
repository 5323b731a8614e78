"""How a results tree was made: the checkout, torch, devices and run time its runs recorded.

``recipes/train.py`` leaves two records in every run folder besides the results: SpeechBrain's
``log.txt``, one timestamped line per event, appended to by every invocation of the run (a resumed
run included), and ``env.log``, the environment of the run's first invocation (Python, installed
packages, git revision of the recipes' checkout, CUDA). :mod:`topic_id.reporting.report` puts what
they say into the header and the run-time section of ``RESULTS.md``; nothing here is measured anew.
"""

import os
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

ENV_LOG = "env.log"
LOG = "log.txt"
# SpeechBrain's log line: "2026-12-07 08:37:35,178 - speechbrain.core - INFO - Beginning experiment!"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) - ")
_START = "Beginning experiment!"


def checkout_commit(folder="."):
    """The short commit id of the git checkout holding ``folder``, or ``unknown``.

    Example
    -------
    >>> import tempfile
    >>> checkout_commit(tempfile.mkdtemp())
    'unknown'
    """
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, text=True,
                              capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip() or "unknown"


def generation_date():
    """Today (UTC) as ``YYYY-MM-DD``; ``SOURCE_DATE_EPOCH``, where set, fixes it (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.date().isoformat()


def read_environment(run_dir):
    """What a run's ``env.log`` says: ``torch`` version, git ``revision`` and ``device``.

    ``device`` is ``cpu`` when the run saw no CUDA, else ``CUDA <version>``: the log records
    whether CUDA was visible to the run, which is where ``--device`` defaults to it.

    Arguments
    ---------
    run_dir : str or Path
        A run folder.

    Returns
    -------
    dict
        The keys found (none without an ``env.log``).

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "env.log").write_text("Installed Python packages:\\ntorch==2.5.1\\n====\\n"
    ...                                  "Git revision:\\nabc1234\\n====\\nCUDA version:\\n12.4\\n")
    >>> read_environment(run)
    {'torch': '2.5.1', 'revision': 'abc1234', 'device': 'CUDA 12.4'}
    >>> _ = (run / "env.log").write_text("Git revision:\\nnot a git checkout\\n====\\nCUDA not available\\n")
    >>> read_environment(run)
    {'device': 'cpu'}
    """
    try:
        lines = (Path(run_dir) / ENV_LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    found = {}
    for i, line in enumerate(lines):
        after = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.lower().startswith("torch=="):
            found["torch"] = line.split("==", 1)[1].strip()
        elif line.startswith("Git revision:") and after and after != "not a git checkout":
            found["revision"] = after
        elif line.startswith("CUDA version:"):
            found["device"] = f"CUDA {after}" if after else "CUDA"
        elif line.startswith("CUDA not available"):
            found["device"] = "cpu"
    return found


def wall_seconds(run_dir):
    """Seconds a run spent in ``recipes/train.py``, from its ``log.txt``: the span of each invocation,
    first to last line, summed, so the time between an interruption and its resumption is not counted.

    Arguments
    ---------
    run_dir : str or Path
        A run folder.

    Returns
    -------
    float or None
        None without a readable, timestamped ``log.txt``.

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "log.txt").write_text(
    ...     "2026-01-01 10:00:00,000 - speechbrain.core - INFO - Beginning experiment!\\n"
    ...     "2026-01-01 10:01:00,500 - speechbrain.utils.epoch_loop - INFO - Going into epoch 1\\n"
    ...     "* a continuation line without a stamp\\n"
    ...     "2026-01-01 12:00:00,000 - speechbrain.core - INFO - Beginning experiment!\\n"
    ...     "2026-01-01 12:00:30,000 - speechbrain.utils.train_logger - INFO - Epoch loaded: 1\\n")
    >>> wall_seconds(run)
    90.5
    """
    try:
        lines = (Path(run_dir) / LOG).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    spans, first, last = [], None, None
    for line in lines:
        match = _STAMP.match(line)
        if not match:
            continue
        when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        when = when.replace(microsecond=1000 * int(match.group(2)))
        if line.rstrip().endswith(_START) and first is not None:
            spans.append((last - first).total_seconds())
            first = None
        first = when if first is None else first
        last = when
    if first is None:
        return None
    spans.append((last - first).total_seconds())
    return round(sum(spans), 3)
