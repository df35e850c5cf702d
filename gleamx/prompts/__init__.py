"""Bilingual GLEAM-X prompts, sample -> chat messages, the ShareGPT writer, and the verdict parser.

This layer sits above :mod:`gleamx.data`: it imports the data layer, never the other way round. The
templates and the verdict parser are defined in :mod:`gleamx.data.templates` and :mod:`gleamx.data.verdict`
(the data layer checks verdicts and reads prompts) and re-exported here."""

from gleamx.data.templates import IMAGE_ORDER, TASKS, USER_TEMPLATES, VIEW_NAMES, user_prompt
from gleamx.data.verdict import VERDICT_LINES, parse_verdict, strip_verdict, verdict_line
from gleamx.prompts.messages import build_answer, build_messages, sample_images, sample_languages
from gleamx.prompts.sharegpt import sample_to_sharegpt_rows, write_sharegpt

__all__ = [
    "IMAGE_ORDER",
    "TASKS",
    "USER_TEMPLATES",
    "VERDICT_LINES",
    "VIEW_NAMES",
    "build_answer",
    "build_messages",
    "parse_verdict",
    "sample_to_sharegpt_rows",
    "sample_images",
    "sample_languages",
    "strip_verdict",
    "user_prompt",
    "verdict_line",
    "write_sharegpt",
]
