"""One GRPO run: GLEAM-X data -> prompt dataset -> policy (base model, or an SFT run) -> TRL's GRPOTrainer with
gleamx's verifiable rewards -> adapter/weights, processor, card, reward and KL plots.

TRL's ``GRPOTrainer`` does the RL as shipped: it samples ``num_generations`` answers per prompt (``model.generate``,
or vLLM with ``use_vllm`` on a GPU), scores them with the rewards of :mod:`gleamx.train.rewards` (weighted by
``reward_weights``, each logged as ``rewards/<name>/mean|std``), and updates the policy on the group-relative
advantages (KL to the start policy when ``beta`` > 0). gleamx adds the data, the start from an SFT run, the checks
that fail in one line before a model loads, and the outputs an SFT run leaves.

Starting from an SFT adapter run, GRPO trains that adapter further (its processor and pixel budget are the run's),
so the output is an adapter on the same base model: ``gleamx eval --model BASE --adapter OUT`` and ``gleamx push``
work on it unchanged. With ``beta`` > 0 TRL keeps a frozen copy of the SFT adapter as the KL reference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from trl import GRPOConfig, GRPOTrainer, ModelConfig

from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.train.freeze import PartLearningRates, apply_freezing, trainable_counts
from gleamx.train.arguments import GleamGRPOArguments
from gleamx.train.grpo_data import GRPOData, build_grpo_dataset
from gleamx.train.peft_configs import lora_config, run_quantization_config
from gleamx.train.reload import SavedWeightsReload
from gleamx.train.rewards import RewardOptions, build_rewards, class_weights
from gleamx.train.learning_checks import grpo_warnings
from gleamx.train.run import BuiltRun, RunKind, Say, eval_command, float32_trainables, run_training
from gleamx.train.train_split import check_streaming, train_samples, train_stream


class GleamGRPOTrainer(SavedWeightsReload, PartLearningRates, GRPOTrainer):
    """``GRPOTrainer`` with separate learning rates for the vision tower and the merger (as SFT has)."""

    def _generate(self, prompts: list):  # noqa: ANN202
        # TRL generates with the model unwrapped from the accelerator, so outside its mixed-precision autocast;
        # trainable tensors kept in float32 beside bfloat16 frozen ones (the merger, see _float32_trainables)
        # then meet bfloat16 inputs. The autocast training uses makes generation see the same dtypes.
        with self.accelerator.autocast():
            return super()._generate(prompts)


def check_grpo(script_args: GleamGRPOArguments, training_args: GRPOConfig, model_args: ModelConfig) -> None:
    """What no GRPO run can use, in one line before data or model load (TRL's own ``num_generations`` rule is
    checked by ``GRPOConfig`` when the recipe is parsed)."""
    if not model_args.model_name_or_path:
        raise GleamConfigError("recipe: model_name_or_path: missing (a model directory, Hub id or gleamx SFT run)")
    if not script_args.dataset_name and not script_args.dataset_mixture:
        raise GleamConfigError("recipe: dataset_name: missing (a GLEAM-X file, directory or Hub dataset id; or "
                               "dataset_mixture)")
    weights = training_args.reward_weights
    if weights is not None and not all(math.isfinite(w) for w in weights):
        raise GleamConfigError(f"recipe: reward_weights: expected finite numbers, got {list(weights)}")
    if weights is not None and len(weights) != len(script_args.reward_funcs):
        raise GleamConfigError(f"recipe: reward_weights: {len(weights)} weight(s) for {len(script_args.reward_funcs)} "
                               f"reward(s) ({', '.join(script_args.reward_funcs)}); give one weight per reward")
    check_streaming(script_args, training_args)
    if script_args.class_balance and script_args.dataset_streaming:
        raise GleamConfigError("recipe: class_balance: weighs by the label counts of the whole train split, which a "
                               "stream does not know ahead (dataset_streaming: true); drop one of them")
    if script_args.class_balance and training_args.scale_rewards == "group":
        raise GleamConfigError("recipe: class_balance: with scale_rewards group each prompt's rewards are divided by "
                               "their own spread, which cancels a per-class weight; set scale_rewards: batch or none")
    if training_args.max_completion_length is not None and training_args.max_completion_length < 1:
        raise GleamConfigError(f"recipe: max_completion_length: expected an integer >= 1, got "
                               f"{training_args.max_completion_length!r}")
    if training_args.use_vllm:
        import importlib.util

        if not torch.cuda.is_available():
            raise GleamConfigError("recipe: use_vllm: vLLM generation needs a CUDA GPU; set use_vllm: false "
                                   "(transformers generation)")
        if importlib.util.find_spec("vllm") is None:
            raise GleamConfigError("recipe: use_vllm: the vllm package is not installed (pip install vllm), or set "
                                   "use_vllm: false")


def reward_options(script_args: GleamGRPOArguments,
                   weights: dict[bool, float] | None = None) -> RewardOptions:
    """The rewards' options as a recipe sets them (``weights``: the class weights, when ``class_balance``)."""
    return RewardOptions(no_verdict_penalty=script_args.no_verdict_penalty,
                         format_min_chars=script_args.format_min_chars, format_max_chars=script_args.format_max_chars,
                         length_max_chars=script_args.length_max_chars,
                         length_zone_chars=script_args.length_zone_chars,
                         repetition_ngram=script_args.repetition_ngram,
                         repetition_tolerance=script_args.repetition_tolerance, class_weights=weights)


