"""The audio-only systems (Table I rows 4-7): full-size parameter counts, predictions that do not
depend on padding, the emb-transfer losses, stage transfer (fresh epochs and optimizer, the same
label order in both stages), the wav2vec2 optimizers
and the hours subset. Every registry row also trains end to end in tests/test_recipes.py.
"""

import shutil

import pytest
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch

from topic_id.training import transfer
from topic_id.training.dataio import hours_subset
from topic_id.config.overrides import resolve_overrides
from conftest import ROOT

TDNN_PARAMS = 4_231_068
"""audio BL with 30 filterbanks: 4,154,268 + 2,560 * 30 (docs/published_recipes.md); Table I: 4.2M."""
CRDNN_PARAMS = 20_752_832
"""The CRDNN at the paper's sizes in SpeechBrain 1.1.2: the same as the published SB 0.5.11 count
(docs/published_recipes.md); Conv2d, LayerNorm, LSTM and BatchNorm1d kept their parameter shapes."""
AUDIO_ONLY_PARAMS = CRDNN_PARAMS + 512 * 8 + 8
"""audio-only and emb-transfer stage B: 20,756,936 (Table I: 20.8M; published 20,757,962 with the
10-way layer for 8 topics)."""
EMB_TRANSFER_A_PARAMS = AUDIO_ONLY_PARAMS + (512 * 768 + 768) + (512 * 40 + 40)
"""Stage A with its projections to the 768-d text vector and the 40 filterbanks: 21,171,440
(Table I counts 21.2M for emb transfer, i.e. with these heads; published 21,172,466 with 10 outputs)."""


def _hparams(path, corpus, output, profile=None, **values):
    """Load a system YAML the way recipes/train.py does (profile, keys read from the corpus and models)."""
    given = {"data_folder": str(corpus), "output_folder": str(output), **values}
    overrides = resolve_overrides(ROOT / path, yaml.safe_dump(given), profile)
    with open(ROOT / path, encoding="utf-8") as f:
        return load_hyperpyyaml(f, overrides)


def _brain(hparams):
    return hparams["brain_class"](
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu"},
        checkpointer=hparams["checkpointer"],
    )


def _count(modules):
    return sum(p.numel() for m in modules.values() for p in m.parameters())


def _batch(*wavs, text_dim=None):
    items = []
    for i, wav in enumerate(wavs):
        item = {"id": f"utt{i}", "sig": wav, "topic_encoded": torch.LongTensor([i % 8])}
        if text_dim:
            item["text_emb"] = torch.randn(text_dim)
        items.append(item)
    return PaddedBatch(items)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("hparams/audio_tdnn.yaml", TDNN_PARAMS),
        ("hparams/audio_crdnn.yaml", AUDIO_ONLY_PARAMS),
        ("hparams/audio_crdnn_embtransfer.yaml", EMB_TRANSFER_A_PARAMS),
    ],
)
def test_full_size_parameter_counts(path, expected, tmp_path):
    hparams = _hparams(path, tmp_path, tmp_path / "out", n_topics=8)
    assert _count(hparams["modules"]) == expected
    if "crdnn" in path:
        assert sum(p.numel() for p in hparams["modules"]["audio_encoder"].parameters()) == CRDNN_PARAMS


