"""corpus_tools.pauses: the quiet runs of a recording, relative to its own loudness."""

import numpy as np
import pytest

from corpus_tools.pauses import HOP, MIN_PAUSE, frame_energy_db, find_pauses

RATE = 16000


def _tone(seconds, amplitude=0.5):
    return amplitude * np.sin(2 * np.pi * 220 * np.arange(int(seconds * RATE)) / RATE)


def _seconds(pauses):
    return [(round(s / RATE, 2), round(e / RATE, 2)) for s, e in pauses]


def test_frame_energy_is_the_mean_power_in_db_every_hop():
    signal = np.concatenate([np.full(RATE, 0.1), np.full(RATE, 1.0)])
    db = frame_energy_db(signal, RATE)
    assert len(db) == (len(signal) - round(0.025 * RATE)) // round(HOP * RATE) + 1
    assert db[0] == pytest.approx(-20.0, abs=1e-6) and db[-1] == pytest.approx(0.0, abs=1e-6)


def test_a_signal_shorter_than_a_frame_has_one_frame():
    assert len(frame_energy_db(np.ones(10), RATE)) == 1


def test_pauses_are_sample_spans_of_the_quiet_between_speech():
    signal = np.concatenate([_tone(2), np.zeros(RATE), _tone(1), np.zeros(RATE // 2), _tone(2)])
    assert _seconds(find_pauses(signal, RATE)) == [(2.0, 3.0), (4.0, 4.5)]


def test_quiet_shorter_than_the_minimum_is_no_pause():
    short = MIN_PAUSE - 0.1
    signal = np.concatenate([_tone(2), np.zeros(int(short * RATE)), _tone(2), np.zeros(RATE), _tone(1)])
    assert _seconds(find_pauses(signal, RATE)) == [(round(4 + short, 2), round(5 + short, 2))]
    assert len(find_pauses(signal, RATE, min_pause=short - 0.05)) == 2


def test_the_threshold_follows_the_recordings_own_floor():
    """A loud background between words is still a pause when speech is much louder than it."""
    noise = 0.02 * np.random.default_rng(0).standard_normal(RATE)
    signal = np.concatenate([_tone(2), noise, _tone(2)])
    assert _seconds(find_pauses(signal, RATE)) == [(2.0, 3.0)]
    assert _seconds(find_pauses(10 * signal, RATE)) == [(2.0, 3.0)]


def test_a_recording_without_dynamic_range_has_no_pauses():
    assert find_pauses(_tone(5), RATE) == []
    assert find_pauses(np.zeros(5 * RATE), RATE) == []
