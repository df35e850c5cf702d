"""What every GLEAM-X dataset card shares (the synthetic set's, ``data pairs``', ``data push``'), and the pair
counts that the writers of those sets report (:class:`PairCounts`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gleamx.data.schema import GleamSample

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` tag for a dataset of ``n`` samples."""
    return next((name for limit, name in _SIZE_CATEGORIES if n < limit), "n>100M")


@dataclass(kw_only=True)
class PairCounts:
    """How many pairs a writer wrote: by split, by query view, by label and by kind of negative."""

    by_split: dict[str, int]
    by_view: dict[str, int]
    by_label: dict[str, int]  # "positive", "negative"
    by_negative: dict[str, int]  # each negative's ``meta["negative"]``: "random", "hard"

    @staticmethod
    def of(splits: Mapping[str, Sequence[GleamSample]]) -> dict[str, Any]:
        """The counts of ``splits`` (split name -> its samples, in order), as keyword arguments of a subclass."""
        rows = [s for v in splits.values() for s in v]
        return {"by_split": {name: len(v) for name, v in splits.items()},
                "by_view": dict(Counter(s.query_view for s in rows)),
                "by_label": {"positive": sum(s.label for s in rows), "negative": sum(not s.label for s in rows)},
                "by_negative": dict(Counter(s.meta["negative"] for s in rows if not s.label))}

    def split_lines(self) -> list[str]:
        """``  split: n``, one line per split (the writers' summaries end with them)."""
        return [f"  {split}: {n}" for split, n in self.by_split.items()]
