"""Every system YAML is in the registry, and every top-level key is used by something."""

import re

import pytest
from speechbrain.utils.run_opts import RunOptions

from topic_id.config.overrides import top_level_keys
from topic_id.config.registry import load_registry
from conftest import REGISTRY, ROOT

SYSTEM_YAMLS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "hparams").glob("*.yaml"))
PYTHON = "\n".join(
    p.read_text(encoding="utf-8")
    for folder in ("topic_id", "recipes")
    for p in (ROOT / folder).rglob("*.py")
)
# Keys SpeechBrain's Brain reads from hparams by name (run options such as ckpt_interval_minutes).
BRAIN_RUN_OPTS = set(RunOptions().as_dict())


def test_every_yaml_is_registered():
    registered = {row["hparams"] for row in load_registry(REGISTRY)}
    assert set(SYSTEM_YAMLS) <= registered, set(SYSTEM_YAMLS) - registered


def _used_in_python(key):
    return re.search(rf"""(\[["']{key}["']\]|\.{key}\b|get\(["']{key}["'])""", PYTHON) is not None


@pytest.mark.parametrize("path", SYSTEM_YAMLS + sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "hparams" / "modules").glob("*.yaml")))
def test_every_key_is_used(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    unused = []
    for key in sorted(top_level_keys(ROOT / path)):
        referenced = re.search(rf"<{key}(\[|>|\s*[-+*/])", text) is not None
        if key.startswith("__") or referenced or key in BRAIN_RUN_OPTS or _used_in_python(key):
            continue
        unused.append(key)
    assert not unused, f"{path}: keys nothing reads: {unused}"


def test_profiles_only_set_existing_keys():
    """A profile section names a system YAML and only keys it has (profile_overrides checks); the
    ``table`` section is the table's own (topic_id/table/planner.py reads it)."""
    from topic_id.config.overrides import profile_overrides, read_yaml_map

    for profile in (ROOT / "hparams" / "profiles").glob("*.yaml"):
        sections = read_yaml_map(profile.read_text(encoding="utf-8"), profile.name)
        for stem in sections:
            if stem not in ("defaults", "table"):
                assert (ROOT / "hparams" / f"{stem}.yaml").is_file(), f"{profile.name}: no hparams/{stem}.yaml"
                profile_overrides(ROOT / "hparams" / f"{stem}.yaml", profile)
