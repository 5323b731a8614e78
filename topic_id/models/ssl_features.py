"""The audio front end of the CRDNN and TDNN systems: filter banks, or a pretrained speech encoder's layers.

The paper's systems read 40 log-mel filter banks; its conclusion (Sec. V) plans "to replace the
filter banks with features extracted from a pre-trained self-supervised model". ``features: ssl``
does that for every filter-bank system: the encoder that read ``n_mels`` bands reads the hidden
states of a Hugging Face speech encoder (wav2vec2, HuBERT, WavLM, ...) instead, ``output_size``
wide, 50 frames/s. Which layers (``ssl_layers``):

- ``weighted``: a learned softmax-weighted sum of all hidden states (the input embedding and
  every transformer layer), as SpeechBrain's ``WeightedSSLModel``, over real frames only;
- ``last`` or a layer index (0 is the transformer's input, ``-1`` the last layer): that layer.

The encoder is frozen by default (``ssl_freeze``): its features then depend on the recording alone,
so they are computed once per recording and read from an on-disk cache
(:class:`SSLFeatureCache`), every layer for ``weighted`` (the sum is learned on top of the cache),
the one layer otherwise. ``ssl_freeze: False`` fine-tunes the encoder with the system, in the loop.

:func:`front_end` builds the pieces the system YAMLs reference (``hparams/modules/features.yaml``):
``compute_features`` (waveforms -> features), ``normalize`` (the trained part of the front end:
running mean/variance normalisation, preceded for SSL features by the layer weights and, when
fine-tuned, the encoder itself) and ``dim`` (the width the encoder reads). The module is named
``normalize`` in every system, so stage transfer (``init_modules``) carries the layer weights with
the normalisation statistics.
"""

import contextlib
import hashlib
import logging
import os
from pathlib import Path

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import InputNormalization

from topic_id.errors import ConfigError
from topic_id.models.embedding_cache import EmbeddingCache, model_fingerprint, setting_key
from topic_id.models.encoders import frame_lengths

logger = logging.getLogger(__name__)

KINDS = ("fbank", "ssl")
CACHE_FORMAT = 1


def front_end(kind, fbank, ssl):
    """Build the front end ``kind`` names; the other is never built.

    Arguments
    ---------
    kind : str
        ``fbank`` or ``ssl`` (the ``features`` key).
    fbank, ssl : callable
        :func:`fbank_front_end` and :func:`ssl_front_end` with their arguments bound.

    Returns
    -------
    dict
        ``compute_features``, ``normalize`` and ``dim``.

    Example
    -------
    >>> import functools
    >>> fe = front_end("fbank", functools.partial(fbank_front_end, n_mels=24), None)
    >>> type(fe["compute_features"]).__name__, type(fe["normalize"]).__name__, fe["dim"]
    ('Fbank', 'InputNormalization', 24)
    >>> front_end("mfcc", None, None)
    Traceback (most recent call last):
    ...
    topic_id.errors.ConfigError: features must be one of fbank, ssl, not 'mfcc'
    """
    if kind not in KINDS:
        raise ConfigError(f"features must be one of {', '.join(KINDS)}, not {kind!r}")
    return fbank() if kind == "fbank" else ssl()


def fbank_front_end(sample_rate=16000, n_fft=400, n_mels=40, norm_type="global", update_until_epoch=3):
    """SpeechBrain's ``Fbank`` and ``InputNormalization``: the paper's front end."""
    return {
        "compute_features": Fbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels),
        "normalize": InputNormalization(
            norm_type=norm_type, update_until_epoch=update_until_epoch),
        "dim": n_mels,
    }


