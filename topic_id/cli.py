"""The ``topic-id`` command (also ``python -m topic_id.cli``).

Subcommands:

- ``report RESULTS_DIR [--corpus demo|lp|csv|slurp] [--out DIR] [--registry CSV] [--results-md PATH]
  [--data DIR]``:
  ``RESULTS.md`` (header, Table I/II, claims, run time), Fig. 3 and the confusion matrices of a
  results tree (:mod:`topic_id.reporting.report`); prints Table I in Markdown.
- ``predict --model DIR [FILE ...] [--text TEXT] [--json]``: topic and posteriors of recordings
  (any rate, any channels) or transcripts with an exported or trained system
  (:mod:`topic_id.serving.inference`). With ``--out PREDS.csv``, folders and manifests too, in batch,
  resumable (:mod:`topic_id.serving.batch_predict`).
- ``export RUN_DIR OUT_DIR [--asr ASR_RUN]``: a trained run as a self-contained model folder that
  loads offline with ``TopicIdentifier.from_hparams`` or SpeechBrain's ``foreign_class``
  (:mod:`topic_id.serving.export`).
- ``download SOURCE [--revision R] [--cache-dir DIR]``: fetch a hub model (FinBERT, XLS-R) into the
  Hugging Face cache, where runs then find it offline (:func:`topic_id.models.hub.download_model`);
  prints its folder. A model that cannot be fetched exits 2.

Each subcommand is one ``_add_<name>(commands)`` function that registers its parser and sets
``handler``; ``predict`` and ``export`` (inference) and ``bench`` (the benchmarks) join the same
way in :func:`build_parser`. A command's result goes to stdout, progress to the log on stderr. A
failure prints one line naming the problem and exits 1, without a traceback (``--verbose`` logs
it); bad arguments exit 2 (argparse), as do configuration errors (:class:`topic_id.errors.ConfigError`).
"""

import argparse
import logging
import sys
from pathlib import Path

from topic_id.errors import ConfigError

logger = logging.getLogger("topic_id.cli")


class CommandError(Exception):
    """A failure the user can fix; its message is printed alone."""


def _report(args):
    from topic_id.reporting.report import write_report

    results = Path(args.results_dir)
    if not results.is_dir():
        raise CommandError(f"{results} is not a folder; give the results tree <out>/results")
    if args.timings and not Path(args.timings).is_file():
        raise CommandError(f"{args.timings} does not exist; give run_table.sh's <out>/logs/steps.csv")
    table, _ = write_report(results, args.out, corpus=args.corpus, registry=args.registry, timings=args.timings,
                            results_md=args.results_md, data=args.data)
    print(table)
    return 0


def _add_report(commands):
    parser = commands.add_parser(
        "report",
        help="Table I/II, Fig. 3 and confusion matrices of a results tree",
        description="Read RESULTS_DIR/<system>/<seed>/, write RESULTS.md, report.md, table1.csv, "
        "table2.csv, claims.csv, fig3_tsne.png and confusion_<system>.png, and print Table I (Markdown).",
    )
    parser.add_argument("results_dir", metavar="RESULTS_DIR",
                        help="the results tree, e.g. demo_out/results")
    parser.add_argument("--corpus", choices=("demo", "lp", "csv", "slurp"), default="demo",
                        help="lp: add the paper's published numbers; demo: mark the scores as "
                        "not comparable with the paper's (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="report folder (default: RESULTS_DIR/report)")
    parser.add_argument("--registry", metavar="CSV", default=None,
                        help="the registry the runs were made with (default: RESULTS_DIR/systems.csv, "
                        "which run_table.sh writes; else the checkout's recipes/systems.csv)")
    parser.add_argument("--timings", metavar="CSV", default=None,
                        help="run_table.sh's <out>/logs/steps.csv: each step's wall time in report.md "
                        "and RESULTS.md")
    parser.add_argument("--data", metavar="DIR", default=None,
                        help="the prepared corpus the rows read (run_table.sh's <out>/data): names the "
                        "external ASR (--external-asr) that wrote its asr_words, with its WER")
    parser.add_argument("--results-md", metavar="PATH", default=None,
                        help="write RESULTS.md to PATH instead of the report folder, e.g. "
                        "results/demo/RESULTS.md of the checkout")
    parser.set_defaults(handler=_report)


def _predict(args):
    from topic_id.serving.inference import format_rows, predict

    if args.chunk_seconds is not None and args.chunk_seconds < 0:
        raise ConfigError(f"--chunk-seconds must be 0 (never chunk) or more, not {args.chunk_seconds}")
    if args.out:
        from topic_id.serving.batch_predict import predict_to_csv

        if args.text or args.json:
            raise ConfigError("--out writes the predictions CSV of audio files: leave out --text and --json")
        if not args.files:
            raise ConfigError("give audio files, folders or manifest CSVs to classify into --out")
        predict_to_csv(args.model, args.files, args.out, device=args.device, batch_size=args.batch_size,
                       chunk_seconds=args.chunk_seconds, data_root=args.data_root)
        print(args.out)
        return 0
    for name in args.files:
        if Path(name).is_dir() or name.lower().endswith(".csv"):
            raise ConfigError(f"{name} is a {'folder' if Path(name).is_dir() else 'manifest'}: give "
                              "--out PREDICTIONS.csv to classify its audio files in batch")
    rows = predict(args.model, args.files, texts=args.text, device=args.device,
                   batch_size=args.batch_size, chunk_seconds=args.chunk_seconds)
    print(format_rows(rows, as_json=args.json))
    return 0


def _add_predict(commands):
    parser = commands.add_parser(
        "predict",
        help="classify recordings (or transcripts) with an exported or trained system",
        description="Print the topic and the posteriors of every FILE: a tab-separated table with "
        "one column per topic (with the text read, for systems with a text branch), or JSON. "
        "Audio-only systems take audio; text systems text (--text) or audio, which their bundled "
        "ASR transcribes; hybrids audio, and their ASR's text unless --text is given. With --out, "
        "the audio files of FILEs, folders and manifests go to a predictions CSV, in batch and "
        "resumably.",
    )
    parser.add_argument("--model", required=True, metavar="DIR",
                        help="a folder from `topic-id export`, or a run folder (exported on the fly)")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="audio files (wav, flac, ogg, ...); with --out also folders (searched "
                        "recursively) and manifest CSVs (their wav column)")
    parser.add_argument("--text", action="append", metavar="TEXT",
                        help="transcript for systems that read text: once for every file, or once "
                        "per file in order; without FILEs, classify the texts alone")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1 (default: a GPU when there is one)")
    parser.add_argument("--batch-size", type=int, default=8, help="files per forward pass")
    parser.add_argument("--out", metavar="CSV", default=None,
                        help="batch mode: append one row per file to this predictions CSV as it goes "
                        "(progress bar on stderr; a rerun skips the files already in it) and write a "
                        "summary with the real-time factor beside it (<name>.summary.json)")
    parser.add_argument("--data-root", metavar="DIR", default=None,
                        help="what $data_root stands for in manifest CSVs (default: the CSV's folder)")
    parser.add_argument("--chunk-seconds", type=float, default=None, metavar="S",
                        help="encode recordings longer than S seconds in chunks, with bounded memory "
                        "(0: never; default: the model's chunk_seconds, 30 s)")
    parser.set_defaults(handler=_predict)


