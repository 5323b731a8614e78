"""recipes/run_table.sh's planner and runner (topic_id/table/planner.py): what waits for what, parallel
steps, skipping finished steps, and stopping at the first failure with its log named.

The steps' commands here are tiny Python one-liners; the real rows are trained by
tests/test_recipes.py through the same registry.
"""

import csv
import sys
import time

import pytest

from topic_id.table import command, planner as pipeline
from topic_id.table.launchers import STEP_FIELDS, Runner, StepFailed
from topic_id.table.planner import Step


def _args(tmp_path, *extra):
    args = command.build_parser().parse_args(["--corpus", "demo", "--out", str(tmp_path), "--device", "cpu",
                                               *extra])
    return command.settle(args)


def _deps(steps):
    return {s.label: set(s.deps) for s in steps}


def test_plan_orders_every_step_after_what_it_reads(tmp_path):
    steps = pipeline.plan(_args(tmp_path))
    deps = _deps(steps)
    order = [s.label for s in steps]
    for label, needs in deps.items():
        assert all(order.index(d) < order.index(label) for d in needs), label
    assert "transcribe with asr" in deps["train text_pipeline seed 1"]
    assert "transcribe with asr" not in deps["train text_man seed 1"]
    assert "train asr seed 1" not in deps["train audio_only seed 1"]
    # The multi-task stage 2 waits for stage 1's own ASR, not the standalone one.
    assert {"train multitask_s1 seed 1", "transcribe with multitask_s1 seed 1"} <= deps["train multitask seed 1"]
    assert "transcribe with asr" not in deps["train multitask seed 1"]
    # Emb transfer B and the ASR-test-text row start from another row's model.
    assert "train emb_transfer_pretrain seed 1" in deps["train emb_transfer seed 1"]
    assert {"train audio_text seed 1", "transcribe with asr"} <= deps["train audio_text_asr seed 1"]
    assert deps["report"] == set(order[:-1])
    # The shared set-up is no chain to continue: the ASR, whose only input is the corpus, must not
    # wait behind every row that also needs the stand-ins (finished later).
    assert {s.label for s in steps if not s.continues} == {
        "prepare corpus", "check corpus", "stand-in text encoder", "stand-in wav2vec2"}


def test_the_demo_corpus_gets_long_recordings_when_asked(tmp_path):
    default, short = (next(s for s in pipeline.plan(_args(tmp_path, *extra)) if s.label == "prepare corpus").cmd
                      for extra in ((), ("--long-recordings", "0")))
    # Unless told, data_prep's own default for the size (LP-like durations for the default size).
    assert "--long-recordings" not in default
    assert short[short.index("--long-recordings") + 1] == "0"


