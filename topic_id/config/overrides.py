"""Command-line overrides for ``recipes/train.py``: run profiles and corpus-derived defaults.

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
"""

import difflib
import io
import re
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from data_prep.manifest import read_topics
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


def resolve_overrides(hparams_file, overrides, profile=None):
    """Merge profile, corpus and command-line overrides.

    Arguments
    ---------
    hparams_file : str
        The system YAML.
    overrides : str
        The YAML string of ``--key=value`` arguments from ``speechbrain.parse_arguments``.
    profile : str, optional
        A profile name or path (``--profile`` of train.py).

    Returns
    -------
    str
        Overrides for ``load_hyperpyyaml`` as a YAML string (so ``!ref`` values resolve). ``n_topics``
        defaults to the length of the corpus' ``topics.txt`` so a corpus with another label set needs
        no extra flag.

    Raises
    ------
    ConfigError
        A key the YAML lacks, invalid YAML, an unknown profile.
    """
    given = read_yaml_map(overrides, "the overrides")
    keys = top_level_keys(hparams_file)
    check_keys(given, keys, hparams_file)
    merged = profile_overrides(hparams_file, profile) if profile else {}
    merged.update(given)
    folder = merged.get("data_folder")
    if "n_topics" not in merged and isinstance(folder, str) and "n_topics" in keys:
        merged["n_topics"] = len(read_topics(folder))
    return dump_yaml_map(merged)


def environment_description(checkout="."):
    """``env.log`` as SpeechBrain writes it, with the package list from ``importlib.metadata``.

    SpeechBrain's ``get_environment_description`` runs ``pip freeze`` in a subprocess: about two
    seconds per training process (18 in the demo table) and every line echoed into ``log.txt``.
    Same sections here: Python version, installed packages (``name==version``), git revision of
    the checkout at ``checkout``, CUDA version.

    Returns
    -------
    str
    """
    import subprocess
    import sys
    from importlib import metadata

    import torch

    packages = sorted({f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()
                       if d.metadata["Name"]}, key=str.lower)
    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=checkout, text=True,
                             capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        git = "not a git checkout"
    if torch.cuda.is_available():
        cuda = f"CUDA version:\n{torch.version.cuda or torch.version.hip}"
    else:
        cuda = "CUDA not available"
    rule = "=============================="
    return "\n".join(["SpeechBrain system description", rule, f"Python version:\n{sys.version}", rule,
                      "Installed Python packages:", *packages, rule, f"Git revision:\n{git}", rule, cuda, ""])


def write_environment(output_folder, hparams_file="."):
    """Write :func:`environment_description` to ``<output_folder>/env.log``.

    The git revision is that of the checkout holding ``hparams_file`` (the recipes), not of the
    installed library, which may be a wheel outside any repository.
    """
    text = environment_description(Path(hparams_file).resolve().parent)
    (Path(output_folder) / "env.log").write_text(text, encoding="utf-8")
