"""The pretrained speech encoder of the SSL row (Wav2vec2 in Table I), loaded offline.

The paper fine-tuned ``facebook/wav2vec2-xls-r-300m`` (Sec. III-B; no recipe was published).
:class:`SSLEncoder` takes any Hugging Face speech encoder of two families:

- **wav2vec2-like** (wav2vec2, XLS-R, MMS, HuBERT, WavLM, data2vec-audio, UniSpeech, SEW, ...:
  ``AutoModel`` with ``input_values``): a raw waveform in, a convolutional feature encoder at 20 ms
  frames. Output frame counts come from the model (``_get_feat_extract_output_lengths``). The
  attention mask is passed except to models whose feature encoder uses group normalisation
  (``feat_extract_norm == "group"``, wav2vec2-base and HuBERT-base): Hugging Face documents that
  these were trained without one and must get zero-padded input and no mask; their padded frames
  then do depend a little on the batch, as the group norm of the first layer spans the padding;
- **Whisper's encoder** (``WhisperModel(...).encoder``, its ``WhisperFeatureExtractor``'s log-mel
  input): the encoder takes exactly 30 s (``chunk_length`` of the feature extractor), padded, as
  it was trained; that padding is kept (trimming it would feed the encoder inputs it never saw),
  and the real frames are counted: ``ceil(mel frames / 2)``, the mel frames being
  ``ceil(samples / hop)``. A longer utterance is encoded as consecutive 30 s pieces whose frames
  are concatenated, so the output is a 50 frames/s sequence of any length. As each piece is
  padded to 30 s alone, an utterance's frames do not depend on its batch.

What the row does with it, compared with SpeechBrain's Hugging Face integration
(``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``, which this class replaced, keeping
its checkpoint keys, ``model.*``):

- the source is resolved by :func:`topic_id.models.hub.resolve_model` (a folder in Hugging Face format,
  or a hub id in the local Hugging Face cache, fetched only with ``hub_download=True``);
  SpeechBrain would otherwise ask the hub about any id it has not cached itself and fail deep in
  ``huggingface_hub`` when offline. A missing model raises :class:`topic_id.models.hub.ModelNotFound`
  naming it and saying how to provide it;
- each waveform is normalised to zero mean and unit variance over its own samples where the
  model's feature extractor normalises (``do_normalize``; SpeechBrain's integration normalised the
  zero-padded batch as a whole, so a short utterance's input depended on its batch);
- it returns its output frames with their exact relative lengths, so pooling uses real frames only;
- ``freeze_feature_extractor`` freezes the convolutional front end through Hugging Face's
  ``freeze_feature_encoder()``: clearing ``requires_grad`` alone leaves the encoder marking its
  input as needing grad in training, so autograd kept all seven conv layers' activations (about
  8 GB for XLS-R at 200 s batches) for a backward pass that updates nothing;
- ``layers`` picks what it returns: the last layer (``last``, the paper's fine-tuning), one hidden
  state by index (0: the transformer's input), or a learned softmax-weighted sum of all hidden
  states (``weighted``: SUPERB's protocol, Yang et al. 2021, as SpeechBrain's ``WeightedSSLModel``
  but with the attention mask and frame lengths above). The hidden states are those Hugging Face
  returns (``output_hidden_states``): the transformer's input and each layer's output;
- ``freeze`` keeps the whole pretrained model fixed and in eval mode (no dropout, even while the
  rest of the system trains), encoded without autograd: with ``weighted``, the layer weights are
  then the only parameters that train (:meth:`SSLEncoder.pretrained_parameters` leaves them out,
  so they train with the head, at its rate).

The stand-in of the tests and the demo (:func:`topic_id.standins.wav2vec2.build_standin`) and
pretrained ones (:mod:`topic_id.standins.pretrain`) load through the same code path and are named
stand-ins wherever they appear (:attr:`SSLEncoder.name`, ``metrics.json``).
"""

