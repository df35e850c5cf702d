"""The GLEAM-X task's vocabulary, in one place below every other layer: the query views and languages (their
values are :mod:`gleamx.choices`'), the two task variants, the bilingual prompt templates and image order
(:mod:`gleamx.task.templates`), and the verdict line every answer ends with and its parser
(:mod:`gleamx.task.verdict`), and which language a text is written in (:mod:`gleamx.task.language`). Data, prompts, training, evaluation and the app all read the task from here."""

from gleamx.choices import LANGS, TASKS, VIEWS
from gleamx.task.language import written_in
from gleamx.task.templates import IMAGE_ORDER, USER_TEMPLATES, VIEW_NAMES, user_prompt, view_from_prompt
from gleamx.task.verdict import VERDICT_LINES, parse_verdict, strip_verdict, verdict_line, verdict_problem

__all__ = ["IMAGE_ORDER", "LANGS", "TASKS", "USER_TEMPLATES", "VERDICT_LINES", "VIEWS", "VIEW_NAMES", "parse_verdict",
           "strip_verdict", "user_prompt", "verdict_line", "verdict_problem", "view_from_prompt", "written_in"]
