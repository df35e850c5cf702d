"""The gleamx part of a GRPO recipe: SFT's data/task/freezing options plus the reward options; TRL's
``GRPOConfig`` (``reward_weights``, ``num_generations``, ``beta``, ``use_vllm``, ...) and ``ModelConfig`` hold
the rest."""

from __future__ import annotations

from dataclasses import dataclass, field

from gleamx.checks import check_at_least, check_int
from gleamx.errors import GleamConfigError
from gleamx.train.args import GleamScriptArguments
from gleamx.train.rewards import REWARD_NAMES, check_reward_names


@dataclass
class GleamGRPOArguments(GleamScriptArguments):
    """Data and task options of a gleamx GRPO run (as for SFT) and its verifiable rewards.

    ``model_name_or_path`` (TRL's ``ModelConfig``) may be a base model or a gleamx SFT output directory: an
    adapter run is loaded on its base model with the run's processor (pixel budget, chat template) and GRPO
    trains that adapter further; a full fine-tune run is a model directory like any other.
    """

    reward_funcs: list[str] = field(
        default_factory=lambda: ["verdict", "format", "consistency"],
        metadata={"help": f"rewards to combine, weighted by reward_weights: some of {', '.join(REWARD_NAMES)}"},
    )
    no_verdict_penalty: float = field(
        default=0.5, metadata={"help": "verdict reward of an answer with no parseable verdict is minus this"})
    format_min_chars: int = field(
        default=16, metadata={"help": "format reward: shortest explanation (characters, verdict line excluded)"})
    format_max_chars: int = field(
        default=2000, metadata={"help": "format reward: longest explanation (characters, verdict line excluded)"})
    class_balance: bool = field(
        default=False,
        metadata={"help": "weigh each prompt's rewards by n / (2 n_class) of its label, so the majority class does "
                          "not teach one answer (needs scale_rewards batch or none)"})
    reference_similarity_model: str | None = field(
        default=None, metadata={"help": "reference_similarity: sentence-transformers id or path (default: the "
                                        "offline model gleamx-eval's sbert_cosine uses)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.padding_free_vl:  # an SFT field: GRPO's batches are TRL's own prompts and completions
            raise GleamConfigError("recipe: padding_free_vl: applies to SFT only; GRPO pads its batches as TRL does")
        if isinstance(self.reward_funcs, str):  # one name on the command line
            self.reward_funcs = [self.reward_funcs]
        self.reward_funcs = [n for item in self.reward_funcs for n in str(item).replace(",", " ").split()]
        check_reward_names(self.reward_funcs)
        check_at_least("recipe: no_verdict_penalty", self.no_verdict_penalty, 0)
        check_int("recipe: format_min_chars", self.format_min_chars, 0)
        check_int("recipe: format_max_chars", self.format_max_chars, 1)
        if self.format_min_chars > self.format_max_chars:
            raise GleamConfigError(f"recipe: format_min_chars ({self.format_min_chars}) exceeds format_max_chars "
                                   f"({self.format_max_chars})")
