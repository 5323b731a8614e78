"""Audio encoders on long recordings: encode in chunks, pool over every real frame.

The audio encoders' cost grows with the input's length (the CRDNN's and TDNN's activations
linearly; wav2vec2's self-attention quadratically in time, and in memory too where the attention
kernel materialises its weights), so a 10-minute recording in one pass can exhaust a machine that
classifies 5-second ones with ease. At inference, :class:`LongInput` encodes a
recording longer than ``chunk_seconds`` in windows: each window is a chunk of the recording plus
``context_seconds`` on either side, which the encoder sees but whose output frames are not pooled,
so that a chunk's frames at its edges were computed with some real neighbourhood (the TDNN's
receptive field is covered exactly; the CRDNN's BiLSTM and wav2vec2's attention reach further, hence
small boundary effects). The pooling then runs over the kept frames of all chunks together:
:class:`PoolAccumulator` sums (mean pooling) or merges first and second moments (statistics pooling)
chunk by chunk, and keeps the frames themselves only for a pooling it does not know.

Everything that is per recording is still computed over the whole recording: features and their
normalisation (linear in length, small), an encoder's ``utterance_norm`` of its input and
wav2vec2's waveform normalisation are applied to the whole input first and switched off while the
windows are encoded. (wav2vec2's ``utterance_norm`` of its convolutional features, not used by any
profile, stays per window.)

A recording that fits in one chunk takes the one-pass path unchanged, so every built-in corpus
utterance (2-5 s) gets exactly the embedding training evaluated. Training never chunks.
"""

import math
from contextlib import contextmanager
from types import SimpleNamespace

import speechbrain as sb
import torch
from speechbrain.utils.data_utils import batch_pad_right

from topic_id.models.encoders import encode_frames, normalize_utterances
from topic_id.models.nnet import MeanPool, ProjectedPool, StatsPool, absolute_lengths

CHUNK_SECONDS = 30.0
CONTEXT_SECONDS = 2.0
CHUNKS_PER_PASS = 4


class PoolAccumulator:
    """A pooling computed chunk by chunk: :meth:`add` the frames of each chunk, then :meth:`result`.

    :class:`~topic_id.models.nnet.MeanPool` keeps a running sum and count, :class:`~topic_id.models.nnet.StatsPool`
    the count, mean and sum of squared deviations of each chunk, merged as Chan et al. (1979)
    do (stable, unlike E[x^2] - E[x]^2), in float64; a :class:`~topic_id.models.nnet.ProjectedPool`
    accumulates its inner pooling and projects the result. Any other pooling gets all the frames,
    concatenated (exact, memory linear in length).

    Arguments
    ---------
    pool : torch.nn.Module
        The system's ``audio_pool``.

    Example
    -------
    >>> frames = torch.randn(50, 3)
    >>> for pool in (MeanPool(), StatsPool()):
    ...     acc = PoolAccumulator(pool)
    ...     for chunk in frames.split(7):
    ...         acc.add(chunk)
    ...     print(torch.allclose(acc.result(), pool(frames.unsqueeze(0)), atol=1e-5))
    True
    True
    """

    def __init__(self, pool):
        self.pool = pool
        self.inner = PoolAccumulator(pool.pool) if isinstance(pool, ProjectedPool) else None
        self.count = 0
        self.mean = self.m2 = None
        self.frames = []
        self.dtype = None

    def add(self, frames):
        """Add the kept frames [K, D] of one chunk."""
        if self.inner is not None:
            self.inner.add(frames)
            return
        self.dtype = frames.dtype
        if not isinstance(self.pool, (MeanPool, StatsPool)):
            self.frames.append(frames)
            return
        x = frames.double()
        n = x.shape[0]
        mean = x.mean(dim=0)
        m2 = ((x - mean) ** 2).sum(dim=0)
        if self.count == 0:
            self.mean, self.m2 = mean, m2
        else:
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count += n

    def result(self):
        """The pooled vector [1, D'] of every frame added."""
        if self.inner is not None:
            return self.pool.linear(self.inner.result())
        if self.frames:
            return self.pool(torch.cat(self.frames).unsqueeze(0), None)
        mean = self.mean.unsqueeze(0)
        if isinstance(self.pool, MeanPool):
            return mean.to(self.dtype)
        std = torch.sqrt((self.m2 / self.count).clamp(min=self.pool.eps)).unsqueeze(0)
        return torch.cat([mean, std], dim=-1).to(self.dtype)


def frame_stride(encoder):
    """Input units (feature frames or samples) per output frame of an audio encoder.

    An encoder that says it (``frame_stride``: :class:`topic_id.models.ssl_encoder.SSLEncoder`,
    320 samples); wav2vec2: the product of its convolutional strides (320); a module with time
    pooling (the CRDNN): the product of its time-pooling strides; otherwise 1 (the TDNN).

    Example
    -------
    >>> from topic_id.models.encoders import TDNN
    >>> frame_stride(TDNN(8, channels=[4, 4, 4, 4, 4]))
    1
    """
    if isinstance(getattr(encoder, "frame_stride", None), int):
        return encoder.frame_stride
    config = getattr(getattr(encoder, "model", None), "config", None)
    if config is not None and hasattr(config, "conv_stride"):
        return math.prod(config.conv_stride)
    stride = 1
    for module in encoder.modules():
        if isinstance(module, sb.nnet.pooling.Pooling1d) and module.pool_axis == 1:
            step = module.pool_layer.stride
            stride *= step[-1] if isinstance(step, tuple) else step
    return stride


