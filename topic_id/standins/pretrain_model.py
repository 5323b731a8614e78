"""The model side of wav2vec 2.0 pretraining: the source model, masks, negatives and scores.

:func:`build_model` makes Hugging Face's ``Wav2Vec2ForPreTraining`` from a wav2vec2 folder or hub
id (:func:`resolve_init`), adding a quantiser where the source has none; :func:`forward_step`
draws the span masks and the negatives with the samplers of ``transformers`` (as its
``run_wav2vec2_pretraining_no_trainer`` example does) and runs one forward pass;
:func:`contrastive_accuracy` and :func:`evaluate` score it. Used by
:mod:`topic_id.standins.pretrain`.
"""

import logging
from dataclasses import replace

import numpy as np
import torch

from topic_id.models.hub import WAV2VEC2, ModelNotFound, resolve_model
from topic_id.standins.pretrain_data import PretrainError, crop_loader, plan_batches

# The modules of one pretraining run share its logger, so that pretrain.log records all of them.
logger = logging.getLogger("topic_id.standins.pretrain")


def gumbel_temperature(step, total, start, end):
    """The Gumbel-softmax temperature at ``step``: exponential decay that reaches ``end`` at 70 %.

    fairseq anneals 2.0 -> 0.5 by 0.999995 per update, reaching the floor at 70 % of its 400k.

    Example
    -------
    >>> [round(gumbel_temperature(s, 10, 2.0, 0.5), 2) for s in (0, 7, 10)]
    [2.0, 0.5, 0.5]
    """
    if start <= end:
        return end
    decay = (end / start) ** (1.0 / max(1.0, 0.7 * total))
    return max(start * decay**step, end)


def contrastive_accuracy(model, outputs, mask, negatives):
    """How many masked steps score their true quantised vector above every distractor.

    Uses the projected states of ``Wav2Vec2ForPreTraining``'s output, the same negatives and the
    same exclusion of distractors identical to the target as its loss; ties count as wrong (fairseq).

    Returns
    -------
    int
        The number of correct masked steps.
    """
    quantized = outputs.projected_quantized_states.detach()
    batch, steps, dim = quantized.shape
    distract = quantized.reshape(-1, dim)[negatives.reshape(-1)].view(batch, steps, -1, dim)
    distract = distract.permute(2, 0, 1, 3)
    logits = model.compute_contrastive_logits(quantized[None], distract, outputs.projected_states.detach(),
                                              model.config.contrastive_logits_temperature)
    logits[1:][(quantized == distract).all(-1)] = float("-inf")
    best, worst = logits.argmax(0) == 0, logits.argmin(0) == 0
    return int((best & ~worst & mask).sum())


def sample_masks(model, shape, mask_prob, mask_length, num_negatives, device):
    """Span masks ``[B, T]`` and negative indices ``[B, T, num_negatives]`` for a batch of crops.

    Drawn with the samplers of ``transformers`` (NumPy's global generator, which the run seeds).
    """
    from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

    batch, samples = shape
    steps = int(model._get_feat_extract_output_lengths(samples))
    mask = _compute_mask_indices((batch, steps), mask_prob, mask_length, min_masks=2)
    negatives = _sample_negative_indices((batch, steps), num_negatives, mask_time_indices=mask)
    return (torch.tensor(mask, dtype=torch.bool, device=device),
            torch.tensor(negatives, dtype=torch.long, device=device))


def forward_step(model, wav, settings, device, autocast):
    """One forward pass on crops ``wav`` [B, S]: ``(model output, masked steps, correct steps)``."""
    mask, negatives = sample_masks(model, wav.shape, settings["mask_prob"], settings["mask_length"],
                                   settings["num_negatives"], device)
    with autocast():
        out = model(wav.to(device), mask_time_indices=mask, sampled_negative_indices=negatives)
    masked = int(mask.sum())
    return out, masked, contrastive_accuracy(model, out, mask, negatives)


