"""topic_id.training.rng_state: the global generators saved with a checkpoint and set back from it."""

import logging
import random

import numpy as np
import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from topic_id.training import rng_state
from topic_id.training.brains import TopicBrain


def _draws():
    """One draw from each global generator (NumPy's Gaussian uses the cached second value)."""
    return random.random(), float(np.random.standard_normal()), float(np.random.rand()), torch.rand(2).tolist()


def test_restore_sets_every_generator_back_to_the_capture():
    np.random.standard_normal()  # leaves NumPy's second Gaussian cached: it must be restored too
    state = rng_state.capture()
    expected = _draws()
    _draws()
    rng_state.restore(state)
    assert _draws() == expected


def test_the_saved_file_loads_with_weights_only(tmp_path):
    """Checkpoints load with ``torch.load(weights_only=True)``: the states are tensors and plain values."""
    saver = rng_state.RandomState()
    saver.save(tmp_path / "rng.ckpt")
    expected = _draws()
    assert set(torch.load(tmp_path / "rng.ckpt", weights_only=True)) == {"python", "numpy", "torch", "cuda"}
    saver.load(tmp_path / "rng.ckpt", end_of_epoch=False)
    assert _draws() == expected


def test_cuda_states_of_other_hardware_are_not_applied_and_say_so(caplog, monkeypatch):
    state = rng_state.capture()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8)] * 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: pytest.fail("set on other hardware"))
    with caplog.at_level(logging.WARNING, logger=rng_state.__name__):
        rng_state.restore(state)
    assert "CUDA generator states of 3 devices, 0 visible" in caplog.text


def test_a_checkpoint_without_generator_states_still_resumes(tmp_path):
    """Checkpoints saved before the generators were checkpointed load, with a warning."""

    def brain(layer):
        return TopicBrain(modules={"head": layer}, opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
                          run_opts={"device": "cpu"}, checkpointer=Checkpointer(tmp_path, {"head": layer}))

    old = brain(torch.nn.Linear(2, 2))
    old.init_optimizers()
    old.checkpointer.save_checkpoint()
    assert "rng" not in old.checkpointer.recoverables
    new = brain(torch.nn.Linear(2, 2))
    with pytest.warns(UserWarning, match="missing a load path for rng"):
        new.on_fit_start()
    assert torch.equal(new.modules.head.weight, old.modules.head.weight)
    assert "rng" in new.checkpointer.recoverables
