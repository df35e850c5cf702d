"""What every GLEAM-X dataset card shares (the synthetic set's, ``data pairs``', ``data push``')."""

from __future__ import annotations

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"))


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` tag for a dataset of ``n`` samples."""
    return next((name for limit, name in _SIZE_CATEGORIES if n < limit), "n>100M")
