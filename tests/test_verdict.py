"""The verdict parser reads the final verdict line in either language, or gives None: it never guesses.

Each case is (reason id, model output, expected). The reason ids name the rule in the
``gleamx.task.verdict`` docstring that decides the case; the outputs are written the
way models answer: markdown, full-width characters, trailing reasons, refusals, echoes of
the prompt's "Yes or No", hedges.
"""

import pytest

from gleamx.task.verdict import VERDICT_LINES, parse_verdict, strip_verdict, verdict_line

YES, NO, INVALID = True, False, None

CASES = [
    # --- canonical lines and what must keep working -------------------------------------------
    ("canonical-en-yes", "Answer: Yes", YES),
    ("canonical-en-no", "Answer: No", NO),
    ("canonical-zh-yes", "结论：是", YES),
    ("canonical-zh-no", "结论：否", NO),
    ("case-insensitive", "answer: yes", YES),
    ("case-insensitive-upper", "ANSWER: NO.", NO),
    ("no-space-after-colon", "Answer:Yes", YES),
    ("dash-separator", "Answer - No", NO),
    ("ascii-colon-zh", "结论:是。", YES),
    ("final-answer", "Final answer: NO", NO),
    ("verdict-marker", "Verdict: different", NO),
    ("conclusion-marker", "Conclusion: same", YES),
    ("zh-answer-marker", "答案：不匹配", NO),
    ("zh-reply-marker", "回答：匹配", YES),
    ("zh-marker-with-shi", "结论是：否", NO),
    # full-width characters
    ("fullwidth-en", "Ａｎｓｗｅｒ：Ｙｅｓ", YES),
    ("fullwidth-en-upper", "ＡＮＳＷＥＲ：ＮＯ", NO),
    ("fullwidth-bang-zh", "结论：是！", YES),
    ("fullwidth-parens-zh", "结论：是（两图为同一地点）", YES),
    # markdown and LaTeX wrappers
    ("md-bold-line", "**Answer: Yes**", YES),
    ("md-bold-word", "Answer: **No**", NO),
    ("md-bold-marker", "**Answer:** Yes", YES),
    ("md-heading", "### Final answer: yes", YES),
    ("md-quote-zh", "> **结论：** 否", NO),
    ("md-code", "`Answer: No`", NO),
    ("md-marker-alone-then-word", "**Answer:**\nYes", YES),
    ("latex-boxed", "Final Answer: $\\boxed{No}$", NO),
    # trailing punctuation and short consistent trailing text
    ("trail-period", "Answer: Yes.", YES),
    ("trail-consistent-en", "Answer: Yes, they show the same place.", YES),
    ("trail-they-match", "Answer: Yes, they match.", YES),
    ("trail-reason-en", "Answer: no - the layouts differ", NO),
    ("trail-consistent-negation", "Answer: No, not the same place.", NO),
    ("trail-consistent-do-not-match", "Answer: No, they do not match.", NO),
    ("trail-no-doubt", "Answer: Yes, no doubt about it.", YES),
    ("trail-detail-not-a-verdict", "Answer: Yes, though the roof colours are not the same.", YES),
    ("trail-detail-no-river", "Answer: No. The satellite tile has no river.", NO),
    ("trail-consistent-zh", "结论：否，两张图不是同一地点。", NO),
    ("trail-zh-yes-de", "结论：是的，道路和建筑的布局一致。", YES),
    ("head-phrase-zh-same-place", "结论：是同一地点", YES),
    ("head-phrase-zh-not-same-place", "结论：不是同一个地方", NO),
    ("head-phrase-en-not-same-place", "Answer: Not the same place", NO),
    ("head-phrase-en-not-a-match", "Answer: not a match", NO),
    ("intensifier", "Answer: Definitely yes.", YES),
    # the last verdict line counts; text after it is ignored unless it disagrees
    ("last-line-wins-over-reasoning", "they are not the same building ... Answer: Yes", YES),
    ("reasoning-then-verdict", "No match at first glance.\nThe roads line up though.\nAnswer: Yes", YES),
    ("reasoning-says-yes-verdict-no", "Yes, both have a river.\nBut the junction differs.\nAnswer: No", NO),
    ("reasoning-zh", "道路不同吗？不是，道路一致。\n结论：是", YES),
    ("self-correction-en", "Answer: No\n...on reflection, the river bends the same way...\nAnswer: Yes", YES),
    ("self-correction-zh", "结论：是\n再看一遍，建筑颜色不同。\n结论：否", NO),
    ("two-markers-agree", "Answer: Yes / 结论：是", YES),
    ("trailing-thanks", "Answer: Yes\nThank you for the question!", YES),
    ("trailing-agreeing-bare", "Answer: No\nNo.", NO),
    ("trailing-no-problem", "Answer: Yes\nNo problem, happy to help.", YES),
    # mixed language: accepted when unambiguous (rule 5)
    ("mixed-en-marker-zh-yes", "Answer: 是", YES),
    ("mixed-en-marker-zh-no", "Answer: 否", NO),
    ("mixed-zh-marker-en-yes", "结论：Yes", YES),
    ("mixed-zh-marker-en-no", "结论：No.", NO),
    ("mixed-agreeing-words", "Answer: Yes（是）", YES),
    # bare verdicts, label-only models (rule 8)
    ("bare-yes", "Yes", YES),
    ("bare-no-period", "no.", NO),
    ("bare-zh-yes", "是", YES),
    ("bare-zh-no", "否。", NO),
    ("bare-bold", "**No**", NO),
    ("bare-phrase", "Not the same place.", NO),
    ("bare-after-reasoning", "The roads and the river line up.\nYes.", YES),
    # --- both options offered (rule 6a) -------------------------------------------------------
    ("both-yes-or-no", "Yes or No", INVALID),
    ("both-after-marker", "Answer: Yes or No", INVALID),
    ("both-slash", "Answer: Yes/No", INVALID),
    ("both-zh-slash", "结论：是/否", INVALID),
    ("both-zh-huo", "结论：是或否", INVALID),
    ("both-zh-shifou", "结论：是否相同无法判断", INVALID),
    ("both-zh-shibushi", "结论：是不是同一地点还需要更多信息", INVALID),
    ("both-zh-yufou", "结论：匹配与否取决于拍摄时间", INVALID),
    ("both-prompt-echo-en", "End with a final line that is exactly 'Answer: Yes' or 'Answer: No'.", INVALID),
    ("both-prompt-echo-zh", "最后一行只写「结论：是」或「结论：否」。", INVALID),
    ("both-yes-and-no", "yes and no", INVALID),
    ("both-whether", "Answer: It depends on whether the tower was built after the photo.", INVALID),
    # --- hedged or undecided (rule 6b) --------------------------------------------------------
    ("hedge-probably-before", "Answer: Probably yes", INVALID),
    ("hedge-probably-after", "Answer: Yes, probably.", INVALID),
    ("hedge-likely", "Final answer: likely no", INVALID),
    ("hedge-maybe", "Answer: maybe", INVALID),
    ("hedge-i-think", "Answer: No, I think.", INVALID),
    ("hedge-not-sure", "Answer: Yes (not sure)", INVALID),
    ("hedge-unclear", "Answer: unclear", INVALID),
    ("hedge-cannot-determine", "Answer: cannot determine", INVALID),
    ("hedge-hard-to-tell", "Answer: Yes, though it is hard to tell from this angle.", INVALID),
    ("hedge-zh-buqueding", "结论：不确定", INVALID),
    ("hedge-zh-wufa", "结论：无法判断", INVALID),
    ("hedge-zh-keneng", "结论：可能是同一地点", INVALID),
    ("hedge-zh-yinggai", "结论：是，应该是同一地点", INVALID),
    ("hedge-zh-sihu", "结论：否（似乎不同）", INVALID),
    # --- refusals and markers without a verdict word (rule 4) --------------------------------
    ("refusal-en", "I'm sorry, but I can't determine whether these images show the same place.", INVALID),
    ("refusal-after-marker", "Answer: I'm sorry, I can't help with that.", INVALID),
    ("refusal-zh", "抱歉，我无法判断这两张图是否为同一地点。", INVALID),
    ("refusal-zh-marker", "结论：抱歉，信息不足。", INVALID),
    ("marker-na", "Answer: N/A", INVALID),
    ("marker-sentence-not-word", "Answer: The two images show the same junction.", INVALID),
    ("marker-zh-sentence", "结论：两张图的道路走向相同", INVALID),
    ("marker-empty-en", "Answer:", INVALID),
    ("marker-empty-zh", "结论：", INVALID),
    ("word-needs-boundary-en", "Answer: Nothing lines up.", INVALID),
    ("word-needs-boundary-zh", "结论：非常相似", INVALID),
    ("zh-shi-not-a-verdict", "结论：是个很难的问题", INVALID),
    ("marker-needs-separator", "I cannot answer no matter how long I look.", INVALID),
    # --- contradicted in the verdict line (rule 6c) -------------------------------------------
    ("contradict-no-same-place", "Answer: No, they are the same place", INVALID),
    ("contradict-yes-not-same", "Answer: Yes, but they are not the same place.", INVALID),
    ("contradict-yes-do-not-match", "Answer: Yes, they do not match.", INVALID),
    ("contradict-yes-different-locations", "Answer: Yes - different locations.", INVALID),
    ("contradict-no-they-match", "Answer: No, they match.", INVALID),
    ("contradict-no-they-are-the-same", "Answer: No, they're the same.", INVALID),
    ("contradict-zh-bupipei", "结论：是，但不匹配", INVALID),
    ("contradict-lone-word-en", "Answer: Yes, no.", INVALID),
    ("contradict-mixed-words", "Answer: Yes 否", INVALID),
    ("contradict-zh-not-same", "结论：是，但不是同一地点", INVALID),
    ("contradict-zh-same", "结论：否，两者是同一地点", INVALID),
    ("contradict-zh-lone", "结论：否，是", INVALID),
    ("contradict-two-markers-one-line", "Answer: Yes. Answer: No.", INVALID),
    ("last-marker-line-has-no-verdict", "Answer: Yes\nAnswer: I'm not sure.", INVALID),
    # --- a conflicting verdict after the verdict line (rule 7) --------------------------------
    ("after-line-no-wait", "Answer: Yes\nNo, wait: the river is on the other side.", INVALID),
    ("after-line-bare-no", "Answer: Yes\n\nNo.", INVALID),
    ("after-line-zh", "结论：是\n否。", INVALID),
    ("after-marker-alone-conflict", "**Answer:**\nYes\nNo", INVALID),
    # --- no verdict at all --------------------------------------------------------------------
    ("garbage", "garbage", INVALID),
    ("empty", "", INVALID),
    ("none", None, INVALID),
    ("whitespace", "  \n\t\n", INVALID),
    ("description-only", "The satellite tile shows a river.", INVALID),
    ("i-cannot-tell", "I cannot tell.", INVALID),
    ("bare-word-with-sentence", "Yes, the roads line up.", INVALID),
    ("bare-no-with-sentence", "No, the layouts differ.", INVALID),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=r) for r, t, e in CASES])
