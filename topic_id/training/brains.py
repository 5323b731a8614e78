"""Brain classes: the training and evaluation behaviour of every system.

:class:`TopicBrain` serves every single-loss topic system: the audio branch exists when the YAML puts
an ``audio_encoder`` in ``modules``, the text branch when it defines a ``text_encoder`` (cached
utterance vectors) or a ``text_branch`` module over cached token vectors; the branches are concatenated
and fed to ``head``. A ``text_target`` is a text encoder whose vectors are only a training target.
Subclasses override only what differs (extra losses, a second optimizer). What every Brain shares
(loaders, checkpointed random state, the audio front end, the end of a stage) is
:class:`topic_id.training.base.BaseBrain`'s; the ASR (:mod:`topic_id.training.asr`) is a sibling.
"""

import logging
from pathlib import Path

import speechbrain as sb
import torch

from topic_id.models.encoders import encode_frames
from topic_id.models.nnet import masked_mean
from topic_id.models.ssl_features import SSLHiddenStates
from topic_id.training import metrics
from topic_id.training.base import BaseBrain
from topic_id.training.hf_transcription import text_authors

logger = logging.getLogger(__name__)


class TopicBrain(BaseBrain):
    """Topic classifier over audio and/or text embeddings, trained with NLL (label smoothing).

    Its evaluation passes record, per utterance, the target, the posteriors and the embedding
    (beside the ids :class:`~topic_id.training.base.BaseBrain` records).
    """

    # Set by inference (topic_id.serving.inference) to a topic_id.models.chunked_encoding.LongInput: at the TEST stage,
    # recordings longer than its chunk are encoded in chunks. Training and train.py's evaluation
    # leave it unset and always encode in one pass.
    long_input = None

    def audio_embedding(self, batch, stage):
        """Encoder output pooled over real frames only (padding never enters) -> [B, D]."""
        if stage == sb.Stage.TEST and self.long_input is not None:
            return self.long_input.embed(self, batch.sig)
        return self.encode_audio(*self.audio_features(batch, stage))

    def encode_audio(self, feats, lens):
        """Encode features (or raw audio) and pool the real output frames -> [B, D]."""
        return self.modules.audio_pool(*encode_frames(self.modules.audio_encoder, feats, lens))

    def text_embedding(self, batch):
        """Cached utterance vector, or a trained branch over cached token vectors."""
        if "text_branch" in self.modules:
            tokens, lens = batch.text_tokens
            return self.modules.text_branch(tokens, lens)
        return batch.text_emb.data

    def embed(self, batch, stage):
        """The fused utterance embedding [B, D] fed to the head."""
        parts = []
        if "audio_encoder" in self.modules:
            parts.append(self.audio_embedding(batch, stage))
        if hasattr(self.hparams, "text_encoder"):
            parts.append(self.text_embedding(batch))
        return torch.cat(parts, dim=-1)

    def compute_forward(self, batch, stage):
        """Topic log-posteriors and the embedding they come from."""
        batch = batch.to(self.device)
        return self.classify(self.embed(batch, stage))

    def classify(self, embedding):
        """The head's topic log-posteriors of an utterance embedding, and the embedding."""
        return {"logprobs": torch.log_softmax(self.modules.head(embedding), dim=-1), "embedding": embedding}

    def topic_loss(self, outputs, batch, stage):
        """NLL with label smoothing over the n_topics real classes (no smoothing mass on absent ones)."""
        targets = batch.topic_encoded.data.squeeze(-1)
        loss = sb.nnet.losses.nll_loss(
            outputs["logprobs"], targets, label_smoothing=self.hparams.label_smoothing
        )
        if stage != sb.Stage.TRAIN:
            self.records["target"].append(targets.cpu())
            self.records["posterior"].append(outputs["logprobs"].exp().float().cpu())
            self.records["embedding"].append(outputs["embedding"].float().cpu())
        return loss

    def compute_objectives(self, outputs, batch, stage):
        """The training loss; subclasses add auxiliary terms."""
        return self.topic_loss(outputs, batch, stage)

    def stage_metrics(self, stage_loss):
        """Topic metrics of the finished evaluation pass (when it recorded targets), then the loss."""
        stats = super().stage_metrics(stage_loss)
        if not self.records["target"]:
            return stats
        targets = torch.cat(self.records["target"]).tolist()
        predicted = torch.cat(self.records["posterior"]).argmax(dim=-1).tolist()
        return {**metrics.topic_metrics(targets, predicted, list(range(self.hparams.n_topics))), **stats}

    def write_outputs(self, results, labels):
        """Write ``metrics.json``, ``predictions[_dev].csv``, embeddings and the confusion PNG.

        Arguments
        ---------
        results : dict
            ``{split: self.eval_result}`` for dev and test.
        labels : CategoricalEncoder
            The label order.
        """
        out = Path(self.hparams.output_folder)
        names = [labels.ind2lab[i] for i in range(len(labels))]
        summary = {}
        for split, result in results.items():
            summary[split] = result["metrics"]
            records = result["records"]
            targets = torch.cat(records["target"]).tolist()
            posteriors = torch.cat(records["posterior"])
            predicted = posteriors.argmax(dim=-1).tolist()
            metrics.write_predictions(
                out / ("predictions.csv" if split == "test" else f"predictions_{split}.csv"),
                records["id"],
                [names[t] for t in targets],
                [names[p] for p in predicted],
                posteriors.tolist(),
                names,
            )
            # Utterance embeddings for the t-SNE figure and agreement analyses of the report.
            torch.save(
                {"id": records["id"], "topic": targets, "embedding": torch.cat(records["embedding"])},
                out / f"embeddings_{split}.pt",
            )
        metrics.plot_confusion(
            summary["test"]["confusion"], names, out / "confusion.png", title=f"{out.name} (test)"
        )
        summary["params"] = sum(p.numel() for p in self.modules.parameters())
        # Per module, so a report can add the parts of another run a deployed system also runs
        # (the multi-task system's stage-1 ASR: topic_id.reporting.results.table_one).
        summary["module_params"] = {name: sum(p.numel() for p in module.parameters())
                                    for name, module in self.hparams.modules.items()}
        summary["trainable_params"] = sum(
            p.numel() for p in self.modules.parameters() if p.requires_grad
        )
        encoder = getattr(self.hparams, "text_encoder", getattr(self.hparams, "text_target", None))
        encoder = self.hparams.modules.get("text_model", encoder)  # a text encoder trained here
        summary["text_encoder"] = encoder.name if encoder is not None else None
        if encoder is not None:
            summary["text_asr"] = text_authors(self.hparams.data_folder, getattr(self.hparams, "train_text", None),
                                               getattr(self.hparams, "eval_text", None))
        # Which audio encoder: a pretrained source (a stand-in says so) or the class trained here.
        audio = self.hparams.modules.get("audio_encoder")
        summary["audio_encoder"] = getattr(audio, "name", type(audio).__name__) if audio is not None else None
        features = getattr(self.hparams, "compute_features", None)
        if isinstance(features, SSLHiddenStates):
            # What the encoder read in place of filter banks (features: ssl).
            weights = self.hparams.modules["normalize"].layer_weights()
            summary["audio_features"] = {"encoder": features.name, "layers": features.layers,
                                         "frozen": features.freeze,
                                         "layer_weights": None if weights is None else weights.tolist()}
        summary["labels"] = names
        metrics.write_json(out / "metrics.json", summary)


