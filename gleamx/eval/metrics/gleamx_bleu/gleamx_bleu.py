"""Corpus BLEU of generated vs reference GLEAM-X explanations, computed by sacrebleu, and sentence BLEU per pair.

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

_DESCRIPTION = ("Corpus BLEU (sacrebleu, 0-100) of explanations, plus sentence BLEU per pair; tokenizer chosen by "
                "language.")
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" (tokenize="13a") or "zh" (tokenize="zh"); ignored when ``tokenize`` is given.
    tokenize: any sacrebleu tokenizer name, overriding ``lang``.
    lowercase: case-insensitive BLEU.
    per_sample: also return sentence BLEU for each pair (default True).
Returns:
    bleu (0-100), precisions, bp, sys_len, ref_len, signature (sacrebleu's reproducibility string), and
    scores (sentence BLEU per pair, 0-100, as sacrebleu.sentence_bleu: exp smoothing, effective order).
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
        per_sample: bool = True,
    ) -> dict:
        if tokenize is None:
            if lang not in TOKENIZE_BY_LANG:
                raise ValueError(f"lang: expected one of {sorted(TOKENIZE_BY_LANG)}, got {lang!r}")
            tokenize = TOKENIZE_BY_LANG[lang]
        bleu = sacrebleu.BLEU(tokenize=tokenize, lowercase=lowercase)
        # sacrebleu takes reference *streams*: one list per reference set, we have one set.
        score = bleu.corpus_score(list(predictions), [list(references)])
        out: dict = {
            "bleu": score.score,
            "precisions": score.precisions,
            "bp": score.bp,
            "sys_len": score.sys_len,
            "ref_len": score.ref_len,
            "signature": str(bleu.get_signature()),
        }
        if per_sample:
            # One explanation's BLEU (what agreement with a person's rating of that explanation needs). Effective
            # order, as sacrebleu.sentence_bleu: a short text without a shared 4-gram is not zero for that alone.
            sentence = sacrebleu.BLEU(tokenize=tokenize, lowercase=lowercase, effective_order=True)
            out["scores"] = [sentence.sentence_score(p, [r]).score for p, r in zip(predictions, references)]
        return out
