"""The SFT loss on the labelled positions only, with TRL's token metrics on logging steps only.

TRL 1.16's ``SFTTrainer.compute_loss`` runs every step through its fused LM head
(``trl.trainer.utils.add_fused_lm_head``): away from Triton (CPU) it projects *every* position,
labelled or not, in 32,768-wide vocabulary tiles; it folds each tile into log-probabilities,
entropy and a top-1 flag (several passes over every tile), recomputes every tile in the backward,
and calls ``.item()`` on the metrics each step. With gleamx's assistant-only loss a handful of
positions per conversation carry a label, so almost all of that work is thrown away.

Here the model's own forward projects only the positions whose next token is labelled
(transformers' ``logits_to_keep`` with a boolean mask gives ``(n_labelled, vocab)`` logits), the
loss is one cross-entropy over them, and entropy / top-1 accuracy are computed from those same
logits only when the step will be logged. The loss is TRL's: the summed negative log-likelihood of
the labelled next tokens over ``num_items_in_batch`` (or their count). Anything this path does not
cover (:func:`fast_path_refusal` names it) goes to TRL's own code.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
import torch.nn.functional as F

TokenMetrics = Literal["logging_steps", "every_step", "off"]
TOKEN_METRICS: tuple[str, ...] = ("logging_steps", "every_step", "off")

# Most (labelled positions x vocabulary) logits the fast path materialises at once: TRL's own tile buffer
# (4,096 tokens x 32,768 vocabulary entries), so its peak memory stays within a small multiple of TRL's.
# Larger micro-batches (long explanations at a 152k vocabulary) go to TRL's chunked head, built for them.
MAX_LOGITS = 4096 * 32768
# Eager devices, where a data-dependent number of positions costs nothing; XLA-style compilers would retrace.
_EAGER_DEVICES = ("cpu", "cuda", "xpu", "mps")


def masked_logits_supported(model: Any) -> bool:
    """Whether ``model``'s class forward slices its hidden states with transformers' ``slice_logits_to_keep``,
    the helper that turns a boolean ``(batch, seq)`` ``logits_to_keep`` into ``(n_true, vocab)`` logits."""
    forward = getattr(type(model), "forward", None)
    if forward is None:
        return False
    code = getattr(inspect.unwrap(forward), "__code__", None)  # under transformers' output decorators
    return code is not None and "slice_logits_to_keep" in code.co_names


def next_token_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(keep, targets)``: ``keep[b, t]`` marks positions whose next token is labelled, ``targets`` those tokens
    in ``keep``'s row-major order (the order ``hidden[keep]`` takes them)."""
    shifted = F.pad(labels[:, 1:], (0, 1), value=-100)  # position t predicts labels[:, t + 1]
    keep = shifted != -100
    return keep, shifted[keep]


def logs_this_step(args: Any, state: Any) -> bool:
    """Whether the optimizer step now being computed ends in a log line (``DefaultFlowCallback``'s rule, one step
    ahead, as ``global_step`` is only incremented after the step). ``epoch`` logging counts as every step (its
    last step is not known here), ``no`` as the last step only (the end-of-training summary)."""
    strategy = str(getattr(args.logging_strategy, "value", args.logging_strategy))
    step = state.global_step + 1
    if strategy == "no":
        return state.max_steps > 0 and step >= state.max_steps
    if strategy != "steps":
        return True
    every = state.logging_steps or args.logging_steps
    return (step % every == 0 if every else False) or (args.logging_first_step and step == 1) \
        or (state.max_steps > 0 and step >= state.max_steps)  # the end-of-training summary log


def fast_path_refusal(trainer: Any, inputs: dict[str, Any], return_outputs: bool) -> str | None:
    """Why this call must go through TRL's own ``compute_loss`` (``None``: the fast path computes the same loss)."""
    if return_outputs:
        return "the caller wants the model outputs (logits)"
    if trainer.compute_loss_func is not None or trainer.label_smoother is not None:
        return "compute_loss_func / label smoothing need the full logits"
    if trainer.args.loss_type != "nll" or trainer.aux_loss_enabled:
        return f"loss_type {trainer.args.loss_type} / MoE aux loss"
    if "labels" not in inputs or "shift_labels" in inputs:
        return "no labels, or pre-shifted labels (context/sequence parallelism)"
    pc = getattr(trainer.accelerator, "parallelism_config", None)  # accelerate < 1.10 has none
    if pc is not None and (getattr(pc, "sp_enabled", False) or getattr(pc, "cp_enabled", False)):
        return "context / sequence parallelism"
    if inputs["labels"].device.type not in _EAGER_DEVICES:
        return f"device {inputs['labels'].device.type} compiles per shape"
    if not getattr(trainer, "_gleam_masked_logits", False):
        return "the model's forward does not take a boolean logits_to_keep"
    return None


