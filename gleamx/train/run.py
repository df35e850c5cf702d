"""One training run, whichever trainer does the steps: the skeleton SFT and GRPO share.

:func:`run_training` owns what every run does the same way: the checks that fail in one line before any work, the
run's signature (what makes it the same run when resumed) and its output-dir check, ``resume_from_checkpoint``,
preflight, training with a resumable stop on SIGINT/SIGTERM, saving the weights and processor, and the push at the
end. A kind of run brings only a :class:`RunKind`: its own checks, a builder of its trainer and its own outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from trl import ModelConfig

from gleamx.checks import check_at_least, check_int, check_positive
from gleamx.console import console
from gleamx.errors import GleamConfigError, GleamInterrupted
from gleamx.outputs import OutputFolder, check_checkpoint_source, claim_folder
from gleamx.train.freeze import upcast_trainable
from gleamx.train.interrupt import SaveOnInterrupt
from gleamx.train.preflight import preflight
from gleamx.train.summary import RunSummary, kept_checkpoint, last_logged

Say = Callable[[str], None]

RUN_FILE = "gleamx_run.json"
# Fields that may differ between a run and its resumption without it being "another run": where and how
# often it logs, saves and evaluates, how it is launched and loads data. Every other field can change
# the trained weights, so it is part of the run's signature.
_RESUME_FREE = {"resume_from_checkpoint", "overwrite_output_dir", "push_to_hub", "hub_model_id", "logging_dir",
                "eval_results", "report_to", "output_dir", "run_name", "project", "disable_tqdm", "debug",
                "skip_memory_metrics", "do_train", "do_eval", "do_predict", "local_rank", "use_cpu", "deepspeed",
                "fsdp", "fsdp_config", "accelerator_config", "parallelism_config", "enable_jit_checkpoint",
                "torch_empty_cache_steps", "include_num_input_tokens_seen", "dataset_num_proc",
                "per_device_eval_batch_size", "prediction_loss_only", "load_best_model_at_end",
                "restore_callback_states_from_checkpoint", "gradient_checkpointing", "gradient_checkpointing_kwargs",
                "activation_checkpointing", "activation_checkpointing_kwargs", "torch_compile",
                "torch_compile_backend", "torch_compile_mode"}
_RESUME_FREE_PREFIXES = ("logging_", "log_", "save_", "eval_", "hub_", "trackio_", "dataloader_num_workers",
                         "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
                         "dataloader_multiprocessing_context", "ddp_", "bf16_full_eval", "fp16_full_eval",
                         "include_for_metrics", "batch_eval_metrics", "metric_for_best_model", "greater_is_better")


def result_fields(d: dict) -> dict:
    """The fields of ``d`` that can change the trained weights, as JSON values."""
    out = {}
    for k, v in d.items():
        if k in _RESUME_FREE or k.startswith(_RESUME_FREE_PREFIXES):  # hub_token among them: never written
            continue
        if isinstance(v, dict):
            v = json.dumps(v, sort_keys=True, default=str)
        elif not isinstance(v, (str, int, float, bool, type(None), list)):
            v = str(v)
        out[k] = v
    return out


def run_signature(script_args: Any, training_args: Any, model_args: ModelConfig) -> dict:
    training = {f.name: getattr(training_args, f.name) for f in fields(training_args) if f.init}
    return {"script": result_fields(asdict(script_args)), "model": result_fields(asdict(model_args)),
            "training": result_fields(training)}


def check_numbers(script_args: Any, training_args: Any, model_args: ModelConfig) -> None:
    """TRL's own fields that no run can use, refused in one line before any work (transformers would fail later,
    or not at all); gleamx's fields are checked by :class:`GleamScriptArguments` itself."""
    check_int("recipe: per_device_train_batch_size", training_args.per_device_train_batch_size, 1)
    check_int("recipe: gradient_accumulation_steps", training_args.gradient_accumulation_steps, 1)
    check_positive("recipe: learning_rate", training_args.learning_rate)
    if training_args.max_steps != -1:
        check_int("recipe: max_steps", training_args.max_steps, 1)
    check_positive("recipe: num_train_epochs", training_args.num_train_epochs)
    check_at_least("recipe: warmup_steps", training_args.warmup_steps, 0,
                   what="a number >= 0 (< 1: a fraction of all steps)")
    check_at_least("recipe: weight_decay", training_args.weight_decay, 0)
    check_at_least("recipe: max_grad_norm", training_args.max_grad_norm, 0, optional=True)
    if model_args.use_peft:
        check_int("recipe: lora_r", model_args.lora_r, 1)
    out = Path(training_args.output_dir)
    if out.exists() and not out.is_dir():
        raise GleamConfigError(f"recipe: output_dir: {out} is a file (expected a directory to write the run into)")


