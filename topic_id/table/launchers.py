"""Where the table's steps run: local processes (:class:`Runner`) or SLURM jobs (:class:`Slurm`).

Both take the steps of ``pipeline.plan`` (:class:`pipeline.Step`) and honour the same contract: a
step runs after the steps it depends on, a finished step (:meth:`pipeline.Step.finished`) is not
run again, and a step's output goes to ``<out>/logs/<label>.log``. With ``dry_run`` neither starts
anything: each prints every step's command with its environment and dependencies, and nothing is
written under the output folder.

The local runner keeps up to ``jobs`` steps running and gives each step that needs GPUs its own
from a pool (``CUDA_VISIBLE_DEVICES``); the SLURM launcher submits one ``sbatch`` job per step,
each depending (``afterok``) on the jobs of the steps it reads, and returns: SLURM runs the table.
"""

import csv
import json
import logging
import os
import shlex
import subprocess
import time
from pathlib import Path

from ruamel.yaml import YAML

from corpus_tools.files import atomic_write
from topic_id.errors import ConfigError

logger = logging.getLogger(__name__)
# The recipe checkout the table runs from (see topic_id.table.planner): steps run in it.
ROOT = Path.cwd()
STEP_FIELDS = ("step", "status", "seconds", "started", "finished")
"""Columns of ``logs/steps.csv``: each step of the latest invocation, ``ran`` or ``skipped``, its
wall seconds and its start/end as Unix times (``topic-id report --timings`` reads it)."""
SLURM_CONFIG = ROOT / "recipes" / "conf" / "slurm.yaml"
SLURM_KEYS = ("partition", "account", "qos", "cpus", "mem", "time", "gpu_option", "options",
              "requeue_grace")
"""Keys of a SLURM resource section (recipes/conf/slurm.yaml explains each)."""


class StepFailed(Exception):
    """A step of the table failed; the message names its log."""


def log_name(label):
    """The log file name of a step label: ``logs/<log_name(label)>``."""
    return f"{label.replace('/', '_').replace(' ', '_')}.log"


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


def _describe(step, env, waits):
    """The dry-run lines of one step: label, what it waits for, its environment and command."""
    lines = [f"{step.label}",
             f"    after: {', '.join(waits) if waits else '-'}"]
    if env:
        lines.append("    env: " + " ".join(f"{k}={v}" for k, v in env.items()))
    lines.append("    $ " + shlex.join(str(c) for c in step.cmd))
    return "\n".join(lines)


