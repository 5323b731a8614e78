"""The multi-task system's first stage: joint ASR and topic training (paper Sec. III-C, Fig. 1e).

One CRDNN encoder feeds both tasks (hard parameter sharing): the ASR branch
(:class:`topic_id.training.asr.ASRBranch`, as the ASR's) on its output frames, and the topic head on [masked time mean of
the same frames ‖ text-encoder vector of the manual transcript], as in the paper's stage 1. The
loss is ``topic_loss_weight`` * topic NLL + ``asr_loss_weight`` * ASR loss (paper: equal weights).
Stage 2 is an ordinary :class:`topic_id.training.brains.TopicBrain` run of ``hparams/hybrid_crdnn.yaml``,
initialised from this stage's best checkpoint and reading this stage's own ASR transcripts
(recipes/systems.csv).
"""

import torch

from topic_id.models.encoders import encode_frames
from topic_id.training.asr import ASRBranch
from topic_id.training.brains import TopicBrain


class MultitaskBrain(ASRBranch, TopicBrain):
    """The ASR branch and a topic head on one encoder; evaluates topic metrics and WER/CER.

    Everything else is inherited: the ASR branch, its loss and WER/CER from :class:`ASRBranch`,
    the topic loss, metrics and outputs from :class:`TopicBrain`, checkpoint selection
    (``ckpt_select``: ``wer`` as the paper, or ``micro_f1``) from their common base.
    """

    def compute_forward(self, batch, stage):
        """ASR outputs and topic log-posteriors from one encoder pass."""
        batch = batch.to(self.device)
        encoded, lens = encode_frames(self.modules.audio_encoder, *self.audio_features(batch, stage))
        out = self.asr_forward(encoded, lens, batch, stage)
        # The topic head sees the frames only through their mean over real frames; the text is
        # the manual transcript's, as in the paper's stage 1 (an oracle input, so this stage's
        # topic metrics are a diagnostic; the system's are stage 2's, on its own ASR text).
        audio = self.modules.audio_pool(encoded, lens)
        out.update(self.classify(torch.cat([audio, self.text_embedding(batch)], dim=-1)))
        return out

    def compute_objectives(self, outputs, batch, stage):
        """Weighted sum of the topic NLL and the ASR loss."""
        return self.hparams.topic_loss_weight * self.topic_loss(
            outputs, batch, stage
        ) + self.hparams.asr_loss_weight * self.asr_loss(outputs, batch, stage)

    def write_outputs(self, results, labels):
        """TopicBrain's outputs (``metrics.json`` then also holds WER/CER) and ``hyps_<split>.csv``.

        Arguments
        ---------
        results : dict
            ``{split: self.eval_result}`` for dev and test.
        labels : CategoricalEncoder
            The label order.
        """
        super().write_outputs(results, labels)
        self.write_hyps(results)
