"""Match accuracy at each SFT evaluation, so ``metric_for_best_model: match_accuracy`` keeps the checkpoint that
scores best on the number gleamx reports, not the one with the lowest eval loss.

At each evaluation the first ``eval_match_samples`` samples of ``dataset_test_split`` (the samples
``gleamx eval --split val --limit N`` takes) get greedy answers through gleamx-eval's own functions: the same
prompts, left-padded batch grid and decoding (:func:`gleamx.eval.generate.generate_answers`,
:func:`gleamx.eval.decoding.greedy_decoding`, the checkpoint's stop tokens) and the same verdict parser and
scoring (:func:`gleamx.eval.run.score`). ``eval_match_accuracy`` of a step therefore equals what ``gleamx eval``
reports for that step's checkpoint on those samples (``tests/test_sft_best_checkpoint.py`` checks it).

Several processes (DDP, ZeRO, FSDP): every rank generates the whole subset, in the same batches. Under ZeRO-3 and
FSDP generation is collective (every rank must run the same forward passes; transformers' ``synced_gpus`` covers
answers of different lengths), and the batch grid stays gleamx eval's. Rank 0's numbers are then broadcast, so every
rank's best-checkpoint bookkeeping agrees even where kernels differ in the last bit. The subset is small, so the
repeated work is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from gleamx.data.schema import GleamSample
from gleamx.errors import GleamConfigError

# metric (without transformers' "eval_" prefix) -> key in gleamx eval's results
MATCH_METRICS: dict[str, str] = {
    "match_accuracy": "accuracy",
    "match_accuracy_positive": "accuracy_positive",
    "match_accuracy_negative": "accuracy_negative",
    "match_f1": "f1",
    "match_invalid_rate": "invalid_rate",
}


def eval_max_new_tokens_default() -> int:
    """``gleamx eval``'s ``--max-new-tokens`` default, so both score the same answers unless told otherwise."""
    from gleamx.eval.config import EvalConfig

    return next(f.default for f in fields(EvalConfig) if f.name == "max_new_tokens")


@dataclass
class MatchEval:
    """Greedy verdicts on fixed held-out ``samples`` and their match metrics (``match_accuracy``, ...)."""

    samples: list[GleamSample]
    lang: str
    task: str
    max_new_tokens: int
    batch_size: int

    def metrics(self, model: Any, processor: Any) -> dict[str, float]:
        """Generate, parse and score as ``gleamx eval`` does; ``model`` (PEFT-wrapped or not) is left in the
        train/eval mode it came in."""
        from gleamx.eval.decoding import greedy_decoding, hf_generation_config, stop_token_ids
        from gleamx.eval.generate import generate_answers
        from gleamx.eval.run import score

        tokenizer = processor.tokenizer
        # gleamx eval's decoding: greedy, every field explicit, the checkpoint's stop tokens (what it reads from
        # the saved generation_config.json is this model's generation_config)
        gen = hf_generation_config(
            greedy_decoding(self.max_new_tokens), pad_token_id=tokenizer.pad_token_id,
            stop_ids=stop_token_ids(getattr(model.generation_config, "eos_token_id", None), tokenizer))
        was_training = model.training
        model.eval()
        try:
            answers = generate_answers(model, processor, self.samples, self.lang, self.task,
                                       batch_size=self.batch_size, generation_config=gen)
        finally:
            model.train(was_training)
        results = score(self.samples, {s.id: {"prediction": a} for s, a in zip(self.samples, answers)}, bootstrap=0)
        # None (no positives, say) is left out: transformers logs numbers only
        return {name: float(results[key]) for name, key in MATCH_METRICS.items() if results[key] is not None}


def broadcast_from_main(metrics: dict[str, float]) -> dict[str, float]:
    """Rank 0's ``metrics`` on every rank (a no-op in one process)."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([metrics], from_process=0)[0]


def check_match_eval(script_args: Any, training_args: Any) -> None:
    """``eval_match_samples`` and a ``match_*`` ``metric_for_best_model`` only where they can be scored, one line."""
    n = script_args.eval_match_samples
    metric = training_args.metric_for_best_model or ""
    name = metric.removeprefix("eval_")
    if name.startswith("match_"):
        if name not in MATCH_METRICS:
            raise GleamConfigError(f"recipe: metric_for_best_model: expected one of {', '.join(MATCH_METRICS)} "
                                   f"(or a loss), got {metric!r}")
        if not n:
            raise GleamConfigError(
                f"recipe: metric_for_best_model: {metric} is scored by generating verdicts at each evaluation, and "
                "eval_match_samples is 0; set eval_match_samples: N (held-out samples to score, e.g. 64)")
        if name == "match_invalid_rate" and training_args.greater_is_better:
            raise GleamConfigError("recipe: metric_for_best_model: match_invalid_rate is better when lower; "
                                   "set greater_is_better: false")
    if n and training_args.eval_strategy == "no":
        raise GleamConfigError("recipe: eval_match_samples: scores verdicts at each evaluation, and eval_strategy is "
                               "no; set eval_strategy: steps (and eval_steps), or eval_match_samples: 0")
    if n and not script_args.dataset_test_split:
        raise GleamConfigError("recipe: eval_match_samples: needs dataset_test_split (the held-out split to score, "
                               "e.g. val)")


__all__ = ["MATCH_METRICS", "MatchEval", "broadcast_from_main", "check_match_eval", "eval_max_new_tokens_default"]
