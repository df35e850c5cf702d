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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from trl import ModelConfig, SFTConfig, SFTTrainer

from gleamx.data.load import load_samples
from gleamx.data.schema import samples_of
from gleamx.errors import GleamConfigError
from gleamx.train.arguments import GleamScriptArguments
from gleamx.train.assistant_mask import speed_up_assistant_masks
from gleamx.train.sft_data import build_sft_dataset
from gleamx.train.freeze import PartLearningRates, apply_freezing, trainable_counts
from gleamx.train.image_tokens import ImageTokenCounter
from gleamx.train.labelled_loss import (TOKEN_METRICS, TokenMetrics, fast_path_refusal, labelled_loss,
                                     logs_this_step, masked_logits_supported)
from gleamx.train.labelled_loss import vocab_size as loss_vocab_size
from gleamx.train.reload import SavedWeightsReload
from gleamx.train.peft_configs import check_quantisable, lora_config, run_quantization_config
from gleamx.train.learning_checks import loss_warnings
from gleamx.train.train_split import StreamResume, check_streaming, train_samples, train_stream
from gleamx.train.match_eval import MatchEval, broadcast_from_main, check_match_eval
from gleamx.train.run import BuiltRun, RunKind, Say, eval_command, eval_lang, float32_trainables, run_training


class GleamSFTTrainer(StreamResume, SavedWeightsReload, PartLearningRates, SFTTrainer):
    """``SFTTrainer`` with separate learning rates for the vision tower and the merger (:class:`PartLearningRates`),
    a streamed train set resumed where it stopped (:class:`StreamResume`), full-model checkpoints reloaded whole
    (:class:`SavedWeightsReload`), counting image tokens,
    and TRL's loss computed on the labelled positions only (:mod:`gleamx.train.labelled_loss`).

    ``match_eval``: each evaluation of the trainer's own eval split also scores greedy verdicts on a fixed
    held-out subset (:mod:`gleamx.train.match_eval`): ``eval_match_accuracy`` and the rest, for
    ``metric_for_best_model``.

    ``token_metrics``: when TRL's ``entropy`` / ``mean_token_accuracy`` are computed in training:
    ``"logging_steps"`` (default: the steps that log, so each logged value is that step's, not the mean
    since the last log), ``"every_step"`` (TRL's window mean) or ``"off"``. Evaluation always computes them.
    """

    def __init__(self, *args: Any, image_tokens: ImageTokenCounter | None = None,
                 token_metrics: TokenMetrics = "logging_steps", match_eval: MatchEval | None = None, **kwargs: Any):
        if token_metrics not in TOKEN_METRICS:
            raise GleamConfigError(f"token_metrics: expected one of {', '.join(TOKEN_METRICS)}, got {token_metrics!r}")
        self.image_tokens = image_tokens
        self.token_metrics = token_metrics
        self.match_eval = match_eval
        self._match_eval_now = False
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

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        # The match metrics describe the trainer's own split: not added when another dataset is passed in.
        self._match_eval_now = self.match_eval is not None and eval_dataset is None and metric_key_prefix == "eval"
        try:
            return super().evaluate(eval_dataset, ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        finally:
            self._match_eval_now = False

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval") -> Any:
        # Here, not in evaluate(): the metrics join eval_loss in the one log line, the on_evaluate callbacks and the
        # dict the best-checkpoint logic reads (compute_metrics sees logits, and cannot generate).
        output = super().evaluation_loop(dataloader, description, prediction_loss_only=prediction_loss_only,
                                         ignore_keys=ignore_keys, metric_key_prefix=metric_key_prefix)
        if self._match_eval_now:
            # The model stays in eval mode: TRL's log() picks train or eval metrics by model.training.
            match = broadcast_from_main(self.match_eval.metrics(self.model, self.processing_class))
            output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in match.items()})
        return output

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Added here, not in a callback's on_log: the Trainer files its log history before callbacks run.
        if self.image_tokens is not None and "loss" in logs:
            logs.update(self.image_tokens.stats())
        super().log(logs, start_time)


def _materialised(script_args: GleamScriptArguments, training_args: SFTConfig, say: Any) -> Any:
    return build_sft_dataset(train_samples(script_args, training_args, say), script_args.lang, script_args.task)


