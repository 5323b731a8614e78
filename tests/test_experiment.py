"""Profiles and corpus-derived overrides of recipes/train.py."""

import pytest
import yaml

from topic_id.experiment import profile_overrides, resolve_overrides, top_level_keys


@pytest.fixture
def system_yaml(tmp_path):
    path = tmp_path / "sys.yaml"
    path.write_text("data_folder: !PLACEHOLDER\nlr: 0.1\nn_topics: 8\nepochs: 3\nnested:\n    lr: 1\n")
    return path


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "prof.yaml"
    path.write_text(
        "defaults:\n  lr: 0.5\n  absent_key: 1\nsys:\n  epochs: 2\n  src: !ref <data_folder>/bert\n"
    )
    return path


def test_top_level_keys(system_yaml):
    assert top_level_keys(system_yaml) == {"data_folder", "lr", "n_topics", "epochs", "nested"}


def test_profile_applies_defaults_only_where_the_key_exists(system_yaml, profile):
    out = profile_overrides(system_yaml, profile)
    assert out["lr"] == 0.5 and out["epochs"] == 2 and "absent_key" not in out


def test_command_line_wins_and_refs_survive(system_yaml, profile, tmp_path):
    (tmp_path / "topics.txt").write_text("a\nb\nc\n")
    text = resolve_overrides(system_yaml, f"data_folder: {tmp_path}\nlr: 0.01", profile)
    assert "src: !ref <data_folder>/bert" in text
    plain = yaml.safe_load("\n".join(line for line in text.splitlines() if "!ref" not in line))
    assert plain["lr"] == 0.01 and plain["epochs"] == 2
    assert plain["n_topics"] == 3  # from topics.txt


def test_unknown_profile_names_the_known_ones(system_yaml):
    with pytest.raises(FileNotFoundError, match="known profiles"):
        profile_overrides(system_yaml, "no-such-profile")
