"""The fine-tuned text row (hparams/text_finetune.yaml, topic_id.models.text_finetune): pooling,
truncation, an architecture-only encoder taking exported weights, training with a checkpointed
schedule, export and ``topic-id predict`` by text and by audio through an ASR. CPU, offline, on the
tiny built-in corpus and its stand-in BERT.
"""

import csv
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from speechbrain.utils.data_utils import batch_pad_right

from data_prep.prepared import read_manifest
from topic_id import cli
from topic_id.errors import ConfigError
from topic_id.models.text_encoder import TextEncoder
from topic_id.models.text_finetune import FinetunedTextEncoder
from topic_id.serving.export import export_run
from topic_id.serving.inference import TopicIdentifier

TEXTS = ["no mä kävin eilen kaupassa", "tota", "", "mä luen uutiset aina aamulla ja sit mä lähden töihin"]


def _pooled(encoder, texts):
    ids, lens = batch_pad_right([encoder.tokenize(t) for t in texts])
    with torch.no_grad():
        return encoder(ids, lens)


def test_the_untrained_encoder_pools_as_the_frozen_one_whatever_the_padding(tiny_corpus):
    source = tiny_corpus / "standin_bert"
    encoder = FinetunedTextEncoder(str(source), n_layers=2).eval()
    together = _pooled(encoder, TEXTS)
    alone = torch.cat([_pooled(encoder, [t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    # The masked mean of the frozen rows, [CLS]/[SEP] left out; an empty text is a zero vector.
    torch.testing.assert_close(together, TextEncoder(str(source), n_layers=2).embed(TEXTS), atol=1e-5, rtol=0)
    assert together[2].abs().sum() == 0
    cls = FinetunedTextEncoder(str(source), n_layers=1, pooling="cls").eval()
    ids, lens = batch_pad_right([cls.tokenize(t) for t in TEXTS])
    with torch.no_grad():
        first = cls.model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state[:, 0]
    torch.testing.assert_close(_pooled(cls, TEXTS), first, atol=1e-5, rtol=0)


def test_truncation_keeps_the_chosen_side(tiny_corpus):
    source = str(tiny_corpus / "standin_bert")
    full = FinetunedTextEncoder(source, pretrained=False).tokenize(TEXTS[-1])
    right = FinetunedTextEncoder(source, max_length=5, pretrained=False).tokenize(TEXTS[-1])
    left = FinetunedTextEncoder(source, max_length=5, truncation_side="left", pretrained=False).tokenize(TEXTS[-1])
    assert len(full) > 5 and len(right) == len(left) == 5
    assert right.tolist() == full[:4].tolist() + full[-1:].tolist()  # [CLS] w1 w2 w3 [SEP]
    assert left.tolist() == full[:1].tolist() + full[-4:].tolist()  # [CLS] ... w(n-2) w(n-1) w(n) [SEP]
    with pytest.raises(ConfigError, match="^--text_pooling=max is not one of mean, cls$"):
        FinetunedTextEncoder(source, pooling="max", pretrained=False)


def test_an_architecture_only_encoder_takes_the_weights_it_was_given_when_built(tiny_corpus):
    source = str(tiny_corpus / "standin_bert")
    trained = FinetunedTextEncoder(source)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01 * torch.randn_like(p))
    later = FinetunedTextEncoder(source, pretrained=False)
    later.load_state_dict(trained.state_dict())
    assert not later.materialized
    later.materialize()
    torch.testing.assert_close(_pooled(later.eval(), TEXTS), _pooled(trained.eval(), TEXTS))


@pytest.mark.training
def test_the_encoder_trains_and_its_schedule_is_checkpointed(registry_runs, tiny_corpus):
    run, _ = registry_runs("text_finetune")
    ckpt = sorted((run / "save").glob("CKPT+*"))[-1]
    assert {"text_model.ckpt", "head.ckpt", "optimizer.ckpt", "lr_schedule.ckpt"} <= {p.name for p in ckpt.iterdir()}
    schedule = torch.load(ckpt / "lr_schedule.ckpt", weights_only=False)
    epochs = sum(line.startswith("epoch:") for line in (run / "train_log.txt").read_text().splitlines())
    steps = -(-len([r for r in read_manifest(tiny_corpus / "train.csv") if r["subset"] == "transcribed"]) // 8)
    assert epochs >= 1 and schedule["last_epoch"] == steps * epochs  # stepped once per batch
    original = load_file(tiny_corpus / "standin_bert" / "model.safetensors")
    tuned = torch.load(ckpt / "text_model.ckpt", weights_only=True)
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(tuned[f"model.{name}"], original[name])  # the encoder was trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["text_encoder"].startswith("stand-in BERT")
    assert metrics["trainable_params"] == metrics["params"] > 10 * metrics["module_params"]["head"]


def _predictions(run):
    with open(run / "predictions.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.training
def test_export_carries_the_finetuned_encoder_and_predicts_text(registry_runs, tiny_corpus, tmp_path,
                                                                 monkeypatch, capsys):
    from speechbrain.inference.interfaces import foreign_class

    run, _ = registry_runs("text_finetune")
    export = export_run(run, tmp_path / "export")
    info = json.loads((export / "export.json").read_text())
    assert info["inputs"] == "text" and info["text_encoder"]["weights"] == "text_model.ckpt"
    assert "text_encoder_pretrained: false" in (export / "hyperparams.yaml").read_text()
    # Moved and loaded from elsewhere: the bundled stand-in gives the architecture and the
    # tokenizer, text_model.ckpt the fine-tuned weights, so the run's posteriors come back.
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(export, moved)
    monkeypatch.chdir(tmp_path)
    model = foreign_class(source=str(moved), pymodule_file="custom_interface.py",
                          classname="TopicIdentifier", run_opts={"device": "cpu"})
    assert model.needs == "text"
    reference = _predictions(run)
    rows = {r["ID"]: r for r in read_manifest(tiny_corpus / "test.csv")}
    posteriors, _, labels = model.classify_batch(texts=[rows[r["ID"]]["words"] for r in reference])
    expected = torch.tensor([[float(r[f"p_{label}"]) for label in model.labels] for r in reference])
    torch.testing.assert_close(posteriors, expected, atol=1e-4, rtol=0)
    assert labels == [r["predicted"] for r in reference]
    assert cli.main(["predict", "--model", str(moved), "--text", rows[reference[0]["ID"]]["words"],
                     "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().split("\n")[1].split("\t")[1] == reference[0]["predicted"]


@pytest.mark.training
def test_audio_is_classified_through_the_asr_it_is_exported_with(registry_runs, tiny_corpus, tmp_path):
    run, _ = registry_runs("text_finetune")
    asr, _ = registry_runs("asr")
    model = TopicIdentifier.from_hparams(source=str(export_run(run, tmp_path / "export", asr=asr)),
                                         run_opts={"device": "cpu"})
    rows = read_manifest(tiny_corpus / "test.csv")[:4]
    wavs, lens = batch_pad_right([model.load_audio(r["wav"].replace("$data_root", str(tiny_corpus)))
                                  for r in rows])
    from_audio, _, _ = model.classify_batch(wavs, lens)
    from_text, _, _ = model.classify_batch(texts=model.transcribe_batch(wavs, lens))
    torch.testing.assert_close(from_audio, from_text)


@pytest.mark.training
@pytest.mark.usefixtures("one_thread")
def test_killed_between_epochs_resumes_encoder_and_schedule_exactly(tiny_corpus, tmp_path, train):
    from test_resume import _end_of_epoch, _kill_when, _outputs

    options = ["--number_of_epochs=2", "--head_dropout=0.5"]
    train("hparams/text_finetune.yaml", tiny_corpus, tmp_path / "whole", *options)
    out = tmp_path / "run"

    def command():
        return train("hparams/text_finetune.yaml", tiny_corpus, out, *options)

    resumed_from, meta = _kill_when(command, out / "save", _end_of_epoch)
    assert meta["end-of-epoch"] is True and not (out / "metrics.json").exists()
    command()
    assert f"Loading a checkpoint from {resumed_from}" in (out / "log.txt").read_text()
    assert _outputs(out) == _outputs(tmp_path / "whole")
