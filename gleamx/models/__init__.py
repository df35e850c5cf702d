"""Models: tiny random Qwen-VL models for tests, tokenizers, the chat template, and one loader."""

from gleamx.models.chat_template import QWEN_VL_CHAT_TEMPLATE, training_chat_template
from gleamx.models.load import image_token_count, load_model_and_processor
from gleamx.models.tiny import ARCHS, available_archs, build_tiny_model

__all__ = [
    "ARCHS",
    "QWEN_VL_CHAT_TEMPLATE",
    "available_archs",
    "build_tiny_model",
    "image_token_count",
    "load_model_and_processor",
    "training_chat_template",
]
