"""The hybrid systems (Table I rows 8-10): parameter counts at the paper's sizes, the padding-free
text BLSTM, and the multi-task chain: stage 1 (ASR + topic) -> its own ASR transcribes a corpus copy
-> stage 2 starts from stage 1's best checkpoint and never reads a manual transcript.

The registry runs come from the ``registry_runs`` fixture (tests/conftest.py), shared with
tests/test_recipes.py, so each row trains once per session.
"""

import csv
import json

import pytest
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer

from data_prep.prepared import linked_copy, read_manifest
from topic_id.models.nnet import TextBLSTM
from topic_id.config.registry import load_registry
from conftest import REGISTRY, ROOT

PROFILE_DIR = ROOT / "hparams" / "profiles"

ROWS = {row["name"]: row for row in load_registry(REGISTRY)}

# Trainable parameters at the paper's (LP) sizes, frozen text encoder excluded. The published
# counts (docs/published_recipes.md) had 10-way output layers for 8 topics; ours have 8 outputs.
FULL_SIZE = {
    # TDNN on 30 filterbanks 2,690,452 + stats pooling -> 3000 -> 512 linear 1,536,512 + BLSTM
    # 11,550,720 + 1024 -> 8 linear 8,200 (Table I: 15.8M).
    "audio_text_bl": {"audio_encoder": 2_690_452, "audio_pool": 1_536_512, "text_branch": 11_550_720,
                      "head": 8_200},
    # CRDNN 20,752,832 + 1280 -> 8 linear 10,248 (Table I: 20.8M; published 20,765,642).
    "audio_text": {"audio_encoder": 20_752_832, "head": 10_248},
    # The ASR's 25,000,298 + the 1280 -> 8 head (Table I: 25M; published 25,013,108).
    "multitask_s1": {"audio_encoder": 20_752_832, "head": 10_248, "embedding": 128_000,
                     "decoder": 3_093_466, "ctc_lin": 513_000, "seq_lin": 513_000},
    # Stage 2 keeps what it needs to classify: the ASR decoder is not in it.
    "multitask": {"audio_encoder": 20_752_832, "head": 10_248},
}
TOTAL = {"audio_text_bl": 15_785_884, "audio_text": 20_763_080, "multitask_s1": 25_010_546,
         "multitask": 20_763_080}


def _full_size(name, tmp_path):
    """The modules of a registry row at the YAML's own (paper) sizes, with the row's overrides."""
    row = ROWS[name]
    overrides = {"data_folder": str(tmp_path), "output_folder": str(tmp_path / name)}
    for arg in row["overrides"]:
        key, value = arg[2:].split("=", 1)
        overrides[key] = yaml.safe_load(value)
    with open(ROOT / row["hparams"], encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides)


@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_full_size_parameter_counts(name, tmp_path):
    hparams = _full_size(name, tmp_path)
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in hparams["modules"].items()}
    assert {k: v for k, v in counts.items() if v} == FULL_SIZE[name]
    assert sum(counts.values()) == TOTAL[name]
    # The frozen text encoder is not a module: it runs once, before training, into a cache.
    assert "text_encoder" in hparams and "text_encoder" not in hparams["modules"]


def test_stage_two_takes_stage_one_modules_at_full_size(tmp_path):
    stage1, stage2 = _full_size("multitask_s1", tmp_path), _full_size("multitask", tmp_path)
    # Stage 2 picks stage 1's best checkpoint by the metric stage 1 selected by (paper: dev WER).
    assert stage2["init_select"] is None and stage1["ckpt_select"] == "wer"
    assert set(stage2["init_modules"]) == {"normalize", "audio_encoder", "head"}
    for name in stage2["init_modules"]:
        theirs = stage1["checkpointer"].recoverables[name].state_dict()
        ours = stage2["checkpointer"].recoverables[name].state_dict()
        assert {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}, name


