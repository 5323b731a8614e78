"""Transcript normalisation shared by every corpus preparation.

Lahjoita puhetta manual transcripts mark non-speech events with dotted tokens (``.fp`` filled
pause, ``.br`` breath, ``.ct``, ``.cough``, ``.laugh``, ``.sigh``, ``.yawn``, ``.pause``) and
contain many typos of them (``..fp``, ``.lauhg``, ``,br``, ``fp.``, ``joo.fp``); other corpora use
bracket tokens (``[oov]``, ``[spn]``, ``<unk>``). The reference pipelines removed all of these and
kept lowercase letters (Kaldi and SpeechBrain LP baselines); the ASR tokenizer of the paper confirms an
inventory of letters and ``-`` only. One function does this for every corpus so that the text
systems, the ASR and the demo corpus see the same text.
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


def normalize_transcript(text):
    """Normalise a transcript to lowercase words of letters and hyphens.

    Noise markers and their typos, bracket tokens and digits are removed; lines are joined;
    NFKC and lowercase are applied; apostrophes are deleted inside words; any other character
    that is no letter or hyphen becomes a space; hyphens at word edges (cut-off words, dashes)
    are stripped; whitespace is collapsed.

    Arguments
    ---------
    text : str
        A raw transcript, possibly multi-line.

    Returns
    -------
    str
        The normalised transcript; empty when nothing but markers or punctuation was there.

    Example
    -------
    >>> normalize_transcript("No .fp mä kävin\\nKesä-\\nmökillä [oov] .laugh, joo.br ..lauhg 2020!")
    'no mä kävin kesä mökillä joo'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _BRACKETED.sub(" ", text)
    text = _GLUED.sub(" ", text)
    words = []
    for token in text.split():
        if is_marker(token):
            continue
        token = _APOSTROPHES.sub("", token)
        for word in _NOT_LETTER.sub(" ", token).split():
            word = word.strip("-")
            if word:
                words.append(word)
    return " ".join(words)


def read_transcript(path):
    """Read and normalise a transcript file.

    Arguments
    ---------
    path : str or Path
        A text file (UTF-8, a byte-order mark is allowed), possibly multi-line.

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
    return normalize_transcript(text), None
