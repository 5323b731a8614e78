"""topic_id.reporting.results, topic_id.reporting.report and ``topic-id report``: tables, agreement, figures, CLI."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score, f1_score

from topic_id import cli

from topic_id.training import metrics
from conftest import REGISTRY as PROJECT_REGISTRY, ROOT
from topic_id.reporting.report import write_report
from topic_id.reporting.results import DATA, agreement, collect, support_table, table_one, table_two

LABELS = ["animals", "sports", "summer", "media"]
N = 24
# Shuffled on purpose: Table I must follow table_row, not the file's order.
REGISTRY = """name,table_row,paper_name,hparams,overrides,init_from,needs,train_text,test_text
asr,,ASR (support),hparams/asr.yaml,,,,manual,manual
audio_only,6,audio-only,hparams/audio_crdnn.yaml,,,,,
text_semisup,2,text semi-sup,hparams/text.yaml,,,asr_words,manual + external ASR,manual
emb_transfer,5,emb transfer,hparams/audio_crdnn.yaml,,,,manual (stage A target only),
wav2vec2,7,Wav2vec2,hparams/audio_wav2vec2.yaml,,,,,
text_man,1,text man trn,hparams/text.yaml,,,,manual,manual
"""
# Per row and seed: how many test predictions are right (the rest are shifted by one class).
CORRECT = {"text_man": {"1": 20, "2": 17}, "audio_only": {"1": 12, "2": 15},
           "emb_transfer": {"1": 14}}


def _run(root, row, seed, correct, encoder=None):
    """A finished run written with the project's own result helpers."""
    out = root / row / seed
    rng = np.random.default_rng(sum(map(ord, row + seed)))
    ids = [f"utt{i:02d}" for i in range(N)]
    true = [LABELS[i % len(LABELS)] for i in range(N)]
    wrong = rng.permutation(N)[: N - correct]
    pred = [LABELS[(LABELS.index(t) + (i in wrong)) % len(LABELS)] for i, t in enumerate(true)]
    posteriors = np.eye(len(LABELS))[[LABELS.index(p) for p in pred]]
    metrics.write_predictions(out / "predictions.csv", ids, true, pred, posteriors, LABELS)
    embedding = torch.randn(N, 6, generator=torch.Generator().manual_seed(len(row)))
    torch.save({"id": ids, "topic": [LABELS.index(t) for t in true], "embedding": embedding},
               out / "embeddings_test.pt")
    scores = metrics.topic_metrics(true, pred, LABELS)
    metrics.write_json(out / "metrics.json", {
        "dev": scores, "test": scores, "params": 1000 * len(row),
        "trainable_params": 1000 * len(row), "text_encoder": encoder,
        "audio_encoder": None if encoder else "CRDNN", "labels": LABELS})
    return scores


@pytest.fixture
def tree(tmp_path):
    """Three rows x up to two seeds, the ASR, an unfinished run and a corrupt metrics.json."""
    root = tmp_path / "results"
    scores = {}
    for row, seeds in CORRECT.items():
        encoder = "stand-in BERT (demo), not FinBERT: /x" if row == "text_man" else None
        scores[row] = {s: _run(root, row, s, c, encoder) for s, c in seeds.items()}
    asr = {"dev": {"wer": 40.0, "cer": 15.0}, "test": {"wer": 42.0, "cer": 16.0}, "params": 7}
    metrics.write_json(root / "asr" / "1" / "metrics.json", asr)
    (root / "text_semisup" / "1").mkdir(parents=True)  # interrupted: no metrics.json
    (root / "emb_transfer" / "2").mkdir(parents=True)
    (root / "emb_transfer" / "2" / "metrics.json").write_text("{truncated")
    registry = tmp_path / "systems.csv"
    registry.write_text(REGISTRY)
    return root, registry, scores


def test_mean_std_over_seeds(tree):
    root, registry, scores = tree
    rows = {e["row"]: e for e in table_one(collect(root, registry))}
    for key, name in (("f1_test", "micro_f1"), ("uar_dev", "uar")):
        values = [100 * s[name] for s in scores["text_man"].values()]  # dev and test share scores
        assert rows["text_man"][key] == pytest.approx(np.mean(values))
        assert rows["text_man"][key + "_std"] == pytest.approx(np.std(values, ddof=1))
    assert rows["text_man"]["f1_test"] == pytest.approx(100 * (20 + 17) / 2 / N)
    assert rows["text_man"]["seeds"] == 2 and rows["text_man"]["params"] == 8000
    assert rows["emb_transfer"]["seeds"] == 1 and rows["emb_transfer"]["f1_test_std"] is None
    assert rows["wav2vec2"]["seeds"] == 0 and rows["wav2vec2"]["f1_test"] is None
    assert rows["text_man"]["text_encoder"].startswith("stand-in BERT")
    assert rows["text_semisup"]["train_text"] == "manual + external ASR"
    assert rows["audio_only"]["train_text"] is None
    asr = {e["row"]: e for e in support_table(collect(root, registry))}["asr"]
    assert (asr["wer_test"], asr["cer_dev"], asr["wer_test_std"]) == (42.0, 15.0, None)