@pytest.mark.parametrize("profile", sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
def test_profiles_give_both_multitask_stages_the_same_encoder(profile):
    sections = yaml.safe_load((PROFILE_DIR / f"{profile}.yaml").read_text(encoding="utf-8").replace("!ref ", ""))
    stage1, stage2 = sections.get("multitask") or {}, sections.get("hybrid_crdnn") or {}
    keys = ("n_mels", "cnn_blocks", "cnn_channels", "time_pooling_size", "rnn_layers", "rnn_neurons",
            "dnn_neurons", "text_dim")
    assert {k: stage1.get(k) for k in keys} == {k: stage2.get(k) for k in keys}


ASR_MODULES = ("n_mels", "cnn_blocks", "cnn_channels", "time_pooling_size", "rnn_layers", "rnn_neurons",
               "dnn_neurons", "output_neurons", "emb_size", "dec_neurons", "dec_attn_dim", "norm_type")


@pytest.mark.parametrize("profile", sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
def test_profiles_that_warm_start_stage_one_give_it_the_asr_sizes(profile):
    sections = yaml.safe_load((PROFILE_DIR / f"{profile}.yaml").read_text(encoding="utf-8").replace("!ref ", ""))
    stage1, asr = sections.get("multitask") or {}, sections.get("asr") or {}
    if stage1.get("warm_start_asr"):
        assert {k: stage1.get(k) for k in ASR_MODULES} == {k: asr.get(k) for k in ASR_MODULES}


@pytest.mark.training
def test_stage_one_warm_starts_from_the_asr_row(registry_runs, train, tmp_path, capsys):
    asr_run, corpus = registry_runs("asr")
    best = Checkpointer(asr_run / "save").find_checkpoint(min_key="wer")
    # With a zero learning rate, stage 1's ASR modules after an epoch are the ASR run's.
    run = train("hparams/multitask.yaml", corpus, tmp_path / "warm", "--warm_start_asr=True",
                f"--init_from={asr_run}", "--lr=0", "--number_of_epochs=1")
    assert f"initialised decoder from {best.path}" in (run / "log.txt").read_text()
    ours = Checkpointer(run / "save").find_checkpoint()
    for name in ("audio_encoder", "embedding", "decoder", "seq_lin", "ctc_lin"):
        theirs = torch.load(best.paramfiles[name], map_location="cpu")
        mine = torch.load(ours.paramfiles[name], map_location="cpu")
        weights = [k for k in theirs if "running_" not in k and "num_batches" not in k]
        assert weights and all(torch.equal(theirs[k], mine[k]) for k in weights), name
    # Without the ASR run, with other sizes or another unit count: one line each, nothing written.
    capsys.readouterr()
    for args, message in (
        (["--warm_start_asr=True"], "error: warm_start_asr starts this stage from a trained ASR"),
        ([f"--init_from={asr_run}", "--dec_neurons=16"], "error: decoder."),
        ([f"--init_from={asr_run}", "--output_neurons=30"], "error: embedding."),
    ):
        with pytest.raises(SystemExit) as stop:
            train("hparams/multitask.yaml", corpus, tmp_path / "bad", *args)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and err.startswith(message) and "\n" not in err, err
        assert not (tmp_path / "bad" / "save").exists()


def test_a_source_run_without_these_units_is_refused(tmp_path):
    """A stage that takes an ASR's units needs that run's SentencePiece model of its own name."""
    from types import SimpleNamespace

    from topic_id.training import transfer

    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "40_unigram.model").write_bytes(b"units")
    ours = SimpleNamespace(model_file=tmp_path / "mine" / "40_unigram.model", model_dir=tmp_path / "mine")
    assert transfer.asr_units(tmp_path, ours) == tmp_path / "tokenizer" / "40_unigram.model"
    transfer.take_units(tmp_path, ours)
    assert ours.model_file.read_bytes() == b"units"
    other = SimpleNamespace(model_file=tmp_path / "mine" / "40_char.model", model_dir=tmp_path / "mine")
    with pytest.raises(transfer.TransferError, match="has no SentencePiece model 40_char.model"):
        transfer.asr_units(tmp_path, other)


def test_text_blstm_ignores_padding():
    torch.manual_seed(0)
    blstm = TextBLSTM(6, hidden_size=4, num_layers=2).eval()
    texts = [torch.randn(n, 6) for n in (3, 7, 1)]
    alone = torch.cat([blstm(t.unsqueeze(0), torch.ones(1)) for t in texts])
    padded = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
    lengths = torch.tensor([len(t) for t in texts], dtype=torch.float) / padded.shape[1]
    assert torch.allclose(blstm(padded, lengths), alone, atol=1e-6)
    # The vector is the mean of the final states over layer x direction, as published.
    assert blstm(padded, lengths).shape == (3, 4)


@pytest.mark.training
def test_stage_one_reports_topic_and_asr_metrics(registry_runs):
    run_dir, _ = registry_runs("multitask_s1")
    result = json.loads((run_dir / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert {"micro_f1", "uar", "confusion", "wer", "cer"} <= set(result[split])
        with open(run_dir / f"hyps_{split}.csv", encoding="utf-8", newline="") as f:
            assert next(csv.reader(f)) == ["ID", "ref", "hyp"]
    assert (run_dir / "tokenizer").is_dir()


@pytest.mark.training
def test_stage_two_reads_stage_one_own_asr(registry_runs):
    stage1, _ = registry_runs("multitask_s1")
    _, corpus = registry_runs("multitask")
    # Stage 2 reads a corpus copy that stage 1's ASR transcribed (one copy per ASR, so the
    # standalone ASR's transcripts are neither read nor overwritten).
    record = json.loads((corpus / "asr_words.json").read_text())
    assert {entry["asr"] for entry in record.values()} == {str(stage1.resolve())}
    assert set(record) == {"train.csv", "dev.csv", "test.csv"}
    ours = {r["ID"]: r["asr_words"] for s in ("dev", "test") for r in read_manifest(corpus / f"{s}.csv")}
    hyps = {}
    for split in ("dev", "test"):
        with open(stage1 / f"hyps_{split}.csv", encoding="utf-8", newline="") as f:
            hyps.update({r["ID"]: r["hyp"] for r in csv.DictReader(f)})
    # The copy's dev/test text is stage 1's beam-search output (the same decoder, batched anew).
    assert sum(ours[i] == hyps[i] for i in hyps) >= 0.9 * len(hyps)


@pytest.mark.training
def test_stage_two_starts_from_stage_one_best_checkpoint(registry_runs, train, tmp_path):
    stage1, _ = registry_runs("multitask_s1")
    _, corpus = registry_runs("multitask")
    row = ROWS["multitask"]
    best = Checkpointer(stage1 / "save").find_checkpoint(min_key="wer")
    # With a zero learning rate, stage 2's weights after an epoch are those it started from.
    run = train(row["hparams"], corpus, tmp_path / "lr0", *row["overrides"], f"--init_from={stage1}",
                "--lr=0", "--number_of_epochs=1")
    assert f"initialised audio_encoder from {best.path}" in (run / "log.txt").read_text()
    ours = Checkpointer(run / "save").find_checkpoint()
    assert "wer" not in ours.meta  # its own checkpoints, in its own folder
    for name in ("audio_encoder", "head"):
        theirs = torch.load(best.paramfiles[name], map_location="cpu")
        mine = torch.load(ours.paramfiles[name], map_location="cpu")
        weights = [k for k in theirs if "running_" not in k and "num_batches" not in k]
        assert weights and all(torch.equal(theirs[k], mine[k]) for k in weights), name
    # A fresh epoch counter: stage 2 trained its own epoch 1.
    assert (run / "train_log.txt").read_text().startswith("epoch: 1,")


@pytest.mark.training
def test_stage_two_never_reads_manual_transcripts(registry_runs, train, tmp_path):
    reference, corpus = registry_runs("multitask")
    stage1, _ = registry_runs("multitask_s1")
    blank = linked_copy(corpus, tmp_path / "no_words")
    for split in ("train", "dev", "test"):
        path = blank / f"{split}.csv"
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            header, rows = reader.fieldnames, list(reader)
        for r in rows:
            r["words"] = ""
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    row = ROWS["multitask"]
    run = train(row["hparams"], blank, tmp_path / "run", *row["overrides"], f"--init_from={stage1}")
    ours, theirs = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    for split in ("dev", "test"):
        assert ours[split] == theirs[split]
    for name in ("predictions.csv", "predictions_dev.csv"):
        assert (run / name).read_text() == (reference / name).read_text()


@pytest.mark.training
def test_asr_test_text_row_evaluates_the_audio_text_model(registry_runs):
    """audio+text (ASR test text) trains nothing: it is audio+text's best model fed ``asr_words``."""
    source, _ = registry_runs("audio_text")
    run, corpus = registry_runs("audio_text_asr")
    assert "epoch:" not in (run / "train_log.txt").read_text()
    theirs = Checkpointer(source / "save").find_checkpoint(max_key="micro_f1")
    ours = Checkpointer(run / "save").find_checkpoint(max_key="micro_f1")
    assert ours is not None and ours.meta["micro_f1"] == theirs.meta["micro_f1"]
    for name in ("normalize", "audio_encoder", "head"):
        a = torch.load(theirs.paramfiles[name], weights_only=False)
        b = torch.load(ours.paramfiles[name], weights_only=False)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if torch.is_tensor(a[k]))
    assert any(row["asr_words"] for row in read_manifest(corpus / "test.csv"))


@pytest.mark.training
def test_evaluation_only_row_refuses_untransferred_modules(registry_runs, train, tmp_path, capsys):
    """number_of_epochs=0 with a module left out of init_modules would evaluate random weights."""
    source, corpus = registry_runs("audio_text")
    with pytest.raises(SystemExit) as stop:
        train("hparams/hybrid_crdnn.yaml", corpus, tmp_path / "run", f"--init_from={source}",
              "--number_of_epochs=0", "--init_modules=[normalize, audio_encoder]")
    assert stop.value.code == 2 and "untransferred" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # stopped before anything was written
