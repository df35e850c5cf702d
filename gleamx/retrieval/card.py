"""The model card of a trained GLEAM-C encoder (``huggingface_hub.ModelCard``), with model-index results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from gleamx.retrieval.config import GleamCConfig
from gleamx.retrieval.encoder import TINY_BACKBONE
from gleamx.retrieval.metrics import percent_text as pc  # "-": R@k on a gallery of <= k tiles

_METRICS = {"R@1": "Recall@1", "R@5": "Recall@5", "R@10": "Recall@10", "R@1%": "Recall@1%", "mAP": "mAP"}
_HP = ("epochs", "batch_size", "learning_rate", "weight_decay", "warmup_steps", "label_smoothing", "hard_negatives",
       "hard_negatives_from_epoch", "gather_features", "img_size", "mixed_precision", "seed")


def _dataset_id(data: str) -> str | None:
    """A Hub dataset id if ``data`` looks like one (user/name, not a local path)."""
    return data if data.count("/") == 1 and not Path(data).exists() else None


def gleamc_card(cfg: GleamCConfig, results: dict[str, Any] | None, n_params: int, num_processes: int,
                img_size: int | None = None) -> ModelCard:
    backbone = cfg.encoder if cfg.encoder not in ("tiny",) and not Path(cfg.encoder).exists() else None
    eval_results = []
    if results:
        common = {"task_type": "image-feature-extraction", "task_name": "Cross-view geo-localization retrieval",
                  "dataset_type": _dataset_id(cfg.data) or Path(cfg.data).name,
                  "dataset_name": Path(cfg.data).name or cfg.data, "dataset_split": results.get("split") or "test"}
        eval_results = [EvalResult(metric_type=k, metric_name=name, metric_value=round(100 * results[k], 2), **common)
                        for k, name in _METRICS.items() if results.get(k) is not None]
    data = ModelCardData(
        library_name="gleamx", pipeline_tag="image-feature-extraction", license="apache-2.0",
        tags=["gleamx", "gleam-c", "cross-view-geo-localization", "timm", "contrastive-learning"],
        base_model=f"timm/{backbone}" if backbone and cfg.pretrained else None,
        datasets=[d] if (d := _dataset_id(cfg.data)) else None,
        model_name=Path(cfg.output_dir).name, eval_results=eval_results or None,
    )
    hp = "\n".join(f"| {k} | {getattr(cfg, k)} |" for k in _HP)
    table = ""
    if results:
        views = results.get("by_view", {})
        table = ("| query view | R@1 | R@5 | R@10 | mAP |\n|---|---|---|---|---|\n" + "".join(
            f"| {name} | {pc(m['R@1'])} | {pc(m['R@5'])} | {pc(m['R@10'])} | {pc(m['mAP'])} |\n"
            for name, m in [("all", results), *sorted(views.items())]))
        table += (f"\nGallery: {results['n_gallery']} satellite tiles, {results['n_query']} queries "
                  f"(split `{results.get('split')}`). mAP is the standard one; University-1652's trapezoid AP: "
                  f"{100 * results['mAP_trapezoid']:.2f}.\n")
    arch = cfg.encoder if cfg.encoder != "tiny" else f"{TINY_BACKBONE} (tiny, random init)"
    text = f"""---
{data.to_yaml()}
---

# {Path(cfg.output_dir).name}

A **GLEAM-C** retrieval encoder trained with gleamx: one image encoder with shared
weights for satellite tiles and every query view (UAV, street map, panorama, ground photo). It embeds all
of them into one space, and the nearest satellite tiles of a query are its candidate locations. A GLEAM-X
MLLM then verifies and explains each candidate (`gleamx localize`).

- Backbone: `{arch}` ({n_params:,} parameters), input {img_size or cfg.img_size} x {img_size or cfg.img_size}, L2-normalised pooled features
- Loss: symmetric InfoNCE, label smoothing {cfg.label_smoothing}, learnable temperature
- Batches: one pair per location; hard negatives by embedding similarity: {cfg.hard_negatives or 'off'}
- Trained on {num_processes} process(es); data: `{cfg.data}`

## Use

```python
from gleamx.retrieval.encoder import GleamCEncoder

encoder = GleamCEncoder.from_pretrained("{Path(cfg.output_dir).name}")  # or the Hub repo id
transform = encoder.transform()  # PIL image -> tensor
embeddings = encoder(transform(image).unsqueeze(0))  # (1, dim), L2-normalised
```

## Results

{table or "No evaluation split was scored."}

## Training hyper-parameters

| name | value |
|---|---|
{hp}
"""
    return ModelCard(text)
