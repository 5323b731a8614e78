"""Corpus preparation: any corpus in, the manifest contract of :mod:`data_prep.manifest` out.

The ``prepare_*`` functions are imported on first use, so that ``import data_prep`` stays light
(the LP preparation pulls in torch for resampling, the demo the speech synthesiser).
"""

import importlib

_EXPORTS = {
    "prepare_lahjoita_puhetta": "data_prep.lahjoita_puhetta",
    "prepare_csv_corpus": "data_prep.csv_corpus",
    "prepare_folder_corpus": "data_prep.csv_corpus",
    "prepare_demo": "data_prep.demo_corpus",
    "prepare_slurp": "data_prep.slurp",
    "speak_csv": "data_prep.speak",
    "normalize_transcript": "data_prep.text_norm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'data_prep' has no attribute {name!r}")
