"""Stage transfer: initialise named modules from another run's best checkpoint.

The published two-stage systems (emb transfer, multi-task) inherited weights by re-using stage 1's
output folder, so stage 2 also resumed stage 1's optimizer, scheduler and epoch counter, could train
zero epochs and could report a stage-1 checkpoint as its best (docs/published_recipes.md, 'Stage transfer
through a shared output folder'). Here a
later stage has its own output folder and its own optimizer, scheduler and counter; only the named
modules are copied, from the earlier stage's best checkpoint, and only when the later stage starts
fresh (a restarted stage resumes from its own checkpoints instead).
"""

import logging
import shutil
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import DEFAULT_LOAD_HOOKS, get_default_hook

from topic_id.training.run_folder import TOPICS, Run, RunError

logger = logging.getLogger(__name__)


class TransferError(RunError):
    """The earlier stage cannot provide what this stage needs."""


def best_checkpoint(run_dir, metric=None):
    """The best checkpoint of a finished run.

    Arguments
    ---------
    run_dir : str or Path
        The earlier stage's output folder (with ``save/CKPT+*``).
    metric : str, optional
        The metric to select by (``micro_f1``, ``wer``, ...); by default the one that run
        selected its own best checkpoint by, so the two stages cannot disagree.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
    """
    try:
        return Run(run_dir).best_checkpoint(metric)
    except RunError as err:
        raise TransferError(str(err)) from None


def source_checkpoint(run_dir, modules, names, metric, labels_file=None):
    """The checkpoint :func:`init_from` would copy from, after every check, without loading it.

    ``recipes/train.py`` calls it before anything is written, so a missing or mismatching earlier
    stage stops the run with one line instead of after the set-up.

    Arguments
    ---------
    run_dir, modules, names, metric, labels_file
        As for :func:`init_from`.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
    """
    ckpt = best_checkpoint(run_dir, metric)
    if labels_file is not None:
        theirs = Path(run_dir) / TOPICS
        if theirs.is_file() and theirs.read_text() != Path(labels_file).read_text():
            raise TransferError(f"label order of {theirs} differs from {labels_file}: "
                                 "the transferred classifier rows would mean other topics")
    for name in names:
        if name not in modules:
            raise TransferError(f"this stage has no module {name!r} to initialise")
        if name not in ckpt.paramfiles:
            raise TransferError(f"{ckpt.path} has no {name!r}; it holds {sorted(ckpt.paramfiles)}")
        _check_shapes(name, modules[name], ckpt.paramfiles[name])
    return ckpt


def _check_shapes(name, module, paramfile):
    """Refuse a saved module whose tensors have other shapes than this stage's (other sizes)."""
    if not isinstance(module, torch.nn.Module):
        return
    saved = torch.load(paramfile, map_location="cpu", weights_only=False)
    if not isinstance(saved, dict):  # a custom checkpoint format (e.g. normalisation statistics)
        return
    for key, tensor in module.state_dict().items():
        theirs = saved.get(key)
        if isinstance(theirs, torch.Tensor) and theirs.shape != tensor.shape:
            raise TransferError(
                f"{name}.{key} is {list(theirs.shape)} in {paramfile} but {list(tensor.shape)} here: "
                "the two stages must be built at the same sizes (same profile and size overrides)")


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
    metric : str or None
        The metric to pick the earlier stage's best checkpoint by; None: that stage's own
        ``ckpt_select``.
    labels_file : str or Path, optional
        This stage's ``topics.txt``; when given, the earlier stage's copy must list the same labels
        in the same order, or transferred classifier rows would be silently permuted.

    Returns
    -------
    Path
        The checkpoint directory used.
    """
    ckpt = source_checkpoint(run_dir, modules, names, metric, labels_file)
    for name in names:
        # The module's own load hook: plain state dicts, and SpeechBrain objects with custom
        # checkpoint formats (e.g. InputNormalization statistics).
        load = get_default_hook(modules[name], DEFAULT_LOAD_HOOKS)
        load(modules[name], ckpt.paramfiles[name], end_of_epoch=True)
        logger.info("initialised %s from %s", name, ckpt.path)
    return ckpt.path


def asr_units(run_dir, tokenizer):
    """The earlier run's SentencePiece model that a stage starting from its ASR modules takes over.

    The decoder's embedding and output rows are unit ids, so the later stage must read and write
    the same units: it uses the earlier run's model instead of training its own.

    Arguments
    ---------
    run_dir : str or Path
        The earlier run's output folder (with ``tokenizer/``).
    tokenizer : topic_id.training.asr_tokenizer.Tokenizer
        This run's tokenizer (its model file's name says the unit count and type).

    Returns
    -------
    Path
    """
    theirs = Path(run_dir) / "tokenizer" / tokenizer.model_file.name
    if not theirs.is_file():
        raise TransferError(f"{run_dir} has no SentencePiece model {tokenizer.model_file.name}: start from an "
                            "ASR with the same output_neurons and unit type")
    return theirs


def take_units(run_dir, tokenizer):
    """Copy :func:`asr_units` into this run's tokenizer folder (its own training then skips)."""
    theirs = asr_units(run_dir, tokenizer)
    tokenizer.model_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (".vocab", ".model"):  # the model last: its presence means complete
        if theirs.with_suffix(suffix).is_file():
            shutil.copyfile(theirs.with_suffix(suffix), tokenizer.model_file.with_suffix(suffix))
