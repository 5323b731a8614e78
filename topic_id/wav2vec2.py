"""The wav2vec2 audio encoder of the Wav2vec2 system, loaded offline, and a small stand-in for it.

The paper fine-tuned ``facebook/wav2vec2-xls-r-300m`` (Sec. III-B; no recipe was published, B16).
:class:`Wav2Vec2` is SpeechBrain's Hugging Face integration
(``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``) with three changes:

- the source is resolved locally first (a directory in Hugging Face format, or the local Hugging
  Face cache for a hub id); SpeechBrain would otherwise ask the hub about any id it has not cached
  itself and fail deep in ``huggingface_hub`` when offline. A missing model raises
  :class:`AudioEncoderNotFound` naming it and saying how to provide it;
- each waveform is normalised to zero mean and unit variance over its own samples, as the model's
  feature extractor does (SpeechBrain's integration normalises the zero-padded batch as a whole, so
  a short utterance's input depended on its batch: B5);
- it returns its output frames with their exact relative lengths (the frame counts of the
  convolutional feature encoder), so pooling uses real frames only.

:func:`build_standin` writes a small randomly initialised wav2vec2 (XLS-R's architecture: layer-norm
convolutional feature encoder with XLS-R's kernels and strides, 50 frames/s, stable layer norm) in
Hugging Face format, for tests and the built-in demo; it loads through the same code path and is
named a stand-in wherever it appears (:attr:`Wav2Vec2.name`, ``metrics.json``). It has no
pretraining, so results obtained with it say nothing about XLS-R.

    python -m topic_id.wav2vec2 build-standin --out <data_folder>/standin_wav2vec2
"""

import argparse
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2 as _SBWav2Vec2

from topic_id.encoders import normalize_utterances
from topic_id.text import STANDIN_MARKER, standin_settings, swap_dir

logger = logging.getLogger(__name__)

STANDIN_DESCRIPTION = "stand-in wav2vec2 (random init, no pretraining)"
_WEIGHTS = (".safetensors", ".bin")


class AudioEncoderNotFound(FileNotFoundError):
    """The pretrained audio encoder is not available locally; the message says how to provide it."""


def _howto(source):
    return (
        f"To provide it: on a machine with internet access run\n"
        f"    hf download {source} --local-dir DIR        (older clients: huggingface-cli download)\n"
        f"copy DIR here and pass --wav2vec2_source=DIR (or place the model in the Hugging Face cache, "
        f"HF_HUB_CACHE). For a quick offline run, build a stand-in with\n"
        f"    python -m topic_id.wav2vec2 build-standin --out DIR"
    )


def resolve_source(source, revision=None, download=False):
    """A local model directory for a hub id or a path, without touching the network.

    Arguments
    ---------
    source : str or Path
        A directory in Hugging Face format, or a hub id (``org/name``) in the local cache.
    revision : str, optional
        Branch, tag or commit of a hub id.
    download : bool
        Fetch a hub id that is not in the local cache (off by default: runs are offline).

    Returns
    -------
    tuple
        ``(path, name)``: the directory, and what reports print: ``org/name@<commit>``, the path,
        or ``stand-in wav2vec2 (...): <path>``.

    Raises
    ------
    AudioEncoderNotFound
        When the model is not available locally.
    """
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        path = path.resolve()
        name = str(path)
    elif source.startswith(("/", ".", "~")) or source.count("/") > 1:
        raise AudioEncoderNotFound(
            f"Audio encoder directory {source!r} does not exist.\n" + _howto("<hub id>")
        )
    else:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(source, revision=revision, local_files_only=not download))
        except Exception as err:  # LocalEntryNotFoundError, HFValidationError
            raise AudioEncoderNotFound(
                f"Audio encoder {source!r} (revision {revision or 'main'}) is not a local directory "
                f"and not in the local Hugging Face cache; run-time downloads are off "
                f"({type(err).__name__}).\n" + _howto(source)
            ) from None
        name = f"{source}@{path.name}"
    if not (path / "config.json").is_file() or not any(f.name.endswith(_WEIGHTS) for f in path.iterdir()):
        raise AudioEncoderNotFound(
            f"Audio encoder {source!r}: {path} lacks config.json or weights, so it is not a model "
            f"saved in Hugging Face format.\n" + _howto(source)
        )
    if (path / STANDIN_MARKER).is_file():
        # A pretrained stand-in (topic_id.pretrain) describes itself in its marker.
        try:
            description = json.loads((path / STANDIN_MARKER).read_text(encoding="utf-8"))["description"]
        except (OSError, ValueError, KeyError, TypeError):
            description = STANDIN_DESCRIPTION
        name = f"{description}, not XLS-R: {name}"
    return path, name


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
    freeze : bool
        Freeze the whole model (feature extraction only).
    freeze_feature_extractor : bool
        Freeze only the convolutional feature encoder (the usual fine-tuning setting).
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
    >>> folder = build_standin(Path(tempfile.mkdtemp()) / "w2v", hidden_size=16, num_layers=1,
    ...                        num_heads=2, intermediate_size=16, conv_dim=8)
    >>> enc = Wav2Vec2(str(folder), save_path=str(folder)).eval()
    >>> frames, lens = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> frames.shape, lens.tolist()
    (torch.Size([2, 49, 16]), [1.0, 0.4897959232330322])
    """

    def __init__(self, source, save_path, revision=None, hub_download=False, freeze=False,
                 freeze_feature_extractor=False, apply_spec_augment=False, layerdrop=None,
                 utterance_norm=False):
        path, self.name = resolve_source(source, revision, hub_download)
        self.layerdrop = layerdrop
        self._frames = None
        super().__init__(
            str(path),
            save_path=str(save_path),
            freeze=freeze,
            freeze_feature_extractor=freeze_feature_extractor,
            apply_spec_augment=apply_spec_augment,
        )
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
        samples = torch.full((wav.shape[0],), wav.shape[1], device=wav.device)
        if wav_lens is not None:
            samples = torch.round(wav_lens * wav.shape[1]).long().clamp(min=1)
        mask = torch.arange(wav.shape[1], device=wav.device).unsqueeze(0) < samples.unsqueeze(1)
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
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
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
            "topic_id.wav2vec2 build-standin` for tests and the built-in demo corpus. Results "
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


def main(argv=None):
    """``python -m topic_id.wav2vec2 build-standin --out DIR [sizes]``."""
    parser = argparse.ArgumentParser(prog="python -m topic_id.wav2vec2", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-standin", help=f"build a {STANDIN_DESCRIPTION}")
    build.add_argument("--out", required=True, type=Path, help="model folder to write")
    build.add_argument("--hidden-size", type=int, default=64)
    build.add_argument("--num-layers", type=int, default=2)
    build.add_argument("--num-heads", type=int, default=4)
    build.add_argument("--intermediate-size", type=int, default=128)
    build.add_argument("--conv-dim", type=int, default=32)
    build.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = build_standin(
            args.out, hidden_size=args.hidden_size, num_layers=args.num_layers,
            num_heads=args.num_heads, intermediate_size=args.intermediate_size,
            conv_dim=args.conv_dim, seed=args.seed,
        )
    except (OSError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    logger.info("stand-in ready: %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
