"""The gleamx part of a recipe, SFT (:class:`GleamScriptArguments`) and GRPO (:class:`GleamGRPOArguments`, SFT's
options plus the rewards); TRL's ``SFTConfig``/``GRPOConfig`` and ``ModelConfig`` hold the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trl import ScriptArguments

from gleamx.checks import (COUNT_MAX, PIXELS_MAX, TOKENS_MAX, check_at_least, check_choice, check_int,
                           check_pixel_budget, check_positive, check_ranges, field_help, recipe_option)
from gleamx.choices import FORMATS, LANGS_OR_BOTH, TASKS, DataFormat, LangOrBoth, Task
from gleamx.data.mixture import STOPPING, parse_mixture
from gleamx.data.stream import SHUFFLE_BUFFER
from gleamx.errors import GleamConfigError
from gleamx.train.match_eval import eval_max_new_tokens_default
from gleamx.train.rewards import CJK_CHAR_WEIGHT, REWARD_NAMES, check_reward_names

# Linear layers of the language model only: Qwen-VL vision MLPs reuse the names gate/up/down_proj,
# so a plain name list would put LoRA on the vision tower too.
LLM_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
VISION_LORA_TARGETS = r".*visual\.blocks.*\.(qkv|proj|attn\.proj|gate_proj|up_proj|down_proj|linear_fc1|linear_fc2)"
_CHARS_MAX = 1_000_000  # characters of one generated explanation


@dataclass
class GleamScriptArguments(ScriptArguments):
    """Data, task and freezing options of a gleamx SFT run (``dataset_name`` is a path or Hub id)."""

    dataset_format: DataFormat = field(default="auto", metadata={"help": "input format (default: detect from the path)"})
    dataset_columns: str | None = field(
        default=None, metadata={"help": "HF datasets: gleamx_field=column pairs, e.g. query_image=drone,label=match"}
    )
    lang: LangOrBoth = field(default="both", metadata={"help": "en, zh or both (one example per language)"})
    task: Task = field(default="explain", metadata={"help": "explain (explanation + verdict) or label (verdict only)"})
    min_pixels: int | None = field(default=None, metadata=field_help(
        "per-image pixel floor for the image processor", low=1, high=PIXELS_MAX))
    max_pixels: int | None = field(default=None, metadata=field_help(
        "per-image pixel budget; bounds image tokens (Qwen's default is 12.8M pixels)", low=1, high=PIXELS_MAX))
    freeze_vision_tower: bool = field(default=True, metadata={"help": "keep the vision encoder frozen"})
    freeze_merger: bool = field(default=False, metadata={"help": "keep the vision->text merger (projector) frozen"})
    # 1: past it AdamW diverges at once; a typo, not a setting
    vision_lr: float | None = field(default=None, metadata=field_help(
        "learning rate of the vision tower (if trained)", low=0, high=1))
    merger_lr: float | None = field(default=None, metadata=field_help(
        "learning rate of the merger (if trained)", low=0, high=1))
    lora_vision: bool = field(default=False, metadata={"help": "LoRA on the vision tower's linear layers too"})
    max_train_samples: int | None = field(default=None, metadata=field_help(
        "use only the first N training samples", low=1, high=COUNT_MAX))
    dataset_mixture: list[dict[str, Any]] | None = field(default=None, metadata={
        "help": "train on several datasets: a list of {path, weight, split?, format?, columns?}, rows drawn with "
                "probabilities in proportion to the weights (datasets.interleave_datasets); dataset_name is then "
                "the held-out split's source"})
    mixture_stopping_strategy: str = field(default="first_exhausted", metadata={
        "help": "dataset_mixture: stop drawing when the first source runs out (first_exhausted) or when every source "
                "has been read in full (all_exhausted: the smaller ones are read again meanwhile)"})
    stream_shuffle_buffer: int = field(default=SHUFFLE_BUFFER, metadata=field_help(
        "dataset_streaming: true: rows in the shuffle buffer (shard order is shuffled too); 0: read in order",
        low=0, high=COUNT_MAX))
    skip_bad: bool = field(default=False, metadata={"help": "skip bad records (and report how many) instead of stopping"})
    allow_outside_paths: bool = field(
        default=False, metadata={"help": "accept image paths that resolve outside the dataset directory"}
    )
    eval_results: str | None = field(default=None, metadata={"help": "gleamx-eval results.json for the model card"})
    eval_match_samples: int = field(default=0, metadata=field_help(
        "at each evaluation, greedy verdicts on the first N samples of dataset_test_split, generated and scored as "
        "gleamx eval does: logs eval_match_accuracy (_positive, _negative), eval_match_f1 and "
        "eval_match_invalid_rate, for metric_for_best_model: match_accuracy; 0: off", low=0, high=COUNT_MAX))
    eval_match_max_new_tokens: int = field(default=eval_max_new_tokens_default(), metadata=field_help(
        "longest answer generated for eval_match_samples (gleamx eval's --max-new-tokens)", low=1, high=TOKENS_MAX))
    overwrite_output_dir: bool = field(default=False, metadata={"help": "reuse an output dir that holds another run"})
    # Not named padding_free: that is SFTConfig's (same parser), which TRL refuses for image data.
    padding_free_vl: bool | None = field(
        default=None,
        metadata={"help": "pack each batch's conversations into one row without padding, with per-sample 3-D rope "
                          "ids (exact: per-sample losses equal padded runs). null (auto): on for Qwen2/2.5/3-VL with "
                          "flash_attention_2/3; padded with sdpa/eager (exact when packed, but slower: a dense mask "
                          "over the packed row). true: on, also with sdpa/eager; refused where packing is not "
                          "exact (other models or kernels). false: padded. TRL's padding_free: true means true"},
    )

    def __post_init__(self) -> None:
        check_choice("recipe: lang", self.lang, LANGS_OR_BOTH)
        check_choice("recipe: task", self.task, TASKS)
        check_choice("recipe: dataset_format", self.dataset_format, FORMATS)
        check_int("recipe: max_train_samples", self.max_train_samples, 1, optional=True)
        check_int("recipe: stream_shuffle_buffer", self.stream_shuffle_buffer, 0)
        check_choice("recipe: mixture_stopping_strategy", self.mixture_stopping_strategy, STOPPING)
        if self.dataset_mixture is not None:
            parse_mixture(self.dataset_mixture)
        check_int("recipe: eval_match_samples", self.eval_match_samples, 0)
        check_int("recipe: eval_match_max_new_tokens", self.eval_match_max_new_tokens, 1)
        check_pixel_budget("recipe: min_pixels", self.min_pixels, "max_pixels", self.max_pixels)
        check_positive("recipe: vision_lr", self.vision_lr, optional=True)
        check_positive("recipe: merger_lr", self.merger_lr, optional=True)
        if self.padding_free_vl is not None and not isinstance(self.padding_free_vl, bool):
            raise GleamConfigError(
                f"recipe: padding_free_vl: expected true, false or null (auto), got {self.padding_free_vl!r}")
        check_ranges(self, recipe_option)  # a subclass's fields too


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
    # 100: a penalty a hundred times the verdict reward's scale drowns every other reward
    no_verdict_penalty: float = field(default=0.5, metadata=field_help(
        "verdict reward of an answer with no parseable verdict is minus this", low=0, high=100))
    format_min_chars: int = field(default=16, metadata=field_help(
        "format reward: shortest explanation (characters, verdict line excluded)", low=0, high=_CHARS_MAX))
    format_max_chars: int = field(default=2000, metadata=field_help(
        "format reward: longest explanation (characters, verdict line excluded)", low=1, high=_CHARS_MAX))
    length_max_chars: int = field(default=1500, metadata=field_help(
        f"length reward: -1 at this answer length and beyond (characters, a CJK character counting {CJK_CHAR_WEIGHT})",
        low=1, high=_CHARS_MAX))
    length_zone_chars: int = field(default=200, metadata=field_help(
        "length reward: the zone before length_max_chars over which it falls linearly from 0 to -1 (DAPO's soft "
        "overlong punishment; 0: a hard cut)", low=0, high=_CHARS_MAX))
    # 1000: n-grams longer than any paragraph find no repetition at all
    repetition_ngram: int = field(default=8, metadata=field_help(
        "repetition reward: n-gram size, in words (Chinese: characters)", low=1, high=1000))
    repetition_tolerance: float = field(default=0.35, metadata=field_help(
        "repetition reward: share of repeated n-grams an answer may hold at no cost (below 1); past it the reward "
        "falls linearly to -1 at a share of 1", low=0, high=1))
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
        if self.eval_match_samples:  # GleamGRPOTrainer has no such evaluation: refused, not silently ignored
            raise GleamConfigError("recipe: eval_match_samples: applies to SFT only (GRPO logs its verdict reward, "
                                   "rewards/verdict/mean, at every step)")
        if isinstance(self.reward_funcs, str):  # one name on the command line
            self.reward_funcs = [self.reward_funcs]
        self.reward_funcs = [n for item in self.reward_funcs for n in str(item).replace(",", " ").split()]
        check_reward_names(self.reward_funcs, self.task)
        check_at_least("recipe: no_verdict_penalty", self.no_verdict_penalty, 0)
        check_int("recipe: format_min_chars", self.format_min_chars, 0)
        check_int("recipe: format_max_chars", self.format_max_chars, 1)
        if self.format_min_chars > self.format_max_chars:
            raise GleamConfigError(f"recipe: format_min_chars ({self.format_min_chars}) exceeds format_max_chars "
                                   f"({self.format_max_chars})")
        if self.length_zone_chars > self.length_max_chars:
            raise GleamConfigError(f"recipe: length_zone_chars ({self.length_zone_chars}) exceeds length_max_chars "
                                   f"({self.length_max_chars})")
        if self.repetition_tolerance >= 1:  # the range admits 1 (inclusive); a reward that is always 0 is a typo
            raise GleamConfigError(f"recipe: repetition_tolerance: expected a number below 1 (1 never penalises; "
                                   f"drop repetition from reward_funcs instead), got {self.repetition_tolerance!r}")
