"""Optional vLLM generation backend (``--backend vllm``); imported only when asked for.

Greedy decoding with the model's own chat template; P(yes) comes from the
top log-probabilities vLLM returns at the verdict token, when both verdict
words are among them.
"""

from __future__ import annotations

import math
from typing import Any

from gleamx.errors import GleamConfigError


def generate_vllm(cfg: Any, samples: list) -> list[tuple[str, float | None]]:
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise GleamConfigError("--backend vllm: vllm is not installed (pip install 'gleamx[vllm]', needs a GPU)") from None
    from transformers import AutoProcessor

    from gleamx.eval.generate import VERDICT_PREFIX, VERDICT_WORDS
    from gleamx.prompts import build_messages, sample_images

    if cfg.adapter:
        raise GleamConfigError("--backend vllm: merge the adapter first (gleamx merge) and pass the merged --model")
    processor = AutoProcessor.from_pretrained(cfg.model)
    mm_kwargs = {k: v for k, v in (("min_pixels", cfg.min_pixels), ("max_pixels", cfg.max_pixels)) if v}
    llm = LLM(model=cfg.model, limit_mm_per_prompt={"image": 2}, mm_processor_kwargs=mm_kwargs or None,
              dtype=cfg.dtype if cfg.dtype != "auto" else "auto")
    params = SamplingParams(temperature=0.0, max_tokens=cfg.max_new_tokens, logprobs=5)
    requests = [
        {"prompt": processor.apply_chat_template(build_messages(s, cfg.lang, cfg.task, with_answer=False),
                                                 add_generation_prompt=True, tokenize=False),
         "multi_modal_data": {"image": sample_images(s)}}
        for s in samples
    ]
    outputs = llm.generate(requests, params)
    yes_word, no_word = (w.strip() for w in VERDICT_WORDS[cfg.lang])
    results = []
    for out in outputs:
        comp = out.outputs[0]
        text, p_yes = comp.text.strip(), None
        # the verdict is the first generated token after the last verdict prefix
        seen = ""
        for tok_id, lp in zip(comp.token_ids, comp.logprobs or []):
            if seen.rstrip().endswith(VERDICT_PREFIX[cfg.lang].rstrip()):
                by_word = {v.decoded_token.strip(): v.logprob for v in lp.values()}
                if yes_word in by_word and no_word in by_word:
                    a, b = math.exp(by_word[yes_word]), math.exp(by_word[no_word])
                    p_yes = a / (a + b)
            seen += lp[tok_id].decoded_token if tok_id in lp else ""
        results.append((text, p_yes))
    return results