def test_rows_follow_table_row(tree):
    root, registry, _ = tree
    order = [e["row"] for e in table_one(collect(root, registry))]
    assert order == ["text_man", "text_semisup", "emb_transfer", "audio_only", "wav2vec2"]
    real = table_one(collect(root, PROJECT_REGISTRY))  # the project's registry, whatever rows it holds by now
    paper_rows = [e["table_row"] for e in real if e["table_row"].isdigit()]
    assert paper_rows == sorted(paper_rows, key=int)
    assert "asr" not in [e["row"] for e in real]
    # Our BoW rows (table_row "BoW") sit right after the text rows, and get no paper numbers.
    order = [e["row"] for e in table_one(collect(root, PROJECT_REGISTRY), DATA / "paper_table1.csv")]
    assert order.index("text_semisup") < order.index("bow_man") < order.index("bow_asr") < order.index("audio_bl")
    bow = next(e for e in table_one(collect(root, PROJECT_REGISTRY), DATA / "paper_table1.csv") if e["row"] == "bow_man")
    assert bow["paper_f1_test"] is None and bow["paper_params"] is None


def test_agreement_is_micro_f1_and_kappa_between_predictions(tree):
    root, registry, _ = tree
    table, _ = table_two(collect(root, registry))
    pair = next(e for e in table if {e["row_a"], e["row_b"]} == {"text_man", "audio_only"})
    preds = {}
    for row in ("text_man", "audio_only"):
        with open(root / row / "1" / "predictions.csv", newline="") as f:
            preds[row] = [r["predicted"] for r in sorted(csv.DictReader(f), key=lambda r: r["ID"])]
    a, b = preds[pair["row_a"]], preds[pair["row_b"]]
    assert pair["seed"] == "1" and pair["n"] == N
    assert pair["agreement"] == pytest.approx(100 * f1_score(a, b, average="micro"))
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    assert len(table) == 3  # text_man, audio_only, emb_transfer: every pair once


