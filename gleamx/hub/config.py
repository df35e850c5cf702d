"""Configs of ``gleamx push`` and ``gleamx merge``."""

from __future__ import annotations

from dataclasses import dataclass, field

from gleamx.checks import check_choice, check_given
from gleamx.choices import DTYPES, Dtype
from gleamx.outputs import overwrite_option


@dataclass(kw_only=True)
class PushConfig:
    """Upload a training output dir (adapter/model, processor, card) to the Hub."""

    output_dir: str = field(metadata={"positional": True, "help": "a training output directory"})
    repo_id: str = field(metadata={"help": "user/name on the Hub"})
    private: bool = field(default=False, metadata={"help": "create the repo private"})
    dry_run: bool = field(default=False, metadata={"help": "list the files and the card without uploading"})

    def __post_init__(self) -> None:
        check_given("output_dir", self.output_dir, "a training output directory")
        check_given("--repo-id", self.repo_id, "user/name on the Hub")


@dataclass(kw_only=True)
class MergeConfig:
    """Merge a LoRA adapter into its base model."""

    base: str = field(metadata={"help": "base model directory or Hub id"})
    adapter: str = field(metadata={"help": "adapter directory (a training output dir)"})
    out: str = field(metadata={"help": "output directory"})
    dtype: Dtype = field(default="auto", metadata={"help": "dtype of the merged weights"})
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        check_given("--base", self.base, "a base model directory or Hub id")
        check_given("--adapter", self.adapter, "an adapter directory")
        check_given("--out", self.out, "an output directory")
        check_choice("--dtype", self.dtype, DTYPES)
