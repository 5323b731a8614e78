"""The few neural modules SpeechBrain lacks: pooling that ignores padding, and classifier heads.

The published recipes pooled with ``torch.mean(x, dim=1)`` over zero-padded batches, so an
utterance's embedding depended on the longest utterance in its batch (docs/published_recipes.md,
'Pooling over padding'). Every pooling here takes SpeechBrain's relative lengths and uses real frames only.
SpeechBrain's own ``StatisticsPooling`` loops over the batch and adds Gaussian noise to the mean even
at evaluation time, which would make predictions non-deterministic, hence :class:`StatsPool`.
"""

import torch
from speechbrain.dataio.dataio import length_to_mask
from torch import nn


def absolute_lengths(lengths, max_len):
    """Frame counts from SpeechBrain's relative lengths, at least one frame each.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths in (0, 1], [B].
    max_len : int
        Frames of the padded batch.

    Returns
    -------
    torch.Tensor
        Integer frame counts [B].

    Example
    -------
    >>> absolute_lengths(torch.tensor([1.0, 0.25]), 8).tolist()
    [8, 2]
    """
    return torch.round(lengths.float() * max_len).long().clamp(min=1, max=max_len)


def length_mask(lengths, max_len, device=None):
    """Boolean mask of real (non-padded) frames.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths in (0, 1], shape [B] (SpeechBrain convention).
    max_len : int
        Number of frames of the padded batch.
    device : torch.device, optional
        Device of the mask.

    Returns
    -------
    torch.Tensor
        Mask of shape [B, max_len], True on real frames (at least one per row).

    Example
    -------
    >>> length_mask(torch.tensor([1.0, 0.5]), 4).int().tolist()
    [[1, 1, 1, 1], [1, 1, 0, 0]]
    """
    return length_to_mask(absolute_lengths(lengths, max_len), max_len, dtype=torch.bool, device=device)


def masked_mean(x, lengths=None):
    """Mean over time of the real frames of a padded batch.

    Arguments
    ---------
    x : torch.Tensor
        Padded batch [B, T, D].
    lengths : torch.Tensor, optional
        Relative lengths [B]; None means no padding.

    Returns
    -------
    torch.Tensor
        [B, D].

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0]], [[2.0], [0.0]]])
    >>> masked_mean(x, torch.tensor([1.0, 0.5])).squeeze(1).tolist()
    [2.0, 2.0]
    """
    if lengths is None:
        return x.mean(dim=1)
    mask = length_mask(lengths, x.shape[1], x.device).unsqueeze(-1).to(x.dtype)
    return (x * mask).sum(dim=1) / mask.sum(dim=1)


class MeanPool(nn.Module):
    """Masked mean over time as a module: [B, T, D] -> [B, D]."""

    def forward(self, x, lengths=None):
        """Pool ``x`` over its real frames."""
        return masked_mean(x, lengths)


