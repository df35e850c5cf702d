"""Train the GLEAM-C encoder: symmetric InfoNCE over (query, satellite) pairs, resumable per epoch.

data -> :class:`~gleamx.retrieval.dataset.PairDataset` -> :class:`~gleamx.retrieval.sampler.LocationBatchSampler`
(one pair per location; hard negatives by embedding similarity from ``hard_negatives_from_epoch``)
-> encoder (accelerate: DDP / mixed precision) -> :func:`~gleamx.retrieval.loss.info_nce` -> AdamW + cosine
schedule. After each epoch: a ``checkpoint-<epoch>`` (accelerate state), and retrieval metrics on
``eval_split``. At the end: the encoder (``save_pretrained``), ``log_history.json``, ``results.json``.

:func:`train_gleamc` is :func:`setup_run`, :func:`resume`, then per epoch :func:`set_hard_negatives`,
:func:`train_one_epoch`, :func:`evaluate_epoch`, :func:`save_checkpoint`; then :func:`finish`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
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


def _resume_epoch(cfg: GleamCConfig) -> int:
    if not cfg.resume_from_checkpoint:
        return 0
    state = Path(cfg.resume_from_checkpoint, STATE_FILE)
    if not state.is_file():
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} has no {STATE_FILE} "
                               "(expected a checkpoint-<epoch> dir written by this trainer)")
    return int(json.loads(state.read_text())["epoch"]) + 1


# Not accelerate's ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=N): that prunes *before*
# writing the new checkpoint (a failed save with total_limit=1 leaves none), does not restore its save counter on
# load_state, refuses to save when resuming from any but the newest kept checkpoint, and writes
# checkpoints/checkpoint_<n>, which the Hub upload's checkpoint-* ignore list would not skip. This prunes only
# after the new checkpoint and its gleamc_state.json are complete, and overwrites a later one on resume.
def _prune_checkpoints(out: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoint-<epoch> dirs (weights + optimizer state each)."""
    import shutil

    if not keep:
        return
    ckpts = sorted((p for p in out.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    for old in ckpts[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class _Run:
    """One training run, prepared: what every epoch reads and the log it appends to."""

    cfg: GleamCConfig
    accelerator: Any
    model: Any  # the prepared (possibly DDP-wrapped) encoder
    optimizer: Any
    scheduler: Any
    loader: Any
    sampler: LocationBatchSampler
    train: RetrievalSet
    evalset: RetrievalSet | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    @property
    def encoder(self) -> GleamCEncoder:
        return self.accelerator.unwrap_model(self.model)


def _make_accelerator(cfg: GleamCConfig) -> Any:
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs

    # split_batches: each sampler batch (one pair per location) is divided among the processes, so the
    # gathered global batch is exactly one sampler batch: no location twice, no false negatives.
    # cpu=True when there is no GPU (or the accelerate config says use_cpu): without it, processes that
    # torchrun started on a CPU machine each think they are alone, train on the same batches and never sync.
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true")
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=use_cpu,
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.ddp_timeout))])
    if cfg.batch_size % accelerator.num_processes:
        raise GleamConfigError(f"batch_size: {cfg.batch_size} must divide by the {accelerator.num_processes} "
                               "processes (it is the global batch, split among them)")
    return accelerator


def setup_run(cfg: GleamCConfig) -> _Run:
    """Data, encoder, location-aware sampler, AdamW + cosine schedule, all prepared by accelerate."""
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    if not cfg.data:
        raise GleamConfigError("data: missing (a dataset dir with retrieval/gallery.jsonl and queries.jsonl)")
    accelerator = _make_accelerator(cfg)
    set_seed(cfg.seed)
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
    total = len(sampler) * cfg.epochs
    warmup = int(cfg.warmup_steps * total) if cfg.warmup_steps < 1 else int(cfg.warmup_steps)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    model, optimizer, loader, scheduler = accelerator.prepare(encoder, optimizer, loader, scheduler)
    return _Run(cfg, accelerator, model, optimizer, scheduler, loader, sampler, train, evalset)


def resume(run: _Run) -> int:
    """Load ``resume_from_checkpoint`` (if set) and the log up to it; returns the first epoch to train."""
    start = _resume_epoch(run.cfg)
    if start:
        run.accelerator.load_state(run.cfg.resume_from_checkpoint)
        hist_path = run.out / "log_history.json"
        if hist_path.is_file():
            run.history = [h for h in json.loads(hist_path.read_text()) if h["epoch"] < start]
    return start