def test_report_files_and_missing_runs(tree):
    root, registry, _ = tree
    out = root / "report"
    (out / "1").mkdir(parents=True)
    (root / "stray" / "1").mkdir(parents=True)
    table_md, _ = write_report(root, corpus="demo", registry=registry)
    names = ("report.md", "table1.csv", "table2.csv", "fig3_tsne.png", "confusion_text_man.png")
    for name in names:
        assert (out / name).stat().st_size > 0, name
    assert (out / "fig3_tsne.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert table_md in report and "not comparable" in report and "Stand-in encoders" in report
    assert "`text_semisup` seed 1: unfinished (no metrics.json)" in report
    assert "`wav2vec2` seed 1: not run" in report and "`wav2vec2` seed 2: not run" in report
    assert "`emb_transfer` seed 2: unreadable metrics.json" in report
    assert "| 77.08 ± 8.84 |" in table_md  # text_man micro-F1 test: 20/24 and 17/24
    with open(out / "table1.csv", newline="") as f:
        assert [r["row"] for r in csv.DictReader(f)][:2] == ["text_man", "text_semisup"]
    assert "`report`" not in report  # its own folder, made before the run, is not read as a row
    assert "`stray`: folder not in the registry" in report


def test_report_adds_the_run_time_of_each_step(tree, tmp_path):
    root, registry, _ = tree
    timings = tmp_path / "steps.csv"
    timings.write_text("step,status,seconds,started,finished\n"
                       "prepare corpus,skipped,,,\n"
                       "train asr seed 1,ran,300.0,1000.0,1300.0\n"
                       "train text_man seed 1,ran,60.0,1010.0,1070.0\n")
    write_report(root, tmp_path / "report", corpus="demo", registry=registry, timings=timings)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| train asr seed 1 | 300.0 |" in report and "| train text_man seed 1 | 60.0 |" in report
    assert "2 steps ran in 5.0 min of wall time" in report and "(6.0 min if run one after another)" in report
    assert "Finished earlier and skipped: prepare corpus." in report
    write_report(root, tmp_path / "plain", corpus="demo", registry=registry)
    assert "Run time" not in (tmp_path / "plain" / "report.md").read_text()


def test_fig3_skips_missing_systems(tree):
    root, registry, _ = tree
    (root / "emb_transfer" / "1" / "embeddings_test.pt").unlink()
    write_report(root, registry=registry)
    report = (root / "report" / "report.md").read_text()
    assert "emb transfer: no run with embeddings_test.pt" in report
    assert (root / "report" / "fig3_tsne.png").is_file()


def test_lp_adds_published_numbers(tree):
    root, registry, _ = tree
    table_md, _ = write_report(root, corpus="lp", registry=registry)
    assert "paper micro-F1 test" in table_md and "83.97" in table_md and "7.7K" in table_md
    assert "audio+text BL" in table_md  # published row without a registry row
    with open(root / "report" / "table1.csv", newline="") as f:
        rows = {r["system"]: r for r in csv.DictReader(f)}
    assert rows["audio-only"]["paper_uar_test"] == "68.50"
    assert rows["ASR (support)"]["paper_wer_test"] == "34.63"
    with open(root / "report" / "table2.csv", newline="") as f:
        pairs = {frozenset((r["row_a"], r["row_b"])): r for r in csv.DictReader(f)}
    assert pairs[frozenset(("audio_only", "emb_transfer"))]["paper_agreement"] == "72.24"
    assert pairs[frozenset(("audio_only", "text_man"))]["paper_agreement"] == ""


def test_cli_exit_codes(tree, tmp_path, capsys):
    root, registry, _ = tree
    assert cli.main(["report", str(root), "--out", str(tmp_path / "rep")]) == 2
    assert "systems.csv does not exist" in capsys.readouterr().err  # no copy, no --registry
    assert cli.main(["report", str(root), "--out", str(tmp_path / "rep"), "--registry", str(registry)]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("| System |") and (tmp_path / "rep" / "report.md").is_file()
    for bad in (tmp_path / "nowhere", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        assert cli.main(["report", str(bad), "--registry", str(registry)]) == 1
        err = capsys.readouterr().err
        assert "topic-id report: error:" in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.startswith("topic-id")]) == 1
    assert cli.main(["report", str(root), "--registry", str(registry), "--timings", str(tmp_path / "none.csv")]) == 1
    assert "none.csv does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(root), "--corpus", "nope"])
    assert exit_info.value.code == 2


def test_module_entry_point(tmp_path):
    """``python -m topic_id.cli`` parses and fails like the console script (the report itself is
    exercised in-process above, to keep this test fast)."""
    command = [sys.executable, "-m", "topic_id.cli", "report"]
    usage = subprocess.run(command + ["--help"], capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode == 0 and "--corpus {demo,lp,csv,slurp}" in usage.stdout
    nowhere = tmp_path / "none"
    missing = subprocess.run(command + [str(nowhere)], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.strip().splitlines() == [
        f"topic-id report: error: {nowhere} is not a folder; give the results tree <out>/results"
    ]


def test_agreement_of_constant_systems():
    same = ["a"] * 5
    assert agreement(same, same) == {"n": 5, "agreement": 100.0, "kappa": None}


def test_params_of_a_system_with_its_own_asr(tmp_path):
    """Multi-task runs its stage-1 ASR when deployed: Table I adds that ASR's modules."""
    registry = tmp_path / "systems.csv"
    registry.write_text("name,table_row,paper_name,hparams,overrides,init_from,needs,train_text,test_text\n"
                        "s1,,stage 1,hparams/multitask.yaml,,,,,\n"
                        "mt,10,multi-task,hparams/hybrid_crdnn.yaml,,s1,own_asr:s1,,\n")
    root = tmp_path / "results"
    _run(root, "mt", "1", N)
    _run(root, "s1", "1", N)
    stage1 = json.loads((root / "s1" / "1" / "metrics.json").read_text())
    stage1["module_params"] = {"normalize": 0, "audio_encoder": 500, "embedding": 20, "decoder": 300,
                               "seq_lin": 80, "head": 7}
    metrics.write_json(root / "s1" / "1" / "metrics.json", stage1)
    row = next(e for e in table_one(collect(root, registry)) if e["row"] == "mt")
    assert row["params"] == 2000 + 900  # its own, plus the ASR's modules (not stage 1's topic head)


def _records(run, device="CUDA not available", log=None):
    """The environment and log records train.py leaves in a run folder."""
    (run / "env.log").write_text("SpeechBrain system description\n==============================\n"
                                 "Installed Python packages:\nnumpy==2.0.0\ntorch==2.5.1\n"
                                 "==============================\nGit revision:\nabc1234\n"
                                 f"==============================\n{device}\n")
    if log is not None:
        stamp = "2026-01-01 10:{:02d}:{:02d},000 - speechbrain.{} - INFO - {}"
        (run / "log.txt").write_text("\n".join(stamp.format(m, s, who, what) for m, s, who, what in log) + "\n")


def test_results_md_header_tables_and_run_time(tree, monkeypatch):
    root, registry, _ = tree
    for row, seeds in CORRECT.items():
        for seed in seeds:
            _records(root / row / seed)
    # seed 1 interrupted after 60 s and resumed for 30 s; the 10 min between are not run time
    _records(root / "text_man" / "1", log=[(0, 0, "core", "Beginning experiment!"), (1, 0, "core", "epoch 1"),
                                           (11, 0, "core", "Beginning experiment!"), (11, 30, "core", "done")])
    _records(root / "text_man" / "2", log=[(0, 0, "core", "Beginning experiment!"), (0, 45, "core", "done")])
    _records(root / "asr" / "1", device="CUDA version:\n12.4")
    monkeypatch.chdir(root.parent)  # not a git checkout
    write_report(root, corpus="demo", registry=registry)
    text = (root / "report" / "RESULTS.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "# Topic identification results (corpus: demo)"
    assert re.fullmatch(r"Generated by `topic-id report` on \d{4}-\d\d-\d\d at commit unknown\.", lines[2])
    for fact in ("- corpus: `demo`", "- seeds: 1, 2", "- finished runs: 6; missing or partial: 5",
                 "- trained at commit: abc1234", "- torch: 2.5.1", "- device: CUDA 12.4 (1 run), cpu (5 runs)"):
        assert fact in lines, fact
    assert "| 77.08 ± 8.84 |" in text  # Table I, text_man test micro-F1: 20/24 and 17/24
    assert "| text man trn | text_man | 83.33 / 83.33 | 70.83 / 70.83 |" in text  # per seed
    assert "| emb transfer | emb_transfer | 58.33 / 58.33 | — |" in text  # seed 2 unreadable
    assert "| Claim (test micro-F1, %) | paper |" in text and "## Table II: agreement on test" in text
    assert "| ASR (support) | asr | 1 | 40.00 | 42.00 |" in text
    assert "| text man trn | text_man | 90 / 45 | 68 | 2.2 |" in text  # run time from log.txt
    assert "| audio-only | audio_only | — / — | — | — |" in text  # no log.txt
    assert "`text_semisup` seed 1: unfinished (no metrics.json)" in text
    assert "png" not in text and "Run time (recipes/run_table.sh)" not in text


def test_results_md_is_byte_stable_but_for_its_generation_line(tree, tmp_path, monkeypatch):
    root, registry, _ = tree
    write_report(root, tmp_path / "a", corpus="demo", registry=registry)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    write_report(root, tmp_path / "b", corpus="demo", registry=registry, results_md=tmp_path / "elsewhere" / "R.md")
    first = (tmp_path / "a" / "RESULTS.md").read_text().splitlines()
    second = (tmp_path / "elsewhere" / "R.md").read_text().splitlines()
    assert not (tmp_path / "b" / "RESULTS.md").exists() and (tmp_path / "b" / "report.md").is_file()
    assert second[2].startswith("Generated by `topic-id report` on 1970-01-01 at commit ")
    assert [i for i, (a, b) in enumerate(zip(first, second)) if a != b] in ([], [2]) and len(first) == len(second)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    monkeypatch.chdir(ROOT)
    write_report(root, tmp_path / "c", corpus="demo", registry=registry)
    assert f"at commit {commit.stdout.strip() or 'unknown'}." in (tmp_path / "c" / "RESULTS.md").read_text()
    assert "- trained at commit: not recorded" in second and "- device: not recorded" in second


def test_cli_writes_results_md_where_asked(tree, tmp_path, capsys):
    root, registry, _ = tree
    target = tmp_path / "results" / "demo" / "RESULTS.md"
    assert cli.main(["report", str(root), "--registry", str(registry), "--results-md", str(target)]) == 0
    assert target.read_text().startswith("# Topic identification results (corpus: demo)\n")
