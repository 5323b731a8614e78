"""The data of wav2vec 2.0 pretraining: audio rows of the manifests, and batches of equal crops.

Each batch is cropped to the shortest of its utterances (at most ``max_seconds``), at random
offsets, as fairseq does: no padding, so no attention mask and no padded steps among the
negatives; batches group utterances of similar duration (:func:`plan_batches`). Each crop is
normalised to zero mean and unit variance, as the model's feature extractor and
:class:`topic_id.models.ssl_encoder.SSLEncoder` do. Used by :mod:`topic_id.standins.pretrain`.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from data_prep.manifest import PrepError

from data_prep.prepared import manifest_columns, read_manifest
from topic_id.training.dataio import load_audio

# The modules of one pretraining run share its logger, so that pretrain.log records all of them.
logger = logging.getLogger("topic_id.standins.pretrain")


class PretrainError(Exception):
    """A problem with the input of a pretraining run; the message says what to do."""


def read_audio_rows(manifests, splits=("train",), min_seconds=1.0):
    """The audio files and durations of every row of the given split manifests.

    Arguments
    ---------
    manifests : str or Path
        A prepared corpus folder (``<split>.csv``; ``$data_root`` in ``wav`` stands for it).
    splits : sequence of str
        The manifests to read; every row counts, transcribed or not.
    min_seconds : float
        Shorter recordings are left out (too few frames to mask).

    Returns
    -------
    list
        ``(path, duration)`` pairs.

    Raises
    ------
    PretrainError
        A missing folder, manifest or audio file, or no usable row.
    """
    folder = Path(manifests)
    if not folder.is_dir():
        raise PretrainError(f"manifest folder {folder} does not exist: prepare the corpus first "
                            "(python -m data_prep ...) and pass its folder to --manifests")
    rows, short, missing = [], 0, []
    for split in splits:
        path = folder / f"{split}.csv"
        if not path.is_file():
            raise PretrainError(f"{path} is missing: choose --splits among the prepared manifests "
                                f"({', '.join(sorted(p.stem for p in folder.glob('*.csv'))) or 'none'})")
        if not {"wav", "duration"} <= set(manifest_columns(path)):
            raise PretrainError(f"{path} has no 'wav' and 'duration' columns: it is not a "
                                "manifest of python -m data_prep")
        try:
            manifest = read_manifest(path)
        except PrepError as err:
            raise PretrainError(str(err)) from None
        for row in manifest:
            wav, duration = row["wav"], row["duration"]
            if duration < min_seconds:
                short += 1
            elif not os.path.isfile(wav):
                missing.append(f"{row.get('ID')} ({wav})")
            else:
                rows.append((wav, duration))
    if missing:
        raise PretrainError(f"{len(missing)} audio file(s) of {folder} are missing, e.g. {missing[0]}; "
                            "re-prepare the corpus or restore the files")
    if not rows:
        raise PretrainError(f"no audio rows of at least {min_seconds:.2f} s in {folder} "
                            f"({', '.join(splits)}): pass --splits with manifests that have audio")
    if short:
        logger.info("left out %d recordings shorter than %.2f s", short, min_seconds)
    return rows


def plan_batches(durations, batch_size, max_seconds, rng):
    """Batches of utterances of similar duration, in random order.

    Arguments
    ---------
    durations : sequence of float
        Seconds per utterance.
    batch_size : int
        Utterances per batch.
    max_seconds : float
        Crop length; longer utterances count as this long.
    rng : numpy.random.Generator
        Source of the order.

    Returns
    -------
    list of list of int

    Example
    -------
    >>> batches = plan_batches([1, 9, 2, 8, 3], 2, 5.0, np.random.default_rng(0))
    >>> sorted(i for b in batches for i in b), max(len(b) for b in batches)
    ([0, 1, 2, 3, 4], 2)
    """
    # Jitter the durations so that batches differ between epochs yet stay of similar lengths.
    keys = np.minimum(np.asarray(durations, dtype=float), max_seconds)
    keys = keys * rng.uniform(0.85, 1.15, len(keys))
    order = np.argsort(keys, kind="stable")
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def load_crops(batch, wavs, max_samples, train):
    """One tensor [B, S] of normalised crops of equal length (the shortest, at most max_samples)."""
    length = min(max_samples, min(len(wavs[i]) for i in batch))
    crops = []
    for i in batch:
        wav = wavs[i]
        start = int(torch.randint(0, len(wav) - length + 1, ()).item()) if train else 0
        crop = wav[start:start + length]
        crops.append((crop - crop.mean()) / torch.sqrt(crop.var(unbiased=False) + 1e-7))
    return torch.stack(crops)


class AudioRows(torch.utils.data.Dataset):
    """Decoded (and resampled) audio of ``(path, duration)`` rows, through topic_id.training.dataio."""

    def __init__(self, rows, sample_rate):
        self.rows, self.sample_rate = rows, sample_rate

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return index, load_audio(self.rows[index][0], self.sample_rate)


def crop_loader(rows, batches, sample_rate, max_samples, train, num_workers):
    """A DataLoader of :func:`load_crops` batches of ``rows`` in the order of ``batches``."""

    def collate(items):
        wavs = dict(items)
        return load_crops([i for i, _ in items], wavs, max_samples, train)

    return torch.utils.data.DataLoader(AudioRows(rows, sample_rate), batch_sampler=batches, collate_fn=collate,
                                       num_workers=num_workers)


def corpus_label(manifests, splits, rows):
    """What the audio of a run is, for its description: ``0.25 h of built-in demo train audio``."""
    try:
        summary = json.loads((Path(manifests) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    corpus = summary.get("corpus") or ("built-in demo" if "synthesiser" in summary else Path(manifests).name)
    hours = sum(d for _, d in rows) / 3600
    return f"{hours:.2f} h of {corpus} {'+'.join(splits)} audio"