import contextlib
import logging
import math

import torch

from topic_id.errors import ConfigError
from topic_id.models.encoders import normalize_utterances
from topic_id.models.hub import SSL_ENCODER, load_config, resolve_model
from topic_id.models.nnet import absolute_lengths, length_mask

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
LAYER_CHOICES = ("last", "weighted", "<index>")


def parse_layers(layers, n_hidden=None):
    """``last``, ``weighted`` or a hidden-state index (an int, or its text), checked.

    Arguments
    ---------
    layers : str or int
        The ``ssl_layers`` setting.
    n_hidden : int, optional
        Hidden states of the model (layers + 1), to check an index against.

    Returns
    -------
    str or int

    Example
    -------
    >>> parse_layers("weighted"), parse_layers("3"), parse_layers(-1, n_hidden=13)
    ('weighted', 3, -1)
    >>> parse_layers(13, n_hidden=13)
    Traceback (most recent call last):
    ...
    topic_id.errors.ConfigError: ssl_layers=13: the model has hidden states 0 to 12 (or -13 to -1)
    """
    if isinstance(layers, str) and layers.strip().lstrip("-").isdigit():
        layers = int(layers)
    if isinstance(layers, bool) or not isinstance(layers, (str, int)) or (
            isinstance(layers, str) and layers not in ("last", "weighted")):
        raise ConfigError(f"ssl_layers must be last, weighted or a hidden-state index, not {layers!r}")
    if isinstance(layers, int) and n_hidden is not None and not -n_hidden <= layers < n_hidden:
        raise ConfigError(f"ssl_layers={layers}: the model has hidden states 0 to {n_hidden - 1} "
                          f"(or {-n_hidden} to -1)")
    return layers


def normalize_waveforms(wav, mask):
    """Each waveform [B, S] to zero mean and unit variance over its real samples; padding stays 0.

    As ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does to each utterance.

    Example
    -------
    >>> wav = torch.tensor([[1.0, 3.0, 0.0], [1.0, 2.0, 3.0]])
    >>> normalize_waveforms(wav, torch.tensor([[True, True, False], [True, True, True]])).round(decimals=3) + 0.0
    tensor([[-1.0000,  1.0000,  0.0000],
            [-1.2250,  0.0000,  1.2250]])
    """
    real = mask.to(wav.dtype)
    count = real.sum(dim=1, keepdim=True)
    mean = (wav * real).sum(dim=1, keepdim=True) / count
    var = (((wav - mean) ** 2) * real).sum(dim=1, keepdim=True) / count
    return (wav - mean) / torch.sqrt(var + 1e-7) * real