def labelled_loss(trainer: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any,
                  *, metrics: bool) -> torch.Tensor | None:
    """TRL's SFT loss from logits of the labelled positions only; ``None`` when they would exceed
    :data:`MAX_LOGITS` (the caller then uses TRL's chunked head). Appends TRL's ``entropy`` and
    ``mean_token_accuracy`` to ``trainer._metrics`` when ``metrics``; ``num_tokens`` always."""
    keep, targets = next_token_targets(inputs["labels"])
    vocab = trainer._gleam_vocab_size
    if targets.numel() * vocab > MAX_LOGITS:
        return None
    mode = "train" if trainer.model.training else "eval"
    inputs["use_cache"] = False  # as TRL: no cache, which gradient checkpointing would warn about
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**model_inputs, logits_to_keep=keep).logits
    if logits.shape != (targets.numel(), vocab):
        raise RuntimeError(f"gleamx loss path: expected logits of shape ({targets.numel()}, {vocab}) for the "
                           f"labelled positions, got {tuple(logits.shape)}")
    n_items = targets.numel() if num_items_in_batch is None else num_items_in_batch
    # Summed in float32 like TRL's head; clamped so a batch without labels gives a differentiable zero, not 0/0.
    loss = F.cross_entropy(logits.float(), targets, reduction="sum") / torch.as_tensor(n_items).clamp(min=1)
    if trainer.args.average_tokens_across_devices and num_items_in_batch is not None:
        # num_items_in_batch counts every rank's tokens and DDP averages the gradients (as TRL does)
        loss = loss * (trainer.accelerator.num_processes // trainer.get_tp_size())

    if metrics:
        with torch.no_grad():
            log_p = logits.detach().float().log_softmax(-1)
            entropy_sum = -(log_p.exp() * log_p).sum()
            correct = (logits.detach().argmax(-1) == targets).sum()  # argmax takes the first maximum, like TRL
        gather = trainer.accelerator.gather_for_metrics
        n_valid = gather(torch.tensor(targets.numel(), device=targets.device)).sum()
        entropy_sum, correct = gather(entropy_sum).sum(), gather(correct).sum()
        valid = n_valid.item() > 0
        trainer._metrics[mode]["entropy"].append((entropy_sum / n_valid).item() if valid else 0.0)
        trainer._metrics[mode]["mean_token_accuracy"].append((correct / n_valid).item() if valid else 0.0)

    if mode == "train":
        trainer._total_train_tokens += count_tokens(trainer, inputs) // trainer._tp_size
    trainer._metrics[mode]["num_tokens"] = [trainer._total_train_tokens]
    return loss


def count_tokens(trainer: Any, inputs: dict[str, Any]) -> int:
    """Non-pad tokens of the batch over all processes: the attention mask's sum, or, for padding-free batches
    (no mask), the length of the packed row. mrope ``position_ids`` are ``(3 or 4, batch, seq)``: their first row
    is one position per token (TRL counts ``position_ids.size(1)``, which is the batch size for these)."""
    if "attention_mask" in inputs:
        local = inputs["attention_mask"].sum()
    elif "position_ids" in inputs:
        pid = inputs["position_ids"]
        pid = pid[0] if pid.ndim == 3 else pid
        local = torch.tensor(pid.numel(), device=pid.device)
    else:
        raise ValueError("Expected 'attention_mask' or 'position_ids' in inputs.")
    return int(trainer.accelerator.gather_for_metrics(local).sum().item())


def vocab_size(model: Any) -> int:
    """Rows of the output embedding (what the logits are wide), falling back to the text config's vocab."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    # out_features, not weight.shape: ZeRO-3 leaves an empty placeholder weight outside the forward
    if getattr(head, "out_features", None):
        return int(head.out_features)
    return int(model.config.get_text_config().vocab_size)