def _export(args):
    from topic_id.serving.export import export_run

    print(export_run(args.run_dir, args.out_dir, asr=args.asr, overwrite=args.overwrite,
                     hparams_dir=args.hparams_dir))
    return 0


def _add_export(commands):
    parser = commands.add_parser(
        "export",
        help="write a trained run as a self-contained model folder",
        description="Write OUT_DIR: inference hyperparams.yaml (the training YAML included with "
        "the run's overrides), the best checkpoint's weights, topics.txt, the text encoder (a "
        "stand-in is copied, FinBERT referenced), the ASR and tokenizer a text system needs for "
        "audio, custom_interface.py and export.json.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run of recipes/train.py")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the model folder to create")
    parser.add_argument("--asr", metavar="ASR_RUN", default=None,
                        help="the ASR run for a text or hybrid system (default: the one that "
                        "transcribed its manifests, if any)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export")
    parser.add_argument("--hparams-dir", metavar="DIR", default=None,
                        help="the hparams/ folder of the checkout that trained the run, when the "
                        "system YAML path recorded in its run.json no longer exists")
    parser.set_defaults(handler=_export)


def _download(args):
    from topic_id.models.hub import ModelNotFound, download_model

    try:
        path, name = download_model(args.source, revision=args.revision, cache_dir=args.cache_dir)
    except ModelNotFound as err:
        # The user can fix it (the id, the revision, the network): exit 2 like a configuration error.
        raise ConfigError(str(err)) from None
    logger.info("%s is in %s", name, path)
    print(path)
    return 0


def _add_download(commands):
    parser = commands.add_parser(
        "download",
        help="fetch a hub model into the Hugging Face cache (runs are offline by default)",
        description="Download SOURCE (a Hugging Face hub id, e.g. TurkuNLP/bert-base-finnish-uncased-v1 "
        "or facebook/wav2vec2-xls-r-300m) into the Hugging Face cache and print its folder. Runs then "
        "find it by its hub id without network access; to use it on another machine, copy the cache "
        "there. A local folder is only checked.",
    )
    parser.add_argument("source", metavar="SOURCE", help="hub id (org/name) or a local model folder")
    parser.add_argument("--revision", default=None,
                        help="branch, tag or commit to fetch (default: main); runs pin it with "
                        "--text_encoder_revision / --wav2vec2_revision")
    parser.add_argument("--cache-dir", metavar="DIR", default=None,
                        help="Hugging Face hub cache (default: HF_HUB_CACHE, ~/.cache/huggingface/hub)")
    parser.set_defaults(handler=_download)


def build_parser():
    """The ``topic-id`` argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="topic-id", description="Spoken topic identification: reports of trained systems."
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and the traceback of a failure")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_report(commands)
    _add_predict(commands)
    _add_export(commands)
    _add_download(commands)
    return parser


def main(argv=None):
    """Run ``topic-id``.

    Arguments
    ---------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 success, 1 failure, 130 interrupted (argparse exits 2 itself).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        # Our own debug messages only: matplotlib and friends are very chatty at DEBUG.
        logging.getLogger("topic_id").setLevel(logging.DEBUG)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"topic-id {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every failure becomes one line, never a traceback
        logger.debug("traceback of the failure", exc_info=True)
        lines = str(err).strip().splitlines()
        message = lines[0] if lines else ""
        if not isinstance(err, (CommandError, OSError, ValueError)):
            # An unexpected failure: its type says more than its message alone.
            message = f"{type(err).__name__}: {message} (--verbose shows where)"
        print(f"topic-id {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(err, ConfigError) else 1


if __name__ == "__main__":
    sys.exit(main())
