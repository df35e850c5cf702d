"""Verifiable rewards for GRPO on GLEAM-X: each a small pure function of one answer, batched for TRL.

TRL's ``GRPOTrainer`` calls a reward with ``completions`` (``[{"role": "assistant", "content": str}]`` each) and
every dataset column as a keyword list (``label``, ``lang``, ``task``, ``reference``, ...); it logs each one as
``rewards/<name>/mean|std`` and sums them with ``GRPOConfig.reward_weights``. The scoring rules live in the
``*_score`` functions (one answer in, one number or ``None`` out: ``None`` is "does not apply" and TRL leaves it
out of that reward's mean). :data:`REWARDS` is the registry: each name maps to a plain function that scores a batch
of answers, and :class:`Reward` turns one into the callable TRL takes, under its own name.

* ``verdict``: 1 correct, 0 wrong, ``-no_verdict_penalty`` when gleamx's verdict parser reads no verdict.
* ``format``: the share of four checks passed: the answer ends in the requested language's verdict line, holds
  exactly one verdict line, holds no verdict marker of the other language, and its explanation is within the
  length bounds (``label`` task: no explanation at all).
* ``consistency``: does the explanation's own conclusion agree with its verdict line? 1 agrees, 0 contradicts,
  0.5 when the explanation concludes nothing either way; ``None`` without a verdict or an explanation.
* ``reference_similarity``: sentence-embedding cosine of the explanation with the reference explanation (the
  encoder gleamx-eval's ``sbert_cosine`` uses, handed in by the caller and loaded on first use).
* ``length``: DAPO's soft overlong punishment: 0 up to ``length_max_chars - length_zone_chars``, then down
  linearly to -1 at ``length_max_chars`` and beyond (a CJK character counts as :data:`CJK_CHAR_WEIGHT`).
* ``repetition``: minus the share of the answer's word n-grams (Chinese: character n-grams) that repeat an earlier
  one, past a tolerance that ordinary answers stay under; -1 for an answer that is one loop.

The guards against gamed answers (empty, "Answer: Yes or No", two verdict lines, a bare verdict, a repeated
paragraph, an answer past the budget) are shown in :mod:`gleamx.train.reward_gaming`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gleamx.task.verdict import parse_verdict, strip_verdict
from gleamx.errors import GleamConfigError


# The verdict line of each language as gleamx writes it (gleamx.task.verdict.VERDICT_LINES), allowing case,
# full-width colons and a closing full stop: what "ends in the requested language's verdict line" accepts.
_VERDICT_LINE = {
    "en": re.compile(r"^answer\s*:\s*(?:yes|no)\s*\.?$", re.IGNORECASE),
    "zh": re.compile(r"^结论\s*:\s*(?:是|否)\s*。?$"),
}
# A verdict marker of either language anywhere in a line (the other language's must not appear at all).
_MARKER = {
    "en": re.compile(r"(?<![a-z])(?:final\s+)?answer\s*:", re.IGNORECASE),
    "zh": re.compile(r"(?:最终)?结论\s*:"),
}


def _text(completion: Any) -> str:
    """The answer text of a TRL completion: a message list (conversational) or a plain string."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        content = completion[-1].get("content", "")
        if isinstance(content, list):  # structured content blocks
            return "".join(p.get("text") or "" for p in content if p.get("type") == "text")
        return content or ""
    return ""


def _lines(text: str) -> list[str]:
    # NFKC folds full-width colons and letters, as the verdict parser does.
    return [ln.strip() for ln in unicodedata.normalize("NFKC", text).splitlines() if ln.strip()]


# --- verdict ---------------------------------------------------------------------------------------------------


def verdict_lines(answer: str) -> list[bool]:
    """The verdict of every line that reads as a verdict on its own (``Answer: Yes``, ``结论：否``, a bare ``No``)."""
    return [v for v in map(parse_verdict, _lines(answer)) if v is not None]


def verdict_score(answer: str, label: bool, *, no_verdict_penalty: float = 0.5) -> float:
    """1.0 when the answer's verdict (gleamx's parser, en and zh) equals ``label``, 0.0 when it is the other one,
    ``-no_verdict_penalty`` when there is no parseable verdict, or when its verdict lines disagree.

    The parser reads the last verdict line (eval keeps a model's self-correction); a reward that did so would pay
    an answer that states both verdicts (``Answer: No`` then ``Answer: Yes``) as if it had committed to one."""
    verdict = parse_verdict(answer)
    if verdict is None or any(v != verdict for v in verdict_lines(answer)):
        return -float(no_verdict_penalty)
    return 1.0 if verdict == bool(label) else 0.0


