"""Prepare SLURP, the English spoken-language-understanding corpus, into the manifest contract.

Layout read (the SLURP repository with its audio release unpacked beside the text)::

    SLURP_DIR/dataset/slurp/{train,devel,test}.jsonl   one JSON object per line: slurp_id,
                                                       sentence, scenario, action, intent,
                                                       recordings [{file, wer, ent_wer, status}]
    SLURP_DIR/dataset/slurp/train_synthetic.jsonl      the same, of synthesised speech (--synthetic)
    SLURP_DIR/dataset/slurp/metadata.json              optional: {slurp_id: {"recordings":
                                                       {file: {"usrid": speaker}}}}
    SLURP_DIR/audio/slurp_real/<file>                  16 kHz FLAC (also SLURP_DIR/slurp_real/)
    SLURP_DIR/audio/slurp_synth/<file>                 the synthetic recordings

The jsonl files may also lie directly in ``SLURP_DIR``. Each recording is a manifest row: SLURP
records a sentence several times, by several speakers and on two kinds of microphone (a file whose
name has ``-headset`` is close-talk, the others far-field; ``mics`` keeps one kind or both). The
topic is the sentence's ``scenario`` (18 of them; ``label`` takes ``intent`` or ``action``
instead), the transcript the sentence, normalised as English (:mod:`data_prep.text_norm`). The
official splits are kept, ``devel`` as dev; ``synthetic`` adds the synthetic recordings to train
(whatever ``mics`` says: they were recorded on no microphone). The ``wer``, ``ent_wer`` and
``status`` of a recording are not used: SLURP's own ASR training took every recording too.
The speaker is the ``usrid`` that ``metadata.json`` gives a recording; without the file (or for a
recording it does not name, and for every synthetic one) the speaker is unknown and each row
counts as its own. A speaker whom the official splits put in several splits stays in the first of
test, dev, train (:func:`data_prep.splits.given_splits`), so that the splits are speaker-disjoint
as every prepared corpus is; the rows taken out are dropped with that reason.

Audio is not converted: manifests point at the FLAC files, which are read as they are. Every
recording is accounted for: kept, or in ``dropped.csv`` with its reason (missing or unreadable
file, too long, a microphone ``mics`` leaves out, a duplicate file); a line of a jsonl file that is
no JSON object, or lacks a field, is one dropped input row, since its recordings cannot be known.
"""

import json
import logging
from pathlib import Path

from data_prep.intake import Intake, wav_entry
from data_prep.manifest import MAX_DURATION, PrepError, Row, manifest_paths, start, write_prepared
from data_prep.splits import finish_splits, given_splits, require_eval_text
from data_prep.text_norm import normalize_transcript, text_settings

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "train", "devel": "dev", "test": "test"}
"""The official split files (``<name>.jsonl``) and the split each becomes."""
SYNTHETIC = "train_synthetic"
LABELS = ("scenario", "intent", "action")
"""The fields a topic can be read from; ``scenario`` is the default."""
MICS = ("all", "headset", "far")
"""Which recordings to keep: both kinds, close-talk (``-headset`` files) or far-field."""
HEADSET = "-headset"
TEXT_DIRS = ("dataset/slurp", "slurp", ".")
AUDIO_DIRS = {"real": ("audio/slurp_real", "slurp_real"), "synth": ("audio/slurp_synth", "slurp_synth")}


def microphone(file):
    """``headset`` for a close-talk recording (``-headset`` in its name), else ``far``.

    >>> microphone("audio-1434542201-headset.flac"), microphone("audio-1434542201.flac")
    ('headset', 'far')
    """
    return "headset" if HEADSET in Path(file).name else "far"


