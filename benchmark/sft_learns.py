"""Does SFT learn? Verdict accuracy of the untrained tiny model vs the same model after the recipe,
over several seeds, measured with gleamx-eval's own ``run_eval``.

For each seed: synthesises GLEAM-X data (that seed), builds the tiny random Qwen2.5-VL model (that
seed), scores it on the test split with ``run_eval`` (label task, greedy, the decoding and parsing
that ``gleamx-eval`` uses), trains it with ``run_sft`` and ``recipes/tiny/sft_learns.yaml`` (or
``--recipe``; recipe seed = that seed) and scores the result the same way. Prints one row per seed
and mean +- sd over seeds of accuracy, positives, negatives, invalid rate, and the wall times.
Chance is 50%; a model that always says "Yes" (or "No") scores 50% with 100%/0% on the classes.

    python benchmark/sft_learns.py                  # 3 seeds, the recipe as written (about 4 min a seed on 2 cores)
    python benchmark/sft_learns.py --seeds 0        # one seed
    python benchmark/sft_learns.py --quick          # smoke run (< 1 min a seed): the whole path, too short to learn
    python benchmark/sft_learns.py --n 1000 --max_steps 300 --learning_rate 3e-3   # recipe overrides
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gleamx.synth import synthesize
from gleamx.models import build_tiny_model
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_learns.yaml"
EVAL_LANG = "en"
FIELDS = ("accuracy", "accuracy_positive", "accuracy_negative", "invalid_rate")


def score(model_dir: Path, data: Path, out: Path, task: str, max_pixels: int | None, adapter: Path | None = None,
          model: Path | None = None) -> dict[str, Any]:
    """``run_eval`` on the test split: what ``gleamx-eval --task label --max-new-tokens 8`` reports."""
    from gleamx.eval.run import EvalConfig, run_eval

    return run_eval(EvalConfig(data=str(data), model=str(model or model_dir), adapter=str(adapter) if adapter else None,
                               split="test", task=task, lang=EVAL_LANG, max_new_tokens=8, batch_size=16, bootstrap=0,
                               max_pixels=max_pixels, output=str(out), no_explanation_metrics=True)).results


def pct(x: float | None) -> str:
    return "   -" if x is None else f"{100 * x:5.1f}"


def one_seed(seed: int, args: argparse.Namespace, overrides: list[str], root: Path) -> dict[str, Any]:
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe
    from gleamx.train.sft import run_sft

    n = args.n or (300 if args.quick else 2000)
    t0 = time.perf_counter()
    view_arg = {"views": args.views.split(",")} if args.views else {}
    synthesize(root / "data", n, seed=seed, difficulty=args.difficulty, image_size=args.image_size, **view_arg)
    model_dir = build_tiny_model("qwen2_5_vl", root / "model", seed=seed)
    argv = ["--config", str(args.recipe), "--model_name_or_path", str(model_dir), "--dataset_name", str(root / "data"),
            "--output_dir", str(root / "out"), "--seed", str(seed), *overrides]
    script_args, training_args, model_args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), argv)
    prep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    before = score(model_dir, root / "data", root / "eval0", script_args.task, script_args.max_pixels)
    eval_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = run_sft(script_args, training_args, model_args)
    train_s = time.perf_counter() - t0
    after = score(model_dir, root / "data", root / "eval1", script_args.task, script_args.max_pixels,
                  **({"adapter": out} if model_args.use_peft else {"model": out}))
    return {"seed": seed, "before": before, "after": after, "prep_s": prep_s, "eval_s": eval_s, "train_s": train_s,
            "steps": training_args.max_steps, "batch": training_args.per_device_train_batch_size,
            "lr": training_args.learning_rate, "mode": "LoRA" if model_args.use_peft else "full fine-tuning",
            "task": script_args.task, "n": n}


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):5.1f} +- {100 * sd:4.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 samples, 40 steps (< 1 min a seed, does not learn)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (data, model and recipe seed alike)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: with other jobs on this 2-core box, 2 threads ran 3-5x slower)")
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 2000; quick 300)")
    ap.add_argument("--difficulty", default="toy", choices=("toy", "easy", "medium", "hard"),
                    help="synthetic level (default toy: the level the tiny model learns; easy and up do not, see README)")
    ap.add_argument("--views", default=None, help="comma-separated query views to synthesise (default: all four)")
    ap.add_argument("--image_size", type=int, default=64,
                    help="synthetic image side in pixels (default 64: 4-8 image tokens each, 2x faster steps than 128)")
    # Anything else is a recipe override, as on recipes/sft.py's command line (e.g. --max_steps 300).
    args, overrides = ap.parse_known_args()
    overrides = (["--max_steps", "40"] if args.quick else []) + overrides
    set_threads_and_describe(args.threads)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory(prefix="gleamx-sft-learns-") as tmp:
            runs.append(one_seed(seed, args, overrides, Path(tmp)))
        r = runs[-1]
        print(f"seed {seed}: untrained {pct(r['before']['accuracy'])}% -> trained {pct(r['after']['accuracy'])}% "
              f"(invalid {pct(r['after']['invalid_rate'])}%), train {r['train_s']:.0f} s", flush=True)

    r0 = runs[0]
    print(f"\ndata: synthesize(n={r0['n']}, difficulty={args.difficulty!r}, image_size={args.image_size}) per seed, "
          f"test split {r0['after']['n']} pairs; model: tiny qwen2_5_vl, {r0['mode']}")
    print(f"recipe: {' '.join([args.recipe.name, *overrides])}; task={r0['task']}, {r0['steps']} steps x batch "
          f"{r0['batch']}, lr {r0['lr']:g}; {torch.get_num_threads()} torch thread(s)")
    print(f"eval: run_eval, test split, lang={EVAL_LANG}, greedy, 8 new tokens\n")
    print(f"{'seed':<6} {'model':<10} " + " ".join(f"{f:>18}" for f in FIELDS) + f" {'train s':>8}")
    for r in runs:
        for name in ("before", "after"):
            m = r[name]
            print(f"{r['seed']:<6} {'untrained' if name == 'before' else 'trained':<10} "
                  + " ".join(f"{pct(m[f]):>18}" for f in FIELDS) + (f" {r['train_s']:>8.0f}" if name == "after" else ""))
    for name in ("before", "after"):
        print(f"{'mean':<6} {'untrained' if name == 'before' else 'trained':<10} "
              + " ".join(f"{_mean_sd([r[name][f] or 0.0 for r in runs]):>18}" for f in FIELDS)
              + (f" {statistics.mean(r['train_s'] for r in runs):>8.0f}" if name == "after" else ""))
    learned = all((r["after"]["accuracy"] or 0) >= 0.75 and min(r["after"]["accuracy_positive"] or 0,
                                                                   r["after"]["accuracy_negative"] or 0) > 0.5
                  for r in runs)
    print("\nverdict:", "LEARNS on every seed (>= 75% with both classes above 50%)" if learned else
          "does NOT reach the target on every seed (>= 75% with both classes above 50%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