# --- format ----------------------------------------------------------------------------------------------------


def format_checks(answer: str, lang: str, task: str = "explain", *, min_chars: int = 16,
                  max_chars: int = 2000) -> dict[str, bool]:
    """The four format checks of an answer asked for in ``lang`` (``en``/``zh``) and ``task``."""
    lines = _lines(answer)
    other = "zh" if lang == "en" else "en"
    ends = bool(lines) and bool(_VERDICT_LINE[lang].match(lines[-1]))
    n_verdict_lines = sum(1 for ln in lines if parse_verdict(ln) is not None)
    explanation = "\n".join(lines[:-1]) if ends else "\n".join(lines)
    n = len(explanation)
    length_ok = n == 0 if task == "label" else min_chars <= n <= max_chars
    return {
        "ends_in_verdict_line": ends,
        "one_verdict_line": n_verdict_lines == 1,
        "no_other_language_verdict": not any(_MARKER[other].search(ln) for ln in lines),
        "length_within_bounds": length_ok,
    }


def format_score(answer: str, lang: str, task: str = "explain", *, min_chars: int = 16,
                 max_chars: int = 2000) -> float:
    """The share (0-1) of :func:`format_checks` an answer passes: a shaped reward, so a model that gets the
    verdict line right but runs long still scores above one that writes no verdict line."""
    checks = format_checks(answer, lang, task, min_chars=min_chars, max_chars=max_chars)
    return sum(checks.values()) / len(checks)


# --- consistency -----------------------------------------------------------------------------------------------

# What an explanation concludes is read from cue phrases, negation-aware, in English and Chinese. "Place" cues
# state a conclusion about the two images (same place / different places / taken where the tile is); "feature"
# cues compare details (roads match, colours differ). The conclusion is the last sentence holding a place cue
# (else the last holding any cue), and within it the last cue counts: explanations end with their conclusion.
_EN_PLACE_N = r"(?:place|location|area|site|spot|scene|region|position)s?"
_EN_POS_PLACE = (
    rf"\bsame\s+(?:{_EN_PLACE_N}|geographic|spot)\b"
    r"|\b(?:taken|shot|captured|photographed|located|situated)\s+(?:at|from|in|on)\s+(?:exactly\s+)?the\s+"
    r"(?:location|place|area|spot|site|position)\s+(?:shown|depicted|seen|in|of)\b"
)
_EN_NEG_PLACE = (
    rf"\bdifferent\s+{_EN_PLACE_N}\b|\b(?:two|separate|distinct|unrelated)\s+{_EN_PLACE_N}\b|\belsewhere\b"
)
_EN_POS_FEAT = (r"\bmatch(?:es|ed|ing)?\b|\bcorrespond(?:s|ing)?\b|\bconsistent\b|\bagree(?:s|d)?\b"
                r"|\blines?\s+up\b|\bline\s+up\b|\bidentical\b|\bsame\b")
_EN_NEG_FEAT = (r"\bdiffer(?:s|ed|ent|ence|ences)?\b|\bmismatch(?:es|ed)?\b|\binconsistent\b|\bcontradict(?:s|ed)?\b"
                r"|\bno\s+such\b|\bunlike\b")
_EN_NEGATION = re.compile(r"\b(?:not|no|never|cannot|neither|nor|without|hardly)\b|n't\b")

_ZH_PLACE_N = r"(?:个|处)?(?:地点|地方|位置|区域|场景|地区)"
_ZH_POS_PLACE = rf"同一{_ZH_PLACE_N}?|拍摄于卫星图所示|(?:位于|在)卫星图所示|就是卫星图"
_ZH_NEG_PLACE = rf"不同(?:的)?{_ZH_PLACE_N}|两(?:个|处)不同|别处|其他地方"
_ZH_POS_FEAT = r"一致|吻合|匹配|对应|相符|相同|符合|对得上"
_ZH_NEG_FEAT = r"不符|差异|区别|不同|矛盾|对不上"
# Negation right before a positive cue (不一致, 并非同一地点, 不是拍摄于, 没有对应).
_ZH_NEGATION = re.compile(r"(?:不|并非|并不|非|没有|没|无|未|不是|并不是)(?:是|在|能|会|太)?$")

