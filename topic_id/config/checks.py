"""Configuration checks ``recipes/train.py`` runs before anything is trained or written.

A misspelt option value, a text column the corpus lacks, an encoder whose hidden size differs from
the YAML's, or an earlier stage that is missing would otherwise fail deep inside PyTorch, or worse,
train on nothing (a ``train_subset`` that matches no row, a text column the data pipeline cannot
read: zero vectors). :func:`check_config` turns each into a :class:`~topic_id.errors.ConfigError`
that says what to change.
"""

from pathlib import Path

from data_prep.manifest import SUBSETS, PrepError

from data_prep.prepared import manifest_columns, read_manifest
from topic_id.errors import ConfigError

SORTINGS = ("random", "ascending", "descending")
SAMPLINGS = ("stratified", "balanced")


def check_choice(hparams, key, choices):
    """ConfigError unless ``hparams[key]`` (when present) is one of ``choices``.

    Example
    -------
    >>> check_choice({"sorting": "rnd"}, "sorting", SORTINGS)
    Traceback (most recent call last):
    ...
    topic_id.errors.ConfigError: --sorting=rnd is not one of random, ascending, descending
    """
    if key in hparams and hparams[key] not in choices:
        raise ConfigError(f"--{key}={hparams[key]} is not one of {', '.join(map(str, choices))}")


def checked_manifest(path):
    """``(columns, rows)`` of a manifest CSV (:func:`data_prep.prepared.read_manifest`), or
    ConfigError when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: prepare the corpus with python -m data_prep, and "
                          "give its output folder as --data_folder")
    try:
        return manifest_columns(path), read_manifest(path)
    except PrepError as err:
        raise ConfigError(str(err)) from None


def text_columns(spec):
    """The manifest columns of a ``train_text``/``eval_text`` value, in order of preference.

    Example
    -------
    >>> text_columns("words, asr_words")
    ['words', 'asr_words']
    """
    return [c.strip() for c in str(spec).split(",") if c.strip()]


def reads_text(hparams):
    """Whether the system feeds transcripts to a model (text encoder, trained or not, or the bag of words)."""
    return any(k in hparams for k in ("text_encoder", "text_target")) or (
        "trainer" in hparams and "train_text" in hparams) or "text_model" in hparams.get("modules", {})


def check_data(hparams):
    """The training subset is not empty; every text column read exists and has text."""
    subset = hparams.get("train_subset", "all")
    check_choice(hparams, "train_subset", ("all", *SUBSETS))
    splits = {split: checked_manifest(hparams[f"{split}_csv"]) for split in ("train", "dev", "test")}
    columns, rows = splits["train"]
    if subset != "all":
        rows = [r for r in rows if r.get("subset") == subset]
    if not rows:
        raise ConfigError(f"no training row of {hparams['train_csv']} has subset {subset!r}: choose "
                          f"--train_subset from all, {', '.join(SUBSETS)} for this corpus")
    splits["train"] = (columns, rows)
    if not reads_text(hparams):
        return
    for split, (columns, rows) in splits.items():
        key = "train_text" if split == "train" else "eval_text"
        wanted = text_columns(hparams[key])
        missing = [c for c in wanted if c not in columns]
        if missing or not wanted:
            raise ConfigError(f"--{key}={hparams[key]}: {split}.csv has no column {missing[0] if missing else ''!r}; "
                              f"its columns are {', '.join(columns)} (recipes/transcribe.py --column "
                              "adds one)")
        # An ASR that heard nothing leaves its record (<column>.json): empty text is then a result,
        # not a forgotten step (topic_id.training.dataio warns about it).
        recorded = any((Path(hparams["data_folder"]) / f"{c}.json").is_file() for c in wanted)
        if rows and not recorded and not any((r.get(c) or "").strip() for r in rows for c in wanted):
            raise ConfigError(f"--{key}={hparams[key]}: no {split} row has text in it; for asr_words "
                              "run recipes/transcribe.py first, or choose another column")


def check_encoder_dims(hparams):
    """``text_dim`` and ``ssl_dim`` (or its older name ``wav2vec2_dim``) equal the hidden sizes of
    the models they describe."""
    text = hparams.get("text_encoder") or hparams.get("text_target")
    if text is not None and "text_dim" in hparams and text.dim != hparams["text_dim"]:
        raise ConfigError(f"--text_dim={hparams['text_dim']} but the text encoder {text.name} is "
                          f"{text.dim} wide: pass --text_dim={text.dim}")
    ssl = hparams.get("wav2vec2")
    if isinstance(ssl, dict):  # hparams/modules/ssl_encoder.yaml, included
        ssl = ssl.get("encoder")
    key = next((k for k in ("ssl_dim", "wav2vec2_dim") if k in hparams), None)
    if ssl is not None and key is not None:
        width = int(ssl.dim)
        if width != hparams[key]:
            raise ConfigError(f"--{key}={hparams[key]} but the SSL encoder is {width} wide: "
                              f"pass --{key}={width}")


def check_config(hparams):
    """Every check of this module, on loaded hyperparameters (before training starts)."""
    check_choice(hparams, "sorting", SORTINGS)
    check_choice(hparams, "train_hours_sampling", SAMPLINGS)
    check_choice(hparams, "anneal_lr", (True, False))
    if "text_model" in hparams.get("modules", {}):
        from topic_id.models.text_finetune import LR_SCHEDULES

        check_choice(hparams, "lr_schedule", LR_SCHEDULES)
    check_data(hparams)
    check_encoder_dims(hparams)
