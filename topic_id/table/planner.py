"""Run the whole table: prepare -> stand-ins -> ASR -> transcribe -> every registry row x seeds -> report.

``recipes/run_table.sh`` is the entry point; this module plans the steps so that stage logic and
skipping are tested Python rather than shell, and ``topic_id/table/launchers.py`` runs them, as local
processes or as SLURM jobs. It runs from the root of a recipe checkout: the registry
(``recipes/systems.csv``), the systems' YAMLs (``hparams/``) and ``recipes/train.py`` are read
from the working directory, never from where this module is installed. Stages:

1. prepare the corpus (``python -m data_prep demo|lp|csv|slurp``);
2. build the local stand-in encoders the profile's ``table`` section names (the built-in corpus:
   no model hub is reachable);
3. train the support ASR (registry row ``asr``, first seed);
4. transcribe every manifest row with it (``asr_words``); with ``--external-asr ID_OR_DIR`` a
   pretrained Hugging Face ASR (Whisper or CTC, ``recipes/transcribe.py --asr-model``, with the
   options of ``--external-asr-args``) writes ``asr_words`` instead, and the ASR row trains only
   for a row that starts from it;
5. train every other registry row x seed; a row whose ``needs`` is ``own_asr:<row>`` runs on a
   corpus copy transcribed by that row's run of the same seed;
6. write the report (``topic-id report``).

The stages' steps form a dependency graph (:func:`plan`): a row waits only for what it reads (the
corpus, the ASR transcripts, the stage it starts from). Locally, ``--jobs N`` runs up to N
independent steps at once, depth first (``launchers.Runner``). On a CPU each job gets
``cores / N`` threads: small models use one core far better than two, so two one-thread jobs on
two cores finish the demo table in about half the time of one two-thread job. On GPUs each step
gets its own (``--gpus``, default all visible; as many steps at once as GPUs), and a row given
several (``--row-gpus ROW=N``) trains under ``torchrun``. ``--launcher slurm`` submits every step
as a job that waits for the jobs of what it reads (``launchers.Slurm``). A finished step is
skipped; an interrupted training resumes from its checkpoints, because train.py does; locally
the first failing step stops everything (running steps are stopped too) and names its log.
"""

import argparse
import functools
import json
import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from topic_id.errors import ConfigError
from topic_id.config.overrides import profile_path, profile_overrides, read_yaml_map, top_level_keys
from topic_id.config.registry import load_registry, transcriber
from topic_id.training.run_folder import metrics_file

logger = logging.getLogger(__name__)
# The recipe checkout (recipes/systems.csv, hparams/): the table runs from its root, where
# recipes/run_table.sh changes before it starts; every step command is relative to it.
ROOT = Path.cwd()
REGISTRY = ROOT / "recipes" / "systems.csv"
STAGES = ("prepare", "standins", "asr", "transcribe", "systems", "report")


@dataclass
class Step:
    """One command of the table.

    Attributes
    ----------
    label : str
        Unique name, shown in the progress lines and naming the log ``logs/<label>.log``.
    cmd : list
        The command (run from the project root).
    done : Path, callable or None
        The step is finished when this file exists (or the callable returns True).
    deps : list of str
        Labels of the steps that must finish first (ignored when they are not in the plan,
        i.e. belong to stages outside ``--stage .. --stop_stage``).
    continues : bool
        A step of a system's chain (training, transcription): the steps after it are run as soon
        as it finishes (``launchers.Runner.execute``). False for the shared set-up steps.
    kind : str
        ``prepare``, ``standins``, ``asr``, ``train``, ``transcribe`` or ``report``: the section
        of the SLURM resources it takes (recipes/conf/slurm.yaml).
    row : str
        The registry row a training step trains ("" otherwise); its SLURM section, if any, wins.
    gpus : int
        GPUs the step needs (0: none).
    """

    label: str
    cmd: list
    done: object = None
    deps: list = field(default_factory=list)
    continues: bool = True
    kind: str = "train"
    row: str = ""
    gpus: int = 0

    def finished(self):
        """Whether an earlier run finished this step."""
        if self.done is None:
            return False
        if callable(self.done):
            return bool(self.done())
        return Path(self.done).exists()


def transcribed(data, asr_run, column="asr_words"):
    """Whether ``asr_run`` filled ``column`` of every manifest of ``data`` (recipes/transcribe.py's record)."""
    record = Path(data) / f"{column}.json"
    if not record.is_file():
        return False
    filled = json.loads(record.read_text(encoding="utf-8"))
    return all(filled.get(f"{split}.csv", {}).get("asr") == str(Path(asr_run).resolve())
               for split in ("train", "dev", "test"))


