"""Checks of a table before anything trains: every pretrained model loads, the corpus fits the profile.

A table at the paper's scale runs for days; a model missing from the offline cache, a model folder
that does not load, or a corpus too small for a setting of the profile would otherwise stop it in
whichever step first needs them, after the days of the steps before. Two checks, each ending in one
:class:`~topic_id.errors.ConfigError` that says what to change:

- :func:`check_models`: for the registry rows to train (``recipes/systems.csv``), with the profile
  and overrides the table gives them, every pretrained model their YAMLs build (the text encoder
  :class:`topic_id.models.text_encoder.TextEncoder`, the wav2vec2 :class:`topic_id.models.ssl_encoder.Wav2Vec2`) is
  resolved by :func:`topic_id.models.hub.resolve_model` and its config and tokenizer or feature extractor
  are loaded as the training code will load them; no weights are read. Models that an earlier step
  builds (the demo's stand-ins) are passed as ``built`` and skipped.
- :func:`check_corpus`: on the prepared manifests, what a step would otherwise die of: the
  SentencePiece units of an ASR (a unigram model needs enough distinct pieces in the transcribed
  training text; SentencePiece itself says how many are possible), ``n_topics`` against
  ``topics.txt``, a ``train_subset`` or duration limit that leaves no training row, and text columns
  the corpus lacks (except ``asr_words`` of a row whose transcription step fills it later).

The YAMLs are resolved without being instantiated (instantiating loads weights): HyperPyYAML's own
:func:`~hyperpyyaml.core.resolve_references` with the merged overrides of
:mod:`topic_id.config.overrides`, then a walk for the classes above (:data:`MODEL_CLASSES`).

``python -m topic_id.config.preflight --registry recipes/systems.csv --data DIR --profile paper`` runs
both from the command line (:func:`main`).
"""

import argparse
import contextlib
import csv
import logging
import os
import random
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from topic_id.errors import ConfigError, exit_with, one_line
from topic_id.models.hub import TEXT_ENCODER, WAV2VEC2, ModelNotFound, load_config, load_tokenizer, refetch, resolve_model

logger = logging.getLogger(__name__)

MODEL_CLASSES = {
    "topic_id.models.text_encoder.TextEncoder": (TEXT_ENCODER, "text_dim"),
    "topic_id.models.ssl_encoder.Wav2Vec2": (WAV2VEC2, "wav2vec2_dim"),
}
"""The classes of the system YAMLs that load a pretrained model: its kind, and the key of its width."""
TOKENIZER_CLASS = "topic_id.training.asr_tokenizer.Tokenizer"
TOKENIZER_SAMPLE = 10_000
"""Transcripts a SentencePiece trial trains on at first: more only when these are too few, so that
the check takes seconds on LP's ~100k transcribed recordings."""


@dataclass
class NeededModel:
    """A pretrained model some rows need, as their YAMLs give it.

    Attributes
    ----------
    source : str
        Hub id or folder.
    revision : str or None
        Hub revision.
    download : bool
        The rows' ``hub_download``: a hub id missing from the cache is fetched (the run would too).
    class_name : str
        The YAML class that loads it (a key of :data:`MODEL_CLASSES`).
    hf_cache_dir : str or None
        The Hugging Face cache the class looks in (default ``HF_HUB_CACHE``).
    rows : list of str
        The registry rows that need it.
    widths : dict
        ``{row: width}``: the width each row's YAML expects (``text_dim``, ``wav2vec2_dim``).
    """

    source: str
    revision: object
    download: bool
    class_name: str
    hf_cache_dir: object = None
    rows: list = field(default_factory=list)
    widths: dict = field(default_factory=dict)

    @property
    def kind(self):
        """The :class:`topic_id.models.hub.ModelKind` of the messages."""
        return MODEL_CLASSES[self.class_name][0]


def row_hparams(row, data, profile=None, extra=(), root=".", corpus=False):
    """One registry row's hyperparameters as the table gives them, references resolved, nothing built.

    Arguments
    ---------
    row : dict
        A row of :func:`topic_id.config.registry.load_registry`.
    data : str or Path
        The corpus folder (``--data_folder``; need not exist yet unless ``corpus``).
    profile : str, optional
        The table's ``--profile``.
    extra : sequence of str
        The user's extra ``--key=value`` arguments, after the row's own (a ``--profile`` there wins).
    root : str or Path
        The checkout the registry's ``hparams`` paths are relative to.
    corpus : bool
        The corpus exists: ``n_topics`` then defaults to its ``topics.txt``, as in ``train.py``
        (``text_dim`` and ``wav2vec2_dim`` default to the widths of the models already on this
        machine either way: :func:`topic_id.config.overrides.derived_keys`).

    Returns
    -------
    dict
        The YAML tree (ruamel round-trip): plain values, and tagged mappings (``!new:...``) for the
        objects a training run would build.

    Raises
    ------
    ConfigError
        An unknown key, profile or YAML.
    """
    import ruamel.yaml
    from hyperpyyaml.core import resolve_references
    from speechbrain import parse_arguments

    from topic_id.config.overrides import resolve_overrides, split_profile

    hparams_file = Path(root) / row["hparams"]
    if not hparams_file.is_file():
        raise ConfigError(f"row {row['name']}: {hparams_file} does not exist (give --root, the checkout "
                          "the registry's hparams paths are relative to)")
    given, args = split_profile([*row["overrides"], *extra])
    profile = given or profile
    # SpeechBrain's parser, as train.py's: run options (--device, --precision) are not overrides.
    _, _, overrides = parse_arguments([str(hparams_file), f"--data_folder={data}", *args])
    overrides = resolve_overrides(hparams_file, overrides, profile, corpus=corpus)
    try:
        with open(hparams_file, encoding="utf-8") as f:
            stream = resolve_references(f, overrides)
    except ValueError as err:  # a !PLACEHOLDER left, an override of the wrong structure
        raise ConfigError(f"row {row['name']}: {hparams_file}: {err}") from None
    return ruamel.yaml.YAML().load(stream)


