"""Batched greedy generation with a Hugging Face model + processor (left padding).

The decoding is gleamx's own (:mod:`gleamx.eval.decoding`), never the checkpoint's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from gleamx.data.schema import GleamSample
from gleamx.eval.decoding import greedy_decoding, hf_generation_config, stop_token_ids
from gleamx.prompts import build_messages, sample_images
from gleamx.task.templates import IMAGE_ORDER


def _image_size(image: Any) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding the pixels."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, dict) and image.get("bytes"):  # datasets' raw Image value
        import io

        with Image.open(io.BytesIO(image["bytes"])) as im:
            return im.size
    with Image.open(image["path"] if isinstance(image, dict) else image) as im:
        return im.size


def image_budget(processor: Any, samples: Sequence[GleamSample]) -> dict[str, Any]:
    """The processor's effective min/max pixels per image and the mean image tokens per sample it makes."""
    from gleamx.errors import GleamModelError
    from gleamx.models.load import image_token_count, pixel_budget

    lo, hi = pixel_budget(processor)
    try:
        per_sample = [sum(image_token_count(processor, *_image_size(getattr(s, f))) for f in IMAGE_ORDER)
                      for s in samples]
    except GleamModelError:  # not a Qwen-VL style image processor: counts unknown
        per_sample = []
    mean = sum(per_sample) / len(per_sample) if per_sample else None
    return {"min_pixels": lo, "max_pixels": hi, "image_tokens_per_sample": mean,
            "max_image_tokens_per_sample": max(per_sample) if per_sample else None}


def prompt_texts(processor: Any, samples: Sequence[GleamSample], lang: str, task: str) -> list[str]:
    """Chat-templated prompts (with the generation prompt) for each sample."""
    return [
        processor.apply_chat_template(build_messages(s, lang, task, with_answer=False), add_generation_prompt=True,
                                      tokenize=False)
        for s in samples
    ]


@torch.inference_mode()
def generate_batch(
    model: Any, processor: Any, samples: Sequence[GleamSample], lang: str, task: str = "explain",
    max_new_tokens: int = 128, *, generation_config: Any = None,
) -> list[str]:
    """Greedy answers for one batch. Left padding keeps every prompt's last token at the end,
    so batched and one-at-a-time generation agree.

    ``generation_config``: a ``transformers.GenerationConfig`` (default: :func:`greedy_decoding` with
    ``max_new_tokens`` and the checkpoint's stop tokens); it replaces the checkpoint's decoding.
    """
    tokenizer = processor.tokenizer
    if generation_config is None:
        generation_config = hf_generation_config(
            greedy_decoding(max_new_tokens), pad_token_id=tokenizer.pad_token_id,
            stop_ids=stop_token_ids(getattr(model.generation_config, "eos_token_id", None), tokenizer))
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        inputs = processor(
            text=prompt_texts(processor, samples, lang, task),
            images=[sample_images(s) for s in samples],
            padding=True,
            return_tensors="pt",
        ).to(model.device)
    finally:
        tokenizer.padding_side = old_side
    out = model.generate(**inputs, generation_config=generation_config)
    new_tokens = out[:, inputs["input_ids"].shape[1]:]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def generate_answers(
    model: Any, processor: Any, samples: Sequence[GleamSample], lang: str, task: str = "explain", *,
    batch_size: int = 8, max_new_tokens: int = 128, generation_config: Any = None,
    on_batch: Callable[[list[GleamSample], list[str]], None] | None = None,
) -> list[str]:
    """Answers for all samples, ``batch_size`` at a time; ``on_batch`` sees each finished batch.

    ``generation_config`` (a ``transformers.GenerationConfig``) overrides ``max_new_tokens``.
    """
    answers: list[str] = []
    for start in range(0, len(samples), batch_size):
        batch = list(samples[start:start + batch_size])
        got = generate_batch(model, processor, batch, lang, task, max_new_tokens, generation_config=generation_config)
        answers.extend(got)
        if on_batch is not None:
            on_batch(batch, got)
    return answers


# Where the verdict word starts in each language's verdict line ("Answer: " / "结论：").
VERDICT_PREFIX = {"en": "Answer:", "zh": "结论："}
VERDICT_WORDS = {"en": (" Yes", " No"), "zh": ("是", "否")}


def _first_token(tokenizer: Any, text: str) -> int:
    return tokenizer.encode(text, add_special_tokens=False)[0]


def verdict_slot(tokenizer: Any, answer: str, lang: str) -> tuple[str, int, int] | None:
    """Where an answer's verdict token was generated: ``(the answer up to that token, the yes token, the no token)``,
    or ``None`` without a verdict line.

    The slot is the token that holds the verdict word's first character in the answer's own tokenization, so a
    tokenizer that merges the marker's end with the word (Qwen's ``：是`` is one token) is read where generation
    chose it; the yes and no tokens are that token's text with the word swapped."""
    prefix = VERDICT_PREFIX[lang]
    at = answer.rfind(prefix)
    if at < 0:
        return None
    word_at = at + len(prefix)
    while word_at < len(answer) and answer[word_at] == " ":
        word_at += 1
    yes_word, no_word = (w.strip() for w in VERDICT_WORDS[lang])
    start = None
    if word_at < len(answer):
        offsets = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        start = next((int(a) for a, b in offsets if a <= word_at < b), None)
    if start is None:  # the answer stops at its marker: the word would be the next token, as the template writes it
        yes_text, no_text = VERDICT_WORDS[lang]
        return answer[:at + len(prefix)], _first_token(tokenizer, yes_text), _first_token(tokenizer, no_text)
    head = answer[start:word_at]  # what the verdict's token carries before the word ("：", " ", or nothing)
    return answer[:start], _first_token(tokenizer, head + yes_word), _first_token(tokenizer, head + no_word)


@torch.inference_mode()
def verdict_p_yes(
    model: Any, processor: Any, samples: Sequence[GleamSample], answers: Sequence[str], lang: str,
    task: str = "explain", *, batch_size: int = 8,
) -> list[float | None]:
    """P(yes) read from the model at its own final verdict line.

    Each answer is cut right before the token that carries its verdict word (:func:`verdict_slot`); one forward
    pass over prompt + that cut gives the next-token distribution there, and P(yes) = p(yes) / (p(yes) + p(no))
    over the two tokens generation chose between. ``None`` where the answer has no verdict line.
    """
    tokenizer = processor.tokenizer
    slots = [verdict_slot(tokenizer, a, lang) for a in answers]
    todo = [(i, slot) for i, slot in enumerate(slots) if slot is not None and slot[1] != slot[2]]
    out: list[float | None] = [None] * len(samples)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last position of every row is its own next-token slot
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            batch = [samples[i] for i, _ in chunk]
            texts = [t + cut for t, (_, (cut, _, _)) in zip(prompt_texts(processor, batch, lang, task), chunk)]
            inputs = processor(text=texts, images=[sample_images(s) for s in batch], padding=True,
                               return_tensors="pt").to(model.device)
            logits = model(**inputs).logits[:, -1, :].float()
            ids = torch.tensor([[yes_id, no_id] for _, (_, yes_id, no_id) in chunk], device=logits.device)
            pair = torch.softmax(logits.gather(1, ids), dim=-1)[:, 0]
            for (i, _), p in zip(chunk, pair.tolist()):
                out[i] = p
    finally:
        tokenizer.padding_side = old_side
    return out
