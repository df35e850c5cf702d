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

# The two cards (SFT, GRPO) share their head, their "Use" section, the hyper-parameter table and the evaluation.
_HEAD = """---
{{ card_data }}
---

# {{ model_name }}

A GLEAM-X model: given a query view (UAV, street map, panorama or ground photo) and a satellite image, it says
whether they show the same place and explains why, ending with `Answer: Yes/No` (English) or `结论：是/否` (Chinese).
"""
_USE = """{% if warnings %}
> **Warning: this run may not have learned.**
{% for w in warnings %}> - {{ w }}
{% endfor %}{% endif %}
## Use

```python
{{ use_snippet }}
```

Image 1 is the query view, image 2 the satellite image (as `gleamx.prompts.build_messages` builds them); the prompt
is the one the model was trained with.

"""
_TRAINING = """## Training

| hyper-parameter | value |
|---|---|
{% for k, v in hyperparameters %}| {{ k }} | {{ v }} |
{% endfor %}
"""
_EVALUATION = """{% if results_table %}
## Evaluation

{{ results_table }}
{% endif %}
"""

TEMPLATE = _HEAD + """\
Fine-tuned from {{ base_model_md }} with gleamx ({{ method }}) on
`{{ dataset }}` (task `{{ task }}`, language `{{ lang }}`, {{ n_train }} training conversations).
""" + _USE + _TRAINING + """\
Loss on the assistant answer only (TRL `assistant_only_loss`). Final training loss: {{ final_loss }}.
{% if kept %}Weights: {{ kept }} (`load_best_model_at_end`).
{% endif %}""" + _EVALUATION

_HP_KEYS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size", "warmup_steps",
            "gradient_accumulation_steps", "lr_scheduler_type", "weight_decay", "bf16", "seed",
            "activation_checkpointing")


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


def _is_hub_id(s: str) -> bool:
    return s.count("/") == 1 and not Path(s).exists()


def base_model_markdown(base: str) -> str:
    """A Hub id as a link to its page; a local path as code (a link to a local folder leads nowhere)."""
    return f"[{base}](https://huggingface.co/{base})" if _is_hub_id(base) else f"`{base}`"


RUN_LINE = "RUN = {run!r}  # this run: its folder, or its Hub repo id (gleamx push writes it there)"


def use_snippet(run: str, base: str | None, lang: str, task: str) -> str:
    """A runnable snippet that loads the run (``base``: the adapter's base model; ``None``: a full model) and asks
    it about one pair, with the prompt it was trained on (``RUN`` is rewritten to the repo id by ``gleamx push``)."""
    from gleamx.task import user_prompt

    prompt = user_prompt("uav", "zh" if lang == "zh" else "en", task or "explain")
    load = (f"base = AutoModelForImageTextToText.from_pretrained({base!r})\n"
            "model = PeftModel.from_pretrained(base, RUN)" if base else
            "model = AutoModelForImageTextToText.from_pretrained(RUN)")
    imports = ("from peft import PeftModel\n" if base else "") + \
        "from transformers import AutoModelForImageTextToText, AutoProcessor"
    return f"""{imports}

{RUN_LINE.format(run=run)}
{load}
processor = AutoProcessor.from_pretrained(RUN)

messages = [{{"role": "user", "content": [
    {{"type": "image", "image": "query.jpg"}},      # image 1: the query view (here a UAV photo)
    {{"type": "image", "image": "satellite.jpg"}},  # image 2: the satellite tile
    {{"type": "text", "text": {prompt!r}}},
]}}]
inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                       return_tensors="pt").to(model.device)
out = model.generate(**inputs, max_new_tokens=256, do_sample=False)
print(processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))"""