def _tag(node):
    return getattr(getattr(node, "tag", None), "value", None) or ""


def instances(tree, class_name):
    """The argument mappings of every ``!new:<class_name>`` in a resolved YAML tree (each object once).

    Example
    -------
    >>> import io, ruamel.yaml
    >>> tree = ruamel.yaml.YAML().load(io.StringIO("a: !new:x.Y {s: 1}\\nb: [!new:x.Y {s: 2}]"))
    >>> [dict(args) for args in instances(tree, "x.Y")]
    [{'s': 1}, {'s': 2}]
    """
    found, seen, todo = [], set(), [tree]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if _tag(node) == f"!new:{class_name}" and isinstance(node, dict):
            found.append(node)
        if isinstance(node, dict):
            todo.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            todo.extend(reversed(node))
    # References resolve to copies: one object per distinct argument set.
    unique = {}
    for args in found:
        unique.setdefault(repr(sorted((str(k), repr(v)) for k, v in args.items())), args)
    return list(unique.values())


def _is_under(source, paths):
    if not paths:
        return False
    path = Path(str(source)).expanduser().resolve()
    return any(path == p or p in path.parents for p in paths)


def needed_models(rows, data, profile=None, extra=(), root=".", built=()):
    """Every distinct pretrained model the rows need, except those under ``built``.

    Arguments
    ---------
    rows : list of dict
        Registry rows to train.
    data, profile, extra, root
        As :func:`row_hparams`.
    built : iterable of str or Path
        Folders that an earlier step of the table builds (the demo's stand-ins); a model at or
        under one of them is not checked.

    Returns
    -------
    tuple
        ``(needed, skipped)``: lists of :class:`NeededModel`, in the rows' order.
    """
    built = [Path(p).expanduser().resolve() for p in built]
    models = {}
    for row in rows:
        tree = row_hparams(row, data, profile, extra, root)
        for class_name, (_, width_key) in MODEL_CLASSES.items():
            for args in instances(tree, class_name):
                key = (str(args["source"]), args.get("revision"), bool(args.get("hub_download", False)),
                       class_name, args.get("hf_cache_dir"))
                need = models.setdefault(key, NeededModel(*key))
                if row["name"] not in need.rows:
                    need.rows.append(row["name"])
                if width_key in tree:
                    need.widths[row["name"]] = tree[width_key]
    needed, skipped = [], []
    for need in models.values():
        (skipped if _is_under(need.source, built) else needed).append(need)
    return needed, skipped


def load_model_files(path, class_name, source=None):
    """Load what ``class_name`` reads of a resolved model folder besides the weights; returns its config.

    The text encoder's config (typed even without ``model_type``, :func:`topic_id.models.hub.load_config`)
    and tokenizer; the wav2vec2's config and feature extractor, as SpeechBrain's Hugging Face
    integration loads them (``AutoConfig``, ``AutoFeatureExtractor``).
    """
    kind = MODEL_CLASSES[class_name][0]
    if class_name == "topic_id.models.text_encoder.TextEncoder":
        config = load_config(path, source, kind)
        load_tokenizer(path, config)
        return config
    from transformers import AutoConfig, AutoFeatureExtractor

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    AutoFeatureExtractor.from_pretrained(path, local_files_only=True)
    return config


