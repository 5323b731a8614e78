"""The built-in corpus: colloquial Finnish speech synthesised with espeak-ng.

The project must run end-to-end without a download, so it speaks its own corpus. espeak-ng comes
as a shared library with its data in the ``espeakng-loader`` wheel (no system package) and is
driven through ``ctypes`` by :class:`Synthesizer`. Two entry points write a prepared corpus that
follows the manifest contract of :mod:`data_prep.manifest`:

* :func:`prepare_demo` composes sentences for the eight topics of :data:`data_prep.topics.TOPICS`
  from :mod:`data_prep.demo_text` and speaks them;
* :func:`speak_csv` speaks any CSV of ``text`` and ``topic`` (optional ``split``, ``speaker``,
  ``ID``, ``subset``) into a corpus with the same synthesiser.

Every utterance varies the way a crowd-sourced corpus does: an espeak voice variant (the
``speaker``; dev and test voices never occur in train), speaking rate, pitch and pitch range,
level, additive white, pink or brown noise at a random SNR, and the file is written at 16, 22.05
or 44.1 kHz as WAV or FLAC, so the data pipeline's resampling is exercised. Everything random
comes from one seeded :class:`numpy.random.Generator` and every utterance is synthesised
independently of the ones before it (see :func:`_steady_voice_data`), so a seed gives
byte-identical manifests.

Example
-------
>>> from data_prep.demo_corpus import compose
>>> import numpy as np
>>> text = compose(np.random.default_rng(0), "summer", "clear")
>>> isinstance(text, str) and len(text.split()) >= 3
True
"""

import atexit
import csv
import ctypes
import functools
import io
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile
import torch
import torchaudio

from data_prep import demo_text
from data_prep.manifest import (
    MAX_DURATION,
    SPLITS,
    Dropped,
    PrepError,
    Row,
    audio_duration,
    is_finished,
    start,
    write_prepared,
)
from data_prep.text_norm import normalize_transcript
from data_prep.topics import TOPICS

logger = logging.getLogger(__name__)

ESPEAK_LANGUAGE = "fi"
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

SIZES = {
    "tiny": {"train": 48, "dev": 16, "test": 16},
    "default": {"train": 448, "dev": 96, "test": 96},
    "large": {"train": 1792, "dev": 384, "test": 384},
}
"""Utterances per split. ``tiny`` is for tests (a few seconds to build); ``default`` is sized so
that all ten systems train on a 2-core CPU within the demo budget; ``large`` is for a GPU."""

TRAIN_TOPIC_WEIGHTS = (1.15, 1.0, 0.85, 1.1, 1.0, 0.9, 0.85, 1.15)
"""Relative number of train utterances per topic (order of TOPICS): a mild imbalance, as in LP,
so that accuracy and unweighted average recall differ. Dev and test are balanced."""

TRANSCRIBED_SHARE = 0.5
"""Share of each topic's train utterances in the ``transcribed`` subset; the rest are
``untranscribed`` (empty ``words``), as LP's train set."""

KIND_SHARES = {"shared": 0.12, "generic": 0.05}
"""Share of each split's utterances built from sentences two topics share and from sentences that
say nothing about the topic; the rest are topic sentences. Fixed counts per split keep the
bag-of-words accuracy of the manual transcripts below 100 % on every seed."""

RATE_WPM = (145, 185)
PITCH = (30, 70)
PITCH_RANGE = (30, 80)
SNR_DB = (10.0, 30.0)
"""Noise level. The lower end stays at 10 dB so that an ASR trained on a few hundred synthetic
utterances still reaches a usable WER for the pipeline systems."""
NOISE_TYPES = ("white", "pink", "brown")
SPEECH_SECONDS = (1.8, 4.6)
"""Demo utterances whose speech falls outside this window are re-spoken at an adjusted rate;
with the silence padding the files last about 2 to 5 s, which keeps CPU training cheap."""
PAD_SECONDS = (0.05, 0.3)
PEAK = (0.3, 0.9)


def _link_or_copy(source, target):
    try:
        os.symlink(source, target)
    except OSError:
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)


