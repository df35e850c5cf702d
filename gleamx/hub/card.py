"""Model cards for fine-tuned GLEAM-X models (``huggingface_hub.ModelCard``), with model-index from eval results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from gleamx.choices import LANGS
from gleamx.errors import GleamDataError

# metric key in results.json -> (model-index metric type, human name)
CARD_METRICS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", "Match accuracy"),
    "accuracy_positive": ("accuracy", "Accuracy on matching pairs"),
    "accuracy_negative": ("accuracy", "Accuracy on non-matching pairs"),
    "f1": ("f1", "F1 of match"),
    "invalid_rate": ("invalid_rate", "Unparseable answers"),
}
EXPLANATION_METRICS: dict[str, tuple[str, str]] = {
    "sbert_cosine": ("cosine_similarity", "Explanation SBERT cosine"),
    "sbert_cosine_rescaled": ("cosine_similarity", "Explanation SBERT cosine, rescaled (0 = shuffled baseline)"),
    "bleu": ("bleu", "Explanation BLEU"),
    "chrf": ("chrf", "Explanation chrF"),
    "rouge_l": ("rouge", "Explanation ROUGE-L"),
}

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A GLEAM-X model: given a query view (UAV, street map, panorama or ground photo) and a satellite image, it says
whether they show the same place and explains why, ending with `Answer: Yes/No` (English) or `结论：是/否` (Chinese).
Fine-tuned from [{{ base_model }}]({{ base_model_link }}) with gleamx ({{ method }}) on
`{{ dataset }}` (task `{{ task }}`, language `{{ lang }}`, {{ n_train }} training conversations).

## Use

```python
from transformers import AutoModelForImageTextToText, AutoProcessor
{{ load_snippet }}
```

Image 1 is the query view, image 2 the satellite image; see `gleamx.prompts.build_messages`.

## Training

| hyper-parameter | value |
|---|---|
{% for k, v in hyperparameters %}| {{ k }} | {{ v }} |
{% endfor %}
Loss on the assistant answer only (TRL `assistant_only_loss`). Final training loss: {{ final_loss }}.
{% if results_table %}
## Evaluation

{{ results_table }}
{% endif %}
"""

_HP_KEYS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "warmup_steps",
            "gradient_accumulation_steps", "lr_scheduler_type", "weight_decay", "bf16", "seed",
            "gradient_checkpointing")


def load_eval_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "eval_results", "file not found (expected gleamx-eval's results.json)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise GleamDataError.at(str(path), e.lineno, "eval_results", "expected gleamx-eval's results.json") from None


def eval_results_to_model_index(results: dict[str, Any], dataset: str) -> list[EvalResult]:
    """model-index entries (``EvalResult``) for the card metadata, from a gleamx-eval results.json."""
    cfg = results.get("config", {})
    split, lang = cfg.get("split") or "test", cfg.get("lang") or "en"
    common = {"task_type": "image-text-to-text", "task_name": "GLEAM-X cross-view match and explain",
              "dataset_type": dataset, "dataset_name": f"{Path(dataset).name or dataset} ({lang})",
              "dataset_split": split, "dataset_config": lang}
    out = []
    for key, (mtype, name) in CARD_METRICS.items():
        if results.get(key) is not None:
            out.append(EvalResult(metric_type=mtype, metric_name=name, metric_value=round(100 * results[key], 2), **common))
    for key, (mtype, name) in EXPLANATION_METRICS.items():
        value = (results.get("explanation") or {}).get(key)
        if isinstance(value, dict):
            value = value.get("mean")
        if value is not None:
            out.append(EvalResult(metric_type=mtype, metric_name=name, metric_value=round(float(value), 4), **common))
    return out


def _results_table(entries: list[EvalResult]) -> str:
    if not entries:
        return ""
    rows = "\n".join(f"| {e.metric_name} | {e.dataset_name} | {e.dataset_split} | {e.metric_value} |" for e in entries)
    return "| metric | data | split | value |\n|---|---|---|---|\n" + rows


def build_model_card(out: Path, args: dict[str, dict[str, Any]], log_history: list[dict[str, Any]], *,
                     n_train: int, eval_results: str | Path | None = None) -> ModelCard:
    """The card for a run directory: metadata (base_model, datasets, tags, model-index) + a readable body."""
    script, model, training = args["script"], args["model"], args["training"]
    base = model.get("model_name_or_path") or "unknown"
    dataset = script.get("dataset_name") or "unknown"
    peft = bool(model.get("use_peft"))
    method = ("QLoRA" if model.get("load_in_4bit") else "LoRA") if peft else "full fine-tuning"
    entries = eval_results_to_model_index(load_eval_results(eval_results), dataset) if eval_results else []
    is_hub_id = lambda s: s.count("/") == 1 and not Path(s).exists()  # noqa: E731
    lang = script.get("lang") or "both"
    card_data = ModelCardData(
        base_model=base if is_hub_id(base) else None,
        datasets=[dataset] if is_hub_id(dataset) else None,
        language=list(LANGS) if lang == "both" else [lang],
        library_name="peft" if peft else "transformers",
        pipeline_tag="image-text-to-text",
        tags=["gleamx", "gleam-x", "cross-view-geo-localization", "remote-sensing", "trl", "sft", method.lower()],
        model_name=out.name,
        eval_results=entries or None,
    )
    losses = [h["loss"] for h in log_history if "loss" in h]
    load = (f"base = AutoModelForImageTextToText.from_pretrained({base!r})\n"
            f"model = PeftModel.from_pretrained(base, 'REPO_OR_DIR')  # from peft import PeftModel"
            if peft else "model = AutoModelForImageTextToText.from_pretrained('REPO_OR_DIR')")
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, model_name=out.name, base_model=base,
        base_model_link=f"https://huggingface.co/{base}" if is_hub_id(base) else base,
        method=method, dataset=dataset, task=script.get("task"), lang=lang, n_train=n_train,
        load_snippet=load,
        hyperparameters=[(k, training[k]) for k in _HP_KEYS if k in training] + [
            (k, model[k]) for k in ("lora_r", "lora_alpha", "lora_dropout") if peft and k in model] + [
            (k, script[k]) for k in ("min_pixels", "max_pixels", "freeze_vision_tower", "freeze_merger") if k in script],
        final_loss=f"{losses[-1]:.4f}" if losses else "n/a",
        results_table=_results_table(entries),
    )
