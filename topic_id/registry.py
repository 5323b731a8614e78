"""The system registry ``recipes/systems.csv``: one row per Table I row (plus the support ASR).

Columns: ``name`` (results folder name), ``table_row`` (paper Table I row, empty for support
systems), ``paper_name``, ``hparams`` (YAML, relative to the project root), ``overrides`` (extra
``--key=value`` arguments), ``init_from`` (the row whose best checkpoint this stage starts from),
``needs`` (``asr_words`` when the manifests must be transcribed first), ``train_text`` and
``test_text`` (which text the row saw: manual, own ASR or external ASR; B12).
"""

import csv
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = ROOT / "recipes" / "systems.csv"


def load_registry(path=REGISTRY):
    """Read the registry as a list of dicts, in dependency order (as written).

    Arguments
    ---------
    path : str or Path
        The registry CSV.

    Returns
    -------
    list of dict
        Rows with ``overrides`` split into an argument list.
    """
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    names = set()
    for row in rows:
        row["overrides"] = shlex.split(row["overrides"])
        if row["init_from"] and row["init_from"] not in names:
            raise ValueError(f"{path}: {row['name']} starts from {row['init_from']}, listed later")
        names.add(row["name"])
    return rows
