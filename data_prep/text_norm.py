"""Transcript normalisation shared by every corpus preparation, per language.

Lahjoita puhetta manual transcripts mark non-speech events with dotted tokens (``.fp`` filled
pause, ``.br`` breath, ``.ct``, ``.cough``, ``.laugh``, ``.sigh``, ``.yawn``, ``.pause``) and
contain many typos of them (``..fp``, ``.lauhg``, ``,br``, ``fp.``, ``joo.fp``); other corpora use
bracket tokens (``[oov]``, ``[spn]``, ``<unk>``). The reference pipelines removed all of these and
kept lowercase letters (Kaldi and SpeechBrain LP baselines); the ASR tokenizer of the paper confirms an
inventory of letters and ``-`` only. One function does this for every corpus so that the text
systems, the ASR and the demo corpus see the same text.

The language is a setting (:data:`LANGUAGES`): Finnish (``fi``, the default) is normalised as
above; English (``en``) keeps lowercase letters and the apostrophes inside words (``don't``,
``o'clock``), since English spells with them, and splits at hyphens. Numbers written as digits are
dropped or kept as digit tokens (``numbers``, :data:`NUMBERS`): Finnish drops them, as the LP
recipes did; English keeps them by default, since a command such as "wake me at 7" says the number.
No number is spelled out in words: that needs a number-to-words library per language, which the
project does not depend on. A preparation records its settings in ``summary.json``
(:func:`text_settings`), so that ASR text written into the corpus later is normalised the same way.
"""

import re
import unicodedata
from pathlib import Path

MARKER_NAMES = ("fp", "br", "ct", "cough", "laugh", "sigh", "yawn", "pause")
"""The LP noise-marker names: filled pause, breath, click, cough, laugh, sigh, yawn, pause."""

_BARE_MARKERS = {"fp", "br", "ct"}
"""Marker codes that are no Finnish word, so a code whose dot was forgotten is removed too."""