def trained_epochs_rows(training: dict[str, Any], log_history: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """``num_train_epochs`` as the run used it: with ``max_steps`` set the epochs actually trained (from the log)."""
    if (training.get("max_steps") or -1) > 0:
        epochs = [h["epoch"] for h in log_history if isinstance(h.get("epoch"), (int, float))]
        return [("epochs trained", round(epochs[-1], 4) if epochs else "n/a")]
    return [("num_train_epochs", training.get("num_train_epochs"))]


def _dataset_ids(script: dict[str, Any], dataset: str) -> list[str]:
    """The datasets a run trained on: each source of a mixture, else the one dataset."""
    mixture = script.get("dataset_mixture") or []
    return [str(m.get("path")) for m in mixture if isinstance(m, dict)] if mixture else [dataset]


def _card_data(out: Path, base: str, dataset: str, script: dict[str, Any], peft: bool, tags: list[str],
               eval_results: str | None) -> ModelCardData:
    """The card's YAML metadata for a trained MLLM: base and dataset where they are Hub ids, languages, library,
    tags, and eval results as model-index."""
    entries = eval_results_to_model_index(load_eval_results(eval_results), dataset) if eval_results else []
    lang = script.get("lang") or "both"
    return ModelCardData(
        base_model=base if _is_hub_id(base) else None,
        datasets=[d for d in _dataset_ids(script, dataset) if _is_hub_id(d)] or None,
        language=list(LANGS) if lang == "both" else [lang],
        library_name="peft" if peft else "transformers",
        pipeline_tag="image-text-to-text",
        tags=["gleamx", "gleam-x", "cross-view-geo-localization", "remote-sensing", "trl", *tags],
        model_name=out.name,
        eval_results=entries or None,
    )


def build_model_card(out: Path, args: dict[str, dict[str, Any]], log_history: list[dict[str, Any]], *,
                     n_train: int, eval_results: str | Path | None = None,
                     warnings: list[str] | None = None, kept: str | None = None) -> ModelCard:
    """The card for a run directory: metadata (base_model, datasets, tags, model-index) + a readable body;
    ``warnings``: a finished run's learning warnings, shown above the usage; ``kept``: which checkpoint's weights
    were saved, in words (:func:`gleamx.train.summary.kept_text`), when not the last step's."""
    script, model, training = args["script"], args["model"], args["training"]
    base = model.get("model_name_or_path") or "unknown"
    dataset = mixture_text(script) or script.get("dataset_name") or "unknown"
    peft = bool(model.get("use_peft"))
    method = ("QLoRA" if model.get("load_in_4bit") else "LoRA") if peft else "full fine-tuning"
    card_data = _card_data(out, base, dataset, script, peft, ["sft", method.lower()], eval_results)
    losses = [h["loss"] for h in log_history if "loss" in h]
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, model_name=out.name, base_model_md=base_model_markdown(base),
        method=method, dataset=dataset, task=script.get("task"), lang=script.get("lang") or "both", n_train=n_train,
        use_snippet=use_snippet(str(out), base if peft else None, script.get("lang") or "en", script.get("task")),
        hyperparameters=_hyperparameters(training, _HP_KEYS, log_history) + [
            (k, model[k]) for k in ("lora_r", "lora_alpha", "lora_dropout") if peft and k in model] + [
            (k, script[k]) for k in ("min_pixels", "max_pixels", "freeze_vision_tower", "freeze_merger") if k in script],
        final_loss=f"{losses[-1]:.4f}" if losses else "n/a", warnings=list(warnings or []),
        results_table=_results_table(card_data.eval_results or []), kept=kept,
    )


GRPO_TEMPLATE = _HEAD + """\
Trained with reinforcement learning from verifiable rewards (GRPO, TRL `GRPOTrainer`, {{ method }}) from
{{ start }} on `{{ dataset }}` (task `{{ task }}`, language `{{ lang }}`, {{ n_train }} training prompts).

- Base model: {{ base_model_md }}
- SFT parent: {{ parent }}
""" + _USE + """## Rewards

| reward | weight | final mean | final std |
|---|---|---|---|
{% for name, weight, mean, std in rewards %}| {{ name }} | {{ weight }} | {{ mean }} | {{ std }} |
{% endfor %}
verdict: 1 correct, 0 wrong, minus the no-verdict penalty without a parseable verdict; format: share of four checks
(one verdict line in the requested language, at the end; no other-language verdict; explanation length in bounds);
consistency: the explanation's own conclusion agrees with the verdict line; reference_similarity: sentence-embedding
cosine with the reference explanation. {{ balance }}

""" + _TRAINING + _EVALUATION

