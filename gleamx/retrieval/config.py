"""Retrieval-encoder training arguments: one dataclass, read from a recipe YAML plus command-line overrides."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from gleamx.checks import (BATCH_MAX, COUNT_MAX, SECONDS_MAX, SEED_MAX, SIDE_MAX, WORKERS_MAX, check_at_least,
                           check_choice, check_field, check_int, check_positive, check_ranges, field_help)
from gleamx.choices import SPLITS, VIEWS
from gleamx.errors import GleamConfigError

MixedPrecision = Literal["no", "bf16", "fp16"]
"""accelerate's mixed-precision modes."""


_EPOCHS = 10_000  # epochs (and checkpoints kept): more than any run trains

PHASE_KEYS = ("name", "views", "epochs", "learning_rate", "batch_size", "view_mix", "warmup_steps",
              "hard_negatives", "hard_negatives_from_epoch")
"""What a ``phases:`` entry may set; every key it leaves out is the top-level one."""


@dataclass(frozen=True)
class Phase:
    """One training phase, resolved: its own views, length, learning rate, batch and view mix."""

    name: str
    views: list[str] | None
    epochs: int
    learning_rate: float
    batch_size: int
    view_mix: dict[str, float] | str | None  # None: as the data comes; "equal"; or view -> weight
    warmup_steps: float
    hard_negatives: int
    hard_negatives_from_epoch: int  # counted from the phase's first epoch


def parse_view_mix(name: str, value: Any, views: list[str] | None = None) -> dict[str, float] | str | None:
    """``None``/``natural`` (as the data comes), ``equal``, a mapping view -> weight, or ``uav=2,ground=1``."""
    if value is None or value == "natural":
        return None
    if value == "equal":
        return "equal"
    if isinstance(value, str):
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        if not pairs or any(not sep for _, sep, _ in pairs):
            raise GleamConfigError(f"{name}: expected natural, equal or view=weight,... (e.g. uav=2,ground=1), "
                                   f"got {value!r}")
        try:
            value = {k.strip(): float(w) for k, _, w in pairs}
        except ValueError:
            raise GleamConfigError(f"{name}: weights must be numbers, got {value!r}") from None
    if not isinstance(value, dict) or not value:
        raise GleamConfigError(f"{name}: expected natural, equal or a mapping view -> weight, got {value!r}")
    for view, w in value.items():
        check_choice(f"{name}", view, VIEWS)
        check_at_least(f"{name}.{view}", w, 0, what="a weight >= 0")
        if views is not None and view not in views and w > 0:
            raise GleamConfigError(f"{name}: view {view!r} is not among the phase's views ({', '.join(views)})")
    if not any(w > 0 for w in value.values()):
        raise GleamConfigError(f"{name}: every weight is 0")
    return {k: float(w) for k, w in value.items()}


