"""What every benchmark section shares: the machine, corpora, systems, timing and the table."""

import csv
import dataclasses
import logging
import os
import platform
import re
import shutil
import time
from pathlib import Path

import torch
import yaml
from hyperpyyaml import load_hyperpyyaml

from data_prep.prepared import manifest_columns, read_manifest
from topic_id.config.overrides import resolve_overrides

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
BERT_BASE = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072,
             "vocab_size": 2000}
"""BERT-base's shape (FinBERT's, less its 50k vocabulary), randomly initialised."""


@dataclasses.dataclass
class Row:
    """One line of the results table.

    Attributes
    ----------
    section : str
        Which benchmark.
    measurement : str
        What was timed.
    baseline : str
        What it is compared with.
    value : str
        The measured values, with units.
    ratio : float or None
        The headline ratio (None where a row only reports values).
    goal : str
        The goal the ratio is held to ("" for none).
    met : bool or None
        Whether the goal is met (None for no goal).
    """

    section: str
    measurement: str
    baseline: str
    value: str
    ratio: float = None
    goal: str = ""
    met: bool = None


QUIET_LOGGERS = ("speechbrain", "topic_id", "data_prep", "transformers")
"""The loggers :func:`quiet_logs` raises to ERROR."""


def quiet_logs():
    """Keep library logging and progress bars out of the table output."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TQDM_DISABLE", "1")


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine():
    """Name and description of this machine.

    Returns
    -------
    dict
        ``name`` (a file-name slug: the GPU's name when CUDA is available, else the CPU model and
        core count), ``cpu``, ``cores``, ``ram_gib``, ``torch``, ``threads``, ``gpu`` (or None).
    """
    cores = os.cpu_count() or 1
    cpu = _cpu_model()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    name = gpu if gpu else f"cpu {cpu} {cores}c"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return {"name": slug, "cpu": cpu, "cores": cores, "ram_gib": _ram_gib(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version()}


def load_average():
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def cpu_seconds():
    """CPU time used so far by this process and its finished children (user + system)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load_system(hparams_file, data_folder, output_folder, profile=None, **overrides):
    """Load a system YAML as ``recipes/train.py`` does (profile, then explicit overrides).

    Arguments
    ---------
    hparams_file : str
        Path relative to the project root (``hparams/text.yaml``).
    data_folder, output_folder : str or Path
        The prepared corpus and a scratch folder.
    profile : str, optional
        A profile name (``demo``).
    **overrides
        Top-level keys to set.

    Returns
    -------
    dict
        The loaded hyperparameters.
    """
    path = ROOT / hparams_file
    given = {"data_folder": str(data_folder), "output_folder": str(output_folder), **overrides}
    text = resolve_overrides(path, yaml.safe_dump(given), profile)
    Path(output_folder).mkdir(parents=True, exist_ok=True)
    with open(path, encoding="utf-8") as fin:
        return load_hyperpyyaml(fin, text)


def make_brain(hparams, brain_class=None, device="cpu", precision=None):
    """The system's Brain over its modules, without a checkpointer (nothing is written).

    Arguments
    ---------
    hparams : dict
        Loaded hyperparameters.
    brain_class : type, optional
        Instead of the YAML's ``brain_class``.
    device : str
        Torch device.
    precision : str, optional
        ``fp32``, ``fp16`` or ``bf16`` (SpeechBrain's ``--precision``).

    Returns
    -------
    speechbrain.Brain
    """
    run_opts = {"device": device}
    if precision:
        run_opts["precision"] = precision
    cls = brain_class or hparams["brain_class"]
    return cls(modules=hparams["modules"], opt_class=hparams["opt_class"], hparams=hparams,
               run_opts=run_opts, checkpointer=None)


