"""GLEAM-X samples as chat messages (user turn with both images, assistant answer) and the ShareGPT writer.

This layer sits above :mod:`gleamx.data`; the prompt templates and the verdict line it writes are the task's
(:mod:`gleamx.task`)."""

from gleamx.prompts.messages import build_answer, build_messages, sample_images, sample_languages
from gleamx.prompts.sharegpt import sample_to_sharegpt_rows, write_sharegpt

__all__ = ["build_answer", "build_messages", "sample_images", "sample_languages", "sample_to_sharegpt_rows",
           "write_sharegpt"]
