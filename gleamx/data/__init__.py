"""GLEAM-X data: the sample schema, readers/writers, validation and the synthetic world."""

from gleamx.data.jsonl import write_samples
from gleamx.data.load import FORMATS, LoadResult, detect_format, load_samples, to_dataset
from gleamx.data.schema import FEATURES, LANGS, SPLITS, VIEWS, GleamSample, parse_label
from gleamx.data.sharegpt import write_sharegpt
from gleamx.data.validate import ValidationReport, validate

__all__ = [
    "FEATURES",
    "FORMATS",
    "LANGS",
    "SPLITS",
    "VIEWS",
    "GleamSample",
    "LoadResult",
    "ValidationReport",
    "detect_format",
    "load_samples",
    "parse_label",
    "to_dataset",
    "validate",
    "write_samples",
    "write_sharegpt",
]
