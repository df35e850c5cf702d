"""The verdict parser reads the final verdict line in either language, or gives None."""

import pytest

from gleamx.prompts.verdict import VERDICT_LINES, parse_verdict, strip_verdict, verdict_line

CASES = [
    # canonical lines
    ("Answer: Yes", True),
    ("Answer: No", False),
    ("结论：是", True),
    ("结论：否", False),
    # case, punctuation, trailing text
    ("answer: yes", True),
    ("ANSWER: NO.", False),
    ("Answer: Yes, they show the same place.", True),
    ("Answer: no - the layouts differ", False),
    ("Answer:Yes", True),
    ("Answer - No", False),
    ("结论：否。", False),
    ("结论:是。", True),
    ("结论：是同一地点", True),
    ("结论：不是同一地点", False),
    ("答案：不匹配", False),
    ("回答：匹配", True),
    # full-width characters
    ("Ａｎｓｗｅｒ：Ｙｅｓ", True),
    ("ＡＮＳＷＥＲ：ＮＯ", False),
    ("结论：是！", True),
    # markdown emphasis
    ("**Answer: Yes**", True),
    ("Answer: **No**", False),
    ("### Final answer: yes", True),
    # the final verdict line wins over earlier words in the reasoning
    ("they are not the same building ... Answer: Yes", True),
    ("No match at first glance.\nThe roads line up though.\nAnswer: Yes", True),
    ("Yes, both have a river.\nBut the junction differs.\nAnswer: No", False),
    ("道路不同吗？不是，道路一致。\n结论：是", True),
    ("两张图都有红色建筑。\n结论：否", False),
    ("Answer: No\n...on reflection...\nAnswer: Yes", True),
    ("结论：是\n结论：否", False),
    # a verdict line followed by unrelated trailing text
    ("Answer: Yes\nThank you for the question!", True),
    # bare verdicts (label-only models)
    ("Yes", True),
    ("no.", False),
    ("是", True),
    ("否。", False),
    # negations written out
    ("Answer: Not the same place", False),
    ("Answer: not a match", False),
    ("Verdict: different", False),
    ("Conclusion: same", True),
    # unparseable
    ("garbage", None),
    ("", None),
    (None, None),
    ("Answer:", None),
    ("yes and no", None),
    ("The satellite tile shows a river.", None),
    ("结论：", None),
    ("I cannot tell.", None),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) is expected


def test_enough_cases_in_both_languages():
    zh = [c for c in CASES if c[0] and any("\u4e00" <= ch <= "\u9fff" for ch in c[0])]
    assert len(CASES) >= 30 and len(zh) >= 10


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("label", [True, False])
def test_canonical_lines_round_trip(lang, label):
    line = verdict_line(label, lang)
    assert line == VERDICT_LINES[lang][label]
    assert parse_verdict(f"Some reasoning.\n{line}") is label


def test_verdict_line_rejects_unknown_language():
    with pytest.raises(ValueError, match="lang"):
        verdict_line(True, "fr")


def test_strip_verdict_removes_only_the_final_verdict():
    assert strip_verdict("Roads match.\nAnswer: Yes") == "Roads match."
    assert strip_verdict("Roads match.") == "Roads match."
