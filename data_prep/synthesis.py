"""Speaking planned utterances into a corpus: shared by the built-in corpus and ``speak``.

A *plan* is a dict that decides everything about one utterance before it is spoken (text, voice,
split, rate, pitch, noise, file format), drawn from one seeded :class:`numpy.random.Generator`.
:func:`synthesise` speaks the plans with :class:`data_prep.espeak.Synthesizer` and renders them
the way a crowd-sourced corpus varies: level, silence padding, additive white, pink or brown
noise at a random SNR, and a file at 16, 22.05 or 44.1 kHz as WAV or FLAC, so the data
pipeline's resampling is exercised. Every utterance is synthesised independently of the ones
before it (see :func:`data_prep.espeak._steady_voice_data`), so a seed gives byte-identical
manifests.

Example
-------
>>> import numpy as np
>>> plan = audio_plan(np.random.default_rng(0))
>>> RATE_WPM[0] <= plan["rate"] <= RATE_WPM[1] and plan["noise"] in NOISE_TYPES
True
"""

import json
import logging
from pathlib import Path

import numpy as np
import scipy.signal
import torch

from corpus_tools.audio import resample, write_audio
from data_prep.alignments import alignment_path, write_alignment
from data_prep.espeak import ESPEAK_LANGUAGE, Synthesizer
from data_prep.manifest import MAX_DURATION, SPLITS, Dropped, PrepError, Row, audio_duration

logger = logging.getLogger(__name__)

VOICES = {
    "train": ("m1", "m3", "m5", "m7", "f1", "f3", "f5", "klatt"),
    "dev": ("m2", "f2"),
    "test": ("m6", "f4"),
}
"""espeak-ng variants (``espeak-ng-data/voices/!v``) per split; the ``speaker`` of a row is
``fi+<variant>``. Dev and test voices are held out from train, as LP's dev/test speakers are, and
each split mixes male and female voices."""

SAMPLE_RATES = (16000, 22050, 44100)
"""Rates the files are written at; espeak-ng itself synthesises at 22050 Hz."""
CONTAINERS = ("wav", "flac")

RATE_WPM = (145, 185)
PITCH = (30, 70)
PITCH_RANGE = (30, 80)
SNR_DB = (10.0, 30.0)
"""Noise level. The lower end stays at 10 dB so that an ASR trained on a few hundred synthetic
utterances still reaches a usable WER for the pipeline systems."""
NOISE_TYPES = ("white", "pink", "brown")
PAD_SECONDS = (0.05, 0.3)
PEAK = (0.3, 0.9)


def ready_synthesizer():
    """The process-wide synthesiser, checked to have every voice of :data:`VOICES`.

    Raises
    ------
    PrepError
        When espeak-ng cannot be loaded or a voice variant is missing.
    """
    synth = Synthesizer.get()
    missing = sorted({v for vs in VOICES.values() for v in vs} - set(synth.variants()))
    if missing:
        raise PrepError(
            f"espeak-ng voice variants {missing} are missing from {synth.data}: "
            "reinstall espeakng-loader"
        )
    return synth


def pick(rng, items):
    """One of ``items``, drawn with ``rng``."""
    return items[int(rng.integers(len(items)))]


def audio_plan(rng):
    """Random post-processing settings of one utterance."""
    return {
        "rate": int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "pitch_range": int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        "snr": float(rng.uniform(*SNR_DB)),
        "noise": pick(rng, NOISE_TYPES),
        "peak": float(rng.uniform(*PEAK)),
        "pad": (float(rng.uniform(*PAD_SECONDS)), float(rng.uniform(*PAD_SECONDS))),
        "noise_seed": int(rng.integers(2**31)),
    }


def assign_formats(rng, plans):
    """Give every planned utterance a (sample rate, container), each pair used about equally."""
    pairs = [(sr, ext) for sr in SAMPLE_RATES for ext in CONTAINERS]
    for i, slot in enumerate(rng.permutation(len(plans))):
        plans[slot]["sample_rate"], plans[slot]["container"] = pairs[i % len(pairs)]


