"""The attention-based ASR (paper Sec. III).

:class:`ASRBrain` trains the CRDNN + location-aware GRU decoder + CTC of ``hparams/asr.yaml``:
``ctc_weight`` CTC + (1 - ``ctc_weight``) attention NLL for the first ``number_of_ctc_epochs``
epochs, attention NLL only afterwards; greedy decoding on dev every ``valid_search_interval``
epochs, beam search at test. Its ASR branch (:class:`ASRBranch`) is what the multi-task system
(:class:`topic_id.training.multitask.MultitaskBrain`) shares with it. The output units are
:class:`topic_id.training.asr_tokenizer.Tokenizer`'s; a trained run transcribes manifests through
:mod:`topic_id.training.transcription`.
"""

import csv
from pathlib import Path

import speechbrain as sb
import torch

from corpus_tools.files import atomic_write
from data_prep.prepared import read_manifest
from topic_id.models.encoders import encode_frames
from topic_id.models.piecewise_decoding import segment_limit
from topic_id.training import metrics
from topic_id.training.aligned_rows import long_training_counts
from topic_id.training.base import BaseBrain
from topic_id.training.transcription import audio_fingerprint, decode


class ASRBranch(BaseBrain):
    """The ASR branch on an encoder's frames: decoder and CTC forward, loss, WER/CER, hypotheses.

    A Brain with an ASR derives from it and calls :meth:`asr_forward` on its encoder's output
    frames and :meth:`asr_loss` in its objectives; its evaluation passes then record references
    and hypotheses, and its metrics gain WER and CER. :meth:`write_hyps` writes the hypotheses.
    """

    def asr_forward(self, encoded, lens, batch, stage):
        """The ASR branch on encoder frames [B, T', D] with relative lengths ``lens``."""
        tokens_bos, _ = batch.tokens_bos
        decoded, _ = self.modules.decoder(self.modules.embedding(tokens_bos), encoded, lens)
        out = {"p_seq": torch.log_softmax(self.modules.seq_lin(decoded), dim=-1), "lens": lens}
        if stage == sb.Stage.TRAIN:
            if self.hparams.epoch_counter.current <= self.hparams.number_of_ctc_epochs:
                out["p_ctc"] = torch.log_softmax(self.modules.ctc_lin(encoded), dim=-1)
        elif stage == sb.Stage.TEST:
            out["words"] = self.test_hypotheses(encoded, lens, batch)
        elif self.search_on_dev():
            out["hyps"] = self.hparams.greedy_search(encoded, lens)[0]
        return out

    def test_hypotheses(self, encoded, lens, batch):
        """Beam-search words of a test batch, decoded as transcription decodes it.

        A batch within the segment limit (:func:`~topic_id.models.piecewise_decoding.segment_limit`)
        is decoded whole from the encoder frames at hand; one with a longer recording goes through
        long-form :func:`~topic_id.training.transcription.decode`, so the WER the run reports is
        that of the text the pipeline rows read.
        """
        if getattr(self, "_segment_limit", None) is None:
            self._segment_limit = segment_limit(vars(self.hparams), self.hparams.output_folder)
        wavs, wav_lens = batch.sig
        samples = (wav_lens * wavs.shape[1]).round().long().tolist()
        if all(n <= self._segment_limit * self.hparams.sample_rate for n in samples):
            return [self.hparams.tokenizer.words(h) for h in self.hparams.beam_search(encoded, lens)[0]]
        signals = [wav[:n] for wav, n in zip(wavs, samples)]
        return decode(vars(self.hparams), signals, self.device, self._segment_limit)

    def search_on_dev(self):
        """Whether this epoch's dev pass decodes (every ``valid_search_interval`` epochs and the last).

        Greedy decoding of dev is a large share of a small ASR's epoch; an epoch without it logs the
        dev loss only, and its checkpoint, having no WER, is no candidate for selection by WER.
        """
        epoch = self.hparams.epoch_counter.current
        return epoch % self.hparams.valid_search_interval == 0 or epoch >= self.hparams.number_of_epochs

    def asr_loss(self, outputs, batch, stage):
        """Attention NLL (label smoothing), mixed with CTC while CTC trains.

        CTC enters the training loss only, so the dev loss that anneals the LR measures the same
        thing before and after ``number_of_ctc_epochs``.
        """
        tokens_eos, eos_lens = batch.tokens_eos
        loss = self.hparams.seq_cost(outputs["p_seq"], tokens_eos, length=eos_lens)
        if "p_ctc" in outputs:
            tokens, token_lens = batch.tokens
            ctc = self.hparams.ctc_cost(outputs["p_ctc"], tokens, outputs["lens"], token_lens)
            loss = self.hparams.ctc_weight * ctc + (1 - self.hparams.ctc_weight) * loss
        if "words" in outputs:
            self.records["ref"].extend(batch.words)
            self.records["hyp"].extend(outputs["words"])
        elif "hyps" in outputs:
            self.records["ref"].extend(batch.words)
            self.records["hyp"].extend(self.hparams.tokenizer.words(h) for h in outputs["hyps"])
        return loss

    def stage_metrics(self, stage_loss):
        """The parent's metrics of the evaluation pass, then its WER and CER (percent) when it decoded."""
        stats = super().stage_metrics(stage_loss)
        if self.records["hyp"]:
            stats.update(metrics.error_rates(self.records["ref"], self.records["hyp"]))
        return stats

    def write_hyps(self, results):
        """Write ``hyps_<split>.csv`` (ID, reference, beam-search hypothesis) of each split.

        ``hyps.json`` records the checkpoint that decoded them and which audio each split held, so
        :func:`~topic_id.training.transcription.transcribe` can take these hypotheses instead of
        decoding the same audio again.
        """
        from topic_id.training.transfer import best_checkpoint

        ckpt = best_checkpoint(self.hparams.output_folder, self.hparams.ckpt_select)
        record = {"checkpoint": str(Path(ckpt.path).resolve()), "audio": {}}
        for split in results:
            record["audio"][split] = audio_fingerprint(read_manifest(getattr(self.hparams, f"{split}_csv")))
        for split, result in results.items():
            records = result["records"]
            path = Path(self.hparams.output_folder) / f"hyps_{split}.csv"
            with atomic_write(path, newline="") as f:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(["ID", "ref", "hyp"])
                writer.writerows(zip(records["id"], records["ref"], records["hyp"]))
        metrics.write_json(Path(self.hparams.output_folder) / "hyps.json", record)


