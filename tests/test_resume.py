"""A training run killed with SIGKILL in the middle of an epoch, then started again with the same
command, resumes from its last checkpoint and finishes (SpeechBrain's intra-epoch checkpoints,
``--ckpt_interval_steps``, save the position in the epoch too).
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import ROOT

EPOCHS = 3


def _command(corpus, out):
    return [sys.executable, str(ROOT / "recipes" / "train.py"), str(ROOT / "hparams" / "audio_tdnn.yaml"),
            f"--data_folder={corpus}", f"--output_folder={out}", "--profile=tiny", "--device=cpu",
            f"--number_of_epochs={EPOCHS}", "--batch_size=1", "--ckpt_interval_steps=4"]


def _intra_epoch_checkpoint(save):
    """The first checkpoint saved in the middle of an epoch, if any yet."""
    for meta in save.glob("CKPT+*/CKPT.yaml"):
        try:
            if yaml.safe_load(meta.read_text()).get("end-of-epoch") is False:
                return meta.parent
        except (OSError, yaml.YAMLError):  # being written
            continue
    return None


@pytest.mark.slow  # 30 s; the suite must stay under its 10 minutes (the checkpoint tests below stay)
def test_sigkill_mid_epoch_then_same_command_finishes(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(_command(tiny_corpus, out), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _intra_epoch_checkpoint(out / "save") is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    assert not (out / "metrics.json").exists()
    newest = max((p.parent for p in (out / "save").glob("CKPT+*/CKPT.yaml")),
                 key=lambda d: yaml.safe_load((d / "CKPT.yaml").read_text())["unixtime"])
    epochs_before = (out / "train_log.txt").read_text().count("epoch:") if (out / "train_log.txt").exists() else 0
    assert epochs_before < EPOCHS

    again = subprocess.run(_command(tiny_corpus, out), env=env, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"Loading a checkpoint from {newest}" in (out / "log.txt").read_text()
    logged = [line.split(",")[0] for line in (out / "train_log.txt").read_text().splitlines()
              if line.startswith("epoch:")]
    assert logged == [f"epoch: {n}" for n in range(1, EPOCHS + 1)]
    assert (out / "metrics.json").is_file() and (out / "predictions.csv").is_file()


def test_an_interrupted_save_is_not_a_checkpoint(tmp_path):
    """A save that dies after SpeechBrain wrote the metadata leaves no loadable-looking checkpoint."""
    import pytest
    import torch

    from topic_id.training.checkpoints import Checkpointer

    class Dies(torch.nn.Linear):
        fail = False

    layer = Dies(2, 2)
    ckpt = Checkpointer(tmp_path, recoverables={"layer": layer},
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
    import torch

    if type(obj).fail:
        path.write_bytes(b"trunc")
        raise KeyboardInterrupt
    torch.save(obj.state_dict(), path)


def test_processes_wait_until_the_checkpoint_is_marked_complete(tmp_path, monkeypatch):
    """Under DDP only the main process renames CKPT.yaml.partial; a barrier after it keeps the other
    processes from listing checkpoints before it (their listings drive collective calls in
    delete_checkpoints, and a stale one deadlocked a torchrun run)."""
    import torch

    from topic_id.training import checkpoints

    seen = []
    monkeypatch.setattr(checkpoints, "ddp_barrier",
                        lambda: seen.append(sorted(p.name for p in tmp_path.glob("CKPT+*/CKPT.yaml*"))))
    ckpt = checkpoints.Checkpointer(tmp_path, recoverables={"layer": torch.nn.Linear(2, 2)})
    ckpt.save_checkpoint(meta={"step": 1})
    assert seen == [["CKPT.yaml"]]  # the barrier came after the rename
    # A non-main process (SpeechBrain's save returns None there) reaches the same barrier.
    monkeypatch.setattr(checkpoints.Checkpointer.__mro__[1], "save_checkpoint", lambda self, *a, **k: None)
    assert ckpt.save_checkpoint(meta={"step": 2}) is None and len(seen) == 2