_GRPO_HP_KEYS = ("learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "num_generations", "max_completion_length", "temperature", "beta",
                 "loss_type", "importance_sampling_level", "scale_rewards", "multi_objective_aggregation",
                 "mask_truncated_completions", "epsilon", "num_iterations", "use_vllm", "lr_scheduler_type",
                 "warmup_steps", "bf16", "seed")


def _hyperparameters(training: dict[str, Any], keys: tuple[str, ...],
                     log_history: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k in keys:
        if k == "num_train_epochs":
            rows += trained_epochs_rows(training, log_history)
        elif k in training:
            rows.append((k, training[k]))
    return rows


def _last(log_history: list[dict[str, Any]], key: str) -> str:
    values = [h[key] for h in log_history if h.get(key) is not None]
    return f"{values[-1]:.4f}" if values else "n/a"


def mixture_text(script: dict[str, Any]) -> str | None:
    """A mixture's sources with their shares, as the card names the data (``None``: one dataset)."""
    if not script.get("dataset_mixture"):
        return None
    from gleamx.data.mixture import describe, parse_mixture

    return "mixture: " + describe(parse_mixture(script["dataset_mixture"]))


def build_grpo_model_card(out: Path, args: dict[str, Any], log_history: list[dict[str, Any]], *, n_train: int,
                          eval_results: str | Path | None = None, parent: dict[str, Any] | None = None,
                          warnings: list[str] | None = None) -> ModelCard:
    """The card of a GRPO run directory: what :func:`build_model_card` gives an SFT run, plus the SFT parent and
    every reward with its weight and its final mean and std; eval results become model-index metadata."""
    script, model, training = args["script"], args["model"], args["training"]
    base = (parent or {}).get("base") or model.get("model_name_or_path") or "unknown"
    dataset = mixture_text(script) or script.get("dataset_name") or "unknown"
    adapter = bool(model.get("use_peft"))  # an SFT adapter trained further, or a fresh LoRA
    method = ("QLoRA" if model.get("load_in_4bit") else "LoRA") if adapter else "full fine-tuning"
    names = list(script.get("reward_funcs") or [])
    weights = training.get("reward_weights") or [1.0] * len(names)
    card_data = _card_data(out, base, dataset, script, adapter, ["grpo", method.lower()], eval_results)
    # A fresh LoRA on a full fine-tune SFT run sits on that run's weights, not on the original base model.
    adapter_base = parent["run"] if adapter and parent and not parent.get("adapter") else base
    if parent:
        how = ("LoRA adapter, trained further here" if parent.get("adapter") and adapter else
               "LoRA adapter, merged into its base and fine-tuned in full here" if parent.get("adapter") else
               "full fine-tune" + (", a fresh LoRA trained on it here" if adapter else ""))
        parent_text = f"`{parent['run']}` ({how})"
    else:
        parent_text = "none (GRPO from the base model)"
    balance = ("Class balance on: each prompt's rewards weighted by n / (2 n_class) of its label."
               if script.get("class_balance") else "")
    return ModelCard.from_template(
        card_data, template_str=GRPO_TEMPLATE, model_name=out.name, base_model_md=base_model_markdown(base),
        method=method,
        start=f"the SFT run `{parent['run']}`" if parent else f"`{base}`", parent=parent_text,
        dataset=dataset, task=script.get("task"), lang=script.get("lang") or "both", n_train=n_train,
        use_snippet=use_snippet(str(out), adapter_base if adapter else None, script.get("lang") or "en",
                                script.get("task")),
        rewards=[(n, w, _last(log_history, f"rewards/{n}/mean"), _last(log_history, f"rewards/{n}/std"))
                 for n, w in zip(names, weights)],
        balance=balance, warnings=list(warnings or []),
        hyperparameters=_hyperparameters(training, _GRPO_HP_KEYS, log_history) + [
            (k, model[k]) for k in ("lora_r", "lora_alpha", "lora_dropout") if adapter and k in model] + [
            (k, script[k]) for k in ("min_pixels", "max_pixels", "freeze_vision_tower", "freeze_merger",
                                     "no_verdict_penalty", "format_min_chars", "format_max_chars",
                                     "length_max_chars", "length_zone_chars", "repetition_ngram",
                                     "repetition_tolerance") if k in script],
        results_table=_results_table(card_data.eval_results or []),
    )