class EmbTransferBrain(TopicBrain):
    """Emb-transfer stage A (paper Sec. III-B, Fig. 1c).

    Besides the topic NLL, the pooled audio embedding ``e`` learns two targets through linear maps:
    ``text_proj(e)`` the text encoder's utterance vector of the manual transcript (``text_target``:
    a target only, never a head input) and ``fbank_proj(e)`` the utterance mean of the normalised
    filterbanks over real frames (the published mean included padding; with ``features: ssl``, of
    the normalised SSL features the encoder reads: the acoustic target follows the features). Loss = NLL +
    ``text_loss_weight`` * L1 + ``fbank_loss_weight`` * L1 (paper: equal weights). Stage B keeps
    the encoder, normaliser and head, drops the projections, and classifies audio alone.
    """

    def compute_forward(self, batch, stage):
        """Topic log-posteriors, the embedding, and both projections with the acoustic target."""
        batch = batch.to(self.device)
        feats, lens = self.audio_features(batch, stage)
        outputs = self.classify(self.encode_audio(feats, lens))
        outputs["text_pred"] = self.modules.text_proj(outputs["embedding"])
        outputs["fbank_pred"] = self.modules.fbank_proj(outputs["embedding"])
        outputs["fbank_mean"] = masked_mean(feats, lens).detach()
        return outputs

    def compute_objectives(self, outputs, batch, stage):
        """NLL plus the weighted L1 losses (mean over elements, as SpeechBrain's ``l1_loss``)."""
        text_l1 = torch.nn.functional.l1_loss(outputs["text_pred"], batch.text_emb.data)
        fbank_l1 = torch.nn.functional.l1_loss(outputs["fbank_pred"], outputs["fbank_mean"])
        if stage != sb.Stage.TRAIN:
            self.records["text_l1"].append(text_l1.item())
            self.records["fbank_l1"].append(fbank_l1.item())
        return (
            self.topic_loss(outputs, batch, stage)
            + self.hparams.text_loss_weight * text_l1
            + self.hparams.fbank_loss_weight * fbank_l1
        )

    def stage_metrics(self, stage_loss):
        """TopicBrain's metrics plus the mean L1 losses of the pass."""
        stats = super().stage_metrics(stage_loss)
        for key in ("text_l1", "fbank_l1"):
            if self.records[key]:
                stats[key] = sum(self.records[key]) / len(self.records[key])
        return stats


