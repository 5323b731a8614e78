"""The built-in corpus: colloquial Finnish speech about the paper's eight topics.

The project must run end-to-end without a download, so it speaks its own corpus:
:func:`prepare_demo` composes sentences for the eight topics of :data:`data_prep.topics.TOPICS`
from :mod:`data_prep.demo_text`, plans every utterance (topic, kind of sentence, voice, split,
subset, audio settings) from one seeded :class:`numpy.random.Generator`, and speaks the plans
with :mod:`data_prep.synthesis` (espeak-ng, :mod:`data_prep.espeak`) into a corpus that follows
the manifest contract of :mod:`data_prep.manifest`. Dev and test voices never occur in train;
train has ``transcribed`` and ``untranscribed`` subsets, as LP's. A seed gives byte-identical
manifests. Speaking a user's CSV of text is :mod:`data_prep.speak`.

Example
-------
>>> from data_prep.demo_corpus import compose
>>> import numpy as np
>>> text = compose(np.random.default_rng(0), "summer", "clear")
>>> isinstance(text, str) and len(text.split()) >= 3
True
"""

import logging
import re
from pathlib import Path

import numpy as np

from data_prep import demo_text
from data_prep.espeak import ESPEAK_LANGUAGE
from data_prep.manifest import SPLITS, PrepError, manifest_paths, start, write_prepared
from data_prep.synthesis import (
    VOICES,
    assign_formats,
    audio_plan,
    count_by,
    pick,
    ready_synthesizer,
    summary_extra,
    synthesise,
    warn_if_different,
)
from data_prep.text_norm import normalize_transcript
from data_prep.topics import TOPICS

logger = logging.getLogger(__name__)

SIZES = {
    "tiny": {"train": 48, "dev": 16, "test": 16},
    "default": {"train": 448, "dev": 96, "test": 96},
    "large": {"train": 1792, "dev": 384, "test": 384},
}
"""Utterances per split. ``tiny`` is for tests (a few seconds to build); ``default`` is sized so
that all ten systems train on a 2-core CPU within the demo budget; ``large`` is for a GPU."""

TRAIN_TOPIC_WEIGHTS = (1.15, 1.0, 0.85, 1.1, 1.0, 0.9, 0.85, 1.15)
"""Relative number of train utterances per topic (order of TOPICS): a mild imbalance, as in LP,
so that accuracy and unweighted average recall differ. Dev and test are balanced."""

TRANSCRIBED_SHARE = 0.5
"""Share of each topic's train utterances in the ``transcribed`` subset; the rest are
``untranscribed`` (empty ``words``), as LP's train set."""

KIND_SHARES = {"shared": 0.12, "generic": 0.05}
"""Share of each split's utterances built from sentences two topics share and from sentences that
say nothing about the topic; the rest are topic sentences. Fixed counts per split keep the
bag-of-words accuracy of the manual transcripts below 100 % on every seed."""

SPEECH_SECONDS = (1.8, 4.6)
"""Demo utterances whose speech falls outside this window are re-spoken at an adjusted rate;
with the silence padding the files last about 2 to 5 s, which keeps CPU training cheap."""

LONG_RECORDINGS = {"tiny": 0, "default": 8, "large": 32}
"""Multi-sentence recordings per split of each size, unless ``--long-recordings`` says otherwise:
a donor of LP talks on about one topic for a few sentences, from a few seconds to
minutes, where every other demo recording is one sentence. Each joins :data:`LONG_SENTENCES` of
the split's planned sentences of one topic (and, in train, one subset) into one recording by one
voice, so the corpus keeps its sentences and its hours while training, dynamic batching, the ASR
and transcription meet recordings of 10-30 s, as they do on LP. The topics of a split's long
recordings go round the eight in a seeded order: 8 gives one per topic and split (``large``: four
per topic, the same share). More in train cost the text rows: a long transcript is one training
example where its sentences were several, and 24 in the default size (3 per topic) took the
bag-of-words test accuracy of seed 0 from 0.865 to 0.70 (8: 0.86). ``tiny`` (the tests' corpus)
keeps one sentence per recording, so that its 16 test recordings stay 16 topic decisions; tests
that need long recordings ask for them."""

LONG_SENTENCES = (3, 7)
"""Fewest and most sentences of a multi-sentence recording; at :data:`SPEECH_SECONDS` per
sentence that is about 6 to 30 s of speech, within the durations of LP's recordings (under 50 s)."""


def _fill(template, rng):
    """Replace each ``{slot}`` of a template by a random filler of :data:`demo_text.SLOTS`."""
    return re.sub(r"\{(\w+)\}", lambda m: pick(rng, demo_text.SLOTS[m.group(1)]), template)


