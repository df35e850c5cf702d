"""Write GLEAM-X samples as ShareGPT / LLaMA-Factory conversations (the reader is :mod:`gleamx.data.sharegpt`).

Writing builds the prompts and answers, so it lives here, above the data layer.
Each row also carries ``id``, ``lang``, ``task``, ``query_view``, ``label``,
``source``, ``split``, ``meta`` and ``verdict_appended``, which LLaMA-Factory
ignores and the reader uses to make the round trip JSONL -> ShareGPT -> JSONL lossless.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gleamx.data.jsonl import images_dir, sample_to_json, save_in_memory_images
from gleamx.data.paths import record_image_roots
from gleamx.data.schema import GleamSample, samples_of
from gleamx.data.sharegpt import IMAGE_TOKEN
from gleamx.data.text import MAX_JSON_DEPTH, json_too_deep, read_text
from gleamx.errors import GleamDataError
from gleamx.prompts.messages import answer_with_verdict, sample_languages
from gleamx.task.templates import user_prompt


def sample_to_sharegpt_rows(sample: GleamSample, base_dir: Path, lang: str = "both", task: str = "explain") -> list[dict]:
    """One ShareGPT row per language of ``sample`` (see module docstring)."""
    rel = sample_to_json(sample, base_dir)
    langs = sample_languages(sample, lang, task)
    if not langs and task == "explain":
        # A label-only sample still round-trips: it becomes label-task rows.
        task, langs = "label", sample_languages(sample, lang, "label")
    rows = []
    for lg in langs:
        answer, appended = answer_with_verdict(sample, lg, task)
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": IMAGE_TOKEN * 2 + user_prompt(sample.query_view, lg, task)},
                    {"role": "assistant", "content": answer},
                ],
                "images": [rel["query_image"], rel["satellite_image"]],
                "id": sample.id,
                "lang": lg,
                "task": task,
                "query_view": sample.query_view,
                "label": bool(sample.label),
                "source": sample.source,
                "split": sample.split,
                "meta": sample.meta,
                # Lets the reader drop the verdict line gleamx added, so the round trip is lossless.
                "verdict_appended": appended,
            }
        )
    return rows


def _read_info(info_path: Path) -> dict[str, Any]:
    """The ``dataset_info.json`` beside the output (read before writing anything: a broken one stops here)."""
    if not info_path.is_file():
        return {}
    text = read_text(info_path)
    if json_too_deep(text):
        raise GleamDataError.at(str(info_path), None, "json", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        info = json.loads(text)
    except json.JSONDecodeError as e:
        raise GleamDataError.at(str(info_path), e.lineno, "json", f"expected a JSON object ({e.msg})") from None
    if not isinstance(info, dict):
        raise GleamDataError.at(str(info_path), None, "json", f"expected a JSON object, got {type(info).__name__}")
    return info


def _dump_list(rows: Iterator[dict], f: Any) -> int:
    """``json.dump(list(rows), f, indent=1)``, byte for byte, one row in memory at a time."""
    n = 0
    for row in rows:
        f.write("[\n" if n == 0 else ",\n")
        f.write("\n".join(" " + line for line in json.dumps(row, ensure_ascii=False, indent=1).splitlines()))
        n += 1
    f.write("\n]\n" if n else "[]\n")
    return n


def write_sharegpt(
    samples: Iterable[GleamSample] | Any,
    path: str | os.PathLike,
    *,
    lang: str = "both",
    task: str = "explain",
    dataset_name: str | None = None,
) -> int:
    """Write ShareGPT JSON (a list) plus a LLaMA-Factory ``dataset_info.json`` entry beside it.

    ``samples`` is an iterable of :class:`GleamSample` or a :data:`~gleamx.data.schema.FEATURES` dataset;
    in-memory images are written as PNG files under ``<stem>_images/``. Returns the number of rows
    (conversations) written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info_path = path.parent / "dataset_info.json"
    info = _read_info(info_path)
    images: list[Any] = []

    def rows() -> Iterator[dict]:
        for n, s in enumerate(samples_of(samples), start=1):
            s = save_in_memory_images(s, images_dir(path), n)
            images.extend((s.query_image, s.satellite_image))
            yield from sample_to_sharegpt_rows(s, path.parent.resolve(), lang, task)

    with path.open("w", encoding="utf-8", newline="\n") as f:
        n_rows = _dump_list(rows(), f)
    # images outside the output's directory: name their root, so that gleamx reads this file back
    record_image_roots(path.parent, images)
    info[dataset_name or path.stem] = {
        "file_name": path.name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return n_rows
