"""Prompt templates: defined in :mod:`gleamx.data.templates` (the ShareGPT reader recognises the query view
in a gleamx prompt), re-exported here under the prompts' name."""

from gleamx.data.templates import IMAGE_ORDER, TASKS, USER_TEMPLATES, VIEW_NAMES, user_prompt, view_from_prompt

__all__ = ["IMAGE_ORDER", "TASKS", "USER_TEMPLATES", "VIEW_NAMES", "user_prompt", "view_from_prompt"]
