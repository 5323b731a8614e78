"""Preparation jobs in worker processes: one per core by default (the results' order: the LP and csv
tests compare 1 and 2 workers byte for byte)."""

import os

import pytest

from data_prep import workers
from data_prep.__main__ import build_parser


def test_the_default_is_one_worker_per_core_and_per_256_jobs(monkeypatch):
    monkeypatch.setattr(workers, "available_cpus", lambda: 16)
    assert [workers.worker_count(None, n) for n in (0, 10, 256, 257, 1000, 100_000)] == [1, 1, 1, 2, 4, 16]
    assert workers.worker_count(2, 10) == 2


def test_available_cpus_is_the_affinity_mask():
    assert 1 <= workers.available_cpus() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("command", [["lp", "in", "out"], ["csv", "m.csv", "out"], ["folder", "r", "out"]])
def test_every_audio_preparation_takes_num_workers(command):
    assert build_parser().parse_args(command).num_workers is None
    assert build_parser().parse_args(command + ["--num-workers", "3"]).num_workers == 3
