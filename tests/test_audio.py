"""corpus_tools.audio: decoding to mono at one rate, resampling, and 16-bit files written atomically."""

import numpy as np
import pytest
import soundfile

from corpus_tools.audio import AudioWriteError, decode_mono, resample, resampler, write_audio, write_clipped


def _tone(rate, seconds=1.0, hz=440.0):
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def test_resampling_keeps_the_duration_and_the_tone():
    out = resample(_tone(44100), 44100, 16000)
    assert out.dtype == np.float32 and out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) == 440  # 1 s of signal: bin k is k Hz


def test_equal_rates_return_the_input_itself():
    signal = _tone(16000)
    assert resample(signal, 16000, 16000) is signal


def test_the_resampler_of_a_rate_pair_is_built_once():
    assert resampler(22050, 16000) is resampler(22050, 16000)


@pytest.mark.parametrize("suffix, fmt", [(".flac", "FLAC"), (".wav", "WAV"), (".WAV", "WAV")])
def test_write_audio_writes_16_bit_files_by_their_suffix(tmp_path, suffix, fmt):
    path = tmp_path / f"a{suffix}"
    write_audio(path, _tone(16000), 16000)
    info = soundfile.info(str(path))
    assert (info.format, info.subtype, info.samplerate, info.frames) == (fmt, "PCM_16", 16000, 16000)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_decode_mono_downmixes_and_resamples(tmp_path):
    left, right = _tone(22050), np.zeros(22050, np.float32)
    soundfile.write(str(tmp_path / "s.wav"), np.stack([left, right], axis=1), 22050, subtype="FLOAT")
    signal, reason = decode_mono(tmp_path / "s.wav", 16000)
    assert reason is None and signal.shape == (16000,)
    np.testing.assert_allclose(np.abs(signal).max(), 0.25, atol=0.01)  # the mean of both channels


@pytest.mark.parametrize("content, reason", [(b"not audio", "undecodable audio"), (None, "zero-length audio")])
def test_undecodable_or_empty_audio_is_a_reason_not_an_exception(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    if content is None:
        soundfile.write(str(path), np.zeros((0, 1), np.float32), 16000)
    else:
        path.write_bytes(content)
    signal, why = decode_mono(path, 16000)
    assert signal is None and why.startswith(reason) and str(path) in why


def test_write_clipped_clips_overshoot_instead_of_wrapping(tmp_path):
    write_clipped(tmp_path / "c.wav", np.array([1.5, -1.5, 0.5], np.float32), 16000)
    data, _ = soundfile.read(str(tmp_path / "c.wav"))
    assert data[0] > 0.99 and data[1] < -0.99 and data[2] == pytest.approx(0.5, abs=1e-4)


def test_a_failed_write_says_how_to_fix_it(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(AudioWriteError, match="cannot write .* free disk space or fix permissions"):
        write_clipped(tmp_path / "file" / "a.wav", np.zeros(10, np.float32), 16000)
