"""``features: ssl``: the filter-bank systems on a speech encoder's hidden states (topic_id.models.ssl_features).

The systems train one or two epochs on the tiny corpus with the stand-in wav2vec2; a counter on the
encoder shows that a frozen encoder runs once per recording, not per epoch or per system, and the
cached features of a padded batch are those of each recording alone.
"""

import json

import pytest
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml

from data_prep.prepared import read_manifest
from topic_id.config.overrides import resolve_overrides
from topic_id.errors import ConfigError
from topic_id.models import ssl_features
from topic_id.training import dataio
from conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")

SSL = ("--features=ssl",)


@pytest.fixture
def encoder_calls(monkeypatch):
    """Recordings the SSL encoder has encoded in this test (batch rows through its forward)."""
    calls = []
    forward = ssl_features.SSLHiddenStates.forward

    def counted(self, wavs, wav_lens):
        calls.append(wavs.shape[0])
        return forward(self, wavs, wav_lens)

    monkeypatch.setattr(ssl_features.SSLHiddenStates, "forward", counted)
    return calls


def _rows(corpus, subset=None):
    rows = {split: read_manifest(corpus / f"{split}.csv") for split in dataio.SPLITS}
    if subset:
        rows["train"] = [r for r in rows["train"] if r["subset"] == subset]
    return sum(len(r) for r in rows.values())


def _metrics(run):
    return json.loads((run / "metrics.json").read_text())


def test_frozen_features_are_computed_once_per_recording(tiny_corpus, train, tmp_path, encoder_calls):
    """Two epochs of audio-only, then emb transfer (both stages), audio+text, the ASR and multi-task
    stage 1 from it on the same cache: the encoder ran once per recording of the corpus, for the
    first system only."""
    cache = f"--ssl_cache={tmp_path / 'ssl'}"
    run = train("hparams/audio_crdnn.yaml", tiny_corpus, tmp_path / "audio_only", *SSL, cache,
                "--number_of_epochs=2")
    assert sum(encoder_calls) == _rows(tiny_corpus) and set(encoder_calls) == {1}
    metrics = _metrics(run)
    assert metrics["audio_features"]["layers"] == "weighted" and metrics["audio_features"]["frozen"]
    assert metrics["module_params"]["normalize"] == 2  # the stand-in's 2 hidden states' weights
    one = ("--number_of_epochs=1", cache)
    stage_a = train("hparams/audio_crdnn_embtransfer.yaml", tiny_corpus, tmp_path / "emb_a", *SSL, *one)
    train("hparams/audio_crdnn.yaml", tiny_corpus, tmp_path / "emb_b", *SSL, *one, f"--init_from={stage_a}")
    train("hparams/hybrid_crdnn.yaml", tiny_corpus, tmp_path / "audio_text", *SSL, *one,
          "--train_subset=transcribed", "--train_text=words", "--eval_text=words")
    # The ASR reads the same features, so multi-task stage 1 can start from it (as in the table).
    asr = train("hparams/asr.yaml", tiny_corpus, tmp_path / "asr", *SSL, *one)
    train("hparams/multitask.yaml", tiny_corpus, tmp_path / "multitask_s1", *SSL, *one, f"--init_from={asr}")
    assert sum(encoder_calls) == _rows(tiny_corpus), "a later system or epoch ran the frozen encoder again"
    assert _metrics(asr)["test"]["wer"] >= 0
    for name in ("emb_b", "audio_text", "multitask_s1"):
        assert 0 <= _metrics(tmp_path / name)["test"]["accuracy"] <= 1
    # Stage B starts from stage A's layer weights, carried by the module both name normalize.
    a = torch.load(next((stage_a / "save").glob("CKPT+*")) / "normalize.ckpt")["state"]
    assert "layer_logits" in a


def test_a_fine_tuned_encoder_runs_in_the_loop(tiny_corpus, train, tmp_path, encoder_calls):
    run = train("hparams/audio_tdnn.yaml", tiny_corpus, tmp_path / "audio_bl", *SSL, "--ssl_freeze=False",
                "--ssl_layers=last", "--number_of_epochs=1", f"--ssl_cache={tmp_path / 'ssl'}")
    assert not (tmp_path / "ssl").exists()
    assert sum(encoder_calls) >= _rows(tiny_corpus)  # every batch of every pass
    metrics = _metrics(run)
    assert metrics["trainable_params"] > metrics["module_params"]["audio_encoder"] + 1000  # the encoder trains


