"""The system YAMLs share one training block (hparams/modules/training.yaml) and the same knobs."""

import pytest
from hyperpyyaml import load_hyperpyyaml

from topic_id.experiment import top_level_keys
from conftest import ROOT

BRAIN_YAMLS = sorted(
    p for p in (ROOT / "hparams").glob("*.yaml") if "brain_class:" in p.read_text(encoding="utf-8")
)
AUDIO_YAMLS = [p for p in BRAIN_YAMLS if "sample_rate" in top_level_keys(p)]
# The top-level keys each system passes into the fragment, so command-line overrides reach it.
TRAINING_ARGS = ("lr", "lr_patience", "number_of_epochs", "batch_size", "test_batch_size")
AUDIO_KNOBS = {"utterance_norm", "dynamic_batching", "max_batch_length", "num_buckets",
               "shuffle_buckets", "keep_in_memory"}


def test_the_systems_are_found():
    assert len(BRAIN_YAMLS) == 9 and len(AUDIO_YAMLS) == 8


@pytest.mark.parametrize("path", BRAIN_YAMLS, ids=lambda p: p.stem)
def test_every_brain_system_includes_the_training_block(path):
    text = path.read_text(encoding="utf-8")
    assert "training: !include:modules/training.yaml\n" in text
    for key in TRAINING_ARGS:
        assert key in top_level_keys(path), key
        assert f"    {key}: !ref <{key}>\n" in text, key
    assert "!new:speechbrain.nnet.schedulers.NewBobScheduler\n    initial_value: !ref <lr>\n" not in text


@pytest.mark.parametrize("path", AUDIO_YAMLS, ids=lambda p: p.stem)
def test_every_audio_system_exposes_the_same_knobs(path):
    assert AUDIO_KNOBS <= top_level_keys(path), AUDIO_KNOBS - top_level_keys(path)
    assert "    utterance_norm: !ref <utterance_norm>\n" in path.read_text(encoding="utf-8")


def test_overrides_reach_the_included_block(tmp_path):
    overrides = {
        "data_folder": str(tmp_path), "output_folder": str(tmp_path / "out"), "n_mels": 8,
        "tdnn_neurons": 4, "tdnn_out": 4, "lin_neurons": 4,
        "lr": 0.02, "lr_patience": 1000, "number_of_epochs": 3, "batch_size": 5, "test_batch_size": 6,
    }
    with open(ROOT / "hparams" / "audio_tdnn.yaml", encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, overrides)
    assert hp["opt_class"].keywords == {"lr": 0.02}
    assert (hp["lr_annealing"].hyperparam_value, hp["lr_annealing"].patient) == (0.02, 1000)
    assert hp["epoch_counter"].limit == 3
    assert hp["train_dataloader_opts"] == {"batch_size": 5, "shuffle": True}
    assert hp["test_dataloader_opts"] == {"batch_size": 6}
    assert hp["checkpointer"].recoverables["lr_annealing"] is hp["lr_annealing"]
    assert hp["checkpointer"].recoverables["counter"] is hp["epoch_counter"]
