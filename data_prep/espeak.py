"""espeak-ng through ctypes: the speech synthesiser of the built-in corpus.

The project must run end-to-end without a download, so it speaks its own corpus. espeak-ng comes
as a shared library with its data in the ``espeakng-loader`` wheel (no system package) and is
driven through ``ctypes`` by :class:`Synthesizer`; ``espeak_Initialize`` in synchronous mode
returns its native rate, 22050 Hz, and a callback collects the samples.

Example
-------
>>> from data_prep.espeak import ESPEAK_LANGUAGE, Synthesizer
>>> ESPEAK_LANGUAGE
'fi'
>>> Synthesizer._instance is None or Synthesizer._instance.sample_rate == 22050
True
"""

import atexit
import ctypes
import os
import re
import shutil
import tempfile
from bisect import bisect_right
from pathlib import Path

import numpy as np

from data_prep.manifest import PrepError

ESPEAK_LANGUAGE = "fi"
"""The language of every voice; a ``speaker`` of the built-in corpus is ``fi+<variant>``."""
_SILENCE = 1e-3
"""Sample magnitude below which synthesised speech is silent (espeak-ng's pauses are zeros)."""


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


class _Event(ctypes.Structure):
    """espeak-ng's ``espeak_EVENT`` (``speak_lib.h``): its type, where in the text (1-based
    characters) and where in the audio (samples from the start of the utterance)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


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
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
    )
    _EVENT_LIST_END, _EVENT_WORD = 0, 1

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
        self._chunks, self._words = [], []
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
        i = 0
        while events and events[i].type != self._EVENT_LIST_END:
            if events[i].type == self._EVENT_WORD:
                self._words.append((events[i].text_position, events[i].length, events[i].sample))
            i += 1
        return 0

    def variants(self):
        """The voice variants that ship with the data (file names in ``voices/!v``)."""
        folder = self.data / "voices" / "!v"
        return sorted(p.name for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def speak(self, text, variant, rate=175, pitch=50, pitch_range=50, seed=0, language=ESPEAK_LANGUAGE):
        """Synthesise text in a language's voice (Finnish by default).

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
        language : str
            The espeak-ng voice the variant modifies: a language or accent (``fi``, ``en-us``).

        Returns
        -------
        numpy.ndarray
            float32 samples in [-1, 1] at :attr:`sample_rate`; empty when nothing was spoken.
        """
        if not (self.data / "voices" / "!v" / variant).is_file():
            raise PrepError(f"espeak-ng voice variant {variant!r} not found in {self.data}/voices/!v")
        if self._lib.espeak_SetVoiceByName(f"{language}+{variant}".encode()) != 0:
            raise PrepError(f"espeak-ng cannot select voice {language}+{variant}")
        for param, value in ((self._RATE, rate), (self._PITCH, pitch), (self._RANGE, pitch_range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        if self._set_seed is not None:
            self._set_seed(int(seed))
        data = text.encode("utf-8")
        self._chunks, self._words = [], []
        status = self._lib.espeak_Synth(
            data, len(data) + 1, 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None
        )
        if status != 0:
            raise PrepError(f"espeak-ng failed (status {status}) on text {text!r}")
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0

    def word_times(self, text, speech):
        """When each word of the last :meth:`speak` is said: its word events, trimmed to sound.

        espeak-ng reports the sample at which each word starts; a word lasts until the next one
        starts, less the silence before it (a pause at a comma or a full stop belongs to no word),
        found on the clean synthesised samples, where silence is exact.

        Arguments
        ---------
        text : str
            The text just spoken.
        speech : numpy.ndarray
            What :meth:`speak` returned for it.

        Returns
        -------
        list of tuple
            ``[(start_s, end_s, word)]`` in time order, seconds from the start of ``speech``,
            ``word`` as written in ``text``, punctuation included (a word espeak-ng reports
            no start of joins the one before it).
        """
        # An event's text position may fall on the space before its word (after a full stop),
        # so each event names the first whitespace token that ends after it; a token with no
        # event of its own (espeak-ng runs it into another) joins the word before it.
        tokens = [(m.end(), m.group()) for m in re.finditer(r"\S+", text)]
        ends = [end for end, _ in tokens]
        first_event = {}
        for pos, _, start in sorted(self._words, key=lambda w: (w[2], w[0])):
            k = bisect_right(ends, pos - 1)
            if k < len(tokens):
                first_event.setdefault(k, start)
        labels, starts = [], []
        for k, (_, token) in enumerate(tokens):
            if k in first_event and (not starts or first_event[k] > starts[-1]):
                labels.append(token)
                starts.append(first_event[k])
            elif labels:
                labels[-1] += f" {token}"
        sounding = np.flatnonzero(np.abs(speech) > _SILENCE)
        words = []
        for label, start, nxt in zip(labels, starts, starts[1:] + [len(speech)]):
            inside = sounding[(sounding >= start) & (sounding < nxt)]
            end = int(inside[-1]) + 1 if len(inside) else nxt
            words.append((start / self.sample_rate, max(end, start + 1) / self.sample_rate, label))
        return words
