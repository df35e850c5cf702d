"""chrF of generated vs reference GLEAM-X explanations, computed by sacrebleu.

chrF works on character n-grams, so it needs no tokenizer and treats English and
Chinese alike. Besides the corpus score it returns sentence-level chrF per sample
(what a report needs to list the worst explanations).
"""

from __future__ import annotations

import evaluate

import sacrebleu

from gleamx.eval.metrics.info import text_pair_info

_DESCRIPTION = "chrF (sacrebleu, 0-100) of explanations: corpus score plus sentence-level scores."
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" or "zh"; accepted for a uniform signature, chrF itself is language-independent.
    char_order, word_order, beta, lowercase: sacrebleu.CHRF options (word_order=2 is chrF++).
    per_sample: also return sentence-level chrF for each pair (default True).
Returns:
    chrf (0-100, corpus level), scores (per-sample sentence chrF, if per_sample), signature.
"""


class GleamxChrf(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return text_pair_info(_DESCRIPTION, _KWARGS)

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        lang: str = "en",
        char_order: int = sacrebleu.CHRF.CHAR_ORDER,
        word_order: int = sacrebleu.CHRF.WORD_ORDER,
        beta: int = sacrebleu.CHRF.BETA,
        lowercase: bool = False,
        per_sample: bool = True,
    ) -> dict:
        # lang is accepted so all gleamx modules share one call signature; character
        # n-grams need no language-specific tokenization.
        if lang not in ("en", "zh"):
            raise ValueError(f"lang: expected 'en' or 'zh', got {lang!r}")
        chrf = sacrebleu.CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase)
        out: dict = {
            # Corpus chrF pools n-gram statistics over all pairs; it is not the mean of sentence scores.
            "chrf": chrf.corpus_score(list(predictions), [list(references)]).score,
            "signature": str(chrf.get_signature()),
        }
        if per_sample:
            out["scores"] = [chrf.sentence_score(p, [r]).score for p, r in zip(predictions, references)]
        return out
