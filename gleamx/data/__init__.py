"""GLEAM-X data: the sample schema, readers/writers, validation and the synthetic world.

Names are imported lazily (PEP 562) so that ``gleamx.prompts`` can import the
schema while the ShareGPT writer here imports the prompts, without a cycle.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "FEATURES": "schema",
    "LANGS": "schema",
    "SPLITS": "schema",
    "VIEWS": "schema",
    "GleamSample": "schema",
    "parse_label": "schema",
    "write_samples": "jsonl",
    "FORMATS": "load",
    "LoadResult": "load",
    "detect_format": "load",
    "load_samples": "load",
    "to_dataset": "load",
    "write_sharegpt": "sharegpt",
    "ValidationReport": "validation",
    "validate": "validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"gleamx.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gleamx.data' has no attribute {name!r}")