def wer_by_duration(records, durations, seconds):
    """WER of the recordings up to ``seconds`` long and of the longer ones, apart.

    Short and long recordings fail differently (a long one is decoded in pieces, and the ASR saw
    few of its length in training), so one corpus-level WER hides which of them it misses.

    Arguments
    ---------
    records : dict
        ``id``, ``ref`` and ``hyp`` lists of an evaluation pass.
    durations : dict
        ``{ID: seconds}`` of the split's recordings.
    seconds : float
        The split point.

    Returns
    -------
    dict
        ``wer_short`` and ``wer_long`` (None where there is no such recording), ``rows_short``,
        ``rows_long`` and ``wer_split_seconds``.

    Example
    -------
    >>> records = {"id": ["a", "b"], "ref": ["kissa istuu", "koira"], "hyp": ["kissa istuu", "kissa"]}
    >>> wer_by_duration(records, {"a": 3.0, "b": 12.0}, 10.0)
    {'wer_short': 0.0, 'wer_long': 100.0, 'rows_short': 1, 'rows_long': 1, 'wer_split_seconds': 10.0}
    """
    out = {}
    for name, keep in (("short", lambda d: d <= seconds), ("long", lambda d: d > seconds)):
        picked = [(r, h) for i, r, h in zip(records["id"], records["ref"], records["hyp"]) if keep(durations[i])]
        out[f"wer_{name}"] = metrics.error_rates(*zip(*picked))["wer"] if picked else None
        out[f"rows_{name}"] = len(picked)
    out = {k: out[k] for k in ("wer_short", "wer_long", "rows_short", "rows_long")}
    out["wer_split_seconds"] = float(seconds)
    return out