@contextmanager
def whole_input_norm(encoder, x):
    """Apply an encoder's per-recording input normalisation to the whole input ``x`` [1, T, ...],
    and switch it off inside the block, so that every window sees the recording's statistics.

    Yields
    ------
    torch.Tensor
        ``x``, normalised as the encoder would normalise it in one pass.
    """
    switched = []
    if getattr(encoder, "utterance_norm", False) and not hasattr(encoder, "normalize_wav"):
        x = normalize_utterances(x, torch.tensor([x.shape[1]], device=x.device))
        switched.append("utterance_norm")
    if getattr(encoder, "normalize_wav", False):
        # As topic_id.models.ssl_encoder.SSLEncoder does, over all samples.
        x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, unbiased=False, keepdim=True) + 1e-7)
        switched.append("normalize_wav")
    for name in switched:
        setattr(encoder, name, False)
    try:
        yield x
    finally:
        for name in switched:
            setattr(encoder, name, True)


class LongInput:
    """Chunked encoding of long recordings at inference (set as ``brain.long_input``).

    Arguments
    ---------
    sample_rate : int
        Rate of the waveforms the Brain receives.
    chunk_seconds : float
        Recordings up to this long take one pass; longer ones are encoded in chunks this long.
    context_seconds : float
        Audio encoded on either side of a chunk but not pooled.
    chunks_per_pass : int
        Windows encoded together (bounds memory: about ``chunks_per_pass`` x (chunk + 2 x context)).

    Example
    -------
    >>> LongInput(16000, chunk_seconds=30).one_pass_samples
    480000
    """

    def __init__(self, sample_rate, chunk_seconds=CHUNK_SECONDS, context_seconds=CONTEXT_SECONDS,
                 chunks_per_pass=CHUNKS_PER_PASS):
        if not chunk_seconds or chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be a positive number of seconds, not {chunk_seconds!r}")
        self.sample_rate = sample_rate
        self.chunk_seconds = float(chunk_seconds)
        self.context_seconds = float(context_seconds)
        self.chunks_per_pass = chunks_per_pass

    @property
    def one_pass_samples(self):
        """The longest recording (in samples) that is encoded in one pass."""
        return int(self.chunk_seconds * self.sample_rate)

    def embed(self, brain, sig):
        """The pooled audio embedding [B, D] of a padded batch ``sig = (wavs, lens)``.

        Recordings that fit take the Brain's one-pass path (all of them together when all fit:
        exactly :meth:`topic_id.training.brains.TopicBrain.encode_audio` of today's batch); longer ones are
        encoded one by one in chunks.
        """
        wavs, lens = sig
        n = absolute_lengths(lens, wavs.shape[1])
        long = n > self.one_pass_samples
        if not long.any():
            return brain.encode_audio(*brain.audio_features(SimpleNamespace(sig=sig), sb.Stage.TEST))
        rows = [None] * len(n)
        short = (~long).nonzero().flatten().tolist()
        if short:
            width = int(n[short].max())
            sub = (wavs[short, :width], n[short].float() / width)
            pooled = brain.encode_audio(*brain.audio_features(SimpleNamespace(sig=sub), sb.Stage.TEST))
            for i, row in zip(short, pooled):
                rows[i] = row
        for i in long.nonzero().flatten().tolist():
            rows[i] = self.embed_one(brain, wavs[i : i + 1, : int(n[i])])[0]
        return torch.stack(rows)

    def embed_one(self, brain, wav):
        """The pooled embedding [1, D] of one long recording [1, S], window by window."""
        ones = torch.ones(1, device=wav.device)
        feats, _ = brain.audio_features(SimpleNamespace(sig=(wav, ones)), sb.Stage.TEST)
        encoder = brain.modules.audio_encoder
        stft = getattr(getattr(brain.hparams, "compute_features", None), "compute_STFT", None)
        per_second = self.sample_rate / (stft.hop_length if stft is not None else 1)
        stride = frame_stride(encoder)
        chunk = max(1, int(self.chunk_seconds * per_second) // stride) * stride
        context = math.ceil(self.context_seconds * per_second / stride) * stride
        total = feats.shape[1]
        acc = PoolAccumulator(brain.modules.audio_pool)
        with whole_input_norm(encoder, feats) as x:
            starts = list(range(0, total, chunk))
            for first in range(0, len(starts), self.chunks_per_pass):
                group = starts[first : first + self.chunks_per_pass]
                windows = [(max(0, s - context), min(total, s + chunk + context)) for s in group]
                padded, rel = batch_pad_right([x[0, a:b] for a, b in windows])
                out, out_lens = encode_frames(encoder, padded, rel)
                real = absolute_lengths(out_lens, out.shape[1])
                for k, (s, (a, _)) in enumerate(zip(group, windows)):
                    # Output frame j of a window starting at a is frame a / stride + j of the
                    # one-pass output (window starts are multiples of the stride).
                    keep_from = (s - a) // stride
                    keep_to = int(real[k]) if s + chunk >= total else keep_from + chunk // stride
                    kept = out[k, keep_from : min(keep_to, int(real[k]))]
                    if len(kept):  # a last chunk may lie within the TDNN's trimmed context
                        acc.add(kept)
        return acc.result()
