"""Train the GLEAM-C encoder: symmetric InfoNCE over (query, satellite) pairs, resumable per epoch.

data -> :class:`~gleamx.retrieval.dataset.PairDataset` -> :class:`~gleamx.retrieval.sampler.LocationBatchSampler`
(one pair per location; hard negatives by embedding similarity from ``hard_negatives_from_epoch``)
-> encoder (accelerate: DDP / mixed precision) -> :func:`~gleamx.retrieval.loss.info_nce` -> AdamW + cosine
schedule. After each epoch: a ``checkpoint-<epoch>`` (accelerate state), and retrieval metrics on
``eval_split``. At the end: the encoder (``save_pretrained``), ``log_history.json``, ``results.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gleamx.errors import GleamConfigError
from gleamx.retrieval.config import GleamCConfig
from gleamx.retrieval.data import RetrievalSet, load_retrieval
from gleamx.retrieval.dataset import PairDataset
from gleamx.retrieval.embed import embed_images
from gleamx.retrieval.encoder import GleamCEncoder, load_encoder
from gleamx.retrieval.evaluate import evaluate_retrieval
from gleamx.retrieval.loss import info_nce
from gleamx.retrieval.sampler import LocationBatchSampler
from gleamx.retrieval.search import topk_search

STATE_FILE = "gleamc_state.json"


def build_encoder(cfg: GleamCConfig) -> GleamCEncoder:
    """'tiny', a new timm backbone (a name timm knows), or a saved GLEAM-C encoder (a dir or a Hub id)."""
    import timm

    if cfg.encoder == "tiny":
        return GleamCEncoder.tiny(cfg.img_size)
    if not Path(cfg.encoder).exists() and timm.is_model(cfg.encoder):
        return GleamCEncoder.create(cfg.encoder, cfg.img_size, pretrained=cfg.pretrained)
    return load_encoder(cfg.encoder)


def similar_locations(encoder: GleamCEncoder, rset: RetrievalSet, k: int, batch_size: int,
                      num_workers: int = 0) -> dict[str, list[str]]:
    """Each training location's ``k`` most similar other locations, by satellite embedding (no GPS)."""
    emb = embed_images(encoder, [t.image for t in rset.gallery], batch_size=batch_size, num_workers=num_workers,
                       desc="similarity sampling")
    _, idx = topk_search(emb, emb, min(k + 1, len(rset.gallery)))
    ids = [t.location_id for t in rset.gallery]
    return {ids[i]: [ids[j] for j in row if j != i][:k] for i, row in enumerate(idx.tolist())}


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All processes' rows of ``x`` concatenated in rank order, with gradients flowing back to each
    process's own rows (``torch.distributed.nn.functional.all_gather``); ``x`` itself on one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def _check(cfg: GleamCConfig) -> None:
    if cfg.push_to_hub and (not cfg.hub_model_id or cfg.hub_model_id.count("/") != 1):
        raise GleamConfigError(f"recipe: push_to_hub needs hub_model_id as user/name, got {cfg.hub_model_id!r}")
    if not cfg.data:
        raise GleamConfigError("recipe: data: missing (a dataset dir with retrieval/gallery.jsonl and queries.jsonl)")
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise GleamConfigError(f"recipe: expected epochs >= 1 and batch_size >= 2, got {cfg.epochs} and {cfg.batch_size}")
    for name in ("logging_steps", "eval_batch_size", "img_size"):
        if getattr(cfg, name) < 1:
            raise GleamConfigError(f"recipe: {name}: expected a positive number, got {getattr(cfg, name)}")
    if cfg.hard_negatives < 0 or cfg.num_workers < 0:
        raise GleamConfigError("recipe: hard_negatives and num_workers: expected >= 0")
    from gleamx.data.schema import VIEWS

    bad = [v for v in (cfg.views or []) if v not in VIEWS]
    if bad:
        raise GleamConfigError(f"recipe: views: expected some of {', '.join(VIEWS)}, got {bad[0]!r}")
    if cfg.mixed_precision not in ("no", "bf16", "fp16"):
        raise GleamConfigError(f"recipe: mixed_precision: expected no, bf16 or fp16, got {cfg.mixed_precision!r}")


def _resume_epoch(cfg: GleamCConfig) -> int:
    if not cfg.resume_from_checkpoint:
        return 0
    state = Path(cfg.resume_from_checkpoint, STATE_FILE)
    if not state.is_file():
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} has no {STATE_FILE} "
                               "(expected a checkpoint-<epoch> dir written by this trainer)")
    return int(json.loads(state.read_text())["epoch"]) + 1