def _steady_voice_data(source):
    """A private ``espeak-ng-data`` whose voice variants have no pitch flutter.

    espeak-ng modulates the pitch with a flutter table read through a static counter that runs on
    from one utterance to the next (and survives ``espeak_Terminate``), so the same text spoken
    twice in one process differs by a few milliseconds, and the manifests, whose durations are
    measured from the files, would depend on what the process had spoken before. With
    ``flutter 0`` every utterance depends only on its own settings; the corpus gets its pitch
    variation from the per-utterance pitch and range instead. Everything but the small variant
    files is linked, not copied.

    Arguments
    ---------
    source : Path
        The shipped ``espeak-ng-data``.

    Returns
    -------
    Path
        The private copy, removed when the process exits.
    """
    root = Path(tempfile.mkdtemp(prefix="topic-id-espeak-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    data = root / "espeak-ng-data"
    variants = data / "voices" / "!v"
    variants.mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "voices":
            _link_or_copy(item, data / item.name)
    for item in (source / "voices").iterdir():
        if item.name != "!v":
            _link_or_copy(item, data / "voices" / item.name)
    for item in (source / "voices" / "!v").iterdir():
        if item.is_file():
            # A later keyword overrides an earlier one in espeak-ng voice files.
            (variants / item.name).write_bytes(item.read_bytes() + b"\nflutter 0\n")
    return data


class Synthesizer:
    """espeak-ng through ctypes, speaking at its native 22050 Hz.

    The library keeps global state, so a process holds one instance: use :meth:`get`. The
    voices speak from a flutter-free copy of the data (see :func:`_steady_voice_data`), so an
    utterance's length depends only on its text and settings.

    Arguments
    ---------
    library : str, optional
        Path of ``libespeak-ng``; default: the one of the ``espeakng-loader`` wheel.
    data : str, optional
        Path of ``espeak-ng-data``; default: the one of the wheel.
    """

    _instance = None
    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _INITIALIZE_DONT_EXIT = 0x8000
    _POS_CHARACTER = 1
    _CHARS_UTF8 = 1
    _RATE, _PITCH, _RANGE = 1, 3, 4
    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    def __init__(self, library=None, data=None):
        if library is None or data is None:
            try:
                import espeakng_loader
            except ImportError as err:
                raise PrepError(
                    "the espeakng-loader package is missing: pip install espeakng-loader "
                    "(it ships espeak-ng, no system package is needed)"
                ) from err
            library = library or espeakng_loader.get_library_path()
            data = data or espeakng_loader.get_data_path()
        if not (Path(data) / "voices" / "!v").is_dir():
            raise PrepError(f"{data} holds no espeak-ng voices: reinstall espeakng-loader")
        self.data = _steady_voice_data(Path(data))
        try:
            lib = ctypes.CDLL(str(library))
        except OSError as err:
            raise PrepError(
                f"cannot load espeak-ng from {library} ({err}): reinstall espeakng-loader"
            ) from err
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [self._CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        # Seeds the noise of the Klatt voices; absent before espeak-ng 1.52.
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = [ctypes.c_long]
            self._set_seed.restype = None
        self.sample_rate = lib.espeak_Initialize(
            self._AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data).encode(), self._INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise PrepError(
                f"espeak-ng failed to initialise with data {self.data}: reinstall espeakng-loader"
            )
        self.version = lib.espeak_Info(None).decode()
        self._chunks = []
        # ctypes calls back into this object; the reference keeps the trampoline alive.
        self._callback = self._CALLBACK(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib

    @classmethod
    def get(cls):
        """The process-wide synthesiser, initialised on first use."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _collect(self, wav, n_samples, events):
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        return 0

    def variants(self):
        """The voice variants that ship with the data (file names in ``voices/!v``)."""
        folder = self.data / "voices" / "!v"
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def speak(self, text, variant, rate=175, pitch=50, pitch_range=50, seed=0):
        """Synthesise Finnish text.

        Arguments
        ---------
        text : str
            What to say (UTF-8; punctuation shapes the prosody).
        variant : str
            A voice variant, e.g. ``"m1"``; must exist in :meth:`variants` (espeak-ng would
            silently ignore an unknown one).
        rate : int
            Words per minute.
        pitch, pitch_range : int
            0-100, relative to the variant's own voice (50 = unchanged).
        seed : int
            Seed of espeak-ng's own random numbers (noise of the Klatt voices).

        Returns
        -------
        numpy.ndarray
            float32 samples in [-1, 1] at :attr:`sample_rate`; empty when nothing was spoken.
        """
        if not (self.data / "voices" / "!v" / variant).is_file():
            raise PrepError(f"espeak-ng voice variant {variant!r} not found in {self.data}/voices/!v")
        if self._lib.espeak_SetVoiceByName(f"{ESPEAK_LANGUAGE}+{variant}".encode()) != 0:
            raise PrepError(f"espeak-ng cannot select voice {ESPEAK_LANGUAGE}+{variant}")
        for param, value in ((self._RATE, rate), (self._PITCH, pitch), (self._RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        if self._set_seed is not None:
            self._set_seed(int(seed))
        data = text.encode("utf-8")
        self._chunks = []
        status = self._lib.espeak_Synth(
            data, len(data) + 1, 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None
        )
        if status != 0:
            raise PrepError(f"espeak-ng failed (status {status}) on text {text!r}")
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _fill(template, rng):
    """Replace each ``{slot}`` of a template by a random filler of :data:`demo_text.SLOTS`."""
    return re.sub(r"\{(\w+)\}", lambda m: _pick(rng, demo_text.SLOTS[m.group(1)]), template)


def compose(rng, topic, kind):
    """Compose one spoken utterance.

    Arguments
    ---------
    rng : numpy.random.Generator
        The source of every choice.
    topic : str
        A label of :data:`data_prep.topics.TOPICS`.
    kind : str
        ``"clear"`` (a sentence of the topic), ``"shared"`` (a sentence the topic shares with
        another) or ``"generic"`` (a sentence about nothing in particular).

    Returns
    -------
    str
        The text to speak, with commas where a speaker would pause.
    """
    if kind == "clear":
        template = _pick(rng, demo_text.TOPIC_TEMPLATES[topic])
    elif kind == "shared":
        template = _pick(rng, [t for topics, t in demo_text.SHARED_TEMPLATES if topic in topics])
    else:
        template = _pick(rng, demo_text.GENERIC_TEMPLATES)
    words = _fill(template, rng).split()
    # A hesitation inside the sentence, as donors pause to think.
    if rng.random() < 0.2 and len(words) > 2:
        at = int(rng.integers(1, 3))
        words.insert(at, _pick(rng, ("öö", "niinku", "tota", "siis")))
    parts = []
    if rng.random() < 0.55:
        parts.append(_pick(rng, demo_text.OPENERS) + ",")
    parts.append(" ".join(words))
    closer = _fill(_pick(rng, demo_text.CLOSERS), rng)
    if len(words) + len(closer.split()) <= 10 and rng.random() < 0.5:
        parts[-1] += ","
        parts.append(closer)
    return " ".join(parts) + "."


def _counts(total, weights):
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    weights = np.asarray(weights, dtype=float)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def _audio_plan(rng):
    """Random post-processing settings of one utterance."""
    return {
        "rate": int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "pitch_range": int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
        "snr": float(rng.uniform(*SNR_DB)),
        "noise": _pick(rng, NOISE_TYPES),
        "peak": float(rng.uniform(*PEAK)),
        "pad": (float(rng.uniform(*PAD_SECONDS)), float(rng.uniform(*PAD_SECONDS))),
        "noise_seed": int(rng.integers(2**31)),
    }


def _assign_formats(rng, plans):
    """Give every planned utterance a (sample rate, container), each pair used about equally."""
    pairs = [(sr, ext) for sr in SAMPLE_RATES for ext in CONTAINERS]
    for i, slot in enumerate(rng.permutation(len(plans))):
        plans[slot]["sample_rate"], plans[slot]["container"] = pairs[i % len(pairs)]


def _plan_demo(seed, size):
    """Decide every utterance of the demo corpus (text, voice, split, settings) before speaking."""
    rng = np.random.default_rng(seed)
    plans = []
    for split in SPLITS:
        n = SIZES[size][split]
        weights = TRAIN_TOPIC_WEIGHTS if split == "train" else [1.0] * len(TOPICS)
        topics = [t for t, c in zip(TOPICS, _counts(n, weights)) for _ in range(c)]
        topics = [topics[i] for i in rng.permutation(n)]
        n_shared = round(KIND_SHARES["shared"] * n)
        n_generic = round(KIND_SHARES["generic"] * n)
        kinds = ["shared"] * n_shared + ["generic"] * n_generic + ["clear"] * (n - n_shared - n_generic)
        kinds = [kinds[i] for i in rng.permutation(n)]
        voices = VOICES[split]
        seen = {t: 0 for t in TOPICS}
        n_transcribed = {t: round(TRANSCRIBED_SHARE * topics.count(t)) for t in TOPICS}
        for i, (topic, kind) in enumerate(zip(topics, kinds)):
            subset = ""
            if split == "train":
                subset = "transcribed" if seen[topic] < n_transcribed[topic] else "untranscribed"
            seen[topic] += 1
            plan = {
                "ID": f"demo-{split}-{i:04d}",
                "split": split,
                "topic": topic,
                "kind": kind,
                "subset": subset,
                "voice": voices[i % len(voices)],
                "text": compose(rng, topic, kind),
            }
            plan.update(_audio_plan(rng))
            plans.append(plan)
    _assign_formats(rng, plans)
    return plans


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


@functools.lru_cache(maxsize=None)
def _resampler(source_rate, target_rate):
    """A resampler per rate pair: its sinc kernel is computed once, not per utterance."""
    return torchaudio.transforms.Resample(source_rate, target_rate)


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
    if plan["sample_rate"] != source_rate:
        signal = _resampler(source_rate, plan["sample_rate"])(torch.from_numpy(signal)).numpy()
    # SNR over the speech samples only, so that padding does not make the noise louder.
    active = np.abs(signal) > 0.02 * np.abs(signal).max()
    speech_power = float(np.mean(signal[active] ** 2))
    noise = _noise(np.random.default_rng(plan["noise_seed"]), plan["noise"], len(signal))
    signal = signal + noise * np.sqrt(speech_power / 10 ** (plan["snr"] / 10))
    peak = np.abs(signal).max()
    if peak > 0.99:
        signal = signal * (0.99 / peak)
    return signal.astype(np.float32)


def _write_audio(path, signal, sample_rate):
    """Write 16-bit WAV or FLAC through a temporary name, so no half-written file remains."""
    fmt = "FLAC" if path.suffix == ".flac" else "WAV"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        soundfile.write(tmp, signal, sample_rate, subtype="PCM_16", format=fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _synthesise(plans, out_dir, speech_window=None):
    """Speak planned utterances into ``out_dir/audio``.

    Arguments
    ---------
    plans : list of dict
        One per utterance: ``ID``, ``file`` (name under ``audio/``), ``text``, ``words``,
        ``topic``, ``split``, ``subset``, ``speaker``, ``voice``, ``source`` and the settings
        of :func:`_audio_plan` and :func:`_assign_formats`.
    out_dir : Path
        The corpus folder.
    speech_window : tuple of float, optional
        ``(shortest, longest)`` seconds of speech; an utterance outside is re-spoken once at a
        rate scaled to fit.

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
        return _synthesise_all(plans, out_dir, speech_window)
    finally:
        torch.set_num_threads(threads)


def _synthesise_all(plans, out_dir, speech_window):
    synth = Synthesizer.get()
    audio_dir = out_dir / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    splits = {split: [] for split in SPLITS}
    dropped = []
    for n, plan in enumerate(plans, 1):
        settings = (plan["voice"], plan["rate"], plan["pitch"], plan["pitch_range"], plan["noise_seed"])
        speech = synth.speak(plan["text"], *settings)
        if speech_window and len(speech):
            seconds = len(speech) / synth.sample_rate
            target = min(max(seconds, speech_window[0]), speech_window[1])
            if target != seconds:
                rate = int(np.clip(plan["rate"] * seconds / target, 80, 400))
                speech = synth.speak(plan["text"], plan["voice"], rate, *settings[2:])
        if not np.any(np.abs(speech) > 1e-3):
            dropped.append(Dropped(plan["source"], f"espeak-ng produced no speech for {plan['text']!r}"))
            continue
        path = audio_dir / plan["file"]
        _write_audio(path, _render(speech, synth.sample_rate, plan), plan["sample_rate"])
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


def bow_baseline(splits):
    """Bag-of-words logistic regression on the manual transcripts: how much the words give away.

    Trained on the transcribed train rows, evaluated on dev and test. A corpus on which this
    scores 100 % cannot tell text systems apart.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}``.

    Returns
    -------
    dict or None
        ``model``, ``train_rows``, ``dev_accuracy``, ``test_accuracy`` (None for an empty split);
        None when train has fewer than two topics with transcripts.
    """
    # The model of the bag-of-words rows of Table I (hparams/bow.yaml defaults), so that both agree.
    from topic_id.bow import fit_model

    train = [r for r in splits.get("train", []) if r.words]
    if len({r.topic for r in train}) < 2:
        return None
    model = fit_model([r.words for r in train], [r.topic for r in train])
    result = {"model": "scikit-learn CountVectorizer + LogisticRegression", "train_rows": len(train)}
    for split in ("dev", "test"):
        rows = [r for r in splits.get(split, []) if r.words]
        accuracy = None
        if rows:
            predicted = model.predict([r.words for r in rows])
            accuracy = round(float(np.mean([p == r.topic for p, r in zip(predicted, rows)])), 4)
        result[f"{split}_accuracy"] = accuracy
    return result


def _count_by(plans_or_rows, key):
    counts = {}
    for item in plans_or_rows:
        counts[str(item[key])] = counts.get(str(item[key]), 0) + 1
    return dict(sorted(counts.items()))


def _summary_extra(synth, plans, splits, seed, **more):
    kept = {r.ID for rows in splits.values() for r in rows}
    done = [p for p in plans if p["ID"] in kept]
    extra = {
        "synthesiser": f"espeak-ng {synth.version} (espeakng-loader), language {ESPEAK_LANGUAGE}",
        "seed": seed,
        "voices": {split: sorted({r.speaker for r in rows}) for split, rows in splits.items()},
        "sample_rates": _count_by(done, "sample_rate"),
        "containers": _count_by(done, "container"),
        "snr_db": list(SNR_DB),
        "bow_logreg": bow_baseline(splits),
    }
    extra.update(more)
    return extra


def _existing(out_dir):
    return {split: Path(out_dir) / f"{split}.csv" for split in SPLITS}


def _warn_if_different(out_dir, **wanted):
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


def prepare_demo(out_dir, seed=0, size="default", force=False):
    """Build the built-in corpus: colloquial Finnish speech about the paper's eight topics.

    Arguments
    ---------
    out_dir : str or Path
        The corpus folder: manifests at the top, audio under ``audio/``.
    seed : int
        Every random choice derives from it; a seed gives byte-identical manifests.
    size : str
        A key of :data:`SIZES`: ``tiny`` (80 utterances, for tests), ``default`` (640),
        ``large`` (2560).
    force : bool
        Rebuild even when ``out_dir`` holds a finished corpus.

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests.

    Raises
    ------
    PrepError
        Unknown size, unwritable folder, or espeak-ng unavailable.
    """
    if size not in SIZES:
        raise PrepError(f"unknown demo size {size!r}: choose one of {', '.join(SIZES)}")
    out_dir = Path(out_dir)
    if not start(out_dir, force):
        _warn_if_different(out_dir, seed=seed, size=size)
        return _existing(out_dir)
    synth = Synthesizer.get()
    missing = sorted({v for vs in VOICES.values() for v in vs} - set(synth.variants()))
    if missing:
        raise PrepError(
            f"espeak-ng voice variants {missing} are missing from {synth.data}: "
            "reinstall espeakng-loader"
        )
    plans = _plan_demo(seed, size)
    for plan in plans:
        plan.update(
            file=f"{plan['ID']}.{plan['container']}",
            words=normalize_transcript(plan["text"]),
            speaker=f"{ESPEAK_LANGUAGE}+{plan['voice']}",
            source=f"demo sentence {plan['ID']}: {plan['text']}",
        )
    logger.info("synthesising %d utterances (size %s, seed %d) into %s", len(plans), size, seed, out_dir)
    splits, dropped = _synthesise(plans, out_dir, SPEECH_SECONDS)
    kinds = {split: _count_by([p for p in plans if p["split"] == split], "kind") for split in SPLITS}
    extra = _summary_extra(synth, plans, splits, seed, size=size, utterance_kinds=kinds)
    return write_prepared(out_dir, splits, list(TOPICS), dropped, len(plans), extra_summary=extra)


SPEAK_REQUIRED = ("text", "topic")
SPEAK_OPTIONAL = ("split", "speaker", "ID", "subset")
AUTO_SPLIT_SHARES = {"dev": 0.1, "test": 0.1}
"""Share of rows (or of speakers, when the CSV names them) put in dev and test when the CSV has
no ``split`` column."""


def _read_text_csv(path):
    """Read a text CSV (comma-separated; a ``.tsv`` file is tab-separated).

    Returns
    -------
    tuple
        ``(columns, rows)``; a row with more fields than the header (an unquoted comma in the
        text, typically) has the key ``None``.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise PrepError(f"cannot read {path} ({err.strerror}): check the path") from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise PrepError(
            f"{path} is not UTF-8 (byte {err.start}): re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from err
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if path.suffix == ".tsv" else ",")
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    missing = [c for c in SPEAK_REQUIRED if c not in columns]
    if missing:
        raise PrepError(
            f"{path} lacks column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}): "
            f"a text CSV needs {', '.join(SPEAK_REQUIRED)} and may have {', '.join(SPEAK_OPTIONAL)}"
        )
    rows = []
    for row in reader:
        # Surplus fields stay a list under the key None, for the row check to report.
        rows.append({k: v if k is None else (v or "").strip() for k, v in row.items()})
    if not rows:
        raise PrepError(f"{path} has a header but no rows: add text rows")
    return columns, rows


def _check_text_row(row, columns, ids, speaker_split, i):
    """The reason to drop one CSV row, or None (records its ID and speaker when kept)."""
    if None in row:
        return (
            f"{len(columns) + len(row[None])} fields but {len(columns)} columns: "
            "quote a text that contains the separator"
        )
    if not normalize_transcript(row["text"]):
        return "empty text (nothing left after normalisation): write the sentence or remove the row"
    if not row["topic"]:
        return "empty topic: give the row a topic or remove it"
    split = row.get("split", "").lower()
    if "split" in columns and split not in SPLITS:
        return f"split {row['split']!r} is not one of {', '.join(SPLITS)}: fix it or remove the row"
    if (row.get("subset", "").lower() or "transcribed") not in ("transcribed", "untranscribed"):
        return f"subset {row['subset']!r} is not transcribed or untranscribed: fix it"
    given_id = row.get("ID", "")
    if "ID" in columns and not given_id:
        return "empty ID: give the row a unique ID"
    if given_id in ids:
        return f"duplicate ID {given_id!r}, first at row {ids[given_id]}: make IDs unique"
    speaker = row.get("speaker", "")
    if speaker and split:
        first_split, first_row = speaker_split.setdefault(speaker, (split, i))
        if first_split != split:
            return (
                f"speaker {speaker!r} is in split {split} here but in {first_split} at row "
                f"{first_row}: give each speaker one split"
            )
    if given_id:
        ids[given_id] = i
    return None


def _auto_split(rng, records):
    """Put records into train/dev/test when the CSV gives no split.

    Without speakers the split is stratified by topic; with speakers whole speakers go to one
    split, so dev and test speakers never occur in train.
    """
    if any(r["given_speaker"] for r in records):
        group = {id(r): r["given_speaker"] or f"row {r['row']}" for r in records}
        sizes = {}
        for r in records:
            sizes[group[id(r)]] = sizes.get(group[id(r)], 0) + 1
        keys = sorted(sizes)
        filled = {split: 0 for split in SPLITS}
        split_of = {}
        for k in rng.permutation(len(keys)):
            # Fill dev, then test, up to their shares; a speaker is never divided.
            split = next(
                (s for s in ("dev", "test") if filled[s] < AUTO_SPLIT_SHARES[s] * len(records)), "train"
            )
            split_of[keys[k]] = split
            filled[split] += sizes[keys[k]]
        for r in records:
            r["split"] = split_of[group[id(r)]]
        return
    for topic in sorted({r["topic"] for r in records}):
        mine = [r for r in records if r["topic"] == topic]
        mine = [mine[i] for i in rng.permutation(len(mine))]
        n_dev, n_test = (round(AUTO_SPLIT_SHARES[s] * len(mine)) for s in ("dev", "test"))
        if len(mine) >= 3:
            n_dev, n_test = max(1, n_dev), max(1, n_test)
        for i, r in enumerate(mine):
            r["split"] = "dev" if i < n_dev else "test" if i < n_dev + n_test else "train"


def _assign_voices(rng, records):
    """Give every record a voice of its split's pool: one per given speaker, else in turn."""
    for split in SPLITS:
        mine = [r for r in records if r["split"] == split]
        pool = VOICES[split]
        speakers = sorted({r["given_speaker"] for r in mine if r["given_speaker"]})
        voice_of = {s: pool[k % len(pool)] for k, s in enumerate(speakers)}
        anonymous = [r for r in mine if not r["given_speaker"]]
        for k, i in enumerate(rng.permutation(len(anonymous))):
            anonymous[i]["voice"] = pool[k % len(pool)]
        for r in mine:
            if r["given_speaker"]:
                r["voice"] = voice_of[r["given_speaker"]]


_APOSTROPHES = re.compile(r"['\u2019\u02bc`\u00b4]")
_UNSPEAKABLE = re.compile(r"[^\w\s,.!?;:-]|[\d_]")


def _speakable(text):
    """The text espeak-ng reads: like the transcript (no digits or symbols), with punctuation kept
    for prosody, so that the audio says what ``words`` says."""
    text = _UNSPEAKABLE.sub(" ", _APOSTROPHES.sub("", text))
    return re.sub(r"\s+", " ", text).strip()


def speak_csv(text_csv, out_dir, seed=0, force=False):
    """Speak a CSV of topic-labelled text into a corpus with the built-in synthesiser.

    Columns: ``text`` and ``topic`` (required); ``split`` (train/dev/test), ``speaker``, ``ID``
    and ``subset`` (transcribed/untranscribed, train rows) are optional. Without ``split``, dev
    and test get about 10 % each (speaker-disjoint when speakers are given). Every row is spoken
    with a voice of its split's pool (:data:`VOICES`), one voice per given speaker; ``speaker``
    is the given speaker, else the voice. Rows with an empty text or topic, an unknown split or
    subset, a missing or duplicate ID, a speaker already seen in another split, or too many fields
    go to ``dropped.csv`` with the reason.

    Arguments
    ---------
    text_csv : str or Path
        The CSV (UTF-8; a ``.tsv`` file is read tab-separated).
    out_dir : str or Path
        The corpus folder: manifests at the top, audio under ``audio/``.
    seed : int
        Seed of every random choice; a seed gives byte-identical manifests.
    force : bool
        Rebuild even when ``out_dir`` holds a finished corpus.

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests; ``topics.txt`` lists the CSV's topics, sorted.

    Raises
    ------
    PrepError
        Unreadable or non-UTF-8 CSV, a missing required column, no rows, unwritable folder.
        Raised before anything in ``out_dir`` is touched.
    """
    text_csv, out_dir = Path(text_csv), Path(out_dir)
    if is_finished(out_dir) and not force:
        start(out_dir)
        _warn_if_different(out_dir, seed=seed, source=str(text_csv))
        return _existing(out_dir)
    columns, rows = _read_text_csv(text_csv)
    rng = np.random.default_rng(seed)
    topics = sorted({r["topic"] for r in rows if r.get("topic") and None not in r})
    records, dropped = [], []
    ids, speaker_split = {}, {}
    for i, row in enumerate(rows, 1):
        source = f"{text_csv} row {i}"
        reason = _check_text_row(row, columns, ids, speaker_split, i)
        if reason:
            dropped.append(Dropped(source, reason))
            continue
        records.append({
            "row": i,
            "ID": row.get("ID") or f"utt{i:06d}",
            "text": _speakable(row["text"]),
            "words": normalize_transcript(row["text"]),
            "topic": row["topic"],
            "split": row.get("split", "").lower(),
            "subset": row.get("subset", "").lower() or "transcribed",
            "given_speaker": row.get("speaker", ""),
            "source": source,
        })
    if "split" not in columns and records:
        _auto_split(rng, records)
    _assign_voices(rng, records)
    for r in records:
        r.update(_audio_plan(rng))
        r["subset"] = r["subset"] if r["split"] == "train" else ""
        r["speaker"] = r["given_speaker"] or f"{ESPEAK_LANGUAGE}+{r['voice']}"
    _assign_formats(rng, records)
    for r in records:
        r["file"] = f"utt{r['row']:06d}.{r['container']}"
    start(out_dir, force)
    logger.info("speaking %d rows of %s into %s", len(records), text_csv, out_dir)
    splits, more_dropped = _synthesise(records, out_dir)
    extra = _summary_extra(Synthesizer.get(), records, splits, seed, source=str(text_csv))
    return write_prepared(out_dir, splits, topics, dropped + more_dropped, len(rows), extra_summary=extra)
