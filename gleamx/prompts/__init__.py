"""Bilingual GLEAM-X prompts, sample -> chat messages, and the verdict parser."""

from gleamx.prompts.messages import build_answer, build_messages, sample_images, sample_languages
from gleamx.prompts.templates import IMAGE_ORDER, TASKS, USER_TEMPLATES, VIEW_NAMES, user_prompt
from gleamx.prompts.verdict import VERDICT_LINES, parse_verdict, strip_verdict, verdict_line

__all__ = [
    "IMAGE_ORDER",
    "TASKS",
    "USER_TEMPLATES",
    "VERDICT_LINES",
    "VIEW_NAMES",
    "build_answer",
    "build_messages",
    "parse_verdict",
    "sample_images",
    "sample_languages",
    "strip_verdict",
    "user_prompt",
    "verdict_line",
]