def find_slurp(slurp_dir, synthetic=False):
    """The folders of a SLURP tree: ``(text_dir, real_audio_dir, synth_audio_dir)``.

    Raises
    ------
    PrepError
        When a jsonl file of the splits, or an audio folder, is not found.
    """
    root = Path(slurp_dir)
    wanted = [*SPLIT_FILES, *([SYNTHETIC] if synthetic else [])]
    text_dir = next((root / d for d in TEXT_DIRS if (root / d / "train.jsonl").is_file()), None)
    if text_dir is None:
        raise PrepError(f"no SLURP train.jsonl under {root} (looked in {', '.join(TEXT_DIRS)}): point "
                        "SLURP_DIR at the SLURP repository, which holds dataset/slurp/")
    missing = [f"{name}.jsonl" for name in wanted if not (text_dir / f"{name}.jsonl").is_file()]
    if missing:
        raise PrepError(f"{text_dir} lacks {', '.join(missing)}: restore the SLURP text release"
                        + (" or leave out --synthetic" if SYNTHETIC + ".jsonl" in missing else ""))
    audio = {}
    for kind in ("real", "synth") if synthetic else ("real",):
        audio[kind] = next((root / d for d in AUDIO_DIRS[kind] if (root / d).is_dir()), None)
        if audio[kind] is None:
            raise PrepError(f"no {' or '.join(AUDIO_DIRS[kind])} folder under {root}: unpack "
                            f"slurp_{kind}.tar.gz there (scripts/download_audio.sh of SLURP)")
    return text_dir, audio["real"], audio.get("synth")


def read_speakers(text_dir):
    """``{file: usrid}`` from ``metadata.json``; empty (with a warning) where there is none.

    Raises
    ------
    PrepError
        When the file is there but is no JSON object of SLURP's metadata form.
    """
    path = Path(text_dir) / "metadata.json"
    if not path.is_file():
        logger.warning("no %s: speakers unknown, every row counts as its own speaker (dev/test may "
                       "share speakers with train)", path)
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {file: str(info["usrid"]) for entry in entries.values()
                for file, info in (entry.get("recordings") or {}).items() if info.get("usrid")}
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as err:
        raise PrepError(f"cannot read speakers from {path} ({err}): restore SLURP's metadata.json "
                        "or remove it to prepare without speakers") from err


def _check_entry(entry, label):
    """The reason a parsed line cannot be used, or None."""
    if not isinstance(entry, dict):
        return "line is no JSON object: fix or remove it"
    for field in ("sentence", label):
        if not isinstance(entry.get(field), str) or not entry[field].strip():
            return f"no {field} in the line: fix or remove it"
    if not isinstance(entry.get("recordings"), list) or not entry["recordings"]:
        return "no recordings listed in the line: fix or remove it"
    return None


def read_jsonl(path, label):
    """The lines of a SLURP jsonl file: ``[(source, entry, reason)]``, reason None for a usable one.

    A line that is not UTF-8, not JSON, or lacks ``sentence``, the ``label`` field or
    ``recordings`` gets a reason instead; blank lines are skipped.
    """
    try:
        lines = Path(path).read_bytes().splitlines()
    except OSError as err:
        raise PrepError(f"cannot read {path} ({err.strerror}): check the SLURP tree") from err
    out = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        source = f"{path}:{number}"
        try:
            entry = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append((source, None, "bad JSON line (not UTF-8): re-save the file as UTF-8"))
            continue
        except ValueError as err:
            out.append((source, None, f"bad JSON line ({err}): fix or remove the line"))
            continue
        out.append((source, entry, _check_entry(entry, label)))
    return out


def _recording_row(source, entry, recording, kind, audio_dir, speakers, settings, mics, max_duration,
                   intake, out_dir):
    """One recording of a line: a :class:`Row`, or the reason to drop it."""
    file = recording.get("file") if isinstance(recording, dict) else None
    if not isinstance(file, str) or not file.strip():
        return "recording entry without a file name: fix the line"
    mic = microphone(file) if kind == "real" else "synthetic"
    if kind == "real" and mics != "all" and mic != mics:
        return f"{mic} recording, not kept by --mics {mics}: give --mics all (or {mic}) to keep it"
    rec_id = Path(file).stem if kind == "real" else f"synth-{Path(file).stem}"
    reason = intake.claim_id(rec_id, source)
    path = audio_dir / file
    duration, reason = (None, reason) if reason else intake.check_audio(rec_id, path, max_duration)
    if reason:
        return reason
    words = normalize_transcript(entry["sentence"], **settings)
    if not words:
        logger.warning("sentence of %s is empty after normalisation; %s kept without transcript",
                       source, rec_id)
        intake.counts["empty_transcripts"] += 1
    return Row(ID=rec_id, wav=wav_entry(path, out_dir), duration=duration, topic=entry["label"],
               words=words, speaker=speakers.get(file, "") if kind == "real" else "")


