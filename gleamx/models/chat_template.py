"""Chat templates for assistant-only loss: TRL's training templates.

TRL 1.16 ships, for the chat templates real Qwen2-VL / Qwen2.5-VL (byte-identical) and Qwen3-VL
checkpoints use, a training variant that renders the same text with ``{% generation %}`` markers
around each assistant turn (its content, ``<|im_end|>`` and the newline after it), and
``SFTTrainer`` swaps it in when ``assistant_only_loss=True``. gleamx's tiny models ship the
Qwen2.5-VL training variant as their template; :func:`training_chat_template` asks TRL for the
variant of any other processor's template and says in one line when it has none.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from gleamx.errors import GleamModelError


def _trl_chat_template(name: str) -> str:
    """A template TRL ships in ``trl/chat_templates`` (read from the file: importing TRL takes seconds)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        raise GleamModelError("chat template: the 'trl' package is missing; pip install gleamx")
    return (Path(next(iter(spec.submodule_search_locations))) / "chat_templates" / f"{name}.jinja").read_text(
        encoding="utf-8")


QWEN_VL_CHAT_TEMPLATE: str = _trl_chat_template("qwen2_5_vl_training")
"""TRL's Qwen2-VL/2.5-VL training template (what tiny models ship): the Instruct template's text, plus markers."""


def training_chat_template(processor: Any) -> str:
    """The processor's chat template with ``{% generation %}`` markers: its own if it has them, else TRL's
    training variant (``trl.chat_template_utils.get_training_chat_template``); one-line error if TRL has none."""
    template = processor.chat_template
    if isinstance(template, dict):  # named variants: the default one is what apply_chat_template uses
        template = template.get("default")
    if not isinstance(template, str) or not template:
        raise GleamModelError("chat template: the processor has none; expected a Jinja chat template")
    from trl.chat_template_utils import get_training_chat_template

    try:
        return get_training_chat_template(processor) or template
    except ValueError:
        raise GleamModelError(
            "chat template: it has no {% generation %} markers and TRL has no training variant of it "
            "(assistant_only_loss); add the markers around assistant turns, or give chat_template_path"
        ) from None


__all__ = ["QWEN_VL_CHAT_TEMPLATE", "training_chat_template"]