class SSLEncoder(torch.nn.Module):
    """A Hugging Face speech encoder (wav2vec2-like or Whisper's), loaded offline, padding-aware.

    Arguments
    ---------
    source : str
        Hub id (from the local cache) or local directory.
    save_path : str, optional
        Unused (SpeechBrain's download folder once; accepted so that older YAMLs load).
    revision : str, optional
        Revision of a hub id.
    hub_download : bool
        Fetch a hub id that is not in the local Hugging Face cache (off: runs are offline).
    layers : str or int
        ``last`` (the last layer's output), ``weighted`` (a learned softmax-weighted sum of all
        hidden states) or the index of one hidden state (0: the transformer's input).
    freeze : bool
        Keep the pretrained model fixed, in eval mode, run without autograd.
    freeze_feature_extractor : bool
        Freeze only the convolutional front end (the usual fine-tuning setting): no gradient and
        no activations kept for one.
    apply_spec_augment : bool
        The model's own time masking during training (``mask_time_prob`` of its config;
        wav2vec2-like models only).
    layerdrop : float, optional
        Probability of skipping a transformer layer in training; None keeps the config's value.
        Under DDP a non-zero value needs ``--find_unused_parameters``.
    utterance_norm : bool
        Normalise the convolutional features of each utterance over its own real frames (zero
        mean, unit variance per channel) before the transformer: what ``utterance_norm`` does to
        the CRDNN's filterbanks, for corpora with few training voices (not in the paper;
        wav2vec2-like models only).
    hf_cache_dir : str, optional
        Hugging Face hub cache to look in (default ``HF_HUB_CACHE``).

    Example
    -------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from topic_id.standins.wav2vec2 import build_standin
    >>> folder = build_standin(Path(tempfile.mkdtemp()) / "w2v", hidden_size=16, num_layers=1,
    ...                        num_heads=2, intermediate_size=16, conv_dim=8)
    >>> enc = SSLEncoder(str(folder)).eval()
    >>> frames, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> frames.shape, lens.tolist(), enc.output_size
    (torch.Size([2, 49, 16]), [1.0, 0.4897959232330322], 16)
    >>> frozen = SSLEncoder(str(folder), layers="weighted", freeze=True)
    >>> [name for name, p in frozen.named_parameters() if p.requires_grad]
    ['layer_weights']
    """

    def __init__(self, source, save_path=None, revision=None, hub_download=False, layers="last",
                 freeze=False, freeze_feature_extractor=True, apply_spec_augment=False,
                 layerdrop=None, utterance_norm=False, hf_cache_dir=None):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel, WhisperModel

        path, self.name = resolve_model(source, revision, hub_download, hf_cache_dir, SSL_ENCODER)
        config = load_config(path, source, SSL_ENCODER)
        self.whisper = config.model_type == "whisper"
        if layerdrop is not None:
            config.update({"encoder_layerdrop" if self.whisper else "layerdrop": layerdrop})
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
        rate = getattr(self.feature_extractor, "sampling_rate", SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ConfigError(f"the SSL encoder {self.name} takes {rate} Hz audio; this row feeds it "
                              f"{SAMPLE_RATE} Hz (give a 16 kHz model as ssl_source)")
        if self.whisper:
            if apply_spec_augment or utterance_norm:
                raise ConfigError(f"{self.name} is a Whisper encoder: apply_spec_augment and utterance_norm "
                                  "act on a wav2vec2-like model's convolutional features; set them False")
            self.model = WhisperModel.from_pretrained(path, config=config, dtype=torch.float32,
                                                      local_files_only=True).encoder
            self._check_whisper_input()
        else:
            self.model = AutoModel.from_pretrained(path, config=config, dtype=torch.float32,
                                                   local_files_only=True)
            if self.model.main_input_name != "input_values" or not hasattr(
                    self.model, "_get_feat_extract_output_lengths"):
                raise ConfigError(f"the SSL encoder {self.name} ({config.model_type}) takes "
                                  f"{self.model.main_input_name}, not a waveform: give a wav2vec2-like "
                                  "model (wav2vec2, HuBERT, WavLM, data2vec-audio, ...) or a Whisper")
            self.model.config.apply_spec_augment = apply_spec_augment
        # wav2vec2-base-style models (group norm in the first conv layer) were trained on
        # zero-padded batches without a mask; passing one degrades them (Hugging Face's docs).
        self.use_attention_mask = not self.whisper and getattr(config, "feat_extract_norm", "layer") != "group"
        self.normalize_wav = bool(getattr(self.feature_extractor, "do_normalize", False))
        self.utterance_norm = utterance_norm
        self.freeze = bool(freeze)
        self.n_hidden = int(config.encoder_layers if self.whisper else config.num_hidden_layers) + 1
        self.layers = parse_layers(layers, self.n_hidden)
        if self.freeze:
            self.model.eval()
            self.model.requires_grad_(False)
        else:
            # Required by DDP (gradient_checkpointing_disable in transformers before 5).
            getattr(self.model, "activation_checkpointing_disable", self.model.gradient_checkpointing_disable)()
            self.model.train()
            if freeze_feature_extractor:
                self._freeze_front_end()
            if not apply_spec_augment and hasattr(self.model, "masked_spec_embed"):
                # Only time masking uses it; a trainable parameter without gradients would stall DDP.
                self.model.masked_spec_embed.requires_grad_(False)
        if self.layers == "weighted":
            # Zeros: the sum starts as the plain mean of the hidden states (SUPERB's start).
            self.layer_weights = torch.nn.Parameter(torch.zeros(self.n_hidden))
        self._frames = None
        if utterance_norm:
            # The convolutional features enter the transformer through feature_projection; the
            # real frame counts of the batch are set by the forward pass just before the call.
            self.model.feature_projection.register_forward_pre_hook(
                lambda module, args: (normalize_utterances(args[0], self._frames),)
            )
        logger.info("loaded SSL encoder %s (layers: %s, %s)", self.name, self.layers,
                    "frozen" if self.freeze else "fine-tuned")

    def _check_whisper_input(self):
        conv = self.model.conv1.stride[0] * self.model.conv2.stride[0]
        expected = self.model.config.max_source_positions * conv
        if self.feature_extractor.nb_max_frames != expected:
            raise ConfigError(f"{self.name}: its feature extractor makes {self.feature_extractor.nb_max_frames} "
                              f"mel frames per chunk but the encoder takes {expected} "
                              "(chunk_length of preprocessor_config.json and max_source_positions disagree)")

    def _freeze_front_end(self):
        """No gradient for the convolutional front end, and no activations kept for one."""
        if self.whisper:
            for conv in (self.model.conv1, self.model.conv2):
                conv.requires_grad_(False)
        elif hasattr(self.model, "freeze_feature_encoder"):
            self.model.freeze_feature_encoder()
        else:  # HuBERT's and WavLM's base models lack the method; their conv encoder has it
            self.model.feature_extractor._freeze_parameters()

    @property
    def output_size(self):
        """Width of the output frames: the model's hidden size, from its config (no forward pass)."""
        return int(self.model.config.hidden_size)

    @property
    def dim(self):
        """The older name of :attr:`output_size`."""
        return self.output_size

    @property
    def frame_stride(self):
        """Input samples per output frame (320 for both families: 20 ms at 16 kHz)."""
        if self.whisper:
            return self.feature_extractor.hop_length * self.model.conv1.stride[0] * self.model.conv2.stride[0]
        return math.prod(self.model.config.conv_stride)

    def pretrained_parameters(self):
        """The parameters loaded from the checkpoint (the encoder's optimizer's): not the layer weights."""
        return self.model.parameters()

    def train(self, mode=True):
        """Set the training mode; a frozen model stays in eval mode (no dropout in its features)."""
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def forward(self, wav, wav_lens=None):
        """Encode a padded batch of 16 kHz waveforms [B, S].

        Arguments
        ---------
        wav : torch.Tensor
            Waveforms at 16 kHz, zero-padded.
        wav_lens : torch.Tensor, optional
            Relative lengths [B].

        Returns
        -------
        tuple
            ``(frames [B, T, D], relative frame lengths [B])``.
        """
        if wav_lens is None:
            wav_lens = torch.ones(wav.shape[0], device=wav.device)
        all_hidden = self.layers != "last"
        with torch.no_grad() if self.freeze else contextlib.nullcontext():
            encode = self._whisper if self.whisper else self._wav2vec2
            hidden, frames = encode(wav, wav_lens, all_hidden)
        if self.layers == "weighted":
            if len(hidden) != self.n_hidden:
                raise RuntimeError(f"{self.name} returned {len(hidden)} hidden states, not {self.n_hidden}")
            weights = torch.softmax(self.layer_weights, dim=0).to(hidden[0].dtype)
            out = sum(w * h for w, h in zip(weights, hidden))
        elif all_hidden:
            out = hidden[self.layers]
        else:
            out = hidden
        return out, frames.float() / out.shape[1]

    def _wav2vec2(self, wav, wav_lens, all_hidden):
        """A wav2vec2-like model: the last hidden state or all of them, and the real frame counts."""
        samples = absolute_lengths(wav_lens, wav.shape[1])
        mask = length_mask(wav_lens, wav.shape[1], device=wav.device)
        if self.normalize_wav:
            # Per utterance over its own samples, as Wav2Vec2FeatureExtractor(do_normalize=True).
            wav = normalize_waveforms(wav, mask)
        n_frames = int(self.model._get_feat_extract_output_lengths(torch.tensor(wav.shape[1])))
        frames = self.model._get_feat_extract_output_lengths(samples).clamp(min=1, max=n_frames)
        self._frames = frames
        out = self.model(wav, attention_mask=mask.long() if self.use_attention_mask else None,
                         output_hidden_states=all_hidden)
        return (out.hidden_states if all_hidden else out.last_hidden_state), frames

    def _whisper(self, wav, wav_lens, all_hidden):
        """Whisper's encoder over consecutive 30 s pieces, each padded alone (module docstring)."""
        extractor = self.feature_extractor
        piece = extractor.n_samples
        samples = absolute_lengths(wav_lens, wav.shape[1]).tolist()
        if self.normalize_wav:
            wav = normalize_waveforms(wav, length_mask(wav_lens, wav.shape[1], device=wav.device))
        n_pieces = max(1, -(-wav.shape[1] // piece))
        # Only pieces that hold real samples are encoded; the others are padding frames.
        jobs = [(b, k) for b in range(wav.shape[0]) for k in range(n_pieces) if k * piece < samples[b]]
        audio = [wav[b, k * piece:min((k + 1) * piece, samples[b])].detach().float().cpu().numpy()
                 for b, k in jobs]
        mel = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                        device=wav.device.type).input_features.to(wav.device, wav.dtype)
        out = self.model(mel, output_hidden_states=all_hidden)
        states = out.hidden_states if all_hidden else (out.last_hidden_state,)
        per_piece = self.model.config.max_source_positions
        index = torch.tensor([b * n_pieces + k for b, k in jobs], device=wav.device)
        hidden = []
        for state in states:
            full = state.new_zeros(wav.shape[0] * n_pieces, per_piece, state.shape[-1])
            full = full.index_copy(0, index, state)
            hidden.append(full.view(wav.shape[0], n_pieces * per_piece, state.shape[-1]))
        conv = self.model.conv1.stride[0] * self.model.conv2.stride[0]
        frames = []
        for n in samples:
            full, rest = divmod(n, piece)
            tail = -(-(-(-rest // extractor.hop_length)) // conv)  # ceil(ceil(rest / hop) / conv)
            frames.append(max(1, full * per_piece + tail))
        frames = torch.tensor(frames, device=wav.device)
        return (tuple(hidden) if all_hidden else hidden[0]), frames


class Wav2Vec2(SSLEncoder):
    """The older name and defaults of :class:`SSLEncoder` (``freeze_feature_extractor`` off), for
    YAMLs and exports written before it took other encoders.

    Arguments
    ---------
    source, save_path, revision, hub_download, hf_cache_dir, freeze, freeze_feature_extractor,
    apply_spec_augment, layerdrop, utterance_norm, layers
        As :class:`SSLEncoder`.
    """

    def __init__(self, source, save_path=None, revision=None, hub_download=False, hf_cache_dir=None,
                 freeze=False, freeze_feature_extractor=False, apply_spec_augment=False,
                 layerdrop=None, utterance_norm=False, layers="last"):
        super().__init__(source, save_path=save_path, revision=revision, hub_download=hub_download,
                         layers=layers, freeze=freeze, freeze_feature_extractor=freeze_feature_extractor,
                         apply_spec_augment=apply_spec_augment, layerdrop=layerdrop,
                         utterance_norm=utterance_norm, hf_cache_dir=hf_cache_dir)