_BRACKETED = re.compile(r"\[[^\]]*\]|<[^>]*>")
_NAMES = "|".join(MARKER_NAMES)
# A marker glued to the previous word (``joo.fp``) or ending in a dot (``fp.``).
_GLUED = re.compile(rf"\.(?:{_NAMES})\.?(?=\W|$)|(?<![^\W])(?:{_NAMES})\.(?=\s|$)")
# Any token that starts with a dot and a letter (``.fp``, ``.lauhg``, ``..br,``), or whose dot was
# typed as a comma, colon or semicolon in front of a marker name (``,fp``).
_DOTTED = re.compile(rf"^[\"'(]*(?:\.{{1,2}}[^\W\d_]|[,:;]+(?:{_NAMES})\b)")
_EDGE_PUNCT = "\"'()[]{},;:!?"
_APOSTROPHES = re.compile(r"['\u2019\u02bc`´]")
_NOT_LETTER = re.compile(r"[^\w-]|[\d_]")
_NOT_LETTER_OR_DIGIT = re.compile(r"[^\w-]|_")
_DIGITS = re.compile(r"(\d+)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NOT_ENGLISH = re.compile(r"[^\w']|_")

LANGUAGES = ("fi", "en")
"""The languages whose transcripts are normalised: Finnish and English."""
NUMBERS = ("drop", "keep")
"""What becomes of numbers written as digits: removed, or kept as digit tokens (``7``, ``2020``)."""
DEFAULT_NUMBERS = {"fi": "drop", "en": "keep"}
"""The ``numbers`` setting of each language when none is given."""


def text_settings(language="fi", numbers=None):
    """The normalisation settings, checked: ``{"language": ..., "numbers": ...}``.

    Arguments
    ---------
    language : str
        One of :data:`LANGUAGES`.
    numbers : str, optional
        One of :data:`NUMBERS`; default: the language's (:data:`DEFAULT_NUMBERS`).

    Returns
    -------
    dict
        What a preparation writes into ``summary.json`` as ``text_normalisation``.

    Raises
    ------
    ValueError
        An unknown language or numbers setting, with the known ones.

    Example
    -------
    >>> text_settings("en")
    {'language': 'en', 'numbers': 'keep'}
    >>> text_settings()
    {'language': 'fi', 'numbers': 'drop'}
    """
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
    numbers = numbers or DEFAULT_NUMBERS[language]
    if numbers not in NUMBERS:
        raise ValueError(f"unknown numbers setting {numbers!r}: use one of {', '.join(NUMBERS)}")
    return {"language": language, "numbers": numbers}


def is_marker(token):
    """Tell whether a whitespace-separated token is a noise marker (or a typo of one).

    Arguments
    ---------
    token : str
        One lowercase token.

    Returns
    -------
    bool

    Example
    -------
    >>> [is_marker(t) for t in [".fp", "..lauhg", ",br", "fp", "kesä", "-"]]
    [True, True, True, True, False, False]
    """
    if _DOTTED.match(token):
        return True
    return token.strip(_EDGE_PUNCT + ".") in _BARE_MARKERS


def normalize_transcript(text, language="fi", numbers=None):
    """Normalise a transcript to lowercase words of letters and hyphens (Finnish) or apostrophes
    (English).

    Finnish: noise markers and their typos, bracket tokens and digits are removed; lines are joined;
    NFKC and lowercase are applied; apostrophes are deleted inside words; any other character
    that is no letter or hyphen becomes a space; hyphens at word edges (cut-off words, dashes)
    are stripped; whitespace is collapsed. English (:func:`_english`): NFKC, lowercase, bracket
    tokens removed, letters and the apostrophes inside words kept, every other character a space.
    With ``numbers="keep"`` a run of digits is a word of its own in either language.

    Arguments
    ---------
    text : str
        A raw transcript, possibly multi-line.
    language : str
        One of :data:`LANGUAGES`.
    numbers : str, optional
        One of :data:`NUMBERS`; default: the language's (:data:`DEFAULT_NUMBERS`).

    Returns
    -------
    str
        The normalised transcript; empty when nothing but markers or punctuation was there.

    Example
    -------
    >>> normalize_transcript("No .fp mä kävin\\nKesä-\\nmökillä [oov] .laugh, joo.br ..lauhg 2020!")
    'no mä kävin kesä mökillä joo'
    >>> normalize_transcript("Wake me up at 7 o’clock, DON'T be late [noise]", language="en")
    "wake me up at 7 o'clock don't be late"
    >>> normalize_transcript("Set 2 well-known alarms", language="en", numbers="drop")
    'set well known alarms'
    """
    settings = text_settings(language, numbers)
    if settings["language"] == "en":
        return _english(text, settings["numbers"] == "keep")
    keep_digits = settings["numbers"] == "keep"
    not_kept = _NOT_LETTER_OR_DIGIT if keep_digits else _NOT_LETTER
    text = unicodedata.normalize("NFKC", text).lower()
    text = _BRACKETED.sub(" ", text)
    text = _GLUED.sub(" ", text)
    words = []
    for token in text.split():
        if is_marker(token):
            continue
        token = _APOSTROPHES.sub("", token)
        if keep_digits:
            token = _DIGITS.sub(r" \1 ", _THOUSANDS.sub("", token))
        for word in not_kept.sub(" ", token).split():
            word = word.strip("-")
            if word:
                words.append(word)
    return " ".join(words)


def _english(text, keep_digits):
    """English words: lowercase letters with inner apostrophes, and digit runs if kept.

    A thousands separator between digits goes (``3,000`` is ``3000``); an apostrophe at a word's
    edge (quotes, ``students'``) goes too.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("'", _BRACKETED.sub(" ", text))
    text = _DIGITS.sub(r" \1 ", _THOUSANDS.sub("", text)) if keep_digits else _DIGITS.sub(" ", text)
    words = (word.strip("'") for word in _NOT_ENGLISH.sub(" ", text).split())
    return " ".join(word for word in words if word)


def read_transcript(path, language="fi", numbers=None):
    """Read and normalise a transcript file.

    Arguments
    ---------
    path : str or Path
        A text file (UTF-8, a byte-order mark is allowed), possibly multi-line.
    language, numbers : str, optional
        As :func:`normalize_transcript`.

    Returns
    -------
    tuple
        ``(text, reason)``: the normalised transcript and None, or None and the reason the
        file cannot be used (unreadable or not UTF-8).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        return None, f"unreadable transcript {path} ({err.strerror}): fix its permissions or remove it"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        return None, (
            f"non-UTF-8 transcript {path} (byte {err.start}): re-save it as UTF-8, "
            "e.g. iconv -f latin1 -t utf-8"
        )
    return normalize_transcript(text, language, numbers), None