def grpo_training_data(script_args: GleamGRPOArguments, training_args: GRPOConfig, say: Any = print) -> GRPOData:
    """The train split as GRPO prompts; data without labels is refused (nothing to verify)."""
    if script_args.dataset_streaming:
        return train_stream(script_args, training_args, say,
                            lambda ds: build_grpo_dataset(ds, script_args.lang, script_args.task))
    try:
        data = train_samples(script_args, training_args, say)
    except GleamDataError as e:
        if e.problem.field == "label":
            raise GleamDataError.at(e.problem.file, e.problem.line, "label", e.problem.message
                                    + "; GRPO verifies verdicts against labels: nothing to verify without one") from None
        raise
    return build_grpo_dataset(data, script_args.lang, script_args.task)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def sft_parent(source: str) -> dict[str, Any] | None:
    """``{"run", "base", "adapter"}`` when ``source`` is a gleamx SFT output directory, else ``None``."""
    path = Path(source)
    if not path.is_dir():
        return None
    if (path / "adapter_config.json").is_file():
        base = _read_json(path / "adapter_config.json").get("base_model_name_or_path")
        if not base:
            raise GleamConfigError(f"model_name_or_path: {source} holds an adapter without base_model_name_or_path in "
                                   "adapter_config.json (cannot tell which base model it belongs to)")
        return {"run": str(path), "base": str(base), "adapter": True}
    if (path / "gleamx_args.yaml").is_file():  # a full fine-tune run: a model directory of its own
        from gleamx.parsing import read_yaml

        args = read_yaml(path / "gleamx_args.yaml", "run's arguments") or {}
        model = args.get("model") if isinstance(args, dict) else None
        base = model.get("model_name_or_path") if isinstance(model, dict) else None
        return {"run": str(path), "base": str(base or path), "adapter": False}
    return None


def _trainable_adapter(model: Any) -> Any:
    """A PEFT model loaded for inference made trainable again: its adapter tensors get gradients."""
    for cfg in model.peft_config.values():
        cfg.inference_mode = False
    for name, p in model.named_parameters():
        if "lora_" in name or "modules_to_save" in name:
            p.requires_grad_(True)
    return model.train()


def load_policy(script_args: GleamGRPOArguments, training_args: GRPOConfig, model_args: ModelConfig,
                parent: dict[str, Any] | None) -> tuple[Any, Any, Any]:
    """``(model, processor, peft_config or None)``: the base model (fresh LoRA with ``use_peft``), or an SFT run."""
    from gleamx.models import load_model_and_processor

    quant = run_quantization_config(model_args, training_args)
    load = dict(dtype=model_args.dtype or "auto", attn_implementation=model_args.attn_implementation,
                quantization_config=quant, trust_remote_code=training_args.trust_remote_code)
    if parent and parent["adapter"]:
        from gleamx.models.adapter import load_adapter, load_inference_processor

        # The SFT run's processor: the pixel budget and chat template the adapter was trained with.
        processor, _ = load_inference_processor(parent["base"], parent["run"], min_pixels=script_args.min_pixels,
                                                max_pixels=script_args.max_pixels, flag="model_name_or_path")
        model, _ = load_model_and_processor(parent["base"], with_processor=False, **load)
        model = load_adapter(model, parent["run"], flag="model_name_or_path")
        if model_args.use_peft:
            return _trainable_adapter(model), processor, None  # GRPO trains the SFT adapter further
        model = model.merge_and_unload()  # full fine-tune of base + SFT adapter
        apply_freezing(model, freeze_vision_tower=script_args.freeze_vision_tower,
                       freeze_merger=script_args.freeze_merger)
        return model, processor, None
    model, processor = load_model_and_processor(model_args.model_name_or_path, min_pixels=script_args.min_pixels,
                                                max_pixels=script_args.max_pixels, **load)
    apply_freezing(model, freeze_vision_tower=script_args.freeze_vision_tower, freeze_merger=script_args.freeze_merger)
    return model, processor, lora_config(model_args, script_args, model)


