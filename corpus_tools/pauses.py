"""Pauses of a recording: runs of quiet short-time energy.

Data preparation cuts recordings over the duration limit at pauses
(:mod:`data_prep.duration_limit`), and the ASR decodes long recordings in pieces that end at
pauses (:mod:`topic_id.models.piecewise_decoding`): one pause finder serves both.

A pause is a run of at least :data:`MIN_PAUSE` seconds of 25 ms frames (every 10 ms) quieter than
the recording's 10th percentile of frame energy plus the larger of 6 dB and a quarter of its
dynamic range; a recording with less than :data:`MIN_RANGE` dB of range has no pauses.
"""

import numpy as np

FRAME, HOP = 0.025, 0.010
"""Seconds of an energy frame and between frames."""
MIN_PAUSE = 0.3
"""Seconds of quiet that make a pause: longer than the gaps between most words, shorter than
the pause between sentences."""
MIN_RANGE = 10.0
"""dB between the quiet and loud frames below which a recording is taken to have no pauses."""


def frame_energy_db(signal, rate):
    """Short-time energy, in dB, of :data:`FRAME`-long frames every :data:`HOP` seconds.

    Returns
    -------
    numpy.ndarray
        One value per frame; frame ``i`` starts at sample ``i * round(HOP * rate)``.
    """
    size, step = max(1, round(FRAME * rate)), max(1, round(HOP * rate))
    # Cumulative sums: the energy of every frame without materialising the frames.
    power = np.concatenate(([0.0], np.cumsum(np.square(signal, dtype=np.float64))))
    starts = np.arange(0, max(1, len(signal) - size + 1), step)
    ends = np.minimum(starts + size, len(signal))
    return 10.0 * np.log10((power[ends] - power[starts]) / np.maximum(ends - starts, 1) + 1e-10)


def find_pauses(signal, rate, min_pause=MIN_PAUSE):
    """The pauses of a recording as ``(start, end)`` sample spans (see the module docstring).

    Example
    -------
    >>> rate = 1000
    >>> tone = 0.5 * np.sin(np.arange(2 * rate))
    >>> signal = np.concatenate([tone, np.zeros(rate), tone])
    >>> [(round(s / rate, 2), round(e / rate, 2)) for s, e in find_pauses(signal, rate)]
    [(2.0, 3.0)]
    """
    db = frame_energy_db(signal, rate)
    floor, peak = np.percentile(db, [10, 99])
    if peak - floor < MIN_RANGE:
        return []
    quiet = (db < floor + max(6.0, (peak - floor) / 4)).astype(np.int8)
    edges = np.diff(np.concatenate(([0], quiet, [0])))
    size, step = max(1, round(FRAME * rate)), max(1, round(HOP * rate))
    return [(a * step, min((b - 1) * step + size, len(signal)))
            for a, b in zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist())
            if (b - a - 1) * step + size >= min_pause * rate]
