"""Run the whole table: prepare -> stand-ins -> ASR -> transcribe -> every registry row x seeds -> report.

``recipes/run_table.sh`` is the entry point; this module does the work so that stage logic, skipping
and timing are tested Python rather than shell. Stages:

1. prepare the corpus (``python -m data_prep demo|lp|csv``);
2. build the local stand-in encoders the profile names (demo: no model hub is reachable);
3. train the support ASR (registry row ``asr``, first seed);
4. transcribe every manifest row with it (``asr_words``);
5. train every other registry row x seed, in registry order; a row whose ``needs`` is
   ``own_asr:<row>`` runs on a corpus copy transcribed by that row's run of the same seed;
6. write the report (``topic-id report``).

A finished run (its ``metrics.json`` exists) is skipped; an interrupted one resumes from its
checkpoints, because train.py does; the first failing step stops everything and names its log.
"""

import argparse
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

from topic_id.registry import ROOT, load_registry

logger = logging.getLogger(__name__)
STAGES = ("prepare", "standins", "asr", "transcribe", "systems", "report")


class StepFailed(Exception):
    """A step of the table failed; the message names its log."""


class Runner:
    """Runs logged steps, skipping finished ones and timing the rest."""

    def __init__(self, out, device="cpu"):
        self.out = Path(out)
        self.logs = self.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.device = device

    def step(self, label, cmd, done=None):
        """Run ``cmd`` unless ``done`` exists; log its output to ``logs/<label>.log``."""
        if done is not None and Path(done).exists():
            logger.info("%-40s finished earlier, skipped", label)
            return
        log = self.logs / f"{label.replace('/', '_').replace(' ', '_')}.log"
        logger.info("%-40s running (log: %s)", label, log)
        start = time.time()
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\n$ {' '.join(map(str, cmd))}\n")
            f.flush()
            code = subprocess.call([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        if code != 0:
            raise StepFailed(f"{label} failed (exit {code}); see {log}")
        logger.info("%-40s done in %.1f s", label, time.time() - start)

    def train(self, row, data, run_dir, seed, profile, extra=()):
        """Train one registry row."""
        cmd = [sys.executable, "recipes/train.py", row["hparams"], f"--data_folder={data}",
               f"--output_folder={run_dir}", f"--seed={seed}", f"--device={self.device}",
               *row["overrides"], *extra]
        if profile:
            cmd.append(f"--profile={profile}")
        self.step(f"train {row['name']} seed {seed}", cmd, done=Path(run_dir) / "metrics.json")

    def transcribe(self, label, asr_run, data):
        """Fill ``asr_words`` of the manifests in ``data`` with the ASR of ``asr_run``."""
        self.step(label, [sys.executable, "recipes/transcribe.py", "--asr", asr_run,
                          "--manifests", data, "--device", self.device])


def transcribed_copy(data, copy):
    """A copy of a prepared corpus's manifests (audio and caches shared by symlink)."""
    copy = Path(copy)
    if not copy.exists():
        copy.mkdir(parents=True)
        for item in Path(data).iterdir():
            target = copy / item.name
            if item.is_file():
                shutil.copy2(item, target)
            else:
                target.symlink_to(item.resolve())
    return copy


def prepare_command(args, data):
    """The data_prep command of the chosen corpus."""
    base = [sys.executable, "-m", "data_prep"]
    if args.corpus == "demo":
        return base + ["demo", data, "--size", args.size, "--seed", str(args.corpus_seed)]
    if not args.corpus_dir:
        raise StepFailed(f"--corpus {args.corpus} needs --corpus-dir")
    return base + [args.corpus, args.corpus_dir, data]


def run(args):
    """Run stages ``args.stage`` .. ``args.stop_stage`` (1-based, see :data:`STAGES`)."""
    out = Path(args.out).resolve()
    data = out / "data"
    runner = Runner(out, args.device)
    rows = load_registry()
    seeds = args.seeds.split()
    profile = args.profile
    wanted = range(args.stage, args.stop_stage + 1)
    first = seeds[0]
    if 1 in wanted:
        runner.step("prepare corpus", prepare_command(args, data), done=data / "summary.json")
    if 2 in wanted and profile == "demo":
        runner.step("stand-in text encoder", [sys.executable, "-m", "topic_id.text", "build-standin",
                                              "--manifests", data, "--out", data / "standin_bert"],
                    done=data / "standin_bert" / "STANDIN.json")
        runner.step("stand-in wav2vec2", [sys.executable, "-m", "topic_id.wav2vec2", "build-standin",
                                          "--out", data / "standin_wav2vec2"],
                    done=data / "standin_wav2vec2" / "STANDIN.json")
    asr = next(r for r in rows if r["name"] == "asr")
    asr_run = out / "results" / "asr" / first
    if 3 in wanted:
        runner.train(asr, data, asr_run, first, profile)
    if 4 in wanted:
        runner.transcribe("transcribe with asr", asr_run, data)
    if 5 in wanted:
        for seed in seeds:
            for row in rows:
                if row["name"] == "asr":
                    continue
                corpus = data
                if row["needs"].startswith("own_asr:"):
                    source = row["needs"].split(":", 1)[1]
                    own = out / "results" / source / seed
                    corpus = transcribed_copy(data, out / f"data_{source}_{seed}")
                    runner.transcribe(f"transcribe with {source} seed {seed}", own, corpus)
                extra = []
                if row["init_from"]:
                    extra.append(f"--init_from={out / 'results' / row['init_from'] / seed}")
                runner.train(row, corpus, out / "results" / row["name"] / seed, seed, profile, extra)
    if 6 in wanted:
        runner.step("report", [sys.executable, "-m", "topic_id.cli", "report", out / "results",
                               "--corpus", args.corpus])


def build_parser():
    """Arguments of run_table.sh."""
    parser = argparse.ArgumentParser(prog="recipes/run_table.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("demo", "lp", "csv"), default="demo")
    parser.add_argument("--out", required=True, help="output folder (data/, results/, logs/, report)")
    parser.add_argument("--corpus-dir", help="the LP release or the metadata CSV (lp, csv)")
    parser.add_argument("--seeds", default="1", help='space-separated seeds, e.g. "1 2 3"')
    parser.add_argument("--stage", type=int, default=1, help=f"first stage, 1-{len(STAGES)}: {STAGES}")
    parser.add_argument("--stop_stage", type=int, default=len(STAGES))
    parser.add_argument("--profile", default=None,
                        help="hparams profile (default: demo for --corpus demo, paper for --corpus lp)")
    parser.add_argument("--size", default="default", help="demo corpus size")
    parser.add_argument("--corpus-seed", type=int, default=0, help="demo corpus seed")
    parser.add_argument("--device", default="cpu")
    return parser


def main(argv=None):
    """Entry point; exit status 1 with the failing step's log on failure."""
    args = build_parser().parse_args(argv)
    if args.profile is None:
        args.profile = {"demo": "demo", "lp": "paper"}.get(args.corpus)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.time()
    try:
        run(args)
    except StepFailed as err:
        logger.error("%s", err)
        return 1
    logger.info("all stages done in %.1f min", (time.time() - start) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
