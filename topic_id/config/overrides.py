"""Command-line overrides for ``recipes/train.py``: run profiles and the keys read from the corpus and models.

A profile (``hparams/profiles/<name>.yaml``, found beside the system YAML, or any path) holds the
model sizes and epochs one setting uses (the CPU demo, the paper's LP configuration), so the system
YAMLs keep the paper's values and a profile changes them in one reviewed file. Its ``defaults``
section applies to every system YAML that has the key; a section named after a YAML's stem
(``text``, ``asr``, ...) applies to that YAML only. Command line values always win over the profile.

Overrides are whatever SpeechBrain's ``parse_arguments`` and HyperPyYAML accept (``--lr=0.1``,
``--opt_class=!name:torch.optim.AdamW``, ``--src=!ref <data_folder>/x``): they are read and written
back with ruamel.yaml's round-trip mode, the parser HyperPyYAML itself uses, so every tag survives
the merge with the profile. A key the YAML lacks is a :class:`~topic_id.errors.ConfigError` naming
the nearest keys (HyperPyYAML's own message is a Python list of every key).

Keys the corpus or a model fixes (``n_topics``, ``text_dim``, ``ssl_dim``:
:func:`derived_keys`) are read from them unless the profile or the command line sets them, and go
into the overrides like any other: the run's ``hyperparams.yaml`` shows the value that trained, and
``recipes/train.py`` logs where each was read.
"""

import difflib
import io
import json
import re
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from data_prep.prepared import read_topics
from topic_id.errors import ConfigError

_TOP_KEY = re.compile(r"^([A-Za-z_]\w*)\s*:", re.MULTILINE)
_TOP_ENTRY = re.compile(r"^(?=[A-Za-z_])", re.MULTILINE)


def _round_trip():
    yaml = YAML()
    yaml.width = 10**6  # one override per line, however long
    return yaml


def read_yaml_map(text, what):
    r"""A YAML mapping with its tags kept (ruamel round-trip), or ConfigError naming ``what``.

    A key given twice keeps its last value, as a repeated command-line option does (``--seed=1
    ... --seed=2``); YAML itself would refuse the duplicate.

    Example
    -------
    >>> overrides = read_yaml_map("opt_class: !name:torch.optim.AdamW\nlr: 0.1\nlr: 0.2", "overrides")
    >>> overrides["opt_class"].tag.value, overrides["lr"]
    ('!name:torch.optim.AdamW', 0.2)
    """
    merged = {}
    # One top-level entry at a time (an entry's nested lines stay with it), later ones winning.
    for entry in _TOP_ENTRY.split(text or ""):
        try:
            data = _round_trip().load(entry) if entry.strip() else None
        except YAMLError as err:
            raise ConfigError(f"{what} are not valid YAML ({str(err).splitlines()[0]})") from None
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{what} must be key: value pairs, got {entry.strip()!r}")
        merged.update(data)
    return merged


def dump_yaml_map(mapping):
    r"""The inverse of :func:`read_yaml_map`: YAML text, tags as written.

    Example
    -------
    >>> print(dump_yaml_map(read_yaml_map("src: !ref <data_folder>/bert\nlr: 0.1", "overrides")), end="")
    src: !ref <data_folder>/bert
    lr: 0.1
    """
    out = io.StringIO()
    if mapping:
        _round_trip().dump(dict(mapping), out)
    return out.getvalue()


def split_profile(argv):
    """Take ``--profile X`` / ``--profile=X`` out of train.py's arguments (the last one wins).

    SpeechBrain's parser would read ``--profile`` as an abbreviation of ``--profile_training``.

    Example
    -------
    >>> split_profile(["sys.yaml", "--profile", "demo", "--lr=0.1", "--profile=tiny"])
    ('tiny', ['sys.yaml', '--lr=0.1'])
    """
    profile, rest, args = None, [], iter(argv)
    for arg in args:
        if arg == "--profile":
            profile = next(args, None)
            if profile is None:
                raise ConfigError("--profile needs a value: a profile name (demo, paper, tiny) or a YAML path")
        elif arg.startswith("--profile="):
            profile = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return profile, rest


def top_level_keys(hparams_file):
    """The top-level keys of a HyperPyYAML file, without resolving it."""
    return set(_TOP_KEY.findall(Path(hparams_file).read_text(encoding="utf-8")))


def check_keys(given, keys, hparams_file, source="--"):
    """ConfigError for the first key of ``given`` that is not in ``keys``, with the nearest ones.

    Example
    -------
    >>> check_keys({"lr": 1, "number_of_epoch": 2}, {"lr", "number_of_epochs", "seed"}, "text.yaml")
    Traceback (most recent call last):
    ...
    topic_id.errors.ConfigError: --number_of_epoch: text.yaml has no such key; nearest: number_of_epochs
    """
    for key in given:
        if key not in keys:
            near = difflib.get_close_matches(str(key), sorted(keys), n=3, cutoff=0.6)
            hint = f"nearest: {', '.join(near)}" if near else "its top-level keys are the overridable ones"
            raise ConfigError(f"{source}{key}: {Path(hparams_file).name} has no such key; {hint}")


