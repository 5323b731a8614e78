"""topic_id.config.checks: configuration errors stop recipes/train.py before training, one ``error:``
line, exit 2, nothing written; and the checks themselves, on hyperparameters."""

import subprocess
import sys
from types import SimpleNamespace

import pytest

from topic_id.config.checks import check_choice, check_data, check_encoder_dims, reads_text, text_columns
from topic_id.errors import ConfigError
from conftest import ROOT, STANDIN, STANDIN_WAV2VEC2

TEXT = ("hparams/text.yaml", f"--text_dim={STANDIN['hidden_size']}")
AUDIO = ("hparams/audio_tdnn.yaml",)


def _fails(train, capsys, corpus, out, hparams, *args):
    """Run train.py expecting a configuration error; return its message."""
    capsys.readouterr()  # what earlier runs of the test printed
    with pytest.raises(SystemExit) as stop:
        train(hparams, corpus, out, *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2
    assert err[-1].startswith("error: ") and not any("Traceback" in line for line in err), err
    assert [line for line in err if "error" in line.lower()] == err[-1:], err
    assert not out.exists(), "nothing may be written, no checkpoint"
    return err[0]


@pytest.mark.parametrize("args, message", [
    ((*AUDIO, "--train_subset=transcibed"), "--train_subset=transcibed is not one of all, transcribed"),
    (("hparams/asr.yaml", "--sorting=shuffled"), "--sorting=shuffled is not one of random, ascending"),
    (("hparams/audio_wav2vec2.yaml", "--train_hours_sampling=even"), "--train_hours_sampling=even is not one of"),
    ((*AUDIO, "--anneal_lr=sometimes"), "--anneal_lr=sometimes is not one of True, False"),
    ((*TEXT, "--train_text=mytext"), "train.csv has no column 'mytext'"),
    ((*TEXT, "--eval_text=words,mytext"), "dev.csv has no column 'mytext'"),
    ((*TEXT, "--train_text=asr_words"), "no train row has text in it; for asr_words run recipes/transcribe.py"),
    (("hparams/text.yaml", "--text_dim=48"), "--text_dim=48 but the text encoder"),
    (("hparams/audio_wav2vec2.yaml", "--wav2vec2_dim=40"),
     f"--ssl_dim=40 but the SSL encoder is {STANDIN_WAV2VEC2['hidden_size']} wide"),
    (("hparams/audio_wav2vec2.yaml", "--ssl_dim=40"), "--ssl_dim=40 but the SSL encoder is"),
    ((*AUDIO, "--numbr_of_epochs=3"), "--numbr_of_epochs: audio_tdnn.yaml has no such key; nearest: number_of_epochs"),
    ((*AUDIO, "--n_topics=5"), "lists 8 topics but n_topics is 5"),
    (("hparams/audio_crdnn.yaml", "--init_from=/nonexistent/run"), "/nonexistent/run is not a training run folder"),
])
def test_config_error(tiny_corpus, train, capsys, tmp_path, args, message):
    assert message in _fails(train, capsys, tiny_corpus, tmp_path / "run", *args)


def test_untranscribed_subset_of_a_corpus_without_it(corpus_copy, train, capsys, tmp_path):
    for split in ("train",):
        path = corpus_copy / f"{split}.csv"
        path.write_text(path.read_text().replace(",untranscribed", ",transcribed"))
    message = _fails(train, capsys, corpus_copy, tmp_path / "run", "hparams/audio_tdnn.yaml",
                     "--train_subset=untranscribed")
    assert "no training row" in message and "has subset 'untranscribed'" in message


@pytest.mark.training
def test_init_from_with_another_label_order(tiny_corpus, corpus_copy, train, capsys, tmp_path):
    stage_a = train("hparams/audio_crdnn.yaml", tiny_corpus, tmp_path / "a", "--number_of_epochs=1")
    topics = corpus_copy / "topics.txt"
    topics.write_text("".join(reversed(topics.read_text().splitlines(keepends=True))))
    message = _fails(train, capsys, corpus_copy, tmp_path / "b", "hparams/audio_crdnn.yaml",
                     f"--init_from={stage_a}")
    assert "label order" in message


@pytest.mark.training
def test_speechbrain_override_forms_train(tiny_corpus, train, tmp_path):
    """``!name:`` overrides (SpeechBrain's syntax) reach the model; ``--profile X`` is the space form."""
    run = train("hparams/audio_tdnn.yaml", tiny_corpus, tmp_path / "run", "--number_of_epochs=1",
                "--opt_class=!name:torch.optim.AdamW", "--profile", "tiny")
    assert "opt_class: !name:torch.optim.AdamW" in (run / "hyperparams.yaml").read_text()
    assert (run / "metrics.json").is_file()


def test_no_traceback_from_the_command_line(tiny_corpus, tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "train.py"), str(ROOT / "hparams/audio_tdnn.yaml"),
                          f"--data_folder={tiny_corpus}", f"--output_folder={tmp_path / 'run'}",
                          "--profile=tiny", "--train_subset=transcibed"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --train_subset=transcibed is not one of all, transcribed, untranscribed"]
    assert not (tmp_path / "run").exists()


def test_a_choice_is_checked_only_when_the_key_is_set():
    check_choice({}, "sorting", ("random",))
    check_choice({"sorting": "random"}, "sorting", ("random",))
    with pytest.raises(ConfigError, match="--sorting=rnd is not one of random, ascending"):
        check_choice({"sorting": "rnd"}, "sorting", ("random", "ascending"))


def test_text_columns_in_order_of_preference():
    assert text_columns(" asr_words ,words,") == ["asr_words", "words"] and text_columns("") == []


@pytest.mark.parametrize("keys, expected", [({"text_encoder"}, True), ({"text_target"}, True),
                                            ({"trainer", "train_text"}, True), ({"trainer"}, False),
                                            ({"audio_encoder"}, False)])
def test_which_systems_read_text(keys, expected):
    assert reads_text(dict.fromkeys(keys)) is expected


@pytest.mark.parametrize("hparams, message", [
    ({"text_encoder": SimpleNamespace(dim=32, name="bert"), "text_dim": 768},
     "--text_dim=768 but the text encoder bert is 32 wide: pass --text_dim=32"),
    ({"wav2vec2": {"encoder": SimpleNamespace(dim=32)}, "wav2vec2_dim": 1024},
     "--wav2vec2_dim=1024 but the SSL encoder is 32 wide: pass --wav2vec2_dim=32"),
    ({"wav2vec2": {"encoder": SimpleNamespace(dim=32)}, "wav2vec2_dim": 1024, "ssl_dim": 48},
     "--ssl_dim=48 but the SSL encoder is 32 wide: pass --ssl_dim=32"),
    ({"wav2vec2": SimpleNamespace(dim=16), "wav2vec2_dim": 32}, "is 16 wide"),
])
def test_a_dimension_that_is_not_the_models_says_which_to_pass(hparams, message):
    with pytest.raises(ConfigError, match=message):
        check_encoder_dims(hparams)


def test_matching_dimensions_pass():
    check_encoder_dims({"text_encoder": SimpleNamespace(dim=32, name="bert"), "text_dim": 32,
                        "wav2vec2": {"encoder": SimpleNamespace(dim=16)}, "wav2vec2_dim": 16})


def test_a_missing_manifest_says_how_to_make_it(tmp_path):
    hparams = {f"{s}_csv": str(tmp_path / f"{s}.csv") for s in ("train", "dev", "test")}
    with pytest.raises(ConfigError, match="train.csv does not exist: prepare the corpus with python -m data_prep"):
        check_data(hparams)
