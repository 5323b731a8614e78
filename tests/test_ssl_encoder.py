"""The SSL row's encoder (topic_id.models.ssl_encoder) with every family it takes, as tiny random
models saved as the hub gives them (tests/ssl_models.py): masks, frame lengths, layer choices, the
frozen weighted sum, and the row trained, exported and predicting with each.

Also: ``freeze_feature_extractor`` freezes the convolutional feature encoder of a wav2vec2 for real.
Setting ``requires_grad=False`` on its parameters is not enough: Hugging Face's feature encoder
marks its input as requiring grad in training unless frozen through ``freeze_feature_encoder()``,
so autograd keeps the activations of every convolutional layer for a backward pass that updates
nothing (about 8 GB at XLS-R's size and 200 s batches).
"""

import csv
import json

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from data_prep.prepared import read_manifest
from topic_id import cli
from topic_id.errors import ConfigError
from topic_id.models.ssl_encoder import SSLEncoder, Wav2Vec2
from topic_id.standins.wav2vec2 import build_standin
from conftest import ROOT
from ssl_models import FAMILIES, WHISPER_SECONDS, build_tiny

# Batch-independent: masked attention over zero-padded frames, or Whisper's pieces padded alone.
# HuBERT-base-style models (group norm, no mask) and data2vec-audio (its stacked positional
# convolutions see the padding after their first layer, in Hugging Face and fairseq alike) are not.
PADDING_FREE = ("wavlm", "whisper")


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


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssl_models")
    return {family: build_tiny(family, root / family) for family in FAMILIES}


def _mask_passed(encoder):
    """Record the attention mask each forward pass of the Hugging Face model gets."""
    seen = []
    encoder.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True)
    return seen


@pytest.mark.parametrize("family", FAMILIES)
def test_frames_lengths_and_masks_of_each_family(family, tiny_models):
    encoder = SSLEncoder(str(tiny_models[family])).eval()
    seen = _mask_passed(encoder)
    torch.manual_seed(0)
    wavs = torch.randn(2, 40000)
    lens = torch.tensor([1.0, 0.45])
    with torch.no_grad():
        frames, frame_lens = encoder(wavs, lens)
        alone, alone_lens = encoder(wavs[1:, :18000], torch.ones(1))
    assert frames.shape[-1] == encoder.output_size == 32 and encoder.frame_stride == 320
    real = (frame_lens * frames.shape[1]).round().long()
    assert int(real[1]) == round(float(alone_lens[0]) * alone.shape[1])
    if family == "whisper":
        # 2.5 s in 2 s pieces: two pieces of 100 frames; real frames ceil(ceil(samples / 160) / 2).
        assert frames.shape[1] == 200 and real.tolist() == [100 + 25, 57]
        assert seen == [None, None]
    else:
        expected = encoder.model._get_feat_extract_output_lengths(torch.tensor([40000, 18000]))
        assert real.tolist() == expected.tolist() and frames.shape[1] == expected[0]
        # wav2vec2-base-style models (group norm) get no mask, as Hugging Face documents.
        assert (seen[0] is None) == (family == "hubert")
    if family in PADDING_FREE:
        torch.testing.assert_close(frames[1, : real[1]], alone[0, : real[1]], atol=1e-4, rtol=0)


