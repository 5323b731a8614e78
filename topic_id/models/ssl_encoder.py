"""The wav2vec2 audio encoder of the Wav2vec2 system, loaded offline.

The paper fine-tuned ``facebook/wav2vec2-xls-r-300m`` (Sec. III-B; no recipe was published).
:class:`Wav2Vec2` is SpeechBrain's Hugging Face integration
(``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``) with four changes:

- the source is resolved by :func:`topic_id.models.hub.resolve_model` (a folder in Hugging Face format,
  or a hub id in the local Hugging Face cache, fetched only with ``hub_download=True``);
  SpeechBrain would otherwise ask the hub about any id it has not cached itself and fail deep in
  ``huggingface_hub`` when offline. A missing model raises :class:`topic_id.models.hub.ModelNotFound`
  naming it and saying how to provide it;
- each waveform is normalised to zero mean and unit variance over its own samples, as the model's
  feature extractor does (SpeechBrain's integration normalises the zero-padded batch as a whole, so
  a short utterance's input depended on its batch);
- it returns its output frames with their exact relative lengths (the frame counts of the
  convolutional feature encoder), so pooling uses real frames only.
- ``freeze_feature_extractor`` also calls Hugging Face's ``freeze_feature_encoder()``: SpeechBrain
  only clears the parameters' ``requires_grad``, and the encoder then still marks its input as
  needing grad in training, so autograd kept all seven conv layers' activations (about 8 GB for
  XLS-R at 200 s batches) for a backward pass that updates nothing.

The stand-in of the tests and the demo (:func:`topic_id.standins.wav2vec2.build_standin`) and
pretrained ones (:mod:`topic_id.standins.pretrain`) load through the same code path and are named
stand-ins wherever they appear (:attr:`Wav2Vec2.name`, ``metrics.json``).
"""

import logging

import torch
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2 as _SBWav2Vec2

from topic_id.models.encoders import normalize_utterances
from topic_id.models.hub import WAV2VEC2, resolve_model
from topic_id.models.nnet import absolute_lengths, length_mask

logger = logging.getLogger(__name__)


class Wav2Vec2(_SBWav2Vec2):
    """A Hugging Face wav2vec2 fine-tuned in SpeechBrain, loaded offline, padding-aware.

    Arguments
    ---------
    source : str
        Hub id (from the local cache) or local directory.
    save_path : str
        SpeechBrain's download folder (unused for local sources).
    revision : str, optional
        Revision of a hub id.
    hub_download : bool
        Fetch a hub id that is not in the local Hugging Face cache (off: runs are offline).
    hf_cache_dir : str, optional
        Hugging Face hub cache to look in (default ``HF_HUB_CACHE``).
    freeze : bool
        Freeze the whole model (feature extraction only).
    freeze_feature_extractor : bool
        Freeze only the convolutional feature encoder (the usual fine-tuning setting), through
        Hugging Face's ``freeze_feature_encoder()``: no gradient and no activations kept for one.
    apply_spec_augment : bool
        The model's own time masking during training (``mask_time_prob`` of its config).
    layerdrop : float, optional
        Probability of skipping a transformer layer in training; None keeps the config's value.
        Under DDP a non-zero value needs ``--find_unused_parameters``.
    utterance_norm : bool
        Normalise the convolutional features of each utterance over its own real frames (zero
        mean, unit variance per channel) before the transformer: what ``utterance_norm`` does to
        the CRDNN's filterbanks, for corpora with few training voices (not in the paper).

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from topic_id.standins.wav2vec2 import build_standin
    >>> folder = build_standin(Path(tempfile.mkdtemp()) / "w2v", hidden_size=16, num_layers=1,
    ...                        num_heads=2, intermediate_size=16, conv_dim=8)
    >>> enc = Wav2Vec2(str(folder), save_path=str(folder)).eval()
    >>> frames, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> frames.shape, lens.tolist(), enc.dim
    (torch.Size([2, 49, 16]), [1.0, 0.4897959232330322], 16)
    """

    def __init__(self, source, save_path, revision=None, hub_download=False, hf_cache_dir=None,
                 freeze=False, freeze_feature_extractor=False, apply_spec_augment=False,
                 layerdrop=None, utterance_norm=False):
        path, self.name = resolve_model(source, revision, hub_download, hf_cache_dir, WAV2VEC2)
        self.layerdrop = layerdrop
        self._frames = None
        super().__init__(
            str(path),
            save_path=str(save_path),
            freeze=freeze,
            freeze_feature_extractor=freeze_feature_extractor,
            apply_spec_augment=apply_spec_augment,
        )
        if freeze_feature_extractor and not freeze:
            # SpeechBrain only clears requires_grad; Hugging Face's encoder still marks its input
            # as needing grad in training, so every conv layer's activations were kept for backward.
            self.model.freeze_feature_encoder()
        if not apply_spec_augment and hasattr(self.model, "masked_spec_embed"):
            # Only time masking uses it; a trainable parameter without gradients would stall DDP.
            self.model.masked_spec_embed.requires_grad_(False)
        if utterance_norm:
            # The convolutional features enter the transformer through feature_projection; the
            # real frame counts of the batch are set by extract_features just before the call.
            self.model.feature_projection.register_forward_pre_hook(
                lambda module, args: (normalize_utterances(args[0], self._frames),)
            )
        logger.info("loaded audio encoder %s", self.name)

    @property
    def dim(self):
        """Width of the output frames: the model's hidden size, from its config (no forward pass)."""
        return int(self.model.config.hidden_size)

    def override_config(self, config):
        """SpeechBrain's hook on the loaded config: apply ``layerdrop`` when given."""
        if self.layerdrop is not None:
            config.layerdrop = self.layerdrop
        return config

    def extract_features(self, wav, wav_lens=None):
        """Encode a padded batch of waveforms [B, S].

        Arguments
        ---------
        wav : torch.Tensor
            Waveforms at the model's rate (16 kHz), zero-padded.
        wav_lens : torch.Tensor, optional
            Relative lengths [B].

        Returns
        -------
        tuple
            ``(frames [B, T, D], relative frame lengths [B])``.
        """
        if wav_lens is None:
            wav_lens = torch.ones(wav.shape[0], device=wav.device)
        samples = absolute_lengths(wav_lens, wav.shape[1])
        mask = length_mask(wav_lens, wav.shape[1], device=wav.device)
        if self.normalize_wav:
            # Per utterance over its own samples, as Wav2Vec2FeatureExtractor(do_normalize=True).
            real = mask.to(wav.dtype)
            count = real.sum(dim=1, keepdim=True)
            mean = (wav * real).sum(dim=1, keepdim=True) / count
            var = (((wav - mean) ** 2) * real).sum(dim=1, keepdim=True) / count
            wav = (wav - mean) / torch.sqrt(var + 1e-7) * real
        n_frames = int(self.model._get_feat_extract_output_lengths(torch.tensor(wav.shape[1])))
        frames = self.model._get_feat_extract_output_lengths(samples).clamp(min=1, max=n_frames)
        self._frames = frames
        out = self.model(wav, attention_mask=mask.long()).last_hidden_state
        return out, frames.float() / out.shape[1]
