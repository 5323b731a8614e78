"""Command line of the corpus preparations: a thin skin over the ``prepare_*`` functions.

Examples::

    python -m data_prep demo demo_data --size tiny
    python -m data_prep lp /corpora/lp data/lp --dev-hours 3 --test-hours 3
    python -m data_prep lp /corpora/lp data/lp --split-lists lists/
    python -m data_prep csv my_corpus/metadata.csv data/mine --audio-root my_corpus/audio
    python -m data_prep folder my_corpus/ data/mine
    python -m data_prep slurp /corpora/slurp data/slurp --mics headset
    python -m data_prep speak texts.csv data/spoken
    python -m data_prep speak texts_en.csv data/spoken_en --language en
    python -m data_prep import-transcripts data/lp whisper/text --column whisper_words

A problem with the input ends the command with one line ``error: <what and how to fix it>`` and
exit status 2; nothing already prepared is touched. So does a preparation whose kept rows cannot
train a classifier (see :func:`data_prep.manifest.trainability_problems`); its folder is written
for inspection and rebuilt by the next run.
"""

import argparse
import logging
import sys

from corpus_tools.audio import AudioWriteError
from data_prep.manifest import LONG_CHOICES, MAX_DURATION, PrepError
from data_prep.slurp import LABELS, MICS
from data_prep.text_norm import LANGUAGES, NUMBERS


def _lp(args):
    from data_prep.lahjoita_puhetta import prepare_lahjoita_puhetta

    if args.split_lists and (args.dev_hours is not None or args.test_hours is not None):
        raise PrepError("give either --split-lists or --dev-hours/--test-hours, not both")
    prepare_lahjoita_puhetta(args.corpus_dir, args.out_dir, dev_hours=args.dev_hours,
                             test_hours=args.test_hours, split_lists=args.split_lists,
                             max_duration=args.max_duration, seed=args.seed, force=args.force,
                             num_workers=args.num_workers, long=args.long)


def _csv(args):
    from data_prep.csv_corpus import prepare_csv_corpus

    prepare_csv_corpus(args.metadata_csv, args.out_dir, audio_root=args.audio_root,
                       dev_fraction=args.dev_fraction, test_fraction=args.test_fraction,
                       topics=args.topics, max_duration=args.max_duration, seed=args.seed,
                       force=args.force, long=args.long, num_workers=args.num_workers,
                       language=args.language, numbers=args.numbers)


def _folder(args):
    from data_prep.csv_corpus import prepare_folder_corpus

    prepare_folder_corpus(args.root, args.out_dir, dev_fraction=args.dev_fraction,
                          test_fraction=args.test_fraction, topics=args.topics,
                          max_duration=args.max_duration, seed=args.seed, force=args.force,
                          long=args.long, num_workers=args.num_workers, language=args.language,
                          numbers=args.numbers)


def _slurp(args):
    from data_prep.slurp import prepare_slurp

    prepare_slurp(args.slurp_dir, args.out_dir, label=args.label, mics=args.mics, synthetic=args.synthetic,
                  max_duration=args.max_duration, numbers=args.numbers, force=args.force)


def _demo(args):
    from data_prep.demo_corpus import prepare_demo

    prepare_demo(args.out_dir, seed=args.seed, size=args.size, force=args.force,
                 long_recordings=args.long_recordings)


def _speak(args):
    from data_prep.speak import speak_csv

    speak_csv(args.text_csv, args.out_dir, seed=args.seed, force=args.force, language=args.language,
              numbers=args.numbers)


def _import_transcripts(args):
    import json

    from data_prep.transcripts import import_transcripts

    summary = import_transcripts(args.prepared_dir, args.file, args.column, fmt=args.format)
    sys.stdout.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")