def test_whisper_pieces_are_the_encoders_own_frames(tiny_models):
    """A recording longer than Whisper's window is its pieces' frames, each piece as the
    feature extractor and encoder of transformers give it."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    folder = tiny_models["whisper"]
    encoder = SSLEncoder(str(folder)).eval()
    wav = torch.randn(1, 16000 * WHISPER_SECONDS + 7000)
    reference = WhisperModel.from_pretrained(folder).encoder.eval()
    extractor = WhisperFeatureExtractor.from_pretrained(folder)
    piece = 16000 * WHISPER_SECONDS
    with torch.no_grad():
        frames, lens = encoder(wav)
        mel = extractor([wav[0, :piece].numpy(), wav[0, piece:].numpy()], sampling_rate=16000,
                        return_tensors="pt").input_features
        expected = reference(mel).last_hidden_state.reshape(1, -1, 32)
    torch.testing.assert_close(frames, expected, atol=1e-5, rtol=0)
    assert round(float(lens[0]) * frames.shape[1]) == 100 + 22  # ceil(ceil(7000 / 160) / 2)


@pytest.mark.parametrize("family", ["wavlm", "whisper"])
def test_weighted_sum_of_hidden_states_trains_alone_when_frozen(family, tiny_models):
    encoder = SSLEncoder(str(tiny_models[family]), layers="weighted", freeze=True)
    assert [n for n, p in encoder.named_parameters() if p.requires_grad] == ["layer_weights"]
    assert [id(p) for p in encoder.pretrained_parameters()] == [id(p) for p in encoder.model.parameters()]
    encoder.train()
    assert encoder.training and not encoder.model.training  # no dropout in frozen features
    with torch.no_grad():
        encoder.layer_weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    wavs, lens = torch.randn(2, 24000), torch.tensor([1.0, 0.7])
    frames, frame_lens = encoder(wavs, lens)
    # The softmax-weighted sum of the hidden states Hugging Face returns, and the same frames as
    # each hidden state picked by its index.
    states = [SSLEncoder(str(tiny_models[family]), layers=i, freeze=True)(wavs, lens) for i in range(3)]
    weights = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), dim=0)
    torch.testing.assert_close(frames, sum(w * s for w, (s, _) in zip(weights, states)), atol=1e-5, rtol=0)
    assert all(torch.equal(frame_lens, n) for _, n in states)
    last, _ = SSLEncoder(str(tiny_models[family]), freeze=True)(wavs, lens)
    assert not torch.allclose(last, states[1][0])
    frames.pow(2).mean().backward()
    assert encoder.layer_weights.grad is not None and encoder.layer_weights.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.model.parameters())


def test_bad_layer_choices_and_the_older_name(tiny_models, learned_standin):
    with pytest.raises(ConfigError, match="ssl_layers=3: the model has hidden states 0 to 2"):
        SSLEncoder(str(tiny_models["wavlm"]), layers=3)
    with pytest.raises(ConfigError, match="ssl_layers must be last, weighted or a hidden-state index"):
        SSLEncoder(str(tiny_models["wavlm"]), layers="mean")
    with pytest.raises(ConfigError, match="Whisper encoder: apply_spec_augment and utterance_norm"):
        SSLEncoder(str(tiny_models["whisper"]), utterance_norm=True)
    old = Wav2Vec2(str(learned_standin), save_path="unused")  # the older name, its defaults
    assert isinstance(old, SSLEncoder) and old.layers == "last"
    assert all(p.requires_grad for p in old.model.feature_extractor.parameters())


def test_layer_weights_train_with_the_head(tiny_models, tiny_corpus, tmp_path):
    """New parameters: the head's optimizer and rate, not the pretrained encoder's smaller one."""
    import yaml

    from topic_id.config.overrides import resolve_overrides

    path = ROOT / "hparams" / "audio_wav2vec2.yaml"
    given = {"data_folder": str(tiny_corpus), "output_folder": str(tmp_path), "ssl_layers": "weighted",
             "ssl_freeze": True, "wav2vec2_source": str(tiny_models["wavlm"])}  # the older name
    with open(path, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, resolve_overrides(path, yaml.safe_dump(given), "tiny"))
    # The older name on the command line wins over a profile's ssl_source (the tiny profile's stand-in).
    assert hparams["modules"]["audio_encoder"].name == str(tiny_models["wavlm"].resolve())
    assert hparams["ssl_dim"] == 32  # read from that model
    brain = hparams["brain_class"](modules=hparams["modules"], opt_class=hparams["opt_class"],
                                   hparams=hparams, run_opts={"device": "cpu"})
    brain.on_fit_start()
    weights = hparams["modules"]["audio_encoder"].layer_weights
    head_params = {id(p) for g in brain.optimizer.param_groups for p in g["params"]}
    encoder_params = {id(p) for g in brain.encoder_optimizer.param_groups for p in g["params"]}
    assert id(weights) in head_params and id(weights) not in encoder_params
    assert brain.optimizer.param_groups[0]["lr"] == hparams["lr"]


def _predictions(run):
    with open(run / "predictions.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.training
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["finetuned", "weighted"])
def test_ssl_row_trains_exports_and_predicts(family, mode, tiny_models, tiny_corpus, train, tmp_path, capsys):
    """The SSL row with each family, fine-tuned (the paper's) or frozen with the weighted layer sum:
    one epoch on 15 s of the tiny corpus's training audio, exported, and `topic-id predict`
    reproduces the run's test predictions."""
    args = [f"--ssl_source={tiny_models[family]}", "--number_of_epochs=1", "--train_hours=0.004"]
    # Models whose frames depend on the batch's padding are compared on unpadded batches.
    batch = 8 if family in PADDING_FREE else 1
    args.append(f"--test_batch_size={batch}")
    if mode == "weighted":
        args += ["--ssl_layers=weighted", "--ssl_freeze=True"]
    run = train("hparams/audio_wav2vec2.yaml", tiny_corpus, tmp_path / "run", *args)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["audio_encoder"] == str(tiny_models[family].resolve())
    if mode == "weighted":
        assert metrics["trainable_params"] == 3 + 32 * 8 + 8  # the layer weights and the head
    assert cli.main(["export", str(run), str(tmp_path / "export")]) == 0
    reference = _predictions(run)[:4]
    rows = {r["ID"]: r for r in read_manifest(tiny_corpus / "test.csv")}
    files = [rows[r["ID"]]["wav"].replace("$data_root", str(tiny_corpus)) for r in reference]
    capsys.readouterr()
    assert cli.main(["predict", "--model", str(tmp_path / "export"), "--json", "--device", "cpu",
                     "--batch-size", str(batch), *files]) == 0
    out = capsys.readouterr().out
    results = json.loads(out[out.index("[\n"):])  # after the log lines of the in-process runs
    assert [r["topic"] for r in results] == [r["predicted"] for r in reference]
    for result, expected in zip(results, reference):
        for label, p in result["posteriors"].items():
            assert abs(p - float(expected[f"p_{label}"])) < 1e-4
