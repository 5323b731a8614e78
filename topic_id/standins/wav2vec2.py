"""The stand-in wav2vec2: XLS-R's architecture at small sizes, random weights, in HF format.

It stands in for ``facebook/wav2vec2-xls-r-300m`` in the tests and the built-in demo (``python -m
topic_id.standins build-wav2vec2``), loads through :class:`topic_id.wav2vec2.Wav2Vec2` like XLS-R
does, and is named a stand-in wherever it appears. It has no pretraining (that is
:mod:`topic_id.standins.pretrain`), so results obtained with it say nothing about XLS-R.
"""

import json
import logging
import shutil
from pathlib import Path

import torch

from data_prep.fileio import temporary_sibling
from topic_id.hub import STANDIN_MARKER
from topic_id.standins import standin_settings, swap_dir

logger = logging.getLogger(__name__)

STANDIN_DESCRIPTION = "stand-in wav2vec2 (random init, no pretraining)"


def build_standin(out_dir, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                  conv_dim=32, seed=0):
    """Write a small randomly initialised wav2vec2 in Hugging Face format (a stand-in for XLS-R).

    The architecture is XLS-R's at small widths: seven convolutional layers with XLS-R's kernels and
    strides (400-sample receptive field, 320-sample hop: 50 frames/s at 16 kHz) and layer norm,
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
        Channels of every convolutional layer (XLS-R: 512; 32 keeps the demo's CPU time small, as
        the feature encoder runs at the audio rate).
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
        "conv_dim": int(conv_dim),
        "seed": int(seed),
    }
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
        conv_dim=(conv_dim,) * 7,
        conv_kernel=(10, 3, 3, 3, 3, 2, 2),
        conv_stride=(5, 2, 2, 2, 2, 2, 2),
        conv_bias=True,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=num_heads,
        mask_time_prob=0.05,
        layerdrop=0.0,
    )
    config.topic_id_standin = True
    tmp = temporary_sibling(out_dir)
    tmp.mkdir(parents=True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            Wav2Vec2Model(config).save_pretrained(str(tmp))
        Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
            return_attention_mask=True,
        ).save_pretrained(str(tmp))
        (tmp / "README.md").write_text(
            f"# {STANDIN_DESCRIPTION}\n\nNOT facebook/wav2vec2-xls-r-300m. XLS-R's architecture at "
            f"small sizes ({settings}) with random weights and no pretraining, built by `python -m "
            "topic_id.standins build-wav2vec2` for tests and the built-in demo corpus. Results "
            "obtained with it say nothing about XLS-R.\n",
            encoding="utf-8",
        )
        marker = {"standin": True, "description": STANDIN_DESCRIPTION,
                  "not": "facebook/wav2vec2-xls-r-300m or any pretrained model", "settings": settings}
        (tmp / STANDIN_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        swap_dir(tmp, out_dir, settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("built %s in %s", STANDIN_DESCRIPTION, out_dir)
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
    build.add_argument("--conv-dim", type=int, default=32)
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(handler=_build)


def _build(args):
    return build_standin(
        args.out, hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads,
        intermediate_size=args.intermediate_size, conv_dim=args.conv_dim, seed=args.seed,
    )
