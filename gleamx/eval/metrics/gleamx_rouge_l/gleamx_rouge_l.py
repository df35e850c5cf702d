"""ROUGE-L F1 of generated vs reference GLEAM-X explanations, computed by rouge-score.

rouge-score's default tokenizer lowercases and replaces every non-[a-z0-9] character
by a space, so Chinese text becomes zero tokens and every Chinese pair scores 0.0.
For ``lang="zh"`` the text is segmented first (jieba words, or single characters) and
handed to rouge-score through a tokenizer that keeps those tokens; the LCS and F1
are still rouge-score's own.
"""

from __future__ import annotations

import logging
import re

import evaluate

import jieba
from rouge_score import rouge_scorer, tokenizers

from gleamx.eval.metrics.info import text_pair_info

# jieba logs "Building prefix dict ..." on first use; keep metric output clean.
jieba.setLogLevel(logging.WARNING)

# CJK ideographs (unified, extension A, compatibility) become one token each in "char" mode.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CHAR_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def _keep(token: str) -> bool:
    # Mirrors rouge-score's English tokenizer, which drops punctuation and whitespace:
    # a token counts only if it has a letter, digit or ideograph (str.isalnum covers all three).
    return any(ch.isalnum() for ch in token)


class ChineseTokenizer(tokenizers.Tokenizer):
    """rouge-score tokenizer for Chinese (mixed Latin words and digits are kept, lowercased).

    ``mode="jieba"``: jieba word segmentation (default mode, HMM on).
    ``mode="char"``: one token per ideograph, Latin/digit runs as whole words.
    """

    def __init__(self, mode: str = "jieba") -> None:
        if mode not in ("jieba", "char"):
            raise ValueError(f"zh_tokenizer: expected 'jieba' or 'char', got {mode!r}")
        self.mode = mode

    def tokenize(self, text: str) -> list[str]:
        text = text.lower()
        if self.mode == "char":
            return _CHAR_TOKEN.findall(text)
        return [t for t in jieba.lcut(text) if _keep(t)]


_DESCRIPTION = "ROUGE-L F1 (rouge-score, 0-1) of explanations: mean over samples plus per-sample F1."
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" (rouge-score's default tokenizer) or "zh" (segmented first, see zh_tokenizer).
    zh_tokenizer: "jieba" (words, default) or "char" (single characters); zh only.
    use_stemmer: Porter stemming; en only.
Returns:
    rouge_l (mean F1, 0-1), scores (per-sample F1), tokenizer.
"""


class GleamxRougeL(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return text_pair_info(_DESCRIPTION, _KWARGS)

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        lang: str = "en",
        zh_tokenizer: str = "jieba",
        use_stemmer: bool = False,
    ) -> dict:
        if lang == "en":
            scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)
            name = "rouge-score default" + (" +stemmer" if use_stemmer else "")
        elif lang == "zh":
            scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=ChineseTokenizer(zh_tokenizer))
            name = f"zh-{zh_tokenizer}"
        else:
            raise ValueError(f"lang: expected 'en' or 'zh', got {lang!r}")
        # rouge-score's argument order is (target, prediction).
        # float(): rouge-score returns the int 0 when either side has no tokens.
        scores = [float(scorer.score(r, p)["rougeL"].fmeasure) for p, r in zip(predictions, references)]
        return {
            "rouge_l": sum(scores) / len(scores) if scores else float("nan"),
            "scores": scores,
            "tokenizer": name,
        }
