"""The loader section: how much audio the training loader of a paper-profile CRDNN delivers.

The corpus is the built-in one with its audio rewritten as ``data_prep lp`` writes LP's (16 kHz
mono 16-bit FLAC, :func:`data_prep.lahjoita_puhetta.convert_audio`), its training rows repeated
until an epoch holds ``seconds`` of audio, so that the loader runs at its steady rate. The loader
is the one ``recipes/train.py`` builds (:func:`topic_id.training.dataio.loader_kwargs`) for
``hparams/audio_crdnn.yaml --profile=paper``: dynamic batches of at most 200 s of padded audio,
decoded every epoch. An epoch is iterated without a model, so what is timed is everything the
loader does (decoding, padding, the hand-over from workers), at 0, 1 and 2 workers. What one
worker sustains is its audio per second of its own CPU time (the workers exit with the epoch, so
their CPU time is this process's children's), which other work on the machine does not change.

From that rate and a GPU step time it says how many workers keep a GPU busy: the step time is
measured (:func:`benchmarks.gpu.step_times`, bf16) where CUDA is available, and
otherwise ASSUMED at :data:`ASSUMED_STEP_SECONDS`, which makes the worker count an estimate.
"""

import csv
import math
import os
import time
from pathlib import Path

import speechbrain as sb

from benchmarks.common import Row, load_system
from data_prep.lahjoita_puhetta import convert_audio
from data_prep.prepared import manifest_columns, read_manifest
from topic_id.training import dataio

ASSUMED_STEP_SECONDS = (0.1, 0.2)
"""Training-step times of the paper-size CRDNN on 200 s batches assumed where no GPU measures them."""


