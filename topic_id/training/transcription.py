"""The transcription stage: a trained ASR run decodes whole manifests into their ``asr_words``.

:func:`load_asr` loads a run's decoding modules (:data:`DECODE_MODULES`) from its best checkpoint,
whatever Brain trained them. :func:`decode` is long-form: recordings longer than the ASR's segment
limit (:func:`topic_id.models.piecewise_decoding.segment_limit`: a little over the 90th
percentile of its training durations) are cut at pauses
(:mod:`topic_id.models.piecewise_decoding`), decoded in pieces and the hypotheses joined.
:func:`transcribe` fills a column of ``train/dev/test.csv`` with the text, the input of the text
pipeline and semi-supervised systems (``recipes/transcribe.py``).
"""

import csv
import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from speechbrain.utils.data_utils import batch_pad_right

from corpus_tools.files import atomic_write
from data_prep.manifest import write_csv
from data_prep.prepared import manifest_columns, read_manifest
from topic_id.models.encoders import encode_frames
from topic_id.models.piecewise_decoding import decode_in_pieces, segment_limit
from topic_id.models.ssl_features import features_of

logger = logging.getLogger(__name__)

DECODE_MODULES = ("normalize", "audio_encoder", "embedding", "decoder", "seq_lin")
"""The checkpointed modules beam search needs; any system that names its ASR parts alike (the
multi-task system) can be transcribed with :func:`transcribe`."""


def load_asr(run_dir, device="cpu", max_segment_seconds=None):
    """Load a trained ASR run: its hyperparameters and, from its best checkpoint, the modules
    beam search needs (:data:`DECODE_MODULES`, by name, whatever Brain trained them).

    Arguments
    ---------
    run_dir : str or Path
        The run's output folder (``hyperparams.yaml``, ``save/``, ``tokenizer/``).
    device : str
        Where to decode.
    max_segment_seconds : float, optional
        The segment limit of long-form decoding (default: the run's own,
        :func:`topic_id.models.piecewise_decoding.segment_limit`); :func:`decode` finds it as
        ``hparams["max_segment_seconds"]``.

    Returns
    -------
    tuple
        ``(hparams, checkpoint_path)``.
    """
    from topic_id.training import transfer
    from topic_id.training.run_folder import Run

    run = Run(run_dir)
    run_dir = run.dir
    hparams = run.load()
    ckpt = transfer.init_from(run_dir, hparams["checkpointer"].recoverables, DECODE_MODULES,
                              run.selection_metric)
    # The saved paths are those of training time; the run folder may have moved since.
    tokenizer = hparams["tokenizer"]
    tokenizer.model_dir = run_dir / os.path.relpath(tokenizer.model_dir, hparams["output_folder"])
    for name in DECODE_MODULES:
        hparams["modules"][name].to(device).eval()
    if max_segment_seconds is None:
        max_segment_seconds = segment_limit(hparams, str(run_dir))
    hparams["max_segment_seconds"] = float(max_segment_seconds)
    return hparams, ckpt


