"""``recipes/train.py`` under torchrun, recording the ids of every training batch per process.

Used by tests/test_ddp.py: ``torchrun --nproc_per_node=2 tests/ddp_worker.py <train.py arguments>``
writes ``<output_folder>/batches-rank<RANK>.json``: ``[[epoch, [id, ...], checksum], ...]``, where
checksum is the sum of all trainable parameters after that step (equal on every process when DDP
keeps the replicas in sync).
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

from topic_id.training.base import BaseBrain

ROOT = Path(__file__).resolve().parent.parent


def main(argv):
    """Run the trainer with a recording ``fit_batch``, then write what this process trained on."""
    seen = []
    fit_batch = BaseBrain.fit_batch

    def recording_fit_batch(self, batch):
        loss = fit_batch(self, batch)
        checksum = sum(float(p.double().sum()) for p in self.modules.parameters() if p.requires_grad)
        seen.append([self.hparams.epoch_counter.current, list(batch.id), checksum])
        return loss

    BaseBrain.fit_batch = recording_fit_batch  # every Brain of the trainer, topic and ASR alike
    spec = importlib.util.spec_from_file_location("topic_id_train", ROOT / "recipes" / "train.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    trainer.main(argv)
    output = next(a.split("=", 1)[1] for a in argv if a.startswith("--output_folder="))
    path = Path(output) / f"batches-rank{os.environ.get('RANK', '0')}.json"
    path.write_text(json.dumps(seen), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