def test_xls_r_300m_parameter_count(tiny_corpus, tmp_path):
    """XLS-R 300M built from its config (no weights): 315,438,720 in the fine-tuned encoder; Table I's
    317M is the hub checkpoint with the pretraining quantizer and projections (317,390,592)."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForPreTraining, Wav2Vec2Model

    # The parameter-shaping fields of facebook/wav2vec2-xls-r-300m's config.json.
    config = Wav2Vec2Config(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
        num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, mask_time_prob=0.075,
        codevector_dim=768, proj_codevector_dim=768, num_codevector_groups=2,
        num_codevectors_per_group=320,
    )
    with torch.device("meta"):
        encoder = Wav2Vec2Model(config)
        pretraining = Wav2Vec2ForPreTraining(config)
    # The head sized for XLS-R's width; the stand-in only lets the YAML load offline.
    hparams = _hparams("hparams/audio_wav2vec2.yaml", tiny_corpus, tmp_path, n_topics=8,
                       wav2vec2_source=str(tiny_corpus / "standin_wav2vec2"), wav2vec2_dim=1024)
    head = sum(p.numel() for p in hparams["modules"]["head"].parameters())
    total = sum(p.numel() for p in encoder.parameters()) + head
    frozen = sum(p.numel() for p in encoder.feature_extractor.parameters()) + config.hidden_size
    assert (total, total - frozen) == (315_446_920, 311_235_720)
    assert sum(p.numel() for p in pretraining.parameters()) == 317_390_592


@pytest.mark.parametrize("path, utterance_norm", [
    ("hparams/audio_tdnn.yaml", False),
    ("hparams/audio_tdnn.yaml", True),
    ("hparams/audio_crdnn.yaml", False),
    ("hparams/audio_crdnn.yaml", True),
    ("hparams/audio_wav2vec2.yaml", False),
    ("hparams/audio_wav2vec2.yaml", True),
])
def test_predictions_do_not_depend_on_padding(path, utterance_norm, tiny_corpus, tmp_path):
    """An utterance alone and batched with a longer one gets the same embedding and posteriors."""
    # head_norm: the standardising head too must not see the padding.
    brain = _brain(_hparams(path, tiny_corpus, tmp_path, "tiny", utterance_norm=utterance_norm,
                            head_norm=True))
    torch.manual_seed(0)
    with torch.no_grad():
        brain.modules.train()  # non-trivial normaliser and BatchNorm statistics
        brain.compute_forward(_batch(torch.randn(20000), torch.randn(33333)), sb.Stage.TRAIN)
        brain.modules.eval()
        longer = torch.randn(52345)
        for samples in (16037, 23456):  # frame counts that are not multiples of the pooling
            short = torch.randn(samples)
            alone = brain.compute_forward(_batch(short), sb.Stage.TEST)
            batched = brain.compute_forward(_batch(short, longer), sb.Stage.TEST)
            assert torch.allclose(alone["embedding"][0], batched["embedding"][0], atol=1e-4)
            assert torch.allclose(alone["logprobs"][0], batched["logprobs"][0], atol=1e-5)
        if "crdnn" in path and not utterance_norm:
            # The published computation (the CRDNN over the padding, a plain time mean) does not
            # have this property: the padding a batch adds changes every embedding in it.
            feats, _ = brain.audio_features(_batch(short, longer), sb.Stage.TEST)
            padded = super(type(brain.modules.audio_encoder), brain.modules.audio_encoder).forward
            published = padded(feats).mean(dim=1)[0]
            assert not torch.allclose(published, alone["embedding"][0], atol=1e-3)


def test_emb_transfer_losses(tiny_corpus, tmp_path):
    """NLL + L1(text) + L1(fbank mean over real frames), weighted; no text reaches the head."""
    hparams = _hparams("hparams/audio_crdnn_embtransfer.yaml", tiny_corpus, tmp_path, "tiny",
                       text_loss_weight=0.5, fbank_loss_weight=2.0)
    brain = _brain(hparams)
    assert hparams["head"].layers[-1].in_features == hparams["dnn_neurons"]
    text_dim = hparams["text_dim"]
    brain.modules.eval()
    brain.on_stage_start(sb.Stage.VALID)
    short, longer = torch.randn(17000), torch.randn(40000)
    with torch.no_grad():
        brain.modules.train()
        brain.compute_forward(_batch(short, longer, text_dim=text_dim), sb.Stage.TRAIN)
        brain.modules.eval()
        batch = _batch(short, longer, text_dim=text_dim)
        out = brain.compute_forward(batch, sb.Stage.VALID)
        loss = brain.compute_objectives(out, batch, sb.Stage.VALID)
        alone = brain.compute_forward(_batch(short, text_dim=text_dim), sb.Stage.VALID)
    nll = sb.nnet.losses.nll_loss(out["logprobs"], batch.topic_encoded.data.squeeze(-1),
                                  label_smoothing=hparams["label_smoothing"])
    text_l1 = (out["text_pred"] - batch.text_emb.data).abs().mean()
    fbank_l1 = (out["fbank_pred"] - out["fbank_mean"]).abs().mean()
    assert torch.allclose(loss, nll + 0.5 * text_l1 + 2.0 * fbank_l1)
    # The acoustic target is the utterance's own mean: padding does not enter it.
    assert torch.allclose(alone["fbank_mean"][0], out["fbank_mean"][0], atol=1e-5)
    assert out["fbank_mean"].shape == (2, hparams["n_mels"])


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stage_b_starts_from_stage_a_best_checkpoint(tiny_corpus, tmp_path):
    """Named modules come from stage A's best checkpoint, not its newest; the rest starts fresh."""
    run_a = tmp_path / "stage_a"
    stage_a = _hparams("hparams/audio_crdnn_embtransfer.yaml", tiny_corpus, run_a, "tiny")
    run_a.mkdir(exist_ok=True)
    shutil.copyfile(tiny_corpus / "topics.txt", run_a / "topics.txt")
    encoder_a, normalize_a = stage_a["modules"]["audio_encoder"], stage_a["modules"]["normalize"]
    normalize_a.train()
    normalize_a(torch.randn(2, 50, stage_a["n_mels"]) * 3 + 1, torch.ones(2), epoch=0)
    with torch.no_grad():  # "trained": away from the seeded initialisation stage B also gets
        for p in encoder_a.parameters():
            p.add_(0.5)
    stage_a["epoch_counter"].current = 7
    stage_a["checkpointer"].save_checkpoint(meta={"micro_f1": 0.9})
    best = {"encoder": _state(encoder_a), "head": _state(stage_a["head"]),
            "mean": normalize_a.glob_mean.clone()}
    with torch.no_grad():
        for p in encoder_a.parameters():
            p.add_(1.0)
    stage_a["epoch_counter"].current = 8
    stage_a["checkpointer"].save_checkpoint(meta={"micro_f1": 0.1})  # the newest, not the best
    # What train.py leaves in a run folder; stage B's init_select (null) defers to it.
    (run_a / "hyperparams.yaml").write_text(f"ckpt_select: {stage_a['ckpt_select']}\n")

    stage_b = _hparams("hparams/audio_crdnn.yaml", tiny_corpus, tmp_path / "stage_b", "tiny",
                       init_from=str(run_a))
    fresh = _state(stage_b["modules"]["audio_encoder"])
    transfer.init_from(stage_b["init_from"], stage_b["checkpointer"].recoverables,
                       stage_b["init_modules"], stage_b["init_select"],
                       labels_file=tiny_corpus / "topics.txt")
    assert _same(_state(stage_b["modules"]["audio_encoder"]), best["encoder"])
    assert not _same(fresh, best["encoder"])
    assert _same(_state(stage_b["head"]), best["head"])
    assert torch.equal(stage_b["modules"]["normalize"].glob_mean, best["mean"])
    assert stage_b["epoch_counter"].current == 0  # its own epochs, not stage A's
    assert "text_proj" not in stage_b["modules"]  # inference needs audio only

    # The label order must be the same in both stages, or the inherited head's rows mean other topics.
    (run_a / "topics.txt").write_text("".join(reversed(
        (tiny_corpus / "topics.txt").read_text().splitlines(keepends=True))))
    with pytest.raises(transfer.TransferError, match="label order"):
        transfer.init_from(run_a, stage_b["checkpointer"].recoverables, stage_b["init_modules"],
                           stage_b["init_select"], labels_file=tiny_corpus / "topics.txt")


