"""The stand-in wav2vec2: XLS-R's architecture at small sizes, in HF format, without pretraining.

It stands in for ``facebook/wav2vec2-xls-r-300m`` in the tests and the built-in demo (``python -m
topic_id.standins build-wav2vec2``), loads through :class:`topic_id.models.ssl_encoder.SSLEncoder` like XLS-R
does, and is named a stand-in wherever it appears. It has no pretraining (that is
:mod:`topic_id.standins.pretrain`), so results obtained with it say nothing about XLS-R.

Its convolutional feature encoder is one of two (``front_end``):

- ``filterbank`` (the default): a fixed bank of Gabor band-pass filters at mel-spaced centre
  frequencies with mel-spaced bandwidths, four phases each, rectified and summed over phases and
  two 10 ms frames: band envelopes on XLS-R's 20 ms grid, written as two ordinary wav2vec2
  convolutional layers (:func:`gabor_filterbank`). The transformer above it is random. What a
  pretrained feature encoder brings to fine-tuning is, first of all, band-pass analysis (the
  first-layer filters of models trained on raw speech come out band-pass; LEAF, Zeghidour et al.
  2021, starts its learnable front end from this Gabor bank). With the random XLS-R-like
  convolutions instead, the demo's Wav2vec2 row stayed at chance whatever was tried (docs/standins.md):
  fine-tuning had to learn the analysis from 0.35 h of 8 voices and learned the voices;
- ``learned``: XLS-R's seven convolutional layers (kernels and strides) at ``conv_dim`` channels,
  random, for pretraining from scratch (:mod:`topic_id.standins.pretrain`) and for tests of that
  code path.
"""

import json
import logging
import math
import shutil
from pathlib import Path

import torch

from corpus_tools.files import temporary_sibling
from topic_id.models.hub import STANDIN_MARKER
from topic_id.standins import standin_settings, swap_dir

logger = logging.getLogger(__name__)

STANDIN_DESCRIPTION = "stand-in wav2vec2 (random init, no pretraining)"
DESCRIPTIONS = {"learned": STANDIN_DESCRIPTION,
                "filterbank": "stand-in wav2vec2 (Gabor filterbank, random transformer, no pretraining)"}
FRONT_ENDS = ("filterbank", "learned")
SAMPLE_RATE = 16000
WINDOW = 400  # samples (25 ms): XLS-R's receptive field
HOP = 160  # samples (10 ms); two hops summed give XLS-R's 20 ms frames (320 samples)
LOWEST_HZ, HIGHEST_HZ = 80.0, 7600.0
PHASES = 4  # cos, sin, -cos, -sin: their rectified sum is an envelope whatever the phase


def _mel(hz):
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _hz(mel):
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def gabor_filterbank(n_bands, window=WINDOW, sample_rate=SAMPLE_RATE):
    """Gabor band-pass filters at mel-spaced centres, ``PHASES`` phases each: [PHASES * n_bands, 1, window].

    Band ``b`` is centred on the ``b``-th of ``n_bands + 1`` frequencies evenly spaced on the mel
    scale from :data:`LOWEST_HZ` to :data:`HIGHEST_HZ` (the last one only sets the top band's width);
    its Gaussian envelope has a frequency standard deviation of half the spacing to the next centre
    (neighbouring bands cross near half their peak), truncated to the window. Rows ``PHASES * b + k`` are its phases ``k * pi / 2``,
    each with unit norm.

    Example
    -------
    >>> bank = gabor_filterbank(8)
    >>> bank.shape, round(float(bank[0].norm()), 4)
    (torch.Size([32, 1, 400]), 1.0)
    >>> tone = torch.sin(2 * math.pi * 1000.0 * torch.arange(4000) / 16000)
    >>> energy = torch.nn.functional.conv1d(tone[None, None], bank).pow(2).mean(-1)
    >>> int(energy.view(8, PHASES).sum(-1).argmax())  # the band whose centre is nearest 1 kHz
    3
    """
    mels = torch.linspace(_mel(LOWEST_HZ), _mel(HIGHEST_HZ), n_bands + 1, dtype=torch.float64)
    centres = [_hz(float(m)) for m in mels]
    t = (torch.arange(window, dtype=torch.float64) - (window - 1) / 2) / sample_rate
    bank = torch.zeros(PHASES * n_bands, 1, window, dtype=torch.float64)
    for b in range(n_bands):
        sigma_t = 1.0 / (2.0 * math.pi * 0.5 * (centres[b + 1] - centres[b]))
        envelope = torch.exp(-0.5 * (t / sigma_t) ** 2)
        for k in range(PHASES):
            row = envelope * torch.cos(2.0 * math.pi * centres[b] * t + k * math.pi / 2)
            bank[PHASES * b + k, 0] = row / row.norm()
    return bank.float()


def _front_end_config(front_end, conv_dim, n_bands):
    """The convolutional layers' fields of the config (``Wav2Vec2Config`` keywords)."""
    if front_end == "learned":
        return {"conv_dim": (conv_dim,) * 7, "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
                "conv_stride": (5, 2, 2, 2, 2, 2, 2), "conv_bias": True}
    return {"conv_dim": (PHASES * n_bands, n_bands), "conv_kernel": (WINDOW, 2),
            "conv_stride": (HOP, 2), "conv_bias": False}