@dataclass
class RetrievalConfig:
    """Everything one retrieval training run needs (``recipes/retrieval/*.yaml``)."""

    data: str = field(default="", metadata={
        "help": "dataset dir holding retrieval/gallery.jsonl + queries.jsonl; with streaming: true, GLEAM-X pairs "
                "(a Hub id, a folder of Parquet shards, a save_to_disk folder or gleamx JSONL) whose train split's "
                "matching pairs are streamed"})
    streaming: bool = field(default=False, metadata={
        "help": "train on the matching pairs (label true) of `data`'s train split as they are read, shard by shard "
                "(a datasets.IterableDataset), for max_steps optimizer steps: in-batch negatives only, "
                "checkpoint-<step> every save_steps"})
    max_steps: int | None = field(default=None, metadata=field_help(
        "streaming: optimizer steps to train (a stream has no length; it is read again and again)", low=1,
        high=COUNT_MAX))
    save_steps: int | None = field(default=None, metadata=field_help(
        "streaming: a checkpoint-<step> (and eval_split scored) every N steps, and at the end (None: at the end only)",
        low=1, high=COUNT_MAX))
    # gleamx.data.stream.SHUFFLE_BUFFER; not imported here, as that module imports `datasets` (a test holds them equal)
    stream_shuffle_buffer: int = field(default=1000, metadata=field_help(
        "streaming: pairs in the shuffle buffer, with the shard order shuffled too (seed); 0: read in order",
        low=0, high=COUNT_MAX))
    output_dir: str = field(default="outputs/retrieval", metadata={"help": "where the encoder, logs and results go"})
    encoder: str = field(default="tiny", metadata={
        "help": "'tiny' (random-init tiny ConvNeXt), a timm backbone name (e.g. convnext_base.fb_in22k_ft_in1k_384), "
                "open_clip:NAME[:TAG] (an OpenCLIP image tower, e.g. open_clip:ViT-B-32), hf:ID (a transformers "
                "vision encoder: a Hub id such as hf:facebook/dinov2-small, or a model_type such as hf:dinov2 "
                "for a random init from a config), or a saved retrieval encoder dir / Hub id to continue from"})
    pretrained: bool = field(default=True, metadata={
        "help": "the library's pretrained weights for a backbone name (timm ImageNet, the OpenCLIP tag, the Hub id's)"})
    # dict | str: a mapping in the YAML, JSON on the command line
    encoder_kwargs: dict[str, Any] | str | None = field(default=None, metadata={
        "help": "keyword arguments for the backbone's constructor (timm/open_clip create_model, the hf config), "
                "e.g. a small config for tests; JSON on the command line"})
    img_size: int = field(default=384, metadata=field_help("square input side for every view (tiny: 64)", low=1,
                                                           high=SIDE_MAX))
    # list[str], not list[View]: HfArgumentParser cannot parse a list of Literal values; __post_init__ checks them.
    views: list[str] | None = field(default=None, metadata={"help": "query views to train on (default: all)"})
    view_mix: dict[str, float] | str | None = field(default=None, metadata={
        "help": "share of each query view in every batch: natural (as the data comes; default), equal, or "
                "view=weight,... (a mapping in the YAML)"})
    phases: list[dict[str, Any]] | str | None = field(default=None, metadata={
        "help": "train in phases, each continuing from the last one's weights in the same output_dir: a list of "
                f"mappings with any of {', '.join(PHASE_KEYS)} (others: the top-level value); JSON on the "
                "command line. Unset: one phase of the top-level settings"})
    epochs: int = field(default=1, metadata=field_help("passes over the training locations", low=1, high=_EPOCHS))
    batch_size: int = field(default=32, metadata=field_help(
        "pairs per optimizer step over all processes, one per location; each process embeds batch_size / "
        "num_processes of them and InfoNCE sees the gathered whole", low=2, high=BATCH_MAX))
    # 1: past it AdamW diverges at once; a typo, not a setting
    learning_rate: float = field(default=1e-3, metadata=field_help("peak learning rate (AdamW)", low=0, high=1))
    weight_decay: float = field(default=0.01, metadata=field_help("AdamW's decoupled weight decay", low=0, high=1))
    warmup_steps: float = field(default=0.1, metadata=field_help(
        "warm-up steps, or a fraction of all steps if < 1", low=0, high=COUNT_MAX))
    label_smoothing: float = field(default=0.1, metadata=field_help("InfoNCE's label smoothing", low=0, high=1))
    hard_negatives: int = field(default=0, metadata=field_help(
        "Dynamic Similarity Sampling: pairs of the most similar other locations pulled into each anchor's batch "
        "(0: random batches)", low=0, high=BATCH_MAX))
    hard_negatives_from_epoch: int = field(default=1, metadata=field_help(
        "first epoch (0-based; in a phase, counted from the phase's first) that samples by similarity", low=0,
        high=_EPOCHS))
    gather_features: bool = field(default=True, metadata={
        "help": "multi-process: all-gather embeddings (with gradient) so every pair's negatives are the whole "
                "global batch, as in OpenCLIP; off: each process's InfoNCE sees only its own slice"})
    # str, not Split: any case and "validation" are read too, as load_retrieval reads them.
    eval_split: str | None = field(default="val", metadata={"help": "split scored after every epoch (None: none)"})
    eval_data: str | None = field(default=None, metadata={
        "help": "dataset dir for eval_split when it is not `data` (e.g. a converted test set: one split per dir)"})
    eval_batch_size: int = field(default=64, metadata=field_help("images per embedding batch when scoring", low=1,
                                                                 high=BATCH_MAX))
    mixed_precision: MixedPrecision = field(default="no", metadata={
        "help": "accelerate mixed precision: no, bf16 or fp16"})
    num_workers: int = field(default=0, metadata=field_help(
        "DataLoader workers that decode images (streaming: the eval split's; each process reads its stream itself)",
        low=0, high=WORKERS_MAX))
    seed: int = field(default=0, metadata=field_help("random seed", low=0, high=SEED_MAX))
    save_total_limit: int | None = field(default=2, metadata=field_help(
        "keep only the newest N checkpoint-<epoch> dirs (None: all); each holds weights + optimizer state", low=1,
        high=_EPOCHS))
    ddp_timeout: int = field(default=10800, metadata=field_help(
        "seconds processes wait for each other (rank 0 scores the eval split and mines neighbours alone)", low=1,
        high=SECONDS_MAX))
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "a checkpoint-<epoch> dir of this output_dir to continue from"})
    logging_steps: int = field(default=10, metadata=field_help("log the loss every N steps", low=1, high=COUNT_MAX))
    push_to_hub: bool = field(default=False, metadata={
        "help": "upload the encoder, card and logs (not checkpoints) when training ends; token from HF_TOKEN or login"})
    hub_model_id: str | None = field(default=None, metadata={"help": "user/name on the Hub"})
    hub_private_repo: bool = False
    overwrite_output_dir: bool = field(default=False, metadata={
        "help": "replace a run with other settings that gleamx wrote in output_dir (files it did not write are kept)"})

    # Where and how a run goes, not what it trains: these may change between a run and its resume.
    _NOT_IDENTITY = ("output_dir", "resume_from_checkpoint", "num_workers", "logging_steps", "ddp_timeout",
                     "save_total_limit", "eval_batch_size", "push_to_hub", "hub_model_id", "hub_private_repo",
                     "overwrite_output_dir", "save_steps")
    # Only a streamed run has them: an epoch run's identity stays what earlier releases recorded.
    _STREAM_KEYS = ("streaming", "max_steps", "stream_shuffle_buffer")

    def run_identity(self) -> dict[str, Any]:
        """The settings that decide what this run trains (a resume, or a rerun into the same folder, must match)."""
        from dataclasses import asdict

        identity = {k: v for k, v in asdict(self).items() if k not in self._NOT_IDENTITY
                    and (self.streaming or k not in self._STREAM_KEYS)}
        for key in ("data", "eval_data"):  # one dataset, however its path is typed
            if identity[key] and Path(identity[key]).exists():
                identity[key] = str(Path(identity[key]).resolve())
        return identity

    def __post_init__(self) -> None:
        """Every value checked on its own; the dataset (``data``) is checked when training starts."""
        if self.push_to_hub and (not self.hub_model_id or self.hub_model_id.count("/") != 1):
            raise GleamConfigError(f"hub_model_id: push_to_hub needs user/name, got {self.hub_model_id!r}")
        check_int("batch_size", self.batch_size, 2)  # InfoNCE needs a negative in every batch
        for name in ("epochs", "logging_steps", "eval_batch_size", "img_size"):
            check_int(name, getattr(self, name), 1)
        for name in ("hard_negatives", "num_workers"):
            check_int(name, getattr(self, name), 0)
        check_int("save_total_limit", self.save_total_limit, 1, optional=True)
        check_int("ddp_timeout", self.ddp_timeout, 1)
        check_int("seed", self.seed, 0)
        for view in self.views or []:
            check_choice("views", view, VIEWS)
        self.encoder_kwargs = _mapping("encoder_kwargs", self.encoder_kwargs)
        self.view_mix = parse_view_mix("view_mix", self.view_mix, self.views)
        self.phases = _phase_list(self.phases)
        self.phase_plan()  # every phase checked now, not when it starts
        check_choice("mixed_precision", self.mixed_precision, get_args(MixedPrecision))
        if isinstance(self.eval_split, str) and self.eval_split.strip().lower() in ("none", "null", ""):
            self.eval_split = None  # `--eval_split None` on the command line: no per-epoch scoring, as in YAML
        if self.eval_split is not None:
            from gleamx.data.schema import canonical_split  # here: that module imports `datasets`

            if canonical_split(self.eval_split) not in SPLITS:
                raise GleamConfigError(f"eval_split: expected one of {', '.join(SPLITS)} (any case) or None, "
                                       f"got {self.eval_split!r}")
        self._check_streaming()
        check_ranges(self, str)

    def _check_streaming(self) -> None:
        """What a streamed run needs and what it cannot do, in one line each."""
        check_int("max_steps", self.max_steps, 1, optional=True)
        check_int("save_steps", self.save_steps, 1, optional=True)
        check_int("stream_shuffle_buffer", self.stream_shuffle_buffer, 0)
        fields = {f.name: f for f in dataclasses.fields(self)}
        for name in ("max_steps", "save_steps", "stream_shuffle_buffer"):  # a number past its bound says so first
            check_field(fields[name], name, getattr(self, name))
        if not self.streaming:
            for name in ("max_steps", "save_steps"):
                if getattr(self, name) is not None:
                    raise GleamConfigError(f"{name}: only with streaming: true (a retrieval layout trains for "
                                           "`epochs`, with a checkpoint per epoch)")
            return
        if self.max_steps is None:
            raise GleamConfigError("max_steps: a streamed dataset has no length, so max_steps (> 0) says how long "
                                   "to train (streaming: true)")
        if self.phases:
            raise GleamConfigError("phases: train in phases from a retrieval layout (their length is in epochs, "
                                   "which a stream does not have); not with streaming: true")
        if self.hard_negatives:
            raise GleamConfigError(f"hard_negatives: {self.hard_negatives}: mining similar locations needs the "
                                   "whole gallery, which a stream does not hold; set hard_negatives: 0 with "
                                   "streaming: true (negatives are the batch's other pairs)")
        if self.view_mix is not None:
            raise GleamConfigError("view_mix: a stream's batches take the pairs as they come; use views to keep "
                                   "some query views (streaming: true)")

    def phase_plan(self) -> list[Phase]:
        """The phases to train, in order; without ``phases``, one of the top-level settings."""
        entries = self.phases or [{}]
        fields = {f.name: f for f in dataclasses.fields(self)}
        plan = []
        for n, entry in enumerate(entries):
            where = f"phases[{n}]" if self.phases else ""
            known = ", ".join(PHASE_KEYS)
            for key in entry:
                if key not in PHASE_KEYS:
                    close = difflib.get_close_matches(key, PHASE_KEYS, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise GleamConfigError(f"{where}: unknown key {key!r}{hint}; expected any of {known}")
            get = {k: entry.get(k, getattr(self, k, None)) for k in PHASE_KEYS}
            label = (lambda k: f"{where}.{k}") if where else (lambda k: k)
            views = get["views"]
            if isinstance(views, str):
                views = [views]
            if views is not None and (not isinstance(views, list) or not views):
                raise GleamConfigError(f"{label('views')}: expected a list of views, got {views!r}")
            for view in views or []:
                check_choice(label("views"), view, VIEWS)
            check_int(label("epochs"), get["epochs"], 1)
            check_int(label("batch_size"), get["batch_size"], 2)
            check_positive(label("learning_rate"), get["learning_rate"])
            check_at_least(label("warmup_steps"), get["warmup_steps"], 0)
            check_int(label("hard_negatives"), get["hard_negatives"], 0)
            check_int(label("hard_negatives_from_epoch"), get["hard_negatives_from_epoch"], 0)
            for key in entry:  # a phase's own numbers meet the ranges of the top-level settings they replace
                if key in fields:
                    check_field(fields[key], label(key), entry[key])
            mix = parse_view_mix(label("view_mix"), get["view_mix"], views)
            name = entry.get("name") or (f"phase-{n + 1}" if self.phases else "train")
            plan.append(Phase(name=str(name), views=views, epochs=get["epochs"],
                              learning_rate=float(get["learning_rate"]), batch_size=get["batch_size"], view_mix=mix, warmup_steps=get["warmup_steps"],
                              hard_negatives=get["hard_negatives"],
                              hard_negatives_from_epoch=get["hard_negatives_from_epoch"]))
        return plan


def _yaml_value(name: str, value: str) -> Any:
    from gleamx.parsing import load_yaml  # JSON is YAML too: one parser, with one set of limits

    return load_yaml(value, name, what="JSON/YAML")


def _mapping(name: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = _yaml_value(name, value)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise GleamConfigError(f"{name}: expected a mapping (JSON on the command line), got {value!r}")
    return value


def _phase_list(value: Any) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        value = _yaml_value("phases", value)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(p, dict) for p in value):
        raise GleamConfigError(f"phases: expected a non-empty list of mappings, got {json.dumps(value, default=str)}")
    return [dict(p) for p in value]