def test_wav2vec2_has_its_own_optimizer_and_frozen_feature_encoder(tiny_corpus, tmp_path):
    hparams = _hparams("hparams/audio_wav2vec2.yaml", tiny_corpus, tmp_path, "tiny")
    brain = _brain(hparams)
    brain.on_fit_start()
    model = hparams["modules"]["audio_encoder"].model
    assert brain.optimizer.param_groups[0]["lr"] == hparams["lr"]
    assert brain.encoder_optimizer.param_groups[0]["lr"] == hparams["lr_wav2vec2"]
    in_model_opt = {id(p) for g in brain.optimizer.param_groups for p in g["params"]}
    assert not in_model_opt & {id(p) for p in model.parameters()}
    conv, transformer, head = (_state(model.feature_extractor), _state(model.encoder),
                               _state(hparams["head"]))
    brain.modules.train()
    brain.fit_batch(_batch(torch.randn(16000), torch.randn(24000)))
    assert _same(_state(model.feature_extractor), conv)  # frozen, as in the fine-tuning recipes
    assert not _same(_state(model.encoder), transformer)
    assert not _same(_state(hparams["head"]), head)
    assert "stand-in" in hparams["modules"]["audio_encoder"].name


@pytest.mark.parametrize("sampling", ["stratified", "balanced"])
def test_hours_subset_draws_per_topic(sampling, tiny_corpus):
    dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
        str(tiny_corpus / "train.csv"), replacements={"data_root": str(tiny_corpus)})
    with dataset.output_keys_as(["id", "topic", "duration"]):
        rows = [dict(r) for r in dataset]
    total = sum(float(r["duration"]) for r in rows)
    longest = max(float(r["duration"]) for r in rows)
    hours = total / 2 / 3600
    subset = hours_subset(dataset, hours, sampling, seed=1)
    with subset.output_keys_as(["id", "topic", "duration"]):
        kept = [dict(r) for r in subset]
    topics = sorted({r["topic"] for r in rows})
    for topic in topics:
        have = sum(float(r["duration"]) for r in rows if r["topic"] == topic)
        taken = sum(float(r["duration"]) for r in kept if r["topic"] == topic)
        quota = hours * 3600 * (have / total if sampling == "stratified" else 1 / len(topics))
        assert min(quota, have) <= taken < quota + longest
    again = hours_subset(dataset, hours, sampling, seed=1)
    with again.output_keys_as(["id"]):
        assert [r["id"] for r in again] == [r["id"] for r in kept]
    assert len(hours_subset(dataset, 10 * total / 3600, sampling)) == len(rows)
