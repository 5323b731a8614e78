"""Speak a CSV of topic-labelled text into a corpus with the built-in synthesiser.

``python -m data_prep speak TEXT_CSV OUT_DIR`` turns text with topics (a text classification
data set, or sentences written for a test) into a speech corpus that follows the manifest
contract. The CSV is read and its rows are checked exactly as ``python -m data_prep csv`` reads
and checks a metadata CSV (:mod:`data_prep.intake`: column aliases, split names, drop reasons;
:func:`data_prep.splits.given_splits`: a speaker given in two splits stays in one), so a CSV
means the same to both commands. Only the audio differs: it is spoken here, by
:mod:`data_prep.synthesis`.

The text is Finnish by default, spoken by variants of espeak-ng's Finnish voice
(:data:`data_prep.synthesis.VOICES`); ``language="en"`` speaks English with variants of its English
accents (:data:`ENGLISH_VOICES`), held out by split in the same way, and normalises the
transcripts as English (:mod:`data_prep.text_norm`); ``summary.json`` records the normalisation
(``text_normalisation``).

Example
-------
>>> _speakable("Se maksoi 5 €, eikö?")
'Se maksoi , eikö?'
>>> _speakable("It's 5 € (or so)", {"language": "en", "numbers": "keep"})
"It's 5 or so"
"""

import logging
import re
from pathlib import Path

import numpy as np

from data_prep.demo_corpus import bow_baseline
from data_prep.espeak import ESPEAK_LANGUAGE
from data_prep.intake import COLUMN_ALIASES, Intake, check_row, read_metadata
from data_prep.manifest import SPLITS, PrepError, Row, is_finished, manifest_paths, start, write_prepared
from data_prep.splits import given_splits
from data_prep.synthesis import (
    VOICES,
    assign_formats,
    audio_plan,
    ready_synthesizer,
    summary_extra,
    synthesise,
    warn_if_different,
)
from data_prep.text_norm import normalize_transcript, text_settings

logger = logging.getLogger(__name__)

SPEAK_REQUIRED = ("transcript", "topic")
"""Required columns, as :data:`data_prep.intake.COLUMN_ALIASES` names them (``text`` is the
``transcript``)."""
SPEAK_OPTIONAL = ("split", "speaker", "id", "subset")
SUBSETS = ("transcribed", "untranscribed")
AUTO_SPLIT_SHARES = {"dev": 0.1, "test": 0.1}
"""Share of rows (or of speakers, when the CSV names them) put in dev and test when the CSV has
no ``split`` column."""
ENGLISH_VOICES = {
    "train": ("en-us+m1", "en-us+f1", "en+m3", "en+f3", "en-gb-scotland+m5", "en-029+f5",
              "en-gb-x-rp+m7", "en-us+klatt"),
    "dev": ("en-us+m2", "en+f2"),
    "test": ("en-us+m6", "en-gb-x-rp+f4"),
}
"""English voices per split, ``<espeak-ng voice>+<variant>``: the variants are split as the
Finnish ones (:data:`data_prep.synthesis.VOICES`), so dev and test voices are held out from train,
and each split mixes accents (American, British, Scottish, Caribbean) and male and female voices."""


def voice_pools(language):
    """``{split: voices}`` of a language, each voice ``<espeak-ng voice>+<variant>``.

    >>> voice_pools("fi")["dev"], voice_pools("en")["dev"]
    (('fi+m2', 'fi+f2'), ('en-us+m2', 'en+f2'))
    """
    if language == "en":
        return ENGLISH_VOICES
    return {split: tuple(f"{ESPEAK_LANGUAGE}+{v}" for v in pool) for split, pool in VOICES.items()}


def _check_text(values, settings):
    """The reason to drop a row whose text cannot be spoken or whose subset is unknown, or None."""
    if not normalize_transcript(values["transcript"], **settings):
        return "empty text (nothing left after normalisation): write the sentence or remove the row"
    if (values.get("subset", "").lower() or "transcribed") not in SUBSETS:
        return f"subset {values['subset']!r} is not transcribed or untranscribed: fix it"
    return None



