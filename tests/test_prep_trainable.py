"""Every preparation stops, after writing its folder, when what it kept cannot train a classifier.

Each command (csv, folder, speak, lp, demo) ends with exit status 2 and one ``error:`` line naming
the problem (fewer than two train topics, an empty split, a dev/test topic absent from train)
instead of a "corpus" on which training fails deep inside PyTorch; the manifests, dropped.csv
and summary.json stay for inspection, and a rerun rebuilds (data_prep.manifest.write_prepared).
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from helpers import make_toy_lp_corpus

from data_prep import demo_corpus
from data_prep.__main__ import main
from data_prep.manifest import CANNOT_TRAIN, OUTPUTS, is_finished


def _audio_csv(tmp_path, rows, name="meta.csv"):
    """A metadata CSV of ``(topic, speaker, split)`` rows (split None: no split column)."""
    header = "path,topic,transcript,speaker" + (",split" if rows and rows[0][2] is not None else "")
    lines = [header]
    for k, (topic, speaker, split) in enumerate(rows):
        path = tmp_path / "audio" / f"u{k}.wav"
        path.parent.mkdir(exist_ok=True)
        soundfile.write(str(path), np.zeros(4000, np.float32), 16000)
        lines.append(f"audio/{path.name},{topic},sana {topic},{speaker}" + (f",{split}" if split else ""))
    (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / name


def _refused(capsys, argv, out, problem):
    """Run a command that must be refused, and check the message and what was left behind."""
    assert main(["-q"] + [str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the prepared corpus cannot train a classifier: ") and err.count("\n") == 1
    assert problem in err and "Traceback" not in err
    assert all((out / name).is_file() for name in OUTPUTS)
    assert any(problem in p for p in json.loads((out / "summary.json").read_text())[CANNOT_TRAIN])
    assert not is_finished(out)
    return err


def test_csv_all_rows_bad_but_one_exits_2_without_traceback(tmp_path):
    meta = _audio_csv(tmp_path, [("sauna", "s1", "train")])
    with open(meta, "a", encoding="utf-8") as f:
        f.write("audio/missing.wav,kesä,sana,s2,dev\n,kesä,sana,s3,test\naudio/u0.wav,,sana,s4,test\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "data_prep", "-q", "csv", str(meta), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # The dropped rows are logged as warnings before it; the error itself is one line, the last.
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.endswith(errors[0] + "\n")
    assert errors[0].startswith("error: the prepared corpus cannot train a classifier")
    assert "train has rows of one topic only (sauna)" in errors[0]
    assert "dev is empty; test is empty" in errors[0]
    assert "3 of 4 input rows were dropped" in errors[0] and "dropped.csv" in errors[0]
    assert (out / "train.csv").read_text().count("\n") == 2
    assert (out / "dropped.csv").read_text().count("\n") == 4


def test_csv_one_train_topic(tmp_path, capsys):
    meta = _audio_csv(tmp_path, [("sauna", "a", "train"), ("sauna", "b", "train"), ("sauna", "c", "dev"),
                                 ("sauna", "d", "test")])
    _refused(capsys, ["csv", meta, tmp_path / "out"], tmp_path / "out",
             "train has rows of one topic only (sauna): a classifier needs at least two")


def test_csv_empty_split_then_fixed_input_rebuilds(tmp_path, capsys):
    rows = [("sauna", "a", "train"), ("kesä", "b", "train"), ("sauna", "c", "dev")]
    meta = _audio_csv(tmp_path, rows)
    out = tmp_path / "out"
    _refused(capsys, ["csv", meta, out], out, "test is empty")
    # The refused folder is not a finished preparation: the rerun rebuilds it, not skips it.
    _audio_csv(tmp_path, rows + [("kesä", "d", "test")])
    assert main(["-q", "csv", str(meta), str(out)]) == 0 and is_finished(out)


def test_csv_test_topic_absent_from_train(tmp_path, capsys):
    meta = _audio_csv(tmp_path, [("sauna", "a", "train"), ("kesä", "b", "train"), ("sauna", "c", "dev"),
                                 ("koira", "d", "test")])
    _refused(capsys, ["csv", meta, tmp_path / "out"], tmp_path / "out",
             "test has topic(s) absent from train: koira")


def test_folder_of_one_topic(tmp_path, capsys):
    for k in range(4):
        path = tmp_path / "root" / "sauna" / f"s{k}" / "a.wav"
        path.parent.mkdir(parents=True)
        soundfile.write(str(path), np.zeros(4000, np.float32), 16000)
    argv = ["folder", tmp_path / "root", tmp_path / "out", "--dev-fraction", "0.25", "--test-fraction", "0.25"]
    _refused(capsys, argv, tmp_path / "out", "train has rows of one topic only (sauna)")


def test_speak_without_rows_for_dev_and_test(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("text,topic\nmä kävin saunassa,sauna\nkesä oli kuuma,kesä\n",
                                    encoding="utf-8")
    _refused(capsys, ["speak", tmp_path / "t.csv", tmp_path / "out"], tmp_path / "out", "dev is empty")


def test_lp_without_dev_hours(tmp_path, capsys):
    toy = make_toy_lp_corpus(tmp_path / "lp", n_clients=3, per_client=2, bad=False)
    _refused(capsys, ["lp", toy.root, tmp_path / "out", "--dev-hours", "0", "--test-hours", "0.001"],
             tmp_path / "out", "dev is empty")


def test_demo_too_small_to_train(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(demo_corpus.SIZES, "tiny", {"train": 1, "dev": 1, "test": 1})
    err = _refused(capsys, ["demo", tmp_path / "out", "--size", "tiny"], tmp_path / "out",
                   "a classifier needs at least two")
    assert "all 3 input rows were kept" in err


@pytest.mark.parametrize("command", ["csv", "folder"])
def test_trainable_corpus_is_not_refused(tmp_path, command):
    rows = [(t, f"s{k}", None) for k, t in enumerate(["sauna", "kesä"] * 6)]
    meta = _audio_csv(tmp_path, rows)
    for k, (topic, _, _) in enumerate(rows):
        target = tmp_path / "root" / topic / f"s{k}" / f"u{k}.wav"
        target.parent.mkdir(parents=True)
        target.write_bytes((tmp_path / "audio" / f"u{k}.wav").read_bytes())
    source = meta if command == "csv" else tmp_path / "root"
    argv = ["-q", command, str(source), str(tmp_path / "out"), "--dev-fraction", "0.2",
            "--test-fraction", "0.2"]
    assert main(argv) == 0
    assert CANNOT_TRAIN not in json.loads((tmp_path / "out" / "summary.json").read_text())
