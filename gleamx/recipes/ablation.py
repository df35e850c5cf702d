"""``gleamx ablation``: train the arms of an ablation from one SFT recipe, evaluate each, compare them.

    gleamx ablation --config qwen2.5-vl-3b/ablation --accelerate_config zero2    # the paper's label vs explanations
    gleamx ablation --config tiny/ablation                                       # its tiny twin, on a CPU

Every arm trains the same recipe (same seed, same data) with its own overrides (``"label: --task label"``): the
difference between the arms is exactly what the overrides say. Each arm's model goes to ``OUT/<arm>/model``, its
eval (on the same samples for every arm: ``eval_data``, ``eval_split``, ``eval_lang``, each arm scored on its own
task) to ``OUT/<arm>/eval``, and ``gleamx compare`` of the arms (the first is the reference) to ``OUT/compare``.
Run it again and a finished arm is not trained again, nor a finished eval generated again; a killed arm resumes
from its last checkpoint.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.checks import BATCH_MAX, COUNT_MAX, TOKENS_MAX, check_given, check_int, check_ranges, field_help
from gleamx.errors import GleamConfigError

DEFAULT_ARMS = ["label: --task label", "explain: --task explain"]
_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(kw_only=True)
class AblationConfig:
    """Train each arm of an ablation (one SFT recipe, per-arm overrides), evaluate each, compare them."""

    recipe: str = field(metadata=field_help("the SFT recipe every arm trains: a YAML path or a packaged name "
                                            "(qwen2.5-vl-3b/sft_lora)"))
    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS), metadata=field_help(
        "each arm as 'NAME: recipe flags' (default: 'label: --task label' 'explain: --task explain'); the first "
        "is the reference of the comparison"))
    overrides: str = field(default="", metadata=field_help(
        "recipe flags for every arm, in one string (e.g. '--model_name_or_path models/tiny --max_steps 200')"))
    output_dir: str = field(metadata=field_help("folder of the ablation: OUT/<arm>/model, OUT/<arm>/eval, "
                                                "OUT/compare"))
    accelerate_config: str | None = field(default=None, metadata=field_help(
        "train each arm under accelerate launch with this config (a file or a packaged name: zero2, ...)"))
    eval_data: str | None = field(default=None, metadata=field_help(
        "data the arms are scored on (default: the recipe's dataset_name)"))
    eval_split: str = field(default="test", metadata=field_help("split the arms are scored on"))
    eval_lang: str = field(default="en", metadata=field_help("en, zh or en,zh"))
    eval_max_new_tokens: int = field(default=512, metadata=field_help(
        "longest answer an explanation arm may generate (a label arm needs a few tokens and gets 16)", low=1,
        high=TOKENS_MAX))
    eval_batch_size: int = field(default=8, metadata=field_help("samples per generation batch", low=1,
                                                                high=BATCH_MAX))
    eval_limit: int | None = field(default=None, metadata=field_help("score only the first N samples", low=1,
                                                                     high=COUNT_MAX))
    bootstrap: int = field(default=2000, metadata=field_help("bootstrap resamples of the comparison", low=100,
                                                             high=100_000))

    def __post_init__(self) -> None:
        check_given("--recipe", self.recipe, "an SFT recipe YAML path or packaged name")
        check_given("--output_dir", self.output_dir, "the ablation's folder")
        check_int("--eval_max_new_tokens", self.eval_max_new_tokens, 1)
        check_int("--eval_batch_size", self.eval_batch_size, 1)
        check_int("--eval_limit", self.eval_limit, 1, optional=True)
        check_int("--bootstrap", self.bootstrap, 100)
        check_ranges(self)
        self.arm_flags()  # bad arms are refused now, before anything trains

    def arm_flags(self) -> dict[str, list[str]]:
        """``{arm name: its recipe flags}`` in the order given; malformed or repeated arms are one line."""
        arms: dict[str, list[str]] = {}
        for spec in self.arms:
            name, sep, flags = str(spec).partition(":")
            name = name.strip()
            if not sep or not _ARM_NAME.match(name):
                raise GleamConfigError(f"--arms: {spec!r}: expected 'NAME: recipe flags' with a NAME of letters, "
                                       "digits, '_', '.' or '-' (e.g. 'label: --task label')")
            if name in arms:
                raise GleamConfigError(f"--arms: {name!r} is given twice; each arm needs its own name")
            try:
                arms[name] = shlex.split(flags)
            except ValueError as e:
                raise GleamConfigError(f"--arms: {spec!r}: {e}") from None
        if len(arms) < 2:
            raise GleamConfigError(f"--arms: an ablation needs at least two arms, got {len(arms)}")
        try:
            shlex.split(self.overrides)
        except ValueError as e:
            raise GleamConfigError(f"--overrides: {self.overrides!r}: {e}") from None
        return arms


@dataclass
class Arm:
    """One arm: its name, the recipe flags that train it, and its parsed settings."""

    name: str
    argv: list[str]
    script_args: Any
    training_args: Any
    model_args: Any

    @property
    def model_dir(self) -> Path:
        return Path(self.training_args.output_dir)


def _sft_parser() -> Any:
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import grouped
    from gleamx.train.arguments import GleamScriptArguments

    return grouped(TrlParser)((GleamScriptArguments, SFTConfig, ModelConfig), prog="gleamx ablation")


def plan_arms(cfg: AblationConfig) -> list[Arm]:
    """Each arm's recipe flags and settings, checked to share the seed and the training data."""
    from gleamx.parsing import parse_recipe
    from gleamx.recipes import resolve_config

    out = Path(cfg.output_dir)
    arms = []
    for name, flags in cfg.arm_flags().items():
        argv = resolve_config(["--config", cfg.recipe, *shlex.split(cfg.overrides), *flags,
                               "--output_dir", str(out / name / "model")], "sft")
        arms.append(Arm(name, argv, *parse_recipe(_sft_parser(), argv)))
    ref = arms[0]
    for arm in arms[1:]:
        for what, get in (("seed", lambda a: a.training_args.seed),
                          ("training data (dataset_name)", lambda a: a.script_args.dataset_name),
                          ("training split", lambda a: a.script_args.dataset_train_split)):
            if get(arm) != get(ref):
                raise GleamConfigError(f"--arms: {arm.name} and {ref.name} differ in {what} ({get(arm)!r} vs "
                                       f"{get(ref)!r}); an ablation's arms share seed and data, so the difference "
                                       "is the one the arms name")
    return arms


