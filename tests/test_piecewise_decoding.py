"""Long-form transcription: segmentation at pauses (topic_id/models/piecewise_decoding.py) and
decoding of recordings longer than the ASR was trained on (topic_id.training.transcription.decode).

Segmentation is tested on synthetic tone bursts; decoding on a ~2-minute recording joined from
utterances of one topic of the tiny corpus, with the real tiny ASR (which stops early on it when
decoded whole) and with a stand-in decoder that knows what was said (to count words kept).
"""

import importlib.util
import json
import time

import numpy as np
import pytest
import torch
from speechbrain.utils.edit_distance import alignment, op_table

from data_prep.prepared import read_manifest
from topic_id.models import piecewise_decoding
from topic_id.models.piecewise_decoding import fixed_windows, join_hypotheses, segment
from topic_id.training import asr, transcription
from topic_id.training.dataio import load_audio
from conftest import ROOT

# One intra-op thread for this module: the tiny ASR decodes 2 minutes of audio several times faster
# so on a busy 2-core machine, and its beam search, on an untrained model, gives the same
# hypotheses from one call to the next.
pytestmark = pytest.mark.usefixtures("one_thread")

RATE = 16000
PAUSE = 0.5  # seconds between the joined utterances


def _bursts(durations, gaps, rate=RATE, noise=0.0, seed=0):
    """Tone bursts of ``durations`` separated by silences of ``gaps`` (seconds), optionally with
    white noise ``noise`` times the tone's amplitude; also each burst's sample range."""
    rng = np.random.default_rng(seed)
    parts, spans, at = [], [], 0
    for i, d in enumerate(durations):
        n = int(d * rate)
        parts.append(0.5 * np.sin(2 * np.pi * 220 * np.arange(n) / rate))
        spans.append((at, at + n))
        at += n
        if i < len(gaps):
            parts.append(np.zeros(int(gaps[i] * rate)))
            at += int(gaps[i] * rate)
    x = np.concatenate(parts)
    return x + noise * 0.5 * rng.standard_normal(len(x)), spans


def _check_cuts(pieces, spans, limit, share=1.0, rate=RATE):
    """Every piece within the limit, in order, and at least ``share`` of every burst inside one
    piece (1: all of it; an utterance's file may begin and end in silence a piece leaves out)."""
    assert all(0 < e - s <= limit * rate for s, e in pieces)
    assert all(a[1] <= b[0] for a, b in zip(pieces, pieces[1:]))
    for s, e in spans:
        inside = max(min(e, pe) - max(s, ps) for ps, pe in pieces)
        assert inside >= share * (e - s), (s, e, pieces)


def test_a_recording_within_the_limit_is_one_piece():
    x, _ = _bursts([1, 1], [0.5])
    assert segment(x, RATE, 2.5) == [(0, len(x))]
    assert segment(torch.from_numpy(x), RATE, 2.5) == [(0, len(x))]


@pytest.mark.parametrize("noise", [0.0, 0.03])
def test_cuts_fall_in_pauses_and_short_neighbours_merge(noise):
    durations = [1.2, 0.8, 2.5, 0.6, 0.7, 3.0, 1.0]
    gaps = [0.4, 0.3, 0.6, 0.25, 0.5, 0.35]
    x, spans = _bursts(durations, gaps, noise=noise)
    pieces = segment(x, RATE, 4.0)
    _check_cuts(pieces, spans, 4.0)
    assert len(pieces) < len(durations)  # short neighbours merged


def test_pieces_end_at_the_longest_pauses():
    """Left to right merging would cut between the last two bursts (0.2 s apart, one sentence);
    splitting at the longest pause cuts in the 0.8 s one."""
    x, spans = _bursts([2.0, 1.5, 1.5], [0.8, 0.2])
    pieces = segment(x, RATE, 4.5)
    assert len(pieces) == 2 and spans[0][1] <= pieces[0][1] <= pieces[1][0] <= spans[1][0]
    _check_cuts(pieces, spans, 4.5)


