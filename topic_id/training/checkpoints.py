"""A SpeechBrain Checkpointer whose checkpoints appear only once they are complete.

SpeechBrain's ``Checkpointer.save_checkpoint`` writes ``CKPT.yaml`` first and the parameter files
after it, and a directory with a ``CKPT.yaml`` counts as a checkpoint. A run killed while saving
(SIGKILL, out of memory, a pre-empted job) therefore leaves a newest "checkpoint" with missing or
truncated files, and the restarted run fails to load it (EOFError) instead of resuming. Here the
metadata goes to ``CKPT.yaml.partial`` and is renamed to ``CKPT.yaml`` after every file is written,
so an interrupted save is invisible to recovery, selection and ``topic_id.training.transfer``; its leftover
directory is removed by the next save.
"""

import logging
import os
import shutil

from speechbrain.utils.checkpoints import CKPT_PREFIX, METAFNAME, Checkpoint
from speechbrain.utils.checkpoints import Checkpointer as _Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

logger = logging.getLogger(__name__)
PARTIAL = METAFNAME + ".partial"


class Checkpointer(_Checkpointer):
    """``speechbrain.utils.checkpoints.Checkpointer`` with all-or-nothing checkpoints (same arguments)."""

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        # Same content as SpeechBrain's, under a name that does not mark a checkpoint yet.
        return super()._save_checkpoint_metafile(fpath.with_name(PARTIAL), meta_to_include, end_of_epoch)

    def save_checkpoint(self, *args, **kwargs):
        """Save as SpeechBrain does, then mark the checkpoint complete (see the module docstring)."""
        if if_main_process():
            self._remove_incomplete()
        ckpt = super().save_checkpoint(*args, **kwargs)
        if ckpt is not None:
            os.replace(ckpt.path / PARTIAL, ckpt.path / METAFNAME)
            ckpt = Checkpoint(ckpt.path, ckpt.meta, ckpt.paramfiles)
        # Under DDP only the main process renames; the others must not list the checkpoints before
        # it has. ``delete_checkpoints`` makes one collective call per checkpoint it deletes, from
        # each process's own listing: a listing without the newest checkpoint deletes one fewer,
        # and the processes deadlocked (seen under torchrun: one rank in a broadcast, one in a barrier).
        ddp_barrier()
        return ckpt

    def _remove_incomplete(self):
        """Delete the directories that interrupted saves left behind."""
        if not self.checkpoints_dir.is_dir():
            return
        for path in self.checkpoints_dir.iterdir():
            if path.is_dir() and path.name.startswith(CKPT_PREFIX) and not (path / METAFNAME).exists():
                logger.warning("removing %s, a checkpoint whose save was interrupted", path)
                shutil.rmtree(path)
