"""The one exception a user can fix by changing a configuration, and how commands report it.

A bad override, an unknown option value, a corpus that lacks what a system reads, or an earlier
stage that is missing: each stops before anything trains, as one line ``error: <what and how to
fix it>`` on stderr and exit status 2, without a traceback (the convention of ``python -m
data_prep`` and ``topic-id``).
"""

import sys


class ConfigError(ValueError):
    """A configuration problem; the message says what is wrong and how to fix it."""


def one_line(message):
    """``message`` on one line (YAML and path errors often span several).

    Example
    -------
    >>> one_line("bad value\\n  in line 3 ")
    'bad value in line 3'
    """
    return " ".join(str(message).split())


def exit_with(err, status=2):
    """Print ``error: <err>`` on stderr and exit with ``status``.

    Example
    -------
    >>> try:
    ...     exit_with(ConfigError("sorting must be random, not 'rnd'"))
    ... except SystemExit as stop:
    ...     stop.code
    2
    """
    print(f"error: {one_line(err)}", file=sys.stderr)
    raise SystemExit(status)
