"""GLEAM-X samples -> a TRL vision dataset: ``messages`` (two image placeholders + text) and ``images``.

Prompt building is a ``.map`` over the :data:`~gleamx.data.schema.FEATURES`
dataset that :func:`gleamx.data.load_samples` returns: images stay paths or
encoded bytes in Arrow (decoded to RGB only when the collator reads a row), and
no Python list of samples or rows is built, so memory stays flat in the number of samples.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import datasets

from gleamx.data.arrow import Rows, batch_rows, map_batches
from gleamx.data.load import to_dataset
from gleamx.data.schema import GleamSample
from gleamx.errors import GleamDataError
from gleamx.prompts import build_messages, sample_languages
from gleamx.task import IMAGE_ORDER

_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
SFT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "messages": [{"role": datasets.Value("string"), "content": [_PART]}],
        # Paths (or encoded bytes) in Arrow, decoded to RGB PIL images only when the collator reads a row.
        "images": datasets.Sequence(datasets.Image()),
    }
)


@dataclass
class SFTData:
    dataset: datasets.Dataset | datasets.IterableDataset
    n_samples: int | None  # None for a stream: counted as it is read
    n_without_language: int  # samples that had no explanation in any requested language (a stream: so far)


def _conversations(sample: GleamSample, images: list[Any], lang: str, task: str) -> list[dict[str, Any]]:
    """One SFT row per language ``sample`` has an example in (none: ``[]``)."""
    rows = []
    for lg in sample_languages(sample, lang, task):
        msgs = build_messages(sample, lg, task)
        for m in msgs:
            m["content"] = [{"type": p["type"], "text": p.get("text")} for p in m["content"]]
        rows.append({"id": f"{sample.id}#{lg}", "messages": msgs, "images": images})
    return rows


def build_sft_dataset(data: Rows | Iterable[GleamSample], lang: str = "both", task: str = "explain") -> SFTData:
    """One conversation per sample and language; ``images`` in :data:`IMAGE_ORDER` (query, satellite).

    ``data`` is a :data:`~gleamx.data.schema.FEATURES` dataset (``load_samples(...).dataset``) or samples.
    Samples that cannot yield an example (``explain`` without an explanation in
    the requested language) are counted, not silently dropped; if none can, it is an error.
    """
    ds = data if isinstance(data, (datasets.Dataset, datasets.IterableDataset)) else to_dataset(data)
    for name in IMAGE_ORDER:  # the stored {"bytes", "path"} values pass through undecoded
        ds = ds.cast_column(name, datasets.Image(decode=False))
    missing = [0]

    def convert(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {name: [] for name in SFT_FEATURES}
        for row in batch_rows(batch):
            sample = GleamSample.from_features_dict(row)
            rows = _conversations(sample, [row[f] for f in IMAGE_ORDER], lang, task)
            missing[0] += not rows
            for r in rows:
                for name in SFT_FEATURES:
                    out[name].append(r[name])
        return out

    if isinstance(ds, datasets.IterableDataset):  # converted as it is read; the counts grow with it
        return SFTData(map_batches(ds, convert, SFT_FEATURES), None, 0)
    sft = map_batches(ds, convert, SFT_FEATURES) if len(ds) else ds
    if len(sft) == 0:
        raise GleamDataError.at(
            "dataset", None, "explanation",
            f"no sample has an explanation in lang={lang!r}; use task=label or another lang",
        )
    return SFTData(sft, len(ds), missing[0])