def profile_path(hparams_file, profile):
    """The profile YAML: a path, or ``<name>.yaml`` in ``profiles/`` beside the system YAML."""
    path = Path(profile)
    if path.is_file():
        return path
    folder = Path(hparams_file).resolve().parent / "profiles"
    path = folder / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"profile {profile!r} not found in {folder}; known profiles: {known}, or give a YAML path")
    return path


def profile_overrides(hparams_file, profile):
    """The overrides a profile gives one system YAML.

    Arguments
    ---------
    hparams_file : str
        The system YAML.
    profile : str
        A profile name (``demo``) or a path to a profile YAML.

    Returns
    -------
    dict
        Values as ruamel reads them (``!ref`` and other tags kept).
    """
    path = profile_path(hparams_file, profile)
    sections = read_yaml_map(path.read_text(encoding="utf-8"), f"the profile {path}")
    keys = top_level_keys(hparams_file)
    out = {k: v for k, v in (sections.get("defaults") or {}).items() if k in keys}
    own = sections.get(Path(hparams_file).stem) or {}
    check_keys(own, keys, hparams_file, source=f"{path.name}, section {Path(hparams_file).stem}: ")
    out.update(own)
    return out


def resolve_overrides(hparams_file, overrides, profile=None, with_derived=False, corpus=True):
    """Merge profile, corpus and command-line overrides.

    Arguments
    ---------
    hparams_file : str
        The system YAML.
    overrides : str
        The YAML string of ``--key=value`` arguments from ``speechbrain.parse_arguments``.
    profile : str, optional
        A profile name or path (``--profile`` of train.py).
    with_derived : bool
        Also return what :func:`derived_keys` filled in.
    corpus : bool
        The corpus is prepared: ``n_topics`` is read from it (as :func:`derived_keys`).

    Returns
    -------
    str, or (str, dict) with ``with_derived``
        Overrides for ``load_hyperpyyaml`` as a YAML string (so ``!ref`` values resolve): the
        profile's, the command line's, and the keys :func:`derived_keys` reads from the corpus and
        the models for those neither sets; with ``with_derived``, also ``{key: where it was read}``.

    Raises
    ------
    ConfigError
        A key the YAML lacks, invalid YAML, an unknown profile.
    """
    given = read_yaml_map(overrides, "the overrides")
    keys = top_level_keys(hparams_file)
    check_keys(given, keys, hparams_file)
    merged = profile_overrides(hparams_file, profile) if profile else {}
    for old, new in OLDER_NAMES.items():
        if old in given and new not in given and old in keys:
            merged.pop(new, None)  # the command line's older name beats the profile's new one
    merged.update(given)
    derived = derived_keys(hparams_file, merged, corpus)
    merged.update({key: value for key, (value, _) in derived.items()})
    text = dump_yaml_map(merged)
    if with_derived:
        return text, {key: origin for key, (_, origin) in derived.items()}
    return text


# Keys a model fixes, and the keys naming that model (its source and revision): the width of the
# vectors the system's layers take in must be the model's hidden size.
MODEL_WIDTHS = {
    "text_dim": ("text_encoder_source", "text_encoder_revision"),
    "ssl_dim": ("ssl_source", "ssl_revision"),
    "wav2vec2_dim": ("wav2vec2_source", "wav2vec2_revision"),
}
# Older names of keys, kept by the YAMLs that renamed them (the new key defaults to the old one's
# value, and wins where both are given). A width given by either name is not read from the model;
# given neither, both get its width. An older name on the command line beats the new name in a profile.
OLDER_NAMES = {"wav2vec2_dim": "ssl_dim", "wav2vec2_source": "ssl_source",
               "wav2vec2_revision": "ssl_revision", "freeze_wav2vec2": "ssl_freeze"}