_PINK = (
    [0.049922035, -0.095993537, 0.050612699, -0.004408786],
    [1.0, -2.494956002, 2.017265875, -0.522189400],
)
"""A 4-pole IIR filter whose response approximates 1/f over the audio band (J. O. Smith,
Spectral Audio Signal Processing, "Example: Synthesis of 1/f Noise")."""
_BROWN = ([1.0], [1.0, -0.995])
"""A leaky integrator: 1/f^2 above a few Hz, no drift."""


def _noise(rng, kind, n):
    """White, pink (1/f) or brown (1/f^2) noise of unit power.

    Coloured noise is filtered rather than shaped in an FFT: file lengths are often prime, and an
    FFT of prime length is slow.
    """
    noise = rng.standard_normal(n)
    if kind in ("pink", "brown"):
        noise = scipy.signal.lfilter(*(_PINK if kind == "pink" else _BROWN), noise)
    return noise / max(np.sqrt(np.mean(noise**2)), 1e-12)


def _render(speech, source_rate, plan):
    """Level, pad, resample and add noise to synthesised speech.

    Arguments
    ---------
    speech : numpy.ndarray
        float32 samples from :meth:`Synthesizer.speak`.
    source_rate : int
        Their sample rate.
    plan : dict
        The utterance's settings (``peak``, ``pad``, ``sample_rate``, ``noise``, ``snr``,
        ``noise_seed``).

    Returns
    -------
    numpy.ndarray
        float32 samples at ``plan["sample_rate"]``, peak below 1.
    """
    # No silence trimming: espeak-ng adds almost none, and a threshold on sample values would
    # make the length depend on the last bits of the waveform.
    speech = speech * (plan["peak"] / np.abs(speech).max())
    pad = [np.zeros(int(p * source_rate), dtype=np.float32) for p in plan["pad"]]
    signal = np.concatenate([pad[0], speech, pad[1]]).astype(np.float32)
    signal = resample(signal, source_rate, plan["sample_rate"])
    # SNR over the speech samples only, so that padding does not make the noise louder.
    active = np.abs(signal) > 0.02 * np.abs(signal).max()
    speech_power = float(np.mean(signal[active] ** 2))
    noise = _noise(np.random.default_rng(plan["noise_seed"]), plan["noise"], len(signal))
    signal = signal + noise * np.sqrt(speech_power / 10 ** (plan["snr"] / 10))
    peak = np.abs(signal).max()
    if peak > 0.99:
        signal = signal * (0.99 / peak)
    return signal.astype(np.float32)


def synthesise(plans, out_dir, speech_window=None, alignments=False):
    """Speak planned utterances into ``out_dir/audio``.

    Arguments
    ---------
    plans : list of dict
        One per utterance: ``ID``, ``file`` (name under ``audio/``), ``text``, ``words``,
        ``topic``, ``split``, ``subset``, ``speaker``, ``voice`` (a variant of the espeak-ng voice
        ``language``, default :data:`~data_prep.espeak.ESPEAK_LANGUAGE`), ``source`` and the settings
        of :func:`audio_plan` and :func:`assign_formats`.
    out_dir : Path
        The corpus folder.
    speech_window : tuple of float, optional
        ``(shortest, longest)`` seconds of speech; an utterance outside is re-spoken once at a
        rate scaled to fit. A plan's own ``speech_window`` (a multi-sentence recording's) wins.
    alignments : bool
        Also write, for every row with a transcript, when each word is said, as an LP word
        alignment (:func:`data_prep.alignments.write_alignment` at
        :func:`~data_prep.alignments.alignment_path`); the audio is the same either way.

    Returns
    -------
    tuple
        ``(splits, dropped)``: ``{split: [Row]}`` and ``[Dropped]``.
    """
    threads = torch.get_num_threads()
    # Signals of a few seconds are too short for intra-op threads to pay off: with several threads the
    # resampling costs ten times the CPU on a busy 2-core machine.
    torch.set_num_threads(1)
    try:
        return _synthesise_all(plans, out_dir, speech_window, alignments)
    finally:
        torch.set_num_threads(threads)