def transcribed_by_model(data, model, column="asr_words", options=None):
    """Whether the Hugging Face ASR ``model`` (as given to ``--asr-model``) filled ``column`` of every
    manifest of ``data`` (the summary of :func:`topic_id.training.hf_transcription.transcribe_with`),
    with these settings (``options``, :func:`external_asr_options`) when given."""
    record = Path(data) / f"{column}.json"
    if not record.is_file():
        return False
    summary = json.loads(record.read_text(encoding="utf-8"))
    source = (summary.get("asr_model") or {}).get("source")
    if options is not None and summary.get("asr_options") != options:
        return False
    return source == str(model) and all(
        summary.get(f"{split}.csv", {}).get("asr_model") == summary["asr_model"].get("name")
        for split in ("train", "dev", "test"))


def newer_than(output, inputs):
    """Whether ``output`` exists and is at least as new as every existing file of ``inputs``."""
    output = Path(output)
    if not output.is_file():
        return False
    times = [Path(p).stat().st_mtime for p in inputs if Path(p).is_file()]
    return output.stat().st_mtime >= max(times, default=0)


def checked(cmd, stamp, corpus_summary):
    """Whether the corpus check ``cmd`` passed since the corpus was last prepared (its ``--stamp``)."""
    from topic_id.config.preflight import stamp_of

    if not newer_than(stamp, [corpus_summary]):
        return False
    at = cmd.index("--")
    wanted = stamp_of([str(c) for c in cmd[cmd.index("topic_id.config.preflight") + 1:at]], cmd[at + 1:])
    return json.loads(Path(stamp).read_text(encoding="utf-8")) == wanted


def prepare_command(args, data):
    """The data_prep command of the chosen corpus."""
    base = [sys.executable, "-m", "data_prep"]
    if args.corpus == "demo":
        cmd = base + ["demo", data, "--size", args.size, "--seed", str(args.corpus_seed)]
        if args.long_recordings is not None:
            cmd += ["--long-recordings", str(args.long_recordings)]
        return cmd
    if not args.corpus_dir:
        raise ConfigError(f"--corpus {args.corpus} needs --corpus-dir")
    cmd = base + [args.corpus, args.corpus_dir, data]
    if args.prep_workers and args.corpus in ("lp", "csv"):  # SLURP's audio is read as it is
        cmd += ["--num-workers", str(args.prep_workers)]
    return cmd


def row_gpus(row, args):
    """GPUs a training step of ``row`` takes: none on a CPU or for a model that is not a Brain."""
    if not args.device.startswith("cuda") or "trainer" in top_level_keys(ROOT / row["hparams"]):
        return 0
    return args.row_gpus.get(row["name"], 1)


def _train_cmd(row, data, run_dir, seed, args, extra=(), gpus=0):
    launch = [sys.executable, "recipes/train.py"]
    if gpus > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  f"--nproc_per_node={gpus}", "recipes/train.py"]
    cmd = [*launch, row["hparams"], f"--data_folder={data}", f"--output_folder={run_dir}",
           f"--seed={seed}", f"--device={args.device}", *row["overrides"], *extra]
    if args.device != "cpu" and "text_encoder_device" in top_level_keys(ROOT / row["hparams"]):
        # The frozen text encoder fills its cache on the step's device, not on the CPU.
        cmd.append(f"--text_encoder_device={args.device}")
    if args.profile:
        cmd.append(f"--profile={args.profile}")
    return cmd + row_train_args(row, args.train_args)


def _items(argv):
    """Command-line items: each ``--option`` with the values that follow it."""
    items = []
    for arg in argv:
        if arg.startswith("--") or not items:
            items.append([arg])
        else:
            items[-1].append(arg)
    return items


@functools.lru_cache(maxsize=1)
def run_options():
    """Names of SpeechBrain's run options (``precision``, ``ckpt_interval_minutes``, ...)."""
    import dataclasses

    logging.getLogger("speechbrain").setLevel(logging.WARNING)  # its import-time notes
    from speechbrain.utils.run_opts import RunOptions

    return frozenset(f.name for f in dataclasses.fields(RunOptions))