def _auto_split(rng, records):
    """Put records into train/dev/test when the CSV gives no split.

    Without speakers the split is stratified by topic; with speakers whole speakers go to one
    split, so dev and test speakers never occur in train.
    """
    if any(r["given_speaker"] for r in records):
        group = {id(r): r["given_speaker"] or f"row {r['row']}" for r in records}
        sizes = {}
        for r in records:
            sizes[group[id(r)]] = sizes.get(group[id(r)], 0) + 1
        keys = sorted(sizes)
        filled = {split: 0 for split in SPLITS}
        split_of = {}
        for k in rng.permutation(len(keys)):
            # Fill dev, then test, up to their shares; a speaker is never divided.
            split = next(
                (s for s in ("dev", "test") if filled[s] < AUTO_SPLIT_SHARES[s] * len(records)), "train"
            )
            split_of[keys[k]] = split
            filled[split] += sizes[keys[k]]
        for r in records:
            r["split"] = split_of[group[id(r)]]
        return
    for topic in sorted({r["topic"] for r in records}):
        mine = [r for r in records if r["topic"] == topic]
        mine = [mine[i] for i in rng.permutation(len(mine))]
        n_dev, n_test = (round(AUTO_SPLIT_SHARES[s] * len(mine)) for s in ("dev", "test"))
        if len(mine) >= 3:
            n_dev, n_test = max(1, n_dev), max(1, n_test)
        for i, r in enumerate(mine):
            r["split"] = "dev" if i < n_dev else "test" if i < n_dev + n_test else "train"


def _assign_voices(rng, records, pools):
    """Give every record a voice of its split's pool: one per given speaker, else in turn."""
    for split in SPLITS:
        mine = [r for r in records if r["split"] == split]
        pool = pools[split]
        speakers = sorted({r["given_speaker"] for r in mine if r["given_speaker"]})
        voice_of = {s: pool[k % len(pool)] for k, s in enumerate(speakers)}
        anonymous = [r for r in mine if not r["given_speaker"]]
        for k, i in enumerate(rng.permutation(len(anonymous))):
            anonymous[i]["voice"] = pool[k % len(pool)]
        for r in mine:
            if r["given_speaker"]:
                r["voice"] = voice_of[r["given_speaker"]]


_APOSTROPHES = re.compile(r"['\u2019\u02bc`\u00b4]")
_UNSPEAKABLE = {
    (False, False): re.compile(r"[^\w\s,.!?;:-]|[\d_]"),
    (False, True): re.compile(r"[^\w\s,.!?;:-]|_"),
    (True, False): re.compile(r"[^\w\s,.!?;:'-]|[\d_]"),
    (True, True): re.compile(r"[^\w\s,.!?;:'-]|_"),
}
"""What espeak-ng is not given, by (English, digits kept): symbols, and digits unless kept."""


def _speakable(text, settings=None):
    """The text espeak-ng reads: like the transcript (no symbols; digits only where the transcript
    keeps them, which espeak-ng then says as numbers), with punctuation kept for prosody, so that
    the audio says what ``words`` says. English keeps its apostrophes (``don't``)."""
    settings = settings or text_settings()
    english = settings["language"] == "en"
    text = _APOSTROPHES.sub("'" if english else "", text)
    text = _UNSPEAKABLE[english, settings["numbers"] == "keep"].sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def _take_rows(records, settings):
    """Check the rows of the CSV, as the ``csv`` command does; return ``(plans, intake)``."""
    intake, plans = Intake(), []
    for i, (source, values) in enumerate(records, 1):
        intake.add()
        split, reason = check_row(values)
        # The ID is claimed last, by a row that is otherwise valid, as the csv command claims it.
        reason = reason or _check_text(values, settings) or intake.claim_id(values.get("id") or f"utt{i:06d}", source)
        if reason:
            intake.drop(source, reason)
            continue
        plans.append({
            "row": i,
            "ID": values.get("id") or f"utt{i:06d}",
            "text": _speakable(values["transcript"], settings),
            "words": normalize_transcript(values["transcript"], **settings),
            "topic": values["topic"],
            "split": split or "",
            "subset": values.get("subset", "").lower() or "transcribed",
            "given_speaker": values.get("speaker", ""),
            "source": source,
        })
    if any(values and "split" in values for _, values in records):
        # Throwaway rows: only their ID and speaker matter to the split policy.
        rows = [Row(p["ID"], "", 0.0, p["topic"], speaker=p["given_speaker"]) for p in plans]
        splits, conflicts = given_splits(rows, {p["ID"]: p["split"] for p in plans})
        intake.drop_rows(conflicts)
        kept = {r.ID for rs in splits.values() for r in rs}
        plans = [p for p in plans if p["ID"] in kept]
    return plans, intake


