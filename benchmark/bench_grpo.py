"""GRPO step cost on the tiny model: how much of a step is generation, reward computation and optimisation.

``run_grpo`` runs of ``recipes/tiny/grpo.yaml`` (fresh LoRA on the tiny random Qwen2.5-VL, 1 prompt x 4 answers
per step) on synthetic data, in two settings alternating A, B, A, B, A, B (``--repeats`` 3):

    A  label   the recipe as shipped: task label, rewards verdict + format, 12 completion tokens
    B  explain task explain, rewards verdict + format + consistency, 64 completion tokens

Inside ``trainer.train()`` a subclass of gleamx's trainer times TRL's ``_generate`` (prompt tokenisation + image
processing + ``model.generate``) and ``_calculate_rewards`` (every reward function); a callback times each whole
step (``on_step_begin`` -> ``on_step_end``). Optimisation and the rest = step - generation - rewards (log-probs,
loss, backward, optimizer, logging). The random model never stops early, so every answer is max length: the same
work each step. Each share is printed as the median over the runs with its min and max (benchmark/machine.py).

The random model writes no verdict, so in the runs ``consistency`` stops at "no verdict". The script therefore
also times every reward function on the synthetic reference answers (full en/zh explanations with a verdict line:
the most work each rule does) and compares that with a step's cost per answer.

    python benchmark/bench_grpo.py --quick     # 3 x 2 runs of 5 measured steps
    python benchmark/bench_grpo.py             # 3 x 2 runs of 15 measured steps

Figures go to ``benchmark/results/bench_grpo.json`` (not for ``--full-recipe``, which prints only).

``--full-recipe`` measures the same split on ``recipes/qwen2.5-vl-3b/grpo_lora.yaml`` as shipped (bf16, flash
attention, 8 answers a prompt, 384 completion tokens, a fresh LoRA r 64) on a random-weight Qwen2.5-VL-3B built
from the real checkpoint's files: that is the GPU measurement (``benchmark/gpu/bench_grpo.sh``). The rule rewards
only (verdict, format, consistency): ``reference_similarity`` needs the eval's sentence encoder, loaded by the
recipe script. ``--full-recipe --cpu-twin`` runs the same path on the tiny real-file model on a CPU (plumbing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

import gleamx.train.grpo as grpo
from gleamx.data import load_samples
from gleamx.models import build_tiny_model
from gleamx.synth import synthesize
from machine import alternate, set_threads_and_describe, spread  # benchmark/machine.py
from results import Results  # benchmark/results.py

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "grpo.yaml"
SHARE_KEYS = {"gen": "generation", "rew": "reward", "opt": "optimisation"}  # recorded as <setting>.<key>_share
WARMUP = 2  # the first steps pay one-off costs (allocator, lazy imports)
SETTINGS = {
    "label": ["--task", "label", "--reward_funcs", "verdict", "format", "--reward_weights", "1", "0.5",
              "--max_completion_length", "12"],
    "explain": ["--task", "explain", "--reward_funcs", "verdict", "format", "consistency", "--reward_weights", "1",
                "0.5", "0.5", "--max_completion_length", "64"],
}


class Probe:
    def __init__(self) -> None:
        self.gen = self.rew = 0.0
        self.t0 = 0.0
        self.steps: list[tuple[float, float, float]] = []  # (step, generation, rewards) seconds


class StepTimer(TrainerCallback):
    def __init__(self, probe: Probe) -> None:
        self.probe = probe

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.probe.gen = self.probe.rew = 0.0
        self.probe.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        p = self.probe
        p.steps.append((time.perf_counter() - p.t0, p.gen, p.rew))


def probed_trainer(probe: Probe) -> type:
    class ProbedTrainer(grpo.GleamGRPOTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(StepTimer(probe))

        def _generate(self, prompts):  # noqa: ANN001
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            probe.gen += time.perf_counter() - t0
            return out

        def _calculate_rewards(self, *args: Any, **kwargs: Any):
            t0 = time.perf_counter()
            out = super()._calculate_rewards(*args, **kwargs)
            probe.rew += time.perf_counter() - t0
            return out

    return ProbedTrainer


FULL_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "qwen2.5-vl-3b" / "grpo_lora.yaml"
FULL_SETTING = ["--task", "explain", "--reward_funcs", "verdict", "format", "consistency", "--reward_weights", "1",
                "0.25", "0.5"]


def one_run(setting: str, root: Path, data: Path, model: Path, steps: int, r: int,
            recipe: Path = RECIPE, extra: tuple[str, ...] = ()) -> dict[str, float]:
    from trl import GRPOConfig, ModelConfig, TrlParser

    from gleamx.train.arguments import GleamGRPOArguments
    from gleamx.parsing import parse_recipe

    probe = Probe()
    original = grpo.GleamGRPOTrainer
    grpo.GleamGRPOTrainer = probed_trainer(probe)
    try:
        args = parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)), [
            "--config", str(recipe), "--model_name_or_path", str(model), "--dataset_name", str(data),
            "--output_dir", str(root / f"{setting}-{r}"), "--max_steps", str(steps + WARMUP), "--save_strategy", "no",
            "--logging_steps", "1", "--lang", "en", *SETTINGS[setting], *extra])
        grpo.run_grpo(*args)
    finally:
        grpo.GleamGRPOTrainer = original
    measured = probe.steps[WARMUP:]
    step = statistics.mean(s for s, _, _ in measured)
    gen = statistics.mean(g for _, g, _ in measured)
    rew = statistics.mean(w for _, _, w in measured)
    return {"step": step, "gen": gen, "rew": rew, "opt": step - gen - rew}


def reward_cost(data: Path, repeats: int) -> dict[str, list[float]]:
    """Microseconds per answer of each rule reward on the synthetic reference answers, ``repeats`` passes."""
    from gleamx.train.rewards import RewardOptions, build_rewards

    rows = [(text, lang, s.label) for s in load_samples(data).samples for lang, text in s.explanation.items()]
    completions = [[{"role": "assistant", "content": t}] for t, _, _ in rows]
    kw = {"label": [y for _, _, y in rows], "lang": [lg for _, lg, _ in rows], "task": ["explain"] * len(rows),
          "reference": [None] * len(rows)}
    out: dict[str, list[float]] = {}
    for reward in build_rewards(["verdict", "format", "consistency"], RewardOptions()):
        for _ in range(repeats):
            t0 = time.perf_counter()
            reward(completions, **kw)
            out.setdefault(reward.__name__, []).append(1e6 * (time.perf_counter() - t0) / len(rows))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5 measured steps a run instead of 15")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see README: shared cores)")
    ap.add_argument("--full-recipe", action="store_true",
                    help="recipes/qwen2.5-vl-3b/grpo_lora.yaml on a random full-size Qwen2.5-VL-3B (GPU)")
    ap.add_argument("--cpu-twin", action="store_true", help="with --full-recipe: the tiny real-file model on a CPU")
    ap.add_argument("--steps", type=int, default=None, help="measured steps a run (default 15, --quick 5)")
    args = ap.parse_args()
    steps = args.steps or (5 if args.quick else 15)
    set_threads_and_describe(args.threads)
    if args.full_recipe:
        return full_recipe(steps, args.repeats, args.cpu_twin)
    results = Results("bench_grpo", quick=args.quick, settings={"steps": steps, "warmup": WARMUP,
                                                                "repeats": args.repeats, "answers_per_step": 4})
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-grpo-") as tmp:
        root = Path(tmp)
        synthesize(root / "data", 120, seed=0, image_size=64)
        model = build_tiny_model("qwen2_5_vl", root / "model", seed=0)
        runs = alternate({s: (lambda r, s=s: one_run(s, root, root / "data", model, steps, r)) for s in SETTINGS},
                         args.repeats)
        cost = reward_cost(root / "data", args.repeats)
        n_answers = sum(len(s.explanation) for s in load_samples(root / "data").samples)

    print(f"\ntiny qwen2_5_vl, fresh LoRA (r 16), 1 prompt x 4 answers a step, 64 px synthetic images, lang en; "
          f"{steps} measured steps after {WARMUP} warm-up, {args.repeats} runs per setting, alternating")
    print("per-step means of each run; median over runs (min, max):")
    for s, rs in runs.items():
        print(f"\n{s}: {' '.join(SETTINGS[s][1:2])} task, rewards "
              f"{', '.join(SETTINGS[s][SETTINGS[s].index('--reward_funcs') + 1:SETTINGS[s].index('--reward_weights')])}, "
              f"{SETTINGS[s][-1]} completion tokens")
        print(f"  step                      {spread([x['step'] * 1000 for x in rs], '.1f', ' ms')}")
        results.add(f"{s}.step_ms", [x["step"] * 1000 for x in rs], unit="ms", fmt=".1f", label=f"{s}: step")
        for key, name in (("gen", "generation"), ("rew", "reward computation"), ("opt", "optimisation + rest")):
            print(f"  {name:<25} {spread([x[key] * 1000 for x in rs], '.2f', ' ms')}   "
                  f"share {spread([100 * x[key] / x['step'] for x in rs], '.2f', '%')}")
            results.add(f"{s}.{SHARE_KEYS[key]}_share", [100 * x[key] / x["step"] for x in rs], unit="%", fmt=".2f",
                        label=f"{s}: {name}, share of the step")
    per_answer_ms = statistics.median(x["step"] for x in runs["explain"]) * 1000 / 4
    print(f"\nreward functions on {n_answers} synthetic reference answers (en + zh explanations with a verdict line), "
          f"{args.repeats} passes; per answer, and as a share of the explain step's cost per answer "
          f"({per_answer_ms:.0f} ms):")
    total = 0.0
    for name, us in cost.items():
        total += statistics.median(us)
        print(f"  {name:<12} {spread(us, '.1f', ' us')}   {100 * statistics.median(us) / 1000 / per_answer_ms:.4f}%")
        results.add(f"reward_us.{name}", us, unit="us/answer", fmt=".1f",
                    label=f"reward {name} on the synthetic reference answers, per answer")
    print(f"  all three    {total:.1f} us per answer = {100 * total / 1000 / per_answer_ms:.4f}% of a step's cost per answer")
    worst = max(100 * x["rew"] / x["step"] for rs in runs.values() for x in rs)
    print(f"\nreward functions: at most {worst:.2f}% of a step in any run "
          f"({'under' if worst < 5 else 'OVER'} the 5% budget)")
    results.add("reward_us.all", total, unit="us/answer", fmt=".0f",
                label="all three rule rewards, per answer (sum of the medians)")
    results.add("reward_share_of_answer", 100 * total / 1000 / per_answer_ms, unit="%", fmt=".2f",
                label="all three rule rewards, share of the explain step's cost per answer")
    results.add("reward_share_worst", worst, unit="%", fmt=".2f",
                label="reward computation, largest share of a step in any run")
    results.write()
    return 0


def full_recipe(steps: int, repeats: int, cpu_twin: bool) -> int:
    """Generation / rewards / optimisation of the shipped 3B GRPO recipe (see the module docstring)."""
    import torch

    from gleamx.models.real_tiny import build_real_tiny_model

    if not cpu_twin and not torch.cuda.is_available():
        print("error: bench_grpo: --full-recipe measures a GPU and none is visible (--cpu-twin checks the plumbing)",
              file=sys.stderr)
        return 2
    SETTINGS["full"] = FULL_SETTING
    extra: tuple[str, ...] = ("--use_cpu", "true", "--bf16", "false", "--dtype", "float32",
                              "--attn_implementation", "sdpa", "--max_completion_length", "16",
                              "--per_device_train_batch_size", "4", "--num_generations", "4") if cpu_twin else ()
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-grpo-full-") as tmp:
        root = Path(tmp)
        synthesize(root / "data", 40, seed=0, image_size=64 if cpu_twin else 448)
        model = build_real_tiny_model("qwen2_5_vl", root / "model", full_size=not cpu_twin,
                                      device=None if cpu_twin else "cuda")
        if not cpu_twin:
            torch.cuda.reset_peak_memory_stats()
        runs = alternate({"full": lambda r: one_run("full", root, root / "data", model, steps, r, FULL_RECIPE,
                                                     extra)}, repeats)["full"]
    what = "tiny real-file Qwen2.5-VL on the CPU (plumbing)" if cpu_twin else \
        f"random-weight Qwen2.5-VL-3B on {torch.cuda.get_device_name()}"
    print(f"\n{FULL_RECIPE.relative_to(FULL_RECIPE.parents[2])} as shipped{' (CPU twin overrides)' if cpu_twin else ''}, "
          f"{what}; rewards verdict, format, consistency; {steps} measured steps after {WARMUP} warm-up, "
          f"{repeats} run(s)")
    print(f"  step                      {spread([x['step'] * 1000 for x in runs], '.1f', ' ms')}")
    for key, name in (("gen", "generation"), ("rew", "reward computation"), ("opt", "optimisation + rest")):
        print(f"  {name:<25} {spread([x[key] * 1000 for x in runs], '.2f', ' ms')}   "
              f"share {spread([100 * x[key] / x['step'] for x in runs], '.2f', '%')}")
    if not cpu_twin:
        print(f"  peak GPU memory           {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    worst = max(100 * x["rew"] / x["step"] for x in runs)
    print(f"reward functions: at most {worst:.2f}% of a step ({'under' if worst < 5 else 'OVER'} the 5% budget)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
