"""Long recordings: real-time factor and peak memory of the audio systems on minutes of audio.

:func:`long_recording` joins a corpus's test utterances into one long recording (minutes of
audio, as LP recordings can be); :func:`long_recording_rows` times ``topic-id predict``'s batch
path on it against the model's forward pass alone; ``python -m benchmarks.long_input MODEL SECONDS...`` prints the peak
memory (resident set) of classifying recordings that long, each after the previous one, so the
growth from one length to the next is what the longer input costs (tests/test_chunked_encoding.py).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import soundfile
import speechbrain as sb
import torch

from data_prep.prepared import read_manifest
from topic_id.training import dataio


def long_recording(corpus, seconds, sample_rate=16000, pause=0.5):
    """The corpus's test utterances joined with ``pause`` s of silence, repeated up to ``seconds``.

    Arguments
    ---------
    corpus : Path
        A prepared corpus (``test.csv``).
    seconds : float
        Length of the recording.
    sample_rate : int
        Its rate.
    pause : float
        Silence between utterances (s).

    Returns
    -------
    torch.Tensor
        [seconds * sample_rate] samples.
    """
    rows = read_manifest(Path(corpus) / "test.csv")
    gap = torch.zeros(int(pause * sample_rate))
    parts, total, wanted = [], 0, int(seconds * sample_rate)
    while total < wanted:
        for row in rows:
            wav = dataio.load_audio(row["wav"], sample_rate)
            parts += [wav, gap]
            total += len(wav) + len(gap)
            if total >= wanted:
                break
    return torch.cat(parts)[:wanted]


def forward_seconds(model, wav):
    """Seconds of the model's forward pass alone (features, encoder, pooling, head) on ``wav``."""
    batch = SimpleNamespace(sig=(wav.unsqueeze(0), torch.ones(1)))
    with torch.no_grad():
        start = time.perf_counter()
        model.brain.classify(model.brain.embed(batch, sb.Stage.TEST))
        return time.perf_counter() - start


def long_recording_rows(models, corpus, work, seconds=120.0, repeats=3):
    """One row per audio system: ``topic-id predict --out`` on a long recording vs its forward pass.

    The recording (:func:`long_recording`) is written to a FLAC file and classified through
    :func:`topic_id.serving.batch_predict.predict_to_csv` (reading, resampling, chunked encoding, the CSV);
    the baseline is the model's forward pass alone on the samples in memory, chunked the same way.
    The one-pass forward time (no chunks) is given beside them. Each time is the best of
    ``repeats``.

    Arguments
    ---------
    models : list of tuple
        ``(name, TopicIdentifier)`` of audio systems.
    corpus : Path
        A prepared corpus.
    work : Path
        Scratch folder.
    seconds : float
        Length of the recording.
    repeats : int
        Timings of each kind.

    Returns
    -------
    list of Row
    """
    from benchmarks.common import Row
    from topic_id.serving.batch_predict import predict_to_csv

    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, model) in enumerate(models):
        wav = long_recording(corpus, seconds, model.sample_rate)
        path = work / f"long{i}.flac"
        soundfile.write(path, wav.numpy(), model.sample_rate)
        chunk = model.chunk_seconds
        forward_seconds(model, wav[: model.sample_rate])  # warm-up
        chunked = min(forward_seconds(model, wav) for _ in range(repeats))
        model.chunk_seconds = None
        one_pass = min(forward_seconds(model, wav) for _ in range(repeats))
        model.chunk_seconds = chunk
        # A new CSV each time: the same one would find the file done.
        predict = min(predict_to_csv(model, [path], work / f"long{i}_{r}.csv", progress=False)["predict_seconds"]
                      for r in range(repeats))
        rtf = predict / seconds
        rows.append(Row("inference", f"topic-id predict --out on one {seconds:.0f} s recording "
                        f"(joined test utterances): {name}, chunks of {chunk:g} s",
                        "the model's forward pass alone (samples in memory, same chunks)",
                        f"RTF {rtf:.4f} vs forward {chunked / seconds:.4f} (one pass, no chunks: "
                        f"{one_pass / seconds:.4f})", predict / chunked))
    return rows


def peak_memory(model_dir, lengths, chunk_seconds=None, corpus=None):
    """Peak resident memory (MiB) after loading a model and after classifying each length in turn.

    Arguments
    ---------
    model_dir : str or Path
        An export.
    lengths : list of float
        Recording lengths (s), classified in this order.
    chunk_seconds : float, optional
        Override of the model's (0: one pass).
    corpus : Path, optional
        Speech to join (:func:`long_recording`); default: white noise.

    Returns
    -------
    dict
        ``{"loaded": MiB, "<seconds>": MiB, ...}``.
    """
    from topic_id.serving.inference import load_model

    model = load_model(model_dir, "cpu", chunk_seconds)
    peaks = {"loaded": _peak_mib()}
    for seconds in lengths:
        if corpus is None:
            wav = 0.05 * torch.randn(int(seconds * model.sample_rate), generator=torch.Generator().manual_seed(0))
        else:
            wav = long_recording(corpus, seconds, model.sample_rate)
        with torch.no_grad():
            model.classify_batch(wav.unsqueeze(0))
        del wav
        peaks[f"{seconds:g}"] = _peak_mib()
    return peaks


def _peak_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    """``python -m benchmarks.long_input MODEL SECONDS... [--chunk-seconds S] [--corpus DIR]``: JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.long_input", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="an exported model folder")
    parser.add_argument("seconds", type=float, nargs="+", help="recording lengths, classified in turn")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="0: one pass")
    parser.add_argument("--corpus", type=Path, default=None, help="speech to join (default: noise)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(peak_memory(args.model, args.seconds, args.chunk_seconds, args.corpus)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