def set_hard_negatives(run: _Run, epoch: int) -> None:
    """From ``hard_negatives_from_epoch`` on, batch each location with its most similar others."""
    from accelerate.utils import broadcast_object_list

    cfg, accelerator = run.cfg, run.accelerator
    if not cfg.hard_negatives or epoch < cfg.hard_negatives_from_epoch:
        return
    # Computed once and broadcast: every process must build the very same batches, or the
    # collectives of a shorter epoch wait forever on a longer one.
    near = [similar_locations(run.encoder, run.train, 4 * cfg.hard_negatives, cfg.eval_batch_size,
                              cfg.num_workers) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(near)
    run.sampler.set_neighbours(near[0], cfg.hard_negatives)


def train_one_epoch(run: _Run, epoch: int) -> None:
    """One pass over the sampler's batches; a loss record joins ``run.history`` every ``logging_steps``."""
    cfg, accelerator = run.cfg, run.accelerator
    # Both: on one process accelerate re-sets the sampler's epoch from the loader's own counter (0 again
    # after a resume); on several it wraps the sampler in a shard that never passes set_epoch on.
    run.loader.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    run.model.train()
    bar = tqdm(run.loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process)
    running: list[float] = []
    for step, batch in enumerate(bar):
        with accelerator.autocast():
            # One forward over both halves: DDP allows one forward per backward, and it batches better.
            q, s = run.model(torch.cat([batch["query"], batch["satellite"]])).chunk(2)
        scale = run.encoder.logit_scale
        if cfg.gather_features:
            # Every process computes the same global loss; DDP's gradient averaging then gives the
            # gradient of that loss (each process's rows get the summed gradient through all_gather).
            q, s = gather_with_grad(q), gather_with_grad(s)
        loss = info_nce(q, s, scale, cfg.label_smoothing)
        accelerator.backward(loss)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        running.append(float(loss.detach()))
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == len(run.loader):
            mean = sum(running) / len(running)
            running.clear()
            bar.set_postfix(loss=f"{mean:.4f}")
            run.history.append({"epoch": epoch, "step": epoch * run.steps_per_epoch + step + 1, "loss": mean,
                                "learning_rate": run.scheduler.get_last_lr()[0],
                                "temperature": float(1.0 / scale.detach().exp())})


def evaluate_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """The epoch's log record, with retrieval metrics on ``eval_split`` (scored by the main process only)."""
    record: dict[str, Any] = {"epoch": epoch, "step": (epoch + 1) * run.steps_per_epoch}
    if run.evalset is None or not run.accelerator.is_main_process:  # the others wait in save_checkpoint
        return record
    cfg = run.cfg
    m = evaluate_retrieval(run.encoder, run.evalset, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    record["eval"] = m
    from gleamx.retrieval.metrics import percent_text as pc  # "-": R@k on a gallery of <= k tiles

    run.accelerator.print(f"epoch {epoch}: {cfg.eval_split} R@1 {pc(m['R@1'])}  R@5 {pc(m['R@5'])}  "
                          f"R@10 {pc(m['R@10'])}  mAP {pc(m['mAP'])}")
    return record


def save_checkpoint(run: _Run, epoch: int) -> None:
    """``checkpoint-<epoch>`` (accelerate state + the epoch), the log so far, then prune old checkpoints."""
    ckpt = run.out / f"checkpoint-{epoch}"
    run.accelerator.save_state(str(ckpt))
    if run.accelerator.is_main_process:
        (ckpt / STATE_FILE).write_text(json.dumps({"epoch": epoch}) + "\n")
        (run.out / "log_history.json").write_text(json.dumps(run.history, indent=1) + "\n")
        _prune_checkpoints(run.out, run.cfg.save_total_limit)
    run.accelerator.wait_for_everyone()


def finish(run: _Run) -> None:
    """The encoder, its config, the log, the last scores, a model card; then the Hub upload if asked."""
    cfg, out, final = run.cfg, run.out, run.encoder
    if run.accelerator.is_main_process:
        final.save_pretrained(out)
        (out / "gleamc_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        (out / "log_history.json").write_text(json.dumps(run.history, indent=1) + "\n")
        last_eval = next((h["eval"] for h in reversed(run.history) if "eval" in h), None)
        results = {"split": cfg.eval_split, **last_eval} if last_eval is not None else None
        if results is not None:
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        from gleamx.retrieval.card import gleamc_card

        n_params = sum(p.numel() for p in final.parameters())
        gleamc_card(cfg, results, n_params, run.accelerator.num_processes, final.img_size).save(out / "README.md")
        if cfg.push_to_hub:
            from gleamx.hub import push as hub_push

            hub_push.push_output_dir(out, cfg.hub_model_id, private=cfg.hub_private_repo)
            run.accelerator.print(f"pushed to https://huggingface.co/{cfg.hub_model_id}")
    run.accelerator.wait_for_everyone()


def train_gleamc(cfg: GleamCConfig) -> Path:
    """Train and save; returns the output directory."""
    run = setup_run(cfg)
    start = resume(run)
    run.accelerator.print(
        f"GLEAM-C: {len(run.train.queries)} training pairs over {len(run.train.gallery)} locations, "
        f"{run.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, batch {cfg.batch_size} x "
        f"{run.accelerator.num_processes} process(es); {sum(p.numel() for p in run.encoder.parameters()):,} "
        f"parameters ({cfg.encoder})")
    for epoch in range(start, cfg.epochs):
        set_hard_negatives(run, epoch)
        train_one_epoch(run, epoch)
        run.history.append(evaluate_epoch(run, epoch))
        save_checkpoint(run, epoch)
    finish(run)
    return run.out


__all__ = ["build_encoder", "evaluate_epoch", "similar_locations", "train_gleamc", "train_one_epoch"]