def test_pauses_shorter_than_the_minimum_are_not_cuts():
    # More than a tenth of each synthetic recording is silent: the pause finder's quiet level is
    # the 10th percentile of the frame energies (a steady tone has no quieter frames of its own).
    x, spans = _bursts([2.0, 2.0, 2.0], [0.05, 1.0])
    pieces = segment(x, RATE, 4.5)
    # The first two bursts (50 ms apart) are one stretch of speech.
    assert pieces[0][0] <= spans[0][0] and spans[1][1] <= pieces[0][1]
    _check_cuts(pieces, spans, 4.5)


def test_speech_without_a_pause_falls_back_to_overlapping_windows():
    x, spans = _bursts([1.0, 9.0, 1.0], [1.0, 1.0])
    pieces = segment(x, RATE, 3.0, overlap_seconds=0.5)
    assert all(e - s <= 3.0 * RATE for s, e in pieces)
    long = [p for p in pieces if spans[1][0] - 0.5 * RATE <= p[0] and p[1] <= spans[1][1] + 0.5 * RATE]
    assert len(pieces) == len(long) + 2  # the short bursts are pieces of their own
    assert len(long) >= 4
    assert all(b[0] <= a[1] - 0.5 * RATE for a, b in zip(long, long[1:]))  # overlap ≥ 0.5 s
    covered = np.zeros(len(x), bool)
    for s, e in pieces:
        covered[s:e] = True
    assert covered[spans[1][0] : spans[1][1]].all()  # no sample of the long burst lost
    assert fixed_windows(0, 10, 10, 2) == [(0, 10)]


def test_silence_at_the_ends_is_left_out_beyond_the_margin():
    x, spans = _bursts([3.0, 3.0], [0.5])
    x = np.concatenate([np.zeros(RATE), x, np.zeros(2 * RATE + 7)])
    pieces = segment(x, RATE, 4.0, margin_seconds=0.1)
    assert len(pieces) == 2
    assert RATE - pieces[0][0] <= 0.1 * RATE + 400 and pieces[1][1] - (RATE + spans[1][1]) <= 0.1 * RATE + 400


def test_segment_rejects_a_non_positive_limit():
    with pytest.raises(ValueError, match="max_segment_seconds"):
        segment(np.zeros(100), RATE, 0)


def test_overlapping_windows_keep_shared_words_once():
    ranges = [(0, 10), (7, 17), (14, 24), (30, 40)]
    hyps = ["mä kävin eilen kaupa", "eilen kaupassa ja ost", "ja ostin maitoa", "sit kotiin"]
    assert join_hypotheses(hyps, ranges) == "mä kävin eilen kaupassa ja ostin maitoa sit kotiin"
    # A pause cut (no overlap) keeps both sides whole, repeated words included.
    assert join_hypotheses(["joo joo", "joo"], [(0, 5), (6, 9)]) == "joo joo joo"


# Decoding: the tiny ASR on a ~2-minute recording of one topic.


@pytest.fixture(scope="module")
def asr_run(registry_runs):
    return registry_runs("asr")[0]


@pytest.fixture(scope="module")
def loaded(asr_run):
    return transcription.load_asr(asr_run)[0]


@pytest.fixture(scope="module")
def long_recording(tiny_corpus):
    """~2 minutes of one topic's transcribed utterances (all splits, repeated as needed), joined
    with 0.5 s of silence: the recording, the utterances, their rows and sample ranges in it."""
    rows = [r for split in ("train", "dev", "test") for r in read_manifest(tiny_corpus / f"{split}.csv")]
    topic = rows[0]["topic"]
    own = [r for r in rows if r["topic"] == topic and r["words"]]
    picked, seconds = [], 0.0
    while seconds < 120:
        picked.append(own[len(picked) % len(own)])
        seconds += float(picked[-1]["duration"]) + PAUSE
    wavs = [load_audio(r["wav"].replace("$data_root", str(tiny_corpus)), RATE) for r in picked]
    parts, spans, at = [], [], 0
    for w in wavs:
        parts += [w, torch.zeros(int(PAUSE * RATE))]
        spans.append((at, at + len(w)))
        at += len(w) + int(PAUSE * RATE)
    return torch.cat(parts[:-1]), wavs, picked, spans


def _one_by_one(hparams, wavs):
    """Hypotheses of utterances decoded alone (batches of 8 of similar length, as transcribe())."""
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
    hyps = [None] * len(wavs)
    for start in range(0, len(order), 8):
        chunk = order[start : start + 8]
        for i, hyp in zip(chunk, transcription.decode(hparams, [wavs[i] for i in chunk])):
            hyps[i] = hyp
    return " ".join(hyps)


