"""``SynthConfig``: the settings of ``gleamx data synth``."""

from __future__ import annotations

from dataclasses import dataclass, field

from gleamx.checks import SEED_MAX, check_choice, check_given, check_int, check_ranges, field_help
from gleamx.choices import DIFFICULTY_NAMES, Difficulty
from gleamx.errors import GleamConfigError
from gleamx.outputs import overwrite_option


@dataclass(kw_only=True)
class SynthConfig:
    """Generate the procedural cross-view dataset."""

    out: str = field(metadata={"help": "output directory"})
    # every pair is rendered and held as images: a million already takes hours
    n: int = field(default=400, metadata=field_help("number of image pairs", low=1, high=1_000_000))
    seed: int = field(default=0, metadata=field_help("random seed (the same seed writes the same bytes)", low=0,
                                                     high=SEED_MAX))
    image_size: int = field(default=128, metadata=field_help("satellite tile side in pixels", low=16, high=4096))
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
        check_ranges(self)
