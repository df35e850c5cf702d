"""ShareGPT / LLaMA-Factory multimodal format: the reader (the writer, which builds prompts, is
:mod:`gleamx.prompts.sharegpt`).

A ShareGPT row holds one conversation and its images::

    {"messages": [{"role": "user", "content": "<image><image>Image 1 is a UAV (drone) image ..."},
                  {"role": "assistant", "content": "... \\nAnswer: Yes"}],
     "images": ["images/uav/L1.png", "images/satellite/L1.png"]}

LLaMA-Factory reads it through a ``dataset_info.json`` entry (written beside the
file) and ignores extra keys, so gleamx also writes ``id``, ``lang``,
``query_view``, ``label``, ``source``, ``split`` and ``meta``: that keeps the
round trip JSONL -> ShareGPT -> JSONL lossless. A bilingual sample becomes one
row per language and the rows are merged back by ``id`` on reading. Rows made
by other tools (without those keys) are read too: the label comes from the
answer's verdict line and the view from the prompt, or each is reported.
The older ``conversations`` / ``from`` / ``value`` spelling is accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gleamx.data.jsonl import iter_jsonl_rows
from gleamx.data.schema import LANGS
from gleamx.task.templates import view_from_prompt
from gleamx.data.text import iter_json_list
from gleamx.task.verdict import VERDICT_LINES, parse_verdict, strip_verdict
from gleamx.errors import GleamDataError, Problem

IMAGE_TOKEN = "<image>"
_ROLE = {"human": "user", "gpt": "assistant", "user": "user", "assistant": "assistant", "system": "system"}
_CJK = re.compile(r"[\u4e00-\u9fff]")
_BARE_VERDICTS = {line for lines in VERDICT_LINES.values() for line in lines.values()}


def iter_sharegpt_rows(path: str | os.PathLike) -> Iterator[tuple[int | None, Any]]:
    """Rows of a ShareGPT file: a JSON list (``.json``) or one object per line (``.jsonl``).

    Line numbers are file lines for JSONL and 1-based row indices for a JSON list
    (reported as ``file:row``).
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        yield from iter_jsonl_rows(path)
        return
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "file not found (expected a ShareGPT .json or .jsonl file)")
    yield from iter_json_list(path)  # a row with bytes that are not UTF-8 is a Problem; the others still load


def _turns(row: dict[str, Any]) -> list[tuple[str, str]] | None:
    msgs = row.get("messages", row.get("conversations"))
    if not isinstance(msgs, list):
        return None
    out = []
    for m in msgs:
        if not isinstance(m, dict):
            return None
        role = _ROLE.get(str(m.get("role", m.get("from", ""))))
        content = m.get("content", m.get("value"))
        if role is None or not isinstance(content, str):
            return None
        out.append((role, content))
    return out


def sharegpt_row_to_record(row: Any, *, file: str, line: int | None, index: int) -> tuple[dict | None, str | None, list[Problem]]:
    """A ShareGPT row -> (gleamx raw record, its language, problems). Images stay as written."""
    problems: list[Problem] = []

    def bad(field: str, msg: str) -> tuple[None, None, list[Problem]]:
        problems.append(Problem(file, line, field, msg))
        return None, None, problems

    if isinstance(row, Problem):  # a line that was not JSON
        return None, None, [row]
    if not isinstance(row, dict):
        return bad("record", f"expected a JSON object, got {type(row).__name__}")
    turns = _turns(row)
    if turns is None:
        return bad("messages", "expected a list of {role, content} (or {from, value}) turns with string content")
    users = [c for r, c in turns if r == "user"]
    answers = [c for r, c in turns if r == "assistant"]
    if len(users) != 1 or len(answers) != 1:
        return bad("messages", f"expected one user and one assistant turn, got {len(users)} and {len(answers)}")
    images = row.get("images")
    if not isinstance(images, list) or len(images) != 2:
        return bad("images", "expected a list of two image paths: [query view, satellite]")
    if users[0].count(IMAGE_TOKEN) != 2:
        return bad("messages", f"expected the user turn to hold two {IMAGE_TOKEN} tokens, one per image")
    answer = answers[0]
    lang = row.get("lang") or ("zh" if _CJK.search(answer) else "en")
    if lang not in LANGS:
        return bad("lang", f"expected one of {', '.join(LANGS)}, got {lang!r}")

    label = row.get("label")
    if label is None:
        label = parse_verdict(answer)
        if label is None:
            return bad("label", "missing, and the assistant answer has no readable verdict line (e.g. 'Answer: Yes')")
    view = row.get("query_view") or view_from_prompt(users[0])
    if view is None:
        return bad("query_view", "missing, and the user prompt does not name the view (add a 'query_view' key)")

    record: dict[str, Any] = {
        "id": row.get("id", f"{Path(file).stem}-{index:06d}"),
        "query_image": images[0],
        "satellite_image": images[1],
        "query_view": view,
        "label": label,
        "source": row.get("source", "sharegpt"),
    }
    if "split" in row:  # else the file's split (test.json -> test), as for gleamx JSONL
        record["split"] = row["split"]
    if row.get("meta"):
        record["meta"] = row["meta"]
    # A bare verdict ("Answer: Yes", "是") is a label-only answer, not an explanation.
    short = answer.strip()
    bare = short in _BARE_VERDICTS or short.lower().rstrip(".。!！") in {"yes", "no", "是", "否"}
    if row.get("task") != "label" and not bare:
        record["explanation"] = {lang: strip_verdict(answer) if row.get("verdict_appended") else answer}
    return record, lang, problems


def merge_language_rows(records: Iterable[tuple[dict, str]]) -> list[dict]:
    """Merge per-language rows of the same sample id into one record (first row's fields win)."""
    merged: dict[str, dict] = {}
    for rec, lang in records:
        key = str(rec["id"])
        if key not in merged:
            merged[key] = rec
        elif "explanation" in rec:
            merged[key].setdefault("explanation", {}).update(rec["explanation"])
    return list(merged.values())
