"""Run the whole table: prepare -> stand-ins -> ASR -> transcribe -> every registry row x seeds -> report.

``recipes/run_table.sh`` is the entry point; this module does the work so that stage logic, skipping
and timing are tested Python rather than shell. It is a recipe of this checkout, beside the registry
(``recipes/systems.csv``) and ``train.py`` it runs, not part of the installed library. Stages:

1. prepare the corpus (``python -m data_prep demo|lp|csv``);
2. build the local stand-in encoders the profile names (demo: no model hub is reachable);
3. train the support ASR (registry row ``asr``, first seed);
4. transcribe every manifest row with it (``asr_words``);
5. train every other registry row x seed; a row whose ``needs`` is ``own_asr:<row>`` runs on a
   corpus copy transcribed by that row's run of the same seed;
6. write the report (``topic-id report``).

The stages' steps form a dependency graph (:func:`plan`): a row waits only for what it reads (the
corpus, the ASR transcripts, the stage it starts from), and ``--jobs N`` runs up to N independent
steps at once, depth first (see :meth:`Runner.execute`). On a CPU each job gets ``cores / N`` threads: small models use
one core far better than two, so two one-thread jobs on two cores finish the demo table in about
half the time of one two-thread job. A finished step (its marker file exists) is skipped; an
interrupted training resumes from its checkpoints, because train.py does; the first failing step
stops everything (running steps are stopped too) and names its log.
"""

import argparse
import csv
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.fileio import atomic_write
from topic_id.experiment import profile_overrides
from topic_id.registry import RESULTS_COPY, load_registry, transcriber

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent  # the checkout: commands run from its root
REGISTRY = ROOT / "recipes" / "systems.csv"
STAGES = ("prepare", "standins", "asr", "transcribe", "systems", "report")
STEP_FIELDS = ("step", "status", "seconds", "started", "finished")
"""Columns of ``logs/steps.csv``: each step of the latest invocation, ``ran`` or ``skipped``, its
wall seconds and its start/end as Unix times (``topic-id report --timings`` reads it)."""


class StepFailed(Exception):
    """A step of the table failed; the message names its log."""


@dataclass
class Step:
    """One command of the table.

    Attributes
    ----------
    label : str
        Unique name, shown in the progress lines and naming the log ``logs/<label>.log``.
    cmd : list
        The command (run from the project root).
    done : Path or None
        The step is skipped when this file exists.
    deps : list of str
        Labels of the steps that must finish first (ignored when they are not in the plan,
        i.e. belong to stages outside ``--stage .. --stop_stage``).
    before : callable or None
        Called just before the command starts (e.g. to make a corpus copy).
    continues : bool
        A step of a system's chain (training, transcription): the steps after it are run as soon
        as it finishes (see :meth:`Runner.execute`). False for the shared set-up steps.
    """

    label: str
    cmd: list
    done: Path = None
    deps: list = field(default_factory=list)
    before: object = None
    continues: bool = True


def transcribed_copy(data, copy):
    """A copy of a prepared corpus's manifests (audio and caches shared by symlink)."""
    copy = Path(copy)
    if not copy.exists():
        copy.mkdir(parents=True)
        for item in Path(data).iterdir():
            target = copy / item.name
            if item.is_file():
                shutil.copy2(item, target)
            else:
                target.symlink_to(item.resolve())
    return copy


def prepare_command(args, data):
    """The data_prep command of the chosen corpus."""
    base = [sys.executable, "-m", "data_prep"]
    if args.corpus == "demo":
        cmd = base + ["demo", data, "--size", args.size, "--seed", str(args.corpus_seed)]
        if args.long_recordings is not None:
            cmd += ["--long-recordings", str(args.long_recordings)]
        return cmd
    if not args.corpus_dir:
        raise StepFailed(f"--corpus {args.corpus} needs --corpus-dir")
    return base + [args.corpus, args.corpus_dir, data]


def _train_cmd(row, data, run_dir, seed, args, extra=()):
    cmd = [sys.executable, "recipes/train.py", row["hparams"], f"--data_folder={data}",
           f"--output_folder={run_dir}", f"--seed={seed}", f"--device={args.device}",
           *row["overrides"], *extra]
    if args.profile:
        cmd.append(f"--profile={args.profile}")
    return cmd


