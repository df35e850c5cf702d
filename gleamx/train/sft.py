"""One SFT run: data -> TRL vision dataset -> model (+LoRA/QLoRA) -> SFTTrainer -> adapter, card, plot.

Loss is on the assistant answer only: TRL 1.16's vision collator masks every
token outside the chat template's ``{% generation %}`` block when
``assistant_only_loss=True`` (transformers >= 5.18 shifts that mask past the
expanded image tokens). TRL's Qwen-VL training templates (tiny models ship one;
SFTTrainer swaps one in for a real checkpoint) put the markers around the
answer, its ``<|im_end|>`` and the newline after it, so images, system and user
tokens get label -100 and the end token is learned.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from trl import ModelConfig, SFTConfig, SFTTrainer

from gleamx.checks import check_at_least, check_int, check_positive
from gleamx.console import console
from gleamx.data.load import load_samples
from gleamx.errors import GleamConfigError, GleamInterrupted, GleamModelError
from gleamx.train.args import LLM_LORA_TARGETS, VISION_LORA_TARGETS, GleamScriptArguments
from gleamx.train.assistant_mask import speed_up_assistant_masks
from gleamx.train.image_tokens import ImageTokenCounter
from gleamx.train.dataset import build_sft_dataset
from gleamx.train.freeze import apply_freezing, merger_module_names, param_groups, trainable_counts, upcast_trainable
from gleamx.train.interrupt import SaveOnInterrupt
from gleamx.train.loss_path import (TOKEN_METRICS, TokenMetrics, fast_path_refusal, labelled_loss,
                                     logs_this_step, masked_logits_supported)
from gleamx.train.loss_path import vocab_size as loss_vocab_size
from gleamx.train.preflight import preflight

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


class GleamSFTTrainer(SFTTrainer):
    """``SFTTrainer`` with separate learning rates for the vision tower and the merger, counting image tokens,
    and TRL's loss computed on the labelled positions only (:mod:`gleamx.train.loss_path`).

    ``token_metrics``: when TRL's ``entropy`` / ``mean_token_accuracy`` are computed in training:
    ``"logging_steps"`` (default: the steps that log, so each logged value is that step's, not the mean
    since the last log), ``"every_step"`` (TRL's window mean) or ``"off"``. Evaluation always computes them.
    """

    def __init__(self, *args: Any, vision_lr: float | None = None, merger_lr: float | None = None,
                 image_tokens: ImageTokenCounter | None = None, token_metrics: TokenMetrics = "logging_steps",
                 **kwargs: Any):
        if token_metrics not in TOKEN_METRICS:
            raise GleamConfigError(f"token_metrics: expected one of {', '.join(TOKEN_METRICS)}, got {token_metrics!r}")
        self.vision_lr, self.merger_lr, self.image_tokens = vision_lr, merger_lr, image_tokens
        self.token_metrics = token_metrics
        super().__init__(*args, **kwargs)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model  # under PEFT
        self._gleam_masked_logits = masked_logits_supported(base)
        self._gleam_vocab_size = loss_vocab_size(base)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        # TRL's own path whenever the fast one does not compute the very same loss (or would hold too many logits).
        if fast_path_refusal(self, inputs, return_outputs) is None:
            metrics = not self.model.training or self.token_metrics == "every_step" or (
                self.token_metrics == "logging_steps" and logs_this_step(self.args, self.state))
            loss = labelled_loss(self, model, inputs, num_items_in_batch, metrics=metrics)
            if loss is not None:
                return loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001
        if self.image_tokens is not None and "input_ids" in inputs:
            self.image_tokens.update(inputs["input_ids"])
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Added here, not in a callback's on_log: the Trainer files its log history before callbacks run.
        if self.image_tokens is not None and "loss" in logs:
            logs.update(self.image_tokens.stats())
        super().log(logs, start_time)

    def create_optimizer(self, model=None):  # noqa: ANN001
        if self.optimizer is None and (self.vision_lr or self.merger_lr):
            opt_model = self.model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            no_decay = set(self.get_decay_parameter_names(opt_model))
            no_decay = {n for n, _ in opt_model.named_parameters()} - no_decay
            groups = param_groups(opt_model, self.args.learning_rate, self.args.weight_decay,
                                  vision_lr=self.vision_lr, merger_lr=self.merger_lr, no_decay=no_decay)
            kwargs.pop("lr", None)
            self.optimizer = cls(groups, **kwargs)
            return self.optimizer
        return super().create_optimizer() if model is None else super().create_optimizer(model)


def _result_fields(d: dict) -> dict:
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


def _run_signature(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> dict:
    from dataclasses import fields

    training = {f.name: getattr(training_args, f.name) for f in fields(training_args) if f.init}
    return {"script": _result_fields(asdict(script_args)), "model": _result_fields(asdict(model_args)),
            "training": _result_fields(training)}


def check_numbers(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
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


def check_output_dir(out: Path, signature: dict, *, overwrite: bool, resuming: bool) -> None:
    """Refuse, before any work, an output dir that holds a different run."""
    run_file = out / RUN_FILE
    if overwrite:
        return
    if not run_file.is_file():
        # Resuming a copied checkpoint into a fresh dir is fine; anything else is somebody's files.
        foreign = sorted(p.name for p in out.iterdir() if not (resuming and p.name.startswith("checkpoint-"))) \
            if out.is_dir() else []
        if foreign:
            first = foreign[0]
            raise GleamConfigError(
                f"{out}: holds files that are not a gleamx run (e.g. {first}); training would overwrite them: "
                "use another output_dir or set overwrite_output_dir: true")
        return
    old = json.loads(run_file.read_text(encoding="utf-8")).get("signature")
    if old != signature:
        changed = sorted(
            f"{part}.{k}" for part in signature for k in set(signature[part]) | set((old or {}).get(part, {}))
            if signature[part].get(k) != (old or {}).get(part, {}).get(k)
        )
        raise GleamConfigError(
            f"{out}: holds a different run (changed: {', '.join(changed[:5]) or 'unknown'}); "
            "use another output_dir or set overwrite_output_dir: true"
        )
    if not resuming and any(out.glob("checkpoint-*")):
        raise GleamConfigError(
            f"{out}: holds checkpoints of this run; pass --resume_from_checkpoint true to continue "
            "or set overwrite_output_dir: true to start over"
        )


def check_zero3_save(training_args: SFTConfig, model_args: ModelConfig) -> None:
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


def lora_config(model_args: ModelConfig, script_args: GleamScriptArguments, model: Any):
    """TRL's ``get_peft_config`` (every LoRA option of ``ModelConfig``, ``lora_target_parameters`` included), with
    gleamx's defaults on top: the language model's linear layers as targets (the vision tower's too with
    ``lora_vision``) when the recipe names none, and the merger trained in full unless ``freeze_merger``."""
    from dataclasses import replace

    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config is None:
        return None
    if model_args.lora_target_modules:
        targets: Any = model_args.lora_target_modules
    else:
        targets = LLM_LORA_TARGETS if not script_args.lora_vision else f"(?:{LLM_LORA_TARGETS})|(?:{VISION_LORA_TARGETS})"
    to_save = list(model_args.lora_modules_to_save or [])
    if not script_args.freeze_merger:
        to_save += [m for m in merger_module_names(model) if m not in to_save]
    return replace(config, target_modules=targets, modules_to_save=to_save or None)


def quantization_config(model_args: ModelConfig):
    """TRL's ``get_quantization_config`` (bitsandbytes 4-bit or 8-bit, ``bnb_4bit_quant_storage`` included), with
    the vision tower and the LM head left unquantised and a compute dtype that ``dtype: auto`` cannot break."""
    if not (model_args.load_in_4bit or model_args.load_in_8bit):
        return None
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise GleamConfigError("recipe: load_in_4bit/load_in_8bit need bitsandbytes: pip install 'gleamx[quant]'") from None
    import copy

    from trl import get_quantization_config

    # TRL computes in the weights' dtype; "auto" or unset means bf16 here (float32 stays float32).
    resolved = copy.copy(model_args)
    resolved.dtype = "bfloat16" if model_args.dtype in ("bfloat16", None, "auto") else "float32"
    config = get_quantization_config(resolved)
    # Full module prefixes: bitsandbytes matches llm_int8_skip_modules against qualified names.
    config.llm_int8_skip_modules = ["lm_head", "model.visual"]
    return config


def _check_quantisable(model: Any) -> None:
    """bitsandbytes 4-bit kernels need linear widths >= 64 (its block size); fail here, not in a kernel."""
    import torch.nn as nn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and "visual" not in name and not name.endswith("lm_head"):
            if min(mod.in_features, mod.out_features) < 64:
                raise GleamModelError(
                    f"model: {name} is {mod.in_features}x{mod.out_features}; 4-bit quantisation needs linear layers "
                    ">= 64 wide (bitsandbytes block size)"
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


def _training_data(script_args: GleamScriptArguments, training_args: SFTConfig, say: Any) -> tuple[Any, Any]:
    """``(SFTData of the train split, eval conversations or None)``, read as ``datasets`` objects end to end."""
    read = dict(format=script_args.dataset_format, columns=script_args.dataset_columns,
                skip_bad=script_args.skip_bad, allow_outside_paths=script_args.allow_outside_paths)
    loaded = load_samples(script_args.dataset_name, split=script_args.dataset_train_split, **read)
    if loaded.n_bad:
        say(f"skipped {loaded.n_bad} bad record(s) (skip_bad); first: {loaded.problems[0]}")
    data = loaded.dataset  # memory stays flat in the number of samples
    if script_args.max_train_samples:
        data = data.select(range(min(script_args.max_train_samples, len(data))))
    train = build_sft_dataset(data, script_args.lang, script_args.task)
    if train.n_without_language:
        say(f"{train.n_without_language} sample(s) have no {script_args.lang} explanation and are not used")
    eval_ds = None
    if training_args.eval_strategy != "no" and script_args.dataset_test_split:
        held_out = load_samples(script_args.dataset_name, split=script_args.dataset_test_split, **read).dataset
        eval_ds = build_sft_dataset(held_out, script_args.lang, script_args.task).dataset
    return train, eval_ds


def _float32_trainables(trainer: Any, training_args: SFTConfig, model_args: ModelConfig, say: Any) -> None:
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


def build_trainer(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig,
                  say: Any = print) -> tuple[GleamSFTTrainer, Any, int, bool]:
    """Data, model, freezing and ``GleamSFTTrainer`` of a run, ready to train (no files written).

    Returns ``(trainer, processor, number of training conversations, whether to push at the end)``.
    """
    from gleamx.models import load_model_and_processor, training_chat_template

    train, eval_ds = _training_data(script_args, training_args, say)  # data first: bad input fails in seconds

    quant = quantization_config(model_args)
    if quant is not None and not training_args.bf16:
        # TRL casts QLoRA's trainable weights to bfloat16; without bf16 autocast the first matmul fails deep in torch.
        raise GleamConfigError("recipe: load_in_4bit/load_in_8bit (QLoRA) train adapters in bfloat16: set bf16: true")
    model, processor = load_model_and_processor(
        model_args.model_name_or_path, dtype=model_args.dtype or "auto", attn_implementation=model_args.attn_implementation,
        min_pixels=script_args.min_pixels, max_pixels=script_args.max_pixels, quantization_config=quant,
        trust_remote_code=training_args.trust_remote_code,
    )
    if quant is not None:
        _check_quantisable(model)
    # assistant_only_loss: SFTTrainer swaps in TRL's {% generation %}-marked twin of the checkpoint's template;
    # asking TRL here first makes "it has none" one line, before the trainer is built.
    if training_args.assistant_only_loss and not training_args.chat_template_path:
        training_chat_template(processor)
    speed_up_assistant_masks(processor)
    apply_freezing(model, freeze_vision_tower=script_args.freeze_vision_tower, freeze_merger=script_args.freeze_merger)

    # gleamx pushes once at the end (adapter + card); the Trainer's own push would open a Hub repo at start-up.
    push, training_args.push_to_hub = training_args.push_to_hub, False
    counter = ImageTokenCounter(getattr(model.config, "image_token_id", None))
    # Padding-free batches: the trainer class gains the packing collator and TRL's token count fix.
    from gleamx.train.packing import padding_free_trainer, resolve_padding_free

    padding_free = resolve_padding_free(script_args.padding_free_vl, model, training_args, say)
    trainer = (padding_free_trainer(GleamSFTTrainer) if padding_free else GleamSFTTrainer)(
        model=model, args=training_args, train_dataset=train.dataset, eval_dataset=eval_ds, processing_class=processor,
        peft_config=lora_config(model_args, script_args, model),
        vision_lr=script_args.vision_lr, merger_lr=script_args.merger_lr, image_tokens=counter,
    )
    _float32_trainables(trainer, training_args, model_args, say)
    counts = trainable_counts(trainer.model)
    say(f"{len(train.dataset)} training conversations from {train.n_samples} samples; trainable parameters: "
                  + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return trainer, processor, len(train.dataset), push



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
    trainer.save_model(str(out))
    return writer


def run_sft(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> Path:
    """Train and save; returns the output directory."""
    if not model_args.model_name_or_path:
        raise GleamConfigError("recipe: model_name_or_path: missing (a model directory or Hub id)")
    if not script_args.dataset_name:
        raise GleamConfigError("recipe: dataset_name: missing (a GLEAM-X file, directory or Hub dataset id)")
    out = Path(training_args.output_dir)
    # One console line per run, not one per rank.
    say = (lambda msg: console.print(msg, markup=False)) if training_args.process_index == 0 else (lambda *a, **k: None)
    check_numbers(script_args, training_args, model_args)
    signature = _run_signature(script_args, training_args, model_args)
    resume = resolve_resume(training_args.resume_from_checkpoint, out)
    check_output_dir(out, signature, overwrite=script_args.overwrite_output_dir, resuming=resume is not None)
    check_zero3_save(training_args, model_args)
    preflight(training_args, model_args, say)

    trainer, processor, n_train, push = build_trainer(script_args, training_args, model_args, say)

    writer = train_and_save(trainer, out, signature, resume)
    if writer:
        processor.save_pretrained(str(out))
        from gleamx.train.outputs import write_outputs

        write_outputs(out, trainer, script_args, training_args, model_args, n_train=n_train)
    # Every rank leaves together and tears the process group down itself: a rank that exits while its peers
    # still write can abort in the collective backend's thread teardown ("terminate called without an active
    # exception", SIGABRT) and fail a run whose model is already saved.
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    if writer and push:
        from gleamx.hub.push import push_output_dir

        push_output_dir(out, repo_id=training_args.hub_model_id or out.name, private=bool(training_args.hub_private_repo))
    return out
