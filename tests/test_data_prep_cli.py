"""``python -m data_prep``: sub-commands call the library; bad input is one ``error:`` line, exit 2."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest
import soundfile
from helpers import make_toy_lp_corpus

from data_prep.__main__ import main


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    # Enough clients that every theme drawn for dev/test also occurs in train.
    return make_toy_lp_corpus(tmp_path_factory.mktemp("lp"), n_clients=12, per_client=3, bad=False)


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_lp_command(toy, tmp_path):
    out = tmp_path / "out"
    assert main(["-q", "lp", str(toy.root), str(out), "--dev-hours", "0.0005", "--test-hours", "0.0005",
                 "--seed", "3"]) == 0
    summary = _summary(out)
    assert summary["accounted"] and summary["seed"] == 3 and summary["input_rows"] == toy.n_rows
    # The paper's 3 h are more than this tree holds: the defaults are capped at a tenth of the
    # transcribed hours; 3 h asked for explicitly are an error naming the flags.
    assert main(["-q", "lp", str(toy.root), str(out), "--force"]) == 0
    summary = _summary(out)
    assert summary["dev_hours"] == summary["test_hours"] < 0.01
    assert summary["splits"]["dev"]["count"] and summary["splits"]["test"]["count"]
    assert main(["-q", "lp", str(toy.root), str(tmp_path / "again"), "--dev-hours", "3"]) == 2


def test_lp_split_lists_exclude_hours(toy, tmp_path, capsys):
    assert main(["lp", str(toy.root), str(tmp_path), "--split-lists", str(tmp_path), "--dev-hours", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: give either --split-lists or --dev-hours/--test-hours, not both")


def test_csv_and_folder_commands(tmp_path):
    root = tmp_path / "root"
    rows = ["path,topic,speaker,split"]
    for k in range(6):
        topic = ("sauna", "kesä")[k % 2]
        path = root / topic / f"s{k % 3}" / f"u{k}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(path), np.zeros(8000, np.float32), 16000)
        rows.append(f"{path.relative_to(root)},{topic},s{k % 3},{('train', 'dev', 'test')[k % 3]}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    assert main(["-q", "csv", str(root / "meta.csv"), str(tmp_path / "c")]) == 0
    assert _summary(tmp_path / "c")["splits"]["dev"]["count"] == 2
    assert main(["-q", "folder", str(root), str(tmp_path / "f"), "--dev-fraction", "0.3", "--seed", "2"]) == 0
    assert _summary(tmp_path / "f")["input_rows"] == 6


@pytest.mark.parametrize("argv, message", [
    (["csv", "{tmp}/missing.csv", "{tmp}/out"], "cannot read metadata file"),
    (["csv", "{tmp}/bad.csv", "{tmp}/out"], "lacks the required column(s) topic"),
    (["folder", "{tmp}", "{tmp}/out"], "no audio found"),
    (["lp", "{tmp}", "{tmp}/out"], "point CORPUS_DIR"),
    (["csv", "{tmp}/ok.csv", "{tmp}/bad.csv/out"], "cannot write to output directory"),
])
def test_bad_input_is_one_error_line(tmp_path, capsys, argv, message):
    (tmp_path / "bad.csv").write_text("path,speaker\na.wav,s\n")
    (tmp_path / "ok.csv").write_text("path,topic\na.wav,sauna\n")
    assert main(["-q"] + [a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_validation_errors_are_joined_on_one_line(monkeypatch, tmp_path, capsys):
    from data_prep.manifest import PrepError

    def fail(*args, **kwargs):
        raise PrepError("manifest validation failed:\n  row 'a': bad\n  row 'b': bad")

    monkeypatch.setattr("data_prep.csv_corpus.prepare_csv_corpus", fail)
    assert main(["csv", "x.csv", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "error: manifest validation failed: row 'a': bad; row 'b': bad\n"


def test_demo_and_speak_call_their_modules(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setitem(sys.modules, "data_prep.demo_corpus", types.SimpleNamespace(
        prepare_demo=lambda *a, **k: calls.append(("demo", a, k))))
    monkeypatch.setitem(sys.modules, "data_prep.speak", types.SimpleNamespace(
        speak_csv=lambda *a, **k: calls.append(("speak", a, k))))
    assert main(["demo", "out", "--seed", "5", "--size", "tiny", "--force", "--long-recordings", "8"]) == 0
    assert main(["speak", "t.csv", "out2"]) == 0
    assert main(["speak", "t.csv", "out3", "--language", "en", "--numbers", "drop"]) == 0
    assert calls == [("demo", ("out",), {"seed": 5, "size": "tiny", "force": True, "long_recordings": 8}),
                     ("speak", ("t.csv", "out2"), {"seed": 0, "force": False, "language": "fi", "numbers": None}),
                     ("speak", ("t.csv", "out3"), {"seed": 0, "force": False, "language": "en", "numbers": "drop"})]


def test_module_entry_point_exit_status_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "data_prep", "csv", str(tmp_path / "none.csv"), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: cannot read metadata file")
