"""The GPU section: bf16/fp16 vs fp32 training-step time and the largest batch that fits.

Two audio systems at the paper's sizes, randomly initialised (a step costs the same whatever the
weights): the audio-only CRDNN (20.8 M parameters) and the Wav2vec2 system over a wav2vec2 of XLS-R
300M's shape built locally (no model hub is reachable). Each step is SpeechBrain's ``fit_batch`` of
the system's Brain with ``--precision`` set as on the command line (autocast; a gradient scaler for
fp16), on synthetic audio of fixed duration. Every timed step's loss is checked to be finite, and
:func:`precision_check` trains every system with ``--precision=bf16`` and ``fp16``.
"""

import gc
import math
import time

import speechbrain as sb
import torch

from benchmarks.common import Row, load_system, make_brain

PRECISIONS = ("fp32", "bf16", "fp16")
STEP_BATCH = 8
STEP_SECONDS = 16.0
MAX_SECONDS = 20.0
XLSR_300M = {"hidden_size": 1024, "num_layers": 24, "num_heads": 16, "intermediate_size": 4096,
             "conv_dim": 512}
"""wav2vec2-xls-r-300m's transformer and convolution sizes."""


def synthetic_batch(size, seconds, sample_rate=16000, n_topics=8, seed=0):
    """A padded batch of ``size`` random waveforms of ``seconds`` with topic labels."""
    gen = torch.Generator().manual_seed(seed)
    samples = int(seconds * sample_rate)
    items = [{"id": f"utt{i}", "sig": 0.1 * torch.randn(samples, generator=gen),
              "topic_encoded": torch.LongTensor([i % n_topics])} for i in range(size)]
    return sb.dataio.batch.PaddedBatch(items)


def systems(work):
    """``[(name, hparams)]`` of the timed systems, at the paper's sizes."""
    from topic_id.standins.wav2vec2 import build_standin

    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    crdnn = load_system("hparams/audio_crdnn.yaml", data, work / "crdnn", n_topics=8)
    xlsr = build_standin(work / "xlsr_300m_random", **XLSR_300M)
    w2v = load_system("hparams/audio_wav2vec2.yaml", data, work / "w2v", n_topics=8,
                      wav2vec2_source=str(xlsr), wav2vec2_dim=XLSR_300M["hidden_size"])
    return [("audio-only CRDNN, paper size", crdnn),
            ("Wav2vec2, XLS-R-300M-sized random init", w2v)]


def _release():
    gc.collect()
    torch.cuda.empty_cache()


def step_times(hparams, precision, steps):
    """Seconds per training step at ``STEP_BATCH`` × ``STEP_SECONDS``, losses, peak GiB."""
    brain = make_brain(hparams, device="cuda", precision=precision)
    brain.on_fit_start()
    brain.modules.train()
    brain.nonfinite_count = 0
    batch = synthetic_batch(STEP_BATCH, STEP_SECONDS)
    for _ in range(3):
        brain.fit_batch(batch)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        losses.append(float(brain.fit_batch(batch)))
    torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated() / 2**30
    nonfinite = brain.nonfinite_count
    del brain
    _release()
    return elapsed, losses, nonfinite, peak


def _fits(brain, size):
    try:
        brain.fit_batch(synthetic_batch(size, MAX_SECONDS))
        torch.cuda.synchronize()
        return True
    except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
        if "out of memory" not in str(err).lower() and "CUDNN" not in str(err).upper():
            raise
        return False
    finally:
        for optimizer in getattr(brain, "optimizers_dict", {}).values():
            optimizer.zero_grad(set_to_none=True)
        _release()


def max_batch(hparams, precision, cap, refine=2):
    """The largest batch of ``MAX_SECONDS`` utterances that trains: doubling, then bisection."""
    brain = make_brain(hparams, device="cuda", precision=precision)
    brain.on_fit_start()
    brain.modules.train()
    brain.nonfinite_count = 0
    good, bad = 0, None
    size = 8
    while size <= cap:
        if not _fits(brain, size):
            bad = size
            break
        good, size = size, size * 2
    for _ in range(refine if bad else 0):
        middle = (good + bad) // 2
        if middle in (good, bad):
            break
        if _fits(brain, middle):
            good = middle
        else:
            bad = middle
    del brain
    _release()
    return good, bad is None


