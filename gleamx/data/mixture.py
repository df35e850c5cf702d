"""A weighted mixture of GLEAM-X datasets: ``datasets.interleave_datasets`` with probabilities.

A recipe's ``dataset_mixture`` lists the sources, each with a weight (its share of the rows drawn, normalised to
sum to 1) and optionally its own split, format and column mapping::

    dataset_mixture:
      - {path: data/u1652-gleamx, weight: 3}
      - {path: user/vigor-gleamx, weight: 1, split: train, columns: "query_image=ground,satellite_image=aerial"}

Rows are drawn source by source at random with those probabilities (``seed``) until the first source runs out
(``first_exhausted``) or every source has been read in full once (``all_exhausted``: the smaller ones are read
again meanwhile). The same function mixes materialised datasets and streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import datasets

from gleamx.choices import FORMATS
from gleamx.data.arrow import Rows
from gleamx.errors import GleamConfigError

STOPPING = ("first_exhausted", "all_exhausted")


@dataclass(frozen=True)
class MixtureSource:
    """One dataset of a mixture and its weight."""

    path: str
    weight: float
    split: str | None = None
    format: str = "auto"
    columns: str | None = None


def parse_mixture(entries: Any, where: str = "recipe: dataset_mixture") -> list[MixtureSource]:
    """The recipe's list of ``{path, weight, split?, format?, columns?}`` as sources, each problem one line."""
    if not isinstance(entries, list) or not entries:
        raise GleamConfigError(f"{where}: expected a list of {{path, weight}} entries, got {entries!r}")
    sources = []
    for i, entry in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise GleamConfigError(f"{at}: expected {{path, weight, split?, format?, columns?}}, got {entry!r}")
        unknown = sorted(set(entry) - {"path", "weight", "split", "format", "columns"})
        if unknown:
            raise GleamConfigError(f"{at}: unknown key(s) {', '.join(unknown)} (expected path, weight, split, format, "
                                   "columns)")
        path = entry.get("path")
        if not isinstance(path, str) or not path.strip():
            raise GleamConfigError(f"{at}.path: expected a file, directory or Hub dataset id, got {path!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            raise GleamConfigError(f"{at}.weight: expected a number > 0, got {weight!r}")
        split = entry.get("split")
        if split is not None and (not isinstance(split, str) or not split.strip()):
            raise GleamConfigError(f"{at}.split: expected a split name (e.g. train), got {split!r}")
        fmt = entry.get("format") or "auto"
        if fmt not in FORMATS:
            raise GleamConfigError(f"{at}.format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
        columns = entry.get("columns")
        if columns is not None and not (isinstance(columns, str) or isinstance(columns, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in columns.items())):
            raise GleamConfigError(f"{at}.columns: expected \"gleamx_field=dataset_column,...\" or a mapping of "
                                   f"names, got {columns!r}")
        sources.append(MixtureSource(path, float(weight), split, fmt, columns))
    return sources


def probabilities(sources: list[MixtureSource]) -> list[float]:
    total = sum(s.weight for s in sources)
    return [s.weight / total for s in sources]


def describe(sources: list[MixtureSource]) -> str:
    """``a (75%), b (25%)``: what a model card and the run's log say the mixture was."""
    return ", ".join(f"{s.path}{f' [{s.split}]' if s.split else ''} ({p:.0%})"
                     for s, p in zip(sources, probabilities(sources)))


def mix(parts: list[Rows], sources: list[MixtureSource], *, seed: int, stopping: str = "first_exhausted") -> Rows:
    """The rows of ``parts`` interleaved with the sources' probabilities (one part: itself)."""
    if stopping not in STOPPING:
        raise GleamConfigError(f"recipe: mixture_stopping_strategy: expected one of {', '.join(STOPPING)}, "
                               f"got {stopping!r}")
    if len(parts) == 1:
        return parts[0]
    return datasets.interleave_datasets(parts, probabilities=probabilities(sources), seed=seed,
                                        stopping_strategy=stopping)