def _hparams(path, corpus, **values):
    given = {"data_folder": str(corpus), "output_folder": str(corpus / "unused"), **values}
    with open(ROOT / path, encoding="utf-8") as f:
        return load_hyperpyyaml(f, resolve_overrides(ROOT / path, yaml.safe_dump(given), "tiny"))


def test_a_padded_batch_of_cached_features_holds_each_recording_alone(tiny_corpus, tmp_path):
    hparams = _hparams("hparams/audio_crdnn.yaml", tiny_corpus, features="ssl", ssl_cache=str(tmp_path))
    datasets = dataio.dataio_prepare(hparams, dataio.label_encoder(tiny_corpus))
    dev = datasets["dev"]
    items = [dev[0], dev[len(dev) - 1]]  # ascending durations: the shortest and the longest
    batch = dataio.collate(items)
    feats, lens = batch.ssl_feats
    extractor = hparams["compute_features"]
    assert feats.shape[2:] == (extractor.n_layers, extractor.output_size)
    for i, item in enumerate(items):
        wav = dataio.load_audio(dev.data[item["id"]]["wav"], 16000)
        alone, _ = extractor(wav[None], torch.ones(1))
        frames = round(float(lens[i]) * feats.shape[1])
        assert frames == alone.shape[1]
        torch.testing.assert_close(feats[i, :frames], alone[0])
        assert not feats[i, frames:].any()
    assert lens[0] < 1 == lens[1]


def test_building_the_front_end_leaves_the_global_generator_alone(tiny_corpus):
    # The modules built after the front end then get the initial weights of the filter-bank run.
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    ssl_features.SSLHiddenStates(str(tiny_corpus / "standin_wav2vec2"), None)
    torch.testing.assert_close(torch.rand(3), expected)


def test_layer_weights_and_statistics_survive_a_checkpoint(tmp_path):
    norm = ssl_features.LayerMixNormalization(n_layers=3)
    with torch.no_grad():
        norm.layer_logits.copy_(torch.tensor([1.0, 2.0, 3.0]))
    norm.train()
    out = norm(torch.randn(2, 5, 3, 4), torch.ones(2))
    norm._save(tmp_path / "n.ckpt")
    other = ssl_features.LayerMixNormalization(n_layers=3)
    other._load(tmp_path / "n.ckpt")
    torch.testing.assert_close(other.layer_logits.data, norm.layer_logits.data)
    torch.testing.assert_close(other.glob_mean, norm.glob_mean)
    out.sum().backward()  # statistics hold no graph: a second batch's backward works too
    norm(torch.randn(2, 5, 3, 4), torch.ones(2)).sum().backward()


def test_filter_banks_stay_the_default(tiny_corpus):
    hparams = _hparams("hparams/audio_crdnn_embtransfer.yaml", tiny_corpus)
    assert type(hparams["compute_features"]).__name__ == "Fbank"
    assert type(hparams["modules"]["normalize"]).__name__ == "InputNormalization"
    assert hparams["feature_dim"] == hparams["n_mels"] == hparams["fbank_proj"].out_features


def test_waveform_augmentation_is_refused_on_cached_features(tiny_corpus, tmp_path):
    hparams = _hparams("hparams/audio_crdnn.yaml", tiny_corpus, features="ssl", ssl_cache=str(tmp_path))
    hparams["speed_perturb"] = type("Perturb", (), {"speeds": [90, 100, 110]})()
    with pytest.raises(ConfigError, match="speed_perturb acts on the waveform"):
        dataio.dataio_prepare(hparams, dataio.label_encoder(tiny_corpus))


@pytest.mark.parametrize("key, value, message", [
    ("features", "mfcc", "error: features must be one of fbank, ssl, not 'mfcc'"),
    ("ssl_layers", "mean", "error: ssl_layers must be last, weighted or a hidden-state index"),
])
def test_a_bad_feature_setting_is_one_error_line(key, value, message, tiny_corpus, train, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        train("hparams/audio_crdnn.yaml", tiny_corpus, tmp_path / "run", "--features=ssl", f"--{key}={value}")
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)
