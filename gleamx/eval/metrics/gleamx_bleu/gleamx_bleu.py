"""Corpus BLEU of generated vs reference GLEAM-X explanations, computed by sacrebleu.

A local ``evaluate`` module: ``evaluate.load("<path>/gleamx_bleu")`` works offline,
unlike ``evaluate.load("sacrebleu")``, which fetches its script from the Hub.
"""

from __future__ import annotations

import evaluate

import sacrebleu

from gleamx.eval.metrics.info import text_pair_info

# sacrebleu's standard tokenizers per language: "13a" is the WMT default for English,
# "zh" splits every CJK character (and keeps Latin runs as words), so Chinese BLEU
# needs no word segmenter and stays comparable with published sacrebleu zh numbers.
TOKENIZE_BY_LANG = {"en": "13a", "zh": "zh"}

_DESCRIPTION = "Corpus BLEU (sacrebleu, 0-100) of explanations; tokenizer chosen by language."
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" (tokenize="13a") or "zh" (tokenize="zh"); ignored when ``tokenize`` is given.
    tokenize: any sacrebleu tokenizer name, overriding ``lang``.
    lowercase: case-insensitive BLEU.
Returns:
    bleu (0-100), precisions, bp, sys_len, ref_len, signature (sacrebleu's reproducibility string).
"""


class GleamxBleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return text_pair_info(_DESCRIPTION, _KWARGS)

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        lang: str = "en",
        tokenize: str | None = None,
        lowercase: bool = False,
    ) -> dict:
        if tokenize is None:
            if lang not in TOKENIZE_BY_LANG:
                raise ValueError(f"lang: expected one of {sorted(TOKENIZE_BY_LANG)}, got {lang!r}")
            tokenize = TOKENIZE_BY_LANG[lang]
        bleu = sacrebleu.BLEU(tokenize=tokenize, lowercase=lowercase)
        # sacrebleu takes reference *streams*: one list per reference set, we have one set.
        score = bleu.corpus_score(list(predictions), [list(references)])
        return {
            "bleu": score.score,
            "precisions": score.precisions,
            "bp": score.bp,
            "sys_len": score.sys_len,
            "ref_len": score.ref_len,
            "signature": str(bleu.get_signature()),
        }
