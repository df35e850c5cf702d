"""GLEAM-X sample -> chat messages (the format TRL, transformers processors and vLLM take).

The user turn holds two images, query view first and satellite second
(:data:`~gleamx.task.templates.IMAGE_ORDER`), then the instruction text. The
assistant turn is the explanation ending in its verdict line (``explain``) or
the verdict line alone (``label``).
"""

from __future__ import annotations

from typing import Any

from gleamx.data.images import open_image
from gleamx.data.schema import LANGS, GleamSample
from gleamx.task.templates import IMAGE_ORDER, TASKS, user_prompt
from gleamx.task.verdict import parse_verdict, verdict_line


def build_answer(sample: GleamSample, lang: str, task: str = "explain") -> str:
    """The target answer: the explanation ending in a verdict line, or the verdict line alone.

    An explanation whose last line already is a verdict keeps its text as is
    (validation has checked it agrees with the label); one without gets the
    canonical verdict line appended, so every answer ends in exactly one
    parseable verdict.
    """
    return answer_with_verdict(sample, lang, task)[0]


def answer_with_verdict(sample: GleamSample, lang: str, task: str = "explain") -> tuple[str, bool]:
    """:func:`build_answer` plus whether a verdict line was appended to the explanation."""
    final = verdict_line(sample.label, lang)
    if task == "label":
        return final, False
    if task != "explain":
        raise ValueError(f"task: expected one of {list(TASKS)}, got {task!r}")
    text = sample.explanation.get(lang)
    if not text:
        raise ValueError(f"sample {sample.id}: explanation.{lang}: missing (needed for task 'explain')")
    lines = text.rstrip().splitlines()
    if lines and parse_verdict(lines[-1]) is not None:
        return text, False
    return f"{text.rstrip()}\n{final}", True


def build_messages(
    sample: GleamSample,
    lang: str,
    task: str = "explain",
    *,
    with_answer: bool = True,
    inline_images: bool = False,
) -> list[dict[str, Any]]:
    """Chat messages for ``sample``.

    With ``inline_images`` each image part carries its image
    (``{"type": "image", "image": path_or_PIL}``, as qwen-vl-utils and
    ``processor.apply_chat_template`` take it); otherwise parts are bare
    ``{"type": "image"}`` placeholders and the images go in a separate list
    (:func:`sample_images`), as TRL's vision datasets expect.
    """
    parts: list[dict[str, Any]] = []
    for field in IMAGE_ORDER:
        parts.append({"type": "image", "image": getattr(sample, field)} if inline_images else {"type": "image"})
    parts.append({"type": "text", "text": user_prompt(sample.query_view, lang, task)})
    messages: list[dict[str, Any]] = [{"role": "user", "content": parts}]
    if with_answer:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": build_answer(sample, lang, task)}]})
    return messages


def sample_images(sample: GleamSample) -> list:
    """The sample's images as RGB PIL images, in :data:`IMAGE_ORDER` (pixel count checked first)."""
    return [open_image(getattr(sample, field)) for field in IMAGE_ORDER]


def sample_languages(sample: GleamSample, lang: str, task: str) -> list[str]:
    """Which languages a sample yields examples in for ``lang`` in {en, zh, both}.

    Label-only examples need no explanation, so they exist in every requested
    language; explain examples only where the explanation exists.
    """
    wanted = list(LANGS) if lang == "both" else [lang]
    if lang != "both" and lang not in LANGS:
        raise ValueError(f"lang: expected one of {', '.join(LANGS)} or both, got {lang!r}")
    if task == "label":
        return wanted
    return [lg for lg in wanted if sample.explanation.get(lg)]