def _kept(reference, hypothesis):
    """The share of the reference's words an alignment of the hypothesis matches."""
    ref, hyp = reference.split(), hypothesis.split()
    return sum(op == "=" for op, _, _ in alignment(op_table(ref, hyp))) / len(ref)


@pytest.mark.training
def test_the_limit_is_a_little_over_the_usual_training_duration(asr_run, loaded, tiny_corpus, caplog):
    transcribed = [float(r["duration"]) for r in read_manifest(tiny_corpus / "train.csv")
                   if r["subset"] == "transcribed"]
    usual = np.quantile(transcribed, piecewise_decoding.SEGMENT_QUANTILE)
    assert loaded["max_segment_seconds"] == round(piecewise_decoding.SEGMENT_HEADROOM * usual, 1)
    # Every recording of the built-in corpus is within it: decoded whole, as before.
    durations = [float(r["duration"]) for s in ("train", "dev", "test") for r in read_manifest(tiny_corpus / f"{s}.csv")]
    assert max(durations) <= loaded["max_segment_seconds"]
    assert transcription.load_asr(asr_run, max_segment_seconds=7.5)[0]["max_segment_seconds"] == 7.5
    assert piecewise_decoding.segment_limit({"train_csv": str(tiny_corpus / "gone.csv")}, "run X") == piecewise_decoding.DEFAULT_MAX_SEGMENT_SECONDS
    assert "run X" in caplog.text and "gone.csv" in caplog.text


@pytest.mark.training
def test_within_the_limit_decoding_is_unchanged(loaded, long_recording):
    _, wavs, _, _ = long_recording
    batch = wavs[:5]
    assert transcription.decode(loaded, batch) == transcription._decode_batch(loaded, batch, "cpu")


@pytest.mark.training
def test_a_two_minute_recording_keeps_the_words_of_its_utterances(loaded, long_recording):
    """Long-form decoding on the tiny ASR: long-form decoding of the recording gives
    as many words as its utterances one by one (the tiny ASR decodes each into one made-up word, so
    this counts pieces decoded: one per utterance), decoding it whole gives almost none, and
    long-form decoding takes no longer than the utterances one by one, give or take."""
    recording, wavs, _, spans = long_recording
    assert 115 * RATE < len(recording) < 130 * RATE
    start = time.perf_counter()
    one_by_one = _one_by_one(loaded, wavs)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    longform = transcription.decode(loaded, [recording])[0]
    took = time.perf_counter() - start
    whole = transcription.decode(loaded, [recording], max_segment_seconds=1e9)[0]
    assert len(longform.split()) >= 0.8 * len(one_by_one.split())
    assert len(whole.split()) < 0.2 * len(one_by_one.split())
    assert took < 2 * alone + 10
    # The cuts fall in the pauses between the utterances.
    _check_cuts(segment(recording, RATE, loaded["max_segment_seconds"]), spans, loaded["max_segment_seconds"], 0.8)


def _oracle(recording, picked, spans, trained_seconds):
    """A decoder that knows what was said: each piece is located in ``recording`` and decoded to
    the words of the utterances it holds, but, as an attention decoder on input longer than it was
    trained on, only those that end within its first ``trained_seconds``. An utterance counts as
    held when 80 % of it is (a piece may leave out silence its file begins or ends with)."""
    flat = recording.numpy()

    def decode_batch(hparams, wavs, device):
        hyps = []
        for w in wavs:
            w = w.numpy()
            j = np.flatnonzero(w)[0]  # a sample of speech: found in few places, unlike silence
            starts = np.flatnonzero(flat[j : len(flat) - len(w) + j + 1] == w[j])
            at = next(s for s in starts if np.array_equal(flat[s : s + len(w)], w))
            words = [picked[i]["words"] for i, (s, e) in enumerate(spans)
                     if min(e, at + len(w)) - max(s, at) >= 0.8 * (e - s)
                     and min(e, at + len(w)) - at <= trained_seconds * RATE]
            hyps.append(" ".join(words))
        return hyps

    return decode_batch


