"""SLURP: a SLURP-shaped tree (jsonl lines, FLAC files, metadata.json) prepares with every recording
accounted for, and the text row and an audio row train on it."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from helpers import read_prepared

from data_prep.manifest import PrepError
from data_prep.slurp import microphone, prepare_slurp

SCENARIOS = {"alarm": ("wake me up at 7 o'clock", "set an alarm for the morning"),
             "weather": ("is it going to rain today", "what's the weather like in paris"),
             "music": ("play some jazz music", "turn the music up")}
# (split file, speaker of each line's recordings): dev and test speakers apart from train's.
SPEAKERS = {"train": ("FE-101", "MO-102", "FE-103"), "devel": ("MO-201",), "test": ("FE-301",)}


def _flac(path, seconds, k):
    noise = np.random.default_rng(k).uniform(-0.2, 0.2, int(seconds * 16000)).astype(np.float32)
    soundfile.write(str(path), noise, 16000, format="FLAC")


def make_slurp_tree(root):
    """A SLURP tree of 3 scenarios; returns the recordings it lists that cannot be kept, by reason."""
    text, audio = root / "dataset" / "slurp", root / "audio" / "slurp_real"
    text.mkdir(parents=True)
    audio.mkdir(parents=True)
    (root / "audio" / "slurp_synth").mkdir()
    metadata, lines, k = {}, {name: [] for name in SPEAKERS}, 0
    for name, speakers in SPEAKERS.items():
        for scenario, sentences in SCENARIOS.items():
            for sentence in sentences if name == "train" else sentences[:1]:
                k += 1
                recordings = []
                for speaker in speakers:
                    for suffix in ("-headset", ""):
                        file = f"audio-{k}{speaker[-3:]}{suffix}.flac"
                        _flac(audio / file, 0.6 + 0.05 * (k % 4), k)
                        recordings.append({"file": file, "wer": 0.0, "ent_wer": None, "status": "correct"})
                        metadata.setdefault(str(k), {"recordings": {}})["recordings"][file] = {"usrid": speaker}
                lines[name].append({"slurp_id": k, "sentence": sentence, "scenario": scenario,
                                    "action": "query", "intent": f"{scenario}_query", "recordings": recordings})
    # What cannot be kept: a missing file, an unreadable one, one too long, a train speaker in test.
    lines["train"][0]["recordings"].append({"file": "audio-gone.flac", "wer": 0.0, "ent_wer": 0.0,
                                            "status": "correct"})
    (audio / "audio-broken.flac").write_bytes(b"not audio at all")
    lines["train"][1]["recordings"].append({"file": "audio-broken.flac"})
    _flac(audio / "audio-long-headset.flac", 3.0, 99)
    lines["train"][2]["recordings"].append({"file": "audio-long-headset.flac"})
    _flac(audio / "audio-leak.flac", 0.6, 98)
    lines["test"][0]["recordings"].append({"file": "audio-leak.flac"})
    metadata[str(lines["test"][0]["slurp_id"])]["recordings"]["audio-leak.flac"] = {"usrid": "FE-101"}
    for name, entries in lines.items():
        body = "".join(json.dumps(e) + "\n" for e in entries)
        if name == "train":
            body += '{"slurp_id": 999, "sentence": "broken line", \n'
        (text / f"{name}.jsonl").write_text(body, encoding="utf-8")
    (text / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    synth = [{"slurp_id": 500 + i, "sentence": s, "scenario": sc, "action": "query", "intent": f"{sc}_query",
              "recordings": [{"file": f"audio-synth{i}.flac"}]} for i, (sc, (s, _)) in enumerate(SCENARIOS.items())]
    for i in range(len(synth)):
        _flac(root / "audio" / "slurp_synth" / f"audio-synth{i}.flac", 0.6, 200 + i)
    (text / "train_synthetic.jsonl").write_text("".join(json.dumps(e) + "\n" for e in synth), encoding="utf-8")
    listed = sum(len(e["recordings"]) for es in lines.values() for e in es)
    return listed + 1  # the bad line is one input row


@pytest.fixture(scope="module")
def slurp_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurp")
    return root, make_slurp_tree(root)


@pytest.fixture(scope="module")
def prepared(slurp_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("slurp_prepared")
    prepare_slurp(slurp_tree[0], out, max_duration=2.5)
    return out


def test_every_recording_is_kept_or_dropped_with_its_reason(slurp_tree, prepared):
    rows, dropped, summary = read_prepared(prepared)
    kept = sum(map(len, rows.values()))
    assert summary["input_rows"] == slurp_tree[1] == kept + len(dropped) and summary["accounted"]
    reasons = {d["source"].rsplit(" ", 1)[-1] if " " in d["source"] else "line": d["reason"] for d in dropped}
    assert reasons["audio-gone.flac"].startswith("missing audio file")
    assert reasons["audio-broken.flac"].startswith("unreadable or non-audio file")
    assert "not below the 2.5 s limit" in reasons["audio-long-headset.flac"]
    assert "speaker 'FE-101' is given in train and in test" in reasons["audio-1101-headset.flac"]
    assert reasons["line"].startswith("bad JSON line") and reasons["line"] == next(
        d["reason"] for d in dropped if d["source"].endswith("train.jsonl:7"))
    assert summary["bad_lines"] == 1 and summary["speakers_known"]
    assert summary["text_normalisation"] == {"language": "en", "numbers": "keep"}
    assert (prepared / "topics.txt").read_text().split() == sorted(SCENARIOS)
    # devel is dev; the official splits are kept; every row is a recording of its line's sentence.
    # The train speaker recorded once in test stays in test: its train rows give way.
    assert {r["speaker"] for r in rows["dev"]} == {"MO-201"}
    assert {r["speaker"] for r in rows["test"]} == {"FE-301", "FE-101"}
    assert "FE-101" not in {r["speaker"] for r in rows["train"]}
    assert {r["words"] for r in rows["train"]} >= {"wake me up at 7 o'clock", "what's the weather like in paris"}
    assert {r["subset"] for r in rows["train"]} == {"transcribed"}
    assert all(soundfile.info(r["wav"]).samplerate == 16000 for r in rows["test"])


def test_microphones_labels_and_synthetic_speech(slurp_tree, tmp_path):
    assert microphone("audio-1-headset.flac") == "headset" and microphone("audio-1.flac") == "far"
    prepare_slurp(slurp_tree[0], tmp_path / "far", mics="far", label="intent", synthetic=True)
    rows, dropped, summary = read_prepared(tmp_path / "far")
    assert summary["accounted"] and summary["input_rows"] == slurp_tree[1] + 3
    real = [r for rs in rows.values() for r in rs if not r["ID"].startswith("synth-")]
    assert real and all(microphone(r["ID"]) == "far" for r in real)
    assert sum(r["ID"].startswith("synth-") for r in rows["train"]) == 3
    assert any("headset recording, not kept by --mics far" in d["reason"] for d in dropped)
    assert (tmp_path / "far" / "topics.txt").read_text().split() == sorted(f"{s}_query" for s in SCENARIOS)


def test_a_tree_without_slurp_text_is_one_error_line(tmp_path):
    with pytest.raises(PrepError, match="no SLURP train.jsonl"):
        prepare_slurp(tmp_path, tmp_path / "out")
    done = subprocess.run([sys.executable, "-m", "data_prep", "slurp", str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("error: no SLURP train.jsonl")
    assert len(done.stderr.splitlines()) == 1


@pytest.mark.training
def test_the_text_row_and_an_audio_row_train_on_slurp(prepared, train, tmp_path):
    from data_prep.prepared import read_manifest
    from topic_id.standins.bert import build_standin

    from conftest import STANDIN

    texts = [r["words"] for s in ("train", "dev", "test") for r in read_manifest(prepared / f"{s}.csv")]
    build_standin(texts, prepared / "standin_bert", **STANDIN)
    for hparams, name in (("hparams/text.yaml", "text"), ("hparams/audio_tdnn.yaml", "audio_bl")):
        run = train(hparams, prepared, tmp_path / name, "--number_of_epochs=1")
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["test"]["n"] == len(read_manifest(prepared / "test.csv"))


def test_the_table_prepares_slurp_and_trains_with_english_encoders(tmp_path):
    from topic_id.config.overrides import profile_overrides
    from topic_id.table import command, planner

    args = command.settle(command.build_parser().parse_args(
        ["--corpus", "slurp", "--corpus-dir", str(tmp_path / "slurp"), "--out", str(tmp_path / "out"),
         "--device", "cpu", "--prep-workers", "4"]))
    steps = {s.label: s for s in planner.plan(args)}
    prepare = [str(c) for c in steps["prepare corpus"].cmd]
    assert prepare[2:] == ["data_prep", "slurp", str(tmp_path / "slurp"), str(tmp_path / "out" / "data")]
    assert args.profile == "slurp" and "--profile=slurp" in steps["train text_man seed 1"].cmd
    assert not any(s.kind == "standins" for s in steps.values())
    english = {"hparams/text.yaml": ("text_encoder_source", "bert-base-uncased"),
               "hparams/hybrid_crdnn.yaml": ("text_encoder_source", "bert-base-uncased"),
               "hparams/audio_wav2vec2.yaml": ("wav2vec2_source", "facebook/wav2vec2-base")}
    for hparams, (key, value) in english.items():
        assert profile_overrides(planner.ROOT / hparams, "slurp")[key] == value


def test_text_written_into_an_english_corpus_later_is_normalised_as_english(prepared, tmp_path):
    import shutil

    from data_prep.prepared import read_manifest, text_normalisation
    from data_prep.transcripts import import_transcripts

    corpus = tmp_path / "corpus"
    shutil.copytree(prepared, corpus, ignore=shutil.ignore_patterns("standin_*"))
    assert text_normalisation(corpus) == {"language": "en", "numbers": "keep"}
    first = read_manifest(corpus / "test.csv")[0]["ID"]
    (tmp_path / "hyp.jsonl").write_text(json.dumps({"ID": first, "text": "Wake me UP at 7 O'Clock!"}) + "\n")
    import_transcripts(corpus, tmp_path / "hyp.jsonl", "asr_words")
    assert read_manifest(corpus / "test.csv")[0]["asr_words"] == "wake me up at 7 o'clock"


@pytest.mark.slow
@pytest.mark.training
def test_the_tiny_table_runs_on_a_slurp_tree(slurp_tree, tmp_path):
    """About 1.5 min on 2 cores: prepare, stand-ins, ASR, transcription, three rows and the report."""
    import os

    from conftest import ROOT

    out = tmp_path / "table"
    done = subprocess.run(["bash", "recipes/run_table.sh", "--corpus", "slurp", "--corpus-dir", str(slurp_tree[0]),
                           "--profile", "tiny", "--device", "cpu", "--out", str(out),
                           "--systems", "text_man,audio_bl,text_pipeline"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "data" / "summary.json").read_text())
    assert summary["corpus"] == "slurp" and summary["accounted"] and summary["input_rows"] == slurp_tree[1]
    table = (out / "results" / "report" / "table1.csv").read_text()
    assert all(f",{row}," in table for row in ("text_man", "audio_bl", "text_pipeline"))