def ssl_front_end(source, save_path, revision=None, hub_download=False, layers="weighted", freeze=True,
                  cache_dir=None, norm_type="global", update_until_epoch=3):
    """A pretrained speech encoder's hidden states, and the layer weights and normalisation over them.

    Arguments
    ---------
    source : str
        Hub id (in the local Hugging Face cache) or local model folder.
    save_path : str
        SpeechBrain's download folder (unused for local sources).
    revision : str, optional
        Revision of a hub id.
    hub_download : bool
        Fetch a hub id missing from the local cache.
    layers : str or int
        ``weighted``, ``last`` or a layer index.
    freeze : bool
        Frozen encoder, features cached in ``cache_dir``; False: fine-tuned in the loop.
    cache_dir : str, optional
        Where frozen features are cached (None: computed in the loop, every epoch).
    norm_type, update_until_epoch
        Of the ``InputNormalization`` over the (summed) features.

    Returns
    -------
    dict
        As :func:`front_end`.
    """
    extractor = SSLHiddenStates(source, save_path, revision=revision, hub_download=hub_download,
                                layers=layers, freeze=freeze, cache_dir=cache_dir)
    normalize = LayerMixNormalization(
        n_layers=extractor.n_layers if extractor.layers == "weighted" else None,
        encoder=None if freeze else extractor,
        norm_type=norm_type,
        update_until_epoch=update_until_epoch,
    )
    return {"compute_features": extractor, "normalize": normalize, "dim": extractor.output_size}


def build_encoder(source, save_path, revision=None, hub_download=False, layers="last", freeze=True):
    """The pretrained speech encoder whose hidden states are the features (the one place that builds it).

    Returns
    -------
    topic_id.models.ssl_encoder.SSLEncoder
        With its convolutional front end frozen; ``layers`` is ``last`` or an index here (the
        weighted sum is :class:`LayerMixNormalization`'s, so that it can run over cached layers).
    """
    from topic_id.models.ssl_encoder import SSLEncoder

    return SSLEncoder(source, save_path=save_path, revision=revision, hub_download=hub_download,
                      layers=layers, freeze=freeze, freeze_feature_extractor=True)


def all_hidden_states(encoder, wavs, wav_lens):
    """Every hidden state of ``encoder`` on a padded batch: ``([B, T, L, D], relative frame lengths)``.

    :class:`~topic_id.models.ssl_encoder.SSLEncoder` returns one layer or its own weighted sum; its
    family's encoding step gives them all (the transformer's input and each layer's output).
    """
    encode = encoder._whisper if encoder.whisper else encoder._wav2vec2
    with torch.no_grad() if encoder.freeze else contextlib.nullcontext():
        hidden, frames = encode(wavs, wav_lens, True)
    states = torch.stack(hidden, dim=2)
    return states, frames.float() / states.shape[1]


class SSLHiddenStates(torch.nn.Module):
    """Waveforms -> the chosen hidden states of a pretrained speech encoder, and their lengths.

    The ``compute_features`` of ``features: ssl``. With ``layers="weighted"`` the output keeps
    every layer ([B, T, L + 1, D]; :class:`LayerMixNormalization` sums them), otherwise it is the
    one layer [B, T, D]. A frozen encoder runs without gradients and, with ``cache_dir``, is run
    once per recording (:attr:`cache`).

    Arguments
    ---------
    source, save_path, revision, hub_download, layers, freeze, cache_dir
        As :func:`ssl_front_end`.

    Example
    -------
    >>> import tempfile
    >>> from topic_id.standins.wav2vec2 import build_standin
    >>> folder = build_standin(Path(tempfile.mkdtemp()) / "w2v", hidden_size=16, num_layers=2,
    ...                        num_heads=2, intermediate_size=16, conv_dim=8)
    >>> states = SSLHiddenStates(str(folder), str(folder)).eval()
    >>> feats, lens = states(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, states.n_layers, states.output_size, lens.mul(49).round().tolist()
    (torch.Size([2, 49, 3, 16]), 3, 16, [49.0, 24.0])
    """

    returns_lengths = True  # called as (wavs, wav_lens) -> (feats, lens): :func:`features_of`

    def __init__(self, source, save_path, revision=None, hub_download=False, layers="weighted",
                 freeze=True, cache_dir=None):
        super().__init__()
        from topic_id.models.ssl_encoder import parse_layers

        self.layers = parse_layers(layers)
        self.freeze = bool(freeze)
        # Loading a model draws random initial weights before its saved ones replace them; under a
        # forked generator that leaves the system's own modules (built after the front end) with the
        # initial weights they get with filter banks, so fbank and SSL runs of one seed compare paired.
        with torch.random.fork_rng(devices=[]):
            self.encoder = build_encoder(source, save_path, revision, hub_download,
                                         layers="last" if self.layers == "weighted" else self.layers,
                                         freeze=self.freeze)
        self.name = self.encoder.name
        self.n_layers = self.encoder.n_hidden
        self.output_size = self.encoder.output_size
        self.cache_dir = cache_dir if self.freeze else None
        self._cache = None
        self._setting = {"source": str(source), "revision": revision, "layers": self.layers,
                         "model": model_fingerprint(self.encoder.model.name_or_path) if self.cache_dir else None}

    def forward(self, wavs, wav_lens):
        """``(features, relative frame lengths)`` of a padded batch of 16 kHz waveforms [B, S]."""
        if next(self.encoder.parameters()).device != wavs.device:
            # A frozen encoder is no Brain module, so nothing else moves it to the batch's device.
            self.encoder.to(wavs.device)
        if self.layers == "weighted":
            return all_hidden_states(self.encoder, wavs, wav_lens)
        return self.encoder(wavs, wav_lens)

    @property
    def cache(self):
        """The :class:`SSLFeatureCache` of this encoder and layer choice, or None (not frozen, no folder)."""
        if self.cache_dir is None:
            return None
        if self._cache is None:
            self._cache = SSLFeatureCache(self.cache_dir, {**self._setting, "name": self.name},
                                          self.n_layers if self.layers == "weighted" else None)
        return self._cache