def speak_csv(text_csv, out_dir, seed=0, force=False, language="fi", numbers=None):
    """Speak a CSV of topic-labelled text into a corpus with the built-in synthesiser.

    Columns: ``text`` (or ``transcript``) and ``topic`` (required); ``split``, ``speaker``,
    ``ID`` (or ``id``) and ``subset`` (transcribed/untranscribed, train rows) are optional, read
    as the ``csv`` command reads them (:mod:`data_prep.intake`; ``validation`` is dev, a speaker
    given in two splits stays in the first of test, dev, train that holds it). Without ``split``, dev and test
    get about 10 % each (speaker-disjoint when speakers are given). Every row is spoken with a
    voice of its split's pool (:data:`data_prep.synthesis.VOICES`), one voice per given
    speaker; ``speaker`` is the given speaker, else the voice. Rows with an empty text or topic,
    an unknown split or subset, a duplicate ID, a speaker of another split, or too many fields go
    to ``dropped.csv`` with the reason.

    Arguments
    ---------
    text_csv : str or Path
        The CSV (UTF-8; the separator, ``,`` ``;`` or tab, is read from the header).
    out_dir : str or Path
        The corpus folder: manifests at the top, audio under ``audio/``.
    seed : int
        Seed of every random choice; a seed gives byte-identical manifests.
    force : bool
        Rebuild even when ``out_dir`` holds a finished corpus.
    language : str
        ``fi`` (default) or ``en``: the voices (:func:`voice_pools`) and the transcripts'
        normalisation.
    numbers : str, optional
        Digits in the text: ``drop`` or ``keep`` (:func:`data_prep.text_norm.text_settings`).

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests; ``topics.txt`` lists the kept rows' topics, sorted.

    Raises
    ------
    PrepError
        Unreadable CSV, a missing required column, no rows, unwritable folder (raised before
        anything in ``out_dir`` is touched); or a kept corpus that cannot train a classifier
        (raised after writing it, see :func:`data_prep.manifest.write_prepared`).
    """
    text_csv, out_dir = Path(text_csv), Path(out_dir)
    try:
        settings = text_settings(language, numbers)
    except ValueError as err:
        raise PrepError(str(err)) from None
    if is_finished(out_dir) and not force:
        start(out_dir)
        warn_if_different(out_dir, seed=seed, source=str(text_csv))
        return manifest_paths(out_dir)
    records = read_metadata(text_csv, SPEAK_REQUIRED, checked=SPEAK_REQUIRED + SPEAK_OPTIONAL,
                            aliases=COLUMN_ALIASES)
    if not records:
        raise PrepError(f"{text_csv} has a header but no rows: add text rows")
    plans, intake = _take_rows(records, settings)
    rng = np.random.default_rng(seed)
    if not any(p["split"] for p in plans):
        _auto_split(rng, plans)
    _assign_voices(rng, plans, voice_pools(language))
    for p in plans:
        p.update(audio_plan(rng))
        p["subset"] = p["subset"] if p["split"] == "train" else ""
        p["speaker"] = p["given_speaker"] or p["voice"]
        p["language"], p["voice"] = p["voice"].split("+")
    assign_formats(rng, plans)
    for p in plans:
        p["file"] = f"utt{p['row']:06d}.{p['container']}"
    start(out_dir, force)
    synth = ready_synthesizer()
    logger.info("speaking %d rows of %s into %s", len(plans), text_csv, out_dir)
    splits, unspoken = synthesise(plans, out_dir)
    intake.dropped += unspoken
    extra = summary_extra(synth, plans, splits, seed, bow_logreg=bow_baseline(splits), source=str(text_csv),
                          text_normalisation=settings)
    if language != ESPEAK_LANGUAGE:
        extra["synthesiser"] = f"espeak-ng {synth.version} (espeakng-loader), language {language}"
    return write_prepared(out_dir, splits, None, intake.dropped, intake.n_input, extra_summary=extra)