def _training_data(script_args: GleamScriptArguments, training_args: SFTConfig,
                   say: Any) -> tuple[Any, Any, MatchEval | None]:
    """``(SFTData of the train split, eval conversations or None, the verdicts to score at each evaluation or None)``,
    read as ``datasets`` objects end to end."""
    read = dict(format=script_args.dataset_format, columns=script_args.dataset_columns,
                skip_bad=script_args.skip_bad, allow_outside_paths=script_args.allow_outside_paths)
    if script_args.dataset_streaming:
        train = train_stream(script_args, training_args, say,
                             lambda ds: build_sft_dataset(ds, script_args.lang, script_args.task))
    else:
        train = _materialised(script_args, training_args, say)
    if train.n_without_language:
        say(f"{train.n_without_language} sample(s) have no {script_args.lang} explanation and are not used")
    eval_ds = match = None
    if training_args.eval_strategy != "no" and script_args.dataset_test_split and script_args.dataset_name:
        held_out = load_samples(script_args.dataset_name, split=script_args.dataset_test_split, **read).dataset
        eval_ds = build_sft_dataset(held_out, script_args.lang, script_args.task).dataset
        if script_args.eval_match_samples:
            # the first N, as gleamx eval --split SPLIT --limit N takes them; in gleamx eval's language for the run
            subset = held_out.select(range(min(script_args.eval_match_samples, len(held_out))))
            match = MatchEval(list(samples_of(subset)), eval_lang(script_args.lang), script_args.task,
                              script_args.eval_match_max_new_tokens, training_args.per_device_eval_batch_size)
    return train, eval_ds, match


def build_trainer(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig,
                  say: Say = print) -> BuiltRun:
    """Data, model, freezing and ``GleamSFTTrainer`` of a run, ready to train (no files written)."""
    from gleamx.models import load_model_and_processor, training_chat_template

    train, eval_ds, match = _training_data(script_args, training_args, say)  # data first: bad input fails in seconds

    quant = run_quantization_config(model_args, training_args)
    model, processor = load_model_and_processor(
        model_args.model_name_or_path, dtype=model_args.dtype or "auto", attn_implementation=model_args.attn_implementation,
        min_pixels=script_args.min_pixels, max_pixels=script_args.max_pixels, quantization_config=quant,
        trust_remote_code=training_args.trust_remote_code,
    )
    if quant is not None:
        check_quantisable(model)
    # assistant_only_loss: SFTTrainer swaps in TRL's {% generation %}-marked twin of the checkpoint's template;
    # asking TRL here first makes "it has none" one line, before the trainer is built.
    if training_args.assistant_only_loss and not training_args.chat_template_path:
        training_chat_template(processor)
    speed_up_assistant_masks(processor)
    apply_freezing(model, freeze_vision_tower=script_args.freeze_vision_tower, freeze_merger=script_args.freeze_merger)

    counter = ImageTokenCounter(getattr(model.config, "image_token_id", None))
    # Padding-free batches: the trainer class gains the packing collator and TRL's token count fix.
    from gleamx.train.packing import padding_free_trainer, resolve_padding_free

    padding_free = resolve_padding_free(script_args.padding_free_vl, model, training_args, say)
    trainer = (padding_free_trainer(GleamSFTTrainer) if padding_free else GleamSFTTrainer)(
        model=model, args=training_args, train_dataset=train.dataset, eval_dataset=eval_ds, processing_class=processor,
        peft_config=lora_config(model_args, script_args, model),
        vision_lr=script_args.vision_lr, merger_lr=script_args.merger_lr, image_tokens=counter, match_eval=match,
    )
    float32_trainables(trainer, training_args, model_args, say)
    counts = trainable_counts(trainer.model)
    read = (f"{len(train.dataset)} training conversations from {train.n_samples} samples"
            if train.n_samples is not None else f"training conversations streamed from {train.dataset.n_shards} shard(s)")
    say(f"{read}; trainable parameters: " + ", ".join(f"{k}={v:,}" for k, v in counts.items()))
    return BuiltRun(trainer, processor, len(train.dataset) if train.n_samples is not None else None)


def check_sft(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig) -> None:
    """What no SFT run can do without, in one line before any work."""
    if not model_args.model_name_or_path:
        raise GleamConfigError("recipe: model_name_or_path: missing (a model directory or Hub id)")
    if not script_args.dataset_name and not script_args.dataset_mixture:
        raise GleamConfigError("recipe: dataset_name: missing (a GLEAM-X file, directory or Hub dataset id; or "
                               "dataset_mixture)")
    check_match_eval(script_args, training_args)
    check_streaming(script_args, training_args)


def write_sft_outputs(out: Path, built: BuiltRun, script_args: GleamScriptArguments, training_args: SFTConfig,
                      model_args: ModelConfig) -> None:
    from gleamx.train.outputs import write_outputs

    write_outputs(out, built.trainer, script_args, training_args, model_args, n_train=built.n_train)


def sft_next_command(out: Path, built: BuiltRun, script_args: GleamScriptArguments, model_args: ModelConfig) -> str:
    if model_args.use_peft:
        return eval_command(model_args.model_name_or_path, out, script_args)
    return eval_command(str(out), None, script_args)


SFT = RunKind(name="SFT", check=check_sft, build=build_trainer, write_outputs=write_sft_outputs,
              warnings=lambda history, training_args: loss_warnings(history), next_command=sft_next_command)


def run_sft(script_args: GleamScriptArguments, training_args: SFTConfig, model_args: ModelConfig,
            callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train and save; returns the output directory. ``callbacks`` join the trainer's own."""
    return run_training(SFT, script_args, training_args, model_args, callbacks)