def train_epochs(brain, dataset, loader_kwargs, epochs=1):
    """Seconds of each training epoch of one ``Brain.fit`` call (no validation, no checkpoint).

    An epoch is timed from the end of ``on_stage_start`` to the start of ``on_stage_end``: the
    dataloader's iteration and every step, not the set-up a run does once (optimizer, loader).

    Arguments
    ---------
    brain : speechbrain.Brain
        From :func:`make_brain`.
    dataset : DynamicItemDataset
        The training set.
    loader_kwargs : dict
        DataLoader options.
    epochs : int
        Epochs to run.

    Returns
    -------
    list of float
    """
    counter = brain.hparams.epoch_counter
    counter.limit = counter.current + epochs
    times, began = [], []
    on_start, on_end = brain.on_stage_start, brain.on_stage_end

    def timed_start(stage, epoch=None):
        on_start(stage, epoch)
        began.append(time.perf_counter())

    def timed_end(stage, stage_loss, epoch=None):
        times.append(time.perf_counter() - began[-1])
        on_end(stage, stage_loss, epoch)

    brain.on_stage_start, brain.on_stage_end = timed_start, timed_end
    try:
        brain.fit(counter, dataset, None, progressbar=False, train_loader_kwargs=dict(loader_kwargs))
    finally:
        del brain.on_stage_start, brain.on_stage_end
    return times


def subset_corpus(src, dst, n_train=None, n_eval=None, subset=None):
    """A copy of a prepared corpus's manifests cut to the first rows (audio and models linked).

    Arguments
    ---------
    src, dst : Path
        The prepared corpus and the new folder.
    n_train, n_eval : int, optional
        Rows kept in train and in each of dev/test (None: all).
    subset : str, optional
        Keep only train rows of this ``subset`` (``transcribed``).

    Returns
    -------
    Path
        ``dst``.
    """
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.suffix == ".csv" or entry.name == "cache" or (dst / entry.name).exists():
            continue
        if entry.is_dir():
            (dst / entry.name).symlink_to(entry.resolve())
        else:
            shutil.copyfile(entry, dst / entry.name)
    for split, n in (("train", n_train), ("dev", n_eval), ("test", n_eval)):
        fields = manifest_columns(src / f"{split}.csv")
        rows = read_manifest(src / f"{split}.csv", as_written=True)
        if split == "train" and subset:
            rows = [r for r in rows if r["subset"] == subset]
        with open(dst / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows if n is None else rows[:n])
    return dst


def best(times):
    """The fastest of repeated timings (the one least disturbed by other work on the machine)."""
    return min(times)


def markdown(rows, info, args, wall, loads):
    """The results table as Markdown, with the machine's description and how it was run.

    Arguments
    ---------
    rows : list of Row
        The measurements.
    info : dict
        :func:`machine`.
    args : list of str
        The command line.
    wall : tuple
        Wall-clock and CPU seconds the whole run took (on an idle machine the wall time is about
        the CPU time divided by the threads in use).
    loads : tuple
        1-minute load average at the start and at the end.

    Returns
    -------
    str
    """
    lines = [
        f"# Benchmarks: {info['name']}",
        "",
        f"- command: `python -m benchmarks {' '.join(args)}`: {wall[0] / 60:.1f} min wall clock, "
        f"{wall[1] / 60:.1f} min of CPU time",
        f"- CPU: {info['cpu']}, {info['cores']} cores, {info['ram_gib']:.0f} GiB RAM; torch "
        f"{info['torch']} ({info['threads']} threads), Python {info['python']}",
        f"- GPU: {info['gpu'] or 'none'}",
        f"- load average (1 min) at start / end: {loads[0]:.2f} / {loads[1]:.2f}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        "Each ratio compares two timings taken side by side in this one run, on the same data, "
        "model and machine (best of the repeats, so that other work on the machine disturbs both "
        "sides alike).",
        "",
        "| section | measurement | baseline | values | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.3g}"
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.section} | {row.measurement} | {row.baseline} | {row.value} | {ratio} "
                     f"| {row.goal} | {met} |")
    return "\n".join(lines) + "\n"