def _synthesise_all(plans, out_dir, speech_window, alignments):
    synth = Synthesizer.get()
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: [] for split in SPLITS}
    dropped = []
    for n, plan in enumerate(plans, 1):
        settings = (plan["voice"], plan["rate"], plan["pitch"], plan["pitch_range"], plan["noise_seed"])
        language = plan.get("language", ESPEAK_LANGUAGE)
        speech = synth.speak(plan["text"], *settings, language=language)
        window = plan.get("speech_window", speech_window)
        if window and len(speech):
            seconds = len(speech) / synth.sample_rate
            target = min(max(seconds, window[0]), window[1])
            if target != seconds:
                rate = int(np.clip(plan["rate"] * seconds / target, 80, 400))
                speech = synth.speak(plan["text"], plan["voice"], rate, *settings[2:], language=language)
        if not np.any(np.abs(speech) > 1e-3):
            dropped.append(Dropped(plan["source"], f"espeak-ng produced no speech for {plan['text']!r}"))
            continue
        path = audio_dir / plan["file"]
        write_audio(path, _render(speech, synth.sample_rate, plan), plan["sample_rate"])
        duration, reason = audio_duration(path)
        if not reason and duration >= MAX_DURATION:
            reason = (
                f"the spoken text lasts {duration:.1f} s, not below the {MAX_DURATION:g} s limit of "
                "the manifests (paper Sec. II): split it into shorter rows"
            )
        if reason:
            path.unlink()
            dropped.append(Dropped(plan["source"], reason))
            continue
        if alignments and plan["words"] and plan["subset"] != "untranscribed":
            # The rendering puts pad[0] seconds of silence (whole samples at espeak's rate) first.
            offset = int(plan["pad"][0] * synth.sample_rate) / synth.sample_rate
            words = [(offset + s, offset + e, w) for s, e, w in synth.word_times(plan["text"], speech)]
            write_alignment(alignment_path(out_dir, plan["ID"]), words, duration)
        splits[plan["split"]].append(
            Row(
                ID=plan["ID"],
                wav=f"$data_root/audio/{plan['file']}",
                duration=round(duration, 3),
                topic=plan["topic"],
                words=plan["words"] if plan["subset"] != "untranscribed" else "",
                speaker=plan["speaker"],
                subset=plan["subset"],
            )
        )
        if n % 100 == 0:
            logger.info("synthesised %d/%d utterances", n, len(plans))
    return splits, dropped


def count_by(items, key):
    """How many plans (dicts) have each value of ``key``, by value as text, sorted."""
    counts = {}
    for item in items:
        counts[str(item[key])] = counts.get(str(item[key]), 0) + 1
    return dict(sorted(counts.items()))


def summary_extra(synth, plans, splits, seed, **more):
    """The ``summary.json`` entries of a spoken corpus: synthesiser, voices, rates, containers.

    Arguments
    ---------
    synth : Synthesizer
        The synthesiser that spoke the corpus.
    plans : list of dict
        The plans; only those of kept rows are counted.
    splits : dict
        ``{split: [Row]}`` as written.
    seed : int
        The seed of the plans.
    **more
        Further entries, in this order after the common ones.

    Returns
    -------
    dict
    """
    kept = {r.ID for rows in splits.values() for r in rows}
    done = [p for p in plans if p["ID"] in kept]
    extra = {
        "synthesiser": f"espeak-ng {synth.version} (espeakng-loader), language {ESPEAK_LANGUAGE}",
        "seed": seed,
        "voices": {split: sorted({r.speaker for r in rows}) for split, rows in splits.items()},
        "sample_rates": count_by(done, "sample_rate"),
        "containers": count_by(done, "container"),
        "snr_db": list(SNR_DB),
    }
    extra.update(more)
    return extra


def warn_if_different(out_dir, **wanted):
    """Warn when a finished folder was built with other settings than those now asked for."""
    try:
        summary = json.loads((Path(out_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    differ = {k: (summary.get(k), v) for k, v in wanted.items() if summary.get(k) != v}
    if differ:
        logger.warning(
            "%s was built with %s, not %s; use --force to rebuild it",
            out_dir,
            ", ".join(f"{k}={old}" for k, (old, _) in differ.items()),
            ", ".join(f"{k}={new}" for k, (_, new) in differ.items()),
        )
