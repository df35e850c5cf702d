"""GLEAM-X samples -> a TRL vision dataset: ``messages`` (two image placeholders + text) and ``images``."""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from gleamx.data.schema import GleamSample
from gleamx.errors import GleamDataError
from gleamx.prompts import IMAGE_ORDER, build_messages, sample_languages

_PART = {"type": datasets.Value("string"), "text": datasets.Value("string")}
SFT_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "messages": [{"role": datasets.Value("string"), "content": [_PART]}],
        # Paths in Arrow, decoded to RGB PIL images only when the collator reads a row.
        "images": datasets.Sequence(datasets.Image()),
    }
)


@dataclass
class SFTData:
    dataset: datasets.Dataset
    n_samples: int
    n_without_language: int  # samples that had no explanation in any requested language


def build_sft_dataset(samples: list[GleamSample], lang: str = "both", task: str = "explain") -> SFTData:
    """One conversation per sample and language; ``images`` in :data:`IMAGE_ORDER` (query, satellite).

    Samples that cannot yield an example (``explain`` without an explanation in
    the requested language) are counted, not silently dropped; if none can, it is an error.
    """
    rows = []
    missing = 0
    for s in samples:
        langs = sample_languages(s, lang, task)
        if not langs:
            missing += 1
        for lg in langs:
            msgs = build_messages(s, lg, task)
            for m in msgs:
                m["content"] = [{"type": p["type"], "text": p.get("text")} for p in m["content"]]
            rows.append({"id": f"{s.id}#{lg}", "messages": msgs, "images": [getattr(s, f) for f in IMAGE_ORDER]})
    if not rows:
        raise GleamDataError.at(
            "dataset", None, "explanation",
            f"no sample has an explanation in lang={lang!r}; use task=label or another lang",
        )
    ds = datasets.Dataset.from_list(rows, features=SFT_FEATURES)
    return SFTData(ds, len(samples), missing)
