"""The batch-prediction acceptance run: many files, a killed run, a resumed one.

``python -m benchmarks.batch_resume MODEL CORPUS WORK [--files 1000] [--kill-after 20]`` links
``--files`` recordings of CORPUS's audio folder into WORK/audio (nested folders), starts ``topic-id
predict --model MODEL WORK/audio --out WORK/preds.csv``, kills it (SIGKILL, as a crash or an
out-of-memory kill would) ``--kill-after`` seconds later, runs the same command again, and prints
JSON: the rows after each run, the files the resumed run classified, whether every file is in the
CSV exactly once, and both runs' wall times. tests/test_batch_predict.py runs the same check in
process; this one runs the command as a user does.
"""

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def link_files(corpus, folder, n):
    """``n`` links to CORPUS/audio's recordings under ``folder`` in nested folders; their paths."""
    sources = sorted((Path(corpus) / "audio").iterdir())
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        dst = Path(folder) / f"part{i % 10:02d}" / f"{i:05d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            os.symlink(src.resolve(), dst)
        paths.append(str(dst))
    return paths


def _rows(path):
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def main(argv=None):
    """Run the check; exit status 0 when every file ends up in the CSV exactly once."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batch_resume", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an exported model (or run folder)")
    parser.add_argument("corpus", type=Path, help="a prepared corpus whose audio/ folder is linked")
    parser.add_argument("work", type=Path, help="scratch folder")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--kill-after", type=float, default=20.0, help="seconds before the first run is killed")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    paths = link_files(args.corpus, args.work / "audio", args.files)
    out = args.work / "preds.csv"
    command = [sys.executable, "-m", "topic_id.cli", "predict", "--model", str(args.model), "--device", "cpu",
               "--batch-size", str(args.batch_size), str(args.work / "audio"), "--out", str(out)]
    start = time.perf_counter()
    with open(args.work / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            first.wait(timeout=args.kill_after)
        except subprocess.TimeoutExpired:
            first.send_signal(signal.SIGKILL)
            first.wait()
    first_wall = time.perf_counter() - start
    after_kill = _rows(out)
    torn = out.is_file() and not out.read_bytes().endswith(b"\n")
    start = time.perf_counter()
    with open(args.work / "second.log", "w") as log:
        second = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT)
    second_wall = time.perf_counter() - start
    rows = _rows(out)
    files = [r["file"] for r in rows]
    summary = json.loads((args.work / "preds.summary.json").read_text())
    report = {
        "files": len(paths), "first_run": {"returncode": first.returncode, "wall_seconds": round(first_wall, 1),
                                           "rows": len(after_kill), "torn_last_line": torn},
        "second_run": {"returncode": second.returncode, "wall_seconds": round(second_wall, 1),
                       "done_before": summary["done_before"], "classified": summary["predicted"],
                       "audio_hours": round(summary["audio_hours"], 3), "rtf": summary["rtf"]},
        "rows": len(rows), "every_file_once": sorted(files) == sorted(paths),
        "progress_bar_seen": "file/s" in (args.work / "second.log").read_text(),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["every_file_once"] and second.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
