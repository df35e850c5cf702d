"""The retrieval model (GLEAM-C in the paper): one image encoder for every view; proposes top-k satellite
candidates for the MLLM to verify."""

from __future__ import annotations

from typing import Any

# Spellings of one release ago, resolved with a notice.
_OLD_NAMES = {"GleamCEncoder": ("gleamx.retrieval.encoder", "RetrievalEncoder"),
              "GleamCConfig": ("gleamx.retrieval.config", "RetrievalConfig"),
              "train_gleamc": ("gleamx.retrieval.train", "train_retrieval")}


def __getattr__(name: str) -> Any:
    if name not in _OLD_NAMES:
        raise AttributeError(f"module 'gleamx.retrieval' has no attribute {name!r}")
    import importlib
    import warnings

    module, new = _OLD_NAMES[name]
    warnings.warn(f"gleamx.retrieval.{name} is now {module}.{new}; the old name goes in the next release",
                  FutureWarning, stacklevel=2)
    return getattr(importlib.import_module(module), new)
