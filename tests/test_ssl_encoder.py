"""``freeze_feature_extractor`` freezes the convolutional feature encoder of a wav2vec2 for real.

Setting ``requires_grad=False`` on its parameters is not enough: Hugging Face's feature encoder
marks its input as requiring grad in training unless frozen through ``freeze_feature_encoder()``,
so autograd keeps the activations of every convolutional layer for a backward pass that updates
nothing (about 8 GB at XLS-R's size and 200 s batches).
"""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from topic_id.standins.wav2vec2 import build_standin
from conftest import ROOT


@pytest.fixture(scope="module")
def learned_standin(tmp_path_factory):
    """A tiny random wav2vec2 with XLS-R's seven convolutional layers (not the fixed filterbank)."""
    return build_standin(tmp_path_factory.mktemp("w2v") / "w2v", hidden_size=16, num_layers=1, num_heads=2,
                         intermediate_size=16, conv_dim=8, front_end="learned")


def _encoder(folder, tmp_path, freeze_feature_extractor):
    """The project's encoder, built by its YAML fragment as the Wav2vec2 system builds it."""
    overrides = {"source": str(folder), "freeze_feature_extractor": freeze_feature_extractor}
    with open(ROOT / "hparams" / "modules" / "ssl_encoder.yaml", encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides)["encoder"]


def _train_step(encoder):
    """One training-mode forward and backward; the conv layers' outputs, whether they need grad."""
    conv = encoder.model.feature_extractor.conv_layers
    needs_grad = []
    hooks = [layer.register_forward_hook(lambda m, args, out: needs_grad.append(out.requires_grad))
             for layer in conv]
    encoder.train()
    frames, _ = encoder(torch.randn(2, 8000), torch.tensor([1.0, 0.6]))
    frames.pow(2).mean().backward()
    for hook in hooks:
        hook.remove()
    return needs_grad


def test_frozen_feature_encoder_keeps_no_activations(learned_standin, tmp_path):
    encoder = _encoder(learned_standin, tmp_path, True)
    conv = encoder.model.feature_extractor
    assert len(conv.conv_layers) == 7
    needs_grad = _train_step(encoder)
    assert needs_grad == [False] * 7
    assert all(p.grad is None and not p.requires_grad for p in conv.parameters())
    transformer = list(encoder.model.encoder.parameters())
    assert transformer and all(p.grad is not None for p in transformer if p.requires_grad)
    assert any(p.grad.abs().sum() > 0 for p in transformer if p.grad is not None)


def test_unfrozen_feature_encoder_trains(learned_standin, tmp_path):
    encoder = _encoder(learned_standin, tmp_path, False)
    assert _train_step(encoder) == [True] * 7
    assert all(p.grad is not None for p in encoder.model.feature_extractor.parameters())
