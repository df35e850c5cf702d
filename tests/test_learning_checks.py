"""A run that cannot learn says so: the warnings read from a log history, and a finished run's last lines."""

from __future__ import annotations

from pathlib import Path

from gleamx.train.learning_checks import grpo_warnings, learning_warnings, loss_warnings
from gleamx.train.summary import RunSummary, last_logged


def _grpo_log(zero_std: float, clipped: float, steps: int = 4) -> list[dict]:
    return [{"step": s, "loss": 0.0, "frac_reward_zero_std": zero_std, "completions/clipped_ratio": clipped}
            for s in range(1, steps + 1)] + [{"step": steps, "train_runtime": 1.0, "train_loss": 0.0}]


def test_grpo_groups_without_reward_spread_are_named_with_what_to_change():
    (warning,) = grpo_warnings(_grpo_log(zero_std=1.0, clipped=0.2))
    assert warning.startswith("GRPO learned little: in 100% of groups every answer got the same reward")
    assert "temperature or num_generations" in warning
    assert grpo_warnings(_grpo_log(zero_std=0.25, clipped=0.2)) == []  # most groups had a spread: no warning


def test_grpo_answers_all_clipped_are_named_with_the_limit():
    warnings = grpo_warnings(_grpo_log(zero_std=0.0, clipped=1.0), max_completion_length=12)
    assert warnings == ["100% of answers were cut at max_completion_length (12 tokens) before they ended; raise "
                        "max_completion_length"]
    assert grpo_warnings(_grpo_log(zero_std=0.0, clipped=0.9)) == []  # a tenth of the answers ended: no warning


def test_a_loss_that_does_not_move_is_a_warning_and_one_that_falls_is_not():
    flat = [{"step": s, "loss": 2.5, "grad_norm": 0.3} for s in (1, 2, 3)]
    (warning,) = loss_warnings(flat)
    assert warning.startswith("the loss did not move (first 2.5000, last 2.5000)")
    zero_grads = [{"step": 1, "loss": 2.5, "grad_norm": 0.0}, {"step": 2, "loss": 2.4, "grad_norm": 0.0}]
    assert loss_warnings(zero_grads)  # no gradient reached the weights, whatever the loss did
    falling = [{"step": 1, "loss": 2.5, "grad_norm": 0.3}, {"step": 2, "loss": 1.9, "grad_norm": 0.2}]
    assert loss_warnings(falling) == [] and loss_warnings(falling[:1]) == []  # one point says nothing
    assert learning_warnings(flat, grpo=False) == loss_warnings(flat)


def test_run_summary_lines_name_output_steps_numbers_warnings_and_next_command():
    history = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0, "reward": 0.5}, {"step": 2, "train_runtime": 9}]
    assert last_logged(history, "loss") == 2.0 and last_logged(history, "kl") is None
    summary = RunSummary("GRPO", Path("out/run"), 2, {"loss": 2.0, "reward": 0.5, "kl": None}, ["it did not learn"],
                         "gleamx eval --model m --adapter out/run")
    assert summary.summary_lines() == [f"GRPO run saved to {Path('out/run')} after 2 step(s); final loss 2.0000, "
                                       "reward 0.5000", "warning: it did not learn",
                                       "next: gleamx eval --model m --adapter out/run"]