def audio_fingerprint(rows):
    """A digest of which audio file each row ID names (rows as :func:`data_prep.prepared.read_manifest`
    gives them, ``$data_root`` resolved).

    A transcribed corpus copy links the original's audio, so both give the same digest.
    """
    lines = sorted(f"{r['ID']}\t{Path(r['wav']).resolve()}" for r in rows)
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def _run_hyps(asr_dir, ckpt, split, rows):
    """The run's own beam-search hypotheses of a manifest's ``rows`` (``{ID: hyp}``), if it decoded
    exactly this audio with this checkpoint during its evaluation; else None."""
    asr_dir = Path(asr_dir)
    try:
        record = json.loads((asr_dir / "hyps.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("checkpoint") != str(Path(ckpt).resolve()):
        return None
    if record.get("audio", {}).get(split) != audio_fingerprint(rows):
        return None
    with open(asr_dir / f"hyps_{split}.csv", encoding="utf-8", newline="") as f:
        hyps = {h["ID"]: h["hyp"] for h in csv.DictReader(f)}
    return hyps if all(r["ID"] in hyps for r in rows) else None


@torch.no_grad()
def decode(hparams, wavs, device="cpu", max_segment_seconds=None, batch_size=8):
    """Beam-search transcripts of a batch of waveforms (16 kHz float tensors of any lengths).

    Long-form: a recording longer than the segment limit is cut into pieces within it
    (:func:`topic_id.models.piecewise_decoding.segment`: at pauses, else overlapping fixed windows); the pieces of
    all recordings of the batch are decoded together, ``batch_size`` at a time in order of length
    (little padding), and each recording's hypotheses are joined in order
    (:func:`topic_id.models.piecewise_decoding.join_hypotheses`). A batch whose recordings are all within the limit
    is decoded as one batch, whole, exactly as without a limit.

    Arguments
    ---------
    hparams : dict
        From :func:`load_asr`.
    wavs : list of torch.Tensor
        One 1-D waveform per utterance.
    device : str
        Where the modules are.
    max_segment_seconds : float, optional
        The segment limit (default: ``hparams["max_segment_seconds"]``, set by :func:`load_asr`;
        without either, no recording is cut).
    batch_size : int
        Pieces per beam-search batch in long-form decoding.

    Returns
    -------
    list of str
        Hypotheses, repetitions filtered.
    """
    limit = max_segment_seconds if max_segment_seconds is not None else hparams.get("max_segment_seconds")
    return decode_in_pieces(wavs, hparams["sample_rate"], limit,
                            lambda signals: _decode_batch(hparams, signals, device), batch_size)


def _decode_batch(hparams, wavs, device):
    """Beam search over one padded batch of waveforms, whole."""
    modules = hparams["modules"]
    padded, lens = batch_pad_right(wavs)
    padded, lens = padded.to(device), lens.to(device)
    # The encoder is called as in training (ASRBrain.compute_forward): exact frame lengths, so a
    # padding-aware encoder sees each utterance as if it were alone.
    feats, lens = features_of(hparams["compute_features"], padded, lens)
    encoded, lens = encode_frames(modules["audio_encoder"], modules["normalize"](feats, lens), lens)
    hyps = hparams["beam_search"](encoded, lens)[0]
    return [hparams["tokenizer"].words(h) for h in hyps]


def transcribe(asr_dir, manifests, column="asr_words", device="cpu", batch_size=8, force=False,
               max_segment_seconds=None):
    """Fill ``column`` of every row of ``train.csv``, ``dev.csv`` and ``test.csv`` with ASR text.

    Each manifest is rewritten atomically (all other columns and the row order unchanged), then
    recorded in ``<manifests>/<column>.json`` with the run and checkpoint that filled it; a rerun
    skips a manifest recorded with the same run, checkpoint, segment limit and rows, unless
    ``force``. A split the run itself decoded with this checkpoint when it was evaluated (its
    ``hyps_<split>.csv``, same audio, no recording beyond the segment limit) takes those
    hypotheses: the text its reported WER was measured on, without decoding the same audio twice.
    Recordings longer than the limit are decoded long-form (:func:`decode`).

    Arguments
    ---------
    asr_dir : str or Path
        A trained run whose modules are named as :data:`DECODE_MODULES`.
    manifests : str or Path
        A prepared corpus folder; ``$data_root`` in ``wav`` stands for this folder.
    column : str
        The column to fill.
    device : str
        Decoding device.
    batch_size : int
        Utterances (or pieces of long ones) per beam-search batch.
    force : bool
        Decode even manifests already filled by this checkpoint.
    max_segment_seconds : float, optional
        The segment limit of long-form decoding (default: the run's, :func:`load_asr`).

    Returns
    -------
    dict
        ``{manifest name: "decoded" | "reused" | "skipped"}``.
    """
    from topic_id.training.dataio import load_audio

    manifests = Path(manifests)
    record_file = manifests / f"{column}.json"
    record = json.loads(record_file.read_text()) if record_file.is_file() else {}
    hparams, ckpt = load_asr(asr_dir, device, max_segment_seconds)
    limit = hparams["max_segment_seconds"]
    done = {}
    for split in ("train", "dev", "test"):
        path = manifests / f"{split}.csv"
        header, rows = manifest_columns(path), read_manifest(path, as_written=True)
        audio = read_manifest(path)
        ids = hashlib.sha1("\n".join(r["ID"] for r in rows).encode()).hexdigest()
        wanted = {"asr": str(Path(asr_dir).resolve()), "checkpoint": str(Path(ckpt).resolve()), "ids": ids,
                  "max_segment_seconds": limit}
        if record.get(path.name) == wanted and not force:
            done[path.name] = "skipped"
            continue
        # The run decoded its own splits whole: that is long-form decoding only within the limit.
        within = all(r["duration"] <= limit for r in audio)
        reused = _run_hyps(asr_dir, ckpt, split, audio) if within else None
        if reused is not None:
            for row in rows:
                row[column] = reused[row["ID"]]
            logger.info("%s: the run's own hypotheses (hyps_%s.csv), decoded by %s", path, split, ckpt)
        order = [] if reused is not None else sorted(range(len(rows)), key=lambda i: audio[i]["duration"])
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            wavs = [load_audio(audio[i]["wav"], hparams["sample_rate"]) for i in chunk]
            for i, hyp in zip(chunk, decode(hparams, wavs, device, batch_size=batch_size)):
                rows[i][column] = hyp
        if column not in header:
            header.append(column)
        write_csv(path, header, rows)
        record[path.name] = wanted
        with atomic_write(record_file) as f:
            json.dump(record, f, indent=2)
        done[path.name] = "decoded" if reused is None else "reused"
        logger.info("%s: %d rows transcribed by %s", path, len(rows), ckpt)
    return done
