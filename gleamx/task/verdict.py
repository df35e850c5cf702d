"""The verdict line that ends every GLEAM-X answer, and a parser for it that never guesses.

Every answer ends with a fixed line: ``Answer: Yes`` / ``Answer: No`` in English,
``结论：是`` / ``结论：否`` in Chinese. :func:`parse_verdict` returns ``True``
(same place), ``False`` (different places) or ``None`` (no clear verdict). ``None``
is counted as an invalid answer by the metrics, never mapped to "no", so a verdict
the parser cannot be sure of costs the model accuracy instead of being guessed.

Rules (``tests/test_verdict.py`` holds a case, with its reason, for each):

1. **Normalised first.** NFKC folds full-width forms (``Ａｎｓｗｅｒ：Ｙｅｓ``, ``：``,
   ``（）``) to ASCII; case is ignored; markdown and LaTeX wrappers (``*``, ``_``,
   backticks, ``#``, ``>``, ``\\boxed{}``, ``\\text{}``, ``$``) are dropped.
2. **Verdict line.** A line holding a marker, ``Answer`` / ``Final answer`` /
   ``Verdict`` / ``Conclusion`` or ``结论`` / ``最终结论`` / ``答案`` / ``最终答案`` /
   ``回答`` / ``判断`` / ``结果``, followed by a separator (``:``, ``：``, ``-``, ``=``,
   a dash). A marker without a separator is text: "I cannot answer no matter ..." is
   not ``Answer: No``, and "The answer is yes" is not read either.
   When the marker ends the line (``**Answer:**`` then ``Yes`` below), the next
   non-empty line holds the verdict.
3. **The last verdict line counts.** Earlier verdict lines (drafts, self-corrections:
   ``Answer: No`` ... ``Answer: Yes``) are ignored. If the last one holds no clear
   verdict, the answer is ``None``: an earlier verdict line is *not* used instead.
   Several markers on that line (``Answer: Yes / 结论：是``) must all agree.
4. **The verdict word comes first** after the separator (an optional quote, bracket
   or ``definitely``/``clearly``/``certainly``/``absolutely`` may precede it):
   yes: ``yes``, ``true``, ``same`` / ``the same place``, ``match`` / ``a match``,
   ``是``, ``是的``, ``是同一地点``, ``同一地点``, ``相同``, ``一致``, ``匹配``;
   no: ``no``, ``false``, ``not the same (place)``, ``not a match``, ``no match``,
   ``non-match``, ``mismatch``, ``different``, ``否``, ``不是``, ``不是同一地点``,
   ``并非同一地点``, ``不同``, ``不相同``, ``不一致``, ``不匹配``.
   Anything else (``Answer: They look alike``, ``Answer: N/A``, a refusal) is ``None``.
5. **Mixed language is accepted** when the verdict is unambiguous: ``Answer: 是``
   reads yes and ``结论：No`` reads no. The verdict words form a closed set in both
   languages, so the verdict is clear; whether the model answered in the language
   asked for is a separate question, not the verdict's. Mixed-language *conflicts*
   (``Answer: Yes 否``) fall under rule 6c.
6. **Trailing text** after the verdict word is allowed (``Yes.``, ``Yes, they match.``,
   ``No - the layouts differ``, ``是，两图为同一地点``) unless, anywhere after the marker,
   it (a) offers both options or asks: ``Yes or No``, ``Yes/No``, ``是/否``, ``是或否``,
   ``是否``, ``是不是``, ``与否``, ``whether``; (b) hedges: ``probably``, ``maybe``,
   ``perhaps``, ``likely``, ``possibly``, ``I think``, ``not sure``, ``uncertain``,
   ``unclear``, ``cannot determine/tell``, ``hard to tell``, ``可能``, ``也许``,
   ``或许``, ``大概``, ``应该``, ``似乎``, ``好像``, ``不确定``, ``无法判断``, ``难以确定``
   ... (so ``Probably yes`` and ``Yes, probably`` are both ``None``: a hedged verdict is
   not a verdict; confidence is measured separately, from P(yes)); or (c) contradicts
   the verdict word: the opposite word standing alone (``Yes, no.``, ``是，否``) or an
   opposite verdict phrase (``No, they are the same place``, ``Yes, but they are not the
   same place``, ``Yes, they do not match``, ``No, they're the same.``, ``是，但不是同一地点``,
   ``否，两者是同一地点``, ``是，但不匹配``). English phrases must be about the two images
   ("they", "both", "the images", or a place noun: "same place", "different locations"),
   so a detail such as ``Yes, though the roof colours are not the same.`` stays yes; Chinese
   omits subjects, so ``不匹配`` and ``不是同一…`` count on their own. A consistent phrase
   (``No, not the same place``) is fine.
7. **Text after the verdict line** is ignored (``Thank you!``), unless a later line
   starts with a verdict of its own that disagrees (``Answer: Yes`` then ``No, wait.``):
   that is ``None``.
8. **No marker anywhere:** the last non-empty line may be a bare verdict, the verdict
   word alone with punctuation or emphasis (``Yes``, ``no.``, ``**No**``, ``是``,
   ``否。``, ``Not the same place.``), as label-only models answer. Bare words with
   more text (``Yes, the roads line up.``, ``yes and no``) are ``None``: without a
   marker, a sentence that starts with "No," is not a verdict.
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


# All patterns run on normalised text: NFKC (so "：" is ":"), lowercased, markdown dropped.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_EN_PLACE = r"(?:place|location|area|site|spot|scene|region)s?"
_ZH_PLACE = r"(?:个|处)?(?:地点|地方|位置|区域|场景|地区)"
# 同一, 同一个, 同一地点, 同一个地方
_ZH_SAME = r"同一(?:(?:个|处)?(?:地点|地方|位置|区域|场景|地区)|个|处)?"

# The verdict word at the head of a verdict. Negative forms come first so "不是" never
# reads as "是" and "not the same" never as "same".
_EN_NEG = (
    rf"not\s+(?:(?:in|at|from|of)\s+)?(?:the\s+)?same(?:\s+{_EN_PLACE})?"
    r"|(?:not\s+(?:a\s+)?|no\s+|non-?\s*)match(?:es|ed|ing)?|mismatch(?:ed)?"
    rf"|different(?:\s+{_EN_PLACE})?|no|false"
)
_EN_POS = rf"yes|true|(?:the\s+)?same(?:\s+{_EN_PLACE})?|(?:a\s+)?match(?:es|ed|ing)?"
_ZH_NEG = (
    rf"否|(?:不是|并非|并不是)(?:{_ZH_SAME})?|(?:非|不在){_ZH_SAME}|不匹配|不相同|不一致|不同(?:的)?(?:{_ZH_PLACE})?"
)
_ZH_POS = rf"是(?:的)?(?:{_ZH_SAME})?|{_ZH_SAME}|匹配|相同(?:的)?(?:{_ZH_PLACE})?|一致"
_HEAD = re.compile(
    rf"""[\s"'(\[{{<«“‘「『【]*(?:(?:definitely|clearly|certainly|absolutely)\s*,?\s*)?
    (?:(?P<neg>(?:{_EN_NEG})(?![a-z0-9])|(?:{_ZH_NEG})(?![{_CJK}]))
      |(?P<pos>(?:{_EN_POS})(?![a-z0-9])|(?:{_ZH_POS})(?![{_CJK}])))""",
    re.VERBOSE,
)

# A marker and its separator. English markers need a word boundary before them.
_MARKER = re.compile(
    r"(?:(?<![a-z0-9])(?:(?:final|my|the)\s+)?(?:answer|verdict|conclusion)"
    r"|(?:最终)?(?:结论|答案|回答|判断|结果)(?:\s*(?:是|为))?)"
    r"\s*[:=\-–—]+"
)

# Rule 6a: both options offered, or a question instead of a verdict.
_BOTH = re.compile(
    r"\b(?:yes|no|true|false)\s*(?:/|\\|\||\bor\b|\band/or\b)\s*(?:yes|no|true|false)\b|\bwhether\b"
    r"|是否|是不是|与否|是还是|还是不是|(?:是|否)\s*[/\\|或]\s*(?:是|否|不是)"
)
# Rule 6b: hedges and "cannot decide".
_DECIDE_EN = (
    r"(?:determine|determined|tell|say|decide|decided|judge|verify|confirm|conclude|be\s+sure|be\s+certain|know)"
)
_DECIDE_ZH = r"(?:判断|确定|确认|判定|断定|肯定|得出|分辨|区分|辨别|识别|看出|得知|回答)"
_HEDGE = re.compile(
    r"\b(?:maybe|perhaps|probabl[ye]|possibl[ye]|likely|unlikely|presumably|seemingly|might|may\s+be|could\s+be"
    r"|seems?\s+(?:to|like)|appears?\s+to|i\s+(?:think|guess|believe|suspect)|not\s+(?:sure|certain|confident)"
    r"|unsure|uncertain|unclear|unknown|undetermined|indeterminate|inconclusive|undecided|ambiguous"
    r"|(?:hard|difficult|impossible)\s+to\s+" + _DECIDE_EN
    + r"|(?:can\s*not|can't|unable\s+to|could\s*n[o']t)\s+(?:be\s+)?" + _DECIDE_EN + r")\b"
    r"|(?<!不)可能|也许|或许|大概|似乎|好像|应该|估计|疑似|待定|未知|不知道|不清楚|不好说|说不准|拿不准|不确定"
    r"|(?:无法|不能|难以|不好|没法|不敢)" + _DECIDE_ZH
)
# Rule 6c: phrases that state a verdict inside trailing text. English needs a subject that can
# only be the two images ("they", "both", "the images") or a place noun, so "the roof colours are
# not the same" is a detail, not a verdict; Chinese omits subjects, so 不匹配 counts on its own.
_EN_SUBJ = r"\b(?:they|both|images|views|pictures|photos|these|it)"
_EN_BE = r"(?:'re|'s|\s+are|\s+is|\s+do|\s+does)?"
_END = r"(?=\s*(?:[^\w\s]|$))"
_NEG_CUE = re.compile(
    rf"(?:\bnot|n't)\s+(?:(?:in|at|from|of|showing|depicting)\s+)?(?:the\s+)?same\s+{_EN_PLACE}\b"
    rf"|{_EN_SUBJ}{_EN_BE}\s*(?:not|n't)(?:\s+(?:the\s+)?same{_END}|\s+(?:a\s+)?match(?:es|ed|ing)?\b|{_END})"
    rf"|\bno\s+match{_END}|\bdifferent\s+{_EN_PLACE}\b"
    rf"|(?:不是|并非|并不是|非|不在|不属于|不为)(?:在)?同一|不同(?:的)?{_ZH_PLACE}|两(?:个|处)不同|不匹配"
)
_POS_CUE = re.compile(
    rf"\bsame\s+{_EN_PLACE}\b|{_EN_SUBJ}(?:'re|'s|\s+are|\s+is)\s+(?:the\s+)?same{_END}"
    rf"|{_EN_SUBJ}\s+(?:do\s+|does\s+)?match(?:es)?\b|\b(?:is|are|it's)\s+a\s+match\b"
    rf"|同一{_ZH_PLACE}|是同一|(?:两者|二者|两图|两张图|两幅图|两张图像|两幅图像)(?:是)?(?:匹配|相同|一致)"
)
# Rule 6c: the opposite verdict word standing alone.
_LONE_NO = re.compile(
    rf"\b(?:no|false)\b(?!\s+[a-z0-9])|(?<![{_CJK}])(?:否|不是)(?![{_CJK}])|(?:或|或者|还是)否"
)
_LONE_YES = re.compile(rf"\b(?:yes|true)\b|(?<![{_CJK}])是(?:的)?(?![{_CJK}])|(?:或|或者|还是)是")
# A bare verdict line (rule 8), and a later line that opens with a verdict (rule 7).
_TAIL = r"""[\s"'.,;:!?)\]}>»”’」』】。，；：！？、…~-]*"""
_BARE_END = re.compile(_TAIL + r"$")
_OPENS = re.compile(r"""\s*(?:$|[.,;:!?)\]}>»”’」』】。，；：！？、…~-])""")

_MARKDOWN = re.compile(r"\\(?:boxed|text|textbf|mathrm)\s*\{([^{}]*)\}|[*_`$]")
_LEADING = re.compile(r"^[\s#>]+")


def _normalise(line: str) -> str:
    # NFKC folds full-width letters and punctuation (Ｙｅｓ, ：, （）) into ASCII.
    line = unicodedata.normalize("NFKC", line).replace("\u2019", "'").lower()
    line = _MARKDOWN.sub(lambda m: m.group(1) or "", line)
    return _LEADING.sub("", line).rstrip()


def _head(text: str) -> tuple[bool | None, str]:
    """The verdict word that opens ``text`` and the text after it, or ``(None, text)``."""
    m = _HEAD.match(text)
    if not m:
        return None, text
    return m.group("pos") is not None, text[m.end():]


def _read(content: str) -> bool | None:
    """The verdict a marker's content states (rules 4-6), or ``None``."""
    if _BOTH.search(content) or _HEDGE.search(content):
        return None
    verdict, rest = _head(content)
    if verdict is None:
        return None
    if verdict:
        if _LONE_NO.search(rest) or _NEG_CUE.search(rest):
            return None
    else:
        if _LONE_YES.search(rest) or _POS_CUE.search(_NEG_CUE.sub(" ", rest)):
            return None
    return verdict


def _opens_with_verdict(line: str) -> bool | None:
    """The verdict a line starts with (``No.``, ``No, wait``, ``否，``), for rule 7."""
    verdict, rest = _head(line)
    if verdict is None or not _OPENS.match(rest):
        return None
    return verdict


def parse_verdict(text: str | None) -> bool | None:
    """``True`` (same place), ``False`` (different) or ``None`` (no clear verdict).

    See the module docstring for the rules: the last line with a marker (``Answer:``,
    ``结论：``, ...) counts, its verdict word must come first, either language's words
    are read, and hedged, both-options, contradicted or refused verdicts are ``None``.
    Without any marker, a last line holding only ``Yes``/``No``/``是``/``否`` counts.
    """
    if not text:
        return None
    lines = [ln for ln in map(_normalise, text.splitlines()) if ln]
    if not lines:
        return None
    last = None
    for i in range(len(lines) - 1, -1, -1):
        if _MARKER.search(lines[i]):
            last = i
            break
    if last is None:  # rule 8: a bare verdict as the last line
        verdict, rest = _head(lines[-1])
        return verdict if verdict is not None and _BARE_END.fullmatch(rest) else None

    line = lines[last]
    markers = list(_MARKER.finditer(line))
    contents = [line[m.end():(markers[k + 1].start() if k + 1 < len(markers) else len(line))]
                for k, m in enumerate(markers)]
    after = lines[last + 1:]
    if not contents[-1].strip() and after:  # "**Answer:**" with the verdict on the next line
        contents[-1], after = after[0], after[1:]
    contents = [c for c in contents if c.strip(" \t-–—:=")]
    if not contents:
        return None
    verdicts = {_read(c) for c in contents}
    if len(verdicts) != 1:
        return None
    verdict = verdicts.pop()
    if verdict is None:
        return None
    for later in after:  # rule 7: a later line opening with the opposite verdict
        said = _opens_with_verdict(later)
        if said is not None and said != verdict:
            return None
    return verdict


def verdict_problem(text: str, label: bool | None = None) -> str | None:
    """What is wrong with the verdict of an explanation entering a dataset (a file, a review edit, an import), or
    ``None``: a marked verdict line (``Answer:``, ``结论：``, ...) that :func:`parse_verdict` cannot read
    (``Answer: Nor``), or a clear one that disagrees with ``label``. An explanation without a verdict line
    passes: label-only and free-text explanations are data too. Every entry point checks with this one rule."""
    said = parse_verdict(text)
    if said is None:
        if any(_MARKER.search(line) for line in map(_normalise, text.splitlines())):
            return ("its verdict line is not a clear verdict (expected Answer: Yes or Answer: No, "
                    "结论：是 or 结论：否, as the last marked line)")
        return None
    if label is not None and said != label:
        return f"its verdict line says {'yes' if said else 'no'} but label is {str(label).lower()}"
    return None


def strip_verdict(text: str) -> str:
    """``text`` without a trailing verdict line (if its last line parses as one)."""
    lines = text.rstrip().splitlines()
    if lines and parse_verdict(lines[-1]) is not None:
        lines = lines[:-1]
    return "\n".join(lines).rstrip()
