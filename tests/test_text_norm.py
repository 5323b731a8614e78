"""Transcript normalisation: LP noise markers and their typos, NFKC, letters/hyphen/space only."""

import doctest
import re

import pytest

from data_prep import text_norm
from data_prep.text_norm import is_marker, normalize_transcript, read_transcript


@pytest.mark.parametrize("raw, expected", [
    (".fp no .br mä .ct kävin .cough .laugh .sigh .yawn .pause", "no mä kävin"),
    ("..fp ok .lauhg .fb .brr .Laugh. .FP, (.sigh)", "ok"),  # typos of markers, as found in LP
    (",fp joo ;br :laugh ihan", "joo ihan"),  # the dot typed as another key
    ("joo.fp kesä.br ok.laugh.", "joo kesä ok"),  # marker glued to a word
    ("fp. no br mä ct", "no mä"),  # dot after, or forgotten, on the codes that are no words
    ("[oov] moi [spn] <unk> hei [noise words]", "moi hei"),
])
def test_markers_and_their_typos_are_removed(raw, expected):
    assert normalize_transcript(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Mä kävin\nmökillä\r\n\n  eilen", "mä kävin mökillä eilen"),  # lines joined
    ("ＭÖKILLÄ ﬁlmi", "mökillä filmi"),  # NFKC folds full-width forms and ligatures
    ("a\u0308iti", "äiti"),  # NFKC composes a combining diaeresis
    ("Ääkkösiä Å", "ääkkösiä å"),
    ("ei-ks se -- oo kes- kesällä -", "ei-ks se oo kes kesällä"),  # edge hyphens and dashes go
    ("no, siis... joo! 2020 covid-19 h2o", "no siis joo covid h o"),  # digits and punctuation go
    ("it's Mä’oon", "its mäoon"),  # apostrophes do not split a word
    ("...ja sit", "ja sit"),  # an ellipsis is no marker
    ("   \t\n ", ""),
    (".laugh .br\n.fp", ""),
])
def test_normalisation(raw, expected):
    assert normalize_transcript(raw) == expected


@pytest.mark.parametrize("raw", ["Mä .fp kävin, Kesä-\nmökillä [oov] joo.br 12 €!", "ＡＢ ﬁ ..x -a- b"])
def test_output_is_letters_hyphen_space_and_stable(raw):
    out = normalize_transcript(raw)
    assert re.fullmatch(r"[^\W\d_]+(?:-[^\W\d_]+)*(?: [^\W\d_]+(?:-[^\W\d_]+)*)*", out)
    assert normalize_transcript(out) == out


def test_is_marker():
    assert all(is_marker(t) for t in [".fp", "..br", ".lauhg", ",fp", "fp", "(.sigh)"])
    assert not any(is_marker(t) for t in ["kesä", "...ja", "-", "pause", "e.g."])


def test_read_transcript_multiline_and_bom(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffNo .fp\nmä kävin\n".encode())
    assert read_transcript(path) == ("no mä kävin", None)


def test_read_transcript_non_utf8_names_file_and_fix(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Mä kävin".encode("latin-1"))
    text, reason = read_transcript(path)
    assert text is None
    assert str(path) in reason and "UTF-8" in reason


def test_read_transcript_missing_file(tmp_path):
    text, reason = read_transcript(tmp_path / "nope.txt")
    assert text is None and "nope.txt" in reason


def test_doctests():
    assert doctest.testmod(text_norm).failed == 0


@pytest.mark.parametrize("raw, numbers, expected", [
    ("Wake me UP at 7 o’clock, don't be late!", "keep", "wake me up at 7 o'clock don't be late"),
    ("Wake me UP at 7 o’clock, don't be late!", "drop", "wake me up at o'clock don't be late"),
    ("'Quoted' students' co-workers [noise] <unk>", "keep", "quoted students co workers"),
    ("It costs 3,000 dollars, 5pm", "keep", "it costs 3000 dollars 5 pm"),
    ("Café naïve ＡＢ", "keep", "café naïve ab"),
    ("   \t\n ' -- ", "keep", ""),
])
def test_english_keeps_letters_inner_apostrophes_and_digits_as_told(raw, numbers, expected):
    out = normalize_transcript(raw, language="en", numbers=numbers)
    assert out == expected and normalize_transcript(out, language="en", numbers=numbers) == out


def test_finnish_can_keep_digits_and_unknown_settings_are_refused():
    assert normalize_transcript("Kesä 2020 oli covid-19 aikaa", numbers="keep") == "kesä 2020 oli covid 19 aikaa"
    assert normalize_transcript("Kesä 2020") == normalize_transcript("Kesä 2020", "fi", "drop") == "kesä"
    with pytest.raises(ValueError, match="unknown language 'sv'"):
        normalize_transcript("hej", language="sv")
    with pytest.raises(ValueError, match="unknown numbers setting 'spell'"):
        text_norm.text_settings("en", "spell")
