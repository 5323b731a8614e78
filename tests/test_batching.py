"""Fixed and dynamic batches from hparams (topic_id.dataio.loader_kwargs)."""

import numpy as np
import pytest
from speechbrain.dataio.dataset import DynamicItemDataset

from topic_id.dataio import dynamic_batch_sampler, loader_kwargs

OPTS = {"train_dataloader_opts": {"batch_size": 8, "shuffle": True, "num_workers": 1},
        "test_dataloader_opts": {"batch_size": 4}}


def _dataset(n=400, seed=0):
    durations = np.random.default_rng(seed).uniform(1.0, 20.0, n)
    return DynamicItemDataset({f"u{i:03d}": {"duration": float(d)} for i, d in enumerate(durations)})


def _padding(batches, lengths):
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_fixed_batches_by_default():
    datasets = {s: _dataset() for s in ("train", "dev", "test")}
    out = loader_kwargs(dict(OPTS), datasets)
    assert out["train"] == OPTS["train_dataloader_opts"]
    assert out["dev"] == out["test"] == OPTS["test_dataloader_opts"]
    assert out["train"] is not OPTS["train_dataloader_opts"]  # a copy: SpeechBrain edits it


def test_dynamic_batches_replace_batch_size_and_keep_other_options():
    datasets = {s: _dataset(seed=i) for i, s in enumerate(("train", "dev", "test"))}
    hparams = dict(OPTS, dynamic_batching=True, max_batch_length=60, num_buckets=10, shuffle_buckets=True,
                   sorting="random", seed=3)
    out = loader_kwargs(hparams, datasets)
    assert set(out["train"]) == {"batch_sampler", "num_workers"}
    assert set(out["dev"]) == {"batch_sampler"}
    for split, kwargs in out.items():
        lengths = [datasets[split].data[i]["duration"] for i in datasets[split].data_ids]
        batches = list(kwargs["batch_sampler"])
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # each row once
        assert all(len(b) * max(lengths[i] for i in b) <= 60 for b in batches)
        assert _padding(batches, lengths) < 0.10


def test_batches_are_rebuilt_every_epoch_only_when_shuffled():
    dataset = _dataset()
    shuffled = dynamic_batch_sampler(dataset, 60, 10, shuffle=True)
    assert list(shuffled) != list(shuffled)
    fixed = dynamic_batch_sampler(dataset, 60, 10, shuffle=False, batch_ordering="ascending")
    first = list(fixed)
    assert first == list(fixed)
    durations = [max(dataset.data[dataset.data_ids[i]]["duration"] for i in b) for b in first]
    assert durations == sorted(durations)


def test_bad_ordering_is_refused():
    with pytest.raises(ValueError, match="ordering"):
        dynamic_batch_sampler(_dataset(), 60, 10, batch_ordering="sideways")
