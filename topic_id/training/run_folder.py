"""Reading a training run folder: the one place that knows its layout.

``recipes/train.py`` writes, besides SpeechBrain's ``hyperparams.yaml`` (the system YAML with its
overrides applied) and ``save/CKPT+*`` checkpoints, a ``run.json`` naming the system YAML and the
overrides it was loaded with. Export, stage transfer (``init_from``), the ASR loader and reports
read runs through :class:`Run`, so they agree on which checkpoint is a run's best and where its
YAML is.
"""

import json
import re
from pathlib import Path

from ruamel.yaml import YAML
from speechbrain.utils.checkpoints import Checkpointer

from topic_id.training.brains import selection
from topic_id.errors import ConfigError
from corpus_tools.files import atomic_write

RUN_SPEC = "run.json"


class RunError(ConfigError):
    """A folder is not the finished run a command needs; the message says what to do."""


def write_run_spec(output_folder, hparams_file, overrides):
    """Record how a run was built (``train.py``, main process): ``<output_folder>/run.json``.

    Arguments
    ---------
    output_folder : str or Path
        The run folder.
    hparams_file : str or Path
        The system YAML.
    overrides : str
        The resolved overrides (YAML text, profile included) the YAML was loaded with.
    """
    spec = {"hparams_file": str(Path(hparams_file).resolve()), "overrides": overrides or ""}
    with atomic_write(Path(output_folder) / RUN_SPEC) as f:
        json.dump(spec, f, indent=2, ensure_ascii=False)


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
        resolved = self.dir / "hyperparams.yaml"
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
            raise RunError(f"{self.dir / 'hyperparams.yaml'} names no ckpt_select; give init_select explicitly")
        return str(metric)

    def best_checkpoint(self, metric=None):
        """The best ``save/CKPT+*`` by ``metric`` (default: :attr:`selection_metric`).

        Returns
        -------
        speechbrain.utils.checkpoints.Checkpoint
        """
        metric = metric or self.selection_metric
        save = self.dir / "save"
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

        with open(self.dir / "hyperparams.yaml", encoding="utf-8") as f:
            return load_hyperpyyaml(f)

    @property
    def yaml(self):
        """The system YAML the run was trained from."""
        if self._yaml is None:
            self._read_spec()
        return self._yaml

    @property
    def overrides(self):
        """The run's effective overrides as plain values (a profile's ``!ref`` resolved)."""
        if self._overrides is None:
            self._read_spec()
        return self._overrides

    def _read_spec(self):
        spec_file = self.dir / RUN_SPEC
        if spec_file.is_file():
            spec = json.loads(spec_file.read_text(encoding="utf-8"))
            yaml_file = Path(spec["hparams_file"])
            given = YAML().load(spec["overrides"]) if spec["overrides"].strip() else {}
            keys = list(given or {})
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
