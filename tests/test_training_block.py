"""The system YAMLs share one training block (hparams/modules/training.yaml) and the same knobs."""

import re

import pytest
import yaml
from hyperpyyaml import load_hyperpyyaml

from topic_id.config.overrides import profile_overrides, resolve_overrides, top_level_keys
from conftest import ROOT

BRAIN_YAMLS = sorted(
    p for p in (ROOT / "hparams").glob("*.yaml") if "brain_class:" in p.read_text(encoding="utf-8")
)
AUDIO_YAMLS = [p for p in BRAIN_YAMLS if "sample_rate" in top_level_keys(p)]
# The top-level keys each system passes into the fragment, so command-line overrides reach it.
TRAINING_ARGS = ("lr", "anneal_lr", "lr_patience", "number_of_epochs", "batch_size", "test_batch_size")
# Its LR follows a transformers schedule stepped per batch, not the block's dev-loss annealing.
PER_BATCH_SCHEDULE = {"text_finetune"}
AUDIO_KNOBS = {"utterance_norm", "dynamic_batching", "max_batch_length", "num_buckets",
               "shuffle_buckets", "keep_in_memory"}


def test_the_systems_are_found():
    assert len(BRAIN_YAMLS) == 10 and len(AUDIO_YAMLS) == 8


@pytest.mark.parametrize("path", BRAIN_YAMLS, ids=lambda p: p.stem)
def test_every_brain_system_includes_the_training_block(path):
    text = path.read_text(encoding="utf-8")
    assert "training: !include:modules/training.yaml\n" in text
    annealing = ("anneal_lr", "lr_patience")
    for key in TRAINING_ARGS:
        if path.stem in PER_BATCH_SCHEDULE and key in annealing:
            assert key not in top_level_keys(path), f"{key} would do nothing"
            continue
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
    loading = {"num_workers": 0, "pin_memory": False, "prefetch_factor": None}
    assert hp["train_dataloader_opts"] == {"batch_size": 5, "shuffle": True, **loading}
    assert hp["test_dataloader_opts"] == {"batch_size": 6, **loading}
    assert hp["checkpointer"].recoverables["lr_annealing"] is hp["lr_annealing"]
    assert hp["checkpointer"].recoverables["counter"] is hp["epoch_counter"]


def _schedule(anneal_lr, losses):
    """The LRs the training block's scheduler gives over dev losses."""
    overrides = {"lr": 0.01, "anneal_lr": anneal_lr, "number_of_epochs": 1, "batch_size": 1,
                 "test_batch_size": 1, "output_folder": "unused"}
    with open(ROOT / "hparams" / "modules" / "training.yaml", encoding="utf-8") as f:
        scheduler = load_hyperpyyaml(f, overrides)["lr_annealing"]
    return [round(scheduler(loss)[1], 6) for loss in losses]


def test_lr_anneals_or_stays_constant():
    flat = [1.0, 1.0, 1.0, 0.5, 0.5]
    assert _schedule(True, flat) == [0.01, 0.008, 0.0064, 0.0064, 0.00512]
    assert _schedule(False, flat) == [0.01] * 5


def _default(path, key):
    return yaml.safe_load(re.search(rf"^{key}: .*$", path.read_text(encoding="utf-8"), re.M).group(0))[key]


@pytest.mark.parametrize("profile, anneal", [("paper", False), ("demo", True), ("tiny", True)])
@pytest.mark.parametrize("path", [p for p in BRAIN_YAMLS if p.stem not in PER_BATCH_SCHEDULE],
                         ids=lambda p: p.stem)
def test_only_the_paper_profile_keeps_the_lr_constant(path, profile, anneal):
    """The published recipes' LR never changed; the demo and tiny profiles keep the annealing."""
    given = profile_overrides(path, profile)
    assert given.get("anneal_lr", _default(path, "anneal_lr")) is anneal
    assert given.get("lr_patience", _default(path, "lr_patience")) == (
        3 if (profile, path.stem) == ("demo", "audio_crdnn_embtransfer") else 0)


@pytest.mark.parametrize("profile, factors", [("paper", (1.0, 1.0)), ("tiny", (0.8, 0.9))])
def test_the_wav2vec2_encoder_follows_the_schedule(tiny_corpus, tmp_path, profile, factors):
    given = {"data_folder": str(tiny_corpus), "output_folder": str(tmp_path),
             "wav2vec2_source": str(tiny_corpus / "standin_wav2vec2"), "wav2vec2_dim": 32}
    path = ROOT / "hparams" / "audio_wav2vec2.yaml"
    with open(path, encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, resolve_overrides(path, yaml.safe_dump(given), profile))
    assert (hp["lr_annealing"].annealing_factor, hp["encoder_lr_annealing"].annealing_factor) == factors