def test_parse_verdict(text, expected):
    assert parse_verdict(text) is expected


def test_the_table_is_large_bilingual_and_has_unique_reasons():
    reasons = [r for r, _, _ in CASES]
    assert len(reasons) == len(set(reasons))
    zh = [t for _, t, _ in CASES if t and any("\u4e00" <= ch <= "\u9fff" for ch in t)]
    invalid = [t for _, t, e in CASES if e is None]
    assert len(CASES) >= 40 and len(zh) >= 15 and len(invalid) >= 20


def test_never_guesses_on_invalid_answers_after_a_reasoning_paragraph():
    """An invalid final line stays invalid however clear the reasoning above it was."""
    reasoning = "Both images show a river bending south and a red roof at the junction.\n"
    for _, text, expected in CASES:
        if expected is None and text:
            assert parse_verdict(reasoning + text) is None, text


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("label", [True, False])
def test_canonical_lines_round_trip(lang, label):
    line = verdict_line(label, lang)
    assert line == VERDICT_LINES[lang][label]
    assert parse_verdict(f"Some reasoning.\n{line}") is label
    assert parse_verdict(f"Some reasoning.\n{line}\n") is label


def test_verdict_line_rejects_unknown_language():
    with pytest.raises(ValueError, match="lang"):
        verdict_line(True, "fr")


def test_strip_verdict_removes_only_the_final_verdict():
    assert strip_verdict("Roads match.\nAnswer: Yes") == "Roads match."
    assert strip_verdict("道路一致。\n结论：否") == "道路一致。"
    assert strip_verdict("Roads match.") == "Roads match."
    # an unclear last line is not a verdict, so it stays part of the explanation
    assert strip_verdict("Roads match.\nAnswer: Yes or No") == "Roads match.\nAnswer: Yes or No"
