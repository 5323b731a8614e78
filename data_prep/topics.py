"""The topic inventory of Lahjoita puhetta: the only place topic names live.

The paper (Sec. II) uses 8 topics; the LP metadata column ``theme`` has 10 codes, the three
"Mediataidot" (media skills) themes 06/07/08 being merged into one topic. The label order below
is the order of the theme codes and is written to ``topics.txt`` by every preparation, so every
stage of every system shares one label order and a classifier a later stage inherits keeps the
meaning of its rows (see docs/published_recipes.md, 'Label order from first appearance').
"""

TOPICS = (
    "animal_friends",
    "sports_moments",
    "my_surroundings",
    "summer",
    "cursed_covid",
    "media_skills",
    "rated_r",
    "nature",
)
"""The 8 topic labels, in the fixed label order."""

TOPIC_NAMES = {
    "animal_friends": "Animal friends",
    "sports_moments": "Sports moments",
    "my_surroundings": "My surroundings",
    "summer": "Summer",
    "cursed_covid": "The cursed Covid",
    "media_skills": "Media skills",
    "rated_r": "Rated R",
    "nature": "Nature",
}
"""The paper's English name of each topic (Sec. II), for reports."""

THEME_TO_TOPIC = {
    "01": "animal_friends",  # Eläinystävät
    "02": "sports_moments",  # Urheiluhetket
    "03": "my_surroundings",  # Lähelläni juuri nyt
    "04": "summer",  # Sukella kesään
    "05": "cursed_covid",  # Kirottu korona
    "06": "media_skills",  # Mediataidot lukio
    "07": "media_skills",  # Mediataidot 8-9 lk.
    "08": "media_skills",  # Mediataidot 4-6 lk.
    "09": "rated_r",  # K-18
    "10": "nature",  # Luonto, sää ja mää
}
"""LP metadata ``theme`` code (two digits) -> topic label."""


def theme_to_topic(theme):
    """Map a raw LP ``theme`` value to a topic label.

    Arguments
    ---------
    theme : str
        The metadata value, e.g. ``"06"``; a value written without its leading zero (``"6"``)
        is accepted too.

    Returns
    -------
    str or None
        The topic label, or None when the theme is unknown.

    Example
    -------
    >>> theme_to_topic("7")
    'media_skills'
    >>> theme_to_topic("11") is None
    True
    """
    code = str(theme).strip()
    if code.isdigit():
        code = f"{int(code):02d}"
    return THEME_TO_TOPIC.get(code)
