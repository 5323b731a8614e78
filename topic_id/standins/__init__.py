"""Stand-ins for the two pretrained encoders, and wav2vec 2.0 pretraining.

FinBERT and XLS-R are large downloads; the tests and the built-in demo use small models in Hugging
Face format instead, which load through the same code path (:func:`topic_id.models.hub.resolve_model`)
and are named stand-ins wherever they appear, so nobody mistakes their results for the real ones:

- :mod:`topic_id.standins.bert`: a small random BERT with a WordPiece vocabulary of the corpus;
- :mod:`topic_id.standins.wav2vec2`: a small random wav2vec2 with XLS-R's architecture;
- :mod:`topic_id.standins.pretrain` (with ``pretrain_data`` and ``pretrain_model``): wav2vec 2.0
  self-supervised pretraining on a corpus's audio, of a stand-in or continuing XLS-R.

Each finished folder holds ``STANDIN.json`` (:data:`STANDIN_MARKER`, written last): its
description and the settings it was built with, so a rerun with the same settings does nothing.
The command line (:mod:`topic_id.standins.cli`)::

    python -m topic_id.standins build-bert --manifests DATA --out DATA/standin_bert
    python -m topic_id.standins build-wav2vec2 --out DATA/standin_wav2vec2
    python -m topic_id.standins pretrain-wav2vec2 --manifests DATA --init MODEL --out OUT
"""

import json
from pathlib import Path

from corpus_tools.files import replace_dir
from topic_id.models.hub import STANDIN_MARKER


def standin_settings(folder):
    """The ``settings`` recorded in a stand-in folder's marker file, or None (no finished build).

    Example
    -------
    >>> standin_settings("/nowhere") is None
    True
    """
    try:
        return json.loads((Path(folder) / STANDIN_MARKER).read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def swap_dir(new, target, settings):
    """Move the finished folder ``new`` to ``target``, replacing an older build (any stand-in).

    Another process that finished the same build first wins, if its settings match.
    """
    replace_dir(new, target, keep_existing=lambda folder: standin_settings(folder) == settings)