def test_systems_chooses_rows_and_what_they_need(tmp_path, capsys):
    labels = {s.label for s in pipeline.plan(_args(tmp_path, "--systems", "multitask"))}
    assert {"train multitask_s1 seed 1", "transcribe with multitask_s1 seed 1", "train multitask seed 1"} <= labels
    # The demo's stage 1 starts from the ASR row (warm_start_asr); nothing here reads its transcripts.
    assert "train asr seed 1" in labels
    assert not {label for label in labels if "with asr" in label or "text_man" in label}
    args = _args(tmp_path, "--systems", "multitask")
    args.profile = "paper"
    assert not {s.label for s in pipeline.plan(args) if "asr seed" in s.label}
    labels = {s.label for s in pipeline.plan(_args(tmp_path, "--systems", "text_pipeline"))}
    assert {"train asr seed 1", "transcribe with asr", "train text_pipeline seed 1"} <= labels
    with pytest.raises(SystemExit) as stop:
        command.main(["--out", str(tmp_path), "--systems", "text_pipeline,nope"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: --systems names no registry row nope; the rows are asr,")


def test_multitask_stage_one_starts_from_the_asr_row_where_the_profile_says(tmp_path):
    for profile, warm in (("demo", True), ("paper", False)):
        args = _args(tmp_path, "--seeds", "1 2")
        args.profile = profile
        steps = {s.label: s for s in pipeline.plan(args)}
        for seed in ("1", "2"):
            stage1 = steps[f"train multitask_s1 seed {seed}"]
            # Every seed's stage 1 starts from the one ASR run the table trains (the first seed's).
            init = f"--init_from={tmp_path.resolve() / 'results' / 'asr' / '1'}"
            assert (init in stage1.cmd) is warm and ("train asr seed 1" in stage1.deps) is warm


def test_plan_runs_every_row_per_seed_and_the_asr_once(tmp_path):
    steps = pipeline.plan(_args(tmp_path, "--seeds", "1 2"))
    labels = [s.label for s in steps]
    assert labels.count("train asr seed 1") == 1 and "train asr seed 2" not in labels
    assert "train multitask seed 2" in labels and "transcribe with multitask_s1 seed 2" in labels
    multitask = next(s for s in steps if s.label == "train multitask seed 2")
    assert f"--data_folder={tmp_path.resolve() / 'data_multitask_s1_2'}" in multitask.cmd


def test_plan_keeps_only_the_chosen_stages(tmp_path):
    steps = pipeline.plan(_args(tmp_path, "--stage", "5", "--stop_stage", "5"))
    labels = {s.label for s in steps}
    assert "prepare corpus" not in labels and "train asr seed 1" not in labels and "report" not in labels
    assert "train text_man seed 1" in labels


def _touch(path, seconds=0.0):
    """A step that sleeps, then writes ``path`` with its start and end times."""
    code = (f"import time,sys; s=time.time(); time.sleep({seconds}); "
            f"open({str(path)!r},'w').write(f'{{s}} {{time.time()}}')")
    return [sys.executable, "-c", code]


def _span(path):
    start, end = map(float, path.read_text().split())
    return start, end


def test_runner_runs_independent_steps_at_once_and_dependent_ones_after(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    steps = [Step("a", _touch(a, 1.0), a), Step("b", _touch(b, 1.0), b),
             Step("c", _touch(c), c, deps=["a", "b"])]
    runner = Runner(tmp_path, jobs=2, poll=0.05)
    runner.execute(steps)
    (a0, a1), (b0, b1), (c0, _) = _span(a), _span(b), _span(c)
    assert a0 < b1 and b0 < a1  # a and b overlapped
    assert c0 >= max(a1, b1)
    assert set(runner.times) == {"a", "b", "c"}
    assert (tmp_path / "logs" / "a.log").is_file()


def test_runner_with_one_job_runs_one_step_at_a_time(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Runner(tmp_path, jobs=1, poll=0.05).execute([Step("a", _touch(a, 0.5), a), Step("b", _touch(b, 0.5), b)])
    (a0, a1), (b0, b1) = _span(a), _span(b)
    assert a1 <= b0 or b1 <= a0


def test_runner_skips_finished_steps(tmp_path):
    done = tmp_path / "done"
    done.write_text("earlier")
    after = tmp_path / "after"
    runner = Runner(tmp_path, jobs=2, poll=0.05)
    runner.execute([Step("old", [sys.executable, "-c", "raise SystemExit(3)"], done),
                    Step("new", _touch(after), after, deps=["old"])])
    assert "old" not in runner.times and after.is_file()


def test_runner_records_what_became_of_each_step(tmp_path):
    done, after = tmp_path / "done", tmp_path / "after"
    done.write_text("earlier")
    Runner(tmp_path, jobs=1, poll=0.05).execute([Step("old", _touch(done), done),
                                                 Step("new", _touch(after, 0.3), after, deps=["old"])])
    with open(tmp_path / "logs" / "steps.csv", newline="") as f:
        rows = {r["step"]: r for r in csv.DictReader(f)}
    assert rows["old"]["status"] == "skipped" and rows["old"]["seconds"] == ""
    assert rows["new"]["status"] == "ran" and float(rows["new"]["seconds"]) >= 0.3
    assert float(rows["new"]["finished"]) - float(rows["new"]["started"]) == pytest.approx(
        float(rows["new"]["seconds"]), abs=0.11)
    Runner(tmp_path, jobs=1)  # a new invocation starts a new record
    assert (tmp_path / "logs" / "steps.csv").read_text().strip() == ",".join(STEP_FIELDS)


def test_the_report_step_reads_the_step_record(tmp_path):
    report = pipeline.plan(_args(tmp_path))[-1]
    assert report.label == "report"
    assert report.cmd[-2:] == ["--timings", tmp_path.resolve() / "logs" / "steps.csv"]


def test_runner_stops_at_the_first_failure_naming_its_log(tmp_path):
    slow, never = tmp_path / "slow", tmp_path / "never"
    steps = [Step("bad step", [sys.executable, "-c", "import sys; print('boom'); sys.exit(2)"]),
             Step("slow", _touch(slow, 30)),
             Step("after", _touch(never), deps=["bad step"])]
    start = time.time()
    with pytest.raises(StepFailed, match=r"bad step failed \(exit 2\); see .*bad_step\.log"):
        Runner(tmp_path, jobs=2, poll=0.05).execute(steps)
    assert time.time() - start < 20  # the slow step was stopped, not waited for
    assert not never.exists() and not slow.exists()
    assert "boom" in (tmp_path / "logs" / "bad_step.log").read_text()


def test_runner_gives_each_job_its_share_of_the_cores(tmp_path):
    out = tmp_path / "threads"
    code = f"import os; open({str(out)!r},'w').write(os.environ['OMP_NUM_THREADS'])"
    Runner(tmp_path, jobs=2, threads=3, poll=0.05).execute([Step("t", [sys.executable, "-c", code])])
    assert out.read_text() == "3"


def test_runner_continues_the_chain_that_just_finished(tmp_path):
    """Depth first among equals: stage 2 runs right after stage 1, before an unrelated row listed
    earlier, so a long two-stage system does not end up last."""
    trace = tmp_path / "trace"

    def append(name):
        return [sys.executable, "-c", f"open({str(trace)!r}, 'a').write({name!r} + ' ')"]

    steps = [Step("stage 1", append("stage1")), Step("other", append("other")),
             Step("stage 2", append("stage2"), deps=["stage 1"])]
    Runner(tmp_path, jobs=1, poll=0.05).execute(steps)
    assert trace.read_text().split() == ["stage1", "stage2", "other"]


def test_runner_does_not_follow_set_up_steps_depth_first(tmp_path):
    """A step after a set-up step is not "continuing a chain": the longer chain still goes first."""
    trace = tmp_path / "trace"

    def append(name):
        return [sys.executable, "-c", f"open({str(trace)!r}, 'a').write({name!r} + ' ')"]

    steps = [Step("corpus", append("corpus"), continues=False),
             Step("asr", append("asr"), deps=["corpus"]),
             Step("transcribe", append("transcribe"), deps=["asr"]),
             Step("stand-in", append("standin"), deps=["corpus"], continues=False),
             Step("row", append("row"), deps=["corpus", "stand-in"])]
    steps[3], steps[1] = steps[1], steps[3]  # the stand-in is listed (and so runs) before the ASR
    Runner(tmp_path, jobs=1, poll=0.05).execute(steps)
    assert trace.read_text().split() == ["corpus", "standin", "asr", "transcribe", "row"]
