"""DataLoader worker processes (``num_workers``, ``pin_memory``, ``prefetch_factor``): every system
takes them, and training with workers gives the run it gives without (the pipelines draw no random
numbers and the batches are drawn in the main process)."""

import json

import pytest
import torch
from speechbrain.dataio.dataset import DynamicItemDataset

from topic_id.training.dataio import loader_kwargs
from topic_id.config.overrides import read_yaml_map, resolve_overrides, top_level_keys
from conftest import ROOT

LOADER_KEYS = ("num_workers", "pin_memory", "prefetch_factor")
SYSTEMS = sorted(p for p in (ROOT / "hparams").glob("*.yaml") if "dataloader_opts" in p.read_text(encoding="utf-8"))


def test_the_systems_with_loaders_are_found():
    # All but the bag of words, which makes no batches (recipes/train.py hands it the hparams).
    assert {p.stem for p in SYSTEMS} == {p.stem for p in (ROOT / "hparams").glob("*.yaml")} - {"bow"}


@pytest.mark.parametrize("path", SYSTEMS, ids=lambda p: p.stem)
def test_every_system_takes_the_loader_keys(path):
    text = path.read_text(encoding="utf-8")
    for key in LOADER_KEYS:
        assert key in top_level_keys(path), key
        assert f"    {key}: !ref <{key}>\n" in text, f"{key} does not reach modules/training.yaml"
    resolve_overrides(path, "num_workers: 1\npin_memory: True\nprefetch_factor: 2\n")  # no ConfigError
    assert read_yaml_map(resolve_overrides(path, "", "paper"), "paper")["num_workers"] > 0


def _datasets():
    data = {f"u{i}": {"duration": 1.0 + i} for i in range(6)}
    return {split: DynamicItemDataset(data) for split in ("train", "dev", "test")}


@pytest.mark.parametrize("dynamic", [False, True])
def test_prefetch_factor_is_dropped_without_workers(dynamic):
    loading = {"num_workers": 0, "pin_memory": False, "prefetch_factor": 4}
    hparams = {"train_dataloader_opts": dict(loading, batch_size=2, shuffle=True),
               "test_dataloader_opts": dict(loading, batch_size=2), "dynamic_batching": dynamic,
               "max_batch_length": 10, "num_buckets": 2, "shuffle_buckets": True}
    out = loader_kwargs(hparams, _datasets())
    for opts in out.values():
        assert "prefetch_factor" not in opts and "multiprocessing_context" not in opts
        torch.utils.data.DataLoader(_datasets()["train"], **opts)  # torch raises on prefetch_factor here
    hparams["train_dataloader_opts"]["num_workers"] = 2
    out = loader_kwargs(hparams, _datasets())
    assert out["train"]["prefetch_factor"] == 4 and out["train"]["multiprocessing_context"] == "fork"
    assert "prefetch_factor" not in out["dev"]


@pytest.fixture
def loader_workers(monkeypatch):
    """The ``num_workers`` of every DataLoader made from now on."""
    seen, init = [], torch.utils.data.DataLoader.__init__

    def recording_init(self, *args, **kwargs):
        seen.append(kwargs.get("num_workers", 0))
        init(self, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", recording_init)
    return seen


def _outputs(run):
    metrics = json.loads((run / "metrics.json").read_text())
    return ({split: metrics[split] for split in ("dev", "test")}, (run / "predictions.csv").read_text(),
            (run / "train_log.txt").read_text())


# One epoch each: fixed-size batches of an audio system; the paper profile's dynamic batches with
# prefetching; items served from memory (InMemoryDataset); the text system's cached vectors.
CASES = {
    "audio": ("hparams/audio_crdnn.yaml", []),
    "audio_dynamic": ("hparams/audio_crdnn.yaml", ["--dynamic_batching=True", "--max_batch_length=40",
                                                   "--num_buckets=3", "--prefetch_factor=3"]),
    "audio_in_memory": ("hparams/audio_tdnn.yaml", ["--keep_in_memory=True"]),
    "text": ("hparams/text.yaml", []),
}


@pytest.mark.training
@pytest.mark.parametrize("case", CASES)
def test_workers_train_the_same_run(case, tiny_corpus, tmp_path, train, loader_workers):
    hparams, args = CASES[case]
    runs = {}
    for workers in (0, 2):
        loader_workers.clear()
        runs[workers] = train(hparams, tiny_corpus, tmp_path / str(workers), "--number_of_epochs=1",
                              f"--num_workers={workers}", "--pin_memory=False", *args)
        assert loader_workers and set(loader_workers) == {workers}  # train, dev and test loaders
    assert _outputs(runs[2]) == _outputs(runs[0])
