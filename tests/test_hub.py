"""topic_id.models.hub: one model resolver for both encoders (folder or hub id, pinned revision, opt-in download)
and the `topic-id download` command. No network: the hub is a fake cache or a patched snapshot_download."""

import json

import pytest

from topic_id import cli

from topic_id.models import hub
from topic_id.models.hub import STANDIN_MARKER, TEXT_ENCODER, WAV2VEC2, ModelNotFound, resolve_model
from topic_id.models.text_encoder import TextEncoder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _model(folder, marker=None):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 24}))
    (folder / "model.safetensors").write_bytes(b"weights")
    if marker is not None:
        (folder / STANDIN_MARKER).write_text(json.dumps(marker))
    return folder


def _hub_cache(root, repo="Org/tiny", commit=COMMIT):
    """A Hugging Face hub cache holding ``repo`` at ``commit`` (its ``main``)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    _model(folder / "snapshots" / commit)
    return root


class FakeHub:
    """Stands in for ``snapshot_download``: records its calls, 'downloads' into a folder per revision."""

    def __init__(self, root, fail=False):
        self.root, self.fail, self.calls = root, fail, []

    def __call__(self, repo_id, revision=None, cache_dir=None, local_files_only=False, **kwargs):
        self.calls.append({"repo_id": repo_id, "revision": revision, "local_files_only": local_files_only})
        if local_files_only or self.fail:
            raise OSError("no connection to the hub")
        folder = self.root / repo_id.replace("/", "--") / (revision or COMMIT)
        if not folder.exists():
            _model(folder)
        return str(folder)


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    fake = FakeHub(tmp_path / "fetched")
    monkeypatch.setattr(hub, "snapshot_download", fake)
    return fake


def test_local_folder_is_used_as_it_is(tmp_path):
    folder = _model(tmp_path / "bert")
    path, name = resolve_model(str(folder), revision="v1", kind=TEXT_ENCODER)
    assert path == folder.resolve() and name == str(folder.resolve())
    with pytest.raises(ModelNotFound, match="Text encoder folder .* does not exist"):
        resolve_model(str(tmp_path / "nowhere"), kind=TEXT_ENCODER)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFound, match="has no weights"):
        resolve_model(folder)


def test_standins_are_named_as_such(tmp_path):
    bert = _model(tmp_path / "bert", {"description": "stand-in BERT (random init, demo vocab)"})
    w2v = _model(tmp_path / "w2v", {"description": "stand-in wav2vec2 (random init, no pretraining)"})
    assert resolve_model(bert, kind=TEXT_ENCODER)[1] == (
        f"stand-in BERT (random init, demo vocab), not FinBERT: {bert.resolve()}")
    assert resolve_model(w2v, kind=WAV2VEC2)[1].startswith("stand-in wav2vec2 (random init, no pretraining), "
                                                           "not XLS-R: ")


def test_hub_id_from_the_local_cache_names_its_commit(tmp_path):
    cache = _hub_cache(tmp_path / "hub")
    path, name = resolve_model("Org/tiny", cache_dir=str(cache), kind=WAV2VEC2)
    assert name == f"Org/tiny@{COMMIT}" and path.name == COMMIT
    assert resolve_model("Org/tiny", revision=COMMIT, cache_dir=str(cache))[1] == f"Org/tiny@{COMMIT}"


def test_offline_by_default_with_one_clear_message(tmp_path, monkeypatch):
    calls = []
    real = hub.snapshot_download

    def spy(*args, **kwargs):
        calls.append(kwargs["local_files_only"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hub, "snapshot_download", spy)
    with pytest.raises(ModelNotFound) as err:
        resolve_model("TurkuNLP/no-such-finbert", cache_dir=str(tmp_path / "hub"), kind=TEXT_ENCODER)
    assert calls == [True]
    first, *rest = str(err.value).splitlines()
    assert first.startswith("Text encoder 'TurkuNLP/no-such-finbert' (revision main) is not available")
    assert "run-time downloads are off" in first
    how = " ".join(rest)
    assert "topic-id download TurkuNLP/no-such-finbert" in how and "--hub_download=True" in how
    assert "hf download TurkuNLP/no-such-finbert --local-dir DIR" in how
    assert "--text_encoder_source=DIR" in how and "build-bert" in how


def test_download_only_when_opted_in(fake_hub):
    path, name = resolve_model("Org/tiny", download=True, kind=TEXT_ENCODER)
    assert fake_hub.calls[-1]["local_files_only"] is False and name == f"Org/tiny@{COMMIT}"
    with pytest.raises(ModelNotFound, match="run-time downloads are off"):
        resolve_model("Org/other")
    assert fake_hub.calls[-1]["local_files_only"] is True


def test_revision_is_pinned_in_the_name(fake_hub):
    other = "fedcba9876543210fedcba9876543210fedcba98"
    path, name = resolve_model("Org/tiny", revision=other, download=True)
    assert fake_hub.calls[-1]["revision"] == other and name == f"Org/tiny@{other}" and path.name == other


def test_encoders_pass_hub_download_through(fake_hub, tmp_path):
    encoder = TextEncoder("Org/tiny", hub_download=True, hf_cache_dir=str(tmp_path / "hub"))
    assert encoder.name == f"Org/tiny@{COMMIT}" and fake_hub.calls[-1]["local_files_only"] is False
    assert encoder.dim == 24 and encoder._model is None  # the width, read without loading weights
    with pytest.raises(ModelNotFound):
        _ = TextEncoder("Org/absent").name
    assert fake_hub.calls[-1]["local_files_only"] is True


def test_download_command_prints_the_folder(fake_hub, capsys):
    assert cli.main(["download", "Org/tiny", "--revision", COMMIT, "--cache-dir", "hub"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(COMMIT) and fake_hub.calls[-1] == {
        "repo_id": "Org/tiny", "revision": COMMIT, "local_files_only": False}


def test_download_command_failure_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub, "snapshot_download", FakeHub(tmp_path, fail=True))
    assert cli.main(["download", "Org/tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("topic-id download: error: Model 'Org/tiny' (revision main) is not available")
    assert "downloading it failed (OSError: no connection to the hub)" in err


def test_a_config_without_model_type_is_typed_by_its_architectures_or_keys(tmp_path):
    google = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_size": 24,
              "intermediate_size": 48, "max_position_embeddings": 64, "num_attention_heads": 2,
              "num_hidden_layers": 1, "type_vocab_size": 2, "vocab_size": 30}
    for fields, expected in ((google, "BertConfig"), ({"architectures": ["Wav2Vec2ForPreTraining"]}, "Wav2Vec2Config"),
                             ({"architectures": ["BertForPreTraining"], "hidden_size": 24}, "BertConfig")):
        folder = tmp_path / expected / str(len(fields))
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(fields))
        config = hub.load_config(folder)
        assert type(config).__name__ == expected and config.model_type in ("bert", "wav2vec2")
        assert "model_type" not in json.loads((folder / "config.json").read_text())  # left as it was
    (folder / "config.json").write_text(json.dumps({"hidden_size": 24}))
    with pytest.raises(ModelNotFound, match="has no model_type, and neither its architectures nor its keys"):
        hub.load_config(folder, "/models/x", TEXT_ENCODER)
    with pytest.raises(ModelNotFound, match="To get it: run `topic-id download Org/x`"):
        hub.load_config(folder, "Org/x", TEXT_ENCODER)


def test_a_tokenizer_without_its_vocabulary_is_refused(tmp_path):
    from transformers import BertConfig

    folder = tmp_path / "bert"
    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(20)]
    (folder / "vocab.txt").write_text("".join(w + "\n" for w in words))
    config = BertConfig(vocab_size=len(words), hidden_size=8, num_attention_heads=2)
    assert hub.load_tokenizer(folder, config)("w3 w7")["input_ids"] == [2, 8, 12, 3]
    (folder / "vocab.txt").unlink()  # transformers would build a tokenizer of the special tokens alone
    with pytest.raises(ValueError, match="its tokenizer has 5 entries but the model's vocabulary has 25"):
        hub.load_tokenizer(folder, config)
