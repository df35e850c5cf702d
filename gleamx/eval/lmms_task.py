"""The functions an exported lmms-eval task calls (its ``utils.py`` imports them from here).

``gleamx export lmms-eval`` (:mod:`gleamx.eval.lmms_export`) writes a task folder whose YAML names these through
``!function utils.NAME``. They live in gleamx, not in a copy inside the folder, so that lmms-eval reads a sample
exactly as ``gleamx eval`` does: the same prompt text (:func:`gleamx.task.templates.user_prompt`), the same two
images in the same order (:data:`~gleamx.task.templates.IMAGE_ORDER`, decoded by
:func:`gleamx.data.images.open_image`), and the same verdict parser (:func:`gleamx.task.verdict.parse_verdict`),
whose rules a copy would drift from. A doc is one row of the exported Parquet file: gleamx's sample fields, the
images as ``datasets`` decodes them (lmms-eval drops the image columns before :func:`process_results`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from gleamx.data.images import open_image
from gleamx.task.templates import IMAGE_ORDER, user_prompt
from gleamx.task.verdict import parse_verdict, verdict_line

# What process_results returns per sample, and each metric's aggregation in the YAML (mean, or the functions below).
METRICS: dict[str, str] = {"accuracy": "mean", "accuracy_positive": "accuracy_positive",
                           "accuracy_negative": "accuracy_negative", "invalid_rate": "mean"}


def _setting(kwargs: Mapping[str, Any] | None, name: str) -> str:
    """``lang`` or ``task`` from the YAML's ``lmms_eval_specific_kwargs`` (its ``default`` entry)."""
    value = (kwargs or {}).get(name)
    if not isinstance(value, str):
        raise ValueError(f"lmms_eval_specific_kwargs: {name}: missing from the task YAML (expected the `default` "
                         "entry `gleamx export lmms-eval` writes); export the task again")
    return value


def doc_to_visual(doc: Mapping[str, Any]) -> list[Image.Image]:
    """The query image, then the satellite image, as RGB PIL images (gleamx's order and decoding)."""
    return [open_image(doc[field], mode="RGB", name=f"{doc.get('id')}: {field}") for field in IMAGE_ORDER]


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs: Mapping[str, Any] | None = None) -> str:
    """The user instruction gleamx's prompt gives for this sample's view, language and task variant."""
    return user_prompt(doc["query_view"], _setting(lmms_eval_specific_kwargs, "lang"),
                       _setting(lmms_eval_specific_kwargs, "task"))


def doc_to_target(doc: Mapping[str, Any]) -> str:
    """The verdict line of the sample's label, in English (lmms-eval logs it beside each answer; the score
    compares verdicts, whatever the language of either)."""
    return verdict_line(bool(doc["label"]), "en")


def process_results(doc: Mapping[str, Any], results: Sequence[str]) -> dict[str, Any]:
    """One sample's scores from its answer: correct (a clear verdict equal to the label), invalid (no clear
    verdict: counted wrong, never read as "no", as ``gleamx eval`` counts it), and ``(label, correct)`` for the
    accuracy on matching and on non-matching pairs."""
    answer = results[0] if results else None
    verdict = parse_verdict(answer if isinstance(answer, str) else None)
    label = bool(doc["label"])
    correct = float(verdict is not None and verdict == label)
    return {"accuracy": correct, "accuracy_positive": (label, correct), "accuracy_negative": (label, correct),
            "invalid_rate": float(verdict is None)}


def _accuracy_on(items: Sequence[Sequence[Any]], label: bool) -> float | None:
    scores = [correct for is_match, correct in items if bool(is_match) == label]
    return sum(scores) / len(scores) if scores else None  # as gleamx eval: undefined, not 0, without such pairs


def accuracy_positive(items: Sequence[Sequence[Any]]) -> float | None:
    """Accuracy on the matching pairs (``None`` when there are none)."""
    return _accuracy_on(items, True)


def accuracy_negative(items: Sequence[Sequence[Any]]) -> float | None:
    """Accuracy on the non-matching pairs (``None`` when there are none)."""
    return _accuracy_on(items, False)


__all__ = ["METRICS", "accuracy_negative", "accuracy_positive", "doc_to_target", "doc_to_text", "doc_to_visual",
           "process_results"]
