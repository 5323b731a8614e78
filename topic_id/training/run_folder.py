"""Reading a training run folder: the one place that knows its layout.

``recipes/train.py`` writes::

    hyperparams.yaml        SpeechBrain's copy of the system YAML with every override applied (the
                            profile's, the command line's, the keys read from the corpus and the
                            models): the one record of what trained
    run.json                what hyperparams.yaml cannot hold, of the latest invocation: the system
                            YAML's path, the names of the keys overridden (their values are
                            hyperparams.yaml's), the keys read from the corpus and the models and
                            where, the start time, device, git revision, Python and package versions
    log.txt train_log.txt   SpeechBrain's logs
    topics.txt              the label order the run's classifier rows follow
    save/CKPT+*             the checkpoints
    metrics.json predictions.csv predictions_dev.csv confusion.png embeddings_*.pt   the results

Export, stage transfer (``init_from``), the ASR loader, the reports and the table's planner read
runs through this module, so they agree on which checkpoint is a run's best and where its files are.
"""

import json
import platform
import re
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ruamel.yaml import YAML

from topic_id.config.overrides import read_yaml_map
from topic_id.errors import ConfigError
from corpus_tools.files import atomic_write

HYPERPARAMS = "hyperparams.yaml"
RUN_RECORD = "run.json"
TOPICS = "topics.txt"
METRICS = "metrics.json"
LOG = "log.txt"
SAVE = "save"
# What runs trained before run.json held the environment wrote instead (a copy of SpeechBrain's
# env.log format); read by :func:`read_environment` only.
_OLD_ENV_LOG = "env.log"


class RunError(ConfigError):
    """A folder is not the finished run a command needs; the message says what to do."""


def metrics_file(run_dir):
    """``<run_dir>/metrics.json``: written when a run has finished (the table's done marker)."""
    return Path(run_dir) / METRICS


def predictions_file(run_dir, split="test"):
    """The per-utterance predictions of a split: ``predictions.csv`` (test), ``predictions_<split>.csv``.

    Example
    -------
    >>> predictions_file("run").name, predictions_file("run", "dev").name
    ('predictions.csv', 'predictions_dev.csv')
    """
    return Path(run_dir) / ("predictions.csv" if split == "test" else f"predictions_{split}.csv")


def is_run_folder(folder, trained=False):
    """Whether ``folder`` holds a training run's ``hyperparams.yaml`` (and, if ``trained``, ``save/``)."""
    folder = Path(folder)
    return (folder / HYPERPARAMS).is_file() and (not trained or (folder / SAVE).is_dir())


def git_revision(folder="."):
    """The short commit id of the git checkout holding ``folder``, or None outside one.

    Example
    -------
    >>> import tempfile
    >>> git_revision(tempfile.mkdtemp()) is None
    True
    """
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, text=True,
                              capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def _device_description(device):
    """``cpu``, or the CUDA device with its name and the CUDA version torch was built with."""
    import torch

    device = str(device or "cpu")
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))}, CUDA {torch.version.cuda})"
    return device


def write_run_record(output_folder, hparams_file, overrides, derived=None, device=None):
    """Write ``<output_folder>/run.json`` (``train.py``, main process, every invocation).

    The package versions come from ``importlib.metadata``: SpeechBrain's own environment
    description runs ``pip freeze`` in a subprocess, about two seconds per training process.

    Arguments
    ---------
    output_folder : str or Path
        The run folder.
    hparams_file : str or Path
        The system YAML; the git revision is that of the checkout holding it (the recipes), not
        of the installed library, which may be a wheel outside any repository.
    overrides : str
        The resolved overrides (YAML text) the YAML was loaded with: only their keys are kept.
    derived : dict, optional
        ``{key: where it was read}`` of the keys read from the corpus and the models.
    device : str, optional
        The run's device (``cpu``, ``cuda:0``).
    """
    hparams_file = Path(hparams_file).resolve()
    packages = {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]}
    record = {
        "hparams_file": str(hparams_file),
        "overridden_keys": list(read_yaml_map(overrides, "the overrides")),
        "derived_keys": dict(derived or {}),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": _device_description(device),
        "git_revision": git_revision(hparams_file.parent),
        "python": platform.python_version(),
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }
    with atomic_write(Path(output_folder) / RUN_RECORD) as f:
        json.dump(record, f, indent=2, ensure_ascii=False)


