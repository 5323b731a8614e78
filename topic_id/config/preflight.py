"""Checks of a table before anything trains: every pretrained model loads, the corpus fits the profile.

A table at the paper's scale runs for days; a model missing from the offline cache, a model folder
that does not load, or a corpus too small for a setting of the profile would otherwise stop it in
whichever step first needs them, after the days of the steps before. Two checks, each ending in one
:class:`~topic_id.errors.ConfigError` that says what to change:

- :func:`check_models`: for the registry rows to train (``recipes/systems.csv``), with the profile
  and overrides the table gives them, every pretrained model their YAMLs build (the text encoder
  :class:`topic_id.models.text_encoder.TextEncoder`, the speech encoder :class:`topic_id.models.ssl_encoder.SSLEncoder`) is
  resolved by :func:`topic_id.models.hub.resolve_model` and its config and tokenizer or feature extractor
  are loaded as the training code will load them; no weights are read. Models that an earlier step
  builds (the demo's stand-ins) are passed as ``built`` and skipped.
- :func:`topic_id.config.corpus_fit.check_corpus`: on the prepared manifests, what a step would otherwise die of: the
  SentencePiece units of an ASR (a unigram model needs enough distinct pieces in the transcribed
  training text; SentencePiece itself says how many are possible), ``n_topics`` against
  ``topics.txt``, a ``train_subset`` or duration limit that leaves no training row, and text columns
  the corpus lacks (except ``asr_words`` of a row whose transcription step fills it later).

The YAMLs are resolved without being instantiated (instantiating loads weights:
:mod:`topic_id.config.row_config`), then walked for the classes above (:data:`MODEL_CLASSES`).

``python -m topic_id.config.preflight --registry recipes/systems.csv --data DIR --profile paper`` runs
both from the command line (:func:`main`).
"""

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from topic_id.config.corpus_fit import check_corpus
from topic_id.config.row_config import instances, row_hparams
from topic_id.errors import ConfigError, exit_with, one_line
from topic_id.models.hub import SSL_ENCODER, TEXT_ENCODER, ModelNotFound, load_config, load_tokenizer, refetch, resolve_model

logger = logging.getLogger(__name__)

MODEL_CLASSES = {
    "topic_id.models.text_encoder.TextEncoder": (TEXT_ENCODER, "text_dim"),
    "topic_id.models.ssl_encoder.SSLEncoder": (SSL_ENCODER, "ssl_dim"),
    "topic_id.models.ssl_encoder.Wav2Vec2": (SSL_ENCODER, "wav2vec2_dim"),
}
"""The classes of the system YAMLs that load a pretrained model: its kind, and the key of its width."""
SSL_FEATURES = "topic_id.models.ssl_features.front_end"
"""The audio front end of the filter-bank systems; with ``kind: ssl`` it loads a speech encoder."""
SAME_LOADING = {"topic_id.models.text_finetune.FinetunedTextEncoder": "topic_id.models.text_encoder.TextEncoder"}
"""Classes that load their model as another class of :data:`MODEL_CLASSES` does (the fine-tuned
text row's encoder: the frozen encoder's config and tokenizer), so a model is listed once."""


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
        ``{row: width}``: the width each row's YAML expects (``text_dim``, ``ssl_dim``).
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


def _is_under(source, paths):
    if not paths:
        return False
    path = Path(str(source)).expanduser().resolve()
    return any(path == p or p in path.parents for p in paths)


def _need(models, args, class_name, row):
    key = (str(args["source"]), args.get("revision"), bool(args.get("hub_download", False)),
           class_name, args.get("hf_cache_dir"))
    need = models.setdefault(key, NeededModel(*key))
    if row["name"] not in need.rows:
        need.rows.append(row["name"])
    return need


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
        for class_name in [*MODEL_CLASSES, *SAME_LOADING]:
            loads_as = SAME_LOADING.get(class_name, class_name)
            width_key = MODEL_CLASSES[loads_as][1]
            for args in instances(tree, class_name):
                need = _need(models, args, loads_as, row)
                if width_key in tree:
                    need.widths[row["name"]] = tree[width_key]
        # features: ssl loads its encoder as the Wav2vec2 row does; its width is read, never given.
        for front_end in instances(tree, SSL_FEATURES, tag="apply"):
            if front_end.get("kind") == "ssl":
                _need(models, front_end["ssl"], "topic_id.models.ssl_encoder.SSLEncoder", row)
    needed, skipped = [], []
    for need in models.values():
        (skipped if _is_under(need.source, built) else needed).append(need)
    return needed, skipped


def load_model_files(path, class_name, source=None):
    """Load what ``class_name`` reads of a resolved model folder besides the weights; returns its config.

    The text encoder's config (typed even without ``model_type``, :func:`topic_id.models.hub.load_config`)
    and tokenizer; the speech encoder's config and feature extractor, as
    :class:`topic_id.models.ssl_encoder.SSLEncoder` loads them (``AutoConfig``, ``AutoFeatureExtractor``).
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
        provide it; or a row's width key (``text_dim``, ``ssl_dim``) that differs from the
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