def check_models(rows, data, profile=None, extra=(), root=".", built=()):
    """Resolve and load (no weights) every pretrained model the rows need; ConfigError at the first that fails.

    Arguments
    ---------
    rows, data, profile, extra, root, built
        As :func:`needed_models`.

    Returns
    -------
    tuple
        ``(checked, skipped)``: the names of the models loaded (as reports print them) and the
        sources skipped because an earlier step builds them.

    Raises
    ------
    ConfigError
        One line: the model, the rows that need it, why it is not usable and the commands that
        provide it; or a row's width key (``text_dim``, ``wav2vec2_dim``) that differs from the
        model's hidden size.
    """
    import transformers

    needed, skipped = needed_models(rows, data, profile, extra, root, built)
    checked = []
    for need in needed:
        who = f"{', '.join(need.rows)} need{'s' if len(need.rows) == 1 else ''}"
        try:
            path, name = resolve_model(need.source, need.revision, need.download, need.hf_cache_dir, need.kind)
        except ModelNotFound as err:
            raise ConfigError(one_line(f"{who} the {need.kind.what} {need.source!r}: {err}")) from None
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # its advice on tokenizer classes is not ours
        try:
            config = load_model_files(path, need.class_name, need.source)
        except (OSError, ValueError, KeyError, TypeError, ImportError) as err:
            raise ConfigError(one_line(f"{who} the {need.kind.what} {need.source!r}, which does not load from "
                                       f"{path} ({type(err).__name__}: {err})."
                                       + refetch(need.source, need.kind))) from None
        finally:
            transformers.logging.set_verbosity(verbosity)
        width = int(getattr(config, "hidden_size", 0))
        width_key = MODEL_CLASSES[need.class_name][1]
        for row, expected in need.widths.items():
            if width and int(expected) != width:
                raise ConfigError(f"row {row}: {width_key} is {expected} but the {need.kind.what} {name} is "
                                  f"{width} wide: pass --{width_key}={width}")
        checked.append(name)
    return checked, [need.source for need in skipped]


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
    from data_prep.manifest import PrepError, read_topics
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


def build_parser():
    """The arguments of ``python -m topic_id.config.preflight``."""
    parser = argparse.ArgumentParser(
        prog="python -m topic_id.config.preflight",
        description="Check, before a table trains, that every pretrained model its rows need loads "
                    "(config and tokenizer or feature extractor; no weights) and that the corpus "
                    "fits the profile. Arguments after -- are extra --key=value overrides for every row.")
    parser.add_argument("--registry", required=True, help="the registry CSV (recipes/systems.csv)")
    parser.add_argument("--systems", default=None,
                        help="comma-separated row names (default: every row); no row is added")
    parser.add_argument("--profile", default=None, help="the table's hparams profile (demo, paper, tiny, or a path)")
    parser.add_argument("--data", required=True, help="the corpus folder the rows read (--data_folder)")
    parser.add_argument("--built", nargs="*", default=[], metavar="PATH",
                        help="model folders an earlier step builds (the demo's stand-ins): not checked")
    parser.add_argument("--check", choices=("models", "corpus", "all"), default="all",
                        help="what to check (default: all; corpus needs the prepared corpus)")
    parser.add_argument("--root", default=".",
                        help="the checkout the registry's hparams paths are relative to (default: .)")
    parser.add_argument("--stamp", default=None, metavar="FILE",
                        help="on success, write these arguments to FILE (what a rerun compares)")
    return parser


def select(rows, systems):
    """The rows named in ``systems`` (comma-separated), in registry order; all when None.

    Example
    -------
    >>> rows = [{"name": "asr"}, {"name": "text_man"}]
    >>> [r["name"] for r in select(rows, "text_man")]
    ['text_man']
    >>> select(rows, "text")
    Traceback (most recent call last):
    ...
    topic_id.errors.ConfigError: --systems: no row text; the rows are asr, text_man
    """
    if not systems:
        return list(rows)
    names = [n.strip() for n in systems.split(",") if n.strip()]
    known = [r["name"] for r in rows]
    for name in names:
        if name not in known:
            raise ConfigError(f"--systems: no row {name}; the rows are {', '.join(known)}")
    return [r for r in rows if r["name"] in names]


def main(argv=None):
    """``python -m topic_id.config.preflight``: one info line and exit 0, or one ``error:`` line and exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    logger.setLevel(logging.INFO)
    from topic_id.config.registry import load_registry

    try:
        try:
            rows = select(load_registry(args.registry), args.systems)
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"--registry {args.registry}: {err}") from None
        said = []
        if args.check in ("models", "all"):
            checked, skipped = check_models(rows, args.data, args.profile, extra, args.root, args.built)
            said.append(f"{len(checked)} model(s) load" + (f", {len(skipped)} built later" if skipped else ""))
        if args.check in ("corpus", "all"):
            check_corpus(rows, args.data, args.profile, extra, args.root)
            said.append(f"the corpus {args.data} fits")
    except ConfigError as err:
        exit_with(err)
    logger.info("preflight of %d row(s): %s", len(rows), "; ".join(said))
    if args.stamp:
        import json

        from corpus_tools.files import atomic_write

        with atomic_write(Path(args.stamp)) as f:
            json.dump(stamp_of(argv, extra), f)
    return 0


def stamp_of(argv, extra=()):
    """What ``--stamp`` records of a check: its arguments, the extra overrides after ``--``.

    >>> stamp_of(["--data", "d", "--stamp", "s.json"], ["--lr=1"])
    {'args': ['--data', 'd'], 'extra': ['--lr=1']}
    """
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--stamp":
            skip = True
        elif not arg.startswith("--stamp="):
            args.append(str(arg))
    return {"args": args, "extra": [str(e) for e in extra]}


if __name__ == "__main__":
    raise SystemExit(main())
