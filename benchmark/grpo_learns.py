"""Does GRPO beat more SFT? From one SFT checkpoint, GRPO vs continued SFT at matched compute, over a grid of data
seeds x training seeds, scored with gleamx-eval's own ``run_eval``.

Each cell (data seed d: the synthetic ``toy`` data; training seed t: the random model, data order and sampling):
  1. start: ``recipes/tiny/sft_learns.yaml`` for ``--sft_steps`` from the random model (a random model writes no
     verdict, so a verdict reward would be flat);
  2. GRPO: ``recipes/tiny/grpo.yaml`` from the start (verdict reward, full fine-tuning like the SFT,
     ``--grpo_steps`` x ``--prompts`` prompts x ``--num_generations`` answers);
  3. control, same samples: the start continued by SFT on as many training pairs as GRPO saw prompts;
  4. control, same compute: the start continued by SFT until it has used the CPU time of GRPO's training loop
     (one torch thread, so CPU time is compute; wall time would also charge the other jobs on the machine).
All four are scored on ``--split`` (greedy, label task). Prints each cell, then every arm's mean +- sd with a
Student-t 95% interval over cells, and GRPO minus each control (and minus the start), paired on the same samples:
a bootstrap interval per cell and a t-interval over cells. Settings are chosen with ``--split val``; the recorded
figures are one run on ``test``.

    python benchmark/grpo_learns.py --jobs 2                # the recorded run: test, data seeds 0,1,2 x training seeds 0,1
    python benchmark/grpo_learns.py --split val --grpo_lr 3e-4 --jobs 2   # choosing a setting on val
    python benchmark/grpo_learns.py --quick                 # smoke run (~2 min): the whole path, too short to learn
"""

from __future__ import annotations

import learning  # noqa: I001 - first: pins the kernels before torch loads (benchmark/learning.py)

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from learning import (FIELDS, CpuClock, Scored, diff_text, interval_text, make_data, make_model, paired, pct,
                      run_cells, score, seeds)
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)
from results import Results