class FinetuneBrain(TopicBrain):
    """TopicBrain for a pretrained audio encoder with its own optimizer and LR schedule.

    As SpeechBrain's wav2vec2 recipes do: ``encoder_opt_class`` (a smaller LR) updates
    ``audio_encoder`` and ``opt_class`` the rest; both anneal on the dev loss
    (``encoder_lr_annealing`` and ``lr_annealing``) and both are checkpointed.
    """

    def init_optimizers(self):
        """One optimizer for the pretrained encoder, one for everything else."""
        audio = getattr(self.modules.audio_encoder, "module", self.modules.audio_encoder)  # DDP-wrapped
        # New parameters of the encoder module (an SSL encoder's layer weights) train with the head.
        encoder = list(getattr(audio, "pretrained_parameters", audio.parameters)())
        ids = {id(p) for p in encoder}
        self.optimizer = self.opt_class([p for p in self.modules.parameters() if id(p) not in ids])
        self.encoder_optimizer = self.hparams.encoder_opt_class(encoder)
        self.optimizers_dict = {"model": self.optimizer, "encoder": self.encoder_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("encoder_optimizer", self.encoder_optimizer)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Anneal the encoder's LR too, before TopicBrain saves the checkpoint."""
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.encoder_lr_annealing(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.encoder_optimizer, new_lr)
            logger.info("epoch %s: encoder lr %.2e -> %.2e", epoch, old_lr, new_lr)
        super().on_stage_end(stage, stage_loss, epoch)


class TextFinetuneBrain(TopicBrain):
    """TopicBrain whose text encoder (``text_model``) trains with the head, from token ids.

    One optimizer (``opt_class``, AdamW) with the encoder's parameters at ``encoder_lr`` and the
    rest at ``lr``, weight decay on weight matrices only (not on biases and normalisation gains,
    as BERT was trained); its LR follows a transformers schedule (``lr_schedule``: warm-up, then
    linear decay or constant) stepped after every optimizer step, not annealed on the dev loss.
    The schedule is checkpointed with the weights, so a resumed run continues it.
    """

    steps_per_epoch = None

    def embed(self, batch, stage):
        """The pooled utterance vector of the batch's token ids [B, D]."""
        ids, lens = batch.text_ids
        return self.modules.text_model(ids, lens)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """The base loader; the training loader's length sets the schedule's number of steps."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = -(-len(loader) // self.grad_accumulation_factor)
        return loader

    def init_optimizers(self):
        """AdamW over four groups (encoder or head, decayed or not) and its per-step LR schedule."""
        encoder = {id(p) for p in self.modules.text_model.parameters()}
        groups = {}
        for p in self.modules.parameters():
            if not p.requires_grad:
                continue
            key = (id(p) in encoder, p.dim() >= 2)
            groups.setdefault(key, []).append(p)
        decay = self.hparams.weight_decay
        self.optimizer = self.opt_class([
            {"params": params, "lr": self.hparams.encoder_lr if in_encoder else self.hparams.lr,
             "weight_decay": decay if decayed else 0.0}
            for (in_encoder, decayed), params in sorted(groups.items())
        ])
        total = self.steps_per_epoch * self.hparams.epoch_counter.limit
        warmup = self.hparams.warmup_steps
        if warmup is None:
            warmup = round(self.hparams.warmup_ratio * total)
        self.scheduler = self.hparams.lr_scheduler(
            optimizer=self.optimizer, num_warmup_steps=int(warmup), num_training_steps=max(total, 1)
        )
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("lr_schedule", self.scheduler)

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Step the LR schedule after each optimizer step."""
        if should_step:
            self.scheduler.step()

    def anneal(self, stage_loss):
        """No annealing on the dev loss (the schedule steps per batch); the head's LR for the log."""
        return self.optimizer.param_groups[0]["lr"]
