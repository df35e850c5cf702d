"""``gleamx merge``: fold a LoRA adapter into its base and write standalone weights."""

from __future__ import annotations

from pathlib import Path

from gleamx.errors import GleamModelError, first_line


def merge_adapter(base: str, adapter: str | Path, out: str | Path, *, dtype: str = "auto") -> Path:
    """Load ``base`` + ``adapter``, merge, save model + processor to ``out`` (loads with AutoModelForImageTextToText)."""
    from peft import PeftModel

    from gleamx.models import load_model_and_processor

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise GleamModelError(f"adapter: {adapter} has no adapter_config.json (expected a PEFT adapter directory)")
    model, processor = load_model_and_processor(base, dtype=dtype)
    try:
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except Exception as e:  # key mismatches surface here as RuntimeError/ValueError/KeyError
        first = first_line(e)
        raise GleamModelError(f"adapter: {adapter} does not fit base {base!r} ({type(e).__name__}: {first})") from None
    out = Path(out)
    merged.save_pretrained(out)
    # The adapter dir holds the processor used in training (chat template with generation markers).
    try:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(adapter))
    except Exception:
        pass  # adapter saved without a processor: keep the base's
    processor.save_pretrained(out)
    return out