@pytest.mark.training
def test_long_form_keeps_the_words_a_decoder_gets_one_by_one(loaded, long_recording, monkeypatch):
    """Words, counted by alignment, with a decoder that is right on what it can decode: pieces cut
    in the pauses keep every word, the recording decoded whole only its first seconds."""
    recording, wavs, picked, spans = long_recording
    limit = loaded["max_segment_seconds"]
    monkeypatch.setattr(transcription, "_decode_batch", _oracle(recording, picked, spans, limit))
    one_by_one = _one_by_one(loaded, [recording[s:e] for s, e in spans])
    assert one_by_one == " ".join(r["words"] for r in picked)
    assert _kept(one_by_one, transcription.decode(loaded, [recording])[0]) >= 0.8
    assert _kept(one_by_one, transcription.decode(loaded, [recording], max_segment_seconds=1e9)[0]) < 0.2


@pytest.mark.training
def test_pieces_of_a_batch_are_decoded_together_sorted_by_length(loaded, long_recording, monkeypatch):
    recording, wavs, _, _ = long_recording
    batches = []

    def fake(hparams, signals, device):
        batches.append([len(s) for s in signals])
        return [str(len(s)) for s in signals]

    monkeypatch.setattr(transcription, "_decode_batch", fake)
    short = wavs[0]
    out = transcription.decode(loaded, [recording[: 30 * RATE], short, recording[30 * RATE : 70 * RATE]], batch_size=4)
    lengths = [n for b in batches for n in b]
    assert lengths == sorted(lengths) and all(len(b) <= 4 for b in batches)
    assert out[1] == str(len(short))  # a short recording of a long-form batch: one piece, whole
    pieces = segment(recording[: 30 * RATE], RATE, loaded["max_segment_seconds"])
    assert out[0] == " ".join(str(e - s) for s, e in pieces)


@pytest.mark.training
def test_transcribe_command_takes_a_segment_limit(asr_run, corpus_copy, monkeypatch, capsys):
    calls = []

    def fake(hparams, wavs, device="cpu", max_segment_seconds=None, batch_size=8):
        calls.append(hparams["max_segment_seconds"])
        return ["x"] * len(wavs)

    monkeypatch.setattr(transcription, "decode", fake)
    # Dev and test hold recordings longer than 3 s: the run's own (whole) hypotheses are not taken.
    done = transcription.transcribe(asr_run, corpus_copy, max_segment_seconds=3.0)
    assert done == {"train.csv": "decoded", "dev.csv": "decoded", "test.csv": "decoded"}
    assert set(calls) == {3.0}
    assert json.loads((corpus_copy / "asr_words.json").read_text())["test.csv"]["max_segment_seconds"] == 3.0
    # Another limit is other text: decoded again.
    assert set(transcription.transcribe(asr_run, corpus_copy, max_segment_seconds=3.0).values()) == {"skipped"}
    assert set(transcription.transcribe(asr_run, corpus_copy).values()) == {"decoded", "reused"}
    # The command line in-process (tests/test_asr.py runs transcribe.py as a process of its own).
    spec = importlib.util.spec_from_file_location("topic_id_transcribe", ROOT / "recipes" / "transcribe.py")
    command = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(command)
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        command.main(["--asr", str(asr_run), "--manifests", str(corpus_copy), "--max-segment-seconds", "0"])
    err = capsys.readouterr().err
    assert bad.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].endswith("expected a positive number of seconds, got '0'")


