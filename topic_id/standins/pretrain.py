"""wav2vec 2.0 self-supervised (continued) pretraining on the audio of a prepared corpus.

wav2vec 2.0 (Baevski et al., 2020) masks spans of the convolutional features, and the transformer
learns to pick the true quantised feature of each masked step among ``num_negatives`` distractors
drawn from the other masked steps of the same utterance (the contrastive loss), while a diversity
loss keeps the codebooks in use. This module trains Hugging Face's ``Wav2Vec2ForPreTraining`` with
the mask and negative samplers of ``transformers`` (as its ``run_wav2vec2_pretraining_no_trainer``
example does) on every row of the chosen manifests: pretraining needs no labels, so the train
split's untranscribed rows count as much as the transcribed ones. Two uses:

- continuing XLS-R (``--init facebook/wav2vec2-xls-r-300m``, whose checkpoint holds the trained
  quantiser) on a user's own audio, e.g. the 405 untranscribed hours of Lahjoita puhetta;
- pretraining a small model from random weights (``--init`` a stand-in of
  ``python -m topic_id.standins build-wav2vec2``, or ``--from-scratch-like`` any model's config). A
  quantiser is added where the source has none. The result stays marked as a stand-in
  (``STANDIN.json``), so no report names it XLS-R.

The audio and its crop batching are :mod:`topic_id.standins.pretrain_data`; the model, masks,
negatives and scores :mod:`topic_id.standins.pretrain_model`; this module is the run: settings,
training loop, resumable checkpoints, outputs and the command line.

The output is a Hugging Face folder (config, weights with the quantiser, feature extractor config)
that the Wav2vec2 row loads unchanged (``--ssl_source=DIR``), plus ``steps.csv`` (one row per
update: losses, contrastive accuracy, codebook perplexity, Gumbel temperature, learning rate),
``pretraining.json`` (settings, data, per-epoch means and held-out scores) and ``pretrain.log``.
It is built in ``.<name>.partial`` beside the output, which keeps a checkpoint at every epoch end
(and every 10 minutes), so an interrupted run resumes where it stopped; the finished folder is
renamed into place.

    python -m topic_id.standins pretrain-wav2vec2 --manifests DATA --init MODEL_DIR --out OUT_DIR
"""

import csv
import json
import logging
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from corpus_tools.files import atomic_write
from topic_id.models.hub import STANDIN_MARKER
from topic_id.standins import swap_dir
from topic_id.standins.pretrain_data import (
    PretrainError,
    corpus_label,
    crop_loader,
    plan_batches,
    read_audio_rows,
)
from topic_id.standins.pretrain_model import (
    build_model,
    evaluate,
    forward_step,
    gumbel_temperature,
    resolve_init,
)

logger = logging.getLogger(__name__)


RECORD = "pretraining.json"
STEP_COLUMNS = ("step", "epoch", "lr", "temperature", "loss", "contrastive_loss", "diversity_loss",
                "accuracy", "perplexity", "masked", "seconds")
CHECKPOINT_SECONDS = 600
CLIP_NORM = 10.0
LOG_EVERY = 50


def _settings_of(manifests, splits, init, from_scratch_like, epochs, max_steps, lr, batch_size, accumulate,
                 max_seconds, mask_prob, mask_length, num_negatives, diversity_weight, warmup,
                 gumbel_temperature, valid_split, precision, seed):
    source = init if init is not None else from_scratch_like
    if (init is None) == (from_scratch_like is None):
        raise PretrainError("give exactly one of --init SOURCE (continue its weights) and "
                            "--from-scratch-like SOURCE (its config, random weights)")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("accumulate", accumulate),
                        ("num_negatives", num_negatives), ("mask_length", mask_length)):
        if value < 1:
            raise PretrainError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if not 0 < mask_prob <= 1 or lr < 0 or max_seconds <= 0 or not 0 <= warmup < 1 or (max_steps or 1) < 1:
        raise PretrainError("need 0 < --mask-prob <= 1, --lr >= 0, --max-seconds > 0, 0 <= --warmup < 1 "
                            "and --max-steps >= 1")
    local = Path(str(source)).expanduser()
    return {
        "manifests": str(Path(manifests).resolve()), "splits": list(splits),
        "source": str(local.resolve()) if local.exists() else str(source),
        "from_scratch": from_scratch_like is not None, "epochs": int(epochs), "max_steps": max_steps,
        "lr": float(lr), "batch_size": int(batch_size), "accumulate": int(accumulate),
        "max_seconds": float(max_seconds), "mask_prob": float(mask_prob), "mask_length": int(mask_length),
        "num_negatives": int(num_negatives), "diversity_weight": float(diversity_weight),
        "warmup": float(warmup),
        "gumbel_temperature": [float(t) for t in gumbel_temperature], "valid_split": valid_split or None,
        "precision": precision, "seed": int(seed),
    }


