"""wav2vec 2.0 pretraining (topic_id.standins.pretrain) on the tiny corpus with the tiny stand-in."""

import csv
import doctest
import json
import math

import numpy as np
import pytest
import torch

from topic_id.standins import pretrain, pretrain_data, pretrain_model
from topic_id.standins.cli import main
from topic_id.standins.pretrain import pretrain_wav2vec2

# Single-step masks and few negatives: settings with which the tiny random stand-in left the
# contrastive loss's plateau at log(K + 1) within 60 updates on the 48 tiny utterances for each of 16
# seeds (last 5 updates 0.12-0.5 below it; the paper's 10-step masks and 100 negatives take far more).
FAST = {"batch_size": 8, "max_seconds": 3.0, "mask_prob": 0.2, "mask_length": 1, "num_negatives": 10,
        "valid_split": None, "device": "cpu"}
LR = 2e-3
K = 5  # updates averaged at each end of a run


def _steps(folder):
    with open(folder / "steps.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _curve(folder, column="contrastive_loss"):
    return np.array([float(r[column]) for r in _steps(folder)])


@pytest.fixture(scope="module")
def pretrained(tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "w2v"
    return pretrain_wav2vec2(tiny_corpus, out, init=tiny_corpus / "standin_wav2vec2", epochs=10, lr=LR,
                             **FAST)


@pytest.mark.training
def test_contrastive_loss_falls_and_accuracy_rises(pretrained):
    loss, acc = _curve(pretrained), _curve(pretrained, "accuracy")
    assert len(loss) == 60  # 10 epochs of 6 batches
    uniform = math.log(FAST["num_negatives"] + 1)  # what flat logits score: no discrimination learned
    assert loss[-K:].mean() < loss[:K].mean() - 0.1
    assert loss[-K:].mean() < uniform - 0.05
    assert acc[-K:].mean() > 1.5 / (FAST["num_negatives"] + 1)
    record = json.loads((pretrained / "pretraining.json").read_text())
    assert record["updates"] == 60 and len(record["epochs"]) == 10
    assert set(_steps(pretrained)[0]) == set(pretrain.STEP_COLUMNS)


@pytest.mark.training
def test_zero_learning_rate_does_not_learn(tiny_corpus, tmp_path):
    out = pretrain_wav2vec2(tiny_corpus, tmp_path / "w2v", init=tiny_corpus / "standin_wav2vec2", epochs=3,
                            lr=0.0, **FAST)
    loss = _curve(out)
    assert loss[-K:].mean() > loss[:K].mean() - 0.05
    assert loss[-K:].mean() > math.log(FAST["num_negatives"] + 1) - 0.05


@pytest.mark.training
def test_output_loads_in_the_wav2vec2_row_encoder(pretrained, tiny_corpus):
    from safetensors.torch import load_file

    from topic_id.models.ssl_encoder import Wav2Vec2

    encoder = Wav2Vec2(str(pretrained), save_path=str(pretrained)).eval()
    saved = load_file(str(pretrained / "model.safetensors"))
    assert any(k.startswith("quantizer.") for k in saved)  # the folder can be pretrained further
    loaded = encoder.model.state_dict()
    assert len(loaded) == sum(k.startswith("wav2vec2.") for k in saved)
    for key, value in loaded.items():
        torch.testing.assert_close(value, saved[f"wav2vec2.{key}"])
    frames, lens = encoder(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    assert frames.shape[0] == 2 and lens[0] == 1.0
    # The config is the source's for fine-tuning: no pretraining masks switched on.
    source = json.loads((tiny_corpus / "standin_wav2vec2" / "config.json").read_text())
    config = json.loads((pretrained / "config.json").read_text())
    assert (config["mask_time_prob"], config["apply_spec_augment"]) == (source["mask_time_prob"],
                                                                        source["apply_spec_augment"])
    assert (pretrained / "preprocessor_config.json").is_file()


@pytest.mark.training
def test_output_stays_marked_as_standin(pretrained):
    from topic_id.models.hub import WAV2VEC2, resolve_model

    marker = json.loads((pretrained / "STANDIN.json").read_text())
    assert marker["standin"] is True
    assert marker["description"].startswith("stand-in wav2vec2 (random init, pretrained 60 steps on 0.0")
    assert "built-in demo train audio" in marker["description"]
    assert marker["settings"]["hidden_size"] == 32 and marker["settings"]["pretraining"]["lr"] == LR
    assert "not XLS-R" in resolve_model(pretrained, kind=WAV2VEC2)[1]
    assert not list(pretrained.parent.glob(".*partial"))


@pytest.mark.training
def test_from_scratch_like_is_a_standin(tiny_corpus, tmp_path):
    out = pretrain_wav2vec2(tiny_corpus, tmp_path / "w2v", from_scratch_like=tiny_corpus / "standin_wav2vec2",
                            epochs=1, max_steps=2, accumulate=2, **FAST)
    assert [int(s["step"]) for s in _steps(out)] == [1, 2]
    assert "2 updates of 2 x 8 crops" in (out / "pretrain.log").read_text()
    assert json.loads((out / "STANDIN.json").read_text())["standin"] is True


@pytest.mark.training
def test_rerun_is_up_to_date_and_other_settings_need_force(pretrained, tiny_corpus, capsys):
    stamp = (pretrained / "model.safetensors").stat().st_mtime_ns
    pretrain_wav2vec2(tiny_corpus, pretrained, init=tiny_corpus / "standin_wav2vec2", epochs=10, lr=LR,
                      **FAST)
    assert (pretrained / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain-wav2vec2", "--manifests", str(tiny_corpus), "--init", str(tiny_corpus / "standin_wav2vec2"),
              "--out", str(pretrained), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and err.startswith("error: ") and "--force" in err


@pytest.mark.training
def test_interrupted_run_resumes(tiny_corpus, tmp_path, monkeypatch):
    calls = []
    evaluate = pretrain.evaluate

    def stop_in_epoch_two(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate(*args)

    settings = dict(FAST, valid_split="dev")
    monkeypatch.setattr(pretrain, "evaluate", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        pretrain_wav2vec2(tiny_corpus, tmp_path / "w2v", init=tiny_corpus / "standin_wav2vec2", epochs=2,
                          lr=1e-3, **settings)
    assert not (tmp_path / "w2v").exists() and (tmp_path / ".w2v.partial" / "checkpoint.pt").is_file()
    monkeypatch.setattr(pretrain, "evaluate", evaluate)
    out = pretrain_wav2vec2(tiny_corpus, tmp_path / "w2v", init=tiny_corpus / "standin_wav2vec2", epochs=2,
                            lr=1e-3, **settings)
    assert [int(r["step"]) for r in _steps(out)] == list(range(1, 13))
    assert "resuming at update 6 (epoch 2)" in (out / "pretrain.log").read_text()
    record = json.loads((out / "pretraining.json").read_text())
    assert [e["epoch"] for e in record["epochs"]] == [1, 2] and "accuracy" in record["epochs"][1]["valid"]


@pytest.mark.parametrize("case", ["no_folder", "no_rows", "bad_source", "missing_audio"])
def test_bad_input_exits_2_with_one_line(case, corpus_copy, tmp_path, capsys):
    manifests, source = corpus_copy, corpus_copy / "standin_wav2vec2"
    if case == "no_folder":
        manifests = tmp_path / "nowhere"
    elif case == "no_rows":
        header = (corpus_copy / "train.csv").read_text().splitlines()[0]
        (corpus_copy / "train.csv").write_text(header + "\n")
    elif case == "bad_source":
        source = tmp_path / "no_model"
    else:
        rows = (corpus_copy / "train.csv").read_text().splitlines()
        rows[1] = rows[1].replace("$data_root/audio/", "$data_root/gone/")
        (corpus_copy / "train.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as exit_:
        main(["pretrain-wav2vec2", "--manifests", str(manifests), "--init", str(source),
              "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2
    assert "\n" not in err and err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_doctests():
    for module in (pretrain, pretrain_data, pretrain_model):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