def is_run_option(item):
    """Whether ``--name[=value]`` is one of SpeechBrain's run options, not a YAML key.

    >>> is_run_option("--precision=bf16"), is_run_option("--lr=0.1")
    (True, False)
    """
    return item[2:].split("=", 1)[0] in run_options()


def row_train_args(row, train_args):
    """The part of ``--train-args`` that applies to ``row``: run options, and the overrides of keys
    its YAML has (``--num_workers`` means nothing to the bag-of-words row)."""
    keys = top_level_keys(ROOT / row["hparams"])
    kept = []
    for item in _items(train_args):
        if is_run_option(item[0]) or item[0][2:].split("=", 1)[0] in keys:
            kept += item
    return kept


def check_train_args(rows, train_args):
    """ConfigError for an override of ``--train-args`` that no row's YAML has (a typo)."""
    keys = set().union(*(top_level_keys(ROOT / r["hparams"]) for r in rows)) if rows else set()
    for item in _items(train_args):
        key = item[0][2:].split("=", 1)[0]
        if not item[0].startswith("--"):
            raise ConfigError(f"--train-args: {item[0]!r} is not an option; give --key=value items")
        if not is_run_option(item[0]) and key not in keys:
            raise ConfigError(f"--train-args: --{key} is neither a trainer option nor a key of any "
                              "row's YAML; see recipes/train.py --help and hparams/*.yaml")


def _transcribe_cmd(asr_run, data, args, copy_from=None):
    cmd = [sys.executable, "recipes/transcribe.py", "--asr", asr_run, "--manifests", data,
           "--device", args.device]
    return cmd + (["--copy-from", copy_from] if copy_from else [])


class _OptionParser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(f"--external-asr-args: {message}; it takes the --asr-model options of "
                          "recipes/transcribe.py: " + ", ".join(self.names))


CORPUS_LANGUAGE = {"slurp": "en"}
"""The language of a table corpus that is not Finnish (an external Whisper's default language)."""


def external_asr_options(args):
    """``--external-asr-args`` checked: ``(argv for recipes/transcribe.py, settings, download)``.

    The settings are those the transcription records (:data:`topic_id.models.hf_asr.OPTION_KEYS`),
    so that a finished transcription is taken only when it was made with the same ones; the
    ``--batch-size`` and ``--hub-download`` options pass through.

    >>> from argparse import Namespace
    >>> argv, options, download = external_asr_options(Namespace(
    ...     external_asr="X/y", external_asr_args="--language sv --dtype bfloat16"))
    >>> argv, options["language"], options["dtype"], options["task"], download
    (['--language', 'sv', '--dtype', 'bfloat16'], 'sv', 'bfloat16', 'transcribe', False)
    """
    from topic_id.models.hf_asr import add_options, options_of

    text = getattr(args, "external_asr_args", None) or ""
    argv = shlex.split(text) if isinstance(text, str) else list(text)
    if argv and not getattr(args, "external_asr", None):
        raise ConfigError("--external-asr-args needs --external-asr ID_OR_DIR (the model they are for)")
    parser = _OptionParser(prog="--external-asr-args", add_help=False)
    add_options(parser)
    parser.add_argument("--batch-size", "--batch_size", type=int, default=None)
    parser.names = sorted(o for a in parser._actions for o in a.option_strings if o.startswith("--")
                          and "_" not in o)
    parsed = parser.parse_args(argv)
    if parsed.language is None:
        # Said explicitly, so the recorded settings of a finished transcription compare equal.
        parsed.language = CORPUS_LANGUAGE.get(getattr(args, "corpus", None), "fi")
        argv = argv + ["--language", parsed.language]
    return argv, options_of(parsed), parsed.hub_download


def _transcribe_model_cmd(model, data, args):
    return [sys.executable, "recipes/transcribe.py", "--asr-model", model, "--manifests", data,
            "--device", args.device, *external_asr_options(args)[0]]


def table_settings(profile, hparams_dir=ROOT / "hparams"):
    """The profile's ``table`` section: what the table builds before any row trains.

    ``standins`` maps ``bert`` and ``wav2vec2`` to the options of ``python -m topic_id.standins
    build-bert|build-wav2vec2`` (sizes); the stand-ins are written to ``<data>/standin_bert`` and
    ``<data>/standin_wav2vec2``, where the profile's encoder sources point.

    >>> sorted(table_settings("demo")["standins"]), table_settings("paper")
    (['bert', 'wav2vec2'], {})
    """
    if not profile:
        return {}
    path = profile_path(hparams_dir / "text.yaml", profile)
    section = read_yaml_map(path.read_text(encoding="utf-8"), f"the profile {path}").get("table") or {}
    unknown = sorted(set(section) - {"standins"})
    if unknown:
        raise ConfigError(f"{path}, section table: unknown key {unknown[0]}; the key is standins")
    return {k: json.loads(json.dumps(v)) for k, v in section.items()}