_CUES = [  # (pattern, polarity, is a place-level cue)
    (re.compile(_EN_NEG_PLACE, re.IGNORECASE), False, True),
    (re.compile(_EN_POS_PLACE, re.IGNORECASE), True, True),
    (re.compile(_EN_NEG_FEAT, re.IGNORECASE), False, False),
    (re.compile(_EN_POS_FEAT, re.IGNORECASE), True, False),
    (re.compile(_ZH_NEG_PLACE), False, True),
    (re.compile(_ZH_POS_PLACE), True, True),
    (re.compile(_ZH_NEG_FEAT), False, False),
    (re.compile(_ZH_POS_FEAT), True, False),
]
_SENTENCE = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")
_CLAUSE = re.compile(r"[,，:：;；]|\bbut\b|\bwhile\b|\bwhereas\b|但|而")


def _negated(sentence: str, start: int) -> bool:
    """Whether the cue starting at ``start`` is negated inside its own clause (a few words / characters back)."""
    head = sentence[:start]
    clause = _CLAUSE.split(head)[-1]
    if _ZH_NEGATION.search(clause[-4:]):
        return True
    words = clause.split()[-3:]
    return bool(_EN_NEGATION.search(" ".join(words)))


def _cues(sentence: str) -> list[tuple[int, bool, bool]]:
    """``(position, polarity, is place-level)`` of every cue in ``sentence``; overlapping cues keep the first
    pattern's reading (negative before positive, place before feature), so 不一致 is not also 一致."""
    taken: list[tuple[int, int]] = []
    found = []
    for pattern, polarity, place in _CUES:
        for m in pattern.finditer(sentence):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            found.append((m.start(), polarity != _negated(sentence, m.start()), place))
    return sorted(found)


def explanation_conclusion(explanation: str) -> bool | None:
    """What an explanation concludes: ``True`` (same place), ``False`` (different places), ``None`` (no cue)."""
    sentences = [s.strip() for s in _SENTENCE.split(unicodedata.normalize("NFKC", explanation)) if s and s.strip()]
    read = [(_cues(s)) for s in sentences]
    for want_place in (True, False):
        for cues in reversed(read):
            chosen = [c for c in cues if c[2]] if want_place else cues
            if chosen:
                return chosen[-1][1]
    return None


def consistency_score(answer: str, task: str = "explain") -> float | None:
    """1.0 when the explanation's conclusion agrees with the answer's verdict, 0.0 when it contradicts it, 0.5
    when the explanation concludes nothing; ``None`` (does not apply) without a verdict, for the ``label`` task,
    or without an explanation."""
    verdict = parse_verdict(answer)
    if verdict is None or task == "label":
        return None
    explanation = strip_verdict(answer)
    if not explanation.strip():
        return None
    concluded = explanation_conclusion(explanation)
    if concluded is None:
        return 0.5
    return 1.0 if concluded == verdict else 0.0


# --- length and repetition ------------------------------------------------------------------------------------

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
# A Chinese explanation says in one character what English says in about three (the synthetic references' English
# takes three to four times the characters: test_length_counts_chinese_by_what_it_says); weighting CJK characters
# gives both languages one budget.
CJK_CHAR_WEIGHT = 3
# The units n-grams are made of: a run of letters/digits (an English word), or one CJK character (Chinese has no
# spaces).
_UNIT = re.compile(f"[{_CJK}]|[^\\W{_CJK}_]+")


def answer_length(answer: str) -> int:
    """The length of an answer in characters, a CJK character counting :data:`CJK_CHAR_WEIGHT`."""
    text = unicodedata.normalize("NFKC", answer).strip()
    return len(text) + (CJK_CHAR_WEIGHT - 1) * len(_CJK_CHAR.findall(text))


def length_score(answer: str, *, max_chars: int = 1500, zone_chars: int = 200) -> float:
    """0.0 up to ``max_chars - zone_chars`` (:func:`answer_length`), then down linearly to -1.0 at ``max_chars``
    and beyond: DAPO's soft overlong punishment, so running long costs a little before it costs a truncated
    answer's verdict (``zone_chars`` 0: a hard -1 past ``max_chars``)."""
    n, start = answer_length(answer), max_chars - zone_chars
    if n <= start:
        return 0.0
    if n >= max_chars:
        return -1.0
    return -(n - start) / zone_chars


def text_units(text: str) -> list[str]:
    """The words (letter/digit runs, lowercased) and CJK characters of ``text``, in order; punctuation dropped."""
    return _UNIT.findall(unicodedata.normalize("NFKC", text).lower())