def recorded_signature(folder: Path) -> dict | None:
    """The run signature in ``folder``'s ``gleamx_run.json`` (how an older gleamx recorded a run), or ``None``."""
    try:
        signature = json.loads((folder / RUN_FILE).read_text(encoding="utf-8")).get("signature")
    except (OSError, ValueError, AttributeError):
        return None
    return signature if isinstance(signature, dict) else None


def claim_output_dir(out: Path, signature: dict, *, command: str, overwrite: bool, resume: str | None,
                     write: bool) -> OutputFolder:
    """Before any work, ``out`` under :mod:`gleamx.outputs`' rule: a folder of its own (user files are refused even
    with ``overwrite_output_dir``: the Trainer writes names of its choosing), another run (other settings) only
    with ``overwrite_output_dir``, which deletes that run first; a checkpoint copied in to resume from is adopted.
    A finished run's own folder with checkpoints needs ``--resume_from_checkpoint`` (or the overwrite)."""
    legacy = recorded_signature(out)  # a run an older gleamx wrote: its signature is in gleamx_run.json
    adopt = [Path(resume).name] if resume is not None and Path(resume).resolve().parent == out.resolve() else []
    folder = claim_folder(out, "output_dir", command=command, identity=signature, overwrite=overwrite, exclusive=True,
                          marker=RUN_FILE, legacy_identity=legacy, adopt=adopt, write=write,
                          overwrite_flag="overwrite_output_dir: true")
    if not overwrite and resume is None and any(out.glob("checkpoint-*")):
        raise GleamConfigError(
            f"{out}: holds checkpoints of this run; pass --resume_from_checkpoint true to continue "
            "or set overwrite_output_dir: true to start over"
        )
    return folder


def check_zero3_save(training_args: Any, model_args: ModelConfig) -> None:
    """A full fine-tune under ZeRO-3 must gather its sharded weights at save time.

    Without ``zero3_save_16bit_model: true`` (``stage3_gather_16bit_weights_on_model_save``) the
    Trainer writes no ``model.safetensors``, only DeepSpeed shards; refuse before any work. LoRA
    adapters are gathered by the Trainer either way.
    """
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if plugin is None or model_args.use_peft:
        return
    zero = plugin.deepspeed_config.get("zero_optimization", {})
    if int(zero.get("stage", 0) or 0) == 3 and zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
        raise GleamConfigError(
            "deepspeed: a full fine-tune under ZeRO-3 would save no model weights; set zero3_save_16bit_model: true "
            "in the accelerate config (stage3_gather_16bit_weights_on_model_save in a DeepSpeed JSON)"
        )


