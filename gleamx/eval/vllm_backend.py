"""Optional vLLM generation backend (``--backend vllm``); imported only when asked for.

Greedy decoding (gleamx's explicit config, the same as the transformers backend's) with the
model's own chat template; P(yes) comes from the top log-probabilities vLLM returns at the
verdict token, when both verdict words are among them. Samples go to vLLM in chunks, and each
finished chunk is handed back (and appended to the predictions file by the caller), so a killed
run keeps every chunk it finished.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from gleamx.errors import GleamConfigError

CHUNK = 256
"""Samples per ``LLM.generate`` call: large enough for vLLM's scheduler to batch, small enough to resume."""


def verdict_p_yes_from_logprobs(token_ids: Sequence[int], logprobs: Sequence[dict[int, Any]] | None,
                                lang: str) -> float | None:
    """P(yes) at the token that completes the last verdict line, from vLLM's per-token top log-probs.

    ``logprobs[i]`` maps token ids to objects with ``logprob`` and ``decoded_token`` (vLLM's ``Logprob``). The
    verdict's slot is the position where one top candidate completes the text so far to ``marker + yes`` and
    another to ``marker + no``, so a tokenizer that merges the marker's end with the word (Qwen's ``：是``) is read
    where generation chose it (as :func:`gleamx.eval.generate.verdict_slot` does for the transformers backend).
    ``None`` when no position offers both verdicts among its top log-probs.
    """
    import re

    from gleamx.eval.generate import VERDICT_PREFIX, VERDICT_WORDS

    yes_word, no_word = (w.strip() for w in VERDICT_WORDS[lang])
    ends = {word: re.compile(rf"{re.escape(VERDICT_PREFIX[lang])}\s*{re.escape(word)}$") for word in (yes_word, no_word)}
    p_yes, seen = None, ""
    for tok_id, lp in zip(token_ids, logprobs or []):
        by_word: dict[str, float] = {}
        for v in lp.values():
            completed = (seen + v.decoded_token).rstrip()
            for word, end in ends.items():
                if end.search(completed):
                    by_word[word] = max(by_word.get(word, -math.inf), v.logprob)
        if yes_word in by_word and no_word in by_word:
            a, b = math.exp(by_word[yes_word]), math.exp(by_word[no_word])
            p_yes = a / (a + b)
        seen += lp[tok_id].decoded_token if tok_id in lp else ""
    return p_yes


def generate_vllm(cfg: Any, samples: list, on_chunk: Callable[[list, list[str], list[float | None]], None],
                  chunk_size: int | None = None, *, processor: Any = None,
                  stop_ids: Sequence[int] | None = None) -> None:
    """Greedy answers and P(yes) for ``samples``, passed to ``on_chunk(samples, answers, p_yes)`` per chunk.

    Decoding is ``cfg.generation_config()`` (the one the transformers backend gets) with the
    checkpoint's ``stop_ids``; vLLM is told to ignore the checkpoint's ``generation_config.json``.
    ``processor`` renders the chat template (default: ``cfg.model``'s).
    """
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise GleamConfigError("--backend vllm: vllm is not installed (pip install 'gleamx[vllm]', needs a GPU)") from None

    from gleamx.eval.decoding import checkpoint_stop_token_ids, vllm_sampling_kwargs
    from gleamx.prompts import build_messages, sample_images

    if cfg.adapter:
        raise GleamConfigError("--backend vllm: merge the adapter first (gleamx merge) and pass the merged --model")
    if processor is None:
        from gleamx.models.load import load_processor

        processor = load_processor(cfg.model)
    if stop_ids is None:
        stop_ids = checkpoint_stop_token_ids(cfg.model, processor.tokenizer)
    mm_kwargs = {k: v for k, v in (("min_pixels", cfg.min_pixels), ("max_pixels", cfg.max_pixels)) if v}
    # generation_config="vllm": vLLM's neutral defaults, not the checkpoint's sampling settings; every
    # field that matters is set explicitly below anyway.
    llm = LLM(model=cfg.model, limit_mm_per_prompt={"image": 2}, mm_processor_kwargs=mm_kwargs or None,
              dtype=cfg.dtype, generation_config="vllm")
    params = SamplingParams(**vllm_sampling_kwargs(cfg.generation_config(), stop_ids=stop_ids), logprobs=5)
    chunk_size = chunk_size or CHUNK
    for start in range(0, len(samples), chunk_size):
        chunk = samples[start:start + chunk_size]
        requests = [
            {"prompt": processor.apply_chat_template(build_messages(s, cfg.lang, cfg.task, with_answer=False),
                                                     add_generation_prompt=True, tokenize=False),
             "multi_modal_data": {"image": sample_images(s)}}
            for s in chunk
        ]
        outputs = llm.generate(requests, params, use_tqdm=False)  # gleamx-eval shows its own progress
        completions = [out.outputs[0] for out in outputs]
        on_chunk(chunk, [c.text.strip() for c in completions],
                 [verdict_p_yes_from_logprobs(c.token_ids, c.logprobs, cfg.lang) for c in completions])
