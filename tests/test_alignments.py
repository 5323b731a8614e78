"""data_prep.alignments: the words of a Praat TextGrid, checked against the audio, shared among segments."""

import pytest
from helpers import textgrid_text

from data_prep.alignments import read_alignment, read_word_tier, words_per_segment


def _short_textgrid(words, xmax):
    """The short TextGrid format of one ``words`` tier (gaps as empty intervals)."""
    intervals, t = [], 0.0
    for start, end, label in words:
        intervals += [(t, start, ""), (start, end, label)] if start > t else [(start, end, label)]
        t = end
    intervals.append((t, xmax, ""))
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", str(xmax), "<exists>", "1",
             '"IntervalTier"', '"words"', "0", str(xmax), str(len(intervals))]
    for start, end, label in intervals:
        lines += [str(start), str(end), f'"{label}"']
    return "\n".join(lines) + "\n"


def test_word_tier_is_read_from_either_format_and_bad_files_say_why(tmp_path):
    words = [(0.5, 1.0, "Mökillä"), (1.2, 1.5, ".fp"), (2.0, 2.4, "kävin")]
    files = {"long": (textgrid_text(words, 3.0), "utf-8"), "short": (_short_textgrid(words, 3.0), "utf-8"),
             "utf16": (textgrid_text(words, 3.0), "utf-16"),
             "phones": (textgrid_text(words, 3.0, tier="phones"), "utf-8"),
             "truncated": (textgrid_text(words, 3.0)[:400], "utf-8"), "empty": ("", "utf-8"),
             "markers": (textgrid_text([(0.5, 1.0, ".br"), (1.5, 2.0, ".fp")], 3.0), "utf-8")}
    for name, (text, encoding) in files.items():
        (tmp_path / f"{name}.TextGrid").write_text(text, encoding=encoding)
    for name in ("long", "short", "utf16"):
        assert read_word_tier(tmp_path / f"{name}.TextGrid") == (words, None), name
        assert read_alignment(tmp_path / f"{name}.TextGrid", 3.0) == (words, None), name
    reasons = {name: read_alignment(tmp_path / f"{name}.TextGrid", 3.0) for name in
               ("phones", "truncated", "empty", "markers", "missing")}
    assert all(words is None for words, _ in reasons.values())
    assert "no tier 'words' (tiers: phones)" in reasons["phones"][1]
    assert reasons["truncated"][1].startswith("malformed alignment")
    assert reasons["empty"][1].startswith("malformed alignment")
    assert "has no word" in reasons["markers"][1]
    assert reasons["missing"][1].startswith("unreadable alignment")
    late = read_alignment(tmp_path / "long.TextGrid", 2.0)[1]
    assert "'kävin' at 2.00-2.40 s, after the end of the 2.00 s audio" in late


def test_a_point_tier_of_that_name_is_not_a_word_alignment(tmp_path):
    text = "\n".join(['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "0", "3", "<exists>", "1",
                      '"TextTier"', '"words"', "0", "3", "1", "1.5", '"moi"']) + "\n"
    (tmp_path / "points.TextGrid").write_text(text, encoding="utf-8")
    words, reason = read_word_tier(tmp_path / "points.TextGrid")
    assert words is None and "is a point tier, not an interval tier" in reason


@pytest.mark.parametrize("durations, expected", [
    ([6.0], ["no mä kävin"]),
    ([1.0, 5.0], ["no", "mä kävin"]),
    ([1.3, 4.7], ["no mä", "kävin"]),
    ([1.25, 4.75], ["no", "mä kävin"]),  # "mä" (1.0-1.5) has its midpoint on the cut: the later segment
    ([1.0, 0.1, 4.9], ["no", "", "mä kävin"]),
])
def test_each_word_goes_to_the_segment_of_its_midpoint(durations, expected):
    words = [(0.2, 0.8, "No"), (1.0, 1.5, "mä"), (1.6, 1.8, ".fp"), (4.0, 4.6, "kävin")]
    assert words_per_segment(words, durations) == expected


def test_words_outside_the_segments_go_to_the_first_or_last():
    assert words_per_segment([(-0.4, -0.2, "ennen"), (7.0, 7.5, "jälkeen")], [3.0, 3.0]) == ["ennen", "jälkeen"]
