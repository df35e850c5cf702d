"""``SynthConfig``: the settings of ``gleamx data synth``."""

from __future__ import annotations

from dataclasses import dataclass, field

from gleamx.checks import check_choice, check_given, check_int
from gleamx.choices import DIFFICULTY_NAMES, Difficulty
from gleamx.errors import GleamConfigError
from gleamx.outputs import overwrite_option


@dataclass(kw_only=True)
class SynthConfig:
    """Generate the procedural cross-view dataset."""

    out: str = field(metadata={"help": "output directory"})
    n: int = field(default=400, metadata={"help": "number of image pairs"})
    seed: int = field(default=0, metadata={"help": "random seed (the same seed writes the same bytes)"})
    image_size: int = field(default=128, metadata={"help": "satellite tile side in pixels"})
    difficulty: Difficulty = field(default="medium", metadata={
        "help": "toy: each location washed in its own land-cover colour, decidable from colour alone"})
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        check_given("--out", self.out, "an output directory")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise GleamConfigError(f"--n: expected a positive number of pairs, got {self.n}")
        check_int("--seed", self.seed, 0)
        check_int("--image-size", self.image_size, 16)
        check_choice("--difficulty", self.difficulty, DIFFICULTY_NAMES)