@pytest.mark.training
def test_an_export_carries_the_limit_to_transcribe_batch_and_predict(asr_run, loaded, long_recording,
                                                                     tiny_corpus, train, tmp_path):
    import soundfile

    from topic_id.serving.export import export_run
    from topic_id.serving.inference import TopicIdentifier, predict

    run = train("hparams/text.yaml", tiny_corpus, tmp_path / "text", "--number_of_epochs=1")
    export = export_run(run, tmp_path / "export", asr=asr_run)
    limit = loaded["max_segment_seconds"]
    assert json.loads((export / "export.json").read_text())["asr"]["max_segment_seconds"] == limit
    assert f"asr_max_segment_seconds: {limit}" in (export / "hyperparams.yaml").read_text()
    model = TopicIdentifier.from_hparams(source=str(export), run_opts={"device": "cpu"})
    assert model.asr["max_segment_seconds"] == limit
    recording = long_recording[0]
    expected = transcription.decode(loaded, [recording])[0]
    assert model.transcribe_batch(recording.unsqueeze(0)) == [expected]
    part = recording[: 12 * RATE].unsqueeze(0)
    assert model.transcribe_batch(part, max_segment_seconds=3.0) == transcription.decode(
        loaded, [part[0]], max_segment_seconds=3.0)
    soundfile.write(tmp_path / "long.wav", recording.numpy(), RATE)
    assert predict(export, [str(tmp_path / "long.wav")], device="cpu")[0]["text"] == expected
    # An export written before the limit was recorded: the default.
    text = (export / "hyperparams.yaml").read_text()
    (export / "hyperparams.yaml").write_text(text.replace(f"asr_max_segment_seconds: {limit}", ""))
    old = TopicIdentifier.from_hparams(source=str(export), run_opts={"device": "cpu"})
    assert old.asr["max_segment_seconds"] == piecewise_decoding.DEFAULT_MAX_SEGMENT_SECONDS


def test_avoid_if_longer_than_leaves_long_training_rows_out_and_lowers_the_limit(tiny_corpus):
    from topic_id.training.dataio import read_split

    train_csv = tiny_corpus / "train.csv"
    durations = sorted(float(r["duration"]) for r in read_manifest(train_csv))
    cap = durations[len(durations) // 2]
    hparams = {"train_csv": str(train_csv), "dev_csv": "", "test_csv": "", "data_folder": str(tiny_corpus),
               "train_subset": "all", "avoid_if_longer_than": cap}
    dataset = read_split(hparams, "train")
    kept = [dataset.data[i]["duration"] for i in dataset.data_ids]
    assert 0 < len(kept) < len(durations) and max(map(float, kept)) <= cap
    kept = [d for d in durations if d <= cap]
    assert piecewise_decoding.training_duration(train_csv, "all", cap) == max(kept)
    assert piecewise_decoding.segment_limit(hparams) == round(piecewise_decoding.SEGMENT_HEADROOM * np.quantile(kept, piecewise_decoding.SEGMENT_QUANTILE), 1)


def test_a_few_long_training_recordings_do_not_raise_the_limit(tmp_path):
    """The limit follows the usual training duration; a handful of multi-sentence
    training recordings (the built-in corpus's LP-like ones) leave it where the rest put it."""
    train_csv = tmp_path / "train.csv"
    durations = [4.0] * 95 + [9.0] * 5
    train_csv.write_text("ID,duration,subset\n" + "".join(f"u{i},{d},transcribed\n" for i, d in enumerate(durations)))
    hparams = {"train_csv": str(train_csv), "train_subset": "transcribed"}
    assert piecewise_decoding.training_duration(train_csv, "transcribed") == 9.0
    assert piecewise_decoding.segment_limit(hparams) == round(piecewise_decoding.SEGMENT_HEADROOM * 4.0, 1)


@pytest.mark.training
def test_the_runs_test_hypotheses_are_long_form_beyond_the_limit(loaded, long_recording):
    """ASRBrain's TEST stage decodes as transcribe() does: whole within the limit, else long-form."""
    from types import SimpleNamespace

    from speechbrain.utils.data_utils import batch_pad_right

    from topic_id.models.encoders import encode_frames, frame_lengths

    recording, wavs, _, _ = long_recording
    recording = recording[: 20 * RATE]  # beyond the limit: long-form, at a tenth of the decoding
    brain = SimpleNamespace(hparams=SimpleNamespace(**loaded), device="cpu", _segment_limit=None)
    for signals in (wavs[:4], [wavs[0], recording]):
        padded, lens = batch_pad_right(signals)
        feats = loaded["compute_features"](padded)
        frame_lens = frame_lengths(loaded["compute_features"], lens, padded.shape[1], feats.shape[1])
        encoded, enc_lens = encode_frames(loaded["modules"]["audio_encoder"],
                                          loaded["modules"]["normalize"](feats, frame_lens), frame_lens)
        got = asr.ASRBrain.test_hypotheses(brain, encoded, enc_lens, SimpleNamespace(sig=(padded, lens)))
        assert got == transcription.decode(loaded, signals)
    assert brain._segment_limit == loaded["max_segment_seconds"]
