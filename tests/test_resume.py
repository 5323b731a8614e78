"""A training run killed with SIGKILL and started again with the same command ends exactly as the
uninterrupted run: the same metrics.json, predictions and kept checkpoints, whether it was killed
between epochs (resuming from an end-of-epoch checkpoint) or resumes from a checkpoint saved in the
middle of an epoch (SpeechBrain's ``--ckpt_interval_steps``, or ``--ckpt_interval_minutes`` for
real runs: the same save, another trigger). The system has dropout in its head and draws its
dynamic batches anew every epoch, so the random generators and the samplers both matter.

Every run calls the recipe's ``main`` with the same arguments (the ``train`` fixture): the killed
one in a child process forked from the test's (its imports done), the uninterrupted and the
resumed ones in the test's process. The resumed run knows nothing but what the killed one left on
disk; the killed process's memory goes with it.
"""

import os
import signal
import time

import pytest
import yaml

# Two epochs: the resumed run trains one epoch after the first (between epochs), or finishes the
# second one (mid-epoch), from generators and samplers that the first epoch has moved on.
EPOCHS = 2
# Fixed-size batches are shuffled by SpeechBrain's ReproducibleRandomSampler, dynamic ones come
# from topic_id.training.dataio's DynamicBatchSampler: both must resume.
BATCHING = {"dynamic": ["--dynamic_batching=True", "--max_batch_length=12", "--num_buckets=3"],
            "fixed": ["--batch_size=4"]}


HPARAMS = "hparams/audio_tdnn.yaml"
# One thread, the same in every run wherever pytest is started (and no thread pool to fork).
pytestmark = pytest.mark.usefixtures("one_thread")


def _options(batching, *extra):
    return [f"--number_of_epochs={EPOCHS}", "--head_dropout=0.5", *BATCHING[batching], *extra]


def _checkpoints(save):
    """``{path: meta}`` of the complete checkpoints under ``save``."""
    found = {}
    for meta in save.glob("CKPT+*/CKPT.yaml"):
        try:
            found[meta.parent] = yaml.safe_load(meta.read_text())
        except (OSError, yaml.YAMLError):  # deleted while read
            continue
    return {path: meta for path, meta in found.items() if isinstance(meta, dict)}


def _kill_when(run, save, ready, timeout=120):
    """Start ``run()`` in a child process, SIGKILL it once ``ready(checkpoints under save)`` holds.

    The child is a fork of this process, which has imported what training needs: the run starts
    at once. Returns the newest checkpoint left, the one the rerun resumes: ``(path, meta)``.
    """
    pid = os.fork()
    if pid == 0:  # the child: train with its output silenced, never return into pytest
        status = 1
        try:
            quiet = os.open(os.devnull, os.O_WRONLY)
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            run()
            status = 0
        finally:
            os._exit(status)
    deadline, ended = time.time() + timeout, None
    while ended is None and time.time() < deadline:
        pid_ended, status = os.waitpid(pid, os.WNOHANG)
        if pid_ended:
            ended = status
        elif ready(_checkpoints(save)):
            break
        else:
            time.sleep(0.005)
    if ended is None:
        os.kill(pid, signal.SIGKILL)
        ended = os.waitpid(pid, 0)[1]
    assert os.WIFSIGNALED(ended) and os.WTERMSIG(ended) == signal.SIGKILL, "the run ended before it could be killed"
    ckpts = _checkpoints(save)
    newest = max(ckpts, key=lambda path: ckpts[path]["unixtime"])
    return newest, ckpts[newest]


def _outputs(out):
    """What must not depend on the interruption: outputs, and the kept checkpoints' metrics."""
    kept = sorted((meta["end-of-epoch"], sorted((k, v) for k, v in meta.items() if k != "unixtime"))
                  for meta in _checkpoints(out / "save").values())
    files = {name: (out / name).read_bytes() for name in ("metrics.json", "predictions.csv", "predictions_dev.csv")}
    return files, kept


@pytest.fixture(scope="module")
def uninterrupted(tiny_corpus, tmp_path_factory, train, one_thread):
    """``{batching: outputs}`` of the runs nobody killed, made on first use."""
    done = {}

    def get(batching):
        if batching not in done:
            out = tmp_path_factory.mktemp(f"uninterrupted_{batching}")
            train(HPARAMS, tiny_corpus, out, *_options(batching))
            done[batching] = _outputs(out)
        return done[batching]

    return get


def _end_of_epoch(ckpts):
    return any(meta["end-of-epoch"] for meta in ckpts.values())


def _intra_epoch_after_an_epoch(ckpts):
    """A checkpoint saved in the middle of an epoch after the first (the generators have moved on)."""
    ends = [meta["unixtime"] for meta in ckpts.values() if meta["end-of-epoch"]]
    return bool(ends) and any(not meta["end-of-epoch"] and meta["unixtime"] > min(ends) for meta in ckpts.values())


@pytest.mark.training
@pytest.mark.parametrize("batching", ["dynamic", "fixed"])
def test_killed_between_epochs_resumes_exactly(tiny_corpus, tmp_path, train, uninterrupted, batching):
    out = tmp_path / "run"
    def command():
        return train(HPARAMS, tiny_corpus, out, *_options(batching))

    resumed_from, meta = _kill_when(command, out / "save", _end_of_epoch)
    assert meta["end-of-epoch"] is True and not (out / "metrics.json").exists()
    command()
    assert f"Loading a checkpoint from {resumed_from}" in (out / "log.txt").read_text()
    assert _outputs(out) == uninterrupted(batching)


# The loader's position is saved from the main process's iterator, with or without worker processes.
@pytest.mark.training
@pytest.mark.parametrize("workers", [0, 2])
def test_killed_mid_epoch_resumes_exactly_from_an_intra_epoch_checkpoint(tiny_corpus, tmp_path, train,
                                                                          uninterrupted, workers):
    out = tmp_path / "run"
    # SpeechBrain's command line takes whole minutes only; steps trigger the same save in seconds.
    def command():
        return train(HPARAMS, tiny_corpus, out, *_options("dynamic", "--ckpt_interval_steps=3",
                                                          f"--num_workers={workers}"))

    resumed_from, meta = _kill_when(command, out / "save", _intra_epoch_after_an_epoch)
    assert meta["end-of-epoch"] is False
    command()
    assert f"Loading a checkpoint from {resumed_from}" in (out / "log.txt").read_text()
    files, kept = _outputs(out)
    # Intra-epoch checkpoints carry no metric and are deleted by the next end-of-epoch save, so
    # best-checkpoint selection only ever sees end-of-epoch ones.
    assert all(end_of_epoch for end_of_epoch, _ in kept)
    assert (files, kept) == uninterrupted("dynamic")


def test_ckpt_interval_minutes_reaches_the_brain(tiny_corpus, tmp_path, train, monkeypatch):
    """``--ckpt_interval_minutes`` (intra-epoch checkpoints of real runs) passes through train.py."""
    from topic_id.training.brains import TopicBrain

    class Stop(Exception):
        pass

    def fit(self, *args, **kwargs):
        raise Stop(self.ckpt_interval_minutes)

    monkeypatch.setattr(TopicBrain, "fit", fit)
    with pytest.raises(Stop) as stopped:
        train("hparams/audio_tdnn.yaml", tiny_corpus, tmp_path / "run", "--ckpt_interval_minutes=30")
    assert stopped.value.args == (30,)
