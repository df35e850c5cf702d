"""GLEAM-C training arguments: one dataclass, read from a recipe YAML plus command-line overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from gleamx.checks import check_choice, check_int
from gleamx.choices import SPLITS, VIEWS
from gleamx.errors import GleamConfigError

MixedPrecision = Literal["no", "bf16", "fp16"]
"""accelerate's mixed-precision modes."""


@dataclass
class GleamCConfig:
    """Everything one GLEAM-C training run needs (``recipes/gleamc/*.yaml``)."""

    data: str = field(default="", metadata={"help": "dataset dir holding retrieval/gallery.jsonl + queries.jsonl"})
    output_dir: str = field(default="outputs/gleamc", metadata={"help": "where the encoder, logs and results go"})
    encoder: str = field(default="tiny", metadata={
        "help": "'tiny' (random-init tiny ConvNeXt), a timm backbone name (e.g. convnext_base.fb_in22k_ft_in1k_384), "
                "or a saved GLEAM-C encoder dir / Hub id to continue from"})
    pretrained: bool = field(default=True, metadata={"help": "ImageNet weights from timm for a backbone name"})
    img_size: int = field(default=384, metadata={"help": "square input side for every view (tiny: 64)"})
    # list[str], not list[View]: HfArgumentParser cannot parse a list of Literal values; __post_init__ checks them.
    views: list[str] | None = field(default=None, metadata={"help": "query views to train on (default: all)"})
    epochs: int = 1
    batch_size: int = field(default=32, metadata={
        "help": "pairs per optimizer step over all processes, one per location; each process embeds "
                "batch_size / num_processes of them and InfoNCE sees the gathered whole"})
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: float = field(default=0.1, metadata={"help": "warm-up steps, or a fraction of all steps if < 1"})
    label_smoothing: float = 0.1
    hard_negatives: int = field(default=0, metadata={
        "help": "Dynamic Similarity Sampling: pairs of the most similar other locations pulled into each "
                "anchor's batch (0: random batches)"})
    hard_negatives_from_epoch: int = field(default=1, metadata={"help": "first epoch (0-based) that samples by similarity"})
    gather_features: bool = field(default=True, metadata={
        "help": "multi-process: all-gather embeddings (with gradient) so every pair's negatives are the whole "
                "global batch, as in OpenCLIP; off: each process's InfoNCE sees only its own slice"})
    # str, not Split: any case and "validation" are read too, as load_retrieval reads them.
    eval_split: str | None = field(default="val", metadata={"help": "split scored after every epoch (None: none)"})
    eval_data: str | None = field(default=None, metadata={
        "help": "dataset dir for eval_split when it is not `data` (e.g. a converted test set: one split per dir)"})
    eval_batch_size: int = 64
    mixed_precision: MixedPrecision = field(default="no", metadata={
        "help": "accelerate mixed precision: no, bf16 or fp16"})
    num_workers: int = 0
    seed: int = 0
    save_total_limit: int | None = field(default=2, metadata={
        "help": "keep only the newest N checkpoint-<epoch> dirs (None: all); each holds weights + optimizer state"})
    ddp_timeout: int = field(default=10800, metadata={
        "help": "seconds processes wait for each other (rank 0 scores the eval split and mines neighbours alone)"})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "a checkpoint-<epoch> dir of this output_dir to continue from"})
    logging_steps: int = 10
    push_to_hub: bool = field(default=False, metadata={
        "help": "upload the encoder, card and logs (not checkpoints) when training ends; token from HF_TOKEN or login"})
    hub_model_id: str | None = field(default=None, metadata={"help": "user/name on the Hub"})
    hub_private_repo: bool = False

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
        for view in self.views or []:
            check_choice("views", view, VIEWS)
        check_choice("mixed_precision", self.mixed_precision, get_args(MixedPrecision))
        if self.eval_split is not None:
            from gleamx.data.schema import canonical_split  # here: that module imports `datasets`

            if canonical_split(self.eval_split) not in SPLITS:
                raise GleamConfigError(f"eval_split: expected one of {', '.join(SPLITS)} (any case) or None, "
                                       f"got {self.eval_split!r}")