def compose(rng, topic, kind):
    """Compose one spoken utterance.

    Arguments
    ---------
    rng : numpy.random.Generator
        The source of every choice.
    topic : str
        A label of :data:`data_prep.topics.TOPICS`.
    kind : str
        ``"clear"`` (a sentence of the topic), ``"shared"`` (a sentence the topic shares with
        another) or ``"generic"`` (a sentence about nothing in particular).

    Returns
    -------
    str
        The text to speak, with commas where a speaker would pause.
    """
    if kind == "clear":
        template = pick(rng, demo_text.TOPIC_TEMPLATES[topic])
    elif kind == "shared":
        template = pick(rng, [t for topics, t in demo_text.SHARED_TEMPLATES if topic in topics])
    else:
        template = pick(rng, demo_text.GENERIC_TEMPLATES)
    words = _fill(template, rng).split()
    # A hesitation inside the sentence, as donors pause to think.
    if rng.random() < 0.2 and len(words) > 2:
        at = int(rng.integers(1, 3))
        words.insert(at, pick(rng, ("öö", "niinku", "tota", "siis")))
    parts = []
    if rng.random() < 0.55:
        parts.append(pick(rng, demo_text.OPENERS) + ",")
    parts.append(" ".join(words))
    closer = _fill(pick(rng, demo_text.CLOSERS), rng)
    if len(words) + len(closer.split()) <= 10 and rng.random() < 0.5:
        parts[-1] += ","
        parts.append(closer)
    return " ".join(parts) + "."


def _counts(total, weights):
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    weights = np.asarray(weights, dtype=float)
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return [int(c) for c in counts]


def _plan_demo(seed, size, long_recordings=0):
    """Decide every utterance of the demo corpus (text, voice, split, settings) before speaking;
    ``long_recordings`` per split are multi-sentence (:func:`_join_long`)."""
    rng = np.random.default_rng(seed)
    plans = []
    for split in SPLITS:
        n = SIZES[size][split]
        weights = TRAIN_TOPIC_WEIGHTS if split == "train" else [1.0] * len(TOPICS)
        topics = [t for t, c in zip(TOPICS, _counts(n, weights)) for _ in range(c)]
        topics = [topics[i] for i in rng.permutation(n)]
        n_shared = round(KIND_SHARES["shared"] * n)
        n_generic = round(KIND_SHARES["generic"] * n)
        kinds = ["shared"] * n_shared + ["generic"] * n_generic + ["clear"] * (n - n_shared - n_generic)
        kinds = [kinds[i] for i in rng.permutation(n)]
        voices = VOICES[split]
        seen = {t: 0 for t in TOPICS}
        n_transcribed = {t: round(TRANSCRIBED_SHARE * topics.count(t)) for t in TOPICS}
        for i, (topic, kind) in enumerate(zip(topics, kinds)):
            subset = ""
            if split == "train":
                subset = "transcribed" if seen[topic] < n_transcribed[topic] else "untranscribed"
            seen[topic] += 1
            plan = {
                "ID": f"demo-{split}-{i:04d}",
                "split": split,
                "topic": topic,
                "kind": kind,
                "subset": subset,
                "voice": voices[i % len(voices)],
                "text": compose(rng, topic, kind),
            }
            plan.update(audio_plan(rng))
            plans.append(plan)
    plans = _join_long(rng, plans, {split: long_recordings for split in SPLITS})
    assign_formats(rng, plans)
    return plans


def _join_long(rng, plans, counts):
    """Join planned sentences into multi-sentence recordings (:data:`LONG_RECORDINGS`).

    A long recording takes the first sentence's ID, voice and audio settings; its text is the
    sentences in order, its ``kind`` is ``"long"`` with ``sentences`` and ``kinds`` recorded, and
    its speech window scales with the number of sentences. With no long recordings asked for,
    ``rng`` is not touched, so such corpora stay byte-identical to earlier builds.

    Arguments
    ---------
    rng : numpy.random.Generator
        The corpus's generator.
    plans : list of dict
        One plan per sentence, as :func:`_plan_demo` drew them.
    counts : dict
        ``{split: number of long recordings}``.

    Returns
    -------
    list of dict
        The plans, long recordings in place of their first sentence.

    Examples
    --------
    >>> plans = _plan_demo(0, "default", long_recordings=8)
    >>> long = [p for p in plans if p["kind"] == "long"]
    >>> len(long), sorted({p["split"] for p in long})
    (24, ['dev', 'test', 'train'])
    >>> all(LONG_SENTENCES[0] <= p["sentences"] <= LONG_SENTENCES[1] for p in long)
    True
    """
    if not any(counts.values()):
        return plans
    joined = {}
    for split in SPLITS:
        pool = [p for p in plans if p["split"] == split]
        topics = [TOPICS[i] for i in rng.permutation(len(TOPICS))]
        for n in range(counts[split]):
            topic = topics[n % len(topics)]
            free = [p for p in pool if p["topic"] == topic and p["ID"] not in joined]
            if not free:
                continue
            first = free[int(rng.integers(len(free)))]
            same = [p for p in free if p["subset"] == first["subset"] and p is not first]
            k = int(rng.integers(LONG_SENTENCES[0], LONG_SENTENCES[1] + 1))
            rest = [same[i] for i in sorted(rng.permutation(len(same))[: k - 1])]
            group = [first] + rest
            long = dict(first, kind="long", sentences=len(group), kinds=[p["kind"] for p in group],
                        text=" ".join(p["text"] for p in group),
                        speech_window=tuple(len(group) * s for s in SPEECH_SECONDS))
            joined.update({p["ID"]: None for p in rest})
            joined[first["ID"]] = long
    # A joined sentence maps to None: it now lives inside its group's recording.
    return [joined.get(p["ID"], p) for p in plans if joined.get(p["ID"], p) is not None]