class ASRBrain(ASRBranch):
    """CRDNN encoder + attentional decoder + CTC; evaluates WER/CER and keeps the hypotheses."""

    def dev_pass_due(self, epoch):
        """Whether epoch ``epoch`` ends with a dev pass: every ``valid_interval`` epochs, at every
        decoding epoch (:meth:`search_on_dev`) and at the last.

        Example
        -------
        >>> from types import SimpleNamespace
        >>> brain = ASRBrain.__new__(ASRBrain)
        >>> brain.hparams = SimpleNamespace(valid_interval=5, valid_search_interval=40, number_of_epochs=42)
        >>> [e for e in range(1, 43) if brain.dev_pass_due(e)]
        [5, 10, 15, 20, 25, 30, 35, 40, 42]
        """
        return (epoch % self.hparams.valid_interval == 0
                or epoch % self.hparams.valid_search_interval == 0 or epoch >= self.hparams.number_of_epochs)

    def _fit_valid(self, valid_set, epoch, enable):
        """The dev pass when :meth:`dev_pass_due`; otherwise log the training loss and checkpoint.

        On a small corpus whose dev set holds long recordings the dev loss is a fifth of an epoch;
        the learning rate then anneals on the dev passes that run. The checkpoint of an epoch
        without one carries no metric, so a resumed run loses nothing and selection never picks it.
        """
        if self.dev_pass_due(epoch):
            return super()._fit_valid(valid_set, epoch, enable)
        self.hparams.train_logger.log_stats(
            {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}, train_stats=self.train_stats)
        self.save_epoch_checkpoint({})
        return None

    def compute_forward(self, batch, stage):
        """Decoder log-probabilities; CTC log-probabilities while CTC trains; hypotheses in eval."""
        batch = batch.to(self.device)
        encoded, lens = encode_frames(self.modules.audio_encoder, *self.audio_features(batch, stage))
        return self.asr_forward(encoded, lens, batch, stage)

    def compute_objectives(self, outputs, batch, stage):
        """The ASR loss (:meth:`asr_loss`)."""
        return self.asr_loss(outputs, batch, stage)

    def write_outputs(self, results, labels):
        """Write ``metrics.json`` (WER/CER per split, and apart for short and long recordings:
        :func:`wer_by_duration`; what training did with its long recordings:
        :func:`~topic_id.training.aligned_rows.long_training_counts`; parameter count) and
        ``hyps_<split>.csv``.

        Arguments
        ---------
        results : dict
            ``{split: self.eval_result}`` for dev and test.
        labels : CategoricalEncoder
            Unused: the ASR predicts no topic.
        """
        self.write_hyps(results)
        summary = {split: result["metrics"] for split, result in results.items()}
        for split, result in results.items():
            durations = {r["ID"]: float(r["duration"]) for r in read_manifest(getattr(self.hparams, f"{split}_csv"))}
            summary[split].update(wer_by_duration(result["records"], durations, self.hparams.wer_split_seconds))
        summary["long_training"] = long_training_counts(vars(self.hparams))
        summary["params"] = sum(p.numel() for p in self.modules.parameters())
        summary["trainable_params"] = sum(
            p.numel() for p in self.modules.parameters() if p.requires_grad
        )
        summary["tokenizer"] = str(self.hparams.tokenizer.model_file)
        summary["decoding"] = {"dev": "beam", "test": "beam", "beam_size": self.hparams.beam_search.beam_size}
        metrics.write_json(Path(self.hparams.output_folder) / "metrics.json", summary)