def derived_keys(hparams_file, overrides, corpus=True):
    r"""The keys the corpus and the models fix, for those the overrides leave at the YAML's default.

    ``n_topics`` is the number of labels in ``<data_folder>/topics.txt``; ``text_dim`` and
    ``ssl_dim`` (:data:`MODEL_WIDTHS`) the hidden size in the ``config.json`` of the model the
    YAML and overrides name (a local folder, or a hub id already in the local cache). A key the
    overrides set, by its name or its older name (:data:`OLDER_NAMES`), is left alone (the checks
    after loading compare it with the corpus and the model); so is one whose corpus or model
    cannot be read yet (the YAML's default stays).

    Arguments
    ---------
    hparams_file : str or Path
        The system YAML.
    overrides : dict
        The profile's and command line's overrides, as :func:`read_yaml_map` reads them.
    corpus : bool
        Read ``n_topics`` from the corpus (False: a check made before the corpus is prepared).

    Returns
    -------
    dict
        ``{key: (value, where it was read)}``.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "topics.txt").write_text("sport\nmusic\n")
    >>> _ = (folder / "sys.yaml").write_text("data_folder: !PLACEHOLDER\nn_topics: 8\n")
    >>> derived_keys(folder / "sys.yaml", {"data_folder": str(folder)})["n_topics"][0]
    2
    >>> derived_keys(folder / "sys.yaml", {"data_folder": str(folder), "n_topics": 3})
    {}
    >>> _ = (folder / "config.json").write_text('{"hidden_size": 48}')
    >>> _ = (folder / "model.safetensors").write_bytes(b"")
    >>> _ = (folder / "ssl.yaml").write_text("wav2vec2_dim: 1024\nssl_dim: !ref <wav2vec2_dim>\n"
    ...                                      "ssl_source: !PLACEHOLDER\nssl_revision: null\n")
    >>> sorted((k, v[0]) for k, v in derived_keys(folder / "ssl.yaml", {"ssl_source": str(folder)}).items())
    [('ssl_dim', 48), ('wav2vec2_dim', 48)]
    >>> derived_keys(folder / "ssl.yaml", {"ssl_source": str(folder), "wav2vec2_dim": 40})
    {}
    """
    keys = top_level_keys(hparams_file)
    renamed = {old: new for old, new in OLDER_NAMES.items() if old in keys and new in keys}
    given = set(overrides) | {renamed[k] for k in overrides if k in renamed}
    given |= {old for old, new in renamed.items() if new in given}
    wanted = [k for k in ("n_topics", *MODEL_WIDTHS) if k in keys and k not in given]
    if not wanted:
        return {}
    values = _Resolver(hparams_file, overrides)
    out = {}
    folder = values.get("data_folder")
    if "n_topics" in wanted and corpus and isinstance(folder, str):
        out["n_topics"] = (len(read_topics(folder)), str(Path(folder) / "topics.txt"))
    for key in wanted:
        if key in MODEL_WIDTHS and key not in renamed:
            source, revision = (values.get(k) for k in MODEL_WIDTHS[key])
            width = model_width(source, revision) if isinstance(source, str) else None
            if width is not None:
                out[key] = width
    for old, new in renamed.items():
        if new in out and old in wanted:
            out[old] = out[new]
    return out


def model_width(source, revision=None):
    """``(hidden size, config.json path)`` of a local model folder or a cached hub id, or None.

    The hidden size is ``hidden_size``, or ``d_model`` where the config names it so (Whisper).

    Nothing is downloaded: a model not yet on this machine gives None, and loading the model
    later says how to get it.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text('{"hidden_size": 48}')
    >>> _ = (folder / "model.safetensors").write_bytes(b"")
    >>> model_width(folder)[0], model_width(folder / "missing")
    (48, None)
    """
    from topic_id.models.hub import ModelNotFound, resolve_model

    try:
        path, _ = resolve_model(source, revision)
        config = path / "config.json"
        fields = json.loads(config.read_text(encoding="utf-8"))
        width = fields.get("hidden_size", fields.get("d_model"))
    except (ModelNotFound, OSError, ValueError):
        return None
    return (int(width), str(config)) if isinstance(width, int) else None


class _Resolver:
    """Top-level values of a system YAML under overrides, ``!ref <key>`` substituted.

    Enough for the keys :func:`derived_keys` reads (a path or a hub id, perhaps ``!ref
    <data_folder>/x``); HyperPyYAML's full resolution of the whole file costs about half a second.
    A value that is not a plain string, number or null after substitution reads as None.
    """

    _REF = re.compile(r"<([A-Za-z_]\w*)>")

    def __init__(self, hparams_file, overrides):
        self.defaults = read_yaml_map(Path(hparams_file).read_text(encoding="utf-8"), str(hparams_file))
        self.overrides = overrides

    def get(self, key, seen=()):
        value = self.overrides.get(key, self.defaults.get(key))
        tag = getattr(getattr(value, "tag", None), "value", None)
        if tag == "!ref":
            text = str(value)
            refs = self._REF.findall(text)
            if key in seen or self._REF.sub("", text).count("<"):
                return None
            parts = {name: self.get(name, (*seen, key)) for name in refs}
            if any(not isinstance(v, (str, int, float)) for v in parts.values()):
                return None
            return self._REF.sub(lambda m: str(parts[m.group(1)]), text)
        if tag:
            return None
        return value if value is None or isinstance(value, (str, int, float)) else None
