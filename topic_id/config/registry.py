"""The system registry ``recipes/systems.csv``: one row per Table I row (plus the support ASR).

Columns: ``name`` (results folder name), ``table_row`` (paper Table I row; empty for support
systems; a word such as ``BoW`` or ``ours`` for rows of ours that are not in the paper, e.g. the
bag-of-words baselines and the fine-tuned text encoder, which Table I lists after the paper row
above them and never gives paper numbers), ``paper_name``, ``hparams`` (YAML, relative to the checkout's root), ``overrides`` (extra
``--key=value`` arguments), ``init_from`` (the row whose best checkpoint this stage starts from),
``needs`` (which ASR must have filled ``asr_words`` first, see :func:`transcriber`), ``train_text``
and ``test_text`` (which text the row saw: manual, own ASR or external ASR, so a row that read
the manual transcript at test time is marked as such).

``needs`` is empty (the prepared corpus as it is), ``asr_words`` (``asr_words`` filled by the
standalone ASR, row ``asr``) or ``own_asr:<row>`` (filled by the ASR of an earlier row, e.g. the
multi-task system's stage 1). Each ASR writes into its own corpus copy (manifests copied, audio and
caches linked: ``data_prep.prepared.linked_copy``), so the manifest columns stay those of the
contract and no ASR's transcripts overwrite another's.
"""

import csv
import shlex
from pathlib import Path

from topic_id.errors import ConfigError

RESULTS_COPY = "systems.csv"
"""``recipes/run_table.sh`` copies the registry it ran into ``<out>/results/systems.csv``, so a results
tree carries its own row list and ``topic-id report`` needs no checkout."""


def registry_of(results_dir, registry=None):
    """The registry of a results tree: ``registry`` when given, else the tree's own copy.

    Arguments
    ---------
    results_dir : str or Path
        The results tree (``<out>/results``).
    registry : str or Path, optional
        An explicit registry CSV (e.g. ``recipes/systems.csv`` of a checkout).

    Returns
    -------
    Path

    Raises
    ------
    ConfigError
        Neither is there.
    """
    path = Path(registry) if registry else Path(results_dir) / RESULTS_COPY
    if not path.is_file():
        hint = "" if registry else " (run_table.sh writes it)"
        raise ConfigError(f"{path} does not exist{hint}: pass --registry recipes/systems.csv of the "
                          "checkout that trained the runs")
    return path


def load_registry(path):
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
        if transcriber(row) is not None and transcriber(row) not in names:
            raise ValueError(f"{path}: {row['name']} needs the ASR of {transcriber(row)}, listed later")
        names.add(row["name"])
    return rows


def transcriber(row):
    """The registry row whose ASR must fill ``asr_words`` of the corpus ``row`` reads.

    Arguments
    ---------
    row : dict
        A registry row.

    Returns
    -------
    str or None
        ``asr`` for ``needs=asr_words``, ``<name>`` for ``needs=own_asr:<name>``, None when the row
        reads the prepared corpus as it is.

    Example
    -------
    >>> transcriber({"needs": "own_asr:multitask_s1"}), transcriber({"needs": ""})
    ('multitask_s1', None)
    """
    needs = row["needs"].strip()
    if not needs:
        return None
    if needs == "asr_words":
        return "asr"
    if needs.startswith("own_asr:") and needs.split(":", 1)[1]:
        return needs.split(":", 1)[1]
    raise ValueError(f"needs must be empty, asr_words or own_asr:<row>, not {needs!r}")
