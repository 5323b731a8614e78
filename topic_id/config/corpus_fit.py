"""Does the prepared corpus fit what the rows, under the profile, will ask of it?

What a step would otherwise die of, days into a table: the SentencePiece units of an ASR (a
unigram model needs enough distinct pieces in the transcribed training text; SentencePiece itself
says how many are possible), ``n_topics`` against ``topics.txt``, a ``train_subset`` or duration
limit that leaves no training row, and text columns the corpus lacks (except ``asr_words`` of a
row whose transcription step fills it later). Run by :mod:`topic_id.config.preflight`.
"""

import contextlib
import csv
import os
import random
import re
import sys
import tempfile
from pathlib import Path

from topic_id.config.row_config import instances, row_hparams
from topic_id.errors import ConfigError

TOKENIZER_CLASS = "topic_id.training.asr_tokenizer.Tokenizer"
TOKENIZER_SAMPLE = 10_000
"""Transcripts a SentencePiece trial trains on at first: more only when these are too few, so that
the check takes seconds on LP's ~100k transcribed recordings."""


def _manifest(path):
    from topic_id.config.checks import checked_manifest

    return checked_manifest(path)[1]


def _units_fix(failure):
    """What to do about a failed SentencePiece training, from its message.

    Example
    -------
    >>> _units_fix("Vocabulary size too high (1000). Please set it to a value <= 164.")
    'lower --output_neurons to 164 or fewer, or give the ASR more transcribed data'
    >>> _units_fix("Vocabulary size is smaller than required_chars. 10 vs 24. Increase vocab_size")
    'raise --output_neurons to 24 or more (one unit per character of the text, and <unk>)'
    """
    message = " ".join(str(failure).split())
    high = re.search(r"value <= (\d+)", message)
    if high:
        return f"lower --output_neurons to {high.group(1)} or fewer, or give the ASR more transcribed data"
    low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    if low:
        return f"raise --output_neurons to {low.group(1)} or more (one unit per character of the text, and <unk>)"
    return f"change --output_neurons ({message})"


@contextlib.contextmanager
def _silenced():
    """Discard what is written to stdout and stderr meanwhile, by C++ code too (SentencePiece's trainer
    logs every setting and EM step there); the errors that matter come back as exceptions."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def check_units(tokenizer, rows_needing):
    """Train the SentencePiece model an ASR row would train, in a scratch folder; ConfigError if impossible.

    SentencePiece's own trainer decides (a unigram model of N units needs enough distinct pieces
    in the text; no closed formula gives its limit). At most :data:`TOKENIZER_SAMPLE` transcripts
    are used first; only when those are too few is the whole training text tried.

    Arguments
    ---------
    tokenizer : mapping
        The arguments of a ``!new:topic_id.training.asr_tokenizer.Tokenizer`` of a resolved YAML.
    rows_needing : list of str
        The rows that train it, for the message.
    """
    from topic_id.training.asr_tokenizer import Tokenizer

    train_csv = tokenizer["train_csv"]
    texts = [r["words"].strip() for r in _manifest(train_csv)
             if r.get("subset") == "transcribed" and (r.get("words") or "").strip()]
    who = ", ".join(rows_needing)
    if not texts:
        raise ConfigError(f"{who}: no transcribed row of {train_csv} has words to train the ASR's "
                          "SentencePiece units on; give the corpus manual transcripts (words column)")
    sample = texts if len(texts) <= TOKENIZER_SAMPLE else random.Random(0).sample(texts, TOKENIZER_SAMPLE)
    settings = {k: tokenizer[k] for k in ("vocab_size", "model_type", "character_coverage",
                                          "max_sentencepiece_length") if k in tokenizer}
    for attempt in (sample, texts) if len(sample) < len(texts) else (texts,):
        with tempfile.TemporaryDirectory(prefix="preflight-units-") as tmp:
            text_csv = Path(tmp) / "train.csv"
            with open(text_csv, "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["subset", "words"])
                writer.writerows(["transcribed", t] for t in attempt)
            try:
                with _silenced():
                    Tokenizer(Path(tmp) / "units", str(text_csv), **settings).train()
                return
            except ValueError as err:
                failure = err.__cause__ or err
    n, unit = settings["vocab_size"], settings.get("model_type", "unigram")
    raise ConfigError(f"{who}: output_neurons={n}, but SentencePiece cannot make {n} {unit} units "
                      f"from the {len(texts)} transcribed training texts of {train_csv}: {_units_fix(failure)}")


def check_corpus(rows, data, profile=None, extra=(), root="."):
    """Check a prepared corpus against what the rows, under the profile, will ask of it.

    Arguments
    ---------
    rows : list of dict
        Registry rows to train.
    data : str or Path
        The prepared corpus (``train.csv``, ``dev.csv``, ``test.csv``, ``topics.txt``).
    profile, extra, root
        As :func:`row_hparams`.

    Returns
    -------
    int
        The number of checks that ran.

    Raises
    ------
    ConfigError
        One line naming the row and the key to change.
    """
    from data_prep.manifest import PrepError
    from data_prep.prepared import read_topics
    from topic_id.config.checks import check_data, text_columns
    from topic_id.config.registry import transcriber

    try:
        n_labels = len(read_topics(data))
    except PrepError as err:
        raise ConfigError(str(err)) from None
    units, checks = {}, 0
    for row in rows:
        hp = row_hparams(row, data, profile, extra, root, corpus=True)
        if "n_topics" in hp and int(hp["n_topics"]) != n_labels:
            raise ConfigError(f"row {row['name']}: n_topics is {hp['n_topics']} but {Path(data) / 'topics.txt'} "
                              f"lists {n_labels} topics: drop the --n_topics override or set it to {n_labels}")
        filled_later = transcriber(row) is not None
        visible = dict(hp)
        if filled_later:  # its transcription step adds asr_words: check only the other columns
            for key in ("train_text", "eval_text"):
                if key in visible:
                    kept = [c for c in text_columns(visible[key]) if c != "asr_words"]
                    visible[key] = ",".join(kept)
                    if not kept:
                        visible = {k: v for k, v in visible.items()
                                   if k not in ("text_encoder", "text_target", "trainer")}
        try:
            check_data(visible)
        except ConfigError as err:
            raise ConfigError(f"row {row['name']}: {err}") from None
        limit = hp.get("avoid_if_longer_than")
        if limit:
            subset = hp.get("train_subset", "all")
            kept = [r for r in _manifest(hp["train_csv"]) if (subset == "all" or r.get("subset") == subset)
                    and float(r.get("duration") or 0) <= float(limit)]
            if not kept:
                raise ConfigError(f"row {row['name']}: no {subset} training row is at most "
                                  f"avoid_if_longer_than={limit} s long: raise --avoid_if_longer_than "
                                  "or set it to null")
        for args in instances(hp, TOKENIZER_CLASS):
            key = tuple(sorted((str(k), repr(v)) for k, v in args.items() if k != "model_dir"))
            units.setdefault(key, (args, []))[1].append(row["name"])
        checks += 1
    for args, names in units.values():
        check_units(args, names)
        checks += 1
    return checks
