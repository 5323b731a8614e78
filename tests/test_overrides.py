"""Profiles, SpeechBrain override syntax and corpus-derived overrides of recipes/train.py."""

import pytest
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from topic_id.errors import ConfigError
from topic_id.config.overrides import (
    profile_overrides,
    read_yaml_map,
    resolve_overrides,
    split_profile,
    top_level_keys,
)

SYSTEM = """data_folder: !PLACEHOLDER
lr: 0.1
n_topics: 8
epochs: 3
src: bert
opt_class: !name:torch.optim.Adam
    lr: !ref <lr>
nested:
    lr: 1
"""


@pytest.fixture
def system_yaml(tmp_path):
    path = tmp_path / "sys.yaml"
    path.write_text(SYSTEM)
    return path


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "prof.yaml"
    path.write_text("defaults:\n  lr: 0.5\n  absent_key: 1\nsys:\n  epochs: 2\n  src: !ref <data_folder>/bert\n")
    return path


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "topics.txt").write_text("a\nb\nc\n")
    return tmp_path


def _load(system_yaml, argv, profile=None):
    """What train.py does: SpeechBrain's parser, then the merge, then HyperPyYAML."""
    _, _, overrides = sb.parse_arguments([str(system_yaml), *argv])
    text = resolve_overrides(system_yaml, overrides, profile)
    with open(system_yaml, encoding="utf-8") as f:
        return load_hyperpyyaml(f, text), text


def test_top_level_keys(system_yaml):
    assert top_level_keys(system_yaml) == {"data_folder", "lr", "n_topics", "epochs", "src", "opt_class", "nested"}


def test_profile_applies_defaults_only_where_the_key_exists(system_yaml, profile):
    out = profile_overrides(system_yaml, profile)
    assert out["lr"] == 0.5 and out["epochs"] == 2 and "absent_key" not in out


def test_command_line_wins_and_refs_survive(system_yaml, profile, corpus):
    hparams, text = _load(system_yaml, [f"--data_folder={corpus}", "--lr=0.01"], profile)
    assert "src: !ref <data_folder>/bert" in text
    assert hparams["lr"] == 0.01 and hparams["epochs"] == 2 and hparams["src"] == f"{corpus}/bert"
    assert hparams["n_topics"] == 3  # from topics.txt


@pytest.mark.parametrize("argv", [
    ["--opt_class=!name:torch.optim.AdamW"],
    ["--opt_class", "!name:torch.optim.AdamW"],
])
def test_speechbrain_tags_survive_the_merge(system_yaml, profile, corpus, argv):
    import torch

    hparams, _ = _load(system_yaml, [f"--data_folder={corpus}", *argv], profile)
    optimiser = hparams["opt_class"]([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimiser, torch.optim.AdamW)


def test_ref_override_from_the_command_line(system_yaml, corpus):
    hparams, _ = _load(system_yaml, [f"--data_folder={corpus}", "--src=!ref <data_folder>/other"])
    assert hparams["src"] == f"{corpus}/other"


def test_unknown_key_names_the_nearest(system_yaml, corpus):
    with pytest.raises(ConfigError, match="--epoch: sys.yaml has no such key; nearest: epochs"):
        _load(system_yaml, [f"--data_folder={corpus}", "--epoch=4"])


def test_unknown_key_in_a_profile_section(system_yaml, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sys:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match="bad.yaml, section sys: lrr: .*nearest: lr"):
        profile_overrides(system_yaml, bad)


def test_profile_space_and_equals_forms():
    assert split_profile(["s.yaml", "--profile", "demo"]) == ("demo", ["s.yaml"])
    assert split_profile(["s.yaml", "--profile=tiny", "--lr=1"]) == ("tiny", ["s.yaml", "--lr=1"])
    with pytest.raises(ConfigError, match="--profile needs a value"):
        split_profile(["s.yaml", "--profile"])


def test_unknown_profile_names_the_known_ones(system_yaml):
    (system_yaml.parent / "profiles").mkdir()
    (system_yaml.parent / "profiles" / "demo.yaml").write_text("defaults: {}\n")
    with pytest.raises(ConfigError, match=r"known profiles: \['demo'\]"):
        profile_overrides(system_yaml, "no-such-profile")


def test_invalid_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml_map("a: [1, 2", "the overrides")


WIDTHS = """data_folder: !PLACEHOLDER
n_topics: 8
text_encoder_source: hub-org/not-on-this-machine
text_dim: 768
"""


@pytest.fixture
def widths_yaml(tmp_path, corpus):
    """A system YAML with a text encoder, and a model folder whose config.json says 48 wide."""
    path = tmp_path / "widths.yaml"
    path.write_text(WIDTHS)
    model = corpus / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 48}')
    (model / "model.safetensors").write_bytes(b"")
    return path


def test_derived_keys_equal_the_corpus_topics_and_the_models_hidden_size(widths_yaml, corpus):
    text, derived = resolve_overrides(widths_yaml, f"data_folder: {corpus}\ntext_encoder_source: !ref "
                                      "<data_folder>/model\n", with_derived=True)
    given = read_yaml_map(text, "overrides")
    assert given["n_topics"] == 3 and given["text_dim"] == 48
    assert derived == {"n_topics": str(corpus / "topics.txt"), "text_dim": str(corpus / "model" / "config.json")}


def test_an_override_beats_the_derived_value(widths_yaml, corpus):
    text, derived = resolve_overrides(widths_yaml, f"data_folder: {corpus}\ntext_encoder_source: "
                                      f"{corpus}/model\nn_topics: 5\ntext_dim: 16\n", with_derived=True)
    given = read_yaml_map(text, "overrides")
    assert (given["n_topics"], given["text_dim"], derived) == (5, 16, {})


def test_a_model_not_on_this_machine_keeps_the_yaml_default(widths_yaml, corpus):
    _, derived = resolve_overrides(widths_yaml, f"data_folder: {corpus}\n", with_derived=True)
    assert "text_dim" not in derived and derived["n_topics"] == str(corpus / "topics.txt")


def test_no_topic_count_before_the_corpus_is_prepared(widths_yaml, tmp_path):
    _, derived = resolve_overrides(widths_yaml, f"data_folder: {tmp_path}/not_yet\n", with_derived=True,
                                   corpus=False)
    assert derived == {}