class StatsPool(nn.Module):
    """Masked statistics pooling, [mean ‖ std] over real frames: [B, T, D] -> [B, 2D].

    Arguments
    ---------
    eps : float
        Floor of the variance, for a numerically safe square root.

    Example
    -------
    >>> pool = StatsPool()
    >>> pool(torch.randn(2, 10, 3), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 6])
    """

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x, lengths=None):
        """Pool ``x`` over its real frames."""
        if lengths is None:
            lengths = torch.ones(x.shape[0], device=x.device)
        mask = length_mask(lengths, x.shape[1], x.device).unsqueeze(-1).to(x.dtype)
        count = mask.sum(dim=1)
        mean = (x * mask).sum(dim=1) / count
        var = (((x - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / count
        return torch.cat([mean, torch.sqrt(var.clamp(min=self.eps))], dim=-1)


class FeatureNorm(nn.BatchNorm1d):
    """Standardise each dimension of an utterance embedding with batch, then running, statistics.

    A batch norm without affine parameters (nothing to train, no Params). Frozen encoders give
    pooled vectors that share one large common component and differ in small directions (the demo's
    stand-in BERT: norm ~72, pairwise cosine near 1), which an Adam-trained linear head fits only
    slowly and then overfits; standardised, the same head does as well as a tuned logistic
    regression on the same vectors (docs/demo_profile.md, 'Text rows'). A training batch of one
    utterance uses the running statistics (batch statistics of one vector are undefined).

    Arguments
    ---------
    size : int
        Embedding size.

    Example
    -------
    >>> norm = FeatureNorm(3)
    >>> out = norm(torch.tensor([[1.0, 10.0, 0.0], [3.0, 30.0, 0.0]]))
    >>> [round(v, 3) for v in out[:, 1].tolist()]
    [-1.0, 1.0]
    >>> norm(torch.ones(1, 3)).shape  # one utterance: running statistics
    torch.Size([1, 3])
    """

    def __init__(self, size):
        super().__init__(size, affine=False)

    def forward(self, x):
        """Standardise ``x`` [B, D]."""
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)
        return super().forward(x)


class TopicHead(nn.Module):
    """Classifier head: optional input standardisation and hidden linear layers, then the topic logits.

    Arguments
    ---------
    input_size : int
        Size of the (fused) utterance embedding.
    n_topics : int
        Number of classes; 8 on LP (the published 10 added two outputs no class has).
    hidden_sizes : list of int
        Sizes of hidden linear layers; empty for the paper's single linear layer.
    activation : type or None
        Activation after each hidden layer; None reproduces the audio BL's two linear layers with
        no nonlinearity between them, as published.
    dropout : float
        Dropout before each linear layer.
    input_norm : bool
        Standardise the input embedding first (:class:`FeatureNorm`; not in the paper's systems).

    Example
    -------
    >>> head = TopicHead(768, 8)
    >>> sum(p.numel() for p in head.parameters())
    6152
    >>> sum(p.numel() for p in TopicHead(768, 8, input_norm=True).parameters())  # nothing to train
    6152
    """

    def __init__(self, input_size, n_topics, hidden_sizes=(), activation=None, dropout=0.0,
                 input_norm=False):
        super().__init__()
        layers = [FeatureNorm(input_size)] if input_norm else []
        size = input_size
        for hidden in hidden_sizes:
            layers += [nn.Dropout(dropout), nn.Linear(size, hidden)]
            if activation is not None:
                layers.append(activation())
            size = hidden
        layers += [nn.Dropout(dropout), nn.Linear(size, n_topics)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        """Topic logits [B, n_topics] of embeddings [B, input_size]."""
        return self.layers(x)


class ProjectedPool(nn.Module):
    """A pooling followed by a linear layer: [B, T, D] -> [B, output_size].

    The audio+text BL's audio branch, as published: statistics pooling, then the audio
    BL's first linear layer (3000 -> 512), whose output is concatenated with the text vector.

    Arguments
    ---------
    pool : torch.nn.Module
        Called as ``pool(x, lengths)``.
    input_size : int
        Size of the pooled vector.
    output_size : int
        Size of the projection.

    Example
    -------
    >>> pool = ProjectedPool(StatsPool(), 6, 4)
    >>> pool(torch.randn(2, 10, 3), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 4])
    """

    def __init__(self, pool, input_size, output_size):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(input_size, output_size)

    def forward(self, x, lengths=None):
        """Pool ``x`` over its real frames and project."""
        return self.linear(self.pool(x, lengths))


class TextBLSTM(nn.Module):
    """Bidirectional LSTM over token vectors, packed so that padding never enters: [B, T, D] -> [B, H].

    The text branch of the audio+text BL: the utterance vector is the
    mean of the final hidden states over the ``num_layers`` x 2 (layer x direction) slots, as
    published. The published BLSTM ran over zero padding, so the forward direction of every
    shorter text ended in padding; packed sequences end each direction at the last real token.

    Arguments
    ---------
    input_size : int
        Size of the token vectors (the text encoder's hidden size).
    hidden_size : int
        LSTM units per direction (paper: 512).
    num_layers : int
        Stacked layers (paper: 2).
    dropout : float
        Dropout between the layers.

    Example
    -------
    >>> blstm = TextBLSTM(8, 5).eval()
    >>> x = torch.randn(1, 3, 8)
    >>> alone = blstm(x, torch.ones(1))
    >>> padded = torch.cat([torch.nn.functional.pad(x, (0, 0, 0, 2)), torch.randn(1, 5, 8)])
    >>> torch.allclose(alone[0], blstm(padded, torch.tensor([0.6, 1.0]))[0], atol=1e-6)
    True
    """

    def __init__(self, input_size, hidden_size=512, num_layers=2, dropout=0.0):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout,
            bidirectional=True,
            batch_first=True,
        )

    def forward(self, x, lengths=None):
        """Encode token vectors ``x`` [B, T, D] with relative lengths [B] -> [B, hidden_size]."""
        if lengths is None:
            lengths = torch.ones(x.shape[0], device=x.device)
        n = length_mask(lengths, x.shape[1], x.device).sum(dim=1)
        packed = nn.utils.rnn.pack_padded_sequence(x, n.cpu(), batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return h_n.mean(dim=0)
