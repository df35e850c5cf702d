"""Read any Hugging Face dataset (Hub id or local directory) as GLEAM-X records.

Column names differ between datasets, so a mapping renames the dataset's
columns to gleamx fields, e.g. ``{"query_image": "drone", "satellite_image":
"sat", "label": "match"}``. Image columns are read without decoding (bytes or
path), so a bad image is reported per row instead of failing the whole load.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from gleamx.errors import GleamConfigError, GleamDataError, first_line
from gleamx.sources import hub_access, offline_if_asked


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


def check_columns_apply(source: str | os.PathLike, fmt: str, columns: str | dict[str, str] | None) -> None:
    """A column mapping given for data that is not a Hugging Face dataset would do nothing: one line, so a user who
    meant another source (or format) hears of it instead of training on what the mapping was meant to change."""
    if fmt != "hf" and parse_column_mapping(columns):
        raise GleamConfigError(f"columns: {source} is {fmt} data, whose fields already have gleamx's names; a column "
                               "mapping applies to a Hugging Face dataset (format hf) only")


def hf_splits(source: str, split: str | None, *, streaming: bool = False) -> list[tuple[str | None, Any]]:
    """``[(split name, datasets.Dataset)]`` of a Hub id or a ``save_to_disk`` directory: every split of a
    ``DatasetDict`` under its own name, or the one ``split`` asked for (``None`` for an unsplit dataset).
    ``streaming``: a Hub id or a folder of data files as ``IterableDataset`` streams (nothing downloaded ahead;
    a ``save_to_disk`` folder is read as it is, a ``Dataset``)."""
    import datasets

    try:
        if os.path.isdir(source) and (
            Path(source, "dataset_dict.json").is_file() or Path(source, "state.json").is_file()
        ):
            ds = datasets.load_from_disk(source)
        else:
            # A Hub id is checked with one quick call first: datasets retries for half a minute without a network.
            problem = None if os.path.exists(source) else hub_access(source, "dataset")[0]
            if problem:
                raise GleamDataError.at(source, None, "dataset", problem)
            with offline_if_asked():
                # a stream's split is picked below (any case, validation for val), as a DatasetDict's is
                ds = (datasets.load_dataset(source, streaming=True) if streaming else
                      datasets.load_dataset(source, split=split or None, cache_dir=_local_cache_dir(source)))
    except GleamDataError:
        raise
    except Exception as e:  # datasets raises many types (DatasetNotFoundError, ConnectionError, ...)
        first = first_line(e)
        raise GleamDataError.at(
            source, None, "dataset", f"cannot load as a Hugging Face dataset ({type(e).__name__}: {first})"
        ) from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return [split_of(ds, split)] if split else list(ds.items())
    return [(split, ds)]


def _local_cache_dir(source: str) -> str | None:
    """For a local folder, a cache folder of its own: ``datasets`` keys a folder's Arrow cache by its name and
    card, not by its files, so a folder rewritten in place (a new ``data push`` preview) or another folder of the
    same name would be read from a stale cache. Keyed by every file's path, size and mtime instead, it is shared
    by the processes of one run and rebuilt when a file changes. ``None`` (datasets' own cache) for a Hub id."""
    if not os.path.isdir(source):
        return None
    import datasets

    h = hashlib.sha256(os.path.realpath(source).encode())
    for path in sorted(Path(source).rglob("*")):
        if path.is_file():
            st = path.stat()
            h.update(f"\0{path.relative_to(source).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "gleamx_local" / h.hexdigest()[:16])


def split_of(ds: Any, split: str) -> tuple[str, Any]:
    """``(name, ds[name])`` for ``split``, matching names case-insensitively (``Test``, ``validation`` for ``val``)."""
    from gleamx.data.schema import canonical_split

    if split in ds:
        return split, ds[split]
    matches = [k for k in ds if (canonical_split(k) or k.lower()) == (canonical_split(split) or split.lower())]
    if len(matches) == 1:
        return matches[0], ds[matches[0]]
    raise GleamDataError.at("--split", None, "split", f"no split {split!r} (the dataset has: {', '.join(ds)})")


def prepare_hf(ds: Any, source: str, columns: dict[str, str]) -> Any:
    """``ds`` with its image columns left encoded (bytes or path), after checking the column mapping."""
    import datasets

    missing = [col for col in columns.values() if col not in ds.column_names]
    if missing:
        raise GleamDataError.at(
            source, None, "columns", f"no column(s) {missing} (the dataset has: {', '.join(ds.column_names)})"
        )
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            ds = ds.cast_column(name, datasets.Image(decode=False))
    return ds


def _image_value(value: Any) -> Any:
    # Encoded bytes stay bytes: the record checker decodes them after checking the pixel count.
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        if value.get("bytes"):
            return bytes(value["bytes"])
        return value.get("path")
    return value


def hf_record(row: dict[str, Any], to_field: dict[str, str]) -> dict[str, Any]:
    """One dataset row -> a gleamx raw record (``to_field``: dataset column -> gleamx field)."""
    from gleamx.data.records import KNOWN_FIELDS

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
        try:
            rec["meta"] = json.loads(rec["meta"]) if rec["meta"] else {}
        except json.JSONDecodeError:
            pass  # left as a string: validation reports it
    if isinstance(rec.get("explanation"), dict):
        rec["explanation"] = {k: v for k, v in rec["explanation"].items() if v is not None}
        if not rec["explanation"]:  # a FEATURES row of a label-only sample: every language null
            del rec["explanation"]
    return rec
