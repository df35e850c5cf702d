"""Train the retrieval encoder: symmetric InfoNCE over (query, satellite) pairs, resumable per epoch.

data -> :class:`~gleamx.retrieval.dataset.PairDataset` -> :class:`~gleamx.retrieval.sampler.LocationBatchSampler`
(one pair per location; hard negatives by embedding similarity from ``hard_negatives_from_epoch``)
-> encoder (accelerate: DDP / mixed precision) -> :func:`~gleamx.retrieval.loss.info_nce` -> AdamW + cosine
schedule. After each epoch: a ``checkpoint-<epoch>`` (accelerate state), and retrieval metrics on
``eval_split``. At the end: the encoder (``save_pretrained``), ``log_history.json``, ``results.json``.

Phases (``phases:`` in the recipe): the run trains phase after phase in one ``output_dir``, each with its
own views, view mix, epochs, learning rate (a fresh AdamW + cosine schedule) and batch size, each starting
from the weights the last one ended with; ``phase-<n>/`` keeps each finished phase's encoder. Epochs are
numbered across the run, so ``checkpoint-<epoch>`` is unique and a resume lands in the right phase: mid-phase
it restores the optimizer and schedule, on a phase boundary it starts the next phase from the weights.

:func:`train_retrieval` is :func:`resume_point`, then per phase :func:`setup_run` (and :func:`resume`), then per
epoch :func:`set_hard_negatives`, :func:`train_one_epoch`, :func:`evaluate_epoch`, :func:`save_checkpoint`;
then :func:`finish`.

Streamed (``streaming: true``, :mod:`gleamx.retrieval.stream`): the matching pairs of a GLEAM-X stream, each process
reading its own shards, for ``max_steps`` optimizer steps of in-batch negatives (no epochs, phases or mining);
:func:`train_steps` runs the same :func:`train_step` and scores ``eval_split`` and writes ``checkpoint-<step>`` (with
the stream's position) every ``save_steps`` and at the end; a resume skips the rows each process took.
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

from gleamx.checks import cap_workers
from gleamx.outputs import OutputFolder, check_checkpoint_source, claim_folder
from gleamx.errors import GleamConfigError
from gleamx.retrieval.config import RetrievalConfig, Phase
from gleamx.retrieval.data import RetrievalSet, load_retrieval
from gleamx.retrieval.dataset import PairDataset
from gleamx.retrieval.embed import embed_images
from gleamx.retrieval.encoder import RetrievalEncoder, load_encoder, parse_backbone
from gleamx.retrieval.evaluate import evaluate_retrieval
from gleamx.retrieval.loss import info_nce
from gleamx.retrieval.sampler import LocationBatchSampler
from gleamx.retrieval.search import topk_search
from gleamx.retrieval.stream import positive_pairs, process_stream, rows_taken, shard_note, stream_loader

STATE_FILE = "retrieval_state.json"
OLD_STATE_FILE = "gleamc_state.json"  # written by the release before the rename; still read


def build_encoder(cfg: RetrievalConfig) -> RetrievalEncoder:
    """'tiny', a new backbone (``open_clip:``/``hf:`` names, or a name timm knows), or a saved retrieval encoder
    (a dir or a Hub id)."""
    import timm

    if cfg.encoder == "tiny":
        return RetrievalEncoder.tiny(cfg.img_size)
    family, name = parse_backbone(cfg.encoder)
    if family != "timm" or (not Path(cfg.encoder).exists() and timm.is_model(cfg.encoder)):
        return RetrievalEncoder.create(name, cfg.img_size, pretrained=cfg.pretrained, family=family,
                                    backbone_kwargs=cfg.encoder_kwargs)
    return load_encoder(cfg.encoder)


def similar_locations(encoder: RetrievalEncoder, rset: RetrievalSet, k: int, batch_size: int,
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


def _read_state(cfg: RetrievalConfig) -> dict[str, Any] | None:
    if not cfg.resume_from_checkpoint:
        return None
    state = Path(cfg.resume_from_checkpoint, STATE_FILE)
    if not state.is_file():
        state = Path(cfg.resume_from_checkpoint, OLD_STATE_FILE)
    if not state.is_file():
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} has no {STATE_FILE} "
                               "(expected a checkpoint-<epoch> dir written by this trainer)")
    return json.loads(state.read_text())


@dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: its first epoch (counted across phases), that epoch's phase, and whether the
    checkpoint ends inside that phase (restore optimizer and schedule) or at its start (weights only)."""

    epoch: int = 0
    phase: int = 0
    mid_phase: bool = False
    step: int | None = None  # optimizer steps done before ``epoch``, across phases (None: an older checkpoint)


