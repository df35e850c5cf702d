"""``per_sample.jsonl``: every sample of an eval as it was scored, the input of ``gleamx compare``.

One row per sample, in the data's order: ``id``, ``lang``, ``task``, ``sample`` (a hash of the sample itself: id,
label, query view and both images' bytes; the same for every model and prompt, so two runs on the same data share
it), ``label``, ``query_view``, ``source``, ``verdict`` (``true``/``false``, ``null`` when no verdict could be
read), ``p_yes`` and, where scored, ``explanation`` (each automatic metric of this answer), ``judge`` (the LLM
judge's criteria and their mean) and ``human_rating`` (a person's rating of this very answer, ``--ratings``). Written with ``results.json`` from the same numbers, so that a comparison can
resample samples, not summaries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from gleamx.data.jsonl import read_json_objects
from gleamx.errors import GleamDataError

FILE = "per_sample.jsonl"
_REQUIRED = {"id": str, "lang": str, "sample": str, "label": bool, "query_view": str}


def sample_hashes(samples: Sequence[Any]) -> dict[str, str]:
    """``{id: hash}`` of what a sample *is* (id, label, view, both images' bytes), independent of prompt and model."""
    from gleamx.eval.fingerprint import ImageHasher
    from gleamx.task.templates import IMAGE_ORDER

    images = ImageHasher()
    return {s.id: hashlib.blake2b(json.dumps([s.id, bool(s.label), s.query_view,
                                              [images(getattr(s, f)) for f in IMAGE_ORDER]]).encode(),
                                  digest_size=12).hexdigest() for s in samples}


def per_sample_rows(samples: Sequence[Any], verdicts: Sequence[bool | None], predictions: dict[str, dict[str, Any]],
                    *, lang: str, task: str, explanation: dict[str, Any] | None,
                    judge: dict[str, dict[str, float]] | None = None,
                    ratings: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of ``per_sample.jsonl`` for one scored run (``ratings``: the used ratings by id, each a
    :class:`gleamx.eval.ratings.Rating`)."""
    hashes = sample_hashes(samples)
    per_expl = (explanation or {}).get("per_sample") or {}
    rows = []
    for s, verdict in zip(samples, verdicts):
        row: dict[str, Any] = {"id": s.id, "lang": lang, "task": task, "sample": hashes[s.id], "label": bool(s.label),
                               "query_view": s.query_view, "source": s.source, "verdict": verdict,
                               "p_yes": predictions[s.id].get("p_yes")}
        if s.id in per_expl:
            row["explanation"] = per_expl[s.id]
        if judge and s.id in judge:
            row["judge"] = judge[s.id]
        if ratings and s.id in ratings:
            row["human_rating"] = ratings[s.id].as_row()
        rows.append(row)
    return rows


def write_rows(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write (atomically: a reader never sees half a file) one JSON object per line."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``per_sample.jsonl``; a row without the fields a comparison needs is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", f"not found: expected the {FILE} that gleamx eval writes "
                                                         "(rerun the eval with this gleamx to get it)")
    rows = []
    for lineno, row in read_json_objects(path):
        for name, kind in _REQUIRED.items():
            if not isinstance(row.get(name), kind):
                raise GleamDataError.at(str(path), lineno, name, f"expected {kind.__name__}, got {row.get(name)!r}")
        if row.get("verdict") not in (True, False, None):
            raise GleamDataError.at(str(path), lineno, "verdict", f"expected true, false or null, got "
                                                                  f"{row.get('verdict')!r}")
        rows.append(row)
    return rows