def repetition_share(text: str, n: int = 8) -> float:
    """The share of the n-grams of :func:`text_units` that repeat an earlier one (seq-rep-n of Welleck et al.
    2019: 1 - unique / total); 0.0 for a text of fewer than ``n`` units."""
    units = text_units(text)
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def repetition_score(answer: str, *, ngram: int = 8, tolerance: float = 0.35) -> float:
    """0.0 while :func:`repetition_share` is at most ``tolerance`` (explanations that describe the same features in
    both images repeat phrases), then down linearly to -1.0 at a share of 1 (one loop). A long paragraph written
    twice repeats about half its n-grams, three times about two thirds."""
    excess = repetition_share(answer, ngram) - tolerance
    return -min(1.0, excess / (1.0 - tolerance)) if excess > 0 else 0.0


# --- reference similarity --------------------------------------------------------------------------------------

Encoder = Callable[[list[str]], Any]  # texts -> (n, dim) embeddings


def similarity_scores(answers: Sequence[str], references: Sequence[str | None], encode: Encoder) -> list[float | None]:
    """Cosine of each answer's explanation (verdict line stripped) with its reference explanation; ``None`` where
    there is no reference, 0.0 for an empty explanation (as gleamx-eval's ``sbert_cosine`` scores it)."""
    import numpy as np

    out: list[float | None] = [None] * len(answers)
    pairs = [(i, strip_verdict(a), strip_verdict(r)) for i, (a, r) in enumerate(zip(answers, references, strict=True))
             if r and strip_verdict(r).strip()]
    todo = [(i, a, r) for i, a, r in pairs if a.strip()]
    for i, a, _ in pairs:
        if not a.strip():
            out[i] = 0.0
    if todo:
        emb = np.asarray(encode([a for _, a, _ in todo] + [r for _, _, r in todo]), dtype=np.float64)
        emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        n = len(todo)
        for k, (i, _, _) in enumerate(todo):
            out[i] = float(emb[k] @ emb[n + k])
    return out


# --- the registry: name -> a plain function of one batch ------------------------------------------------------


@dataclass
class RewardOptions:
    """The knobs of the rewards (from the recipe's reward options)."""

    no_verdict_penalty: float = 0.5
    format_min_chars: int = 16
    format_max_chars: int = 2000
    length_max_chars: int = 1500
    length_zone_chars: int = 200
    repetition_ngram: int = 8
    repetition_tolerance: float = 0.35
    class_weights: dict[bool, float] | None = None  # label -> weight (class balance); None: every answer counts 1


@dataclass
class RewardBatch:
    """One batch of answers with the dataset columns a reward may read."""

    answers: list[str]
    label: list[bool]
    lang: list[str]
    task: list[str]
    reference: list[str | None]


BatchReward = Callable[[RewardBatch, RewardOptions, Callable[[], Encoder]], list[float | None]]


def verdict_rewards(b: RewardBatch, o: RewardOptions, encoder: Callable[[], Encoder]) -> list[float | None]:
    return [verdict_score(a, y, no_verdict_penalty=o.no_verdict_penalty) for a, y in zip(b.answers, b.label)]


def format_rewards(b: RewardBatch, o: RewardOptions, encoder: Callable[[], Encoder]) -> list[float | None]:
    return [format_score(a, lg, t, min_chars=o.format_min_chars, max_chars=o.format_max_chars)
            for a, lg, t in zip(b.answers, b.lang, b.task)]


def consistency_rewards(b: RewardBatch, o: RewardOptions, encoder: Callable[[], Encoder]) -> list[float | None]:
    return [consistency_score(a, t) for a, t in zip(b.answers, b.task)]


def length_rewards(b: RewardBatch, o: RewardOptions, encoder: Callable[[], Encoder]) -> list[float | None]:
    return [length_score(a, max_chars=o.length_max_chars, zone_chars=o.length_zone_chars) for a in b.answers]


def repetition_rewards(b: RewardBatch, o: RewardOptions, encoder: Callable[[], Encoder]) -> list[float | None]:
    return [repetition_score(a, ngram=o.repetition_ngram, tolerance=o.repetition_tolerance) for a in b.answers]


def reference_similarity_rewards(b: RewardBatch, o: RewardOptions,
                                 encoder: Callable[[], Encoder]) -> list[float | None]:
    return similarity_scores(b.answers, b.reference, encoder())


REWARDS: dict[str, BatchReward] = {"verdict": verdict_rewards, "format": format_rewards,
                                   "consistency": consistency_rewards,
                                   "reference_similarity": reference_similarity_rewards,
                                   "length": length_rewards, "repetition": repetition_rewards}
REWARD_NAMES: tuple[str, ...] = tuple(REWARDS)
NEEDS_ENCODER = frozenset({"reference_similarity"})  # rewards that embed text (the encoder loads on first use)
# Rewards that score the explanation: with task "label" answers have none, so every value would be None.
NEEDS_EXPLANATION = frozenset({"consistency", "reference_similarity"})


