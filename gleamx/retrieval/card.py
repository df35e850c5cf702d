"""The model card of a trained retrieval encoder (``huggingface_hub.ModelCard``), with model-index results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from gleamx.console import percent_text as pc  # "-": R@k on a gallery of <= k tiles
from gleamx.hub.card import RUN_LINE
from gleamx.retrieval.config import RetrievalConfig
from gleamx.retrieval.encoder import TINY_BACKBONE, parse_backbone

_METRICS = {"R@1": "Recall@1", "R@5": "Recall@5", "R@10": "Recall@10", "R@1%": "Recall@1%", "mAP": "mAP"}
_HP = ("epochs", "max_steps", "stream_shuffle_buffer", "batch_size", "learning_rate", "weight_decay", "warmup_steps",
       "label_smoothing", "hard_negatives", "hard_negatives_from_epoch", "gather_features", "img_size",
       "mixed_precision", "seed")


def _dataset_id(data: str) -> str | None:
    """A Hub dataset id if ``data`` looks like one (user/name, not a local path)."""
    return data if data.count("/") == 1 and not Path(data).exists() else None


def _base_model(encoder: str, pretrained: bool) -> str | None:
    """The Hub id of the pretrained weights the run started from (timm and hf backbones)."""
    if encoder == "tiny" or Path(encoder).exists() or not pretrained:
        return None
    family, name = parse_backbone(encoder)
    if family == "timm":
        return f"timm/{name}"
    return name if family == "hf" and name.count("/") == 1 else None  # OpenCLIP tags are no Hub ids


def _phase_table(phases: list[dict[str, Any]]) -> str:
    def views(p: dict[str, Any]) -> str:
        return ", ".join(p["views"]) if p["views"] else "all"

    def mix(p: dict[str, Any]) -> str:
        m = p["view_mix"]
        return "natural" if m is None else m if isinstance(m, str) else ", ".join(f"{k} {w:g}" for k, w in m.items())

    rows = "".join(f"| {n} | {p['name']} | {views(p)} | {mix(p)} | {p['epochs']} | {p['learning_rate']:g} | "
                   f"{p['batch_size']} | {p['steps'] if p['steps'] is not None else '-'} |\n"
                   for n, p in enumerate(phases, 1))
    return ("## Training phases\n\nEach phase starts from the weights the one before it ended with "
            "(fresh AdamW and cosine schedule).\n\n"
            "| # | phase | views | view mix | epochs | learning rate | batch | steps |\n"
            "|---|---|---|---|---|---|---|---|\n" + rows + "\n")


def retrieval_card(cfg: RetrievalConfig, results: dict[str, Any] | None, n_params: int, num_processes: int,
                img_size: int | None = None, phases: list[dict[str, Any]] | None = None) -> ModelCard:
    """The card: what the encoder is, its scores (model-index and a per-view table), how it was trained
    (``phases``: one record per phase of a multi-phase run, with its optimizer steps)."""
    base_model = _base_model(cfg.encoder, cfg.pretrained)
    eval_results = []
    if results:
        common = {"task_type": "image-feature-extraction", "task_name": "Cross-view geo-localization retrieval",
                  "dataset_type": _dataset_id(cfg.data) or Path(cfg.data).name,
                  "dataset_name": Path(cfg.data).name or cfg.data, "dataset_split": results.get("split") or "test"}
        eval_results = [EvalResult(metric_type=k, metric_name=name, metric_value=round(100 * results[k], 2), **common)
                        for k, name in _METRICS.items() if results.get(k) is not None]
    data = ModelCardData(
        library_name="gleamx", pipeline_tag="image-feature-extraction", license="apache-2.0",
        tags=["gleamx", "gleam-c", "cross-view-geo-localization", parse_backbone(cfg.encoder)[0].replace("_", "-"),
              "contrastive-learning"],
        base_model=base_model,
        datasets=[d] if (d := _dataset_id(cfg.data)) else None,
        model_name=Path(cfg.output_dir).name, eval_results=eval_results or None,
    )
    per_phase = {"epochs", "batch_size", "learning_rate", "warmup_steps", "hard_negatives",
                 "hard_negatives_from_epoch"} if phases else set()  # in the phase table instead
    # a streamed run has steps, not epochs; an epoch run has no stream
    unused = {"epochs", "hard_negatives_from_epoch"} if cfg.streaming else {"max_steps", "stream_shuffle_buffer"}
    hp = "\n".join(f"| {k} | {getattr(cfg, k)} |" for k in _HP if k not in per_phase | unused)
    table = ""
    if results:
        views = results.get("by_view", {})
        table = ("| query view | R@1 | R@5 | R@10 | mAP |\n|---|---|---|---|---|\n" + "".join(
            f"| {name} | {pc(m['R@1'])} | {pc(m['R@5'])} | {pc(m['R@10'])} | {pc(m['mAP'])} |\n"
            for name, m in [("all", results), *sorted(views.items())]))
        table += (f"\nGallery: {results['n_gallery']} satellite tiles, {results['n_query']} queries "
                  f"(split `{results.get('split')}`). mAP is the standard one; University-1652's trapezoid AP: "
                  f"{100 * results['mAP_trapezoid']:.2f}.\n")
    mix = cfg.view_mix or ("per phase" if phases else "natural")
    arch = cfg.encoder if cfg.encoder != "tiny" else f"{TINY_BACKBONE} (tiny, random init)"
    order = (f"shuffled by shard and a buffer of {cfg.stream_shuffle_buffer}" if cfg.stream_shuffle_buffer
             else "in order")
    batches = (f"the matching pairs of a stream, {order}, {cfg.max_steps} steps; negatives: the batch's other pairs"
               if cfg.streaming else
               f"one pair per location; hard negatives by embedding similarity: {cfg.hard_negatives or 'off'}; "
               f"view mix: {mix}")
    text = f"""---
{data.to_yaml()}
---

# {Path(cfg.output_dir).name}

A retrieval encoder (GLEAM-C in the paper) trained with gleamx: one image encoder with shared
weights for satellite tiles and every query view (UAV, street map, panorama, ground photo). It embeds all
of them into one space, and the nearest satellite tiles of a query are its candidate locations. A GLEAM-X
MLLM then verifies and explains each candidate (`gleamx localize`).

- Backbone: `{arch}` ({n_params:,} parameters), input {img_size or cfg.img_size} x {img_size or cfg.img_size}, L2-normalised pooled features
- Loss: symmetric InfoNCE, label smoothing {cfg.label_smoothing}, learnable temperature
- Batches: {batches}
- Trained on {num_processes} process(es); data: `{cfg.data}`{" (streamed)" if cfg.streaming else ""}

## Use

```python
from PIL import Image

from gleamx.retrieval.encoder import RetrievalEncoder

{RUN_LINE.format(run=cfg.output_dir)}
encoder = RetrievalEncoder.from_pretrained(RUN).eval()
transform = encoder.transform()  # PIL image -> tensor
image = Image.open("query.jpg").convert("RGB")  # a query view or a satellite tile
embedding = encoder(transform(image).unsqueeze(0))  # (1, dim), L2-normalised
print(embedding.shape)
```

## Results

{table or "No evaluation split was scored."}

{_phase_table(phases) if phases else ""}## Training hyper-parameters

| name | value |
|---|---|
{hp}
"""
    return ModelCard(text)
