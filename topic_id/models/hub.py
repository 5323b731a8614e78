"""One resolver for the pretrained models of both encoders: a local folder or a Hugging Face hub id.

FinBERT (``TurkuNLP/bert-base-finnish-uncased-v1``, :class:`topic_id.models.text_encoder.TextEncoder`) and XLS-R
(``facebook/wav2vec2-xls-r-300m``, or any speech encoder of :class:`topic_id.models.ssl_encoder.SSLEncoder`), their stand-ins and the
pretraining command (:mod:`topic_id.standins`) all find their model through
:func:`resolve_model`:

- a local folder in Hugging Face format is used as it is;
- a hub id is looked up in the local Hugging Face cache (``HF_HUB_CACHE``, or ``cache_dir``) at
  the given revision. Runs are offline by default: a model missing from the cache raises
  :class:`ModelNotFound` with the commands that provide it. Downloading is opt-in: ``download=True``
  (the system YAMLs' ``hub_download`` key, ``--hub_download=True``) or, beforehand,
  ``topic-id download ID`` (:func:`topic_id.cli.main`), which fetches into the same cache.

The name reports print pins what was used: ``org/name@<commit>`` for a hub id (the snapshot
folder of the cache is named by its commit), the path for a folder, and for a stand-in (a folder
with :data:`STANDIN_MARKER`) its own description and what it is not, e.g. ``stand-in BERT (random
init, demo vocab), not FinBERT: /data/standin_bert``.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, snapshot_download

logger = logging.getLogger(__name__)

STANDIN_MARKER = "STANDIN.json"
"""The file that marks a finished stand-in folder and describes it (:mod:`topic_id.standins`)."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".index.json")
HUB_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "pytorch_model*.bin"]
"""What a download fetches: configs, vocabularies and weights (not the TF or Flax copies)."""


class ModelNotFound(FileNotFoundError):
    """A model is not available (locally, or by the opted-in download); the message says how to get it."""


@dataclass(frozen=True)
class ModelKind:
    """What a resolver message says about one kind of model.

    Arguments
    ---------
    what : str
        The role in words (``text encoder``).
    pass_as : str
        How a run takes a local folder (``--text_encoder_source=DIR``).
    real : str
        The published model that a stand-in of this kind replaces (``FinBERT``).
    standin_command : str, optional
        The command that builds a stand-in, for a quick offline run.
    """

    what: str
    pass_as: str
    real: str
    standin_command: str = ""


TEXT_ENCODER = ModelKind("text encoder", "--text_encoder_source=DIR", "FinBERT",
                         "python -m topic_id.standins build-bert --manifests DATA --out DIR")
SSL_ENCODER = ModelKind("audio encoder", "--ssl_source=DIR", "XLS-R",
                        "python -m topic_id.standins build-wav2vec2 --out DIR")
WAV2VEC2 = SSL_ENCODER
"""The older name of :data:`SSL_ENCODER`."""
ANY_MODEL = ModelKind("model", "the folder as --text_encoder_source=DIR or --ssl_source=DIR",
                      "the published model")


def _capital(text):
    """``text`` with its first letter upper-case, the rest as written (``ASR model`` stays so)."""
    return text[:1].upper() + text[1:]


def is_hub_id(source):
    """Whether ``source`` is written as a hub id (``org/name`` or ``name``) rather than a path.

    Example
    -------
    >>> [is_hub_id(s) for s in ("TurkuNLP/bert-base-finnish-uncased-v1", "gpt2", "./bert",
    ...                         "/models/bert", "~/bert", "data/models/bert", "C:\\\\bert")]
    [True, True, False, False, False, False, False]
    """
    source = str(source)
    return not (source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source)


def howto(source, kind=ANY_MODEL):
    """The instructions a :class:`ModelNotFound` ends with.

    Example
    -------
    >>> lines = howto("Org/model", SSL_ENCODER).splitlines()
    >>> lines[1].split()[:4], lines[2].split("DIR.")[0]
    (['hf', 'download', 'Org/model', '--local-dir'], 'and pass --ssl_source=')
    """
    text = (
        f"To get it: run `topic-id download {source}` where there is internet access (into the "
        f"Hugging Face cache, HF_HUB_CACHE; copy the cache to an offline machine), or pass "
        f"--hub_download=True to the training run; or run\n"
        f"    hf download {source} --local-dir DIR        (older clients: huggingface-cli download)\n"
        f"and pass {kind.pass_as}."
    )
    if kind.standin_command:
        text += f" For a quick offline run, build a stand-in: {kind.standin_command}"
    return text


def refetch(source, kind=ANY_MODEL):
    """What a message about a model that does not load ends with: :func:`howto` for a hub id, nothing
    for a folder (the user's own files, which only they can fix).

    Example
    -------
    >>> refetch("/models/bert"), refetch("Org/model").split()[:4]
    ('', ['To', 'get', 'it:', 'run'])
    """
    return "\n" + howto(source, kind) if is_hub_id(source) else ""


