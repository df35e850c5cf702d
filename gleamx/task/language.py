"""Which of the task's languages a text is written in, by its script: Chinese (``zh``) is Han characters, English
(``en``) Latin letters. A check where content enters (an annotation, a review edit), not a language model: a
Chinese explanation may name a road "G4" and an English one may quote a sign, so each allows a little of the other.
"""

from __future__ import annotations

import re

from gleamx.task.verdict import strip_verdict

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile("[A-Za-z]")
LATIN_PER_WORD = 5  # a Han character is about a word; an English word about five letters
LANG_NAMES = {"en": "English", "zh": "Chinese"}


def script_counts(text: str) -> tuple[int, int]:
    """``(Han characters, Latin letters)`` in ``text``."""
    return len(_HAN.findall(text)), len(_LATIN.findall(text))


def written_in(text: str, lang: str) -> bool:
    """Whether ``text`` (its verdict line left out: that is checked on its own) reads as ``lang``: for ``zh`` more
    Han characters than Latin words; for ``en`` Latin letters and at most one Han character per four words."""
    han, latin = script_counts(strip_verdict(text))
    if lang == "zh":
        return han > 0 and han >= latin / LATIN_PER_WORD
    return latin > 0 and han * 4 * LATIN_PER_WORD <= latin


__all__ = ["LANG_NAMES", "script_counts", "written_in"]
