"""Models an export carries inside its folder, read from wherever the folder is loaded.

A stand-in speech encoder (a folder with :data:`topic_id.models.hub.STANDIN_MARKER`, e.g. the
stand-in wav2vec2 of ``python -m topic_id.standins build-wav2vec2``) is small and specific to its
corpus, so ``topic-id export`` copies it into the model folder (:data:`SSL_ENCODER_DIR`), as it does
a stand-in text encoder; a hub id or another local model stays referenced (a real model is large).

The speech encoder is built while ``hyperparams.yaml`` loads (the system's front end or
``audio_encoder``), before :class:`topic_id.serving.inference.TopicIdentifier` knows its folder, so
the export names it ``!apply:topic_id.serving.bundled.bundled_path [ssl_encoder]``: the path
inside the folder being loaded, which ``TopicIdentifier.from_hparams`` (and, for SpeechBrain's
``foreign_class``, the export's ``custom_interface.py``) sets with :func:`loading` /
:func:`loading_from`.

Example
-------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> with loading(folder):
...     bundled_path(SSL_ENCODER_DIR) == str(folder.resolve() / SSL_ENCODER_DIR)
True
"""

import contextlib
import contextvars
import shutil
from pathlib import Path

SSL_ENCODER_DIR = "ssl_encoder"
SSL_SOURCE_KEYS = ("ssl_source", "wav2vec2_source")
"""The keys that name the speech encoder: ``ssl_source`` and its older name (the Wav2vec2 row)."""

_LOADING = contextvars.ContextVar("topic_id_export_folder", default=None)


class YamlTag(str):
    """A value written into the export's ``hyperparams.yaml`` as it is (a tagged YAML node)."""


def loading_from(folder):
    """Make ``folder`` the export whose bundled models :func:`bundled_path` names; returns the
    ``contextvars`` token that restores the previous one."""
    return _LOADING.set(Path(folder).resolve())


@contextlib.contextmanager
def loading(folder):
    """:func:`loading_from` ``folder`` for the duration of a ``with`` block."""
    token = loading_from(folder)
    try:
        yield
    finally:
        _LOADING.reset(token)


def bundled_path(name):
    """The path of ``name`` inside the export being loaded (see :func:`loading_from`)."""
    from topic_id.serving.export import ExportError

    folder = _LOADING.get()
    if folder is None:
        raise ExportError(f"this model folder carries its speech encoder ({name}/): load it with "
                          "TopicIdentifier.from_hparams(source=FOLDER) or SpeechBrain's foreign_class("
                          'source=FOLDER, pymodule_file="custom_interface.py", classname="TopicIdentifier")')
    return str(folder / name)


def bundle_ssl_encoder(run, out, overrides, standin_marker):
    """Copy a stand-in speech encoder of ``run`` into the export ``out`` and point its keys there.

    Arguments
    ---------
    run : topic_id.training.run_folder.Run
        The exported run.
    out : Path
        The export folder being written.
    overrides : dict
        The system's overrides for the export, updated in place.
    standin_marker : str
        The file that marks a stand-in model folder.

    Returns
    -------
    dict or None
        ``{"source", "bundled", "standin"}`` (as the text encoder's record), or None for a system
        that reads no speech encoder.
    """
    if run.get("features") != "ssl" and "wav2vec2" not in run.doc:
        return None
    source = str(run.get("ssl_source") or "")
    bundled = bool(source) and (Path(source) / standin_marker).is_file()
    if bundled:
        shutil.copytree(source, out / SSL_ENCODER_DIR)
        reference = YamlTag(f"!apply:{__name__}.bundled_path [{SSL_ENCODER_DIR}]")
        # The older name too where it held the same folder: no key keeps the training-time path.
        for key in SSL_SOURCE_KEYS:
            if key == "ssl_source" or str(run.get(key)) == source:
                overrides[key] = reference
    return {"source": source, "bundled": bundled, "standin": bundled}
