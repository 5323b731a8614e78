"""Stage transfer: initialise named modules from another run's best checkpoint.

The published two-stage systems (emb transfer, multi-task) inherited weights by re-using stage 1's
output folder, so stage 2 also resumed stage 1's optimizer, scheduler and epoch counter, could train
zero epochs and could report a stage-1 checkpoint as its best (original_recipes.md §2.10, B6). Here a
later stage has its own output folder and its own optimizer, scheduler and counter; only the named
modules are copied, from the earlier stage's best checkpoint, and only when the later stage starts
fresh (a restarted stage resumes from its own checkpoints instead).
"""

import logging
from pathlib import Path

from speechbrain.utils.checkpoints import (
    DEFAULT_LOAD_HOOKS,
    Checkpointer,
    get_default_hook,
)

from topic_id.brains import selection

logger = logging.getLogger(__name__)


class TransferError(Exception):
    """The earlier stage cannot provide what this stage needs."""


def best_checkpoint(run_dir, metric):
    """The best checkpoint of a finished run.

    Arguments
    ---------
    run_dir : str or Path
        The earlier stage's output folder (with ``save/CKPT+*``).
    metric : str
        The metric that run selected by (``micro_f1``, ``wer``, ...).

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
    """
    save = Path(run_dir) / "save"
    ckpt = Checkpointer(save).find_checkpoint(**selection(metric))
    if ckpt is None:
        raise TransferError(
            f"no checkpoint with a {metric!r} score under {save}: train that stage first "
            "(see recipes/systems.csv for the order)"
        )
    return ckpt


def init_from(run_dir, modules, names, metric, labels_file=None):
    """Copy the named modules' weights from ``run_dir``'s best checkpoint.

    Arguments
    ---------
    run_dir : str or Path
        The earlier stage's output folder.
    modules : dict
        This stage's modules by name (the keys the checkpointer saves them under).
    names : list of str
        Which modules to initialise; every one must exist in both stages.
    metric : str
        The earlier stage's selection metric.
    labels_file : str or Path, optional
        This stage's ``topics.txt``; when given, the earlier stage's copy must list the same labels
        in the same order, or transferred classifier rows would be silently permuted (B8).

    Returns
    -------
    Path
        The checkpoint directory used.
    """
    ckpt = best_checkpoint(run_dir, metric)
    if labels_file is not None:
        theirs = Path(run_dir) / "topics.txt"
        if theirs.is_file() and theirs.read_text() != Path(labels_file).read_text():
            raise TransferError(f"label order of {theirs} differs from {labels_file} (B8)")
    for name in names:
        if name not in modules:
            raise TransferError(f"this stage has no module {name!r} to initialise")
        if name not in ckpt.paramfiles:
            raise TransferError(f"{ckpt.path} has no {name!r}; it holds {sorted(ckpt.paramfiles)}")
        # The module's own load hook: plain state dicts, and SpeechBrain objects with custom
        # checkpoint formats (e.g. InputNormalization statistics).
        load = get_default_hook(modules[name], DEFAULT_LOAD_HOOKS)
        load(modules[name], ckpt.paramfiles[name], end_of_epoch=True)
        logger.info("initialised %s from %s", name, ckpt.path)
    return ckpt.path
