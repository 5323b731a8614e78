"""What every Brain of this repository shares, whatever it predicts.

:class:`BaseBrain` holds the training loop's plumbing: the data loaders (a dynamic batch sampler
reshuffled every epoch, a loader generator of its own), the random generators checkpointed with
every checkpoint, DDP on CPU, the audio front end (speed perturbation, filterbanks, running
normalisation), the per-utterance records of an evaluation pass, and the end of a stage (log, anneal
the learning rate on the dev loss, keep the best checkpoint, hand the test results to ``train.py``).
The topic classifier (:class:`topic_id.training.brains.TopicBrain`) and the ASR
(:class:`topic_id.training.asr.ASRBrain`) are siblings over it; the multi-task system
(:class:`topic_id.training.multitask.MultitaskBrain`) is both.
"""

from collections import defaultdict

import speechbrain as sb
import torch

from topic_id.models.ssl_features import features_of
from topic_id.training.rng_state import RandomState

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

    Example
    -------
    >>> selection("wer"), selection("micro_f1")
    ({'min_key': 'wer'}, {'max_key': 'micro_f1'})
    """
    if metric in MAXIMIZE:
        return {"max_key": metric}
    if metric in MINIMIZE:
        return {"min_key": metric}
    raise ValueError(f"ckpt_select must be one of {MAXIMIZE + MINIMIZE}, not {metric!r}")


class BaseBrain(sb.Brain):
    """SpeechBrain's Brain with the loop every system here shares.

    Subclasses define ``compute_forward``, ``compute_objectives``, the metrics of an evaluation pass
    (:meth:`stage_metrics`, cooperatively: each adds its own to its parent's) and
    ``write_outputs(results, labels)``, which ``recipes/train.py`` calls with ``{split:
    self.eval_result}`` for dev and test and the label order once both are evaluated. Evaluation results land in ``self.eval_result``: the metrics of the
    split and the per-utterance records (``self.records``: ids, and whatever the losses record)
    that ``train.py`` writes out.
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
        """Features normalised with running global statistics, or raw audio when no front end.

        The features are filter banks or a speech encoder's hidden states
        (:mod:`topic_id.models.ssl_features`), computed here from the waveforms or, for a frozen
        encoder, read from the batch (``ssl_feats``, cached once per recording). In training, the
        waveforms are first speed-perturbed when the YAML's ``speed_perturb`` (SpeechBrain's
        ``SpeedPerturb``) lists a speed other than 100 %.
        """
        cached = getattr(batch, "ssl_feats", None)
        if cached is not None:
            feats, lens = cached
        else:
            wavs, lens = batch.sig
            perturb = self.hparams.speed_perturb if hasattr(self.hparams, "speed_perturb") else None
            if stage == sb.Stage.TRAIN and perturb is not None and any(s != 100 for s in perturb.speeds):
                # One speed per batch, so relative lengths stay valid.
                wavs = perturb(wavs)
            if not hasattr(self.hparams, "compute_features"):
                return wavs, lens
            feats, lens = features_of(self.hparams.compute_features, wavs, lens)
        epoch = self.hparams.epoch_counter.current if stage == sb.Stage.TRAIN else None
        # Statistics stop updating after the first epochs (SpeechBrain's default); the published
        # recipes never stopped updating them.
        feats = self.modules.normalize(feats, lens, epoch=epoch)
        return feats, lens

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
        """Metrics of the finished evaluation pass: its loss; subclasses add theirs."""
        return {"loss": stage_loss}

    def anneal(self, stage_loss):
        """Anneal the LR on the dev loss (``lr_annealing``); returns the LR the epoch trained with."""
        old_lr, new_lr = self.hparams.lr_annealing(stage_loss)
        sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
        return old_lr

    def save_epoch_checkpoint(self, meta):
        """Checkpoint the epoch with ``meta``, keeping only the newest and the best by ``ckpt_select``."""
        select = selection(self.hparams.ckpt_select)
        self.checkpointer.save_and_keep_only(
            meta=meta,
            max_keys=[select["max_key"]] if "max_key" in select else [],
            min_keys=[select["min_key"]] if "min_key" in select else [],
        )

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal the LR on the dev loss (a schedule that acts: docs/published_recipes.md), checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        stats = self.stage_metrics(stage_loss)
        scalars = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        if stage == sb.Stage.VALID:
            old_lr = self.anneal(stage_loss)
            self.hparams.train_logger.log_stats(
                {"epoch": epoch, "lr": old_lr}, train_stats=self.train_stats, valid_stats=scalars
            )
            self.save_epoch_checkpoint(scalars)
        else:
            self.hparams.train_logger.log_stats(
                {"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=scalars
            )
            self.eval_result = {"metrics": stats, "records": self.records}