def read_environment(run_dir):
    """What a run recorded of where it ran: ``torch`` version, git ``revision`` and ``device``.

    Arguments
    ---------
    run_dir : str or Path
        A run folder.

    Returns
    -------
    dict
        The keys found (none for a folder without a record).

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> read_environment(run)
    {}
    >>> _ = (run / RUN_RECORD).write_text(json.dumps({"packages": {"torch": "2.5.1"},
    ...                                               "git_revision": "abc1234", "device": "cpu"}))
    >>> read_environment(run)
    {'torch': '2.5.1', 'revision': 'abc1234', 'device': 'cpu'}
    """
    record = _read_record(run_dir)
    if record is None or "packages" not in record:
        return _read_old_env_log(run_dir)
    packages = {name.lower(): version for name, version in record.get("packages", {}).items()}
    found = {"torch": packages.get("torch"), "revision": record.get("git_revision"),
             "device": record.get("device")}
    return {k: v for k, v in found.items() if v}


def _read_record(run_dir):
    """``run.json`` as a dict, or None when there is none (a run trained before it existed)."""
    path = Path(run_dir) / RUN_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    except ValueError as err:
        raise RunError(f"{path} is unreadable ({err}): train the run again") from None
    return record if isinstance(record, dict) else None


def _read_old_env_log(run_dir):
    r""":func:`read_environment` of a run trained when the environment went to ``env.log``.

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "env.log").write_text("Installed Python packages:\ntorch==2.5.1\n====\n"
    ...                                  "Git revision:\nabc1234\n====\nCUDA version:\n12.4\n")
    >>> _read_old_env_log(run)
    {'torch': '2.5.1', 'revision': 'abc1234', 'device': 'CUDA 12.4'}
    """
    try:
        lines = (Path(run_dir) / _OLD_ENV_LOG).read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    found = {}
    for i, line in enumerate(lines):
        after = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if line.lower().startswith("torch=="):
            found["torch"] = line.split("==", 1)[1].strip()
        elif line.startswith("Git revision:") and after and after != "not a git checkout":
            found["revision"] = after
        elif line.startswith("CUDA version:"):
            found["device"] = f"CUDA {after}" if after else "CUDA"
        elif line.startswith("CUDA not available"):
            found["device"] = "cpu"
    return found


def plain(value):
    """A ruamel value as plain Python (lists, numbers, strings), or None when it is an object.

    Example
    -------
    >>> plain(YAML().load("a: [1, 2]")["a"]), plain(object())
    ([1, 2], None)
    """
    try:
        return json.loads(json.dumps(value))
    except TypeError:
        return None


