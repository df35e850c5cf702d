"""Does GRPO learn? Verdict reward and test accuracy of a tiny model after a short SFT, before and after GRPO.

For one seed: synthesises the ``toy`` level (as ``sft_learns.py``), builds the tiny random Qwen2.5-VL model,
runs a short SFT with ``recipes/tiny/sft_learns.yaml`` (``--sft_steps``; a random model writes no verdict, so a
verdict reward would be flat), scores that model on the test split with gleamx-eval's ``run_eval`` (label task,
greedy), runs ``run_grpo`` with ``recipes/tiny/grpo.yaml`` from the SFT run (verdict reward only, full
fine-tuning like the SFT, ``--grpo_steps`` steps) and scores the result the same way. Prints accuracy overall,
on matching and on non-matching pairs, the invalid rate, the test verdict reward (accuracy - penalty x invalid),
the training reward curve (mean verdict reward per logged step), steps and wall times.

    python benchmark/grpo_learns.py --quick        # smoke run (~1.5 min at load 6 on 2 cores): the path, too short to learn
    python benchmark/grpo_learns.py                # 2000 samples, SFT 800 steps, GRPO 60 x 4 prompts, lr 1e-4 (~13 min)
    python benchmark/grpo_learns.py --n 1000 --sft_steps 400 --grpo_steps 80 --grpo_lr 3e-5

benchmark/README.md lists the settings tried and what each gave: in none did GRPO raise test accuracy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gleamx.models import build_tiny_model
from gleamx.synth import synthesize
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)
from sft_learns import score  # benchmark/sft_learns.py: run_eval on the test split, label task, greedy

ROOT = Path(__file__).resolve().parents[1]
SFT_RECIPE = ROOT / "recipes" / "tiny" / "sft_learns.yaml"
GRPO_RECIPE = ROOT / "recipes" / "tiny" / "grpo.yaml"
FIELDS = ("accuracy", "accuracy_positive", "accuracy_negative", "invalid_rate")


def pct(x: float | None) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}"


def test_reward(m: dict[str, Any], penalty: float) -> float:
    """Mean verdict reward of the greedy test answers: 1 per correct, 0 per wrong, -penalty per invalid."""
    return (m["accuracy"] or 0.0) - penalty * (m["invalid_rate"] or 0.0)


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

    from gleamx.train.args import GleamScriptArguments
    from gleamx.train.grpo import run_grpo
    from gleamx.train.grpo_args import GleamGRPOArguments
    from gleamx.train.recipe import parse_recipe
    from gleamx.train.sft import run_sft

    t0 = time.perf_counter()
    synthesize(root / "data", args.n, seed=args.seed, difficulty="toy", image_size=64)
    model_dir = build_tiny_model("qwen2_5_vl", root / "model", seed=args.seed)
    sft_args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
        "--config", str(SFT_RECIPE), "--model_name_or_path", str(model_dir), "--dataset_name", str(root / "data"),
        "--output_dir", str(root / "sft"), "--seed", str(args.seed), "--max_steps", str(args.sft_steps),
        "--logging_steps", str(max(1, args.sft_steps // 5))])
    sft = run_sft(*sft_args)
    sft_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    before = score(model_dir, root / "data", root / "eval0", "label", sft_args[0].max_pixels, model=sft)
    eval_s = time.perf_counter() - t0
    print(f"after SFT ({sft_s:.0f} s): accuracy {pct(before['accuracy'])}%, matching {pct(before['accuracy_positive'])}%, "
          f"non-matching {pct(before['accuracy_negative'])}%, invalid {pct(before['invalid_rate'])}%", flush=True)

    grpo_args = parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)), [
        "--config", str(GRPO_RECIPE), "--model_name_or_path", str(sft), "--dataset_name", str(root / "data"),
        "--output_dir", str(root / "grpo"), "--seed", str(args.seed), "--lang", "en", "--task", "label",
        "--use_peft", "false", "--freeze_merger", "true", "--reward_funcs", "verdict", "--reward_weights", "1",
        "--max_steps", str(args.grpo_steps), "--learning_rate", str(args.grpo_lr),
        "--num_generations", str(args.num_generations),
        "--per_device_train_batch_size", str(args.num_generations * args.prompts),
        "--max_completion_length", "6", "--save_strategy", "no", "--logging_steps", "1",
        "--temperature", str(args.temperature), "--max_pixels", str(sft_args[0].max_pixels)])
    t0 = time.perf_counter()
    out = run_grpo(*grpo_args)
    grpo_s = time.perf_counter() - t0
    after = score(model_dir, root / "data", root / "eval1", "label", sft_args[0].max_pixels, model=out)
    history = json.loads((out / "log_history.json").read_text())
    curve = [(h["step"], h["rewards/verdict/mean"], h.get("frac_reward_zero_std")) for h in history
             if "rewards/verdict/mean" in h]
    return {"before": before, "after": after, "sft_s": sft_s, "eval_s": eval_s, "grpo_s": grpo_s, "curve": curve,
            "penalty": grpo_args[0].no_verdict_penalty, "batch": grpo_args[1].per_device_train_batch_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 samples, 60 SFT steps, 10 GRPO steps of 2 prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see README: shared cores)")
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 2000; quick 300)")
    ap.add_argument("--sft_steps", type=int, default=None, help="SFT steps x batch 8 before GRPO (default 800; quick 60)")
    ap.add_argument("--grpo_steps", type=int, default=None, help="GRPO steps (default 60; quick 10)")
    ap.add_argument("--grpo_lr", type=float, default=1e-4, help="GRPO learning rate (full fine-tuning)")
    ap.add_argument("--num_generations", type=int, default=8, help="answers per prompt")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per GRPO step (quick 2)")
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args()
    args.n = args.n or (300 if args.quick else 2000)
    args.sft_steps = args.sft_steps or (60 if args.quick else 800)
    args.grpo_steps = args.grpo_steps or (10 if args.quick else 60)
    if args.quick and args.prompts == 4:
        args.prompts = 2
    set_threads_and_describe(args.threads)
    with tempfile.TemporaryDirectory(prefix="gleamx-grpo-learns-") as tmp:
        r = run(args, Path(tmp))

    b, a = r["before"], r["after"]
    print(f"\ndata: synthesize(n={args.n}, difficulty='toy', image_size=64, seed={args.seed}), test split {a['n']} pairs; "
          f"model: tiny qwen2_5_vl (seed {args.seed})")
    print(f"SFT: sft_learns.yaml, {args.sft_steps} steps x batch 8, full fine-tuning, {r['sft_s']:.0f} s")
    print(f"GRPO: grpo.yaml, full fine-tuning, {args.grpo_steps} steps x {args.prompts} prompts x "
          f"{args.num_generations} answers (batch {r['batch']}), lr {args.grpo_lr:g}, temperature {args.temperature:g}, "
          f"reward verdict only (no-verdict penalty {r['penalty']:g}), {r['grpo_s']:.0f} s "
          f"({r['grpo_s'] / args.grpo_steps:.2f} s/step); {torch.get_num_threads()} torch thread(s)")
    print("eval: run_eval, test split, lang=en, task=label, greedy, 8 new tokens\n")
    print(f"{'model':<12} " + " ".join(f"{f:>18}" for f in FIELDS) + f" {'test verdict reward':>20}")
    for name, m in (("after SFT", b), ("after GRPO", a)):
        print(f"{name:<12} " + " ".join(f"{pct(m[f]):>18}" for f in FIELDS)
              + f" {test_reward(m, r['penalty']):>20.3f}")
    curve = r["curve"]
    k = max(1, len(curve) // 5)
    first, last = [c[1] for c in curve[:k]], [c[1] for c in curve[-k:]]
    print(f"\ntraining verdict reward (mean of sampled answers): first {k} steps {statistics.mean(first):.3f}, "
          f"last {k} steps {statistics.mean(last):.3f}")
    print("reward curve (step: mean verdict reward, share of prompts whose answers all scored alike):")
    for lo in range(0, len(curve), k):
        chunk = curve[lo:lo + k]
        zero = [c[2] for c in chunk if c[2] is not None]
        print(f"  steps {chunk[0][0]:>4}-{chunk[-1][0]:<4} {statistics.mean(c[1] for c in chunk):6.3f}"
              + (f"   flat groups {statistics.mean(zero):.2f}" if zero else ""))
    up_reward = test_reward(a, r["penalty"]) > test_reward(b, r["penalty"]) and statistics.mean(last) > statistics.mean(first)
    up_classes = (a["accuracy_positive"] or 0) >= (b["accuracy_positive"] or 0) and \
        (a["accuracy_negative"] or 0) >= (b["accuracy_negative"] or 0) and (a["accuracy"] or 0) > (b["accuracy"] or 0)
    print("\nverdict:", "GRPO RAISED the verdict reward and test accuracy, neither class falling"
          if up_reward and up_classes else
          "GRPO did NOT raise both the verdict reward and test accuracy (both classes) in this setting")
    print(f"wall: SFT {r['sft_s']:.0f} s, one eval {r['eval_s']:.0f} s, GRPO {r['grpo_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
