"""Gamed answers and the total reward a shipped GRPO recipe gives them: the table in docs/grpo.md.

A policy trained on a reward learns whatever earns it most, so each way of earning without answering well must
earn less than a correct, explained answer under the rewards and weights a recipe ships with. :func:`gaming_table`
scores each gamed answer of :func:`gamed_answers` with the recipe's own rewards (TRL's callables, as training
calls them) and sums them as TRL does (:func:`gleamx.train.rewards.total_reward`).

    python -m gleamx.train.reward_gaming      # prints the docs table (qwen2.5-vl-3b/grpo_lora)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gleamx.task.verdict import verdict_line
from gleamx.train.rewards import (CJK_CHAR_WEIGHT, Encoder, RewardOptions, answer_length, build_rewards,
                                  total_reward)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
DOCS_RECIPE = RECIPES / "qwen2.5-vl-3b" / "grpo_lora.yaml"  # the table docs/grpo.md prints


@dataclass(frozen=True)
class Case:
    """One prompt's label and reference, a correct explanation and a wrong one (arguing the other verdict)."""

    lang: str
    label: bool
    reference: str
    correct: str
    wrong: str


CASES = (
    Case("en", True,
         reference="Both views show a T-junction with a pond to its south-east and a long red slab block on the north "
                   "side; the road widths and the building footprints line up. The query was taken at the location "
                   "shown in the satellite tile.",
         correct="The drone view shows a T-junction, a pond south-east of it and a long red slab block along the north "
                 "side. The satellite tile has the T-junction, the pond in the south-east corner and the red block on "
                 "the north side, and the road widths line up. So both images show the same place.",
         wrong="The drone view shows a T-junction and a pond, but the satellite tile has a roundabout and no pond, and "
               "the red slab block sits south of the road. These differences mean the two images show different "
               "places."),
    Case("zh", False,
         reference="卫星图中是环岛，查询图中是丁字路口；查询图东南侧的池塘在卫星图中不存在。因此查询图并非拍摄于卫星图所示的位置。",
         correct="查询图拍摄于一个丁字路口，东南侧有一个池塘，北侧是一栋红色长条形板楼。卫星图中却是一个环岛，没有池塘，"
                 "板楼也是白色的。所以两者不是同一地点。",
         wrong="查询图中的丁字路口、东南侧的池塘和北侧的红色板楼，在卫星图中都能找到，位置也一一对应。因此两张图显示的是同一个地方。"),
)
_HEDGE = {"en": "Answer: Yes or No", "zh": "结论：是或否"}


def filler(lang: str, i: int) -> str:
    """The ``i``-th sentence of an endless, non-repeating description of landmarks (no verdict cue in it): what an
    answer that runs past the length budget is padded with, so that only its length is wrong."""
    dirs = {"en": ["north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"],
            "zh": ["北", "东北", "东", "东南", "南", "西南", "西", "西北"]}[lang]
    colours = {"en": ["red", "grey", "white", "blue", "green", "yellow", "brown"],
               "zh": ["红色", "灰色", "白色", "蓝色", "绿色", "黄色", "棕色"]}[lang]
    shapes = {"en": ["tower", "slab block", "warehouse", "L-shaped building", "kiosk"],
              "zh": ["塔楼", "板楼", "仓库", "L形建筑", "售货亭"]}[lang]
    d, c, s, m = dirs[i % 8], colours[i % 7], shapes[i % 5], 20 + 15 * i
    if lang == "zh":
        return f"第{i + 1}处地标：路口{d}约{m}米处有一座{c}{s}。"
    return f"Landmark {i + 1}: a {c} {s} stands about {m} metres {d} of the junction."