# --- TRL glue --------------------------------------------------------------------------------------------------


class Reward:
    """A batched reward for TRL, named ``name`` (TRL logs ``rewards/<name>/mean``)."""

    def __init__(self, name: str, options: RewardOptions, encoder_loader: Callable[[], Encoder] | None = None):
        self.__name__ = name
        self.options = options
        self._loader, self._encode = encoder_loader, None

    def _encoder(self) -> Encoder:
        if self._encode is None:  # lazy: the embedding model loads on the first batch that needs it
            assert self._loader is not None
            self._encode = self._loader()
        return self._encode

    def __call__(self, completions: list[Any], label: list[bool], lang: list[str], task: list[str] | None = None,
                 reference: list[str | None] | None = None, **_: Any) -> list[float | None]:
        answers = [_text(c) for c in completions]
        batch = RewardBatch(answers, label, lang, task or ["explain"] * len(answers),
                            reference or [None] * len(answers))
        scores = REWARDS[self.__name__](batch, self.options, self._encoder)
        if self.options.class_weights:
            scores = [None if s is None else s * self.options.class_weights[bool(y)] for s, y in zip(scores, label)]
        return scores


def check_reward_names(names: Sequence[str], task: str = "explain") -> None:
    """Every name a known reward, or one line with a did-you-mean; no name twice; none that scores an explanation
    when the task has none (``label``: such a reward yields no values, and a run would learn nothing from it)."""
    import difflib

    if not names:
        raise GleamConfigError(f"recipe: reward_funcs: empty (expected some of {', '.join(REWARD_NAMES)})")
    for name in names:
        if name not in REWARD_NAMES:
            close = difflib.get_close_matches(str(name), REWARD_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GleamConfigError(f"recipe: reward_funcs: unknown reward {name!r}{hint}; "
                                   f"expected some of {', '.join(REWARD_NAMES)}")
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        raise GleamConfigError(f"recipe: reward_funcs: {dup[0]!r} named twice")
    empty = [n for n in names if n in NEEDS_EXPLANATION] if task == "label" else []
    if empty:
        raise GleamConfigError(f"recipe: reward_funcs: {empty[0]!r} scores the explanation, and with task: label "
                               "answers have none (every value would be empty); drop it or set task: explain")


def build_rewards(names: Sequence[str], options: RewardOptions,
                  encoder_loader: Callable[[], Encoder] | None = None) -> list[Reward]:
    """The named rewards, in order, as TRL reward functions."""
    check_reward_names(names)
    if NEEDS_ENCODER & set(names) and encoder_loader is None:
        raise GleamConfigError("recipe: reward_funcs: reference_similarity needs a sentence encoder (run it through "
                               "gleamx grpo / recipes/grpo.py, or pass encoder_loader)")
    return [Reward(n, options, encoder_loader if n in NEEDS_ENCODER else None) for n in names]


def total_reward(scores: Sequence[float | None], weights: Sequence[float] | None = None) -> float:
    """One answer's total as TRL forms it (``multi_objective_aggregation: sum_then_normalize``): the weighted sum
    of its rewards, a ``None`` (does not apply) adding nothing (TRL's ``nansum``)."""
    weights = [1.0] * len(scores) if weights is None else weights
    return float(sum(w * s for s, w in zip(scores, weights, strict=True) if s is not None))


def class_weights(labels: Sequence[bool]) -> dict[bool, float]:
    """Inverse-frequency weights ``n / (2 n_class)``: each class contributes half of the total reward weight."""
    n, n_pos = len(labels), sum(1 for y in labels if y)
    n_neg = n - n_pos
    if not n_pos or not n_neg:
        missing = "positive" if not n_pos else "negative"
        raise GleamConfigError(f"recipe: class_balance: the training data has no {missing} pair to balance against")
    return {True: n / (2 * n_pos), False: n / (2 * n_neg)}


__all__ = ["CJK_CHAR_WEIGHT", "NEEDS_ENCODER", "NEEDS_EXPLANATION", "REWARDS", "REWARD_NAMES", "Reward",
           "RewardBatch", "RewardOptions", "answer_length", "build_rewards", "check_reward_names", "class_weights",
           "consistency_rewards", "consistency_score", "explanation_conclusion", "format_checks", "format_rewards",
           "format_score", "length_rewards", "length_score", "reference_similarity_rewards", "repetition_rewards",
           "repetition_score", "repetition_share", "similarity_scores", "text_units", "total_reward",
           "verdict_lines", "verdict_rewards", "verdict_score"]
