"""Qwen2-VL / Qwen2.5-VL chat format, with ``{% generation %}`` markers for assistant-only loss.

``QWEN_VL_CHAT_TEMPLATE`` renders exactly what the Qwen2-VL / Qwen2.5-VL Instruct template renders
(default system message, ``<|vision_start|><|image_pad|><|vision_end|>`` per image, optional
``add_vision_id`` labels, ``add_generation_prompt``). It additionally wraps each assistant turn's
content and its closing ``<|im_end|>`` (not the ``\\n`` after it) in ``{% generation %}`` ...
``{% endgeneration %}``, which emit nothing but let ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` (and TRL's ``assistant_only_loss=True``) mask exactly the
tokens the model must learn to produce, including the stop token.

Real Qwen checkpoints ship their template without markers; :func:`training_chat_template` returns
a marked template for them (ours for the Qwen2-VL/2.5-VL format, TRL's training templates for the
other formats TRL knows, e.g. Qwen3-VL).
"""

from __future__ import annotations

import re
from typing import Any

from gleamx.errors import GleamModelError

DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."

# The body of one message: a plain string, or a list of image / video / text parts.
_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
)


def _template(with_markers: bool) -> str:
    # The assistant branch repeats the body inside the generation block: a block tag cannot be
    # opened in one `if` branch and closed in another. The newline after `{% endgeneration %}` is
    # an expression because transformers renders with trim_blocks=True, which would eat a literal one.
    if with_markers:
        turn = (
            "{% if message['role'] == 'assistant' %}"
            "{% generation %}" + _CONTENT + "<|im_end|>{% endgeneration %}{{ '\\n' }}"
            "{% else %}" + _CONTENT + "<|im_end|>\n{% endif %}"
        )
    else:
        turn = _CONTENT + "<|im_end|>\n"
    return (
        "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\n" + DEFAULT_SYSTEM_MESSAGE + "<|im_end|>\n"
        "{% endif %}"
        "<|im_start|>{{ message['role'] }}\n" + turn + "{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


QWEN_VL_CHAT_TEMPLATE: str = _template(with_markers=True)
"""Qwen2-VL/2.5-VL chat template with generation markers (what tiny models ship)."""

QWEN_VL_CHAT_TEMPLATE_PLAIN: str = _template(with_markers=False)
"""The same template without markers (renders identically)."""

_MARKER_RE = re.compile(r"\{%-?\s*generation\s*-?%\}")

# Conversations on which a template must render like ours to count as the Qwen2-VL format.
_PROBES: tuple[tuple[list[dict[str, Any]], dict[str, Any]], ...] = (
    ([{"role": "user", "content": "Hi"}], {"add_generation_prompt": True}),
    (
        [
            {"role": "system", "content": "S."},
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Same?"}]},
            {"role": "assistant", "content": "Answer: Yes"},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "And?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "结论：否"}]},
        ],
        {},
    ),
    (
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}, {"type": "image"}]}],
        {"add_generation_prompt": True, "add_vision_id": True},
    ),
)


def has_generation_markers(template: str) -> bool:
    """True if ``template`` contains a ``{% generation %}`` block (any whitespace-trim variant)."""
    return _MARKER_RE.search(template) is not None


def render(template: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    """Render ``messages`` with ``template`` the way ``apply_chat_template(tokenize=False)`` does."""
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template(conversations=[messages], chat_template=template, **kwargs)
    return rendered[0]


def renders_like_qwen_vl(template: str) -> bool:
    """True if ``template`` renders byte-identically to the Qwen2-VL/2.5-VL format on probe chats."""
    try:
        return all(
            render(template, msgs, **kw) == render(QWEN_VL_CHAT_TEMPLATE_PLAIN, msgs, **kw) for msgs, kw in _PROBES
        )
    except Exception:  # a template for another format may raise on our probes: it is simply not ours
        return False


def training_chat_template(processor_or_template: Any) -> str:
    """A chat template with ``{% generation %}`` markers, equivalent to the given one.

    Accepts a template string, or a processor/tokenizer (uses its ``chat_template``). Returns it
    unchanged if it already has markers; :data:`QWEN_VL_CHAT_TEMPLATE` if it renders like the
    Qwen2-VL/2.5-VL template (what real Qwen2-VL and Qwen2.5-VL checkpoints ship); for a processor
    whose template TRL recognises (e.g. Qwen3-VL), TRL's training template. Raises
    :class:`GleamModelError` otherwise.
    """
    template = getattr(processor_or_template, "chat_template", processor_or_template)
    if isinstance(template, dict):  # named variants: the default one is what apply_chat_template uses
        template = template.get("default")
    if not isinstance(template, str) or not template:
        raise GleamModelError("chat template: expected a Jinja chat template string, got none")
    if has_generation_markers(template):
        return template
    if renders_like_qwen_vl(template):
        return QWEN_VL_CHAT_TEMPLATE
    if not isinstance(processor_or_template, str):
        try:
            from trl.chat_template_utils import get_training_chat_template

            patched = get_training_chat_template(processor_or_template)
        except Exception:  # TRL missing or it cannot handle this class: fall through to the error
            patched = None
        if patched:
            return patched
    raise GleamModelError(
        "chat template: expected {% generation %} markers or the Qwen2-VL/Qwen2.5-VL format "
        "(or a template TRL's get_training_chat_template knows); add the markers around assistant turns"
    )


__all__ = [
    "DEFAULT_SYSTEM_MESSAGE",
    "QWEN_VL_CHAT_TEMPLATE",
    "QWEN_VL_CHAT_TEMPLATE_PLAIN",
    "has_generation_markers",
    "render",
    "renders_like_qwen_vl",
    "training_chat_template",
]