class LayerMixNormalization(InputNormalization):
    """SpeechBrain's ``InputNormalization``, after a softmax-weighted sum of layers when given several.

    Input [B, T, L, D] (every layer, with ``n_layers``) or [B, T, D]; output [B, T, D]. The sum
    runs over real frames as every frame-wise operation does; padding is left to the
    normalisation's mask. Checkpoints keep SpeechBrain's statistics format and add the layer
    weights and, when fine-tuned, the encoder (``state``).

    Arguments
    ---------
    n_layers : int, optional
        Layers to weight (None: the input is one layer).
    encoder : torch.nn.Module, optional
        A fine-tuned encoder, kept here so that it trains and is checkpointed with the system.
    **kwargs
        ``InputNormalization``'s.

    Example
    -------
    >>> norm = LayerMixNormalization(n_layers=3, norm_type="sentence")
    >>> norm(torch.randn(2, 7, 3, 4), torch.ones(2)).shape
    torch.Size([2, 7, 4])
    >>> norm.layer_weights().tolist()  # uniform before training
    [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]
    """

    def __init__(self, n_layers=None, encoder=None, **kwargs):
        super().__init__(**kwargs)
        self.layer_logits = torch.nn.Parameter(torch.zeros(n_layers)) if n_layers else None
        self.encoder = encoder

    def layer_weights(self):
        """The softmax weights of the layers (None for one layer)."""
        return None if self.layer_logits is None else torch.softmax(self.layer_logits, dim=0)

    def forward(self, x, lengths=None, epoch=None):
        """Sum the layers, then normalise as ``InputNormalization``."""
        if self.layer_logits is not None:
            x = torch.einsum("btld,l->btd", x, self.layer_weights().to(x.dtype))
        return super().forward(x, lengths, epoch=epoch)

    def _update_global_stats(self, x, mask):
        # The running statistics are data, not a function of the layer weights: without the
        # detach they would carry the previous batch's graph into the next backward pass.
        super()._update_global_stats(x.detach(), mask)

    def _statistics_dict(self):
        return {**super()._statistics_dict(), "state": self.state_dict()}

    def _load_statistics_dict(self, state):
        if "state" in state:
            self.load_state_dict(state["state"])
        return super()._load_statistics_dict(state)


def features_of(compute_features, wavs, wav_lens):
    """``(features, relative frame lengths)`` of a waveform batch through either front end.

    Filter banks give exact frame lengths through :func:`topic_id.models.encoders.frame_lengths`;
    an SSL encoder returns its own (:class:`SSLHiddenStates`).

    Example
    -------
    >>> feats, lens = features_of(Fbank(), torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> feats.shape, lens.mul(101).round().tolist()
    (torch.Size([2, 101, 40]), [101.0, 51.0])
    """
    if getattr(compute_features, "returns_lengths", False):
        return compute_features(wavs, wav_lens)
    feats = compute_features(wavs)
    return feats, frame_lengths(compute_features, wav_lens, wavs.shape[1], feats.shape[1])