def resolve_model(source, revision=None, download=False, cache_dir=None, kind=ANY_MODEL):
    """Find the folder of a model given as a local folder or a hub id; fetch only when allowed.

    Arguments
    ---------
    source : str or Path
        A folder in Hugging Face format, or a hub id (``org/name``).
    revision : str, optional
        Branch, tag or commit of a hub id (ignored, with a log line, for a folder); pin a commit
        for reproducible runs.
    download : bool
        Fetch a hub id missing from the local cache (off by default: runs are offline).
    cache_dir : str, optional
        The Hugging Face hub cache (default: ``HF_HUB_CACHE``).
    kind : ModelKind
        What the messages say (:data:`TEXT_ENCODER`, :data:`SSL_ENCODER` or :data:`ANY_MODEL`).

    Returns
    -------
    tuple
        ``(path, name)``: the folder, and what reports print (``org/name@<commit>``, the path,
        or ``<stand-in description>, not <real model>: <path>``).

    Raises
    ------
    ModelNotFound
        When the model is not available; the message names it and says how to get it.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}"), (folder / "model.safetensors").write_bytes(b"")
    >>> resolve_model(folder)[1] == str(folder.resolve())
    True
    >>> _ = (folder / STANDIN_MARKER).write_text('{"description": "stand-in BERT (random init)"}')
    >>> resolve_model(folder, kind=TEXT_ENCODER)[1].startswith("stand-in BERT (random init), not FinBERT: /")
    True
    """
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        path = path.resolve()
        if revision:
            logger.info("revision %r ignored for the local folder %s", revision, path)
        name = str(path)
    elif not is_hub_id(source):
        raise ModelNotFound(f"{_capital(kind.what)} folder {source!r} does not exist.\n"
                            + howto("<hub id>", kind))
    else:
        try:
            path = Path(snapshot_download(source, revision=revision, cache_dir=cache_dir,
                                          local_files_only=not download, allow_patterns=HUB_FILES))
        except Exception as err:  # LocalEntryNotFoundError, HFValidationError, network errors
            where = cache_dir or constants.HF_HUB_CACHE
            detail = " ".join(str(err).split())
            detail = detail if len(detail) <= 160 else detail[:160].rsplit(" ", 1)[0] + " ..."
            how = (f"downloading it failed ({type(err).__name__}: {detail})" if download
                   else f"run-time downloads are off ({type(err).__name__})")
            raise ModelNotFound(
                f"{_capital(kind.what)} {source!r} (revision {revision or 'main'}) is not "
                f"available: it is not a local folder and not in the local Hugging Face cache "
                f"({where}), and {how}.\n" + howto(source, kind)
            ) from None
        name = f"{source}@{path.name}"
    _check_model_dir(path, source, kind)
    description = standin_description(path)
    if description is not None:
        name = f"{description}, not {kind.real}: {name}"
    return path, name


def _check_model_dir(path, source, kind):
    if not (path / "config.json").is_file():
        raise ModelNotFound(f"{_capital(kind.what)} {source!r}: {path} has no config.json, so it "
                            "is not a model saved in Hugging Face format.\n" + howto(source, kind))
    if not any(f.name.endswith(WEIGHT_SUFFIXES) for f in path.iterdir()):
        raise ModelNotFound(f"{_capital(kind.what)} {source!r}: {path} has no weights "
                            "(model.safetensors or pytorch_model.bin).\n" + howto(source, kind))


MODEL_TYPE_KEYS = (
    ("bert", ("vocab_size", "hidden_size", "num_attention_heads", "num_hidden_layers", "type_vocab_size")),
    ("wav2vec2", ("conv_dim", "conv_stride", "conv_kernel", "num_feat_extract_layers")),
)
"""The ``config.json`` keys that identify a model type when the file names none (checked in order)."""


def infer_model_type(config):
    """The ``model_type`` a ``config.json`` (a dict) names, or says through its other fields.

    transformers 5 no longer guesses the type from a folder's name, and the configs that Google's
    BERT conversion writes (``bert_config.json`` renamed, as TurkuNLP's instructions for FinBERT
    do) have no ``model_type``: the type then comes from ``architectures`` (any class transformers
    maps to a type) or from the keys only one family has (:data:`MODEL_TYPE_KEYS`).

    Returns
    -------
    str or None
        None when nothing says which type it is.

    Example
    -------
    >>> infer_model_type({"architectures": ["BertForPreTraining"]})
    'bert'
    >>> infer_model_type({"vocab_size": 50105, "hidden_size": 768, "num_attention_heads": 12,
    ...                   "num_hidden_layers": 12, "type_vocab_size": 2})
    'bert'
    >>> infer_model_type({"architectures": ["Wav2Vec2ForPreTraining"]}), infer_model_type({})
    ('wav2vec2', None)
    """
    if config.get("model_type"):
        return str(config["model_type"])
    known = _architecture_types()
    for architecture in config.get("architectures") or ():
        if architecture in known:
            return known[architecture]
    for model_type, keys in MODEL_TYPE_KEYS:
        if all(key in config for key in keys):
            return model_type
    return None