def _epoch_of(state: dict[str, Any], ckpt: str | None) -> int:
    if state.get("streaming"):
        raise GleamConfigError(f"resume_from_checkpoint: {ckpt} is a checkpoint of a streamed run (streaming: true); "
                               "resume it with streaming: true")
    return int(state["epoch"])


def phase_bounds(plan: list[Phase]) -> list[int]:
    """First epoch of each phase, and the run's epoch count last: ``[0, e1, e1 + e2, ...]``."""
    bounds = [0]
    for ph in plan:
        bounds.append(bounds[-1] + ph.epochs)
    return bounds


def resume_point(cfg: RetrievalConfig) -> ResumePoint:
    """The first epoch to train and its phase, from ``resume_from_checkpoint`` (epoch 0 without one)."""
    state = _read_state(cfg)
    if state is None:
        return ResumePoint()
    plan = cfg.phase_plan()
    bounds = phase_bounds(plan)
    epoch = _epoch_of(state, cfg.resume_from_checkpoint) + 1
    if epoch > bounds[-1]:
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} is epoch {epoch - 1}, "
                               f"beyond this recipe's {bounds[-1]} epochs")
    # the phase holding `epoch`; a finished run stays in its last phase (nothing left to train)
    phase = next((p for p in range(len(plan)) if epoch < bounds[p + 1]), len(plan) - 1)
    done = next(p for p in range(len(plan)) if epoch - 1 < bounds[p + 1])  # the checkpointed epoch's phase
    if "phase" in state and int(state["phase"]) != done:
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} was written in phase "
                               f"{int(state['phase']) + 1}, but epoch {epoch - 1} is in phase {done + 1} of this "
                               "recipe (were the phases changed?)")
    mid = epoch > bounds[phase] or epoch == bounds[-1]
    return ResumePoint(epoch=epoch, phase=phase, mid_phase=mid,
                       step=int(state["step"]) if "step" in state else None)


