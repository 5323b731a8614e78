"""Brain classes: the training and evaluation behaviour of every system.

:class:`TopicBrain` serves every single-loss topic system: the audio branch exists when the YAML puts
an ``audio_encoder`` in ``modules``, the text branch when it defines a ``text_encoder`` (cached
utterance vectors) or a ``text_branch`` module over cached token vectors; the branches are concatenated
and fed to ``head``. A ``text_target`` is a text encoder whose vectors are only a training target.
Subclasses override only what differs (extra losses, ASR decoding, a second optimizer).
"""

import logging
from collections import defaultdict
from pathlib import Path

import speechbrain as sb
import torch

from topic_id.training import metrics
from topic_id.models.encoders import frame_lengths
from topic_id.models.nnet import masked_mean
from topic_id.training.rng_state import RandomState

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


def encode_frames(encoder, feats, lens):
    """Run an audio encoder: its output frames [B, T', D] and their relative lengths.

    Audio encoders take ``(input, relative lengths)``; one that changes the frame count returns
    ``(frames, relative lengths of its frames)`` so that padding stays out of pooling and attention
    (topic_id.models.encoders, topic_id.models.ssl_encoder).

    Arguments
    ---------
    encoder : torch.nn.Module
        The ``audio_encoder`` module.
    feats : torch.Tensor
        Features (or raw audio) [B, T, ...].
    lens : torch.Tensor
        Relative lengths [B].

    Returns
    -------
    tuple
        ``(frames, relative lengths)``.
    """
    encoded = encoder(feats, lens)
    if isinstance(encoded, tuple):
        return encoded
    return encoded, lens


class TopicBrain(sb.Brain):
    """Topic classifier over audio and/or text embeddings, trained with NLL (label smoothing).

    Evaluation results land in ``self.eval_result``: the metrics of the split and the per-utterance
    records (ids, targets, posteriors, embeddings) that ``train.py`` writes out.
    """

    def _wrap_distributed(self):
        """SpeechBrain's DDP wrapping; on CPU (gloo) without SyncBatchNorm, which only runs on GPUs."""
        if not (self.distributed_launch and torch.device(self.device).type == "cpu"):
            return super()._wrap_distributed()
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = torch.nn.parallel.DistributedDataParallel(
                    module, find_unused_parameters=self.find_unused_parameters
                )
        return None

    # The training loader's own generator (make_dataloader), reseeded at every epoch's start.
    loader_generator = None

    def on_fit_start(self):
        """Checkpoint the random generators too, then SpeechBrain's start (which resumes).

        With the generators (:class:`topic_id.training.rng_state.RandomState`) beside the weights,
        optimizer, schedulers, epoch counter and loader position, a run killed at any point and
        started again with the same command ends as the uninterrupted run would have. Optional
        on loading, so checkpoints written without it still resume (with a warning).
        """
        if self.checkpointer is not None and "rng" not in self.checkpointer.recoverables:
            self.checkpointer.add_recoverable("rng", RandomState(), optional_load=True)
        super().on_fit_start()

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader; the training loader's batches and start depend on the epoch alone.

        A ``batch_sampler`` (dynamic batching) gets ``set_epoch`` every epoch, as SpeechBrain's
        shuffling sampler does (under DDP SpeechBrain's wrapper already passes it on). Without it,
        epoch 1 had one batching and every later epoch one other, built from the state the sampler
        had reached, so a restarted process batched its first epoch as epoch 1. The loader also
        gets its own torch generator, reseeded every epoch (:meth:`on_stage_start`): making an
        epoch's iterator draws the workers' base seed, and from the global generator that draw
        would come after the restored state of a mid-epoch checkpoint in the resumed run only.
        SpeechBrain's loader records its position in mid-epoch checkpoints, with a batch sampler
        and with worker processes alike; random draws inside workers (no pipeline here makes
        any) are not resumed mid-epoch.
        """
        batch_sampler = loader_kwargs.get("batch_sampler")
        if stage == sb.Stage.TRAIN:
            self.loader_generator = torch.Generator()
            loader_kwargs.setdefault("generator", self.loader_generator)
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN and self.train_sampler is None and hasattr(batch_sampler, "set_epoch"):
            self.train_sampler = batch_sampler
        return loader

    def audio_features(self, batch, stage):
        """Filterbanks normalised with running global statistics, or raw audio when no Fbank.

        In training, the waveforms are first speed-perturbed when the YAML's ``speed_perturb``
        (SpeechBrain's ``SpeedPerturb``) lists a speed other than 100 %.
        """
        wavs, lens = batch.sig
        perturb = self.hparams.speed_perturb if hasattr(self.hparams, "speed_perturb") else None
        if stage == sb.Stage.TRAIN and perturb is not None and any(s != 100 for s in perturb.speeds):
            # One speed per batch, so relative lengths stay valid.
            wavs = perturb(wavs)
        if not hasattr(self.hparams, "compute_features"):
            return wavs, lens
        feats = self.hparams.compute_features(wavs)
        lens = frame_lengths(self.hparams.compute_features, lens, wavs.shape[1], feats.shape[1])
        epoch = self.hparams.epoch_counter.current if stage == sb.Stage.TRAIN else None
        # Statistics stop updating after the first epochs (SB default); the published recipes
        # never stopped updating them (called without the epoch).
        feats = self.modules.normalize(feats, lens, epoch=epoch)
        return feats, lens

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

    def evaluate_batch(self, batch, stage):
        """Evaluate a batch; its ids are recorded here, once, whatever losses record beside them."""
        self.records["id"].extend(batch.id)
        return super().evaluate_batch(batch, stage)

    def on_stage_start(self, stage, epoch=None):
        """Reset the per-utterance records of an evaluation pass; seed the epoch's loader generator."""
        self.records = defaultdict(list)
        if stage == sb.Stage.TRAIN and self.loader_generator is not None:
            self.loader_generator.manual_seed(int(getattr(self.hparams, "seed", 0)) * 1000 + int(epoch or 0))

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
        """Log, anneal the LR on the dev loss (NewBob; constant if ``anneal_lr`` is False), checkpoint."""
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
        # Per module, so a report can add the parts of another run a deployed system also runs
        # (the multi-task system's stage-1 ASR: topic_id.reporting.results.table_one).
        summary["module_params"] = {name: sum(p.numel() for p in module.parameters())
                                    for name, module in self.hparams.modules.items()}
        summary["trainable_params"] = sum(
            p.numel() for p in self.modules.parameters() if p.requires_grad
        )
        encoder = getattr(self.hparams, "text_encoder", getattr(self.hparams, "text_target", None))
        summary["text_encoder"] = encoder.name if encoder is not None else None
        # Which audio encoder: a pretrained source (a stand-in says so) or the class trained here.
        audio = self.hparams.modules.get("audio_encoder")
        summary["audio_encoder"] = getattr(audio, "name", type(audio).__name__) if audio is not None else None
        summary["labels"] = names
        metrics.write_json(out / "metrics.json", summary)


class EmbTransferBrain(TopicBrain):
    """Emb-transfer stage A (paper Sec. III-B, Fig. 1c).

    Besides the topic NLL, the pooled audio embedding ``e`` learns two targets through linear maps:
    ``text_proj(e)`` the text encoder's utterance vector of the manual transcript (``text_target``:
    a target only, never a head input) and ``fbank_proj(e)`` the utterance mean of the normalised
    filterbanks over real frames (the published mean included padding). Loss = NLL +
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
        encoder = list(self.modules.audio_encoder.parameters())
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
