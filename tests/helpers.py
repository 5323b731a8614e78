"""A generator of miniature Lahjoita puhetta trees with the real layout (Kielipankki ``puhelahjat`` v1).

Two delivery parts (one with ``audio/``, one with ``audio_annotated/``), a 19-column metadata CSV
per part, FLAC at mixed sample rates and channel counts, transcripts with noise markers, marker
typos and several lines, and, with ``bad=True``, one row of every kind of bad input that the
preparation must account for. :func:`add_recording` adds a recording of the test's own making,
with a transcript and a word alignment (a Praat TextGrid, :func:`textgrid_text`).

Also the readers of a prepared folder the preparation tests share: :func:`read_dropped`,
:func:`read_prepared`.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

META_COLUMNS = (
    "recordingId", "clientPlatformName", "clientPlatformVersion", "contentType", "recordingBitDepth",
    "recordingDuration", "recordingNumberOfChannels", "recordingSampleRate", "recordingTimestamp",
    "theme", "topic", "dialect", "gender", "L1", "age", "placeOfResidence", "birthplace",
    "occupation", "education",
)
RATES = (16000, 22050, 44100, 48000, 8000)
WORDS = ("no", "mä", "kävin", "mökillä", "koira", "juoksi", "kesä", "sauna", "uimassa", "joo",
         "korona", "metsässä", "sataa", "lenkillä", "siis", "tota", "ihan", "kivaa")
MARKED = (".fp {} {} .br", "{} ..lauhg {}", ",br {} {}.fp", "{} [oov] {} .laugh", "{}\n.fp\n{}",
          "{} {} fp.", ".cough {}, {}!")
LATIN1 = "@LATIN1@"


@dataclass
class ToyLP:
    """What was generated, for the tests to check against."""

    root: Path
    """The folder holding ``puhelahjat/``."""
    n_rows: int = 0
    """Metadata rows over all parts (the input rows)."""
    themes: dict = field(default_factory=dict)
    """recordingId -> theme code."""
    transcripts: dict = field(default_factory=dict)
    """recordingId -> raw transcript, of the good transcribed rows."""
    bad: dict = field(default_factory=dict)
    """recordingId -> word expected in the drop reason (or ``untranscribed``)."""
    durations: dict = field(default_factory=dict)
    """recordingId -> seconds of the source audio."""


def _write_audio(path, seconds, rate, channels, rng):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
    audio = tone[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), audio.astype(np.float32), rate, format="FLAC", subtype="PCM_16")


def _meta_row(rec_id, theme, seconds, rate, channels):
    return {"recordingId": rec_id, "clientPlatformName": "android", "clientPlatformVersion": "10",
            "contentType": "audio/flac", "recordingBitDepth": "16", "recordingDuration": f"{seconds:.2f}",
            "recordingNumberOfChannels": str(channels), "recordingSampleRate": str(rate),
            "recordingTimestamp": "2020-06-01T12:00:00Z", "theme": theme, "topic": "17",
            "dialect": "Keski-Suomi", "gender": "N", "L1": "suomi", "age": "31-40",
            "placeOfResidence": "Jyväskylä", "birthplace": "Oulu", "occupation": "opettaja",
            "education": "korkeakoulu"}


def _write_meta(path, rows):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=META_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode("utf-8").replace(LATIN1.encode(), b"\xe4"))


def make_toy_lp_corpus(root, n_clients=8, per_client=3, bad=True, seed=0):
    """Write a miniature LP tree under ``root/puhelahjat/v1``.

    Arguments
    ---------
    root : str or Path
        Folder to create the tree in.
    n_clients : int
        Good clients (speakers), alternating between the two parts.
    per_client : int
        Recordings per good client; the last one of every third client is untranscribed.
    bad : bool
        Add one row per kind of bad input (see ``ToyLP.bad``).
    seed : int
        Seed of durations and signals.

    Returns
    -------
    ToyLP
    """
    rng = np.random.default_rng(seed)
    toy = ToyLP(root=Path(root))
    v1 = toy.root / "puhelahjat" / "v1"
    parts = {name: (v1 / name, audio_dir, []) for name, audio_dir in
             (("2020_part_01", "audio"), ("2020_part_02", "audio_annotated"))}
    names = list(parts)
    k = 0
    for c in range(n_clients):
        part_dir, audio_dir, rows = parts[names[c % 2]]
        for r in range(per_client):
            rec_id = f"clt{c:07d}_rec{r:04d}" if r % 2 == 0 else f"clt{c:07d}_ses01_rec{r:04d}"
            seconds, rate, channels = float(rng.uniform(1.0, 2.5)), RATES[k % len(RATES)], 1 + k % 2
            theme = f"{k % 10 + 1:02d}"
            _write_audio(part_dir / audio_dir / f"{rec_id}.flac", seconds, rate, channels, rng)
            rows.append(_meta_row(rec_id, theme, seconds, rate, channels))
            toy.themes[rec_id], toy.durations[rec_id] = theme, seconds
            if not (c % 3 == 2 and r == per_client - 1):
                words = rng.choice(WORDS, size=2, replace=False)
                text = MARKED[k % len(MARKED)].format(*(w.capitalize() if i == 0 else w
                                                        for i, w in enumerate(words)))
                toy.transcripts[rec_id] = text
                _write_text(part_dir / "annotations" / "manual_1" / f"{rec_id}.txt", text.encode())
            k += 1
    if bad:
        _add_bad_rows(toy, parts[names[1]], parts[names[0]][2][0], rng)
    for name, (part_dir, _, rows) in parts.items():
        _write_meta(part_dir / f"puhelahjat_{name}_meta.csv", rows)
        toy.n_rows += len(rows)
    return toy


def _write_text(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _add_bad_rows(toy, part, first_row, rng):
    """One row per kind of bad input a preparation must report, in ``part``; ``first_row`` is duplicated."""
    part_dir, audio_dir, rows = part
    audio = part_dir / audio_dir

    def row(n, reason, theme="01", seconds=1.5, write=True, rate=16000):
        rec_id = f"cltbad{n:04d}_rec0001"
        if write:
            _write_audio(audio / f"{rec_id}.flac", seconds, rate, 1, rng)
        rows.append(_meta_row(rec_id, theme, seconds, rate, 1))
        toy.bad[rec_id] = reason
        toy.themes[rec_id], toy.durations[rec_id] = theme, seconds
        return rec_id

    row(1, "missing", write=False)
    (audio / f"{row(2, 'empty', write=False)}.flac").write_bytes(b"")
    (audio / f"{row(3, 'unreadable', write=False)}.flac").write_bytes(b"this is not audio\n" * 20)
    truncated = audio / f"{row(4, 'truncated', seconds=3.0)}.flac"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    row(5, "recording", seconds=50.5, rate=8000)
    row(6, "unknown", theme="11")
    text_dir = part_dir / "annotations" / "manual_1"
    _write_text(text_dir / f"{row(7, 'non-UTF-8')}.txt", "Mä kävin mökillä".encode("latin-1"))
    _write_text(text_dir / f"{row(8, 'untranscribed')}.txt", b".laugh .br\n  .fp \n")
    # libsndfile writes an empty FLAC as 0 bytes; a header-only file needs a WAV container.
    zero = row(9, "zero-length", write=False)
    soundfile.write(str(audio / f"{zero}.flac"), np.zeros((0, 1), np.float32), 16000, format="WAV")
    rows.append(dict(rows[-1], recordingId=f"cltbad0010_rec{LATIN1}"))
    toy.bad["cltbad0010_rec\ufffd"] = "non-UTF-8"
    dup = dict(first_row)
    _write_audio(audio / f"{dup['recordingId']}.flac", 1.2, 16000, 1, rng)
    rows.append(dup)
    toy.bad[dup["recordingId"] + "#2"] = "duplicate"


def textgrid_text(words, xmax, tier="words"):
    """A Praat TextGrid, long text format, with one interval tier of ``words``.

    Arguments
    ---------
    words : list of tuple
        ``[(start_s, end_s, label)]`` in time order, not overlapping; the gaps between them
        become empty intervals, as Praat writes them.
    xmax : float
        Seconds of the recording.
    tier : str
        The tier's name.

    Returns
    -------
    str
    """
    intervals, t = [], 0.0
    for start, end, label in words:
        if start > t:
            intervals.append((t, start, ""))
        intervals.append((start, end, label))
        t = end
    if t < xmax:
        intervals.append((t, xmax, ""))
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ",
             f"xmax = {xmax} ", "tiers? <exists> ", "size = 1 ", "item []: ", "    item [1]:",
             '        class = "IntervalTier" ', f'        name = "{tier}" ', "        xmin = 0 ",
             f"        xmax = {xmax} ", f"        intervals: size = {len(intervals)} "]
    for k, (start, end, label) in enumerate(intervals, 1):
        lines += [f"        intervals [{k}]:", f"            xmin = {start} ",
                  f"            xmax = {end} ", f'            text = "{label}" ']
    return "\n".join(lines) + "\n"


def add_recording(toy, part, rec_id, signal, rate, theme="01", transcript=None, alignment=None):
    """Add one recording to a toy tree's part: audio, metadata row, and optionally a transcript
    and an alignment (a list of ``(start_s, end_s, label)``, or raw TextGrid text).

    Arguments
    ---------
    toy : ToyLP
        The tree (its counts and dicts are updated).
    part : str
        The part's name, e.g. ``"2020_part_01"`` (which has ``audio/``).
    rec_id : str
        The recordingId.
    signal : numpy.ndarray
        Samples, ``(n,)`` or ``(n, channels)``.
    rate : int
        Their rate.
    theme : str
        The theme code.
    transcript : str, optional
        Written to ``annotations/manual_1/<rec_id>.txt``.
    alignment : list or str, optional
        Written to ``alignments/manual_1/<rec_id>.TextGrid``.
    """
    part_dir = toy.root / "puhelahjat" / "v1" / part
    path = part_dir / "audio" / f"{rec_id}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), np.asarray(signal, np.float32), rate, format="FLAC", subtype="PCM_16")
    seconds, channels = len(signal) / rate, 1 if np.ndim(signal) == 1 else signal.shape[1]
    with open(part_dir / f"puhelahjat_{part}_meta.csv", "a", encoding="utf-8", newline="") as f:
        csv.DictWriter(f, fieldnames=META_COLUMNS, lineterminator="\n").writerow(
            _meta_row(rec_id, theme, seconds, rate, channels))
    toy.n_rows += 1
    toy.themes[rec_id], toy.durations[rec_id] = theme, seconds
    if transcript is not None:
        toy.transcripts[rec_id] = transcript
        _write_text(part_dir / "annotations" / "manual_1" / f"{rec_id}.txt", transcript.encode())
    if alignment is not None:
        text = alignment if isinstance(alignment, str) else textgrid_text(alignment, seconds)
        _write_text(part_dir / "alignments" / "manual_1" / f"{rec_id}.TextGrid", text.encode())


def read_dropped(folder):
    """The rows of ``<folder>/dropped.csv`` (``source``, ``reason``) as dicts."""
    with open(Path(folder) / "dropped.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_prepared(folder, **read_options):
    """``(rows, dropped, summary)`` of a prepared folder: ``rows`` maps each split to its manifest rows
    (``data_prep.prepared.read_manifest`` with ``read_options``)."""
    from data_prep.prepared import read_manifest

    rows = {split: read_manifest(Path(folder) / f"{split}.csv", **read_options) for split in ("train", "dev", "test")}
    return rows, read_dropped(folder), json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))