def _architecture_types():
    """Class name -> model type, from every model mapping transformers knows."""
    from transformers.models.auto import modeling_auto

    types = {}
    for name in dir(modeling_auto):
        mapping = getattr(modeling_auto, name)
        if not (name.endswith("_MAPPING_NAMES") and isinstance(mapping, dict)):
            continue
        for model_type, classes in mapping.items():
            for cls in (classes,) if isinstance(classes, str) else classes:
                types.setdefault(cls, model_type)
    return types


def load_config(path, source=None, kind=ANY_MODEL):
    """The Hugging Face config of a resolved model folder (no weights), typed even without ``model_type``.

    A config that names its ``model_type`` loads through ``AutoConfig`` as usual; one that does
    not is read by the config class of :func:`infer_model_type`, so the folder stays as the user
    made it. Pass the result as ``config=`` to ``AutoModel``/``AutoTokenizer.from_pretrained``,
    which would otherwise fail on the same file.

    Arguments
    ---------
    path : str or Path
        The model folder (:func:`resolve_model`).
    source : str, optional
        How the user named the model, for the message (default: ``path``).
    kind : ModelKind
        What the message says.

    Returns
    -------
    transformers.PretrainedConfig

    Raises
    ------
    ModelNotFound
        ``config.json`` is not valid JSON, or names no model type and says none.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text('{"architectures": ["BertModel"], "hidden_size": 24, '
    ...                                         '"num_attention_heads": 2}')
    >>> config = load_config(folder)
    >>> type(config).__name__, config.hidden_size
    ('BertConfig', 24)
    """
    from transformers import CONFIG_MAPPING, AutoConfig

    path = Path(path)
    source = str(path) if source is None else source
    try:
        fields = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelNotFound(f"{_capital(kind.what)} {source!r}: cannot read {path / 'config.json'} "
                            f"({err})." + refetch(source, kind)) from None
    if fields.get("model_type"):
        return AutoConfig.from_pretrained(path, local_files_only=True)
    model_type = infer_model_type(fields)
    if model_type not in CONFIG_MAPPING:
        raise ModelNotFound(
            f"{_capital(kind.what)} {source!r}: {path / 'config.json'} has no model_type, and "
            "neither its architectures nor its keys say which model it is; add one, e.g. "
            '"model_type": "bert".' + refetch(source, kind))
    logger.info("%s has no model_type in config.json: read as %s (from its %s)", source, model_type,
                "architectures" if fields.get("architectures") else "keys")
    return CONFIG_MAPPING[model_type].from_pretrained(path, local_files_only=True)


def load_tokenizer(path, config=None):
    """The tokenizer of a model folder, typed by its config (:func:`load_config`) when it has no own config.

    A folder with only ``vocab.txt`` (no ``tokenizer.json`` or ``tokenizer_config.json``, as a
    converted Google BERT checkpoint) gets the tokenizer its model type uses (BERT's WordPiece).

    Raises
    ------
    ValueError
        The tokenizer's vocabulary does not fit the model's: transformers builds a tokenizer of the
        special tokens alone when ``vocab.txt`` is missing, which maps every word to ``[UNK]``; ids
        beyond the model's ``vocab_size`` would index past its embeddings.
    """
    from transformers import AutoTokenizer

    config = load_config(path) if config is None else config
    tokenizer = AutoTokenizer.from_pretrained(path, config=config, local_files_only=True)
    size, expected = len(tokenizer), getattr(config, "vocab_size", None)
    # Half: some models pad their embedding table beyond the vocabulary (to a multiple of 64 or 128).
    if expected and not expected // 2 <= size <= expected:
        raise ValueError(f"its tokenizer has {size} entries but the model's vocabulary has {expected} "
                         f"(vocab_size of config.json); is the vocabulary file (vocab.txt) missing from {path}?")
    return tokenizer


def standin_description(folder):
    """What a stand-in folder says it is (its marker's ``description``), or None for a real model.

    A marker that cannot be read still marks a stand-in: its description is then ``stand-in``.
    """
    marker = Path(folder) / STANDIN_MARKER
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["description"])
    except (OSError, ValueError, KeyError, TypeError):
        return "stand-in"


def download_model(source, revision=None, cache_dir=None):
    """Fetch a hub model into the Hugging Face cache (``topic-id download``); returns ``(path, name)``.

    A local folder is only checked. Runs then find the model offline by its hub id.
    """
    return resolve_model(source, revision, download=True, cache_dir=cache_dir)