def resolve_resume(value: Any, output_dir: Path) -> str | None:
    """``resume_from_checkpoint`` as TRL/transformers document it: ``true`` means the last
    ``checkpoint-*`` in ``output_dir``, ``false`` (or unset) means start fresh, anything else is a path."""
    if value is None or value is False:
        return None
    text = str(value).strip()
    if text.lower() in ("", "false", "no", "0", "none"):
        return None
    if value is True or text.lower() in ("true", "yes", "1"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
        if last is None:
            raise GleamConfigError(f"resume_from_checkpoint: true, but {output_dir} holds no checkpoint-* to resume from")
        return last
    if not Path(text).is_dir():
        raise GleamConfigError(f"resume_from_checkpoint: {text} is not a directory (expected true, false or a checkpoint dir)")
    return text


def check_resume_not_finished(resume: str | None, max_steps: int) -> None:
    """A checkpoint already at ``max_steps`` has nothing left to train; transformers would resume it one optimizer
    step past the end (it checks the bound only after a step), silently changing a finished run's weights."""
    if resume is None or max_steps <= 0:
        return
    try:
        done = json.loads((Path(resume) / "trainer_state.json").read_text(encoding="utf-8")).get("global_step")
    except (OSError, ValueError, AttributeError):
        return  # not a Trainer checkpoint: the Trainer says so itself
    if isinstance(done, int) and done >= max_steps:
        raise GleamConfigError(
            f"resume_from_checkpoint: {resume} is at step {done}, and max_steps is {max_steps}: that run has finished "
            "training (its weights are in that checkpoint); raise --max_steps to train further")


def float32_trainables(trainer: Any, training_args: Any, model_args: ModelConfig, say: Any) -> None:
    """Outside DeepSpeed/FSDP (which keep float32 masters themselves) every trainable half-precision tensor
    trains in float32; pure half precision without autocast is refused (small updates would round away)."""
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        return
    if not (training_args.bf16 or training_args.fp16) and any(
            p.requires_grad and p.dtype in (torch.bfloat16, torch.float16) for p in trainer.model.parameters()):
        raise GleamConfigError(
            f"recipe: dtype {model_args.dtype} with bf16/fp16 false would train the merger or model in pure half "
            "precision (small updates round away); set bf16: true (mixed precision) or dtype: float32")
    n_up = upcast_trainable(trainer.model)
    if n_up:
        say(f"{n_up} trainable half-precision tensor(s) kept in float32 for the optimizer (bf16 would round "
            "small updates away); the frozen weights keep their dtype")


def train_and_save(trainer: Any, out: Path, signature: dict, resume: str | None) -> bool:
    """Record the run's signature, train (from ``resume``), stop with a resumable checkpoint on SIGINT/SIGTERM,
    and save the weights into ``out``; returns whether this process writes the run's other files.

    Multi-process runs (DDP, ZeRO): only the saving process writes files, so ranks never race on one path;
    ``save_model`` stays on every rank, since under ZeRO-3 it gathers the shards collectively.
    """
    writer = trainer.args.should_save
    out.mkdir(parents=True, exist_ok=True)
    if writer:
        (out / RUN_FILE).write_text(json.dumps({"signature": signature}, indent=2, default=str) + "\n", encoding="utf-8")
    interrupt = SaveOnInterrupt()
    trainer.add_callback(interrupt)
    trainer.train(resume_from_checkpoint=resume)
    if interrupt.stopped_at is not None:
        step = interrupt.stopped_at
        raise GleamInterrupted(
            f"interrupted at step {step}: checkpoint saved to {out / f'checkpoint-{step}'}; continue with the same "
            "command plus --resume_from_checkpoint true", interrupt.signum or 2)
    kept = kept_checkpoint(trainer)
    if writer and kept:  # which checkpoint's weights are saved below, and its score
        (out / RUN_FILE).write_text(json.dumps({"signature": signature, "kept_checkpoint": kept}, indent=2,
                                               default=str) + "\n", encoding="utf-8")
    trainer.save_model(str(out))
    return writer


@dataclass
class BuiltRun:
    """A run's trainer, ready to train, and what the skeleton saves and reports beside its weights."""

    trainer: Any
    processor: Any
    n_train: int | None  # training examples (conversations, prompts) the run saw; None: a stream


@dataclass(frozen=True)
class RunKind:
    """What one kind of run adds to the skeleton.

    ``check(script, training, model)``: its own one-line refusals (required fields first);
    ``build(script, training, model, say) -> BuiltRun``: data, model and trainer, no files written;
    ``write_outputs(out, built, script, training, model)``: its files beside the saved weights (card, plots, ...);
    ``warnings(log_history, training)``: whether it learned (:mod:`gleamx.train.learning_checks`);
    ``next_command(out, built, script, model)``: what to run on the result; ``final_keys``: the logged values
    its last line reports.
    """

    name: str
    check: Callable[[Any, Any, ModelConfig], None]
    build: Callable[[Any, Any, ModelConfig, Say], BuiltRun]
    write_outputs: Callable[[Path, BuiltRun, Any, Any, ModelConfig], None]
    warnings: Callable[[list[dict[str, Any]], Any], list[str]]
    next_command: Callable[[Path, BuiltRun, Any, ModelConfig], str]
    final_keys: tuple[str, ...] = ("loss",)


def eval_lang(run_lang: str) -> str:
    """The language gleamx eval scores a run in: its own, English for a bilingual (``both``) run."""
    return "zh" if run_lang == "zh" else "en"


def eval_command(model: str, adapter: Path | str | None, script_args: Any) -> str:
    """The ``gleamx eval`` line that scores a trained run on its data's test split."""
    lang = eval_lang(script_args.lang)
    adapter_part = f" --adapter {adapter}" if adapter else ""
    data = script_args.dataset_name or script_args.dataset_mixture[0]["path"]  # a mixture: its first source
    return (f"gleamx eval --model {model}{adapter_part} --data {data} --split test "
            f"--lang {lang} --task {script_args.task}")


def rank_zero_say(training_args: Any) -> Say:
    """One console line per run, not one per rank."""
    if training_args.process_index == 0:
        return lambda msg: console.print(msg, markup=False)
    return lambda *a, **k: None


def run_training(kind: RunKind, script_args: Any, training_args: Any, model_args: ModelConfig,
                 callbacks: Sequence[Any] = ()) -> Path:
    """Check, build, train, save, write the kind's outputs and push; returns the output directory. ``callbacks``
    (``transformers.TrainerCallback``) join the trainer's own, as ``Trainer(callbacks=...)`` would add them."""
    kind.check(script_args, training_args, model_args)
    check_numbers(script_args, training_args, model_args)
    out = Path(training_args.output_dir)
    say = rank_zero_say(training_args)
    signature = run_signature(script_args, training_args, model_args)
    resume = resolve_resume(training_args.resume_from_checkpoint, out)
    check_checkpoint_source(resume, out, signature, legacy_identity=recorded_signature)
    check_resume_not_finished(resume, training_args.max_steps)
    check_zero3_save(training_args, model_args)
    preflight(training_args, model_args, say)
    # claimed once every check passed: a refused run leaves no folder behind
    folder = claim_output_dir(out, signature, command=kind.name.lower(), overwrite=script_args.overwrite_output_dir,
                              resume=resume, write=training_args.process_index == 0)

    # gleamx pushes once at the end (weights + card); the Trainer's own push would open a Hub repo at start-up.
    push, training_args.push_to_hub = training_args.push_to_hub, False
    built = kind.build(script_args, training_args, model_args, say)
    for callback in callbacks:
        built.trainer.add_callback(callback)

    writer = train_and_save(built.trainer, out, signature, resume)
    if writer:
        built.processor.save_pretrained(str(out))
        kind.write_outputs(out, built, script_args, training_args, model_args)
        history = built.trainer.state.log_history
        summary = RunSummary(kind.name, out, built.trainer.state.global_step,
                             {k: last_logged(history, k) for k in kind.final_keys},
                             kind.warnings(history, training_args),
                             kind.next_command(out, built, script_args, model_args),
                             kept=kept_checkpoint(built.trainer))
        for line in summary.summary_lines():
            say(line)
        folder.done()
    # Every rank leaves together and tears the process group down itself: a rank that exits while its peers
    # still write can abort in the collective backend's thread teardown ("terminate called without an active
    # exception", SIGABRT) and fail a run whose model is already saved.
    built.trainer.accelerator.wait_for_everyone()
    built.trainer.accelerator.end_training()
    if writer and push:
        from gleamx.hub.push import push_output_dir

        push_output_dir(out, repo_id=training_args.hub_model_id or out.name, private=bool(training_args.hub_private_repo))
    return out
