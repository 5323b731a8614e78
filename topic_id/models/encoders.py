"""Frame-level audio encoders that honour padding: the CRDNN and the audio baseline's TDNN.

The published recipes ran their encoders over zero-padded batches as if the padding were speech:
the CRDNN's BiLSTM read the padding (its backward direction starts in it), and the TDNN's statistics
pooled it, so an utterance's embedding depended on the longest utterance in its batch. Masked
pooling alone cannot undo that. The encoders here take SpeechBrain's relative lengths and return
their output frames with the relative lengths of those frames, computed exactly, so that
:meth:`topic_id.training.brains.TopicBrain.encode_audio` pools real frames only and an utterance gets the same
embedding alone or in any batch (tests/test_audio_systems.py). Called without lengths, they behave
as the SpeechBrain modules they extend.

In training, their batch normalisation takes its statistics from real frames only
(:func:`masked_batch_norm`): with recordings of very different lengths in one batch, padding would
otherwise dominate them.

Both can also normalise each utterance's input to zero mean and unit variance over its own real
frames (``utterance_norm``), after the global normalisation of the published recipes. Off at the
paper's settings; the demo profile turns it on, as the built-in corpus's dev and test voices are
held out and the few training voices do not teach the models to ignore voice on their own.
"""

import speechbrain as sb
import torch
from speechbrain.dataio.dataio import length_to_mask
from speechbrain.lobes.models.CRDNN import CRDNN as _SBCRDNN
from torch import nn

from topic_id.models.nnet import absolute_lengths


def normalize_utterances(x, n, eps=1e-5):
    """Zero mean and unit variance per utterance and feature, over its real frames only.

    Arguments
    ---------
    x : torch.Tensor
        Padded features [B, T, F].
    n : torch.Tensor
        Real frames per utterance [B].
    eps : float
        Floor of the variance.

    Returns
    -------
    torch.Tensor
        [B, T, F], zero on padded frames.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [9.0]]])
    >>> normalize_utterances(x, torch.tensor([2])).squeeze().round(decimals=3).tolist()
    [-1.0, 1.0, 0.0]
    """
    mask = length_to_mask(n, x.shape[1], dtype=x.dtype, device=x.device).unsqueeze(-1)
    count = mask.sum(dim=1, keepdim=True)
    mean = (x * mask).sum(dim=1, keepdim=True) / count
    var = (((x - mean) ** 2) * mask).sum(dim=1, keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps) * mask


def masked_batch_norm(norm, x, n):
    """SpeechBrain's ``BatchNorm1d`` whose training statistics come from real frames only.

    Batch normalisation over a padded batch counts the padding as frames: with recordings of
    2-28 s in one batch (the built-in corpus's multi-sentence recordings, LP's spread) most of
    the batch is padding, the statistics normalise real frames wrongly, and the running
    statistics used at test time drift (a few long recordings among many short ones were enough
    to ruin the demo's audio baseline). In evaluation the running statistics are per frame, so
    padding cannot matter.

    Arguments
    ---------
    norm : speechbrain.nnet.normalization.BatchNorm1d
        The layer (input [B, T, C]).
    x : torch.Tensor
        Padded frames [B, T, C].
    n : torch.Tensor
        Real frames per utterance [B].

    Returns
    -------
    torch.Tensor
        [B, T, C]; zero on padded frames in training.

    Example
    -------
    >>> norm = sb.nnet.normalization.BatchNorm1d(input_size=1, momentum=1.0)
    >>> x = torch.tensor([[[1.0], [2.0]], [[6.0], [9.0]]])
    >>> out = masked_batch_norm(norm, x, torch.tensor([2, 1])).squeeze(-1)
    >>> [[round(v, 2) for v in row] for row in out.tolist()]
    [[-0.93, -0.46], [1.39, 0.0]]
    >>> norm.norm.running_mean.item()
    3.0
    """
    if not norm.training:
        return norm(x)
    mask = length_to_mask(n, x.shape[1], device=x.device).bool()
    out = torch.zeros_like(x)
    out[mask] = norm.norm(x[mask])
    return out


