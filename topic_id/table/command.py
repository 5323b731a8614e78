"""The table's command line: ``recipes/run_table.sh`` (``python -m topic_id.table``).

It settles the machine-dependent defaults (device, GPUs, parallel steps), checks the pretrained
models before anything starts, plans the steps (:func:`topic_id.table.planner.plan`) and hands
them to a launcher (:mod:`topic_id.table.launchers`).
"""

import argparse
import functools
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

from topic_id.config.registry import RESULTS_COPY, load_registry
from topic_id.errors import ConfigError
from topic_id.table import planner
from topic_id.table.launchers import (Runner, Slurm, StepFailed, load_slurm_config, print_environment_header,
                                      resources)
from topic_id.table.planner import REGISTRY, ROOT, STAGES, Step, plan, select_rows

logger = logging.getLogger(__name__)


def check_models(steps, args, data):
    """Load every pretrained model the planned rows need (configs and tokenizers, no weights).

    A missing or unloadable model ends the table here, in seconds, with one line naming it and how
    to fetch it (:func:`topic_id.config.preflight.check_models`); the stand-ins a step builds are skipped.
    """
    from topic_id.config.preflight import check_models as check

    logging.getLogger("speechbrain").setLevel(logging.WARNING)  # its import-time notes

    names = {s.row for s in steps if s.row}
    rows = [r for r in load_registry(REGISTRY) if r["name"] in names]
    built = [Path(s.done).parent for s in steps if s.kind == "standins"]
    if rows:
        check(rows, data, args.profile, args.train_args, ROOT, built)
    if getattr(args, "external_asr", None) and any(s.kind == "transcribe" for s in steps):
        from topic_id.models.hf_asr import check_hf_asr
        from topic_id.models.hub import ModelNotFound

        _, options, download = planner.external_asr_options(args)
        try:
            check_hf_asr(args.external_asr, options["revision"], download)
        except ModelNotFound as err:
            raise ConfigError(f"--external-asr: {err}") from None