def lp_format_corpus(corpus, dst, seconds):
    """The corpus with 16 kHz 16-bit FLAC audio and training rows repeated up to ``seconds``.

    Arguments
    ---------
    corpus : Path
        A prepared corpus (any audio format and rate).
    dst : Path
        The new corpus folder (audio under ``audio/``).
    seconds : float
        Audio the training manifest holds at least (its rows in order, then again).

    Returns
    -------
    Path
        ``dst``.
    """
    corpus, dst = Path(corpus), Path(dst)
    (dst / "audio").mkdir(parents=True, exist_ok=True)
    (dst / "topics.txt").write_bytes((corpus / "topics.txt").read_bytes())
    for split in ("train", "dev", "test"):
        path = corpus / f"{split}.csv"
        fields, rows = manifest_columns(path), read_manifest(path, as_written=True)
        for row, source in zip(rows, read_manifest(path)):
            src = Path(source["wav"])
            duration, reason = convert_audio(src, dst / "audio" / f"{row['ID']}.flac")
            if reason:
                raise RuntimeError(f"{src}: {reason}")
            row.update(wav=f"$data_root/audio/{row['ID']}.flac", duration=f"{duration:.3f}")
        if split == "train":
            copies = math.ceil(seconds / sum(float(r["duration"]) for r in rows))
            rows = [dict(r, ID=f"{r['ID']}-{k}") for k in range(copies) for r in rows]
        with open(dst / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return dst


def decode_rate(dataset, sample_rate):
    """Audio seconds one process decodes per second of its CPU time: :func:`topic_id.training.dataio.load_audio`
    of every distinct file of a dataset, in this process."""
    paths = sorted({dataset.data[i]["wav"] for i in dataset.data_ids})
    start = time.process_time()
    samples = sum(len(dataio.load_audio(path, sample_rate)) for path in paths)
    return samples / sample_rate / (time.process_time() - start)


def _cpu():
    """CPU seconds of this process and of its reaped children (the loader's finished workers)."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def epoch(dataset, opts, sample_rate):
    """One epoch of the training loader, timed from its creation to its last batch (worker
    start-up included, as an epoch of ``Brain.fit`` sees it).

    Returns
    -------
    dict
        ``audio`` (real audio seconds, padding excluded), ``batches``, ``wall`` (s), ``main`` and
        ``workers`` (CPU seconds of this process and of the workers, which exit with the epoch).
    """
    (main, workers), start = _cpu(), time.perf_counter()
    batches, samples = 0, 0.0
    for batch in sb.dataio.dataloader.make_dataloader(dataset, **dict(opts)):
        wav, lengths = batch.sig
        samples += float((lengths * wav.shape[1]).sum())
        batches += 1
    wall = time.perf_counter() - start
    end_main, end_workers = _cpu()
    return {"audio": samples / sample_rate, "batches": batches, "wall": wall, "main": end_main - main,
            "workers": end_workers - workers}


def gpu_step_seconds(work):
    """Seconds of a paper-size CRDNN training step on 200 s of audio, measured or assumed.

    The GPU section's step (bf16, :func:`benchmarks.gpu.step_times`) is a batch of ``STEP_BATCH``
    × ``STEP_SECONDS`` of audio; it is scaled to the 200 s of the paper profile's batches (the
    step time grows with the audio in it).

    Returns
    -------
    tuple
        ``({label: seconds}, measured)``: one measured time on CUDA, else the
        :data:`ASSUMED_STEP_SECONDS` and False.
    """
    import torch

    if not torch.cuda.is_available():
        return {f"ESTIMATE at an assumed {s:g} s step": s for s in ASSUMED_STEP_SECONDS}, False
    from benchmarks import gpu

    (work / "gpu_data").mkdir(parents=True, exist_ok=True)
    hparams = load_system("hparams/audio_crdnn.yaml", work / "gpu_data", work / "gpu_crdnn", n_topics=8)
    seconds = gpu.step_times(hparams, "bf16", 10)[0]
    per_200 = seconds * 200 / (gpu.STEP_BATCH * gpu.STEP_SECONDS)
    return {f"bf16 step measured on {torch.cuda.get_device_name(0)} ({seconds * 1000:.0f} ms at "
            f"{gpu.STEP_BATCH} × {gpu.STEP_SECONDS:.0f} s, scaled to 200 s)": per_200}, True


def run(corpus, work, seconds, workers=(0, 1, 2), repeats=2):
    """The loader rows (see the module docstring).

    Arguments
    ---------
    corpus : Path
        A prepared built-in corpus.
    work : Path
        Scratch folder (the FLAC copy of the corpus).
    seconds : float
        Audio per timed epoch (the training rows are repeated up to it).
    workers : tuple of int
        Worker counts timed; 1 must be among them (the per-worker rate).
    repeats : int
        Timed epochs per worker count (the fastest counts).

    Returns
    -------
    list of Row
    """
    flac = lp_format_corpus(corpus, work / "lp_format", seconds)
    hp = load_system("hparams/audio_crdnn.yaml", flac, work / "crdnn", profile="paper", pin_memory=False,
                     prefetch_factor=None)
    rate = hp["sample_rate"]
    train = dataio.dataio_prepare(hp, dataio.label_encoder(flac))["train"]
    decoded = max(decode_rate(train, rate) for _ in range(repeats))
    opts = {}
    for n in workers:
        train_opts = dict(hp["train_dataloader_opts"], num_workers=n)
        opts[n] = dataio.loader_kwargs(dict(hp, train_dataloader_opts=train_opts), {"train": train})["train"]
    # Round after round through every worker count, so that a change in the machine's load
    # reaches all of them alike.
    timed = {n: [] for n in workers}
    for _ in range(repeats):
        for n in workers:
            timed[n].append(epoch(train, opts[n], rate))
    epochs = {n: min(runs, key=lambda e: e["wall"]) for n, runs in timed.items()}
    audio, batches = epochs[0]["audio"], epochs[0]["batches"]
    per_batch = audio / batches
    speed = {n: e["audio"] / e["wall"] for n, e in epochs.items()}
    # A worker's audio per second of its own CPU time (its decoding thread and the thread that hands
    # batches over through shared memory): what it sustains on a core of its own, whatever else runs.
    per_worker = epochs[1]["audio"] / epochs[1]["workers"]
    what = (f"training loader of audio_crdnn --profile=paper (dynamic batches ≤ {hp['max_batch_length']:g} s "
            f"padded, {batches} batches, {audio / 3600:.1f} h of 16 kHz FLAC as data_prep lp writes, "
            f"{per_batch:.0f} s real audio per batch), no model; fastest of {repeats} epochs each, interleaved")
    rows = [Row("loader", f"{what}, num_workers={n}", "num_workers=0",
                f"{speed[n]:.0f} audio s/s ({speed[n] / per_batch:.1f} batches/s); CPU s per audio h: "
                f"main {3600 * e['main'] / e['audio']:.2f}, workers {3600 * e['workers'] / e['audio']:.2f}; "
                f"cores used {(e['main'] + e['workers']) / e['wall']:.2f}",
                speed[n] / speed[0])
            for n, e in epochs.items()]
    rows.append(Row("loader", "one loader worker (num_workers=1): audio delivered per second of the "
                    "worker's CPU time", "real time", f"{per_worker:.0f} audio s per worker CPU s (decoding "
                    f"alone, topic_id.training.dataio.load_audio of the same files: {decoded:.0f})", per_worker))
    steps, measured = gpu_step_seconds(work)
    limit = float(hp["max_batch_length"])
    for label, step in steps.items():
        need = limit / step
        n = max(1, math.ceil(need / per_worker))
        rows.append(Row(
            "loader", f"workers a paper-size CRDNN step needs to stay busy: {label}, "
            f"{limit:g} s of audio per step (a batch's padded length: at most its real audio)",
            "one worker's rate", f"{need:.0f} audio s/s needed, {per_worker:.0f} per worker CPU s: ≥ {n} "
            f"worker{'s' * (n > 1)} (cores like these{'' if measured else '; an ESTIMATE: no GPU measured it'}); "
            f"0 workers add up to {limit / speed[0]:.3f} s of loading to each {step:.2g} s step",
            per_worker / need))
    return rows