def recording_key(utt_id, path):
    """The cache key of a manifest row's audio: its ID, the file's resolved path, size and mtime.

    A rewritten file (a corpus prepared again) misses; reading the key costs one ``stat``, not a
    read of the file (LP's 813 h are read once, when the features are computed). The ID tells
    apart the segments a row may be cut into.

    Example
    -------
    >>> import tempfile
    >>> wav = Path(tempfile.mkdtemp()) / "a.wav"
    >>> _ = wav.write_bytes(b"RIFF")
    >>> recording_key("a", wav) == recording_key("a", wav), recording_key("a", wav) == recording_key("b", wav)
    (True, False)
    """
    real = os.path.realpath(path)
    info = os.stat(real)
    return hashlib.sha1(f"{utt_id}\0{real}\0{info.st_size}\0{info.st_mtime_ns}".encode()).hexdigest()


def feature_cache_of(hparams):
    """The :class:`SSLFeatureCache` a system's frozen SSL front end reads, or None (filter banks, fine-tuned)."""
    return getattr(hparams.get("compute_features"), "cache", None)


class SSLFeatureCache:
    """Frozen SSL features, one ``[T, layers * D]`` float32 array per recording, on disk.

    One :class:`topic_id.models.embedding_cache.EmbeddingCache` folder per setting,
    ``<cache_dir>/ssl-<key>``, the key hashing the encoder (source, revision, a fingerprint of its
    files), the layer choice and this format; entries are keyed by :func:`recording_key`. Each
    recording is encoded alone, so its features are those of the recording and never depend on
    what it was batched with.

    Arguments
    ---------
    cache_dir : str or Path
        The parent folder (``ssl_cache``: ``<data_folder>/cache/ssl`` by default).
    setting : dict
        What identifies the encoder and layers (``name``, for humans, is not hashed).
    n_layers : int, optional
        Layers kept per frame (None: one).
    """

    def __init__(self, cache_dir, setting, n_layers=None):
        setting = {**setting, "format": CACHE_FORMAT}
        key = setting_key({k: v for k, v in setting.items() if k != "name"})
        self.n_layers = n_layers
        self.store = EmbeddingCache(Path(cache_dir) / f"ssl-{key}", setting, "float32")
        self.computed = 0

    def get(self, utt_id, path):
        """The cached features of a row: [T, L, D] (all layers) or [T, D]."""
        array = self.store.get(recording_key(utt_id, path))
        if array is None:
            raise RuntimeError(f"no cached SSL features for {utt_id} ({path}) in {self.store.folder}: "
                               "they are computed before training starts; delete the folder to recompute")
        feats = torch.from_numpy(array)
        return feats.view(feats.shape[0], self.n_layers, -1) if self.n_layers else feats

    def fill(self, dataset, extractor, device="cpu"):
        """Encode every row of ``dataset`` not cached yet, one recording at a time; write the shards.

        Arguments
        ---------
        dataset : speechbrain.dataio.dataset.DynamicItemDataset
            Rows with ``wav`` and a ``sig`` pipeline (the waveform the system would read).
        extractor : SSLHiddenStates
            The frozen encoder.
        device : str
            Where it runs.

        Returns
        -------
        int
            Rows encoded now.
        """
        todo = [i for i, data_id in enumerate(dataset.data_ids)
                if recording_key(data_id, dataset.data[data_id]["wav"]) not in self.store]
        if todo:
            logger.info("computing frozen %s features of %d recordings into %s", extractor.name,
                        len(todo), self.store.folder)
        with torch.no_grad(), dataset.output_keys_as(["id", "wav", "sig"]):
            for i in todo:
                item = dataset[i]
                wav = item["sig"].to(device).unsqueeze(0)
                feats, _ = extractor(wav, torch.ones(1, device=device))
                self.store.put(recording_key(item["id"], item["wav"]), feats[0].flatten(1).float().cpu().numpy())
        self.store.flush()
        self.computed += len(todo)
        return len(todo)