# Not accelerate's ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=N): that prunes *before*
# writing the new checkpoint (a failed save with total_limit=1 leaves none), does not restore its save counter on
# load_state, refuses to save when resuming from any but the newest kept checkpoint, and writes
# checkpoints/checkpoint_<n>, which the Hub upload's checkpoint-* ignore list would not skip. This prunes only
# after the new checkpoint and its retrieval_state.json are complete, and overwrites a later one on resume.
def _prune_checkpoints(out: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoint-<epoch|step> dirs (weights + optimizer state each)."""
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

    cfg: RetrievalConfig
    accelerator: Any
    model: Any  # the prepared (possibly DDP-wrapped) encoder
    optimizer: Any
    scheduler: Any
    loader: Any  # streamed: None until :func:`train_streamed` knows the step it starts at
    sampler: LocationBatchSampler | None  # None: streamed
    train: RetrievalSet | None  # None: streamed
    evalset: RetrievalSet | None
    history: list[dict[str, Any]] = field(default_factory=list)
    phase: Phase | None = None
    phase_index: int = 0
    first_epoch: int = 0  # the phase's first epoch, counted across the run
    step_offset: int = 0  # optimizer steps of the earlier phases
    pairs: Any = None  # streamed: the matching pairs of every process (gleamx.retrieval.stream.positive_pairs)

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)

    @property
    def steps_per_epoch(self) -> int:
        assert self.sampler is not None, "a streamed run has no epochs"
        return len(self.sampler)

    @property
    def process_batch(self) -> int:
        """Pairs each process embeds per step (the batch is global, split among the processes)."""
        assert self.phase is not None
        return self.phase.batch_size // self.accelerator.num_processes

    def step_after(self, epoch: int, step: int = 0) -> int:
        """Optimizer steps of the whole run after ``step`` steps of ``epoch``."""
        return self.step_offset + (epoch - self.first_epoch) * self.steps_per_epoch + step

    @property
    def encoder(self) -> RetrievalEncoder:
        return self.accelerator.unwrap_model(self.model)


def _make_accelerator(cfg: RetrievalConfig) -> Any:
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
    for n, ph in enumerate(cfg.phase_plan()):
        if ph.batch_size % accelerator.num_processes:
            where = f"phases[{n}].batch_size" if cfg.phases else "batch_size"
            raise GleamConfigError(f"{where}: {ph.batch_size} must divide by the {accelerator.num_processes} "
                                   "processes (it is the global batch, split among them)")
    return accelerator


def _view_mix(phase: Phase, train: RetrievalSet) -> dict[str, float] | None:
    if phase.view_mix == "equal":
        return dict.fromkeys(phase.views or train.views(), 1.0)
    return phase.view_mix  # type: ignore[return-value]  # a mapping or None once "equal" is resolved


def setup_run(cfg: RetrievalConfig, *, phase_index: int = 0, encoder: RetrievalEncoder | None = None,
              accelerator: Any = None, evalset: RetrievalSet | None | bool = False) -> _Run:
    """One phase's data, encoder (``encoder``, else a new one), location-aware sampler (with the phase's view
    mix) and AdamW + cosine schedule, all prepared by accelerate. The eval set (``evalset``, else loaded) has
    the top-level ``views``, so every phase is scored on the same queries."""
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    if not cfg.data:
        raise GleamConfigError("data: missing (a dataset dir with retrieval/gallery.jsonl and queries.jsonl"
                               + (", or GLEAM-X pairs to stream)" if cfg.streaming else ")"))
    phase = cfg.phase_plan()[phase_index]
    # The data first: a missing or broken layout (or a stream with nothing to train on) is one line before
    # accelerate starts (or sets its process state).
    train, pairs = (None, positive_pairs(cfg)) if cfg.streaming else (load_retrieval(cfg.data, "train",
                                                                                   views=phase.views), None)
    if evalset is False:
        evalset = load_retrieval(cfg.eval_data or cfg.data, cfg.eval_split, views=cfg.views) if cfg.eval_split else None
    accelerator = accelerator or _make_accelerator(cfg)
    # A phase's seed, set before anything random: a run resumed at a phase boundary starts the phase as a
    # straight run does. Phase 0 keeps the seed single-phase runs always had.
    set_seed(cfg.seed + phase_index)
    encoder = encoder if encoder is not None else build_encoder(cfg)
    sampler, loader = None, None
    if train is not None:
        data = PairDataset(train, encoder.transform())
        where = f"phases[{phase_index}]" if cfg.phases else "recipe"
        try:
            semis = data.semi_positives if any(data.semi_positives) else None
            sampler = LocationBatchSampler(data.locations, phase.batch_size, seed=cfg.seed, pair_semi_positives=semis,
                                           pair_views=[q.view for q in train.queries], view_mix=_view_mix(phase, train))
        except ValueError as e:
            raise GleamConfigError(f"{where}: {e}") from None
        loader = DataLoader(data, batch_sampler=sampler, num_workers=cap_workers(cfg.num_workers))
    total = cfg.max_steps if sampler is None else len(sampler) * phase.epochs
    warmup = int(phase.warmup_steps * total) if phase.warmup_steps < 1 else int(phase.warmup_steps)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=phase.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total)
    if loader is None:
        # A stream's loader stays out of prepare(): accelerate would dispatch its batches from the main process or
        # shard it again; each process reads its own shards (gleamx.retrieval.stream.process_stream).
        model, optimizer, scheduler = accelerator.prepare(encoder, optimizer, scheduler)
    else:
        model, optimizer, loader, scheduler = accelerator.prepare(encoder, optimizer, loader, scheduler)
    first = phase_bounds(cfg.phase_plan())[phase_index]
    evalset = evalset or None  # type: ignore[assignment]  # the False sentinel was replaced above
    return _Run(cfg, accelerator, model, optimizer, scheduler, loader, sampler, train, evalset,
                phase=phase, phase_index=phase_index, first_epoch=first, pairs=pairs)


def _read_history(run: _Run, start: int, key: str = "epoch") -> None:
    """The log of the run so far: its records before ``start`` (an epoch, or a streamed run's step + 1)."""
    hist_path = run.out / "log_history.json"
    if hist_path.is_file():
        run.history = [h for h in json.loads(hist_path.read_text()) if h[key] < start]


def resume(run: _Run) -> int:
    """Load ``resume_from_checkpoint`` (if set, and inside this run's phase) and the log up to it; returns the
    first epoch to train."""
    point = resume_point(run.cfg)
    if point.epoch and point.mid_phase and point.phase == run.phase_index:
        run.accelerator.load_state(run.cfg.resume_from_checkpoint)
        _read_history(run, point.epoch)
        if point.step is not None:
            run.step_offset = point.step - (point.epoch - run.first_epoch) * run.steps_per_epoch
    return point.epoch


def _checkpoint_weights(encoder: RetrievalEncoder, ckpt: str) -> None:
    """The model weights of an accelerate checkpoint (not its optimizer): a new phase starts from them."""
    from safetensors.torch import load_file

    path = Path(ckpt, "model.safetensors")
    if not path.is_file():
        raise GleamConfigError(f"resume_from_checkpoint: {ckpt} has no model.safetensors")
    encoder.load_state_dict(load_file(str(path)), strict=True)


def save_phase(run: _Run, number: int) -> None:
    """``phase-<number>/`` (1-based): the encoder as that phase left it (the next phase starts from it)."""
    if run.accelerator.is_main_process:
        run.encoder.save_pretrained(run.out / f"phase-{number}")
    run.accelerator.wait_for_everyone()


def set_hard_negatives(run: _Run, epoch: int) -> None:
    """From ``hard_negatives_from_epoch`` on, batch each location with its most similar others."""
    from accelerate.utils import broadcast_object_list

    cfg, accelerator = run.cfg, run.accelerator
    phase = run.phase or cfg.phase_plan()[0]
    if not phase.hard_negatives or epoch - run.first_epoch < phase.hard_negatives_from_epoch:
        return
    # Computed once and broadcast: every process must build the very same batches, or the
    # collectives of a shorter epoch wait forever on a longer one.
    assert run.train is not None and run.sampler is not None  # a streamed run mines nothing (config refuses)
    near = [similar_locations(run.encoder, run.train, 4 * phase.hard_negatives, cfg.eval_batch_size,
                              cfg.num_workers) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(near)
    run.sampler.set_neighbours(near[0], phase.hard_negatives)


def train_step(run: _Run, batch: dict[str, torch.Tensor]) -> float:
    """One optimizer step of symmetric InfoNCE on a batch of (query, satellite) pairs; returns its loss."""
    cfg, accelerator = run.cfg, run.accelerator
    with accelerator.autocast():
        # One forward over both halves: DDP allows one forward per backward, and it batches better.
        x = torch.cat([batch["query"], batch["satellite"]]).to(accelerator.device)
        q, s = run.model(x).chunk(2)
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
    return float(loss.detach())


def _log_loss(run: _Run, running: list[float], bar: Any, record: dict[str, Any]) -> None:
    """``record`` with the mean of ``running`` (then emptied), the learning rate and temperature, into the log."""
    mean = sum(running) / len(running)
    running.clear()
    bar.set_postfix(loss=f"{mean:.4f}")
    run.history.append({**record, "loss": mean, "learning_rate": run.scheduler.get_last_lr()[0],
                        "temperature": float(1.0 / run.encoder.logit_scale.detach().exp())})


def train_one_epoch(run: _Run, epoch: int) -> None:
    """One pass over the sampler's batches; a loss record joins ``run.history`` every ``logging_steps``."""
    cfg, accelerator = run.cfg, run.accelerator
    assert run.sampler is not None
    # Both: on one process accelerate re-sets the sampler's epoch from the loader's own counter (0 again
    # after a resume); on several it wraps the sampler in a shard that never passes set_epoch on.
    run.loader.set_epoch(epoch)
    run.sampler.set_epoch(epoch)
    run.model.train()
    bar = tqdm(run.loader, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process)
    running: list[float] = []
    for step, batch in enumerate(bar):
        running.append(train_step(run, batch))
        if (step + 1) % cfg.logging_steps == 0 or step + 1 == len(run.loader):
            _log_loss(run, running, bar, {"epoch": epoch, "step": run.step_after(epoch, step + 1)})


def train_steps(run: _Run, start: int) -> None:
    """A streamed run's optimizer steps ``start + 1`` to ``max_steps`` from ``run.loader``; every ``save_steps``
    and at the end, ``eval_split`` scored and a ``checkpoint-<step>`` saved."""
    cfg, accelerator = run.cfg, run.accelerator
    assert cfg.max_steps is not None
    bar = tqdm(total=cfg.max_steps, initial=start, desc="steps", disable=not accelerator.is_local_main_process)
    batches = iter(run.loader)
    running: list[float] = []
    run.model.train()
    for step in range(start + 1, cfg.max_steps + 1):
        running.append(train_step(run, next(batches)))  # the stream repeats without end: there is always a batch
        bar.update()
        if step % cfg.logging_steps == 0 or step == cfg.max_steps:
            _log_loss(run, running, bar, {"step": step})
        if step == cfg.max_steps or (cfg.save_steps and step % cfg.save_steps == 0):
            run.history.append(scored(run, {"step": step}, f"step {step}"))
            save_checkpoint(run, step, {"step": step, "streaming": True,
                                        "num_processes": accelerator.num_processes,
                                        "stream_rows_taken": rows_taken(step, run.process_batch)})
            run.model.train()
    bar.close()


def evaluate_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """The epoch's log record, with retrieval metrics on ``eval_split`` (scored by the main process only)."""
    record: dict[str, Any] = {"epoch": epoch, "step": run.step_after(epoch + 1)}
    if run.cfg.phases and run.phase is not None:
        record["phase"] = run.phase.name
    return scored(run, record, f"epoch {epoch}")


def scored(run: _Run, record: dict[str, Any], when: str) -> dict[str, Any]:
    """``record`` with retrieval metrics on ``eval_split`` under ``eval`` (the main process scores; the others wait
    in :func:`save_checkpoint`)."""
    if run.evalset is None or not run.accelerator.is_main_process:
        return record
    cfg = run.cfg
    m = evaluate_retrieval(run.encoder, run.evalset, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    record["eval"] = m
    from gleamx.console import percent_text as pc  # "-": R@k on a gallery of <= k tiles

    run.accelerator.print(f"{when}: {cfg.eval_split} R@1 {pc(m['R@1'])}  R@5 {pc(m['R@5'])}  "
                          f"R@10 {pc(m['R@10'])}  mAP {pc(m['mAP'])}")
    return record


def save_checkpoint(run: _Run, number: int, state: dict[str, Any] | None = None) -> None:
    """``checkpoint-<number>`` (accelerate state + ``state``: by default the epoch ``number``, its phase and the run's
    steps), the log so far, then prune old checkpoints."""
    ckpt = run.out / f"checkpoint-{number}"
    run.accelerator.save_state(str(ckpt))
    if run.accelerator.is_main_process:
        state = state or {"epoch": number, "phase": run.phase_index, "step": run.step_after(number + 1)}
        (ckpt / STATE_FILE).write_text(json.dumps(state) + "\n")
        (run.out / "log_history.json").write_text(json.dumps(run.history, indent=1) + "\n")
        _prune_checkpoints(run.out, run.cfg.save_total_limit)
    run.accelerator.wait_for_everyone()


def finish(run: _Run) -> None:
    """The encoder, its config, the log, the last scores, a model card; then the Hub upload if asked."""
    cfg, out, final = run.cfg, run.out, run.encoder
    if run.accelerator.is_main_process:
        final.save_pretrained(out)
        (out / "retrieval_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        (out / "log_history.json").write_text(json.dumps(run.history, indent=1) + "\n")
        last_eval = next((h["eval"] for h in reversed(run.history) if "eval" in h), None)
        results = {"split": cfg.eval_split, **last_eval} if last_eval is not None else None
        if results is not None:
            (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        from gleamx.retrieval.card import retrieval_card

        n_params = sum(p.numel() for p in final.parameters())
        retrieval_card(cfg, results, n_params, run.accelerator.num_processes, final.img_size,
                    phases=_phase_records(run)).save(out / "README.md")
        if cfg.push_to_hub:
            from gleamx.hub import push as hub_push

            hub_push.push_output_dir(out, cfg.hub_model_id, private=cfg.hub_private_repo)
            run.accelerator.print(f"pushed to https://huggingface.co/{cfg.hub_model_id}")
        from gleamx.train.learning_checks import loss_warnings
        from gleamx.train.summary import RunSummary, last_logged

        final_scores = {"loss": last_logged(run.history, "loss"), "R@1": (results or {}).get("R@1")}
        summary = RunSummary("retrieval encoder", out, int(last_logged(run.history, "step") or 0), final_scores,
                             loss_warnings(run.history),
                             f"gleamx retrieval eval --encoder {out} --data {cfg.data} --split test")
        for line in summary.summary_lines():
            run.accelerator.print(line)
    run.accelerator.wait_for_everyone()


def _phase_records(run: _Run) -> list[dict[str, Any]] | None:
    """What the card says of each phase (multi-phase runs): settings and optimizer steps from the log."""
    if not run.cfg.phases:
        return None
    plan, bounds = run.cfg.phase_plan(), phase_bounds(run.cfg.phase_plan())
    records = []
    for n, ph in enumerate(plan):
        ends = [h["step"] for h in run.history if "loss" not in h and bounds[n] <= h["epoch"] < bounds[n + 1]]
        starts = [h["step"] for h in run.history if "loss" not in h and h["epoch"] < bounds[n]]
        steps = (max(ends) - (max(starts) if starts else 0)) if ends else None
        records.append({"name": ph.name, "views": ph.views, "view_mix": ph.view_mix, "epochs": ph.epochs,
                        "learning_rate": ph.learning_rate, "batch_size": ph.batch_size, "steps": steps})
    return records


def _describe(run: _Run) -> str:
    cfg, ph = run.cfg, run.phase
    assert ph is not None
    params = f"{sum(p.numel() for p in run.encoder.parameters()):,} parameters ({cfg.encoder})"
    if run.train is None:
        buffer = cfg.stream_shuffle_buffer
        return (f"Retrieval encoder: matching pairs streamed from {cfg.data} ({run.pairs.n_shards} shard(s)"
                + (f", shuffle buffer {buffer}" if buffer else ", in order") + f"), {cfg.max_steps} steps, batch "
                f"{ph.batch_size} x {run.accelerator.num_processes} process(es), lr {ph.learning_rate:g}; {params}")
    head = f"phase {run.phase_index + 1}/{len(cfg.phase_plan())} ({ph.name}): " if cfg.phases else ""
    mix = "" if ph.view_mix is None else f", view mix {ph.view_mix}"
    return (f"Retrieval encoder: {head}{len(run.train.queries)} training pairs over {len(run.train.gallery)} locations, "
            f"{run.steps_per_epoch} steps/epoch x {ph.epochs} epochs, batch {ph.batch_size} x "
            f"{run.accelerator.num_processes} process(es), lr {ph.learning_rate:g}{mix}; {params}")


def claim_output_dir(cfg: RetrievalConfig) -> OutputFolder | None:
    """The run's identity checked before any work (on the first process; the others never write there):
    ``output_dir`` under :mod:`gleamx.outputs`' rule (another run's settings, or files gleamx did not write, need
    ``overwrite_output_dir``), and a ``resume_from_checkpoint`` of another folder must come from a run with the
    same settings. Returns the claimed folder, or ``None`` on the other processes."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    identity, adopt = cfg.run_identity(), []
    check_checkpoint_source(cfg.resume_from_checkpoint, cfg.output_dir, identity)
    if cfg.resume_from_checkpoint:
        checkpoint = Path(cfg.resume_from_checkpoint).resolve()
        if checkpoint.parent == Path(cfg.output_dir).resolve():
            adopt.append(checkpoint.name)  # copied in to resume from (or this run's own): the run's from now on
    return claim_folder(cfg.output_dir, "output_dir", command="retrieval train", identity=identity,
                        overwrite=cfg.overwrite_output_dir, marker="retrieval_config.json", adopt=adopt,
                        overwrite_flag="overwrite_output_dir: true",
                        inputs={"data": cfg.data, "eval_data": cfg.eval_data})


def stream_resume_step(cfg: RetrievalConfig) -> tuple[int, dict[str, Any] | None]:
    """A streamed run's first step and its checkpoint's state, from ``resume_from_checkpoint`` (0 without one)."""
    state = _read_state(cfg)
    if state is None:
        return 0, None
    if not state.get("streaming"):
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} is a checkpoint of a run on a "
                               "retrieval layout (streaming: false); resume it without streaming")
    step = int(state["step"])
    if cfg.max_steps is not None and step > cfg.max_steps:
        raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} is step {step}, beyond this "
                               f"recipe's max_steps {cfg.max_steps}")
    return step, state


def train_streamed(cfg: RetrievalConfig) -> Path:
    """Train from the stream (``streaming: true``) and save; returns the output directory."""
    start, state = stream_resume_step(cfg)
    run = setup_run(cfg, evalset=None)
    accelerator = run.accelerator
    if state is not None:  # checked before the output folder is claimed, as the recipe is
        if int(state.get("num_processes", 1)) != accelerator.num_processes:
            raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} was written by "
                                   f"{state.get('num_processes', 1)} process(es), each at its own place in its own "
                                   f"shards; resume a stream with as many (not {accelerator.num_processes})")
        if int(state.get("stream_rows_taken", -1)) != rows_taken(start, run.process_batch):
            raise GleamConfigError(f"resume_from_checkpoint: {cfg.resume_from_checkpoint} took "
                                   f"{state.get('stream_rows_taken')} pairs per process in {start} steps, not "
                                   f"{start} x {run.process_batch} (was batch_size changed?)")
    folder = claim_output_dir(cfg)
    if state is not None:
        accelerator.load_state(cfg.resume_from_checkpoint)
        _read_history(run, start + 1, key="step")
    if accelerator.is_main_process and cfg.eval_split:
        # Scored as an epoch run scores it, materialised: a retrieval layout, or one derived from the pairs' split.
        from gleamx.retrieval.from_pairs import retrieval_root

        root = retrieval_root(cfg.eval_data or cfg.data, cfg.eval_split, run.out / "eval_layout", accelerator.print)
        run.evalset = load_retrieval(root, cfg.eval_split, views=cfg.views)
    if note := shard_note(run.pairs, accelerator.num_processes):
        accelerator.print(note)
    stream = process_stream(run.pairs, cfg, rank=accelerator.process_index, world=accelerator.num_processes,
                            step=start, batch=run.process_batch)
    run.loader = stream_loader(stream, run.encoder.transform(), run.process_batch)
    accelerator.print(_describe(run))
    train_steps(run, start)
    finish(run)
    if folder is not None:
        folder.done()
    return run.out


def train_retrieval(cfg: RetrievalConfig) -> Path:
    """Train (phase after phase, or from a stream) and save; returns the output directory."""
    if cfg.streaming:
        return train_streamed(cfg)
    plan = cfg.phase_plan()
    bounds = phase_bounds(plan)
    point = resume_point(cfg)
    folder: OutputFolder | None = None
    accelerator, evalset, encoder = None, False, None
    history: list[dict[str, Any]] = []
    step_offset = point.step or 0
    run = None
    for p in range(point.phase, len(plan)):
        if run is not None:  # the last phase's model, optimizer and loader: released before the next is prepared
            # keep_fp32_wrapper=False: mixed precision's forward wrapper comes off, or prepare() would wrap it twice
            encoder = accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
            accelerator.free_memory()
        elif point.epoch and not point.mid_phase:
            # resumed on a phase boundary: the new phase starts from the checkpoint's weights, fresh optimizer
            encoder = build_encoder(cfg)
            _checkpoint_weights(encoder, cfg.resume_from_checkpoint)  # type: ignore[arg-type]
        run = setup_run(cfg, phase_index=p, encoder=encoder, accelerator=accelerator, evalset=evalset)
        if p == point.phase:  # the data read and checked, nothing written yet
            folder = claim_output_dir(cfg)
        accelerator, evalset = run.accelerator, run.evalset
        run.history, run.step_offset = history, step_offset
        start = bounds[p]
        if p == point.phase and point.epoch:
            start = resume(run)
            if not point.mid_phase:
                _read_history(run, point.epoch)
                if p and not (run.out / f"phase-{p}").exists():  # killed between the checkpoint and phase-<p>/
                    save_phase(run, p)
            history = run.history
        accelerator.print(_describe(run))
        for epoch in range(start, bounds[p + 1]):
            set_hard_negatives(run, epoch)
            train_one_epoch(run, epoch)
            run.history.append(evaluate_epoch(run, epoch))
            save_checkpoint(run, epoch)
        step_offset = run.step_after(bounds[p + 1])
        if len(plan) > 1 and start < bounds[p + 1]:
            save_phase(run, p + 1)
    assert run is not None
    finish(run)
    if folder is not None:
        folder.done()
    return run.out


__all__ = ["build_encoder", "evaluate_epoch", "similar_locations", "train_retrieval", "train_one_epoch", "train_step",
           "train_steps"]