def _transcribe_cmd(asr_run, data, args):
    return [sys.executable, "recipes/transcribe.py", "--asr", asr_run, "--manifests", data,
            "--device", args.device]


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
        run_table.sh's arguments (:func:`build_parser`).
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
    seeds = args.seeds.split()
    first = seeds[0]
    wanted = range(args.stage, args.stop_stage + 1)
    steps = []
    prep = "prepare corpus"
    if 1 in wanted:
        steps.append(Step(prep, prepare_command(args, data), data / "summary.json", continues=False))
    standins = []
    if 2 in wanted and args.profile == "demo":
        for label, command, folder in (("stand-in text encoder", "build-bert", "standin_bert"),
                                       ("stand-in wav2vec2", "build-wav2vec2", "standin_wav2vec2")):
            cmd = [sys.executable, "-m", "topic_id.standins", command, "--out", data / folder]
            if command == "build-bert":
                cmd[4:4] = ["--manifests", data]
            steps.append(Step(label, cmd, data / folder / "STANDIN.json", [prep], continues=False))
            standins.append(label)
    asr = next((r for r in rows if r["name"] == "asr"), None)
    asr_run = out / "results" / "asr" / first
    if asr is None:  # --systems chose no row that reads the ASR's transcripts
        wanted = [stage for stage in wanted if stage not in (3, 4)]
    if 3 in wanted:
        steps.append(Step(f"train asr seed {first}", _train_cmd(asr, data, asr_run, first, args),
                          asr_run / "metrics.json", [prep]))
    if 4 in wanted and any(transcriber(row) == "asr" for row in rows):
        # No marker: transcribe.py itself skips manifests this checkpoint already filled.
        steps.append(Step("transcribe with asr", _transcribe_cmd(asr_run, data, args), None,
                          [f"train asr seed {first}"]))
    if 5 in wanted:
        for seed in seeds:
            for row in rows:
                if row["name"] == "asr":
                    continue
                corpus, deps = data, [prep, *standins]
                source = transcriber(row)
                if source == "asr":
                    deps.append("transcribe with asr")
                elif source is not None:
                    corpus = out / f"data_{source}_{seed}"
                    label = f"transcribe with {source} seed {seed}"
                    steps.append(Step(label, _transcribe_cmd(out / "results" / source / seed, corpus, args),
                                      None, [f"train {source} seed {seed}"],
                                      before=lambda c=corpus: transcribed_copy(data, c)))
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
                steps.append(Step(f"train {row['name']} seed {seed}",
                                  _train_cmd(row, corpus, run_dir, seed, args, extra),
                                  run_dir / "metrics.json", deps))
    if 6 in wanted:
        steps.append(Step("report", [sys.executable, "-m", "topic_id.cli", "report", out / "results",
                                     "--corpus", args.corpus, "--timings", out / "logs" / "steps.csv"],
                          None, [s.label for s in steps]))
    return steps


def _chain_lengths(steps):
    """How many steps hang on each step (itself included): longest chains start first."""
    labels = {s.label: s for s in steps}
    memo = {}

    def length(label):
        if label not in memo:
            after = [s.label for s in steps if label in s.deps]
            memo[label] = 1 + max((length(a) for a in after), default=0)
        return memo[label]

    return {label: length(label) for label in labels}