ROOT = Path(__file__).resolve().parents[1]
SFT_RECIPE = ROOT / "recipes" / "tiny" / "sft_learns.yaml"
GRPO_RECIPE = ROOT / "recipes" / "tiny" / "grpo.yaml"
ARMS = ("start", "grpo", "sft_same_samples", "sft_same_compute")
CONTROLS = ("sft_same_samples", "sft_same_compute", "start")
SFT_BATCH = 8
# The start and the SFT controls train at these settings whatever the shipped recipe's schedule becomes: the
# experiment's starting point must not move when sft_learns.yaml is tuned for its own (longer) run.
SFT_SETTINGS = ["--learning_rate", "1e-3", "--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "20"]


def sft(model: Path, data: Path, out: Path, seed: int, steps: int, clock: CpuClock, extra: list[str]) -> tuple[Path, float]:
    """``run_sft`` with ``sft_learns.yaml`` for ``steps`` steps; (output folder, wall seconds)."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.sft import run_sft

    parsed = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
        "--config", str(SFT_RECIPE), "--model_name_or_path", str(model), "--dataset_name", str(data),
        "--output_dir", str(out), "--seed", str(seed), "--max_steps", str(steps),
        "--logging_steps", str(max(1, min(steps, 10**6) // 5)), *SFT_SETTINGS, *extra])
    t0 = time.perf_counter()
    return run_sft(*parsed, callbacks=[clock]), time.perf_counter() - t0


def grpo(start: Path, data: Path, out: Path, seed: int, args: argparse.Namespace, clock: CpuClock) -> tuple[Path, float]:
    """``run_grpo`` with ``grpo.yaml`` from the start: verdict reward only, full fine-tuning, the English label task."""
    from trl import GRPOConfig, ModelConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamGRPOArguments
    from gleamx.train.grpo import run_grpo

    parsed = parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)), [
        "--config", str(GRPO_RECIPE), "--model_name_or_path", str(start), "--dataset_name", str(data),
        "--output_dir", str(out), "--seed", str(seed), "--lang", "en", "--task", "label",
        "--use_peft", "false", "--freeze_merger", "true", "--reward_funcs", "verdict", "--reward_weights", "1",
        "--no_verdict_penalty", str(args.no_verdict_penalty), "--scale_rewards", args.scale_rewards,
        "--max_steps", str(args.grpo_steps), "--learning_rate", str(args.grpo_lr),
        "--num_generations", str(args.num_generations),
        "--per_device_train_batch_size", str(args.num_generations * args.prompts),
        "--max_completion_length", "6", "--save_strategy", "no", "--logging_steps", "1",
        "--temperature", str(args.temperature)])
    t0 = time.perf_counter()
    return run_grpo(*parsed, callbacks=[clock]), time.perf_counter() - t0


def one_cell(d: int, t: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from gleamx.parsing import load_yaml

    max_pixels = load_yaml(SFT_RECIPE.read_text(encoding="utf-8"), str(SFT_RECIPE))["max_pixels"]
    data, model = root / f"data-{d}", root / f"model-{t}"
    cell = root / f"d{d}-t{t}"
    runs: dict[str, dict[str, Any]] = {}

    clock = CpuClock()
    start, wall = sft(model, data, cell / "start", t, args.sft_steps, clock, [])
    runs["start"] = {"path": start, "cpu_s": clock.used, "wall_s": wall, "steps": clock.steps}
    clock = CpuClock()
    path, wall = grpo(start, data, cell / "grpo", t, args, clock)
    runs["grpo"] = {"path": path, "cpu_s": clock.used, "wall_s": wall, "steps": clock.steps,
                    "samples": clock.steps * args.prompts}
    if args.no_controls:
        return finish(d, t, runs, data, cell, args, max_pixels)
    # The controls continue the start as a resumed run would (no new warm-up); the SFT recipe's constant rate.
    same = math.ceil(runs["grpo"]["samples"] / SFT_BATCH)
    clock = CpuClock()
    path, wall = sft(start, data, cell / "sft_same_samples", t, same, clock, ["--warmup_steps", "0"])
    runs["sft_same_samples"] = {"path": path, "cpu_s": clock.used, "wall_s": wall, "steps": clock.steps,
                                "samples": clock.steps * SFT_BATCH}
    clock = CpuClock(budget=runs["grpo"]["cpu_s"])
    path, wall = sft(start, data, cell / "sft_same_compute", t, 10**6, clock, ["--warmup_steps", "0"])
    runs["sft_same_compute"] = {"path": path, "cpu_s": clock.used, "wall_s": wall, "steps": clock.steps,
                                "samples": clock.steps * SFT_BATCH}
    return finish(d, t, runs, data, cell, args, max_pixels)


def finish(d: int, t: int, runs: dict[str, dict[str, Any]], data: Path, cell: Path, args: argparse.Namespace,
           max_pixels: int) -> dict[str, Any]:
    """Score every arm's model on the split."""
    scores = {arm: score(data, cell / f"eval-{args.split}-{arm}", args.split, max_pixels, model=r.pop("path")) for arm, r in runs.items()}
    return {"data_seed": d, "train_seed": t, "runs": runs, "scores": scores}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 samples, one cell, 60 SFT steps, 6 GRPO steps")
    ap.add_argument("--data_seeds", default="0,1,2", help="comma-separated data seeds (default 0,1,2)")
    ap.add_argument("--train_seeds", default="0,1",
                    help="comma-separated training seeds: model init, data order, sampling (default 0,1)")
    ap.add_argument("--split", default="test", choices=("val", "test"),
                    help="where to score (default test: the reported run; choose settings with val)")
    ap.add_argument("--jobs", type=int, default=1, help="cells at once, one process and torch thread each (default 1)")
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 2000; quick 300)")
    ap.add_argument("--sft_steps", type=int, default=None, help="SFT steps x batch 8 before GRPO (default 400; quick 60)")
    ap.add_argument("--grpo_steps", type=int, default=None, help="GRPO steps (default 120; quick 6)")
    ap.add_argument("--grpo_lr", type=float, default=1e-4, help="GRPO learning rate (full fine-tuning; default 1e-4)")
    ap.add_argument("--num_generations", type=int, default=8, help="answers per prompt (default 8)")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per GRPO step (default 4; quick 2)")
    ap.add_argument("--temperature", type=float, default=1.0, help="GRPO sampling temperature (default 1)")
    ap.add_argument("--no_verdict_penalty", type=float, default=0.5, help="verdict reward of an answer without one: minus this")
    ap.add_argument("--scale_rewards", default="group", choices=("group", "batch", "none"), help="TRL's scale_rewards")
    ap.add_argument("--no_controls", action="store_true",
                    help="start and GRPO only (choosing GRPO's settings on val: the controls do not depend on them)")
    ap.add_argument("--work_dir", type=Path, default=None, help="keep data, models and runs here (default: a temp folder)")
    args = ap.parse_args()
    args.n = args.n or (300 if args.quick else 2000)
    args.sft_steps = args.sft_steps or (60 if args.quick else 400)
    args.grpo_steps = args.grpo_steps or (6 if args.quick else 120)
    if args.quick:
        args.prompts = 2 if args.prompts == 4 else args.prompts
        args.data_seeds, args.train_seeds = args.data_seeds.split(",")[0], args.train_seeds.split(",")[0]
    print(learning.pin_and_describe())
    set_threads_and_describe(1)
    # made now: its start time and machine line are the run's, not the report's
    results = Results("grpo_learns" + ("_val" if args.split == "val" else ""), quick=args.quick, settings={
        k: getattr(args, k) for k in ("split", "data_seeds", "train_seeds", "n", "sft_steps", "grpo_steps", "grpo_lr",
                                      "num_generations", "prompts", "temperature", "no_verdict_penalty", "scale_rewards")})
    grid = [(d, t) for d in seeds(args.data_seeds) for t in seeds(args.train_seeds)]
    with tempfile.TemporaryDirectory(prefix="gleamx-grpo-learns-") as tmp:
        root = args.work_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for d, t in grid:  # made once, before any job starts: the jobs share them
            make_data(root, d, args.n, "toy", 64)
            make_model(root, t)
        cells = run_cells(one_cell, [(d, t, args, root) for d, t in grid], args.jobs)
    report(cells, args, results)
    return 0