STANDINS = {"bert": ("stand-in text encoder", "build-bert", "standin_bert"),
            "wav2vec2": ("stand-in wav2vec2", "build-wav2vec2", "standin_wav2vec2")}
"""Stand-ins a profile may name: step label, ``topic_id.standins`` command, folder under the data."""


def warm_started(row, profile):
    """Whether the profile starts this row from the ASR row's model (its YAML's ``warm_start_asr``).

    The multi-task stage 1 of the demo profile does (hparams/multitask.yaml); the paper profile trains
    it from scratch, as the paper.

    >>> row = {"hparams": "hparams/multitask.yaml"}
    >>> warm_started(row, "demo"), warm_started(row, "paper"), warm_started(row, None)
    (True, False, False)
    """
    if not profile:
        return False
    return bool(profile_overrides(ROOT / row["hparams"], profile).get("warm_start_asr"))


def select_rows(rows, names, warm=()):
    """The registry rows named in ``names`` (comma-separated) and the rows they need, in registry order.

    A row needs the row it starts from (``init_from``), the row whose ASR transcribes its corpus
    (``asr`` included) and, if its name is in ``warm`` (:func:`warm_started`), the ASR row. Raises
    ValueError naming an unknown row.

    Example
    -------
    >>> rows = [{"name": "asr", "init_from": "", "needs": ""},
    ...         {"name": "s1", "init_from": "", "needs": ""},
    ...         {"name": "s2", "init_from": "s1", "needs": "own_asr:s1"},
    ...         {"name": "pipe", "init_from": "", "needs": "asr_words"}]
    >>> [r["name"] for r in select_rows(rows, "s2")]
    ['s1', 's2']
    >>> [r["name"] for r in select_rows(rows, "pipe,s1")]
    ['asr', 's1', 'pipe']
    >>> [r["name"] for r in select_rows(rows, "s2", warm={"s1"})]
    ['asr', 's1', 's2']
    """
    by_name = {row["name"]: row for row in rows}
    wanted = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise ValueError(f"--systems names no registry row {', '.join(unknown)}; the rows are "
                         f"{', '.join(by_name)}")
    chosen = set()
    while wanted:
        name = wanted.pop()
        if name not in chosen:
            chosen.add(name)
            row = by_name[name]
            wanted += [n for n in (row["init_from"], transcriber(row)) if n]
            if name in warm:
                wanted.append("asr")
    return [row for row in rows if row["name"] in chosen]


