"""Where the table's steps run (topic_id/table/launchers.py): GPUs per step, dry runs, SLURM jobs.

The real cluster test runs the table on the one-node SLURM that ``tools/local_slurm.sh`` starts
(``.ci/run`` does, as root); where no SLURM answers it is skipped, saying so.
"""

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from topic_id.table import command, planner as pipeline
from topic_id.table.launchers import Runner, StepFailed, load_slurm_config, resources
from topic_id.table.planner import Step
from topic_id.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _args(tmp_path, *extra):
    args = command.build_parser().parse_args(["--corpus", "demo", "--out", str(tmp_path / "out"), *extra])
    return command.settle(args)


def _gpu_probe(path, seconds=0.3):
    """A step that writes its CUDA_VISIBLE_DEVICES to ``path`` after ``seconds``."""
    code = (f"import os, time; time.sleep({seconds}); "
            f"open({str(path)!r}, 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', '-'))")
    return [sys.executable, "-c", code]


def test_each_parallel_step_gets_its_own_gpu(tmp_path):
    a, b, c, both = (tmp_path / n for n in ("a", "b", "c", "both"))
    steps = [Step("a", _gpu_probe(a), a, gpus=1), Step("b", _gpu_probe(b), b, gpus=1),
             Step("c", _gpu_probe(c), c, gpus=0),
             Step("both", _gpu_probe(both), both, deps=["a", "b"], gpus=2)]
    Runner(tmp_path, jobs=3, poll=0.05, gpus=["0", "1"]).execute(steps)
    assert {a.read_text(), b.read_text()} == {"0", "1"}
    assert c.read_text() == "-"  # a step without GPUs is not given one
    assert both.read_text() in ("0,1", "1,0")


