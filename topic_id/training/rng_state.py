"""The process's random number generators as a checkpoint recoverable, for exact resume.

A killed run restarted with the same command reloads its newest checkpoint: weights, optimizer,
schedulers, epoch counter and (mid-epoch) the training loader's position. Without the generators
too, dropout, speed perturbation and anything else that draws random numbers would continue from
whatever state the restarted process happened to be in, and the resumed run would end elsewhere
than the uninterrupted one. :class:`RandomState` saves the states of Python's ``random``, NumPy's
global generator and torch's CPU generator (and every CUDA device's, when CUDA is available) with
each checkpoint and sets them back when the checkpoint is loaded.

Under DDP SpeechBrain writes checkpoints from the main process only, so the file holds rank 0's
states and every rank loads those: a resumed DDP run continues with each rank's generators equal
to rank 0's at the save, not with its own. Its data order and model state are restored, but its
random draws on ranks other than 0 differ from the uninterrupted run's; exact resume holds for
single-process runs.

Example
-------
>>> import random
>>> import torch
>>> from speechbrain.utils.checkpoints import Checkpointer
>>> ckpt = Checkpointer(getfixture("tmp_path"), recoverables={"rng": RandomState()})
>>> _ = ckpt.save_checkpoint()
>>> expected = (random.random(), torch.rand(1))
>>> _ = (random.random(), torch.rand(3))  # the run goes on, then dies
>>> _ = ckpt.recover_if_possible()
>>> (random.random(), torch.rand(1)) == expected
True
"""

import logging
import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)


def capture():
    """The states of the global generators, as a dict ``torch.load(weights_only=True)`` reads.

    Returns
    -------
    dict
        ``python`` (``random.getstate()``), ``numpy`` (bit generator name, key, position and the
        cached Gaussian), ``torch`` (CPU state) and ``cuda`` (one state per visible device; empty
        without CUDA).
    """
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"name": name, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore(state):
    """Set the global generators to a :func:`capture` result.

    CUDA states are set only when the number of visible devices is the one they were saved with;
    otherwise (a run resumed on other hardware) a warning says that the GPUs' draws are not resumed.

    Arguments
    ---------
    state : dict
        What :func:`capture` returned.
    """
    random.setstate(state["python"])
    saved = state["numpy"]
    np.random.set_state((saved["name"], saved["key"].numpy().astype(np.uint32), saved["pos"],
                         saved["has_gauss"], saved["gauss"]))
    torch.set_rng_state(state["torch"])
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if state["cuda"] and len(state["cuda"]) == devices:
        torch.cuda.set_rng_state_all(state["cuda"])
    elif state["cuda"] or devices:
        logger.warning("checkpoint holds CUDA generator states of %d devices, %d visible now: the GPU "
                       "generators are not restored, so GPU draws differ from the uninterrupted run",
                       len(state["cuda"]), devices)


@register_checkpoint_hooks
class RandomState:
    """A recoverable for SpeechBrain's Checkpointer that saves and restores the global generators.

    Stateless itself: saving records the generators' states at that moment (:func:`capture`),
    loading sets them (:func:`restore`), at the end of an epoch or in its middle alike.
    """

    @mark_as_saver
    def save(self, path):
        """Write the generators' states to ``path``."""
        torch.save(capture(), path)

    @mark_as_loader
    def load(self, path, end_of_epoch):
        """Set the generators to the states saved at ``path``."""
        del end_of_epoch  # the same states either way: those of the moment of the save
        restore(torch.load(path, weights_only=True))
