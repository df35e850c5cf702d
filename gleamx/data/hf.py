"""Read any Hugging Face dataset (Hub id or local directory) as GLEAM-X records.

Column names differ between datasets, so a mapping renames the dataset's
columns to gleamx fields, e.g. ``{"query_image": "drone", "satellite_image":
"sat", "label": "match"}``. Image columns are read without decoding (bytes or
path), so a bad image is reported per row instead of failing the whole load.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gleamx.errors import GleamDataError, first_line


def parse_column_mapping(spec: str | dict[str, str] | None) -> dict[str, str]:
    """``"query_image=drone,label=match"`` (or a dict) -> ``{gleamx_field: dataset_column}``."""
    if spec is None or isinstance(spec, dict):
        return dict(spec or {})
    mapping = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if "=" not in part:
            raise GleamDataError.at("--columns", None, part, "expected gleamx_field=dataset_column")
        key, value = (x.strip() for x in part.split("=", 1))
        mapping[key] = value
    return mapping


def _load(source: str, split: str | None):
    import datasets

    try:
        if os.path.isdir(source) and (
            Path(source, "dataset_dict.json").is_file() or Path(source, "state.json").is_file()
        ):
            ds = datasets.load_from_disk(source)
            if isinstance(ds, datasets.DatasetDict):
                return _split_of(ds, split) if split else datasets.concatenate_datasets(list(ds.values()))
            return ds
        return datasets.load_dataset(source, split=split or None)
    except GleamDataError:
        raise
    except Exception as e:  # datasets raises many types (DatasetNotFoundError, ConnectionError, ...)
        first = first_line(e)
        raise GleamDataError.at(
            source, None, "dataset", f"cannot load as a Hugging Face dataset ({type(e).__name__}: {first})"
        ) from None


def _image_value(value: Any) -> Any:
    # Encoded bytes stay bytes: the record checker decodes them after checking the pixel count.
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes"):
            return bytes(value["bytes"])
        return value.get("path")
    return value


def _split_of(ds: Any, split: str) -> Any:
    """``ds[split]``, matching split names case-insensitively (``Test``, ``validation`` for ``val``)."""
    from gleamx.data.schema import canonical_split

    if split in ds:
        return ds[split]
    matches = [k for k in ds if (canonical_split(k) or k.lower()) == (canonical_split(split) or split.lower())]
    if len(matches) == 1:
        return ds[matches[0]]
    raise GleamDataError.at("--split", None, "split", f"no split {split!r} (the dataset has: {', '.join(ds)})")


def iter_hf_records(
    source: str, *, split: str | None = None, columns: dict[str, str] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(row_index, gleamx_record)`` from a Hugging Face dataset."""
    import datasets

    ds = _load(source, split)
    if isinstance(ds, datasets.DatasetDict):
        ds = datasets.concatenate_datasets(list(ds.values()))
    mapping = columns or {}
    missing = [col for col in mapping.values() if col not in ds.column_names]
    if missing:
        raise GleamDataError.at(
            source, None, "columns", f"no column(s) {missing} (the dataset has: {', '.join(ds.column_names)})"
        )
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(name, datasets.Image(decode=False))
    from gleamx.data.records import KNOWN_FIELDS

    to_field = {col: fld for fld, col in mapping.items()}
    for i, row in enumerate(ds, start=1):
        rec: dict[str, Any] = {}
        extras: dict[str, Any] = {}
        for k, v in row.items():
            fld = to_field.get(k, k)
            if fld in KNOWN_FIELDS:
                rec[fld] = v
            elif isinstance(v, (str, int, float, bool)) or v is None:
                extras[k] = v  # other scalar columns are kept as metadata, not dropped
        if extras and not rec.get("meta"):
            rec["meta"] = extras
        for fld in ("query_image", "satellite_image"):
            if fld in rec:
                rec[fld] = _image_value(rec[fld])
        if isinstance(rec.get("meta"), str):
            import json

            try:
                rec["meta"] = json.loads(rec["meta"]) if rec["meta"] else {}
            except json.JSONDecodeError:
                pass  # left as a string: validation reports it
        if isinstance(rec.get("explanation"), dict):
            rec["explanation"] = {k: v for k, v in rec["explanation"].items() if v is not None}
        yield i, rec