class Run:
    """A training run folder: its resolved hyperparameters, system YAML, overrides and checkpoints.

    Arguments
    ---------
    run_dir : str or Path
        The run's output folder.
    hparams_dir : str or Path, optional
        Where to look for the system YAML by name when the path recorded at training time is gone
        (the checkout moved): the ``hparams/`` folder of the checkout that trained it.

    Example
    -------
    >>> import tempfile
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "hyperparams.yaml").write_text("lr: 0.1\\nckpt_select: wer\\n")
    >>> Run(run).selection_metric
    'wer'
    """

    def __init__(self, run_dir, hparams_dir=None):
        self.dir = Path(run_dir).resolve()
        self.hparams_dir = hparams_dir
        resolved = self.dir / HYPERPARAMS
        if not resolved.is_file():
            raise RunError(f"{run_dir} is not a training run folder (no hyperparams.yaml): give the "
                           "--output_folder of a recipes/train.py run")
        self.text = resolved.read_text(encoding="utf-8")
        self.doc = YAML().load(self.text)
        self._yaml = self._overrides = None

    def __getitem__(self, key):
        return self.doc[key]

    def get(self, key, default=None):
        """A resolved top-level hyperparameter."""
        return self.doc.get(key, default)

    @property
    def modules(self):
        """Names in the run's ``modules``."""
        return list(self.doc.get("modules") or {})

    @property
    def selection_metric(self):
        """The ``ckpt_select`` the run chose its best checkpoint by."""
        metric = self.doc.get("ckpt_select")
        if not metric:
            raise RunError(f"{self.dir / HYPERPARAMS} names no ckpt_select; give init_select explicitly")
        return str(metric)

    def best_checkpoint(self, metric=None):
        """The best ``save/CKPT+*`` by ``metric`` (default: :attr:`selection_metric`).

        Returns
        -------
        speechbrain.utils.checkpoints.Checkpoint
        """
        # Imported here: the table's planner and the reports read run folders without torch.
        from speechbrain.utils.checkpoints import Checkpointer

        from topic_id.training.base import selection

        metric = metric or self.selection_metric
        save = self.dir / SAVE
        ckpt = Checkpointer(save).find_checkpoint(**selection(metric)) if save.is_dir() else None
        if ckpt is None:
            raise RunError(f"no checkpoint with a {metric!r} score under {save}: train that stage "
                           "first (see recipes/systems.csv for the order)")
        return ckpt

    def checkpoint(self):
        """The best checkpoint directory (by the run's ``ckpt_select``) and its parameter files."""
        ckpt = self.best_checkpoint()
        return Path(ckpt.path), {k: Path(v) for k, v in ckpt.paramfiles.items()}

    def load(self):
        """The run's hyperparameters, built (``load_hyperpyyaml`` of its ``hyperparams.yaml``)."""
        from hyperpyyaml import load_hyperpyyaml

        with open(self.dir / HYPERPARAMS, encoding="utf-8") as f:
            return load_hyperpyyaml(f)

    @property
    def topics_file(self):
        """The run's copy of the label order (``topics.txt``); RunError when it is missing."""
        path = self.dir / TOPICS
        if not path.is_file():
            raise RunError(f"{path} is missing: the run's label order is unknown; train the run again")
        return path

    @property
    def record(self):
        """``run.json`` as a dict (empty for a run trained before it existed)."""
        return _read_record(self.dir) or {}

    @property
    def yaml(self):
        """The system YAML the run was trained from."""
        if self._yaml is None:
            self._read_spec()
        return self._yaml

    @property
    def overrides(self):
        """The run's overrides: the keys ``run.json`` names, with their ``hyperparams.yaml`` values.

        Plain values (a profile's ``!ref`` resolved); the keys read from the corpus and the models
        are among them.
        """
        if self._overrides is None:
            self._read_spec()
        return self._overrides

    def _read_spec(self):
        record = self.record
        if record:
            yaml_file = Path(record["hparams_file"])
            if "overridden_keys" in record:
                keys = list(record["overridden_keys"])
            else:  # run.json before it held only the keys: the overrides' YAML text
                keys = list(read_yaml_map(record.get("overrides", ""), str(self.dir / RUN_RECORD)))
        else:
            # A run trained before run.json existed: SpeechBrain's header names the YAML; the
            # overrides are the plain values that differ from its defaults.
            header = re.search(r"^# (/\S+\.yaml)\s*$", self.text, re.MULTILINE)
            yaml_file = Path(header.group(1)) if header else Path("?")
            keys = None
        if not yaml_file.is_file():
            local = Path(self.hparams_dir) / yaml_file.name if self.hparams_dir else None
            if local is None or not local.is_file():
                raise RunError(f"the system YAML {yaml_file} of {self.dir} is missing (the checkout "
                               "moved?): pass the hparams folder it was trained from (--hparams-dir)")
            yaml_file = local
        if keys is None:
            defaults = YAML().load(yaml_file.read_text(encoding="utf-8"))
            keys = [k for k, v in defaults.items() if not hasattr(v, "tag") or not v.tag.value]
            keys = [k for k in keys if k in self.doc and plain(self.doc[k]) != plain(defaults[k])]
        overrides = {}
        for key in keys:
            if key in self.doc:
                value = plain(self.doc[key])
                if value is None and self.doc[key] is not None:
                    raise RunError(f"cannot export the non-scalar override {key}={self.doc[key]!r}")
                overrides[key] = value
        self._yaml, self._overrides = yaml_file, overrides
