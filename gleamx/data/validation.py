"""``gleamx data validate``: counts by split / view / label / language, and every problem."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import datasets

from gleamx.data.load import LoadResult, load_samples
from gleamx.data.schema import LANGS
from gleamx.errors import Problem


@dataclass
class ValidationReport:
    """What ``validate`` found: counts over the good samples, and every problem."""

    n_records: int
    n_valid: int
    problems: list[Problem]
    by_split: Counter = field(default_factory=Counter)
    by_view: Counter = field(default_factory=Counter)
    by_label: Counter = field(default_factory=Counter)
    by_lang: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_records": self.n_records,
            "n_valid": self.n_valid,
            "n_problems": len(self.problems),
            "by_split": dict(self.by_split),
            "by_view": dict(self.by_view),
            "by_label": dict(self.by_label),
            "by_lang": dict(self.by_lang),
            "problems": [str(p) for p in self.problems],
        }

    def summary_lines(self) -> list[str]:
        """What ``gleamx data validate`` prints: the totals, the counts by split/view/label/language, then one
        line per problem."""
        rows = [(f"by {title}", "  ".join(f"{k}={n}" for k, n in sorted(counter.items())) or "-")
                for title, counter in (("split", self.by_split), ("view", self.by_view), ("label", self.by_label),
                                       ("language", self.by_lang))]
        width = max(len(title) for title, _ in rows)
        return [f"{self.n_valid} valid of {self.n_records} records, {len(self.problems)} problem(s)",
                *(f"  {title:<{width}}    {counts}" for title, counts in rows), *(str(p) for p in self.problems)]


def count(data: Any) -> dict[str, Counter]:
    """Counters by split, view, label (``match``/``no_match``) and explanation language, over a
    :data:`~gleamx.data.schema.FEATURES` dataset (read column by column, batch by batch) or a list of samples."""
    counts: dict[str, Counter] = {"by_split": Counter(), "by_view": Counter(), "by_label": Counter(), "by_lang": Counter()}
    columns = ["split", "query_view", "label", "explanation"]
    if isinstance(data, datasets.Dataset):
        batches: Any = data.select_columns(columns).iter(batch_size=1000)
    else:
        rows = [s.to_features_dict() for s in data]
        batches = [{c: [row[c] for row in rows] for c in columns}]
    for batch in batches:
        counts["by_split"].update(batch["split"])
        counts["by_view"].update(batch["query_view"])
        counts["by_label"].update("match" if label else "no_match" for label in batch["label"])
        counts["by_lang"].update(lang for expl in batch["explanation"] for lang in LANGS if (expl or {}).get(lang))
    return counts


def validate(
    source: str | os.PathLike, *, format: str = "auto", split: str | None = None, columns: Any = None,
    decode_images: bool = True, allow_outside_paths: bool = False, max_image_pixels: int | None = None,
) -> ValidationReport:
    """Check every record of ``source``; never stops at the first problem (same rules as :func:`load_samples`)."""
    res: LoadResult = load_samples(
        source, format=format, split=split, columns=columns, decode_images=decode_images, collect=True,
        allow_outside_paths=allow_outside_paths, max_image_pixels=max_image_pixels,
    )
    return ValidationReport(
        n_records=res.n_records, n_valid=len(res.dataset), problems=res.problems, **count(res.dataset)
    )