def _set_filterbank(model, n_bands):
    """Write the Gabor bank and the phase-and-frame sums into the two convolutional layers.

    Each layer is conv -> layer norm over channels -> GELU (``feat_extract_norm: layer``). In
    layer 0 the four phases of a band cancel in the mean, so its layer norm only divides each frame
    by its RMS over the bank (a loudness normalisation); GELU then rectifies. Layer 1 sums a band's
    rectified phases over two frames (its envelope at 20 ms), and its layer norm's bias of 3 keeps
    GELU in its near-linear range so that bands below a frame's mean are not cut away.
    """
    layers = model.feature_extractor.conv_layers
    sums = torch.zeros(n_bands, PHASES * n_bands, 2)
    for b in range(n_bands):
        sums[b, PHASES * b:PHASES * (b + 1), :] = 1.0
    with torch.no_grad():
        layers[0].conv.weight.copy_(gabor_filterbank(n_bands))
        layers[1].conv.weight.copy_(sums)
        layers[1].layer_norm.bias.fill_(3.0)


def build_standin(out_dir, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                  conv_dim=32, front_end="filterbank", n_bands=32, seed=0):
    """Write a small randomly initialised wav2vec2 in Hugging Face format (a stand-in for XLS-R).

    The architecture is XLS-R's at small widths: a convolutional feature encoder with XLS-R's
    320-sample hop (50 frames/s at 16 kHz) and layer norm (``front_end``: the fixed Gabor
    filterbank or XLS-R's seven random layers, see the module's docstring),
    stable-layer-norm transformer, positional convolution. The folder holds the config (with
    ``topic_id_standin: true``), the weights, a feature extractor config (16 kHz, normalised
    input, attention mask), a README and ``STANDIN.json`` (written last, so it marks a finished
    build). A rerun with the same settings does nothing.

    Arguments
    ---------
    out_dir : str or Path
        The model folder.
    hidden_size, num_layers, num_heads, intermediate_size : int
        Transformer sizes (``hidden_size`` divisible by ``num_heads``).
    conv_dim : int
        Channels of every convolutional layer of the ``learned`` front end (XLS-R: 512; 32 keeps
        the CPU time small, as the feature encoder runs at the audio rate).
    front_end : str
        ``filterbank`` or ``learned`` (:data:`FRONT_ENDS`).
    n_bands : int
        Bands of the ``filterbank`` front end (the width of its features).
    seed : int
        Seed of the weight initialisation.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    out_dir = Path(out_dir)
    settings = {
        "hidden_size": int(hidden_size),
        "num_layers": int(num_layers),
        "num_heads": int(num_heads),
        "intermediate_size": int(intermediate_size),
        "front_end": front_end,
        "seed": int(seed),
    }
    if front_end not in FRONT_ENDS:
        raise ValueError(f"front_end must be one of {', '.join(FRONT_ENDS)}, not {front_end!r}")
    settings.update({"n_bands": int(n_bands)} if front_end == "filterbank" else {"conv_dim": int(conv_dim)})
    if standin_settings(out_dir) == settings:
        logger.info("stand-in audio encoder %s is up to date", out_dir)
        return out_dir
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    config = Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        **_front_end_config(front_end, conv_dim, n_bands),
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=num_heads,
        mask_time_prob=0.05,
        layerdrop=0.0,
        # No dropout on attention weights: with it, PyTorch's attention takes its slow path on CPU
        # (a training step of 8 x 4 s took 0.36 s instead of 0.20 with the default stand-in).
        attention_dropout=0.0,
    )
    config.topic_id_standin = True
    tmp = temporary_sibling(out_dir)
    tmp.mkdir(parents=True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Wav2Vec2Model(config)
            if front_end == "filterbank":
                _set_filterbank(model, n_bands)
            model.save_pretrained(str(tmp))
        Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
            return_attention_mask=True,
        ).save_pretrained(str(tmp))
        (tmp / "README.md").write_text(
            f"# {DESCRIPTIONS[front_end]}\n\nNOT facebook/wav2vec2-xls-r-300m. XLS-R's architecture at "
            f"small sizes ({settings}) with random weights (a fixed Gabor filterbank as the "
            "convolutional feature encoder where front_end is filterbank) and no pretraining, "
            "built by `python -m topic_id.standins build-wav2vec2` for tests and the built-in demo corpus. Results "
            "obtained with it say nothing about XLS-R.\n",
            encoding="utf-8",
        )
        marker = {"standin": True, "description": DESCRIPTIONS[front_end],
                  "not": "facebook/wav2vec2-xls-r-300m or any pretrained model", "settings": settings}
        (tmp / STANDIN_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        swap_dir(tmp, out_dir, settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %s in %s", DESCRIPTIONS[front_end], out_dir)
    return out_dir


def add_parser(commands):
    """Register ``build-wav2vec2`` (:mod:`topic_id.standins.cli`)."""
    build = commands.add_parser(
        "build-wav2vec2", help=f"build a {STANDIN_DESCRIPTION}",
        description="Build a small randomly initialised wav2vec2 with XLS-R's architecture, in "
        "Hugging Face format (a stand-in for facebook/wav2vec2-xls-r-300m).",
    )
    build.add_argument("--out", required=True, type=Path, help="model folder to write")
    build.add_argument("--hidden-size", type=int, default=64)
    build.add_argument("--num-layers", type=int, default=2)
    build.add_argument("--num-heads", type=int, default=4)
    build.add_argument("--intermediate-size", type=int, default=128)
    build.add_argument("--conv-dim", type=int, default=32,
                       help="channels of the learned front end's layers (default: 32)")
    build.add_argument("--front-end", choices=FRONT_ENDS, default="filterbank",
                       help="convolutional feature encoder: a fixed Gabor filterbank (default) or "
                       "XLS-R's seven random layers")
    build.add_argument("--n-bands", type=int, default=32,
                       help="bands of the filterbank front end (default: 32)")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(handler=_build)


def _build(args):
    return build_standin(
        args.out, hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads,
        intermediate_size=args.intermediate_size, conv_dim=args.conv_dim,
        front_end=args.front_end, n_bands=args.n_bands, seed=args.seed,
    )