def build_parser():
    """The argument parser, one sub-command per corpus kind."""
    paragraphs = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=paragraphs[0],
                                     epilog="examples:\n" + paragraphs[2] + "\n\n" + paragraphs[3],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, handler, text, seed=1):
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--seed", type=int, default=seed, help="random seed (default: %(default)s)")
        sub.add_argument("--force", action="store_true", help="rebuild a finished preparation")
        return sub

    def max_duration(sub):
        sub.add_argument("--max-duration", type=float, default=MAX_DURATION,
                         help="the recording length limit (s; default %(default)s, as in the paper)")
        sub.add_argument("--long", choices=LONG_CHOICES, default="drop",
                         help="recordings at or over the limit: drop them (default, as in the paper) or "
                              "cut them at pauses into 16 kHz segments under the limit, which keep the "
                              "topic, speaker and split but not the transcript")

    def workers(sub, what):
        sub.add_argument("--num-workers", type=int, default=None, metavar="N",
                         help=f"processes {what} (default: one per available CPU core, and per 256 "
                              "recordings)")

    def numbers(sub):
        sub.add_argument("--numbers", choices=NUMBERS, default=None,
                         help="numbers written as digits in the transcripts: keep them as digit words "
                              "or drop them (default: drop for Finnish, keep for English)")

    def language(sub, what):
        sub.add_argument("--language", choices=LANGUAGES, default="fi",
                         help=f"language of the {what} (default: %(default)s): how it is normalised")
        numbers(sub)

    def splitting(sub):
        sub.add_argument("--dev-fraction", type=float, default=0.1,
                         help="share drawn for dev when there is no split column")
        sub.add_argument("--test-fraction", type=float, default=0.1, help="share drawn for test")
        sub.add_argument("--topics", help="file with one topic per line: the label order")
        max_duration(sub)
        workers(sub, "cutting long recordings (--long segment; other audio is used as it is)")

    lp = command("lp", _lp, "prepare Lahjoita puhetta (puhelahjat/v1) into manifests")
    lp.add_argument("corpus_dir", help="folder holding puhelahjat/ (or puhelahjat/v1)")
    lp.add_argument("out_dir")
    lp.add_argument("--split-lists", metavar="DIR",
                    help="folder with dev.txt, test.txt [, train.txt] of recording ids")
    lp.add_argument("--dev-hours", type=float,
                    help="hours drawn for dev (default 3, as in the paper, at most a tenth of the "
                         "transcribed hours)")
    lp.add_argument("--test-hours", type=float, help="hours drawn for test (default as --dev-hours)")
    max_duration(lp)
    workers(lp, "converting audio")

    csv_cmd = command("csv", _csv,
                      "prepare a corpus described by a CSV (path, topic[, transcript, speaker, split, id])")
    csv_cmd.add_argument("metadata_csv")
    csv_cmd.add_argument("out_dir")
    csv_cmd.add_argument("--audio-root", help="folder of relative paths (default: the CSV's folder)")
    splitting(csv_cmd)
    language(csv_cmd, "transcripts")

    folder = command("folder", _folder,
                     "prepare a corpus laid out as ROOT/<topic>/[<speaker>/]*.{wav,flac}")
    folder.add_argument("root")
    folder.add_argument("out_dir")
    splitting(folder)
    language(folder, "transcripts")

    slurp = command("slurp", _slurp, "prepare SLURP (English; dataset/slurp/*.jsonl and audio/slurp_real/)")
    slurp.add_argument("slurp_dir", help="the SLURP repository with its audio unpacked in audio/")
    slurp.add_argument("out_dir")
    slurp.add_argument("--label", choices=LABELS, default="scenario",
                       help="the field read as the topic (default: %(default)s, 18 classes)")
    slurp.add_argument("--mics", choices=MICS, default="all",
                       help="recordings kept: both microphones, close-talk (-headset files) or far-field")
    slurp.add_argument("--synthetic", action="store_true",
                       help="add train_synthetic.jsonl (audio/slurp_synth/) to train")
    slurp.add_argument("--max-duration", type=float, default=MAX_DURATION,
                       help="recordings this long or longer are dropped (s; default %(default)s)")
    numbers(slurp)

    demo = command("demo", _demo, "synthesise the built-in Finnish topic corpus", seed=0)
    demo.add_argument("out_dir")
    demo.add_argument("--size", choices=("tiny", "default", "large"), default="default")
    demo.add_argument("--long-recordings", type=int, default=None, metavar="N",
                      help="multi-sentence recordings (3-7 sentences, up to ~28 s) per split, made of "
                           "the split's own sentences (default: 8 for --size default, one per topic; "
                           "32 for large; 0 for tiny); 0 makes every recording one sentence")

    speak = command("speak", _speak, "speak a CSV of text and topic into a corpus", seed=0)
    speak.add_argument("text_csv")
    speak.add_argument("out_dir")
    language(speak, "text, and of the voices that speak it (espeak-ng's Finnish or English voices)")

    text = ("fill a manifest column of a prepared corpus from transcripts made elsewhere (Kaldi text, "
            "CSV, JSON lines); prints the accounting of every ID, also written to "
            "PREPARED_DIR/transcripts_<column>.json")
    imported = commands.add_parser("import-transcripts", help=text, description=text)
    imported.set_defaults(handler=_import_transcripts)
    imported.add_argument("prepared_dir")
    imported.add_argument("file", help="Kaldi text (ID word word ...), a CSV with a header naming the ID "
                                       "and text columns, or JSON lines {\"ID\": ..., \"text\": ...}")
    imported.add_argument("--column", required=True,
                          help="the column to fill, e.g. asr_words or a new name (train with "
                               "--train_text=NAME --eval_text=NAME)")
    imported.add_argument("--format", choices=("kaldi", "csv", "jsonl"), default=None,
                          help="default: from the extension (.csv, .jsonl), else from the first line")
    return parser


def main(argv=None):
    """Run one preparation; return the exit status (0, or 2 on bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (PrepError, AudioWriteError) as err:
        first, *more = [line.strip() for line in str(err).splitlines() if line.strip()] or ["?"]
        sys.stderr.write(f"error: {first} {'; '.join(more)}".rstrip() + "\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