class Runner:
    """Runs the planned steps as local processes, up to ``jobs`` at a time, skipping finished ones.

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
    gpus : list of str, optional
        The GPU pool (``CUDA_VISIBLE_DEVICES`` ids): a step that needs ``n`` GPUs
        (:attr:`pipeline.Step.gpus`) waits for ``n`` free ones and sees only those.
    dry_run : bool
        Print what would run, in the order it would start, and start nothing.
    """

    def __init__(self, out, jobs=1, threads=None, poll=0.5, gpus=None, dry_run=False):
        self.out = Path(out)
        self.logs = self.out / "logs"
        self.jobs = max(1, jobs)
        self.env = dict(os.environ)
        self.extra_env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
        self.env.update(self.extra_env)
        self.poll = poll
        self.gpus = [str(g) for g in gpus or []]
        self.dry_run = dry_run
        self.times = {}
        # What this invocation did with each step, rewritten as steps end, for the report's run time.
        self.record = self.logs / "steps.csv"
        self._rows = []
        if not dry_run:
            self.logs.mkdir(parents=True, exist_ok=True)
            self._write_record()

    def _write_record(self):
        with atomic_write(self.record, newline="") as f:
            writer = csv.DictWriter(f, fieldnames=STEP_FIELDS)
            writer.writeheader()
            writer.writerows(self._rows)

    def _note(self, label, status, start=None, end=None):
        if self.dry_run:
            return
        self._rows.append({"step": label, "status": status,
                           "seconds": f"{end - start:.1f}" if start is not None else "",
                           "started": f"{start:.1f}" if start is not None else "",
                           "finished": f"{end:.1f}" if end is not None else ""})
        self._write_record()

    def log_path(self, step):
        """Where ``step`` writes its output."""
        return self.logs / log_name(step.label)

    def _start(self, step, gpus):
        env = dict(self.env)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if self.dry_run:
            shown = dict(self.extra_env, **({"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if gpus else {}))
            print(_describe(step, shown, [d for d in step.deps if d in self._planned]), flush=True)
            return None, None, time.time(), gpus
        log = self.log_path(step)
        logger.info("%-44s started (log: %s)%s", step.label, log,
                    f" on GPU {','.join(gpus)}" if gpus else "")
        f = open(log, "a", encoding="utf-8")
        f.write(f"\n$ {shlex.join(str(c) for c in step.cmd)}\n")
        f.flush()
        proc = subprocess.Popen([str(c) for c in step.cmd], stdout=f, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env)
        return proc, f, time.time(), gpus

    def execute(self, steps):
        """Run ``steps`` (see ``pipeline.plan``) in dependency order.

        Raises
        ------
        StepFailed
            At the first failing step, after stopping the others that run; or when a step needs
            more GPUs than the pool has.
        """
        by_label = {s.label: s for s in steps}
        self._planned = set(by_label)
        for step in steps:
            if self.gpus and step.gpus > len(self.gpus):
                raise StepFailed(f"{step.label} needs {step.gpus} GPUs but --gpus gives "
                                 f"{len(self.gpus)} ({','.join(self.gpus)})")
        order = {s.label: i for i, s in enumerate(steps)}
        pending = dict(by_label)
        finished = {}  # label -> when it finished (or was found finished)
        running = {}
        free = list(self.gpus)
        priority = _chain_lengths(steps)
        try:
            while pending or running:
                for label, (proc, f, start, gpus) in list(running.items()):
                    code = 0 if proc is None else proc.poll()
                    if code is None:
                        continue
                    if f is not None:
                        f.close()
                    del running[label]
                    free.extend(gpus)
                    if code != 0:
                        raise StepFailed(f"{label} failed (exit {code}); see {self.log_path(by_label[label])}")
                    end = time.time()
                    self.times[label] = end - start
                    if proc is not None:
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
                    if step.finished():
                        if self.dry_run:
                            print(f"{step.label}\n    finished earlier: skipped", flush=True)
                        logger.info("%-44s finished earlier, skipped", step.label)
                        self._note(step.label, "skipped")
                        finished[step.label] = time.time()
                        del pending[step.label]
                        continue
                    if len(running) >= self.jobs:
                        break
                    wanted = step.gpus if self.gpus else 0
                    if wanted > len(free):
                        continue  # a step needing fewer GPUs may still start
                    gpus, free = free[:wanted], free[wanted:]
                    running[step.label] = self._start(step, gpus)
                    del pending[step.label]
                if running and not self.dry_run:
                    time.sleep(self.poll)
                elif pending and not ready and not running:
                    raise StepFailed(f"steps wait on each other: {sorted(pending)}")
        finally:
            for proc, f, _, _ in running.values():
                if proc is not None:
                    proc.terminate()
                    proc.wait()
                    f.close()


def load_slurm_config(path=None):
    """The SLURM resources of each step kind and row: ``{section: {key: value}}``.

    Arguments
    ---------
    path : str or Path, optional
        A YAML file as ``recipes/conf/slurm.yaml`` (the default).

    Raises
    ------
    ConfigError
        The file is missing, not YAML, or has an unknown key.

    Example
    -------
    >>> config = load_slurm_config()
    >>> config["default"]["gpu_option"]
    '--gres=gpu:{gpus}'
    """
    path = Path(path) if path else SLURM_CONFIG
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: give --slurm-config FILE (recipes/conf/slurm.yaml "
                          "is the template)")
    try:
        config = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    except Exception as err:  # ruamel's errors share no base class worth naming here
        raise ConfigError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict) or not all(isinstance(v, dict) for v in config.values()):
        raise ConfigError(f"{path} must map section names (default, a step kind, a row) to key: value pairs")
    for section, values in config.items():
        unknown = sorted(set(values) - set(SLURM_KEYS))
        if unknown:
            raise ConfigError(f"{path}, section {section}: unknown key {unknown[0]}; the keys are "
                              f"{', '.join(SLURM_KEYS)}")
    config.setdefault("default", {})
    return config


def resources(config, step):
    """The merged resource section of ``step``: default, then its kind, then its registry row.

    Example
    -------
    >>> from types import SimpleNamespace
    >>> config = {"default": {"cpus": 4, "time": "1:00:00"}, "train": {"time": "2-00:00:00"},
    ...           "wav2vec2": {"cpus": 8}}
    >>> step = SimpleNamespace(kind="train", row="wav2vec2")
    >>> sorted(resources(config, step).items())
    [('cpus', 8), ('time', '2-00:00:00')]
    """
    merged = dict(config.get("default", {}))
    merged.update(config.get(step.kind, {}))
    if step.row:
        merged.update(config.get(step.row, {}))
    return merged


def sbatch_options(res, gpus):
    """``sbatch`` options of a resource section for a step that needs ``gpus`` GPUs.

    Example
    -------
    >>> sbatch_options({"partition": "gpu", "cpus": 8, "mem": "32G", "time": "1-00:00:00",
    ...                 "gpu_option": "--gres=gpu:{gpus}", "options": ["--account=p1"]}, 2)
    ['--partition=gpu', '--cpus-per-task=8', '--mem=32G', '--time=1-00:00:00', '--gres=gpu:2', '--account=p1']
    """
    opts = []
    for key, flag in (("partition", "--partition"), ("account", "--account"), ("qos", "--qos"),
                      ("cpus", "--cpus-per-task"), ("mem", "--mem"), ("time", "--time")):
        if res.get(key) not in (None, ""):
            opts.append(f"{flag}={res[key]}")
    if gpus:
        opts.append(str(res.get("gpu_option", "--gres=gpu:{gpus}")).format(gpus=gpus))
    opts += [str(o) for o in res.get("options") or []]
    return opts


JOB_SCRIPT = """#!/bin/bash
# {label}: written by recipes/run_table.sh --launcher slurm
set -uo pipefail
{exports}echo "$ {shown}"
started=$(date +%s.%N)
# Shortly before the time limit SLURM sends USR1: stop the step (its last checkpoint stands) and
# put the job back in the queue, where it resumes from that checkpoint.
{command} &
child=$!
trap 'kill -TERM "$child"; wait "$child"; scontrol requeue "$SLURM_JOB_ID"; exit 0' USR1
wait "$child"
status=$?
# wait returns early when the trap fires; the trap then ends the script.
if [ "$status" -eq 0 ]; then
    awk -v s="$started" -v f="$(date +%s.%N)" 'BEGIN {{ printf "\\"%s\\",ran,%.1f,%.1f,%.1f\\n", {quoted_label}, f - s, s, f }}' \\
        >> {record}
fi
exit $status
"""


class Slurm:
    """Submits the planned steps as SLURM jobs and returns; SLURM runs them in dependency order.

    A step is submitted as ``sbatch`` of a job script under ``<out>/logs/slurm/`` with
    ``--dependency=afterok:<jobs of its unfinished dependencies>`` and ``--kill-on-invalid-dep=yes``
    (a failed step cancels what waits for it). ``<out>/logs/slurm_jobs.json`` records each step's
    job, so a rerun submits only steps that are neither finished nor queued (pending or running);
    the others' waits name the queued jobs. Jobs are requeued shortly before their time limit
    (``requeue_grace`` seconds, a USR1 from SLURM) and resume from their checkpoints.

    Arguments
    ---------
    out : str or Path
        The table's output folder.
    config : dict
        :func:`load_slurm_config`.
    threads_from_cpus : bool
        Set ``OMP_NUM_THREADS`` of each job to its ``cpus`` (CPU runs).
    dry_run : bool
        Print each job's ``sbatch`` command (dependencies by step label), its script's environment
        and command, and submit nothing.
    """

    def __init__(self, out, config, threads_from_cpus=True, dry_run=False):
        self.out = Path(out)
        self.logs = self.out / "logs"
        self.config = config
        self.threads_from_cpus = threads_from_cpus
        self.dry_run = dry_run
        self.record_file = self.logs / "slurm_jobs.json"
        self.submitted = {}

    def _run(self, cmd):
        try:
            done = subprocess.run(cmd, text=True, capture_output=True, check=False)
        except FileNotFoundError:
            raise StepFailed(f"{cmd[0]} not found: --launcher slurm needs SLURM's client commands "
                             "on PATH (or use --launcher local)") from None
        if done.returncode != 0:
            raise StepFailed(f"{shlex.join(cmd)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def queued(self):
        """Ids of this user's jobs that SLURM still holds as pending, running or completing."""
        out = self._run(["squeue", "--me", "--noheader", "--format=%i"])
        return {line.strip() for line in out.splitlines() if line.strip()}

    def _record(self):
        if self.record_file.is_file():
            return json.loads(self.record_file.read_text(encoding="utf-8"))
        return {}

    def _script(self, step, res):
        env = {}
        if self.threads_from_cpus and res.get("cpus"):
            env["OMP_NUM_THREADS"] = str(res["cpus"])
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        command = shlex.join(str(c) for c in step.cmd)
        return env, JOB_SCRIPT.format(label=step.label, exports=exports, command=command,
                                      quoted_label=json.dumps(step.label),
                                      record=shlex.quote(str(self.logs / "steps.csv")),
                                      shown=command.replace("\\", "\\\\").replace('"', '\\"')
                                      .replace("$", "\\$").replace("`", "\\`"))

    def execute(self, steps):
        """Submit every step that is neither finished nor queued; returns ``{label: job id}``.

        Raises
        ------
        StepFailed
            An ``sbatch`` or ``squeue`` call failed (the message has SLURM's words).
        """
        record = {} if self.dry_run else self._record()
        if not self.dry_run and not (self.logs / "steps.csv").is_file():
            # Each job appends its own row when it succeeds (JOB_SCRIPT): the report's run time.
            self.logs.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.logs / "steps.csv", newline="") as f:
                csv.writer(f).writerow(STEP_FIELDS)
        active = set() if self.dry_run else self.queued()
        jobs = {}  # label -> job id (or the label itself in a dry run) of a step still to finish
        counts = {"submitted": 0, "queued": 0, "finished": 0}
        by_label = {s.label: s for s in steps}
        for step in steps:
            earlier = record.get(step.label, {}).get("job")
            if earlier in active:
                jobs[step.label] = earlier
                counts["queued"] += 1
                logger.info("%-44s queued earlier as job %s", step.label, earlier)
                continue
            if step.finished():
                counts["finished"] += 1
                logger.info("%-44s finished earlier, skipped", step.label)
                if self.dry_run:
                    print(f"{step.label}\n    finished earlier: skipped", flush=True)
                continue
            waits = [jobs[d] for d in step.deps if d in by_label and d in jobs]
            res = resources(self.config, step)
            grace = int(res.get("requeue_grace", 300))
            opts = ["--parsable", f"--job-name={step.label}", f"--output={self.logs / log_name(step.label)}",
                    "--open-mode=append", f"--chdir={ROOT}", "--export=ALL", "--requeue",
                    f"--signal=B:USR1@{grace}", *sbatch_options(res, step.gpus)]
            if waits:
                opts += [f"--dependency=afterok:{':'.join(waits)}", "--kill-on-invalid-dep=yes"]
            env, text = self._script(step, res)
            script = self.logs / "slurm" / f"{log_name(step.label)[:-4]}.sh"
            if self.dry_run:
                deps = [d for d in step.deps if d in jobs]
                print(_describe(step, env, deps), flush=True)
                print("    sbatch " + shlex.join([o for o in opts if not o.startswith("--dependency")]
                                                 + ([f"--dependency=afterok:<{'>:<'.join(deps)}>"] if deps else [])),
                      flush=True)
                jobs[step.label] = step.label
                counts["submitted"] += 1
                continue
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(text, encoding="utf-8")
            job = self._run(["sbatch", *opts, str(script)]).strip().split(";")[0]
            jobs[step.label] = job
            record[step.label] = {"job": job, "dependency": ":".join(waits), "submitted": time.time()}
            with atomic_write(self.record_file) as f:
                json.dump(record, f, indent=2)
            counts["submitted"] += 1
            logger.info("%-44s submitted as job %s%s", step.label, job,
                        f" after {', '.join(waits)}" if waits else "")
        self.submitted = jobs
        verb = "would submit" if self.dry_run else "submitted"
        logger.info("%s %d job(s); %d queued earlier, %d finished earlier", verb, counts["submitted"],
                    counts["queued"], counts["finished"])
        return jobs

    def wait(self, jobs):
        """Block until ``jobs`` end (``sbatch --wait`` of an empty job after them); StepFailed if one failed."""
        ids = sorted(set(jobs.values()))
        if not ids or self.dry_run:
            return
        cmd = ["sbatch", "--wait", "--quiet", f"--dependency=afterok:{':'.join(ids)}", "--kill-on-invalid-dep=yes",
               "--job-name=wait", f"--output={self.logs / 'slurm' / 'wait.log'}", "--cpus-per-task=1",
               "--mem=100M", "--wrap=true"]
        (self.logs / "slurm").mkdir(parents=True, exist_ok=True)
        done = subprocess.run(cmd, text=True, capture_output=True, check=False)
        if done.returncode != 0:
            raise StepFailed(f"a job of the table failed (sbatch --wait: exit {done.returncode}); see the "
                             f"logs in {self.logs} and sacct/squeue for its state")


def print_environment_header(launcher, jobs, gpus, extra_env):
    """The first lines of a dry run: how the steps would be started."""
    where = {"local": f"local processes, up to {jobs} at once", "slurm": "one SLURM job per step"}[launcher]
    lines = [f"# dry run: {where}; nothing is started or written"]
    if gpus:
        lines.append(f"# GPU pool: {','.join(gpus)}")
    if extra_env:
        lines.append("# every step: " + " ".join(f"{k}={v}" for k, v in extra_env.items()))
    print("\n".join(lines), flush=True)