@dataclass
class BuiltGRPORun(BuiltRun):
    """A GRPO run's trainer, with its prompts and the SFT run it starts from (``None``: a base model)."""

    data: GRPOData | None = None
    parent: dict[str, Any] | None = None


def build_grpo_trainer(script_args: GleamGRPOArguments, training_args: GRPOConfig, model_args: ModelConfig,
                       say: Say = print, encoder_loader: Any = None) -> BuiltGRPORun:
    """Data, rewards, policy and ``GleamGRPOTrainer`` of a run, ready to train (no files written).

    ``encoder_loader`` (``() -> texts -> embeddings``) serves ``reference_similarity``; it is called on the first
    batch that needs it.
    """
    data = grpo_training_data(script_args, training_args, say)  # data first: bad input fails in seconds
    weights = class_weights(data.dataset["label"]) if script_args.class_balance else None
    options = reward_options(script_args, weights)
    rewards = build_rewards(script_args.reward_funcs, options, encoder_loader)
    parent = sft_parent(model_args.model_name_or_path)
    model, processor, peft_config = load_policy(script_args, training_args, model_args, parent)

    trainer = GleamGRPOTrainer(model=model, reward_funcs=rewards, args=training_args, train_dataset=data.dataset,
                               processing_class=processor, peft_config=peft_config,
                               vision_lr=script_args.vision_lr, merger_lr=script_args.merger_lr)
    float32_trainables(trainer, training_args, model_args, say)
    counts = trainable_counts(trainer.model)
    start = f"SFT run {parent['run']}" if parent else model_args.model_name_or_path
    read = (f"{len(data.dataset)} prompts ({data.n_positive} matching) from {data.n_samples} samples"
            if data.n_samples is not None else f"prompts streamed from {data.dataset.n_shards} shard(s)")
    say(f"{read}, "
        f"{training_args.num_generations} answers each; rewards: "
        + ", ".join(f"{n} x{w:g}" for n, w in zip(script_args.reward_funcs, training_args.reward_weights
                                                  or [1.0] * len(rewards)))
        + (f" (class weights yes {weights[True]:.2f}, no {weights[False]:.2f})" if weights else "")
        + f"; start: {start}; trainable parameters: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return BuiltGRPORun(trainer, processor, len(data.dataset) if data.n_samples is not None else None, data=data,
                        parent=parent)


def write_grpo_run_outputs(out: Path, built: BuiltGRPORun, script_args: GleamGRPOArguments,
                           training_args: GRPOConfig, model_args: ModelConfig) -> None:
    ref = out / "ref"
    if (ref / "adapter_config.json").is_file() and built.parent:
        # TRL's frozen KL reference (beta > 0 on an SFT adapter) is the SFT adapter itself, saved beside the
        # trained one by PEFT; the card names the SFT run, so the output holds only the trained adapter.
        import shutil

        shutil.rmtree(ref)
    from gleamx.train.outputs import write_grpo_outputs

    write_grpo_outputs(out, built.trainer, script_args, training_args, model_args, n_train=built.n_train,
                       parent=built.parent)


def grpo_run_warnings(log_history: list[dict[str, Any]], training_args: GRPOConfig) -> list[str]:
    return grpo_warnings(log_history, training_args.max_completion_length)


def grpo_next_command(out: Path, built: BuiltGRPORun, script_args: GleamGRPOArguments, model_args: ModelConfig) -> str:
    parent = built.parent
    if not model_args.use_peft:
        return eval_command(str(out), None, script_args)
    # The adapter sits on the SFT run's base (an adapter run) or on the SFT run itself (a full fine-tune run).
    base = (parent["base"] if parent["adapter"] else parent["run"]) if parent else model_args.model_name_or_path
    return eval_command(base, out, script_args)


def run_grpo(script_args: GleamGRPOArguments, training_args: GRPOConfig, model_args: ModelConfig, *,
             encoder_loader: Any = None, callbacks: Sequence[Any] = ()) -> Path:
    """Train and save; returns the output directory. ``callbacks`` (``TrainerCallback``) join the trainer's own."""
    kind = RunKind(name="GRPO", check=check_grpo, build=partial(build_grpo_trainer, encoder_loader=encoder_loader),
                   write_outputs=write_grpo_run_outputs, warnings=grpo_run_warnings, next_command=grpo_next_command,
                   final_keys=("loss", "reward", "reward_std"))
    return run_training(kind, script_args, training_args, model_args, callbacks)


__all__ = ["BuiltGRPORun", "GleamGRPOTrainer", "build_grpo_trainer", "check_grpo", "grpo_training_data", "load_policy", "run_grpo",
           "sft_parent"]
