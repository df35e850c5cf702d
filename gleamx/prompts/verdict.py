"""The verdict line that ends every GLEAM-X answer, and a parser for it.

Every answer ends with a fixed line: ``Answer: Yes`` / ``Answer: No`` in English,
``结论：是`` / ``结论：否`` in Chinese. The parser reads the *last* verdict line of
a generation (reasoning often says "no" before concluding "yes"), accepts either
language, any case, full-width characters, markdown emphasis and trailing text,
and returns ``None`` when no verdict can be read, so that invalid outputs are
counted rather than silently mapped to "no".
"""

from __future__ import annotations

import re
import unicodedata

VERDICT_LINES: dict[str, dict[bool, str]] = {
    "en": {True: "Answer: Yes", False: "Answer: No"},
    "zh": {True: "结论：是", False: "结论：否"},
}


def verdict_line(label: bool, lang: str) -> str:
    """The canonical final line for ``label`` in ``lang`` (``en`` or ``zh``)."""
    try:
        return VERDICT_LINES[lang][bool(label)]
    except KeyError:
        raise ValueError(f"lang: expected one of {sorted(VERDICT_LINES)}, got {lang!r}") from None


# Verdict words after a marker. Negative forms come first so "不是" never reads as "是"
# and "not the same" never reads as a bare positive.
_NEG_EN = r"no|false|not\s+(?:the\s+)?(?:same|a\s+match|matching|match)|different|mismatch|non[- ]?match"
_POS_EN = r"yes|true|same|match(?:es|ing)?"
_NEG_ZH = r"否|不是|不匹配|不相同|不同|非同一"
_POS_ZH = r"是|匹配|相同|一致|同一"

# A marker followed by a verdict word. NFKC has already turned "：" into ":".
_MARKER = re.compile(
    r"(?:^|[\s*_#>(\[])(?:final\s+)?(?:answer|verdict|conclusion)\s*[:\-=]?\s*[*_\"'`(\[]*\s*"
    rf"(?:(?P<neg_en>{_NEG_EN})|(?P<pos_en>{_POS_EN}))\b"
    r"|(?:结论|答案|回答|最终答案|判断|结果)\s*[:\-=]?\s*[*_\"'`(\[「]*\s*"
    rf"(?:(?P<neg_zh>{_NEG_ZH})|(?P<pos_zh>{_POS_ZH}))",
    re.IGNORECASE,
)
# A line holding only a verdict word (e.g. a label-only model that answers "Yes.").
_BARE = re.compile(
    rf"^[\s*_\"'`(\[「]*(?:(?P<neg>{_NEG_EN}|{_NEG_ZH})|(?P<pos>{_POS_EN}|{_POS_ZH}))[\s.!。！,，*_\"'`)\]」]*$",
    re.IGNORECASE,
)


def _normalise(text: str) -> str:
    # NFKC folds full-width letters and punctuation (Ｙｅｓ, ：) into ASCII.
    return unicodedata.normalize("NFKC", text)


def parse_verdict(text: str | None) -> bool | None:
    """``True`` (same place), ``False`` (different) or ``None`` (no readable verdict).

    The last line that carries a verdict marker wins; if no line has a marker,
    a final line that is a bare yes/no (or 是/否) is accepted.
    """
    if not text:
        return None
    lines = [ln for ln in _normalise(text).splitlines() if ln.strip()]
    for line in reversed(lines):
        matches = list(_MARKER.finditer(line))
        if matches:
            m = matches[-1]
            return m.group("pos_en") is not None or m.group("pos_zh") is not None
    if lines:
        m = _BARE.match(lines[-1])
        if m:
            return m.group("pos") is not None
    return None


def strip_verdict(text: str) -> str:
    """``text`` without a trailing verdict line (if its last line parses as one)."""
    lines = text.rstrip().splitlines()
    if lines and parse_verdict(lines[-1]) is not None:
        lines = lines[:-1]
    return "\n".join(lines).rstrip()
