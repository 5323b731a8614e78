"""Audio helpers of the preparations: one decoder, one resampler and one atomic audio writer.

The built-in corpus writes its files at several rates, the LP preparation converts every
recording to 16 kHz and a long recording is cut into 16 kHz segments (``long_recordings.py``);
all of them decode, resample and write here, so a rate change or an interrupted write is handled
the same way everywhere in ``data_prep``.

Example
-------
>>> import numpy as np, tempfile
>>> from pathlib import Path
>>> signal = resample(np.zeros(22050, dtype=np.float32), 22050, 16000)
>>> signal.shape
(16000,)
>>> with tempfile.TemporaryDirectory() as folder:
...     write_audio(Path(folder) / "a.flac", signal, 16000)
...     sorted(p.name for p in Path(folder).iterdir())
['a.flac']
"""

import functools
from pathlib import Path

import numpy as np
import soundfile

from corpus_tools.files import atomic_write


@functools.lru_cache(maxsize=None)
def resampler(source_rate, target_rate):
    """torchaudio's resampler for a rate pair, built once: its sinc kernel is not recomputed per
    file (the one resampler of both packages; ``topic_id.training.dataio`` and inference use it too)."""
    # Imported here: torch is slow to import, and the CSV preparations never resample.
    import torchaudio

    return torchaudio.transforms.Resample(source_rate, target_rate)


def resample(signal, source_rate, target_rate):
    """Resample a mono float32 signal with torchaudio's windowed sinc.

    Arguments
    ---------
    signal : numpy.ndarray
        1-D float32 samples.
    source_rate, target_rate : int
        Their rate and the rate wanted.

    Returns
    -------
    numpy.ndarray
        float32 samples at ``target_rate`` (the input itself when the rates agree).
    """
    if source_rate == target_rate:
        return signal
    import torch

    with torch.no_grad():
        return resampler(source_rate, target_rate)(torch.from_numpy(signal)).numpy()


def write_audio(path, signal, sample_rate):
    """Write 16-bit WAV or FLAC (by the suffix) through a temporary name, then rename it.

    A crash never leaves a half-written file under the final name, so a rerun that finds the
    file can trust it.

    Arguments
    ---------
    path : Path
        The final file, ``.flac`` or ``.wav``.
    signal : numpy.ndarray
        Samples in [-1, 1].
    sample_rate : int
        Their rate.
    """
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    with atomic_write(path, "wb") as f:
        soundfile.write(f, signal, sample_rate, subtype="PCM_16", format=fmt)


def decode_mono(path, rate):
    """Decode an audio file, downmix it and resample it to ``rate``.

    Arguments
    ---------
    path : str or Path
        Audio readable by libsndfile, any rate and channel count.
    rate : int
        The sample rate wanted.

    Returns
    -------
    tuple
        ``(signal, reason)``: float32 mono samples and None, or None and why the file cannot be
        decoded.
    """
    try:
        data, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as err:
        return None, f"undecodable audio {path} ({err}): re-export it as FLAC or remove it"
    if data.shape[0] == 0:
        return None, f"zero-length audio in {path}: re-export or remove it"
    return resample(data.mean(axis=1), source_rate, rate), None


class AudioWriteError(OSError):
    """An audio file that could not be written, with the fix in its message."""


def write_clipped(path, signal, sample_rate):
    """:func:`write_audio` of a signal clipped to [-1, 1]; a failed write is an :class:`AudioWriteError`.

    Clipped because resampling can overshoot full scale, and PCM conversion would wrap around.
    """
    try:
        write_audio(Path(path), np.clip(signal, -1.0, 1.0), sample_rate)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioWriteError(f"cannot write {path} ({err}): free disk space or fix permissions") from err
