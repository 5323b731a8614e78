"""Brain classes: the training and evaluation behaviour of every system.

:class:`TopicBrain` serves every single-loss topic system: the audio branch exists when the YAML puts
an ``audio_encoder`` in ``modules``, the text branch when it defines a ``text_encoder`` (cached
utterance vectors) or a ``text_branch`` module over cached token vectors; the branches are concatenated
and fed to ``head``. Subclasses override only what differs (extra losses, ASR decoding).
"""

import logging
from collections import defaultdict
from pathlib import Path

import speechbrain as sb
import torch

from topic_id import metrics

logger = logging.getLogger(__name__)

MAXIMIZE = ("accuracy", "micro_f1", "macro_f1", "uar")
MINIMIZE = ("loss", "wer", "cer")


def selection(metric):
    """Checkpointer keyword arguments that select the best checkpoint by ``metric``.

    Arguments
    ---------
    metric : str
        One of :data:`MAXIMIZE` or :data:`MINIMIZE`.

    Returns
    -------
    dict
        ``{"max_key": metric}`` or ``{"min_key": metric}``.
    """
    if metric in MAXIMIZE:
        return {"max_key": metric}
    if metric in MINIMIZE:
        return {"min_key": metric}
    raise ValueError(f"ckpt_select must be one of {MAXIMIZE + MINIMIZE}, not {metric!r}")


class TopicBrain(sb.Brain):
    """Topic classifier over audio and/or text embeddings, trained with NLL (label smoothing).

    Evaluation results land in ``self.eval_result``: the metrics of the split and the per-utterance
    records (ids, targets, posteriors, embeddings) that ``train.py`` writes out.
    """

    def audio_features(self, batch, stage):
        """Filterbanks normalised with running global statistics, or raw audio when no Fbank."""
        wavs, lens = batch.sig
        if not hasattr(self.hparams, "compute_features"):
            return wavs, lens
        feats = self.hparams.compute_features(wavs)
        epoch = self.hparams.epoch_counter.current if stage == sb.Stage.TRAIN else None
        # Statistics stop updating after the first epochs (SB default); the published recipes
        # never stopped updating them (original_recipes.md §2.3).
        feats = self.modules.normalize(feats, lens, epoch=epoch)
        return feats, lens

    def audio_embedding(self, batch, stage):
        """Encoder output pooled over real frames only (B5) -> [B, D]."""
        feats, lens = self.audio_features(batch, stage)
        if hasattr(self.hparams, "compute_features"):
            encoded = self.modules.audio_encoder(feats)
        else:
            encoded = self.modules.audio_encoder(feats, lens)
        return self.modules.audio_pool(encoded, lens)

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
        embedding = self.embed(batch, stage)
        logits = self.modules.head(embedding)
        return {"logprobs": torch.log_softmax(logits, dim=-1), "embedding": embedding}

    def topic_loss(self, outputs, batch, stage):
        """NLL with label smoothing over the n_topics real classes (B2)."""
        targets = batch.topic_encoded.data.squeeze(-1)
        loss = sb.nnet.losses.nll_loss(
            outputs["logprobs"], targets, label_smoothing=self.hparams.label_smoothing
        )
        if stage != sb.Stage.TRAIN:
            self.records["id"].extend(batch.id)
            self.records["target"].append(targets.cpu())
            self.records["posterior"].append(outputs["logprobs"].exp().float().cpu())
            self.records["embedding"].append(outputs["embedding"].float().cpu())
        return loss

    def compute_objectives(self, outputs, batch, stage):
        """The training loss; subclasses add auxiliary terms."""
        return self.topic_loss(outputs, batch, stage)

    def on_stage_start(self, stage, epoch=None):
        """Reset the per-utterance records of an evaluation pass."""
        self.records = defaultdict(list)

    def stage_metrics(self, stage_loss):
        """Metrics of the finished evaluation pass."""
        if not self.records["target"]:
            return {"loss": stage_loss}
        targets = torch.cat(self.records["target"]).tolist()
        predicted = torch.cat(self.records["posterior"]).argmax(dim=-1).tolist()
        stats = metrics.topic_metrics(targets, predicted, list(range(self.hparams.n_topics)))
        stats["loss"] = stage_loss
        return stats

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal the LR on the dev loss (an LR schedule that acts, B4), checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        stats = self.stage_metrics(stage_loss)
        scalars = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        if stage == sb.Stage.VALID:
            old_lr, new_lr = self.hparams.lr_annealing(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": old_lr}, train_stats=self.train_stats, valid_stats=scalars
            )
            select = selection(self.hparams.ckpt_select)
            self.checkpointer.save_and_keep_only(
                meta=scalars,
                max_keys=[select["max_key"]] if "max_key" in select else [],
                min_keys=[select["min_key"]] if "min_key" in select else [],
            )
        else:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=scalars
            )
            self.eval_result = {"metrics": stats, "records": self.records}

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
        summary["trainable_params"] = sum(
            p.numel() for p in self.modules.parameters() if p.requires_grad
        )
        encoder = getattr(self.hparams, "text_encoder", None)
        summary["text_encoder"] = encoder.name if encoder is not None else None
        summary["labels"] = names
        metrics.write_json(out / "metrics.json", summary)