def _prune_checkpoints(out: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoint-<epoch> dirs (weights + optimizer state each)."""
    import shutil

    if not keep:
        return
    ckpts = sorted((p for p in out.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    for old in ckpts[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def train_gleamc(cfg: GleamCConfig) -> Path:
    """Train and save; returns the output directory."""
    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list, set_seed
    from transformers import get_cosine_schedule_with_warmup

    from datetime import timedelta

    from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs

    _check(cfg)
    # split_batches: each sampler batch (one pair per location) is divided among the processes, so the
    # gathered global batch is exactly one sampler batch: no location twice, no false negatives.
    # cpu=True when there is no GPU (or the accelerate config says use_cpu): without it, processes that
    # torchrun started on a CPU machine each think they are alone, train on the same batches and never sync.
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=use_cpu,
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.ddp_timeout))])
    if cfg.batch_size % accelerator.num_processes:
        raise GleamConfigError(f"recipe: batch_size {cfg.batch_size} must divide by the {accelerator.num_processes} "
                               "processes (it is the global batch, split among them)")
    set_seed(cfg.seed)
    out = Path(cfg.output_dir)
    train = load_retrieval(cfg.data, "train", views=cfg.views)
    evalset = load_retrieval(cfg.eval_data or cfg.data, cfg.eval_split, views=cfg.views) if cfg.eval_split else None
    encoder = build_encoder(cfg)
    data = PairDataset(train, encoder.transform())
    try:
        semis = data.semi_positives if any(data.semi_positives) else None
        sampler = LocationBatchSampler(data.locations, cfg.batch_size, seed=cfg.seed, pair_semi_positives=semis)
    except ValueError as e:
        raise GleamConfigError(f"recipe: {e}") from None
    loader = DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers)
    steps_per_epoch = len(sampler)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_steps * total) if cfg.warmup_steps < 1 else int(cfg.warmup_steps)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    model, optimizer, loader, scheduler = accelerator.prepare(encoder, optimizer, loader, scheduler)
    start = _resume_epoch(cfg)
    if start:
        accelerator.load_state(cfg.resume_from_checkpoint)
    history: list[dict[str, Any]] = []
    hist_path = out / "log_history.json"
    if start and hist_path.is_file():
        history = [h for h in json.loads(hist_path.read_text()) if h["epoch"] < start]
    say = accelerator.print
    say(f"GLEAM-C: {len(train.queries)} training pairs over {len(train.gallery)} locations, "
        f"{steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch_size} x {accelerator.num_processes} "
        f"process(es); {sum(p.numel() for p in encoder.parameters()):,} parameters ({cfg.encoder})")

    for epoch in range(start, cfg.epochs):
        if cfg.hard_negatives and epoch >= cfg.hard_negatives_from_epoch:
            # Computed once and broadcast: every process must build the very same batches, or the
            # collectives of a shorter epoch wait forever on a longer one.
            near = [similar_locations(accelerator.unwrap_model(model), train, 4 * cfg.hard_negatives,
                                      cfg.eval_batch_size, cfg.num_workers) if accelerator.is_main_process else None]
            if accelerator.num_processes > 1:
                broadcast_object_list(near)
            sampler.set_neighbours(near[0], cfg.hard_negatives)
        # Both: on one process accelerate re-sets the sampler's epoch from the loader's own counter (0 again
        # after a resume); on several it wraps the sampler in a shard that never passes set_epoch on.
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process)
        running: list[float] = []
        for step, batch in enumerate(bar):
            with accelerator.autocast():
                # One forward over both halves: DDP allows one forward per backward, and it batches better.
                q, s = model(torch.cat([batch["query"], batch["satellite"]])).chunk(2)
            scale = accelerator.unwrap_model(model).logit_scale
            if cfg.gather_features:
                # Every process computes the same global loss; DDP's gradient averaging then gives the
                # gradient of that loss (each process's rows get the summed gradient through all_gather).
                q, s = gather_with_grad(q), gather_with_grad(s)
            loss = info_nce(q, s, scale, cfg.label_smoothing)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            running.append(float(loss.detach()))
            global_step = epoch * steps_per_epoch + step + 1
            if (step + 1) % cfg.logging_steps == 0 or step + 1 == len(loader):
                mean = sum(running) / len(running)
                running.clear()
                bar.set_postfix(loss=f"{mean:.4f}")
                history.append({"epoch": epoch, "step": global_step, "loss": mean,
                                "learning_rate": scheduler.get_last_lr()[0],
                                "temperature": float(1.0 / scale.detach().exp())})
        record: dict[str, Any] = {"epoch": epoch, "step": (epoch + 1) * steps_per_epoch}
        if evalset is not None and accelerator.is_main_process:  # one process scores; the others wait below
            m = evaluate_retrieval(accelerator.unwrap_model(model), evalset, batch_size=cfg.eval_batch_size,
                                   num_workers=cfg.num_workers)
            record["eval"] = m
            from gleamx.retrieval.metrics import percent_text as pc  # "-": R@k on a gallery of <= k tiles

            say(f"epoch {epoch}: {cfg.eval_split} R@1 {pc(m['R@1'])}  R@5 {pc(m['R@5'])}  "
                f"R@10 {pc(m['R@10'])}  mAP {pc(m['mAP'])}")
        history.append(record)
        ckpt = out / f"checkpoint-{epoch}"
        accelerator.save_state(str(ckpt))
        if accelerator.is_main_process:
            (ckpt / STATE_FILE).write_text(json.dumps({"epoch": epoch}) + "\n")
            hist_path.write_text(json.dumps(history, indent=1) + "\n")
            _prune_checkpoints(out, cfg.save_total_limit)
        accelerator.wait_for_everyone()

    final = accelerator.unwrap_model(model)
    if accelerator.is_main_process:
        final.save_pretrained(out)
        (out / "gleamc_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        hist_path.write_text(json.dumps(history, indent=1) + "\n")
        last_eval = next((h["eval"] for h in reversed(history) if "eval" in h), None)
        results = {"split": cfg.eval_split, **last_eval} if last_eval is not None else None
        if results is not None:
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        from gleamx.retrieval.card import gleamc_card

        n_params = sum(p.numel() for p in final.parameters())
        gleamc_card(cfg, results, n_params, accelerator.num_processes, final.img_size).save(out / "README.md")
        if cfg.push_to_hub:
            from gleamx.hub import push as hub_push

            hub_push.push_output_dir(out, cfg.hub_model_id, private=cfg.hub_private_repo)
            say(f"pushed to https://huggingface.co/{cfg.hub_model_id}")
    accelerator.wait_for_everyone()
    return out


__all__ = ["build_encoder", "similar_locations", "train_gleamc"]
