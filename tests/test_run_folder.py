"""The run folder (topic_id.training.run_folder): what train.py records and how every reader reads it."""

import json

import pytest

from conftest import ROOT, STANDIN
from topic_id.training.run_folder import (
    RunError,
    Run,
    is_run_folder,
    metrics_file,
    predictions_file,
    read_environment,
    write_run_record,
)

SYSTEM = "data_folder: !PLACEHOLDER\nlr: 0.1\nn_topics: 8\nckpt_select: micro_f1\n"


@pytest.fixture
def run(tmp_path):
    """A run folder as train.py leaves it: hyperparams.yaml and run.json, from a system YAML."""
    system = tmp_path / "sys.yaml"
    system.write_text(SYSTEM)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "hyperparams.yaml").write_text(f"# Generated from:\n# {system}\ndata_folder: /data\nlr: 0.5\n"
                                             "n_topics: 3\nckpt_select: micro_f1\n")
    write_run_record(folder, system, "data_folder: /data\nlr: 0.5\nn_topics: 3\n",
                     derived={"n_topics": "/data/topics.txt"}, device="cpu")
    return folder, system


def test_the_record_names_the_overridden_keys_not_their_values(run):
    folder, system = run
    record = json.loads((folder / "run.json").read_text())
    assert record["hparams_file"] == str(system.resolve())
    assert record["overridden_keys"] == ["data_folder", "lr", "n_topics"]
    assert record["derived_keys"] == {"n_topics": "/data/topics.txt"}
    assert "0.5" not in json.dumps({k: v for k, v in record.items() if k != "packages"})
    assert record["device"] == "cpu" and "torch" in record["packages"] and record["git_revision"] is None


def test_overrides_take_their_values_from_hyperparams_yaml(run):
    folder, system = run
    text = (folder / "hyperparams.yaml").read_text()
    (folder / "hyperparams.yaml").write_text(text.replace("lr: 0.5", "lr: 0.25"))
    r = Run(folder)
    assert r.yaml == system.resolve() and r.overrides == {"data_folder": "/data", "lr": 0.25, "n_topics": 3}


def test_a_run_json_that_held_the_override_text_still_reads(run):
    folder, system = run
    (folder / "run.json").write_text(json.dumps({"hparams_file": str(system), "overrides": "lr: 0.5\n"}))
    assert Run(folder).overrides == {"lr": 0.5}
    assert read_environment(folder) == {}


def test_environment_from_the_record_or_an_older_runs_env_log(run, tmp_path):
    folder, _ = run
    env = read_environment(folder)
    assert env["device"] == "cpu" and env["torch"] and "revision" not in env
    old = tmp_path / "old"
    old.mkdir()
    (old / "env.log").write_text("Installed Python packages:\ntorch==2.0.0\n====\nCUDA not available\n")
    assert read_environment(old) == {"torch": "2.0.0", "device": "cpu"}


def test_git_revision_of_the_checkout_holding_the_system_yaml(tmp_path):
    write_run_record(tmp_path, ROOT / "hparams" / "text.yaml", "")
    revision = json.loads((tmp_path / "run.json").read_text())["git_revision"]
    assert revision is None or len(revision) >= 7  # None where the checkout is not a git one


def test_paths_of_the_layout(run, tmp_path):
    folder, _ = run
    assert is_run_folder(folder) and not is_run_folder(folder, trained=True) and not is_run_folder(tmp_path)
    assert metrics_file(folder) == folder / "metrics.json"
    assert predictions_file(folder, "dev") == folder / "predictions_dev.csv"
    with pytest.raises(RunError, match="topics.txt is missing"):
        Run(folder).topics_file
    with pytest.raises(RunError, match="not a training run folder"):
        Run(tmp_path)


@pytest.mark.training
def test_hyperparams_yaml_shows_the_derived_keys_and_the_log_says_where_from(tiny_corpus, train, tmp_path):
    folder = train("hparams/text.yaml", tiny_corpus, tmp_path / "run", "--number_of_epochs=1",
                   "--train_subset=transcribed", "--train_text=words", "--eval_text=words")
    resolved = Run(folder)
    n_topics = len((tiny_corpus / "topics.txt").read_text().split())
    assert (resolved["text_dim"], resolved["n_topics"]) == (STANDIN["hidden_size"], n_topics)
    record = json.loads((folder / "run.json").read_text())
    assert record["derived_keys"] == {"n_topics": str(tiny_corpus / "topics.txt"),
                                      "text_dim": str(tiny_corpus / "standin_bert" / "config.json")}
    log = (folder / "log.txt").read_text()
    assert log.count(f"text_dim: {STANDIN['hidden_size']}, read from") == 1
    assert log.count(f"n_topics: {n_topics}, read from") == 1
