#!/usr/bin/env python3
"""Fill the ``asr_words`` column of a prepared corpus with a trained ASR's beam-search output,
or with a pretrained Hugging Face ASR's (Whisper or a CTC model).

    python recipes/transcribe.py --asr RUN_DIR --manifests DIR [--column asr_words] \
        [--device cpu] [--batch_size 8] [--force] [--max-segment-seconds S] [--copy-from DIR]
    python recipes/transcribe.py --asr-model ID_OR_DIR --manifests DIR [--column asr_words] \
        [--language fi] [--task transcribe] [--revision REV] [--hub_download] [--dtype float32] \
        [--device cuda] [--batch-size 8] [--force] [--max-segment-seconds S] [--copy-from DIR]

Every row of ``train.csv``, ``dev.csv`` and ``test.csv`` is decoded (transcribed training rows too:
the text pipeline system reads ASR text everywhere), repetition loops are cut, and each manifest is
rewritten atomically with its other columns and row order unchanged. ``<DIR>/<column>.json``
records the run and checkpoint that filled each manifest; a rerun skips those, ``--force`` redoes
them. Any run whose checkpoint names its ASR modules as ``topic_id.training.transcription.DECODE_MODULES`` works
(``hparams/asr.yaml``, the multi-task system).

With ``--copy-from DIR``, ``--manifests`` is first made a copy of the prepared corpus ``DIR`` (its
manifests copied, audio and caches linked) unless it exists: each ASR writes into a copy of its own.

Recordings longer than the ASR's segment limit (``--max-segment-seconds``, default a little over
the 90th percentile of its training durations: ``topic_id.models.piecewise_decoding.segment_limit``) are cut at pauses into pieces within
that limit, decoded, and their hypotheses joined (long-form decoding, ``topic_id.training.transcription.decode``): an
attention decoder stops early on input much longer than it was trained on.

With ``--asr-model``, a Hugging Face model (a local folder, or a hub id in the local cache: runs are
offline unless ``--hub_download``) transcribes instead (``topic_id.models.hf_asr``): Whisper in
``--language`` (by default the corpus's, Finnish where none is recorded; ``auto`` detects it), long recordings through its own long-form
generation; a CTC model greedily, recordings longer than ``--max-segment-seconds`` (default 30) cut
at pauses. The text is normalised as the corpus's transcripts are, and ``<DIR>/<column>.json`` names
the model and holds the WER and CER against ``words`` of each split
(``topic_id.training.hf_transcription``). An interrupted run resumes from ``<DIR>/<column>.partial.jsonl``.
"""

import argparse
import logging
import sys

import torch

from data_prep.manifest import PrepError
from data_prep.prepared import linked_copy, text_normalisation
from topic_id.errors import exit_with
from topic_id.models.hf_asr import add_options, options_of
from topic_id.training.transcription import transcribe
from topic_id.training.transfer import TransferError


def _positive(text):
    """A positive number of seconds (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def main(argv=None):
    """Parse the arguments and transcribe."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--asr", help="the ASR run's output folder")
    which.add_argument("--asr-model", metavar="ID_OR_DIR",
                       help="a Hugging Face Whisper or CTC model: a local folder or a hub id")
    parser.add_argument("--manifests", required=True, help="the prepared corpus folder")
    parser.add_argument("--column", default="asr_words", help="the column to fill")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=8)
    parser.add_argument("--force", action="store_true", help="decode manifests already filled")
    parser.add_argument("--max-segment-seconds", type=_positive, default=None, metavar="S",
                        help="cut longer recordings into pieces of at most S seconds (default: the "
                             "ASR run's usual training duration and a little more: 1.25 x the 90th percentile; "
                             "30 for a CTC --asr-model; Whisper windows its input itself)")
    parser.add_argument("--copy-from", metavar="DIR", default=None,
                        help="first make --manifests a copy of this prepared corpus (audio linked)")
    add_options(parser)  # --language --task --revision --hub_download --dtype
    args = parser.parse_args(argv)
    if args.copy_from:
        linked_copy(args.copy_from, args.manifests)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.asr_model:
        return _transcribe_hf(args)
    try:
        done = transcribe(args.asr, args.manifests, args.column, args.device, args.batch_size, args.force,
                          args.max_segment_seconds)
    except (FileNotFoundError, ValueError, TransferError) as err:
        sys.exit(f"error: {err}")
    for name, what in done.items():
        print(f"{name}: {what}")


def _transcribe_hf(args):
    """Transcribe with a Hugging Face model (``--asr-model``); a problem is one ``error:`` line, exit 2."""
    from topic_id.models.hf_asr import load_hf_asr
    from topic_id.training.hf_transcription import transcribe_with

    try:
        if args.language is None:  # Whisper speaks the corpus's language unless told otherwise
            args.language = text_normalisation(args.manifests)["language"]
        asr = load_hf_asr(args.asr_model, download=args.hub_download, device=args.device, **options_of(args))
        status, summary = transcribe_with(asr, args.manifests, args.column, args.batch_size, args.force)
    except (OSError, ValueError, PrepError) as err:
        exit_with(err)
    for name, what in status.items():
        wer = summary[name]["wer"]
        print(f"{name}: {what}" + ("" if wer is None else f" (WER {wer:.2f} %)"))


if __name__ == "__main__":
    main()