def evaluate(model, rows, settings, sample_rate, device, autocast):
    """Held-out contrastive loss and accuracy: fixed crops, masks and negatives, argmax codes."""
    state, model_mode = np.random.get_state(), model.training
    np.random.seed(settings["seed"])
    model.eval()
    batches = plan_batches([d for _, d in rows], settings["batch_size"], settings["max_seconds"],
                           np.random.default_rng(settings["seed"]))
    total = masked = correct = 0.0
    with torch.no_grad():
        for wav in crop_loader(rows, batches, sample_rate, int(settings["max_seconds"] * sample_rate), False, 0):
            out, n, right = forward_step(model, wav, settings, device, autocast)
            total, masked, correct = total + out.contrastive_loss.item(), masked + n, correct + right
    np.random.set_state(state)
    model.train(model_mode)
    return {"contrastive_loss": total / masked, "accuracy": correct / masked}


def has_quantizer(path):
    """Whether a Hugging Face wav2vec2 folder's weights include the pretraining quantiser."""
    for weights in sorted(path.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(weights), "pt") as f:
            if any("quantizer." in key for key in f.keys()):
                return True
    for weights in sorted(path.glob("*.bin")):
        state = torch.load(weights, map_location="cpu", mmap=True, weights_only=True)
        if any("quantizer." in key for key in state):
            return True
    index = path / "model.safetensors.index.json"
    return index.is_file() and "quantizer." in index.read_text(encoding="utf-8")


def resolve_init(source, download=False):
    """``(folder, name, config)`` of a wav2vec2 folder or hub id; PretrainError if unusable.

    Arguments
    ---------
    source : str
        A folder or hub id (:func:`topic_id.models.hub.resolve_model`).
    download : bool
        Fetch a hub id missing from the local Hugging Face cache.
    """
    from transformers import Wav2Vec2Config

    try:
        path, name = resolve_model(source, download=download,
                                   kind=replace(WAV2VEC2, pass_as="--init DIR"))
    except ModelNotFound as err:
        raise PretrainError(" ".join(str(err).split())) from None
    config = Wav2Vec2Config.from_pretrained(str(path))
    if config.model_type != "wav2vec2":
        raise PretrainError(f"{source} is a {config.model_type!r} model, not wav2vec2: pass a wav2vec2 "
                            "folder or hub id (e.g. facebook/wav2vec2-xls-r-300m)")
    return path, name, config


def build_model(path, name, config, scratch, settings):
    """``Wav2Vec2ForPreTraining`` from the folder ``path`` (weights, or only ``config`` when ``scratch``)."""
    from transformers import Wav2Vec2ForPreTraining

    saved = {"apply_spec_augment": config.apply_spec_augment}
    new_quantizer = not has_quantizer(path)
    if new_quantizer:
        # The source has no quantiser (a stand-in saved as Wav2Vec2Model): wav2vec 2.0's two groups of
        # 320 codes for full-size models, fewer and narrower for small stand-ins, whose few minutes
        # of audio cannot fill 640 codes.
        small = config.hidden_size < 256
        config.num_codevector_groups = 2
        config.num_codevectors_per_group = 32 if small else 320
        width = max(2, config.hidden_size // 2 * 2) if small else 256
        config.codevector_dim = config.proj_codevector_dim = width
    config.diversity_loss_weight = settings["diversity_weight"]
    config.num_negatives = settings["num_negatives"]
    config.apply_spec_augment = True  # the model inserts its masked embedding only when this is on
    if scratch:
        model = Wav2Vec2ForPreTraining(config)
    else:
        model = Wav2Vec2ForPreTraining.from_pretrained(str(path), config=config)
    if new_quantizer or scratch:
        # A model never pretrained has a random masked-step embedding (uniform in [0, 1): the same
        # positive offset at every masked step). Starting it at zero, a masked step shows only its
        # context: the tiny test stand-in then left the contrastive loss's plateau at log(K + 1)
        # within 60 updates for 16 of 16 seeds, against 7 of 8 with the random embedding.
        with torch.no_grad():
            model.wav2vec2.masked_spec_embed.zero_()
    logger.info("%s %s (%s quantiser: %d groups x %d codes)", "config of" if scratch else "weights of", name,
                "new" if new_quantizer or scratch else "its", config.num_codevector_groups,
                config.num_codevectors_per_group)
    return model, saved
