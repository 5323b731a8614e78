"""``python -m benchmarks [--quick] [--data DIR] [--sections ...]``: measure, print, write the table.

The built-in corpus is synthesised into a scratch folder (``default`` size; ``--quick`` uses
smaller subsets of it), with the demo's stand-in BERT and a BERT-base-sized random encoder built
locally. The table goes to stdout and to ``benchmarks/results/<machine>.md`` (``-quick.md`` with
``--quick``, whose tiny corpus makes a smoke test rather than figures to quote).
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

SECTIONS = ("text", "pipeline", "loader", "batching", "inference", "gpu")
SETTINGS = {
    "full": {"corpus": "default", "repeats": 3, "batching_repeats": 2, "bert_train": 64,
             "audio_train": None, "files": 16, "workers": (0, 2), "paper_sizes": True,
             "text_paper_batch": True, "long_seconds": 120.0, "loader_seconds": 18000.0},
    "quick": {"corpus": "tiny", "repeats": 1, "batching_repeats": 1, "bert_train": 16,
              "audio_train": None, "files": 4, "workers": (0,), "paper_sizes": False,
              "text_paper_batch": False, "long_seconds": 60.0, "loader_seconds": 1200.0},
}
"""Per mode: the built-in corpus size, timed repeats of each epoch kind (of the batching epochs on the
whole corpus), rows kept for the
BERT-base-sized text epoch and the audio epochs (None: all), test files per system for the RTF,
dataloader worker counts, whether paper-size models are timed too, whether the text epoch is
also timed at the paper's batch of 128, the length (s) of the long recording the audio systems
classify, and the audio (s) of each timed epoch of the training loader (its rows repeated up to it)."""


def build_parser():
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats (≤ 2 min on 2 cores)")
    parser.add_argument("--data", type=Path, help="a prepared built-in corpus to reuse (python -m "
                        "data_prep demo DIR); default: synthesise one into the scratch folder")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)} (gpu runs only with CUDA)")
    parser.add_argument("--out", type=Path, help="table file (default: benchmarks/results/<machine>.md, "
                        "<machine>-quick.md with --quick)")
    parser.add_argument("--machine", help="machine name for the file (default: from the hardware)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--asr", type=Path, help="a trained ASR run (e.g. demo_out/results/asr/1) for "
                        "the ASR transcription RTF; default: an ASR trained one epoch here (upper bound)")
    return parser


def prepare_corpus(data, work, size):
    """The built-in corpus with the demo's stand-in encoders (``standin_bert``, ``standin_wav2vec2``)."""
    from data_prep.demo_corpus import prepare_demo
    from topic_id.standins.bert import build_standin, read_manifest_texts
    from topic_id.standins.wav2vec2 import build_standin as build_wav2vec2

    corpus = Path(data) if data else work / "corpus"
    if not (corpus / "train.csv").is_file():
        prepare_demo(corpus, seed=0, size=size)
    if not (corpus / "standin_bert" / "STANDIN.json").is_file():
        build_standin(read_manifest_texts(corpus), corpus / "standin_bert")  # the demo's
    if not (corpus / "standin_wav2vec2" / "STANDIN.json").is_file():
        build_wav2vec2(corpus / "standin_wav2vec2")
    return corpus


def run_sections(sections, settings, work, data, asr=None):
    """Run the chosen sections, yielding each section's table rows as soon as they are measured."""
    from benchmarks import cpu

    if any(s != "gpu" for s in sections):
        corpus = prepare_corpus(data, work, settings["corpus"])
        audio = corpus
        if settings["audio_train"]:
            audio = common.subset_corpus(corpus, work / "audio_subset", settings["audio_train"], 8)
    if "text" in sections:
        from topic_id.standins.bert import build_standin, read_manifest_texts

        standin, base = corpus / "standin_bert", work / "bert_base"
        build_standin(read_manifest_texts(corpus), base, **common.BERT_BASE)
        rows = cpu.text_cache(corpus, work / "text_standin", standin, "demo stand-in BERT",
                              settings["repeats"], ("batch", "utterance"), whole_run=True)
        if settings["text_paper_batch"]:
            rows += cpu.text_cache(corpus, work / "text_standin_128", standin, "demo stand-in BERT",
                                   settings["repeats"], batch_size=128)
        few = common.subset_corpus(corpus, work / "bert_subset", settings["bert_train"], 8, "transcribed")
        yield rows + cpu.text_cache(few, work / "text_base", base, "BERT-base-sized random init",
                                    settings["repeats"])
    if "pipeline" in sections:
        yield cpu.pipeline_overhead(audio, work / "pipeline", settings["repeats"], settings["workers"])
    if "loader" in sections:
        from benchmarks import loader

        yield loader.run(corpus, work / "loader", settings["loader_seconds"], repeats=settings["repeats"])
    if "batching" in sections:
        yield cpu.batching(corpus, work / "batching", settings["batching_repeats"])
    if "inference" in sections:
        yield cpu.inference_rtf(corpus, work / "inference", settings["files"], settings["paper_sizes"], asr,
                                settings["long_seconds"])
    if "gpu" in sections:
        import torch

        if torch.cuda.is_available():
            from benchmarks import gpu

            yield from gpu.run(work / "gpu", quick=settings is SETTINGS["quick"])


def main(argv=None):
    """Entry point: exit status 0 when the table was written."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        build_parser().error(f"unknown sections {unknown}; choose from {','.join(SECTIONS)}")
    common.quiet_logs()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    info = common.machine()
    if args.machine:
        info["name"] = args.machine
    load_start, start, cpu_start = common.load_average(), time.time(), common.cpu_seconds()
    work = Path(tempfile.mkdtemp(prefix="topic-id-bench-"))
    out = args.out or common.RESULTS / f"{info['name']}{'-quick' if args.quick else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []

    def write():
        table = common.markdown(rows, info, argv, (time.time() - start, common.cpu_seconds() - cpu_start),
                                (load_start, common.load_average()))
        out.write_text(table, encoding="utf-8")
        return table

    try:
        # The table is rewritten after every section, so an interrupted run keeps what it measured.
        for section_rows in run_sections(sections, SETTINGS["quick" if args.quick else "full"], work,
                                         args.data, args.asr):
            rows += section_rows
            write()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(write() + f"\nwritten to {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