def bow_baseline(splits):
    """Bag-of-words logistic regression on the manual transcripts: how much the words give away.

    Trained on the transcribed train rows, evaluated on dev and test. A corpus on which this
    scores 100 % cannot tell text systems apart.

    Arguments
    ---------
    splits : dict
        ``{split: [Row]}``.

    Returns
    -------
    dict or None
        ``model``, ``train_rows``, ``dev_accuracy``, ``test_accuracy`` (None for an empty split);
        None when train has fewer than two topics with transcripts.
    """
    # The model of the bag-of-words rows of Table I (hparams/bow.yaml defaults), so that both agree.
    from corpus_tools.text_classifier import fit_model

    train = [r for r in splits.get("train", []) if r.words]
    if len({r.topic for r in train}) < 2:
        return None
    model = fit_model([r.words for r in train], [r.topic for r in train])
    result = {"model": "scikit-learn CountVectorizer + LogisticRegression", "train_rows": len(train)}
    for split in ("dev", "test"):
        rows = [r for r in splits.get(split, []) if r.words]
        accuracy = None
        if rows:
            predicted = model.predict([r.words for r in rows])
            accuracy = round(float(np.mean([p == r.topic for p, r in zip(predicted, rows)])), 4)
        result[f"{split}_accuracy"] = accuracy
    return result


def prepare_demo(out_dir, seed=0, size="default", force=False, long_recordings=None):
    """Build the built-in corpus: colloquial Finnish speech about the paper's eight topics.

    Arguments
    ---------
    out_dir : str or Path
        The corpus folder: manifests at the top, audio under ``audio/``.
    seed : int
        Every random choice derives from it; a seed gives byte-identical manifests.
    size : str
        A key of :data:`SIZES`: ``tiny`` (80 utterances, for tests), ``default`` (640),
        ``large`` (2560).
    force : bool
        Rebuild even when ``out_dir`` holds a finished corpus.
    long_recordings : int, optional
        Multi-sentence recordings per split (default: the size's :data:`LONG_RECORDINGS`); 0
        keeps every recording one sentence.

    Returns
    -------
    dict
        ``{split: Path}`` of the manifests.

    Raises
    ------
    PrepError
        Unknown size, unwritable folder, or espeak-ng unavailable.
    """
    if size not in SIZES:
        raise PrepError(f"unknown demo size {size!r}: choose one of {', '.join(SIZES)}")
    if long_recordings is None:
        long_recordings = LONG_RECORDINGS[size]
    if long_recordings < 0:
        raise PrepError(f"--long-recordings must be 0 or more, not {long_recordings}")
    out_dir = Path(out_dir)
    if not start(out_dir, force):
        warn_if_different(out_dir, seed=seed, size=size, long_recordings=long_recordings)
        return manifest_paths(out_dir)
    synth = ready_synthesizer()
    plans = _plan_demo(seed, size, long_recordings)
    for plan in plans:
        plan.update(
            file=f"{plan['ID']}.{plan['container']}",
            words=normalize_transcript(plan["text"]),
            speaker=f"{ESPEAK_LANGUAGE}+{plan['voice']}",
            source=f"demo sentence {plan['ID']}: {plan['text']}",
        )
    logger.info("synthesising %d utterances (size %s, seed %d) into %s", len(plans), size, seed, out_dir)
    splits, dropped = synthesise(plans, out_dir, SPEECH_SECONDS, alignments=True)
    # Sentence kinds count the sentences inside multi-sentence recordings (KIND_SHARES is per sentence).
    sentences = [{"split": p["split"], "kind": k} for p in plans for k in p.get("kinds", [p["kind"]])]
    kinds = {split: count_by([p for p in sentences if p["split"] == split], "kind") for split in SPLITS}
    recordings = {split: {"multi_sentence": sum(p["kind"] == "long" for p in plans if p["split"] == split),
                          "single_sentence": sum(p["kind"] != "long" for p in plans if p["split"] == split)}
                  for split in SPLITS}
    extra = summary_extra(synth, plans, splits, seed, bow_logreg=bow_baseline(splits), size=size,
                          utterance_kinds=kinds, recordings=recordings, long_recordings=long_recordings)
    return write_prepared(out_dir, splits, list(TOPICS), dropped, len(plans), extra_summary=extra)