class Runner:
    """Runs the planned steps, up to ``jobs`` at a time, skipping finished ones and timing the rest.

    Arguments
    ---------
    out : str or Path
        The table's output folder; logs go to ``<out>/logs``, and what became of each step to
        ``<out>/logs/steps.csv`` (:data:`STEP_FIELDS`).
    jobs : int
        How many steps may run at once.
    threads : int or None
        ``OMP_NUM_THREADS`` for each step (None: leave the environment as it is).
    poll : float
        Seconds between checks on running steps.
    """

    def __init__(self, out, jobs=1, threads=None, poll=0.5):
        self.out = Path(out)
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.jobs = max(1, jobs)
        self.env = dict(os.environ)
        if threads:
            self.env["OMP_NUM_THREADS"] = str(threads)
        self.poll = poll
        self.times = {}
        # What this invocation did with each step, rewritten as steps end, for the report's run time.
        self.record = self.logs / "steps.csv"
        self._rows = []
        self._write_record()

    def _write_record(self):
        with atomic_write(self.record, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=STEP_FIELDS)
            writer.writeheader()
            writer.writerows(self._rows)

    def _note(self, label, status, start=None, end=None):
        self._rows.append({"step": label, "status": status,
                           "seconds": f"{end - start:.1f}" if start is not None else "",
                           "started": f"{start:.1f}" if start is not None else "",
                           "finished": f"{end:.1f}" if end is not None else ""})
        self._write_record()

    def log_path(self, step):
        """Where ``step`` writes its output."""
        return self.logs / f"{step.label.replace('/', '_').replace(' ', '_')}.log"

    def _start(self, step):
        if step.before is not None:
            step.before()
        log = self.log_path(step)
        logger.info("%-44s started (log: %s)", step.label, log)
        f = open(log, "a", encoding="utf-8")
        f.write(f"\n$ {' '.join(map(str, step.cmd))}\n")
        f.flush()
        proc = subprocess.Popen([str(c) for c in step.cmd], stdout=f, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=self.env)
        return proc, f, time.time()

    def execute(self, steps):
        """Run ``steps`` (see :func:`plan`) in dependency order.

        Raises
        ------
        StepFailed
            At the first failing step, after stopping the others that run.
        """
        by_label = {s.label: s for s in steps}
        order = {s.label: i for i, s in enumerate(steps)}
        pending = dict(by_label)
        finished = {}  # label -> when it finished (or was found finished)
        running = {}
        priority = _chain_lengths(steps)
        try:
            while pending or running:
                for label, (proc, f, start) in list(running.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    f.close()
                    del running[label]
                    if code != 0:
                        raise StepFailed(f"{label} failed (exit {code}); see {self.log_path(by_label[label])}")
                    end = time.time()
                    self.times[label] = end - start
                    logger.info("%-44s done in %.1f s", label, self.times[label])
                    self._note(label, "ran", start, end)
                    finished[label] = end
                ready = [s for s in pending.values()
                         if all(d in finished or d not in by_label for d in s.deps)]
                # Depth first: the step that continues the system chain that finished last (a
                # stage 2, often long, starts as soon as its stage 1 is done instead of after the
                # short independent rows, which then fill the end); then the longest chain (so the
                # ASR and multi-task stage 1 start first); then registry order. Set-up steps
                # (corpus, stand-ins) do not count as chains: everything continues them.
                def rank(s):
                    recent = max((finished.get(d, 0) for d in s.deps
                                  if d in by_label and by_label[d].continues), default=0)
                    return (-recent, -priority[s.label], order[s.label])

                for step in sorted(ready, key=rank):
                    if step.done is not None and Path(step.done).exists():
                        logger.info("%-44s finished earlier, skipped", step.label)
                        self._note(step.label, "skipped")
                        finished[step.label] = time.time()
                        del pending[step.label]
                        continue
                    if len(running) >= self.jobs:
                        break
                    running[step.label] = self._start(step)
                    del pending[step.label]
                if running:
                    time.sleep(self.poll)
                elif pending and not ready:
                    raise StepFailed(f"steps wait on each other: {sorted(pending)}")
        finally:
            for proc, f, _ in running.values():
                proc.terminate()
                proc.wait()
                f.close()



def default_jobs(device):
    """Parallel steps by default: two on a CPU with at least two cores, else one."""
    return 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def run(args):
    """Plan and run stages ``args.stage`` .. ``args.stop_stage``; returns the runner (its times)."""
    out = Path(args.out).resolve()
    jobs = args.jobs or default_jobs(args.device)
    threads = max(1, (os.cpu_count() or 1) // jobs) if args.device == "cpu" else None
    if "OMP_NUM_THREADS" in os.environ:  # the user's setting wins
        threads = None
    runner = Runner(out, jobs, threads)
    logger.info("%d parallel step(s)%s", jobs, f", {threads} thread(s) each" if threads else "")
    steps = plan(args)
    # The results tree carries the registry it was made with, for `topic-id report` anywhere.
    (out / "results").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REGISTRY, out / "results" / RESULTS_COPY)
    runner.execute(steps)
    return runner


def build_parser():
    """Arguments of run_table.sh."""
    parser = argparse.ArgumentParser(prog="recipes/run_table.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("demo", "lp", "csv"), default="demo")
    parser.add_argument("--out", required=True, help="output folder (data/, results/, logs/, report)")
    parser.add_argument("--corpus-dir", help="the LP release or the metadata CSV (lp, csv)")
    parser.add_argument("--seeds", default="1", help='space-separated seeds, e.g. "1 2 3"')
    parser.add_argument("--stage", type=int, default=1, help=f"first stage, 1-{len(STAGES)}: {STAGES}")
    parser.add_argument("--stop_stage", type=int, default=len(STAGES))
    parser.add_argument("--profile", default=None,
                        help="hparams profile (default: demo for --corpus demo, paper for --corpus lp)")
    parser.add_argument("--size", default="default", help="demo corpus size")
    parser.add_argument("--corpus-seed", type=int, default=0, help="demo corpus seed")
    parser.add_argument("--long-recordings", type=int, default=None, metavar="N",
                        help="demo corpus: N multi-sentence recordings per split (default: the size's, "
                        "8 for the default size; 0: every recording one sentence)")
    parser.add_argument("--systems", default=None, metavar="ROW[,ROW...]",
                        help="only these registry rows (recipes/systems.csv names) and the rows they "
                        "need (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--jobs", type=int, default=None,
                        help="steps run at once (default: 2 on a CPU with 2+ cores, else 1)")
    return parser


def main(argv=None):
    """Entry point; exit status 1 with the failing step's log on failure."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.systems:
        try:
            select_rows(load_registry(REGISTRY), args.systems)
        except ValueError as err:
            parser.exit(2, f"error: {err}\n")
    if args.profile is None:
        args.profile = {"demo": "demo", "lp": "paper"}.get(args.corpus)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.time()
    try:
        run(args)
    except StepFailed as err:
        logger.error("%s", err)
        return 1
    logger.info("all stages done in %.1f min", (time.time() - start) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
