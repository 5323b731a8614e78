"""Command-line overrides for ``recipes/train.py``: run profiles and corpus-derived defaults.

A profile (``hparams/profiles/<name>.yaml``) holds the model sizes and epochs one setting uses (the
CPU demo, the paper's LP configuration), so the system YAMLs keep the paper's values and a profile
changes them in one reviewed file. Its ``defaults`` section applies to every system YAML that has the
key; a section named after a YAML's stem (``text``, ``asr``, ...) applies to that YAML only. Command
line values always win over the profile.
"""

import re
from pathlib import Path

import yaml

from data_prep.manifest import read_topics

PROFILE_DIR = Path(__file__).resolve().parent.parent / "hparams" / "profiles"
_TOP_KEY = re.compile(r"^([A-Za-z_]\w*)\s*:", re.MULTILINE)


class Ref(str):
    """A profile value written ``!ref <key>...``, resolved by HyperPyYAML against the system YAML."""


class _ProfileLoader(yaml.SafeLoader):
    """Safe YAML loader that keeps HyperPyYAML ``!ref`` values for later resolution."""


_ProfileLoader.add_constructor("!ref", lambda loader, node: Ref(loader.construct_scalar(node)))


def top_level_keys(hparams_file):
    """The top-level keys of a HyperPyYAML file, without resolving it."""
    return set(_TOP_KEY.findall(Path(hparams_file).read_text(encoding="utf-8")))


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
    """
    path = Path(profile)
    if not path.is_file():
        path = PROFILE_DIR / f"{profile}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"profile {profile!r} not found; known profiles: {known}")
    sections = yaml.load(path.read_text(encoding="utf-8"), Loader=_ProfileLoader) or {}
    keys = top_level_keys(hparams_file)
    out = {k: v for k, v in (sections.get("defaults") or {}).items() if k in keys}
    out.update(sections.get(Path(hparams_file).stem) or {})
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
        A profile name or path (``--profile=`` of train.py).

    Returns
    -------
    str
        Overrides for ``load_hyperpyyaml`` as a YAML string (so ``!ref`` values resolve). ``n_topics`` defaults to the length of the corpus'
        ``topics.txt`` so a corpus with another label set needs no extra flag.
    """
    given = yaml.safe_load(overrides) if overrides else {}
    given = given or {}
    merged = profile_overrides(hparams_file, profile) if profile else {}
    merged.update(given)
    if "n_topics" not in merged and "data_folder" in merged and "n_topics" in top_level_keys(hparams_file):
        merged["n_topics"] = len(read_topics(merged["data_folder"]))
    return "\n".join(_yaml_line(k, v) for k, v in merged.items())


def _yaml_line(key, value):
    if isinstance(value, Ref):
        return f"{key}: !ref {value}"
    return yaml.safe_dump({key: value}, default_flow_style=True, width=10**6).strip()[1:-1]


def environment_description():
    """``env.log`` as SpeechBrain writes it, with the package list from ``importlib.metadata``.

    SpeechBrain's ``get_environment_description`` runs ``pip freeze`` in a subprocess: about two
    seconds per training process (18 in the demo table) and every line echoed into ``log.txt``.
    Same sections here: Python version, installed packages (``name==version``), git revision of
    this project, CUDA version.

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
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True,
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


def write_environment(output_folder):
    """Write :func:`environment_description` to ``<output_folder>/env.log``."""
    (Path(output_folder) / "env.log").write_text(environment_description(), encoding="utf-8")