def report(cells: list[dict[str, Any]], args: argparse.Namespace, results: Results) -> None:
    n = cells[0]["scores"]["grpo"]["n"]
    arms = [a for a in ARMS if a in cells[0]["scores"]]
    print(f"\ndata: synthesize(n={args.n}, difficulty='toy', image_size=64) per data seed {args.data_seeds}; "
          f"{args.split} split, {n} pairs; model: tiny qwen2_5_vl per training seed {args.train_seeds}")
    print(f"start: sft_learns.yaml {' '.join(SFT_SETTINGS)}, {args.sft_steps} steps x batch {SFT_BATCH}, full fine-tuning")
    print(f"GRPO: grpo.yaml, {args.grpo_steps} steps x {args.prompts} prompts x {args.num_generations} answers, "
          f"lr {args.grpo_lr:g}, temperature {args.temperature:g}, verdict reward (no-verdict penalty "
          f"{args.no_verdict_penalty:g}), scale_rewards {args.scale_rewards}")
    print("controls: sft_learns.yaml continued from the start, no warm-up: as many pairs as GRPO saw prompts "
          "(sft_same_samples), or GRPO's training CPU time (sft_same_compute)")
    print(f"eval: run_eval, {args.split} split, lang=en, greedy, 8 new tokens\n")
    print(f"{'data':>4} {'train':>5} {'arm':<17} " + " ".join(f"{f:>18}" for f in FIELDS)
          + f" {'steps':>6} {'samples':>7} {'CPU s':>6} {'wall s':>6}")
    for c in cells:
        for arm in arms:
            m: Scored = c["scores"][arm]
            r = c["runs"][arm]
            print(f"{c['data_seed']:>4} {c['train_seed']:>5} {arm:<17} " + " ".join(f"{pct(m[f]):>18}" for f in FIELDS)
                  + f" {r['steps']:>6} {r.get('samples', r['steps'] * SFT_BATCH):>7} {r['cpu_s']:>6.0f} {r['wall_s']:>6.0f}")
    print("\nover cells (Student t over the cells: the spread between seeds):")
    for arm in arms:
        for f in ("accuracy", "accuracy_negative"):
            values = [c["scores"][arm][f] or 0.0 for c in cells]
            print(f"  {arm:<17} {f:<18} {interval_text(values)}")
            results.add(f"{arm}.{f}", values, unit="fraction", label=f"{arm}: {f} on {args.split}, one value per cell")
    for key in ("cpu_s", "steps"):
        if "sft_same_compute" in arms:
            results.add(f"sft_same_compute.{key}", [c["runs"]["sft_same_compute"][key] for c in cells], unit=key,
                        label=f"the compute-matched SFT control's {key}")
        results.add(f"grpo.{key}", [c["runs"]["grpo"][key] for c in cells], unit=key, label=f"GRPO's {key}")
    print("\nGRPO minus each other arm, accuracy, paired on the same samples:")
    for other in (a for a in CONTROLS if a in arms):
        diffs = [paired(c["scores"][other], c["scores"]["grpo"], seed=i) for i, c in enumerate(cells)]
        print(f"  vs {other}: over cells {interval_text([x['diff'] for x in diffs], unit=' points')}")
        for c, x in zip(cells, diffs):
            print(f"      data seed {c['data_seed']}, training seed {c['train_seed']}: {diff_text(x)}")
        results.add(f"grpo_minus_{other}", [x["diff"] for x in diffs], unit="fraction",
                    label=f"paired accuracy difference GRPO - {other}, per cell",
                    per_cell_ci=[[x["ci_low"], x["ci_high"]] for x in diffs])
    results.write()


if __name__ == "__main__":
    sys.exit(main())
