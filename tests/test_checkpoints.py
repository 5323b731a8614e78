"""topic_id.training.checkpoints: a checkpoint is visible only once every file of it is written."""

import pytest
import torch

from topic_id.training import checkpoints


def test_an_interrupted_save_is_not_a_checkpoint(tmp_path):
    """A save that dies after SpeechBrain wrote the metadata leaves no loadable-looking checkpoint, and
    the next save removes what it left."""

    class Dies(torch.nn.Linear):
        fail = False

    layer = Dies(2, 2)
    ckpt = checkpoints.Checkpointer(tmp_path, recoverables={"layer": layer},
                                    custom_save_hooks={"layer": lambda obj, path: _save_or_die(obj, path)})
    first = ckpt.save_checkpoint(meta={"step": 1})
    Dies.fail = True
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(meta={"step": 2})
    assert len(list(tmp_path.glob("CKPT+*"))) == 2
    assert ckpt.find_checkpoint().path == first.path
    Dies.fail = False
    third = ckpt.save_checkpoint(meta={"step": 3})
    assert sorted(tmp_path.glob("CKPT+*")) == sorted([first.path, third.path])
    assert ckpt.find_checkpoint(max_key="step").meta["step"] == 3


def _save_or_die(obj, path):
    if type(obj).fail:
        path.write_bytes(b"trunc")
        raise KeyboardInterrupt
    torch.save(obj.state_dict(), path)


def test_processes_wait_until_the_checkpoint_is_marked_complete(tmp_path, monkeypatch):
    """Under DDP only the main process renames CKPT.yaml.partial; a barrier after it keeps the other
    processes from listing checkpoints before it (their listings drive collective calls in
    delete_checkpoints, and a stale one deadlocked a torchrun run)."""
    seen = []
    monkeypatch.setattr(checkpoints, "ddp_barrier",
                        lambda: seen.append(sorted(p.name for p in tmp_path.glob("CKPT+*/CKPT.yaml*"))))
    ckpt = checkpoints.Checkpointer(tmp_path, recoverables={"layer": torch.nn.Linear(2, 2)})
    ckpt.save_checkpoint(meta={"step": 1})
    assert seen == [["CKPT.yaml"]]  # the barrier came after the rename
    # A non-main process (SpeechBrain's save returns None there) reaches the same barrier.
    monkeypatch.setattr(checkpoints.Checkpointer.__mro__[1], "save_checkpoint", lambda self, *a, **k: None)
    assert ckpt.save_checkpoint(meta={"step": 2}) is None and len(seen) == 2