class CRDNN(_SBCRDNN):
    """SpeechBrain's CRDNN (same arguments, same parameters and checkpoints) that can ignore padding.

    With ``lengths``, every utterance is computed as if it were alone in the batch:

    - one zero frame follows the batch, and padded frames are zeroed before every convolution, so a
      convolution at an utterance's last frames sees zeros, as it does with the utterance alone;
    - time pooling keeps only windows made of real frames (``n // time_pooling_size``, the count the
      utterance alone gives);
    - the recurrent layers run on packed sequences, so the backward direction starts at the
      utterance's last real frame instead of in the padding.

    Arguments
    ---------
    *args, **kwargs
        Those of ``speechbrain.lobes.models.CRDNN.CRDNN``.
    utterance_norm : bool
        Normalise each utterance's input over its own frames first (:func:`normalize_utterances`).

    Example
    -------
    >>> enc = CRDNN(input_size=20, cnn_blocks=1, cnn_channels=[4], time_pooling=True,
    ...             time_pooling_size=2, rnn_class=sb.nnet.RNN.LSTM, rnn_layers=1, rnn_neurons=8,
    ...             dnn_blocks=1, dnn_neurons=6).eval()
    >>> x = torch.randn(1, 10, 20)
    >>> alone, _ = enc(x, torch.ones(1))
    >>> batch = torch.cat([torch.nn.functional.pad(x, (0, 0, 0, 6)), torch.randn(1, 16, 20)])
    >>> batched, lens = enc(batch, torch.tensor([10 / 16, 1.0]))
    >>> torch.allclose(alone[0], batched[0, :5], atol=1e-5), lens.tolist()
    (True, [0.625, 1.0])
    """

    def __init__(self, *args, utterance_norm=False, **kwargs):
        # Set first: SpeechBrain's containers run forward() while they are being built.
        self.utterance_norm = utterance_norm
        super().__init__(*args, **kwargs)

    def forward(self, x, lengths=None):
        """Encode ``x`` [B, T, F]; with ``lengths``, return ``(frames, relative frame lengths)``."""
        if lengths is None:
            if self.utterance_norm:
                x = normalize_utterances(x, torch.full((x.shape[0],), x.shape[1]))
            return super().forward(x)
        n = absolute_lengths(lengths, x.shape[1])
        if self.utterance_norm:
            x = normalize_utterances(x, n)
        x = nn.functional.pad(x, (0, 0, 0, 1))
        x, n = self._run(self, x, n)
        return x, n.float() / x.shape[1]

    def _run(self, layer, x, n):
        """Apply ``layer`` (recursing into containers) to real frames ``n`` of ``x``."""
        if isinstance(layer, sb.nnet.containers.Sequential):
            for sub in layer.values():
                x, n = self._run(sub, x, n)
            return x, n
        if isinstance(layer, (sb.nnet.CNN.Conv2d, sb.nnet.CNN.Conv1d)):
            mask = length_to_mask(n, x.shape[1], dtype=x.dtype, device=x.device)
            return layer(x * mask.view(*mask.shape, *[1] * (x.dim() - 2))), n
        if isinstance(layer, sb.nnet.pooling.Pooling1d) and layer.pool_axis == 1:
            # Only windows made of real frames are real: the count the utterance alone gives.
            stride = layer.pool_layer.stride  # (1, k) when SpeechBrain pools 4-D input in 2-D
            stride = stride[-1] if isinstance(stride, tuple) else stride
            return layer(x), (n // stride).clamp(min=1)
        if hasattr(layer, "rnn") and isinstance(layer.rnn, nn.RNNBase):
            return _packed_rnn(layer.rnn, x, n), n
        if isinstance(layer, sb.nnet.normalization.BatchNorm1d) and x.dim() == 3:
            return masked_batch_norm(layer, x, n), n
        x = layer(x)
        return (x[0] if isinstance(x, tuple) else x), n


def _packed_rnn(rnn, x, n):
    """Run a batch-first torch RNN on the first ``n`` frames of each sequence; zeros after them."""
    if x.dim() == 4:  # [B, T, F, C] after the CNN blocks, flattened as SpeechBrain's RNNs do
        x = x.reshape(x.shape[0], x.shape[1], -1)
    rnn.flatten_parameters()
    packed = nn.utils.rnn.pack_padded_sequence(x, n.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class TDNN(nn.Module):
    """The x-vector-style TDNN of the audio baseline (paper Sec. III; as published).

    Each layer is a dilated 1-D convolution over ``kernel_sizes[i]`` frames, without padding (as the
    published unfold over frames), then the activation, then batch normalisation, the layer order of
    the published ``utils/tdnn.py``. Without padding, an output frame is computed from real frames
    only whenever the utterance has that frame, so with ``lengths`` the output counts
    ``n - context`` real frames of each utterance and pooling them ignores the batch's padding.

    Arguments
    ---------
    input_size : int
        Feature dimension (the published code took it from its data; see hparams/modules/tdnn.yaml).
    channels : list of int
        Output channels per layer (paper: 512, 512, 512, 512, 1500).
    kernel_sizes : list of int
        Frames of context per layer (5, 3, 3, 1, 1).
    dilations : list of int
        Dilation per layer (1, 2, 3, 1, 1).
    activation : type
        Activation class (ReLU).
    utterance_norm : bool
        Normalise each utterance's input over its own frames first (:func:`normalize_utterances`).

    Example
    -------
    >>> tdnn = TDNN(30, channels=[8, 8, 8, 8, 16])
    >>> tdnn.context
    14
    >>> out, lens = tdnn(torch.randn(2, 40, 30), torch.tensor([1.0, 0.5]))
    >>> out.shape, lens.tolist()
    (torch.Size([2, 26, 16]), [1.0, 0.23076923191547394])
    """

    def __init__(
        self,
        input_size,
        channels=(512, 512, 512, 512, 1500),
        kernel_sizes=(5, 3, 3, 1, 1),
        dilations=(1, 2, 3, 1, 1),
        activation=nn.ReLU,
        utterance_norm=False,
    ):
        super().__init__()
        self.utterance_norm = utterance_norm
        if not len(channels) == len(kernel_sizes) == len(dilations):
            raise ValueError("channels, kernel_sizes and dilations need one entry per layer")
        layers = []
        size = input_size
        for out, kernel, dilation in zip(channels, kernel_sizes, dilations):
            layers += [
                sb.nnet.CNN.Conv1d(
                    out_channels=out,
                    kernel_size=kernel,
                    in_channels=size,
                    dilation=dilation,
                    padding="valid",
                ),
                activation(),
                sb.nnet.normalization.BatchNorm1d(input_size=out),
            ]
            size = out
        self.layers = nn.Sequential(*layers)
        self.context = sum((k - 1) * d for k, d in zip(kernel_sizes, dilations))
        self.output_size = size

    def forward(self, x, lengths=None):
        """Encode ``x`` [B, T, F]; with ``lengths``, return ``(frames, relative frame lengths)``."""
        n = absolute_lengths(lengths, x.shape[1]) if lengths is not None else None
        if self.utterance_norm:
            x = normalize_utterances(x, n if n is not None else torch.full((x.shape[0],), x.shape[1]))
        if x.shape[1] <= self.context:
            # Shorter than the receptive field (< 0.15 s at 10 ms frames): one frame, zero-padded.
            x = nn.functional.pad(x, (0, 0, 0, self.context + 1 - x.shape[1]))
        if n is None:
            return self.layers(x)
        out = x
        for layer in self.layers:
            if isinstance(layer, sb.nnet.normalization.BatchNorm1d):
                out = masked_batch_norm(layer, out, n)
                continue
            out = layer(out)
            if isinstance(layer, sb.nnet.CNN.Conv1d):
                n = (n - (layer.kernel_size - 1) * layer.dilation).clamp(min=1)
        return out, n.float() / out.shape[1]


def frame_lengths(compute_features, wav_lens, n_samples, n_frames):
    """Relative lengths of feature frames, exact for SpeechBrain's centred STFT features.

    Reusing the waveforms' relative lengths for the frames gives a short utterance in a batch one
    frame fewer than it has alone; a centred STFT gives ``1 + samples // hop`` frames.

    Arguments
    ---------
    compute_features : torch.nn.Module
        The feature extractor (``Fbank``, ``MFCC``); other kinds keep ``wav_lens``.
    wav_lens : torch.Tensor
        Relative lengths of the waveforms [B].
    n_samples : int
        Samples of the padded waveform batch.
    n_frames : int
        Frames of the padded feature batch.

    Returns
    -------
    torch.Tensor
        Relative lengths of the feature frames [B].

    Example
    -------
    >>> fbank = sb.lobes.features.Fbank()
    >>> frame_lengths(fbank, torch.tensor([1.0, 0.5]), 32000, 201).mul(201).round().tolist()
    [201.0, 101.0]
    """
    stft = getattr(compute_features, "compute_STFT", None)
    if stft is None or not getattr(stft, "center", False):
        return wav_lens
    samples = torch.round(wav_lens * n_samples).long()
    return (1 + samples // stft.hop_length).clamp(min=1, max=n_frames).float() / n_frames


def encode_frames(encoder, feats, lens):
    """Run an audio encoder: its output frames [B, T', D] and their relative lengths.

    Audio encoders take ``(input, relative lengths)``; one that changes the frame count returns
    ``(frames, relative lengths of its frames)`` so that padding stays out of pooling and attention
    (the encoders above, topic_id.models.ssl_encoder).

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

    Example
    -------
    >>> frames, lens = encode_frames(lambda x, n: x, torch.zeros(2, 5, 3), torch.ones(2))
    >>> frames.shape, lens.tolist()
    (torch.Size([2, 5, 3]), [1.0, 1.0])
    """
    encoded = encoder(feats, lens)
    if isinstance(encoded, tuple):
        return encoded
    return encoded, lens