def run(work, quick=False):
    """The GPU rows (see the module docstring), yielded system by system.

    Arguments
    ---------
    work : Path
        Scratch folder (the XLS-R-sized model is written there).
    quick : bool
        Fewer timed steps, no largest-batch search and no precision check of every system.

    Yields
    ------
    list of Row
    """
    steps = 5 if quick else 20
    for name, hparams in systems(work):
        timing = {p: step_times(hparams, p, steps) for p in PRECISIONS}
        fp32 = timing["fp32"][0]
        rows = []
        for precision, (seconds, losses, nonfinite, peak) in timing.items():
            finite = nonfinite == 0 and all(math.isfinite(x) for x in losses)
            rows.append(Row(
                "gpu", f"{name}: {precision} training step, batch {STEP_BATCH} × {STEP_SECONDS:.0f} s",
                "fp32 step", f"{seconds * 1000:.0f} vs {fp32 * 1000:.0f} ms; peak {peak:.1f} GiB; "
                f"{len(losses)} losses finite: {'yes' if finite else 'NO'}", fp32 / seconds,
                "finite losses", finite))
        yield rows
        if quick:
            continue
        cap = 1024 if "CRDNN" in name else 256
        sizes = {p: max_batch(hparams, p, cap) for p in PRECISIONS}
        yield [Row("gpu", f"{name}: largest batch of {MAX_SECONDS:.0f} s utterances that trains, "
                   f"{precision}", "fp32", f"{size}{'+' if capped else ''} vs {sizes['fp32'][0]} utt. "
                   f"({size * MAX_SECONDS / 60:.0f} min of audio per step)", size / max(1, sizes["fp32"][0]))
               for precision, (size, capped) in sizes.items()]
    if not quick:
        yield precision_check(work / "precision")


TINY_BERT = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}
TINY_WAV2VEC2 = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "conv_dim": 16}
"""The stand-ins the tiny profile expects (as tests/conftest.py builds them)."""


def precision_check(work, precisions=("bf16", "fp16")):
    """Train every system YAML on the tiny corpus with each mixed precision; count non-finite losses.

    Each ``hparams/*.yaml`` runs ``recipes/train.py`` in this process with ``--profile=tiny
    --device=cuda --precision=P`` (two epochs, evaluation and outputs included), with SpeechBrain's
    loss check counting the training steps whose loss is not finite.

    Arguments
    ---------
    work : Path
        Scratch folder (the tiny corpus and the runs).
    precisions : tuple of str
        Precisions to check.

    Returns
    -------
    list of Row
    """
    import importlib.util

    from benchmarks.common import ROOT, quiet_logs
    from data_prep.demo_corpus import prepare_demo
    from topic_id.standins.bert import build_standin, read_manifest_texts
    from topic_id.standins.wav2vec2 import build_standin as build_wav2vec2

    corpus = work / "tiny"
    prepare_demo(corpus, seed=0, size="tiny")
    build_standin(read_manifest_texts(corpus), corpus / "standin_bert", **TINY_BERT)
    build_wav2vec2(corpus / "standin_wav2vec2", **TINY_WAV2VEC2)
    spec = importlib.util.spec_from_file_location("topic_id_train", ROOT / "recipes" / "train.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    counts = {"steps": 0, "nonfinite": 0}
    check = sb.core.Brain.check_loss_isfinite

    def counting_check(self, loss):
        counts["steps"] += 1
        counts["nonfinite"] += int(not torch.isfinite(loss))
        return check(self, loss)

    sb.core.Brain.check_loss_isfinite = counting_check
    yamls = sorted((ROOT / "hparams").glob("*.yaml"))
    rows = []
    try:
        for precision in precisions:
            counts.update(steps=0, nonfinite=0)
            failed = []
            for path in yamls:
                try:
                    trainer.main([str(path), f"--data_folder={corpus}",
                                  f"--output_folder={work / precision / path.stem}", "--profile=tiny",
                                  "--device=cuda", f"--precision={precision}"])
                except Exception as err:  # a failing system is a result of the check, not a crash
                    failed.append(f"{path.stem} ({type(err).__name__}: {str(err)[:80]})")
                quiet_logs()
            ok = not failed and counts["nonfinite"] == 0
            rows.append(Row(
                "gpu", f"--precision={precision}: every system YAML ({len(yamls)}: "
                f"{', '.join(p.stem for p in yamls)}) trained 2 epochs on the tiny corpus",
                "finite loss at every step", f"{counts['nonfinite']} non-finite of {counts['steps']} "
                f"training losses; failed: {'; '.join(failed) or 'none'}", None, "0 non-finite", ok))
    finally:
        sb.core.Brain.check_loss_isfinite = check
    return rows