def _truncate_steps(path, step):
    """Drop the rows of ``steps.csv`` logged after the checkpoint a run resumes from."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STEP_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_outputs(model, work, final, source_path, settings, record, standin):
    from transformers import Wav2Vec2FeatureExtractor

    final.mkdir()
    model.save_pretrained(str(final))
    if (source_path / "preprocessor_config.json").is_file():
        shutil.copy2(source_path / "preprocessor_config.json", final)
    else:
        Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                 return_attention_mask=True).save_pretrained(str(final))
    for name in ("steps.csv", "pretrain.log"):
        shutil.copy2(work / name, final / name)
    (final / RECORD).write_text(json.dumps(record, indent=2), encoding="utf-8")
    if standin:
        description = record["description"]
        try:
            source_marker = json.loads((source_path / STANDIN_MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            source_marker = {}
        (final / "README.md").write_text(
            f"# {description}\n\nNOT facebook/wav2vec2-xls-r-300m. Random initial weights, then wav2vec 2.0 "
            f"self-supervised pretraining with `python -m topic_id.standins pretrain-wav2vec2` ({RECORD}). Results "
            "obtained with it say nothing about XLS-R.\n", encoding="utf-8")
        marker = {"standin": True, "description": description,
                  "not": "facebook/wav2vec2-xls-r-300m or any published pretrained model",
                  "settings": {**source_marker.get("settings", {}), "pretraining": settings}}
        # Written last, as build_standin does: it marks a finished folder.
        (final / STANDIN_MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def pretrain_wav2vec2(manifests, out, init=None, from_scratch_like=None, splits=("train",), epochs=10,
                      max_steps=None, lr=5e-4, batch_size=8, accumulate=1, max_seconds=15.0, mask_prob=0.65,
                      mask_length=10, num_negatives=100, diversity_weight=0.1, warmup=0.08,
                      gumbel_temperature=(2.0, 0.5), valid_split="dev", device=None, precision="fp32",
                      num_workers=0, seed=0, force=False, hub_download=False):
    """Pretrain (or continue pretraining) a wav2vec2 on a prepared corpus's audio.

    Arguments
    ---------
    manifests : str or Path
        A prepared corpus folder.
    out : str or Path
        The Hugging Face model folder to write (the Wav2vec2 row's ``--ssl_source``).
    init : str, optional
        A wav2vec2 folder or hub id (local cache) whose weights to continue; a quantiser is added
        where it has none.
    from_scratch_like : str, optional
        A wav2vec2 folder or hub id whose config to train from random weights (instead of ``init``).
    splits : sequence of str
        Manifests whose audio to train on (all rows; labels and transcripts are not used).
    epochs : int
        Passes over the audio.
    max_steps : int, optional
        Stop after this many updates (and schedule the learning rate for them).
    lr : float
        Peak learning rate of AdamW (linear warm-up, then linear decay to 0).
    batch_size : int
        Utterances per forward pass.
    accumulate : int
        Forward passes per update.
    max_seconds : float
        Longest crop; each batch is cropped to its shortest utterance up to this.
    mask_prob, mask_length : float, int
        Span masking (each step starts a span of ``mask_length`` steps with ``mask_prob/mask_length``).
    num_negatives : int
        Distractors per masked step, from the masked steps of the same utterance.
    diversity_weight : float
        Weight of the codebook diversity loss.
    warmup : float
        Fraction of the updates with a rising learning rate.
    gumbel_temperature : tuple of float
        ``(start, end)`` of the annealed Gumbel-softmax temperature of the quantiser.
    valid_split : str, optional
        A manifest whose audio gives held-out contrastive loss and accuracy after every epoch.
    device : str, optional
        ``cuda`` when available, else ``cpu``.
    precision : str
        ``fp32`` or ``bf16`` (autocast, CUDA only).
    num_workers : int
        DataLoader processes decoding audio.
    seed : int
        Seed of weights (when new), crops, masks and negatives.
    force : bool
        Replace an earlier output of this function with other settings (never any other folder).
    hub_download : bool
        Fetch a hub id (``init`` or ``from_scratch_like``) missing from the local Hugging Face cache.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    PretrainError
        Bad input; the message says how to fix it.

    Example
    -------
    >>> import tempfile, soundfile
    >>> from topic_id.standins.wav2vec2 import build_standin
    >>> root = Path(tempfile.mkdtemp())
    >>> for i in range(2):
    ...     soundfile.write(root / f"{i}.wav", np.random.default_rng(i).normal(size=24000) * 0.1, 16000)
    >>> rows = "".join(f"{i},$data_root/{i}.wav,1.5\\n" for i in range(2))
    >>> _ = (root / "train.csv").write_text("ID,wav,duration\\n" + rows)
    >>> standin = build_standin(root / "w2v", hidden_size=16, num_layers=1, num_heads=2,
    ...                         intermediate_size=16, conv_dim=8)
    >>> out = pretrain_wav2vec2(root, root / "pretrained", init=standin, epochs=2, batch_size=2,
    ...                         mask_length=5, num_negatives=10, valid_split=None, device="cpu")
    >>> json.loads((out / "STANDIN.json").read_text())["description"]  # doctest: +ELLIPSIS
    'stand-in wav2vec2 (random init, pretrained 2 steps on 0.00 h of ... train audio)'
    """
    out = Path(out)
    settings = _settings_of(manifests, splits, init, from_scratch_like, epochs, max_steps, lr, batch_size,
                            accumulate, max_seconds, mask_prob, mask_length, num_negatives, diversity_weight,
                            warmup, gumbel_temperature, valid_split, precision, seed)
    if out.exists():
        try:
            done = json.loads((out / RECORD).read_text(encoding="utf-8"))["settings"]
        except (OSError, ValueError, KeyError):
            done = None
        if done == settings:
            logger.info("pretrained model %s is up to date", out)
            return out
        if done is None:
            raise PretrainError(f"{out} exists and is not an output of this command: choose another --out")
        if not force:
            raise PretrainError(f"{out} holds a pretraining with other settings: choose another --out, or "
                                "pass --force to replace it")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if precision == "bf16" and device.type != "cuda":
        raise PretrainError("--precision bf16 needs a CUDA device; use fp32 on the CPU")
    source = resolve_init(settings["source"], hub_download)
    min_seconds = max(1.0, (2 * mask_length + 2) * 0.02 + 0.025)
    rows = read_audio_rows(manifests, splits, min_seconds)
    valid = read_audio_rows(manifests, [valid_split], min_seconds) if valid_split else []

    work = out.with_name(f".{out.name}.partial")
    resume = None
    try:
        if json.loads((work / "settings.json").read_text(encoding="utf-8")) == settings:
            resume = torch.load(work / "checkpoint.pt", map_location="cpu", weights_only=False)
            _truncate_steps(work / "steps.csv", resume["step"])
    except (OSError, ValueError, RuntimeError, KeyError):
        resume = None
    if resume is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    handler = logging.FileHandler(work / "pretrain.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # the log file records progress whatever the console shows
    try:
        return _train(settings, source, rows, valid, out, work, device, num_workers, resume)
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        handler.close()


def _train(settings, source, rows, valid, out, work, device, num_workers, resume):
    from transformers import Wav2Vec2FeatureExtractor

    random.seed(settings["seed"])
    np.random.seed(settings["seed"])
    torch.manual_seed(settings["seed"])
    source_path, source_name, config = source
    model, saved_config = build_model(source_path, source_name, config, settings["from_scratch"], settings)
    model.to(device).train()
    standin = settings["from_scratch"] or (source_path / STANDIN_MARKER).is_file()
    try:
        sample_rate = Wav2Vec2FeatureExtractor.from_pretrained(str(source_path)).sampling_rate
    except OSError:
        sample_rate = 16000
    per_epoch = math.ceil(math.ceil(len(rows) / settings["batch_size"]) / settings["accumulate"])
    total = per_epoch * settings["epochs"]
    if settings["max_steps"] is not None:
        total = min(total, int(settings["max_steps"]))
    warm = max(1, round(settings["warmup"] * total))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], betas=(0.9, 0.98), eps=1e-6,
                                  weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    step, epoch, skip, epochs = 0, 0, 0, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        step, epoch, skip, epochs = resume["step"], resume["epoch"], resume["batches_done"], resume["epochs"]
        torch.set_rng_state(resume["torch_rng"])
        np.random.set_state(resume["numpy_rng"])
        logger.info("resuming at update %d (epoch %d)", step, epoch + 1)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if settings["precision"] == "bf16" else (
        lambda: torch.autocast(device.type, enabled=False))
    corpus = corpus_label(settings["manifests"], settings["splits"], rows)
    logger.info("pretraining on %d recordings of %s: %d updates of %d x %d crops of <= %.1f s, on %s",
                len(rows), corpus, total, settings["accumulate"], settings["batch_size"],
                settings["max_seconds"], device)
    max_samples = int(settings["max_seconds"] * sample_rate)
    steps_file = open(work / "steps.csv", "a", encoding="utf-8", newline="")
    writer = csv.DictWriter(steps_file, fieldnames=STEP_COLUMNS)
    if steps_file.tell() == 0:
        writer.writeheader()
    started = last_save = time.monotonic()

    def save(batches_done):
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": step, "epoch": epoch,
                 "batches_done": batches_done, "epochs": epochs, "torch_rng": torch.get_rng_state(),
                 "numpy_rng": np.random.get_state()}
        steps_file.flush()
        with atomic_write(work / "checkpoint.pt", "wb") as f:
            torch.save(state, f)

    try:
        while epoch < settings["epochs"] and step < total:
            # The epoch's batches depend on seed and epoch only, so a resumed run skips the done ones.
            batches = plan_batches([d for _, d in rows], settings["batch_size"], settings["max_seconds"],
                                   np.random.default_rng([settings["seed"], epoch]))
            sums = {"contrastive": 0.0, "diversity": 0.0, "correct": 0, "masked": 0}
            loader = crop_loader(rows, batches[skip:], sample_rate, max_samples, True, num_workers)
            pending = dict.fromkeys(("contrastive", "diversity", "perplexity", "correct", "masked", "passes"),
                                    0)
            for index, wav in enumerate(loader, start=skip + 1):
                temperature = gumbel_temperature(step, total, *settings["gumbel_temperature"])
                model.set_gumbel_temperature(temperature)
                out_, masked, correct = forward_step(model, wav, settings, device, amp)
                # The model sums over masked steps; the update averages over them (as Hugging Face's example).
                (out_.loss / (masked * settings["accumulate"])).backward()
                pending["contrastive"] += out_.contrastive_loss.item()
                pending["diversity"] += out_.diversity_loss.item()
                pending["perplexity"] += out_.codevector_perplexity.item()
                pending["correct"] += correct
                pending["masked"] += masked
                pending["passes"] += 1
                if index % settings["accumulate"] and index != len(batches):
                    continue
                torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                n = pending["masked"]
                row = {"step": step, "epoch": epoch + 1, "lr": lr, "temperature": temperature,
                       "contrastive_loss": pending["contrastive"] / n,
                       "diversity_loss": pending["diversity"] / n,
                       "accuracy": pending["correct"] / n, "masked": n,
                       "perplexity": pending["perplexity"] / pending["passes"],
                       "seconds": round(time.monotonic() - started, 2)}
                weight = model.config.diversity_loss_weight
                row["loss"] = row["contrastive_loss"] + weight * row["diversity_loss"]
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
                for key in ("contrastive", "diversity", "correct", "masked"):
                    sums[key] += pending[key]
                pending = dict.fromkeys(pending, 0)
                if step % LOG_EVERY == 0:
                    logger.info("update %d/%d: contrastive loss %.3f, accuracy %.3f, diversity %.3f, "
                                "perplexity %.1f, temperature %.2f, lr %.2e", step, total,
                                row["contrastive_loss"], row["accuracy"], row["diversity_loss"],
                                row["perplexity"], temperature, lr)
                if time.monotonic() - last_save > CHECKPOINT_SECONDS:
                    save(index)
                    last_save = time.monotonic()
                if step >= total:
                    break
            summary = {"epoch": epoch + 1, "updates": step,
                       "contrastive_loss": sums["contrastive"] / max(1, sums["masked"]),
                       "diversity_loss": sums["diversity"] / max(1, sums["masked"]),
                       "accuracy": sums["correct"] / max(1, sums["masked"]),
                       "seconds": round(time.monotonic() - started, 1)}
            if valid:
                summary["valid"] = evaluate(model, valid, settings, sample_rate, device, amp)
            epochs.append(summary)
            logger.info("epoch %d: %s", epoch + 1, json.dumps(summary))
            epoch, skip = epoch + 1, 0
            save(0)
            last_save = time.monotonic()
    finally:
        steps_file.close()
    for key, value in saved_config.items():
        setattr(model.config, key, value)
    trained = f"pretrained {step} steps on {corpus}"
    try:
        earlier = json.loads((source_path / RECORD).read_text(encoding="utf-8"))["description"]
    except (OSError, ValueError, KeyError):
        earlier = None
    if earlier and not settings["from_scratch"]:
        description = f"{earlier}, then {step} more steps on {corpus}"
    elif (source_path / STANDIN_MARKER).is_file():
        description = f"stand-in wav2vec2 (random init, {trained})"
    elif settings["from_scratch"]:
        description = f"wav2vec2 with the config of {source_name} (random init, {trained})"
    else:
        description = f"{source_name}, {trained.replace('pretrained', 'pretraining continued', 1)}"
    record = {"description": description, "source": source_name, "settings": settings,
              "recordings": len(rows),
              "hours": round(sum(d for _, d in rows) / 3600, 3), "updates": step, "epochs": epochs,
              "wall_seconds": round(time.monotonic() - started, 1)}
    final = work / "model"
    shutil.rmtree(final, ignore_errors=True)
    model.to("cpu")
    _write_outputs(model, work, final, source_path, settings, record, standin)
    # An earlier output is here only with force (checked before training): the stand-ins' swap.
    swap_dir(final, out, settings)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("wrote %s: %s", out, record["description"])
    return out


def add_parser(commands):
    """Register ``pretrain-wav2vec2`` (:mod:`topic_id.standins.cli`)."""
    w2v = commands.add_parser("pretrain-wav2vec2",
                              help="wav2vec 2.0 self-supervised pretraining on a corpus's audio",
                              description=__doc__.split("\n")[0])
    w2v.add_argument("--manifests", required=True, type=Path, help="prepared corpus folder")
    w2v.add_argument("--splits", nargs="+", default=["train"], help="manifests whose audio to use (all rows)")
    source = w2v.add_mutually_exclusive_group(required=True)
    source.add_argument("--init", help="wav2vec2 folder or hub id (local cache) to continue")
    source.add_argument("--from-scratch-like",
                        help="wav2vec2 folder or hub id whose config to train from random weights")
    w2v.add_argument("--hub-download", action="store_true",
                     help="fetch a hub id missing from the local Hugging Face cache")
    w2v.add_argument("--out", required=True, type=Path, help="Hugging Face model folder to write")
    w2v.add_argument("--epochs", type=int, default=10)
    w2v.add_argument("--max-steps", type=int, default=None, help="stop after this many updates")
    w2v.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (AdamW)")
    w2v.add_argument("--warmup", type=float, default=0.08, help="fraction of updates warming up the lr")
    w2v.add_argument("--batch-size", type=int, default=8, help="crops per forward pass")
    w2v.add_argument("--accumulate", type=int, default=1, help="forward passes per update")
    w2v.add_argument("--max-seconds", type=float, default=15.0, help="longest crop")
    w2v.add_argument("--mask-prob", type=float, default=0.65)
    w2v.add_argument("--mask-length", type=int, default=10)
    w2v.add_argument("--num-negatives", type=int, default=100)
    w2v.add_argument("--diversity-weight", type=float, default=0.1)
    w2v.add_argument("--gumbel-temperature", type=float, nargs=2, default=[2.0, 0.5],
                     metavar=("START", "END"), help="annealed quantiser temperature")
    w2v.add_argument("--valid-split", default="dev", help="held-out manifest scored each epoch ('' for none)")
    w2v.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    w2v.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    w2v.add_argument("--num-workers", type=int, default=0, help="audio decoding processes")
    w2v.add_argument("--seed", type=int, default=0)
    w2v.add_argument("--force", action="store_true", help="replace an earlier pretraining output in --out")
    w2v.set_defaults(handler=_run)


def _run(args):
    return pretrain_wav2vec2(
        args.manifests, args.out, init=args.init, from_scratch_like=args.from_scratch_like,
        splits=args.splits,
        epochs=args.epochs, max_steps=args.max_steps, lr=args.lr, batch_size=args.batch_size,
        accumulate=args.accumulate, max_seconds=args.max_seconds, mask_prob=args.mask_prob,
        mask_length=args.mask_length, num_negatives=args.num_negatives,
        diversity_weight=args.diversity_weight, warmup=args.warmup,
        gumbel_temperature=tuple(args.gumbel_temperature), valid_split=args.valid_split or None,
        device=args.device, precision=args.precision, num_workers=args.num_workers, seed=args.seed,
        force=args.force, hub_download=args.hub_download)