def test_a_step_waits_for_a_free_gpu(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Runner(tmp_path, jobs=2, poll=0.05, gpus=["3"]).execute(
        [Step("a", _gpu_probe(a, 0.5), a, gpus=1), Step("b", _gpu_probe(b, 0.5), b, gpus=1)])
    assert a.read_text() == b.read_text() == "3"
    assert abs(a.stat().st_mtime - b.stat().st_mtime) >= 0.4  # one after the other


def test_a_step_needing_more_gpus_than_the_pool_is_refused(tmp_path):
    with pytest.raises(StepFailed, match="needs 2 GPUs but --gpus gives 1"):
        Runner(tmp_path, gpus=["0"]).execute([Step("big", ["true"], gpus=2)])


def test_dry_run_assigns_the_gpus_and_writes_nothing(tmp_path, capsys):
    code = command.main(["--corpus", "demo", "--out", str(tmp_path / "out"), "--dry-run",
                          "--device", "cuda", "--gpus", "0,1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "CUDA_VISIBLE_DEVICES=0" in printed and "CUDA_VISIBLE_DEVICES=1" in printed
    assert "$ " in printed and "after: prepare corpus" in printed
    assert printed.count("\n    $ ") == len(pipeline.plan(_args(tmp_path, "--device", "cuda", "--gpus", "0,1")))
    assert not (tmp_path / "out").exists()


def test_training_steps_take_the_device_and_the_trainer_options(tmp_path):
    args = _args(tmp_path, "--device", "cuda", "--gpus", "0,1,2,3", "--row-gpus", "wav2vec2=4",
                 "--train-args", "--precision=bf16 --num_workers=8")
    steps = {s.label: s for s in pipeline.plan(args)}
    w2v, text = steps["train wav2vec2 seed 1"], steps["train text_man seed 1"]
    assert w2v.gpus == 4 and w2v.cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert text.gpus == 1 and text.cmd[1] == "recipes/train.py"
    assert text.cmd[-2:] == ["--precision=bf16", "--num_workers=8"]  # last: the user's options win
    # An override goes only to the rows whose YAML has the key; run options to every row.
    assert steps["train bow_man seed 1"].cmd[-1] == "--precision=bf16"
    # The frozen text encoder fills its cache on the step's device.
    assert "--text_encoder_device=cuda" in text.cmd and "--text_encoder_device=cuda" not in w2v.cmd
    assert steps["train bow_man seed 1"].gpus == 0  # scikit-learn, no GPU
    assert steps["transcribe with asr"].gpus == 1 and steps["prepare corpus"].gpus == 0


def test_a_train_arg_no_row_has_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--num_worker is neither a trainer option nor a key"):
        pipeline.plan(_args(tmp_path, "--device", "cpu", "--train-args=--num_worker=8"))


def test_every_training_step_waits_for_the_corpus_check(tmp_path):
    steps = pipeline.plan(_args(tmp_path, "--device", "cpu", "--train-args=--lr=0.5"))
    check = next(s for s in steps if s.label == "check corpus")
    assert check.deps == ["prepare corpus"] and check.cmd[-2:] == ["--", "--lr=0.5"]
    assert all("check corpus" in s.deps for s in steps if s.label.startswith("train "))
    assert not check.finished()


def test_a_missing_pretrained_model_stops_the_table_before_anything_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    with pytest.raises(SystemExit) as stop:
        command.main(["--corpus", "demo", "--size", "tiny", "--profile", "paper", "--device", "cpu",
                       "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and time.time() - start < 60
    assert err.startswith("error: ") and "TurkuNLP/bert-base-finnish" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cpu_steps_take_no_gpu(tmp_path):
    steps = pipeline.plan(_args(tmp_path, "--device", "cpu"))
    assert all(s.gpus == 0 for s in steps)
    assert all("--text_encoder_device=cpu" not in s.cmd for s in steps)


@pytest.mark.parametrize("argv, message", [
    (["--device", "cuda", "--gpus", ""], "--device cuda but no GPU is visible here"),
    (["--device", "cpu", "--row-gpus", "wav2vec2=0"], "--row-gpus takes ROW=N"),
    (["--device", "cpu", "--row-gpus", "nope=2", "--dry-run"], "--row-gpus names nope"),
    (["--launcher", "slurm", "--slurm-config", "/nonexistent.yaml", "--dry-run"], "/nonexistent.yaml does not exist"),
])
def test_bad_device_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        command.main(["--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1


def test_prep_workers_reach_the_corpus_preparation(tmp_path):
    args = _args(tmp_path, "--corpus", "lp", "--corpus-dir", str(tmp_path), "--prep-workers", "6", "--device", "cpu")
    prep = pipeline.plan(args)[0]
    assert prep.cmd[-2:] == ["--num-workers", "6"]


def test_slurm_config_sections_and_errors(tmp_path):
    config = load_slurm_config()
    step = Step("train wav2vec2 seed 1", [], kind="train", row="wav2vec2", gpus=1)
    assert resources(config, step)["time"] == config["default"]["time"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("default:\n  cpu: 4\n")
    with pytest.raises(ConfigError, match="section default: unknown key cpu"):
        load_slurm_config(bad)


def test_slurm_dry_run_prints_jobs_with_their_dependencies(tmp_path, capsys):
    code = command.main(["--corpus", "demo", "--size", "tiny", "--profile", "tiny", "--out", str(tmp_path / "out"),
                          "--launcher", "slurm", "--device", "cuda", "--dry-run", "--systems", "text_man"])
    printed = capsys.readouterr().out
    assert code == 0 and not (tmp_path / "out").exists()
    sbatch = [line for line in printed.splitlines() if line.strip().startswith("sbatch ")]
    assert len(sbatch) == 6  # corpus, its check, two stand-ins, text_man, report
    text = next(line for line in sbatch if "--job-name=train text_man seed 1'" in line)
    waits = text.split("--dependency=afterok:", 1)[1].rstrip("'")
    assert sorted(waits.split(":")) == sorted(
        ["<prepare corpus>", "<check corpus>", "<stand-in text encoder>", "<stand-in wav2vec2>"])
    assert "--gres=gpu:1" in text and "--requeue" in text and "--signal=B:USR1@600" in text
    prepare = next(line for line in sbatch if "prepare corpus" in line)
    assert "--gres" not in prepare and "--dependency" not in prepare


def _table(out, *extra):
    return subprocess.run(["bash", "recipes/run_table.sh", "--corpus", "demo", "--size", "tiny", "--profile", "tiny",
                           "--device", "cpu", "--out", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _report(out):
    return (out / "results" / "report" / "table1.csv").read_text().replace(str(out.resolve()), "OUT")


def _slurm_table_and_rerun(tmp_path, config, rows):
    """The table as SLURM jobs in ``<tmp_path>/slurm``: every step a job, all finished; a rerun submits none."""
    done = _table(tmp_path / "slurm", "--launcher", "slurm", "--slurm-config", str(config), "--wait", *rows)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = json.loads((tmp_path / "slurm" / "logs" / "slurm_jobs.json").read_text())
    steps = pipeline.plan(command.settle(command.build_parser().parse_args(
        ["--corpus", "demo", "--size", "tiny", "--profile", "tiny", "--device", "cpu",
         "--out", str(tmp_path / "slurm"), *rows])))
    assert set(jobs) == {s.label for s in steps}  # every step was a job
    assert any(job["dependency"] for job in jobs.values())
    assert all(s.finished() for s in steps), [s.label for s in steps if not s.finished()]
    again = _table(tmp_path / "slurm", "--launcher", "slurm", "--slurm-config", str(config), *rows)
    assert again.returncode == 0 and "submitted 0 job(s)" in again.stderr, again.stderr[-2000:]


@pytest.mark.slurm
@pytest.mark.training
@pytest.mark.parametrize("systems", [
    "text_man",
    pytest.param(None, marks=pytest.mark.slow),  # the whole tiny table: about 10 min on 2 cores
])
def test_the_table_runs_as_slurm_jobs_as_it_runs_locally(tmp_path, systems):
    config = tmp_path / "slurm.yaml"
    config.write_text("default:\n  cpus: 1\n  mem: 2G\n  time: '01:00:00'\n")
    rows = ["--systems", systems] if systems else []
    start = time.time()
    # The local table runs meanwhile: each table is mostly one step at a time, on two cores.
    with ThreadPoolExecutor(1) as background:
        local = background.submit(_table, tmp_path / "local", *rows)
        _slurm_table_and_rerun(tmp_path, config, rows)
        local = local.result()
    assert local.returncode == 0, local.stderr[-3000:]
    assert _report(tmp_path / "slurm") == _report(tmp_path / "local")
    assert time.time() - start < 900