@functools.lru_cache(maxsize=1)
def visible_gpus():
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` ids (empty without CUDA)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def settle(args):
    """Fill the defaults that depend on the machine and check the device settings.

    ``--device`` defaults to CUDA where a GPU is visible (and under ``--launcher slurm``, whose
    jobs run on the cluster's nodes), else the CPU; ``--gpus`` to every visible GPU; ``--jobs``
    to one step per GPU, or two one-thread steps on a CPU with at least two cores.
    """
    if args.profile is None:
        args.profile = {"demo": "demo", "lp": "paper", "slurp": "slurp"}.get(args.corpus)
    if args.device is None:
        args.device = "cuda" if args.launcher == "slurm" or visible_gpus() else "cpu"
    if args.gpus is not None:
        args.gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    else:
        args.gpus = visible_gpus() if args.device.startswith("cuda") and args.launcher == "local" else []
    if args.device.startswith("cuda") and args.launcher == "local" and not args.gpus:
        raise ConfigError("--device cuda but no GPU is visible here: pass --gpus 0,1,... (the GPUs to "
                          "use), or --device cpu")
    if args.jobs is None:
        args.jobs = len(args.gpus) if args.device.startswith("cuda") else 2 if (os.cpu_count() or 1) >= 2 else 1
    args.train_args = shlex.split(args.train_args or "")
    args.row_gpus = parse_row_gpus(args.row_gpus)
    return args


def parse_row_gpus(text):
    """``--row-gpus`` as ``{row: n}``.

    >>> parse_row_gpus("wav2vec2=4, multitask_s1=2")
    {'wav2vec2': 4, 'multitask_s1': 2}
    """
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, count = item.partition("=")
        if not count.strip().isdigit() or int(count) < 1:
            raise ConfigError(f"--row-gpus takes ROW=N[,ROW=N...] with N >= 1, not {item.strip()!r}")
        out[name.strip()] = int(count)
    return out


def run(args):
    """Plan stages ``args.stage`` .. ``args.stop_stage`` and hand them to the launcher.

    Returns the local runner (its times) or the SLURM launcher (its jobs).
    """
    out = Path(args.out).resolve()
    local = args.launcher == "local"
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.device == "cpu" and local else None
    if "OMP_NUM_THREADS" in os.environ:  # the user's setting wins
        threads = None
    config = None if local else load_slurm_config(args.slurm_config)
    if config is not None and args.prep_workers is None:
        # A job may see every core of its node but owns only the CPUs it asked for.
        args.prep_workers = resources(config, Step("prepare corpus", [], kind="prepare")).get("cpus")
    steps = plan(args)
    unknown = sorted(set(args.row_gpus) - {s.row for s in steps})
    if unknown:
        raise ConfigError(f"--row-gpus names {unknown[0]}, which is not a row of this table")
    if not args.dry_run:
        check_models(steps, args, out / "data")
    if local:
        launcher = Runner(out, args.jobs, threads, gpus=args.gpus if args.device.startswith("cuda") else None,
                          dry_run=args.dry_run)
        if not args.dry_run:
            logger.info("%d parallel step(s)%s", args.jobs, f", {threads} thread(s) each" if threads else "")
    else:
        launcher = Slurm(out, config, threads_from_cpus=args.device == "cpu",
                         dry_run=args.dry_run)
    if args.dry_run:
        print_environment_header(args.launcher, args.jobs, args.gpus, launcher.extra_env if local else {})
    else:
        # The results tree carries the registry it was made with, for `topic-id report` anywhere.
        (out / "results").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REGISTRY, out / "results" / RESULTS_COPY)
    jobs = launcher.execute(steps)
    if not local and args.wait:
        launcher.wait(jobs)
    return launcher


def build_parser():
    """Arguments of run_table.sh."""
    parser = argparse.ArgumentParser(prog="recipes/run_table.sh", description=planner.__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", choices=("demo", "lp", "csv", "slurp"), default="demo")
    parser.add_argument("--out", required=True, help="output folder (data/, results/, logs/, report)")
    parser.add_argument("--corpus-dir", help="the LP release, the metadata CSV or the SLURP tree (lp, csv, slurp)")
    parser.add_argument("--seeds", default="1", help='space-separated seeds, e.g. "1 2 3"')
    parser.add_argument("--stage", type=int, default=1, help=f"first stage, 1-{len(STAGES)}: {STAGES}")
    parser.add_argument("--stop_stage", type=int, default=len(STAGES))
    parser.add_argument("--profile", default=None,
                        help="hparams profile (default: demo for --corpus demo, paper for --corpus lp, slurp "
                        "(English encoders) for --corpus slurp)")
    parser.add_argument("--size", default="default", help="demo corpus size")
    parser.add_argument("--corpus-seed", type=int, default=0, help="demo corpus seed")
    parser.add_argument("--long-recordings", type=int, default=None, metavar="N",
                        help="demo corpus: N multi-sentence recordings per split (default: the size's, "
                        "8 for the default size; 0: every recording one sentence)")
    parser.add_argument("--prep-workers", type=int, default=None, metavar="N",
                        help="processes converting audio in corpus preparation (default: data_prep's)")
    parser.add_argument("--systems", default=None, metavar="ROW[,ROW...]",
                        help="only these registry rows (recipes/systems.csv names) and the rows they "
                        "need (default: all)")
    parser.add_argument("--external-asr", default=None, metavar="ID_OR_DIR",
                        help="a Hugging Face Whisper or CTC model (hub id in the local cache, or a folder) "
                        "writes the text rows' asr_words instead of the ASR row (recipes/transcribe.py --asr-model)")
    parser.add_argument("--external-asr-args", default=None, metavar='"ARGS"',
                        help='its options, e.g. "--language fi --dtype bfloat16 --batch-size 16" (--language, '
                        "--task, --revision, --dtype, --max-segment-seconds, --batch-size, --hub-download)")
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default: cuda where a GPU is visible or under --launcher slurm)")
    parser.add_argument("--gpus", default=None, metavar="ID[,ID...]",
                        help="GPUs of the local launcher, one per parallel step (default: all visible)")
    parser.add_argument("--row-gpus", default=None, metavar="ROW=N[,ROW=N...]",
                        help="rows that train on N GPUs at once (torchrun; default 1 each)")
    parser.add_argument("--train-args", default=None, metavar='"ARGS"',
                        help='trainer options for every training step, e.g. "--precision=bf16 --num_workers=8"')
    parser.add_argument("--jobs", type=int, default=None,
                        help="local steps run at once (default: one per GPU; on a CPU 2 with 2+ cores, else 1)")
    parser.add_argument("--launcher", choices=("local", "slurm"), default="local",
                        help="run the steps here, or submit each as a SLURM job and return")
    parser.add_argument("--slurm-config", default=None, metavar="FILE",
                        help="SLURM resources per step kind and row (default: recipes/conf/slurm.yaml)")
    parser.add_argument("--wait", action="store_true",
                        help="--launcher slurm: return when every job has ended (exit 1 if one failed)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every step's command, environment and dependencies; run nothing")
    return parser


def main(argv=None):
    """Entry point; exit status 1 with the failing step's log on failure, 2 for a bad setting."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.dry_run else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    start = time.time()
    try:
        if not REGISTRY.is_file():
            raise ConfigError(f"no {REGISTRY}: run the table from the root of a recipe checkout "
                              "(bash recipes/run_table.sh does)")
        if args.systems:
            try:
                select_rows(load_registry(REGISTRY), args.systems)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        settle(args)
        run(args)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    except StepFailed as err:
        logger.error("%s", err)
        return 1
    if args.launcher == "local" and not args.dry_run:
        logger.info("all stages done in %.1f min", (time.time() - start) / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
