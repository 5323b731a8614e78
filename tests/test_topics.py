"""data_prep.topics: the paper's 8 topics, their fixed label order and the LP theme codes behind them."""

import pytest

from data_prep.topics import THEME_TO_TOPIC, TOPIC_NAMES, TOPICS, theme_to_topic


def test_eight_topics_in_the_order_of_their_theme_codes():
    """The label order is the order in which the theme codes 01-10 first name each topic."""
    first_seen = list(dict.fromkeys(THEME_TO_TOPIC[code] for code in sorted(THEME_TO_TOPIC)))
    assert len(TOPICS) == 8 and list(TOPICS) == first_seen


def test_the_three_media_skills_themes_are_one_topic():
    assert [code for code, topic in sorted(THEME_TO_TOPIC.items()) if topic == "media_skills"] == ["06", "07", "08"]
    assert sorted(set(THEME_TO_TOPIC.values())) == sorted(TOPICS)


def test_every_topic_has_its_papers_name():
    assert set(TOPIC_NAMES) == set(TOPICS)
    assert TOPIC_NAMES["cursed_covid"] == "The cursed Covid" and TOPIC_NAMES["rated_r"] == "Rated R"


@pytest.mark.parametrize("theme, topic", [("01", "animal_friends"), ("1", "animal_friends"), (" 10 ", "nature"),
                                          (9, "rated_r"), ("006", "media_skills")])
def test_theme_codes_with_or_without_leading_zeros(theme, topic):
    assert theme_to_topic(theme) == topic


@pytest.mark.parametrize("theme", ["11", "0", "", "x1", "media"])
def test_an_unknown_theme_has_no_topic(theme):
    assert theme_to_topic(theme) is None
