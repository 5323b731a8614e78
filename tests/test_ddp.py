"""Two-process DDP on CPU (gloo): the recipe of recipes/README.md "Several GPUs", checked.

``torchrun --nproc_per_node=2 recipes/train.py ... --distributed_backend=gloo`` on the tiny corpus
(through tests/ddp_worker.py, which records each process's training batches): the processes train
on disjoint shards of every epoch, their replicas stay identical, and the run leaves the same
outputs and checkpoint structure as a one-process run.
"""

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT
from data_prep.prepared import read_manifest

pytestmark = pytest.mark.training


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _checkpoint(run):
    """``{file: {key: shape}}`` of a run's last checkpoint (state dicts flattened)."""
    ckpt = max((Path(run) / "save").glob("CKPT+*"))
    out = {}
    for path in sorted(ckpt.iterdir()):
        try:
            out[path.name] = _shapes(torch.load(path, map_location="cpu", weights_only=False))
        except (RuntimeError, pickle.UnpicklingError):
            out[path.name] = "not a torch file"  # CKPT.yaml, the epoch counter, the loader state
    return out


def _shapes(obj, prefix=""):
    if isinstance(obj, torch.Tensor):
        return {prefix: tuple(obj.shape)}
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_shapes(value, f"{prefix}/{key}"))
        return out
    return {prefix: type(obj).__name__}


def _torchrun(hparams, data_folder, output_folder):
    """Run tests/ddp_worker.py (recipes/train.py) in two gloo processes; returns the output folder."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        str(ROOT / "tests" / "ddp_worker.py"), str(ROOT / hparams),
        f"--data_folder={data_folder}", f"--output_folder={output_folder}", "--profile=tiny",
        "--device=cpu", "--distributed_backend=gloo",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Path(output_folder)


def test_two_processes_share_the_epoch_and_save_what_one_process_saves(tiny_corpus, tmp_path, train):
    one = train("hparams/text.yaml", tiny_corpus, tmp_path / "one")
    two = _torchrun("hparams/text.yaml", tiny_corpus, tmp_path / "two")
    ranks = [json.loads((two / f"batches-rank{r}.json").read_text()) for r in (0, 1)]
    train_ids = {r["ID"] for r in read_manifest(tiny_corpus / "train.csv") if r["subset"] == "transcribed"}
    epochs = sorted({epoch for rank in ranks for epoch, _, _ in rank})
    assert epochs == [1, 2]
    for epoch in epochs:
        shards = [{i for e, ids, _ in rank if e == epoch for i in ids} for rank in ranks]
        assert shards[0] and shards[1] and not shards[0] & shards[1]
        assert shards[0] | shards[1] == train_ids
    # Gradients are averaged across processes, so both replicas end with the same parameters.
    assert ranks[0][-1][2] == pytest.approx(ranks[1][-1][2], rel=1e-6)

    for name in ("metrics.json", "predictions.csv", "predictions_dev.csv", "topics.txt"):
        assert (two / name).is_file(), name
    assert _checkpoint(two) == _checkpoint(one)



def test_asr_keeps_training_under_ddp_once_ctc_stops(tiny_corpus, tmp_path):
    # This test found a deadlock in about one run in eight (fixed in topic_id/training/checkpoints.py: the
    # processes now wait for the main one to mark a checkpoint complete before listing them).
    # The tiny profile trains CTC in epoch 1 only: in epoch 2 the CTC layer gets no gradient, which
    # DDP accepts only with find_unused_parameters (set in hparams/asr.yaml and multitask.yaml).
    out = _torchrun("hparams/asr.yaml", tiny_corpus, tmp_path / "asr")
    assert (out / "metrics.json").is_file()
    assert {epoch for epoch, _, _ in json.loads((out / "batches-rank1.json").read_text())} == {1, 2}
