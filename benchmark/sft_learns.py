"""Does SFT learn? Verdict accuracy of the untrained tiny model vs the same model after the recipe.

Synthesises GLEAM-X data, builds the tiny random Qwen2.5-VL model, scores it on the test split
(label task: the answer is only the verdict line), trains it with ``run_sft`` and
``recipes/tiny/sft_learns.yaml`` (or ``--recipe``), and scores it again with the same greedy
``generate_answers`` + ``parse_verdict`` + ``match_metrics`` path that ``gleamx-eval`` uses.
Prints accuracy overall, on positives and on negatives, the invalid rate and per-view
accuracy, with model size, steps and wall times. Chance is 50%; a model that always says
"Yes" (or "No") scores 50% with 100%/0% on positives/negatives.

    python benchmark/sft_learns.py            # the recipe as written (about 10 min on 2 CPU cores)
    python benchmark/sft_learns.py --quick    # smoke run (< 1 min): the whole path, too short to learn
    python benchmark/sft_learns.py --n 1000 --max_steps 300 --learning_rate 3e-3   # recipe overrides
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gleamx.data import load_samples
from gleamx.data.synth import synthesize
from gleamx.eval.generate import generate_answers
from gleamx.eval.match import grouped_match_metrics, match_metrics
from gleamx.models import build_tiny_model, load_model_and_processor
from gleamx.prompts import parse_verdict
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_learns.yaml"
EVAL_LANG = "en"


def score(model: Any, processor: Any, samples: list, task: str) -> dict[str, Any]:
    model.eval()
    answers = generate_answers(model, processor, samples, EVAL_LANG, task, batch_size=16, max_new_tokens=8)
    labels = [s.label for s in samples]
    verdicts = [parse_verdict(a) for a in answers]
    out = match_metrics(labels, verdicts)
    out["by_view"] = grouped_match_metrics([s.query_view for s in samples], labels, verdicts)
    out["example"] = answers[0]
    return out


def pct(x: float | None) -> str:
    return "   -" if x is None else f"{100 * x:5.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 samples, 40 steps (< 1 min, does not learn)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: with other jobs on this 2-core box, 2 threads ran 3-5x slower)")
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 2000; quick 300)")
    ap.add_argument("--difficulty", default="toy", choices=("toy", "easy", "medium", "hard"),
                    help="synthetic level (default toy: the level the tiny model learns; easy and up do not, see README)")
    ap.add_argument("--seed", type=int, default=0, help="data seed (the model seed is the recipe's)")
    ap.add_argument("--views", default=None, help="comma-separated query views to synthesise (default: all four)")
    ap.add_argument("--image_size", type=int, default=64,
                    help="synthetic image side in pixels (default 64: 4-8 image tokens each, 2x faster steps than 128)")
    # Anything else is a recipe override, as on recipes/sft.py's command line (e.g. --max_steps 300).
    args, overrides = ap.parse_known_args()
    n = args.n or (300 if args.quick else 2000)
    overrides = (["--max_steps", "40"] if args.quick else []) + overrides

    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.args import GleamScriptArguments
    from gleamx.train.recipe import parse_recipe
    from gleamx.train.sft import run_sft

    set_threads_and_describe(args.threads)
    with tempfile.TemporaryDirectory(prefix="gleamx-sft-learns-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        view_arg = {"views": args.views.split(",")} if args.views else {}
        synth = synthesize(root / "data", n, seed=args.seed, difficulty=args.difficulty, image_size=args.image_size,
                           **view_arg)
        synth_s = time.perf_counter() - t0
        model_dir = build_tiny_model("qwen2_5_vl", root / "model")
        argv = ["--config", str(args.recipe), "--model_name_or_path", str(model_dir),
                "--dataset_name", str(root / "data"), "--output_dir", str(root / "out"), *overrides]
        script_args, training_args, model_args = parse_recipe(
            TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), argv)
        task = script_args.task
        test = load_samples(root / "data", split="test").samples

        model, processor = load_model_and_processor(model_dir, dtype="float32", max_pixels=script_args.max_pixels)
        n_params = sum(p.numel() for p in model.parameters())
        t0 = time.perf_counter()
        before = score(model, processor, test, task)
        eval_s = time.perf_counter() - t0
        del model

        t0 = time.perf_counter()
        out = run_sft(script_args, training_args, model_args)
        train_s = time.perf_counter() - t0

        if model_args.use_peft:
            from peft import PeftModel

            base, processor = load_model_and_processor(model_dir, dtype="float32", max_pixels=script_args.max_pixels)
            model = PeftModel.from_pretrained(base, out)
        else:
            model, processor = load_model_and_processor(out, dtype="float32", max_pixels=script_args.max_pixels)
        n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if model_args.use_peft else None
        after = score(model, processor, test, task)

        print(f"\ndata: synthesize(n={n}, difficulty={args.difficulty!r}, seed={args.seed}, "
              f"image_size={args.image_size}{', views=' + args.views if args.views else ''}) in {synth_s:.0f} s: "
              f"train {synth.by_split['train']}, test {len(test)} "
              f"({sum(s.label for s in test)} positive / {sum(not s.label for s in test)} negative)")
        mode = (f"LoRA r={model_args.lora_r}, {n_trainable:,} trainable" if model_args.use_peft
                else "full fine-tuning")
        print(f"model: tiny qwen2_5_vl, {n_params:,} parameters; {mode}; freeze vision tower "
              f"{script_args.freeze_vision_tower}, merger {script_args.freeze_merger}")
        print(f"recipe: {' '.join([args.recipe.name, *overrides])}; task={task}, lang={script_args.lang}, "
              f"{training_args.max_steps} steps x batch {training_args.per_device_train_batch_size}, "
              f"lr {training_args.learning_rate:g} ({training_args.lr_scheduler_type.value}); "
              f"train wall {train_s:.0f} s, {torch.get_num_threads()} torch thread(s)")
        print(f"eval: test split, lang={EVAL_LANG}, greedy, parse_verdict (untrained eval took {eval_s:.1f} s)\n")
        views = sorted(after["by_view"])
        print(f"{'model':<10} {'accuracy':>8} {'pos':>6} {'neg':>6} {'invalid':>7}  " + " ".join(f"{v:>10}" for v in views))
        for name, m in (("untrained", before), ("trained", after)):
            print(f"{name:<10} {pct(m['accuracy']):>8} {pct(m['accuracy_positive']):>6} "
                  f"{pct(m['accuracy_negative']):>6} {pct(m['invalid_rate']):>7}  "
                  + " ".join(f"{pct(m['by_view'][v]['accuracy']):>10}" for v in views))
        print(f"\nfirst test answer, untrained: {before['example']!r}; trained: {after['example']!r}")
        learned = (after["accuracy"] or 0) >= 0.75 and min(after["accuracy_positive"] or 0,
                                                           after["accuracy_negative"] or 0) > 0.5
        print("verdict:", "LEARNS (>= 75% with both classes above 50%)" if learned else
              "does NOT reach the target (>= 75% with both classes above 50%)")


if __name__ == "__main__":
    sys.exit(main())
