#!/usr/bin/env python3
"""Fill the ``asr_words`` column of a prepared corpus with a trained ASR's beam-search output.

    python recipes/transcribe.py --asr RUN_DIR --manifests DIR [--column asr_words] \
        [--device cpu] [--batch_size 8] [--force] [--max-segment-seconds S] [--copy-from DIR]

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
"""

import argparse
import logging
import sys

import torch

from data_prep.prepared import linked_copy
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
    parser.add_argument("--asr", required=True, help="the ASR run's output folder")
    parser.add_argument("--manifests", required=True, help="the prepared corpus folder")
    parser.add_argument("--column", default="asr_words", help="the column to fill")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--force", action="store_true", help="decode manifests already filled")
    parser.add_argument("--max-segment-seconds", type=_positive, default=None, metavar="S",
                        help="cut longer recordings into pieces of at most S seconds (default: the "
                             "ASR run's usual training duration and a little more: 1.25 x the 90th percentile)")
    parser.add_argument("--copy-from", metavar="DIR", default=None,
                        help="first make --manifests a copy of this prepared corpus (audio linked)")
    args = parser.parse_args(argv)
    if args.copy_from:
        linked_copy(args.copy_from, args.manifests)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        done = transcribe(args.asr, args.manifests, args.column, args.device, args.batch_size, args.force,
                          args.max_segment_seconds)
    except (FileNotFoundError, ValueError, TransferError) as err:
        sys.exit(f"error: {err}")
    for name, what in done.items():
        print(f"{name}: {what}")


if __name__ == "__main__":
    main()