def plan(args, rows=None):
    """The steps of stages ``args.stage`` .. ``args.stop_stage`` (1-based, see :data:`STAGES`).

    Arguments
    ---------
    args : argparse.Namespace
        run_table.sh's arguments (:func:`build_parser`, after :func:`settle`).
    rows : list of dict, optional
        Registry rows (default: ``recipes/systems.csv``).

    Returns
    -------
    list of Step
        In a valid serial order (every step after the steps it depends on).
    """
    out = Path(args.out).resolve()
    data = out / "data"
    rows = load_registry(REGISTRY) if rows is None else rows
    warm = {row["name"] for row in rows if warm_started(row, args.profile)}
    if getattr(args, "systems", None):
        rows = select_rows(rows, args.systems, warm)
    check_train_args(rows, args.train_args)
    seeds = args.seeds.split()
    first = seeds[0]
    wanted = range(args.stage, args.stop_stage + 1)
    gpu = 1 if args.device.startswith("cuda") else 0
    steps = []
    prep = "prepare corpus"
    if 1 in wanted:
        steps.append(Step(prep, prepare_command(args, data), data / "summary.json", continues=False,
                          kind="prepare"))
    standins = []
    if 2 in wanted:
        for name, options in table_settings(args.profile).get("standins", {}).items():
            if name not in STANDINS:
                raise ConfigError(f"the profile's table section names the stand-in {name!r}; the "
                                  f"stand-ins are {', '.join(STANDINS)}")
            label, command, folder = STANDINS[name]
            cmd = [sys.executable, "-m", "topic_id.standins", command, "--out", data / folder]
            if command == "build-bert":
                cmd[4:4] = ["--manifests", data]
            for key, value in (options or {}).items():
                cmd += [f"--{key.replace('_', '-')}", str(value)]
            steps.append(Step(label, cmd, data / folder / "STANDIN.json", [prep], continues=False,
                              kind="standins"))
            standins.append(label)
    asr = next((r for r in rows if r["name"] == "asr"), None)
    asr_run = out / "results" / "asr" / first
    if asr is None:  # --systems chose no row that reads the ASR's transcripts
        wanted = [stage for stage in wanted if stage not in (3, 4)]
    external = getattr(args, "external_asr", None)
    external_options = external_asr_options(args)[1]
    transcription = "transcribe with external asr" if external else "transcribe with asr"
    # With an external ASR, the ASR row trains only for a row that starts from its model.
    train_asr = asr is not None and (not external or any(r["name"] in warm for r in rows))
    check = "check corpus"
    if 3 in wanted or 5 in wanted:
        # What would kill a step days in (too few transcripts for the ASR's units, ...) ends the
        # table here instead, before anything trains.
        checked_rows = [r["name"] for r in rows if r["name"] != "asr" or train_asr]
        cmd = [sys.executable, "-m", "topic_id.config.preflight", "--registry", REGISTRY, "--systems",
               ",".join(checked_rows), "--data", data, "--check", "corpus", "--root", ROOT,
               "--stamp", data / "preflight.json"]
        if args.profile:
            cmd += ["--profile", args.profile]
        cmd += ["--", *args.train_args]
        stamp = data / "preflight.json"
        steps.append(Step(check, cmd, lambda c=cmd, f=stamp: checked(c, f, data / "summary.json"), [prep],
                          continues=False, kind="check"))
    if 3 in wanted and train_asr:
        steps.append(Step(f"train asr seed {first}",
                          _train_cmd(asr, data, asr_run, first, args, gpus=row_gpus(asr, args)),
                          metrics_file(asr_run), [prep, check], kind="asr", row="asr",
                          gpus=row_gpus(asr, args)))
    if 4 in wanted and any(transcriber(row) == "asr" for row in rows):
        if external:
            steps.append(Step(transcription, _transcribe_model_cmd(external, data, args),
                              lambda: transcribed_by_model(data, external, options=external_options),
                              [prep, check],
                              kind="transcribe", gpus=gpu))
        else:
            steps.append(Step(transcription, _transcribe_cmd(asr_run, data, args),
                              lambda: transcribed(data, asr_run), [f"train asr seed {first}"],
                              kind="transcribe", gpus=gpu))
    if 5 in wanted:
        for seed in seeds:
            for row in rows:
                if row["name"] == "asr":
                    continue
                corpus, deps = data, [prep, check, *standins]
                source = transcriber(row)
                if source == "asr":
                    deps.append(transcription)
                elif source is not None:
                    corpus = out / f"data_{source}_{seed}"
                    label = f"transcribe with {source} seed {seed}"
                    source_run = out / "results" / source / seed
                    steps.append(Step(label, _transcribe_cmd(source_run, corpus, args, copy_from=data),
                                      lambda c=corpus, r=source_run: transcribed(c, r),
                                      [f"train {source} seed {seed}"], kind="transcribe", gpus=gpu))
                    deps.append(label)
                extra = []
                if row["name"] in warm:
                    # Its ASR half starts from the ASR row's model (hparams/multitask.yaml).
                    extra.append(f"--init_from={asr_run}")
                    deps.append(f"train asr seed {first}")
                if row["init_from"]:
                    extra.append(f"--init_from={out / 'results' / row['init_from'] / seed}")
                    deps.append(f"train {row['init_from']} seed {seed}")
                run_dir = out / "results" / row["name"] / seed
                gpus = row_gpus(row, args)
                steps.append(Step(f"train {row['name']} seed {seed}",
                                  _train_cmd(row, corpus, run_dir, seed, args, extra, gpus=gpus),
                                  metrics_file(run_dir), deps, row=row["name"], gpus=gpus))
    if 6 in wanted:
        results = out / "results"
        markers = [s.done for s in steps if isinstance(s.done, Path)]
        steps.append(Step("report", [sys.executable, "-m", "topic_id.cli", "report", results,
                                     "--corpus", args.corpus, "--data", data,
                                     "--timings", out / "logs" / "steps.csv"],
                          lambda: newer_than(results / "report" / "table1.csv", markers),
                          [s.label for s in steps], kind="report"))
    return steps