def prepare_slurp(slurp_dir, out_dir, label="scenario", mics="all", synthetic=False,
                  max_duration=MAX_DURATION, numbers=None, force=False):
    """Prepare SLURP into ``train.csv dev.csv test.csv topics.txt dropped.csv summary.json``.

    Arguments
    ---------
    slurp_dir : str or Path
        The SLURP tree (see the module docstring, :func:`find_slurp`).
    out_dir : str or Path
        Output folder; the manifests point at the audio where it lies.
    label : str
        The topic field, one of :data:`LABELS`.
    mics : str
        One of :data:`MICS`.
    synthetic : bool
        Add ``train_synthetic.jsonl`` (``slurp_synth/``) to train.
    max_duration : float
        Recordings this long or longer are dropped.
    numbers : str, optional
        Digits in the sentences: ``keep`` (default for English) or ``drop``
        (:data:`data_prep.text_norm.NUMBERS`).
    force : bool
        Rebuild a finished preparation.

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests.
    """
    if label not in LABELS:
        raise PrepError(f"unknown label {label!r}: use one of {', '.join(LABELS)}")
    if mics not in MICS:
        raise PrepError(f"unknown --mics {mics!r}: use one of {', '.join(MICS)}")
    try:
        settings = text_settings("en", numbers)
    except ValueError as err:
        raise PrepError(str(err)) from None
    out_dir = Path(out_dir)
    text_dir, real_dir, synth_dir = find_slurp(slurp_dir, synthetic)
    speakers = read_speakers(text_dir)
    if not start(out_dir, force):
        return manifest_paths(out_dir)
    intake, rows, split_of, kind_of = Intake(), [], {}, {}
    files = [(name, split, "real", real_dir) for name, split in SPLIT_FILES.items()]
    files += [(SYNTHETIC, "train", "synth", synth_dir)] if synthetic else []
    lines = bad_lines = 0
    for name, split, kind, audio_dir in files:
        for source, entry, reason in read_jsonl(text_dir / f"{name}.jsonl", label):
            lines += 1
            if reason:
                bad_lines += 1
                intake.add()
                intake.drop(source, reason)
                continue
            entry = {**entry, "label": entry[label].strip()}
            for recording in entry["recordings"]:
                intake.add()
                file = recording.get("file") if isinstance(recording, dict) else None
                where = f"{source} {file}" if file else source
                result = _recording_row(where, entry, recording, kind, audio_dir, speakers, settings,
                                        mics, max_duration, intake, out_dir)
                if isinstance(result, str):
                    intake.drop(where, result)
                else:
                    rows.append(result)
                    split_of[result.ID] = split
                    kind_of[result.ID] = microphone(result.ID) if kind == "real" else "synthetic"
    splits, conflicts = given_splits(rows, split_of)
    intake.drop_rows(conflicts)
    splits, untranscribed = require_eval_text(splits, has_text=True)
    intake.drop_rows(untranscribed)
    kept = [kind_of[r.ID] for rs in splits.values() for r in rs]
    extra = {"corpus": "slurp", "slurp_dir": str(Path(slurp_dir).resolve()), "label": label, "mics": mics,
             "synthetic": synthetic, "max_duration": max_duration, "text_normalisation": settings,
             "jsonl_lines": lines, "bad_lines": bad_lines, "speakers_known": bool(speakers),
             "speaker_conflicts": len(conflicts),
             "kept_by_microphone": {k: kept.count(k) for k in ("headset", "far", "synthetic")},
             "empty_transcripts": intake.counts["empty_transcripts"]}
    return write_prepared(out_dir, finish_splits(splits), None, intake.dropped, intake.n_input, extra)