def _join(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


def gamed_answers(case: Case, task: str, options: RewardOptions) -> list[tuple[str, str]]:
    """``(what, answer)`` rows for ``case`` under ``task`` (``label``: the correct answer is the verdict line alone,
    so the rows that add or drop an explanation fall away), the correct answer first."""
    explanation = case.correct if task == "explain" else ""
    right, other = verdict_line(case.label, case.lang), verdict_line(not case.label, case.lang)
    long, i = _join(explanation, right), 0
    while answer_length(long) <= options.length_max_chars:  # pad (before the explanation) past the budget
        long, i = _join(*(filler(case.lang, k) for k in range(i + 1)), explanation, right), i + 1
    explained = ", explained" if explanation else ""
    rows = [
        (f"correct{explained}", _join(explanation, right)),
        (f"wrong{explained}", _join(case.wrong if explanation else "", other)),
        ("empty", ""),
        (f"hedge ({' / '.join(_HEDGE.values())})", _HEDGE[case.lang]),
        ("explained hedge", _join(explanation, _HEDGE[case.lang])),
        ("both verdicts (wrong line, then right)", _join(explanation, other, right)),
        ("verdict, no explanation", right),
        ("paragraph repeated 3 times", _join(*[explanation or right] * 3, right if explanation else "")),
        (f"past the length budget ({options.length_max_chars} chars)", long),
    ]
    kept: dict[str, str] = {}  # answer -> what: the first of equal answers (label task) stays
    for what, answer in rows:
        kept.setdefault(answer, what)
    return [(what, answer) for answer, what in kept.items()]


@dataclass(frozen=True)
class Row:
    what: str
    answer: str
    scores: dict[str, float | None]
    total: float


def gaming_table(case: Case, names: Sequence[str], weights: Sequence[float] | None, options: RewardOptions,
                 task: str = "explain", encoder_loader: Callable[[], Encoder] | None = None) -> list[Row]:
    """Each of :func:`gamed_answers` scored by the rewards ``names`` (TRL's callables, as training calls them) and
    totalled with ``weights`` as TRL sums them."""
    rows = gamed_answers(case, task, options)
    answers = [a for _, a in rows]
    n = len(answers)
    columns = {r.__name__: r(answers, label=[case.label] * n, lang=[case.lang] * n, task=[task] * n,
                             reference=[case.reference] * n)
               for r in build_rewards(names, options, encoder_loader)}
    out = []
    for k, (what, answer) in enumerate(rows):
        scores = {name: columns[name][k] for name in names}
        out.append(Row(what, answer, scores, total_reward(list(scores.values()), weights)))
    return out


@dataclass(frozen=True)
class RecipeRewards:
    """What a recipe's rewards are: names, TRL weights, options (as training builds them) and task."""

    names: list[str]
    weights: list[float] | None
    options: RewardOptions
    task: str


def recipe_rewards(recipe: Path) -> RecipeRewards:
    """The rewards of a GRPO recipe YAML, parsed as ``gleamx grpo`` parses it."""
    from trl import GRPOConfig, ModelConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamGRPOArguments
    from gleamx.train.grpo import reward_options

    script, training, _ = parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)),
                                       ["--config", str(recipe), "--use_cpu", "true"])  # CPU: bf16 recipes parse
    return RecipeRewards(list(script.reward_funcs), training.reward_weights, reward_options(script), script.task)


def default_encoder_loader() -> Callable[[], Encoder]:
    """The sentence encoder ``reference_similarity`` uses when a recipe names no model (gleamx-eval's
    ``sbert_cosine`` default), loaded on first use."""
    def load() -> Encoder:
        from gleamx.eval.metrics.gleamx_sbert_cosine.gleamx_sbert_cosine import default_model, load_encoder

        return load_encoder(default_model("en"))

    return load


def loses_most_on(row: Row, correct: Row, weights: Sequence[float] | None) -> str | None:
    """The reward on which ``row`` loses most against ``correct`` (weighted; a ``None`` counts 0, as TRL sums it),
    or ``None`` when it loses on none."""
    weights = [1.0] * len(row.scores) if weights is None else weights
    losses = {name: w * ((correct.scores[name] or 0.0) - (row.scores[name] or 0.0))
              for name, w in zip(row.scores, weights, strict=True)}
    name = max(losses, key=losses.__getitem__)
    return name if losses[name] > 0 else None


def markdown_table(tables: dict[str, list[Row]], weights: Sequence[float] | None) -> str:
    """One row per gamed answer: its total in each language and the reward it loses most on, per language (the
    first row, the correct answer, is what the others lose against)."""
    langs = list(tables)
    if len({tuple(r.what for r in rows) for rows in tables.values()}) != 1:
        raise ValueError("markdown_table: the languages' tables hold different rows")
    lines = ["| answer | " + " | ".join(f"total ({lang})" for lang in langs) + " | loses most on |",
             "|---|" + "---:|" * len(langs) + "---|"]
    for k, row in enumerate(tables[langs[0]]):
        lost = [loses_most_on(tables[lang][k], tables[lang][0], weights) for lang in langs]
        names = " / ".join(dict.fromkeys(f"`{n}`" for n in lost if n))  # one name when the languages agree
        lines.append(f"| {row.what} | " + " | ".join(f"{tables[lang][k].total:+.2f}" for lang in langs)
                     + f" | {names} |")
    return "\n".join(lines)


def settings_line(r: RecipeRewards) -> str:
    """The rewards, weights and length/repetition options of a recipe, as one markdown line."""
    o, weights = r.options, r.weights or [1.0] * len(r.names)
    line = "Rewards: " + ", ".join(f"`{n}` x{w:g}" for n, w in zip(r.names, weights, strict=True))
    if "length" in r.names:
        line += (f"; length: 0 up to {o.length_max_chars - o.length_zone_chars}, -1 at {o.length_max_chars} "
                 f"characters (a CJK character counts {CJK_CHAR_WEIGHT})")
    if "repetition" in r.names:
        line += f"; repetition: {o.repetition_ngram}-grams, a share of {o.repetition_tolerance:g} free"
    return line + "."


def docs_table(encoder_loader: Callable[[], Encoder] | None = None) -> str:
    """What docs/grpo.md prints: :data:`DOCS_RECIPE`'s settings, and :data:`CASES` under its rewards."""
    r = recipe_rewards(DOCS_RECIPE)
    loader = encoder_loader or default_encoder_loader()
    tables = {c.lang: gaming_table(c, r.names, r.weights, r.options, r.task, loader) for c in CASES}
    return settings_line(r) + "\n\n" + markdown_table(tables, r.weights)


if __name__ == "__main__":
    print(docs_table())
