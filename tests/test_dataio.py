"""Fixed and dynamic batches from hparams (topic_id.training.dataio.loader_kwargs)."""

import numpy as np
import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset

from topic_id.training.dataio import InMemoryDataset, collate, dynamic_batch_sampler, loader_kwargs

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
    assert out["train"] == dict(OPTS["train_dataloader_opts"], collate_fn=collate, multiprocessing_context="fork")
    assert out["dev"] == out["test"] == dict(OPTS["test_dataloader_opts"], collate_fn=collate)
    assert out["train"] is not OPTS["train_dataloader_opts"]  # a copy: SpeechBrain edits it


def test_dynamic_batches_replace_batch_size_and_keep_other_options():
    datasets = {s: _dataset(seed=i) for i, s in enumerate(("train", "dev", "test"))}
    hparams = dict(OPTS, dynamic_batching=True, max_batch_length=60, num_buckets=10, shuffle_buckets=True,
                   sorting="random", seed=3)
    out = loader_kwargs(hparams, datasets)
    assert set(out["train"]) == {"batch_sampler", "num_workers", "collate_fn", "multiprocessing_context"}
    assert set(out["dev"]) == {"batch_sampler", "collate_fn"}
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


def test_a_few_long_rows_leave_the_short_ones_batched_together():
    """LP-like durations (2-5 s rows and a few of 10-25 s) must not give the top
    quantile's short rows batches of one (the boundary of their bucket was the longest row)."""
    rng = np.random.default_rng(0)
    durations = list(rng.uniform(2.0, 5.2, 409)) + list(rng.uniform(10.0, 24.5, 8))
    dataset = DynamicItemDataset({f"u{i:03d}": {"duration": float(d)} for i, d in enumerate(durations)})
    batches = list(dynamic_batch_sampler(dataset, 32, 7, shuffle=False))
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    short = [b for b in batches if max(durations[i] for i in b) <= 5.2]
    # Only a bucket's leftover batch may be small: at most one per bucket.
    assert sum(len(b) < 4 for b in short) <= 7
    assert len(batches) < 70  # ~55 for 0.5 h of audio; 109 with the long rows in the top bucket


def test_bad_ordering_is_refused():
    with pytest.raises(ValueError, match="ordering"):
        dynamic_batch_sampler(_dataset(), 60, 10, batch_ordering="sideways")


def _items(shapes):
    gen = torch.Generator().manual_seed(0)
    return [{"id": f"u{i}", "vec": torch.randn(*shape, generator=gen), "label": torch.LongTensor([i])}
            for i, shape in enumerate(shapes)]


@pytest.mark.parametrize("shapes", [[(5,)] * 4, [(3, 2)] * 3, [(5,), (3,), (4,)], [(2, 3), (4, 3)], [(7,)]])
def test_collate_gives_speechbrains_batch(shapes):
    items = _items(shapes)
    ours, theirs = collate(items), PaddedBatch(items)
    assert ours.id == theirs.id
    for key in ("vec", "label"):
        assert torch.equal(ours[key].data, theirs[key].data)
        assert torch.equal(ours[key].lengths, theirs[key].lengths)
        assert ours[key].lengths.dtype == theirs[key].lengths.dtype


def test_collated_batch_is_a_copy_of_the_items():
    items = _items([(4,)])  # one item: SpeechBrain's padding would return a view of it
    batch = collate(items)
    batch.vec.data.zero_()
    assert items[0]["vec"].abs().sum() > 0


def test_in_memory_dataset_serves_the_same_items_once_computed():
    calls = []
    dataset = DynamicItemDataset({f"u{i}": {"x": i, "duration": 1.0 + i} for i in range(5)})

    def double(x):
        calls.append(x)
        return torch.FloatTensor([2 * x])

    dataset.add_dynamic_item(double, takes="x", provides="y")
    dataset.set_output_keys(["id", "y"])
    stored = InMemoryDataset(dataset)
    assert len(calls) == 5
    for _ in range(2):
        assert [stored[i]["y"].item() for i in range(len(stored))] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert len(calls) == 5  # no pipeline ran again
    assert stored.data_ids == dataset.data_ids and stored.data is dataset.data
    sampler = dynamic_batch_sampler(stored, 4, 2, shuffle=False, batch_ordering="ascending")
    assert sorted(i for b in sampler for i in b) == list(range(5))


@pytest.mark.training
@pytest.mark.parametrize("hparams", ["hparams/text.yaml", "hparams/audio_tdnn.yaml"])
def test_a_system_trains_the_same_from_memory(hparams, train, tiny_corpus, tmp_path):
    runs = [train(hparams, tiny_corpus, tmp_path / flag, f"--keep_in_memory={flag}", "--number_of_epochs=2")
            for flag in ("True", "False")]
    predictions = [(run / "predictions.csv").read_text() for run in runs]
    assert predictions[0] == predictions[1]
    assert len(predictions[0].splitlines()) > 2


def test_dev_and_test_are_served_by_duration(tiny_corpus):
    # Evaluation does not depend on padding, so dev/test batches hold recordings of about one length.
    from topic_id.training.dataio import dataio_prepare, durations, label_encoder

    hparams = {"data_folder": str(tiny_corpus), "modules": {}, "seed": 1,
               **{f"{split}_csv": str(tiny_corpus / f"{split}.csv") for split in ("train", "dev", "test")}}
    datasets = dataio_prepare(hparams, label_encoder(tiny_corpus))
    for split in ("dev", "test"):
        lengths = durations(datasets[split])
        assert lengths == sorted(lengths) and len(set(lengths)) > 1
    assert durations(datasets["train"]) != sorted(durations(datasets["train"]))  # random: as the manifest
