"""How a results tree was made: the checkout, torch, devices and run time its runs recorded.

``recipes/train.py`` leaves two records in every run folder besides the results: SpeechBrain's
``log.txt``, one timestamped line per event, appended to by every invocation of the run (a resumed
run included), and ``run.json``, the environment of the run's latest invocation (Python and package
versions, git revision of the recipes' checkout, device), read by
:func:`topic_id.training.run_folder.read_environment`. :mod:`topic_id.reporting.report` puts what
they say into the header and the run-time section of ``RESULTS.md``; nothing here is measured anew.
"""

import os
import re
from datetime import datetime, timezone
from pathlib import Path

from topic_id.training.run_folder import LOG, git_revision

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
    return git_revision(folder) or "unknown"


def generation_date():
    """Today (UTC) as ``YYYY-MM-DD``; ``SOURCE_DATE_EPOCH``, where set, fixes it (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.date().isoformat()


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
