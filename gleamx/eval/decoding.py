"""gleamx-eval's decoding: one explicit configuration for every backend.

:func:`greedy_decoding` sets every sampling field explicitly, and both backends get exactly that
(:func:`hf_generation_config` for transformers' ``generate``, :func:`vllm_sampling_kwargs` for vLLM).
Nothing is inherited from a checkpoint's ``generation_config.json`` (Qwen2.5-VL ships
``do_sample: true``, ``repetition_penalty: 1.05``, ``temperature: 0.1``, ``top_k: 1``,
``top_p: 0.001``) except its stop tokens. No torch import here: ``gleamx-eval`` hashes this config
before it loads anything.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any


def greedy_decoding(max_new_tokens: int = 256, repetition_penalty: float = 1.0) -> dict[str, Any]:
    """gleamx's decoding config, every field explicit: greedy, one beam, sampling fields neutral
    (``top_k`` 0 = off in both transformers and vLLM), ``repetition_penalty`` 1.0 unless asked."""
    return {"do_sample": False, "num_beams": 1, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
            "repetition_penalty": float(repetition_penalty), "max_new_tokens": int(max_new_tokens)}


def stop_token_ids(generation_eos: int | Sequence[int] | None, tokenizer: Any) -> list[int]:
    """The checkpoint's stop tokens: its generation config's ``eos_token_id`` plus the tokenizer's eos
    (vLLM always stops at the latter, so transformers must too)."""
    ids = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and eos not in ids:
        ids.append(eos)
    return [int(i) for i in ids]


def checkpoint_stop_token_ids(model: str, tokenizer: Any) -> list[int]:
    """:func:`stop_token_ids` of a model directory or Hub id (its ``generation_config.json``, if any)."""
    from transformers import GenerationConfig

    from gleamx.models.load import resolve_source

    source, local_only = resolve_source(model)
    try:
        eos = GenerationConfig.from_pretrained(source, local_files_only=local_only).eos_token_id
    except (OSError, ValueError):  # no generation_config.json: the tokenizer's eos only
        eos = None
    return stop_token_ids(eos, tokenizer)


class _QuietGreedyTopK(logging.Filter):
    """transformers flags any ``top_k`` but its own default 50 as "may be ignored" under greedy decoding;
    ``top_k=0`` is gleamx's explicit "off", so that one notice is dropped (every other one is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "generation flags are not valid and may be ignored: ['top_k']" not in record.getMessage()


logging.getLogger("transformers.generation.configuration_utils").addFilter(_QuietGreedyTopK())


def hf_generation_config(decoding: dict[str, Any], *, stop_ids: Sequence[int] | None = None,
                         pad_token_id: int | None = None) -> Any:
    """A ``transformers.GenerationConfig`` holding all of ``decoding`` (see :func:`greedy_decoding`).

    Passed to ``generate(generation_config=...)``, its explicit fields win over the checkpoint's
    ``generation_config.json``, which fills only fields left ``None``.
    """
    from transformers import GenerationConfig

    extra: dict[str, Any] = {}
    if stop_ids:
        extra["eos_token_id"] = list(stop_ids)
    if pad_token_id is not None:
        extra["pad_token_id"] = pad_token_id
    return GenerationConfig(**decoding, **extra)


def vllm_sampling_kwargs(decoding: dict[str, Any], *, stop_ids: Sequence[int] | None = None) -> dict[str, Any]:
    """vLLM ``SamplingParams`` keyword arguments for the same decoding as :func:`hf_generation_config`.

    vLLM spells greedy as ``temperature=0``; one sequence (``n=1``) is the single beam (gleamx never
    searches beams).
    """
    kwargs = {"n": 1, "temperature": 0.0 if not decoding["do_sample"] else decoding["temperature"],
              "top_p": decoding["top_p"], "top_k": decoding["top_k"],
              "repetition_penalty": decoding["repetition_penalty"], "max_tokens": decoding["max_new_tokens"]}
    if stop_ids:
        kwargs["stop_token_ids"] = list(stop_ids)
    return kwargs
