"""GLEAM-X data: the sample schema, readers/writers and validation.

The data layer sits below :mod:`gleamx.prompts` and never imports it: the verdict
parser and the prompt templates the readers need live here
(:mod:`gleamx.task.verdict`, :mod:`gleamx.task.templates`); the ShareGPT writer,
which builds prompts, is :func:`gleamx.prompts.write_sharegpt`.
"""

from gleamx.data.jsonl import write_samples
from gleamx.data.load import FORMATS, LoadResult, detect_format, load_samples, to_dataset
from gleamx.data.schema import FEATURES, LANGS, SPLITS, VIEWS, GleamSample, parse_label, samples_of
from gleamx.data.validation import ValidationReport, validate

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
    "samples_of",
    "to_dataset",
    "validate",
    "write_samples",
]