def _finished(arm: Arm) -> bool:
    """The arm's model folder holds a finished run of exactly these settings (its record lists what it wrote)."""
    from gleamx.outputs import as_recorded, read_record
    from gleamx.train.run import run_signature

    record = read_record(arm.model_dir)
    signature = run_signature(arm.script_args, arm.training_args, arm.model_args)
    return bool(record and record.get("written") and record.get("identity") == as_recorded(signature))


def _train(arm: Arm, accelerate_config: str | None) -> None:
    from gleamx.console import console

    if any(arm.model_dir.glob("checkpoint-*")) and arm.training_args.resume_from_checkpoint is None:
        arm.argv += ["--resume_from_checkpoint", "true"]  # a killed arm goes on where it stopped
    console.print(f"[{arm.name}] training: gleamx sft {' '.join(arm.argv)}", markup=False, soft_wrap=True)
    if accelerate_config is None:
        from gleamx.parsing import parse_recipe
        from gleamx.train.sft import run_sft

        run_sft(*parse_recipe(_sft_parser(), arm.argv))
        return
    from gleamx.accelerate_configs import resolve

    code = subprocess.call([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                            str(resolve(accelerate_config)), "-m", "gleamx.recipes.sft", *arm.argv])
    if code:
        raise GleamConfigError(f"[{arm.name}] training stopped with exit code {code} (its output above); run the "
                               "same command again to resume it")


def _eval_config(cfg: AblationConfig, arm: Arm) -> Any:
    from gleamx.eval.config import EvalConfig

    base, adapter = (arm.model_args.model_name_or_path, str(arm.model_dir)) if arm.model_args.use_peft else \
        (str(arm.model_dir), None)
    label = arm.script_args.task == "label"
    return EvalConfig(data=cfg.eval_data or arm.script_args.dataset_name, split=cfg.eval_split, lang=cfg.eval_lang,
                      model=base, adapter=adapter, task=arm.script_args.task, output=str(Path(cfg.output_dir) /
                                                                                          arm.name / "eval"),
                      max_new_tokens=min(16, cfg.eval_max_new_tokens) if label else cfg.eval_max_new_tokens,
                      batch_size=cfg.eval_batch_size, limit=cfg.eval_limit)


@dataclass
class AblationResult:
    """The comparison of the arms (``compare.json``'s content) and where everything is."""

    compare: Any
    output: Path
    arms: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "arms": self.arms, "compare": self.compare.as_dict()}

    def summary_lines(self) -> list[str]:
        return self.compare.summary_lines() + [
            "arms: " + ", ".join(f"{a}: {self.output / a / 'model'} (eval: {self.output / a / 'eval'})"
                                 for a in self.arms)]


def run_ablation(cfg: AblationConfig) -> AblationResult:
    """Train every arm not already finished, evaluate each, and write the comparison to ``OUT/compare``."""
    from gleamx.console import console
    from gleamx.eval.compare import CompareConfig, run_compare
    from gleamx.eval.run import run_eval

    arms = plan_arms(cfg)
    evals = [_eval_config(cfg, arm) for arm in arms]  # their values checked before the first arm trains
    for arm in arms:
        if _finished(arm):
            console.print(f"[{arm.name}] trained earlier with these settings: {arm.model_dir}", markup=False)
        else:
            _train(arm, cfg.accelerate_config)
    for arm, eval_cfg in zip(arms, evals):
        console.print(f"[{arm.name}] evaluating ({eval_cfg.task}, {eval_cfg.lang}) into {eval_cfg.output}",
                      markup=False)
        run_eval(eval_cfg)
    out = Path(cfg.output_dir)
    compare = run_compare(CompareConfig(runs=[e.output for e in evals], names=[a.name for a in arms],
                                        output=str(out / "compare"), bootstrap=cfg.bootstrap, overwrite=True))
    return AblationResult(compare, out, [a.name for a in arms])
