"""Does SFT learn? Verdict accuracy of the tiny random model after ``recipes/tiny/sft_learns.yaml``, over a grid of
data seeds x training seeds, scored with gleamx-eval's own ``run_eval``.

A data seed makes the synthetic data (``synthesize(n, seed=d, difficulty=...)``); a training seed makes the random
model (``build_tiny_model(seed=t)``) and is the recipe's ``seed`` (data order). Each cell trains once and is scored
on ``--split`` (greedy, label task). Settings are chosen with ``--split val``; the recorded figures are one run on
``test``. Prints each cell, then mean +- sd with a Student-t 95% interval over cells, and the verdict: learned on
every cell (>= 75% with both classes above 50%). ``--baseline "..."`` also trains every cell with other recipe
overrides and prints the paired difference (the same test samples, cell by cell: bootstrap interval per cell,
t-interval over cells). ``--curve K`` saves a checkpoint every K steps and scores each on val. With ``--work_dir``
and ``--reuse``, a cell whose finished run has exactly these settings is scored, not trained again: choose on val,
then score the same models on test once.

    python benchmark/sft_learns.py --jobs 2              # the recorded run: test split, data seeds 0,1,2 x training seeds 0,1
    python benchmark/sft_learns.py --split val --curve 1000 --jobs 2 --work_dir W     # how the recipe was chosen
    python benchmark/sft_learns.py --curve 1000 --jobs 2 --work_dir W --reuse         # ...and the same models on test
    python benchmark/sft_learns.py --baseline "--max_steps 1500 --learning_rate 1e-3" # paired against another setting
    python benchmark/sft_learns.py --difficulty easy --split val              # the layout level
    python benchmark/sft_learns.py --quick                                    # smoke run: the whole path, too short to learn
"""

from __future__ import annotations

import learning  # noqa: I001 - first: pins the kernels before torch loads (benchmark/learning.py)

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from learning import (FIELDS, Scored, diff_text, interval_text, make_data, make_model, paired, pct, run_cells, score,
                      seeds)
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)
from results import Results

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_learns.yaml"


def parse(model_dir: Path, data: Path, out: Path, train_seed: int, recipe: Path, overrides: list[str]) -> Any:
    """The recipe with the cell's model, data, output folder, seed and overrides, as ``recipes/sft.py`` parses it."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.parsing import parse_recipe
    from gleamx.train.arguments import GleamScriptArguments

    argv = ["--config", str(recipe), "--model_name_or_path", str(model_dir), "--dataset_name", str(data),
            "--output_dir", str(out), "--seed", str(train_seed), *overrides]
    return parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), argv)


def finished_with(parsed: Any, out: Path) -> bool:
    """``out`` holds a finished run of exactly these settings (its recorded signature, every key equal): scoring it
    on another split needs no retraining (settings chosen on val, the same models then scored on test once)."""
    from gleamx.outputs import RECORD, as_recorded, changed_settings
    from gleamx.train.run import RUN_FILE, recorded_signature, run_signature

    if not ((out / RECORD).is_file() and (out / RUN_FILE).is_file() and any(out.glob("*.safetensors"))):
        return False
    old = recorded_signature(out)
    return old is not None and not changed_settings(as_recorded(run_signature(*parsed)), old)


def train(parsed: Any) -> tuple[Path, float]:
    """``run_sft``: (trained model or adapter, seconds)."""
    from gleamx.train.sft import run_sft

    t0 = time.perf_counter()
    trained = run_sft(*parsed)
    return trained, time.perf_counter() - t0


def score_trained(parsed: Any, trained: Path, model_dir: Path, data: Path, out: Path, split: str) -> Scored:
    script_args, _, model_args = parsed
    where = {"model": model_dir, "adapter": trained} if model_args.use_peft else {"model": trained}
    return score(data, out, split, script_args.max_pixels, task=script_args.task, **where)


def one_cell(d: int, t: int, args: argparse.Namespace, overrides: list[str], root: Path, arm: str) -> dict[str, Any]:
    data = make_data(root, d, args.n, args.difficulty, args.image_size, args.views.split(",") if args.views else None)
    model_dir = make_model(root, t)
    cell = root / f"{arm}-d{d}-t{t}"
    curve_args = (["--save_strategy", "steps", "--save_steps", str(args.curve), "--save_only_model", "true",
                   "--save_total_limit", "1000"] if args.curve else [])
    parsed = parse(model_dir, data, cell / "run", t, args.recipe, [*curve_args, *overrides])
    if args.reuse and finished_with(parsed, cell / "run"):
        trained, train_s = cell / "run", float("nan")  # trained earlier by this command on another split
    else:
        trained, train_s = train(parsed)
    curve = {}
    checkpoints = sorted((cell / "run").glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for ck in checkpoints if args.split == "val" else []:  # test: the chosen (final) model only, scored once
        curve[int(ck.name.rsplit("-", 1)[1])] = score_trained(parsed, ck, model_dir, data, cell / f"eval-{args.split}-{ck.name}",
                                                             args.split)["accuracy"]
    after = score_trained(parsed, trained, model_dir, data, cell / f"eval-{args.split}", args.split)
    training_args = parsed[1]
    return {"data_seed": d, "train_seed": t, "after": after, "train_s": train_s, "curve": curve,
            "steps": training_args.max_steps, "batch": training_args.per_device_train_batch_size,
            "lr": training_args.learning_rate, "mode": "LoRA" if parsed[2].use_peft else "full fine-tuning",
            "task": parsed[0].task}


def learned(m: Scored) -> bool:
    """The target: >= 75% accuracy with both classes above 50% (a one-answer model scores 50% with 100/0)."""
    return (m["accuracy"] or 0) >= 0.75 and min(m["accuracy_positive"] or 0, m["accuracy_negative"] or 0) > 0.5


def print_cells(cells: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'data':>4} {'train':>5} " + " ".join(f"{f:>18}" for f in FIELDS) + f" {'AUROC':>6} {'train s':>8}")
    for c in cells:
        m = c["after"]
        auroc = (m.results.get("calibration") or {}).get("auroc")
        print(f"{c['data_seed']:>4} {c['train_seed']:>5} " + " ".join(f"{pct(m[f]):>18}" for f in FIELDS)
              + f" {'-' if auroc is None else f'{auroc:.3f}':>6} {c['train_s']:>8.0f}")
        if c["curve"]:
            print("           curve (step: accuracy): " + ", ".join(f"{s}: {pct(a).strip()}" for s, a in c["curve"].items()))
    for f in FIELDS:
        print(f"  {f:<18} {interval_text([c['after'][f] or 0.0 for c in cells])}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 samples, 40 steps, one cell (does not learn)")
    ap.add_argument("--data_seeds", default="0,1,2", help="comma-separated data seeds (default 0,1,2)")
    ap.add_argument("--train_seeds", default="0,1", help="comma-separated training seeds: model init and data order (default 0,1)")
    ap.add_argument("--split", default="test", choices=("val", "test"),
                    help="where to score (default test: the reported run; choose settings with val)")
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--baseline", default=None, metavar="OVERRIDES",
                    help='also train every cell with these recipe overrides (e.g. "--max_steps 1500") and print the '
                         "paired difference")
    ap.add_argument("--curve", type=int, default=0, metavar="K",
                    help="save a checkpoint every K steps and score each on val (on test: the final model only)")
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 2000; quick 300)")
    ap.add_argument("--difficulty", default="toy", choices=("toy", "easy", "medium", "hard"),
                    help="synthetic level (default toy: the level the tiny model learns; see README for easy)")
    ap.add_argument("--views", default=None, help="comma-separated query views to synthesise (default: all four)")
    ap.add_argument("--image_size", type=int, default=64,
                    help="synthetic image side in pixels (default 64: 4-8 image tokens each, 2x faster steps than 128)")
    ap.add_argument("--jobs", type=int, default=1, help="cells trained at once, one process and torch thread each "
                    "(default 1; at most the free cores: results do not depend on it)")
    ap.add_argument("--work_dir", type=Path, default=None, help="keep data, models and runs here (default: a temp folder)")
    ap.add_argument("--reuse", action="store_true",
                    help="with --work_dir: score a cell's finished run of exactly these settings instead of training "
                         "it again (choose on --split val, then score the same models on test once)")
    # Anything else is a recipe override, as on recipes/sft.py's command line (e.g. --max_steps 3000).
    args, overrides = ap.parse_known_args()
    args.n = args.n or (300 if args.quick else 2000)
    if args.quick:
        overrides = ["--max_steps", "40", *overrides]
        args.data_seeds, args.train_seeds = args.data_seeds.split(",")[0], args.train_seeds.split(",")[0]
    print(learning.pin_and_describe())
    set_threads_and_describe(1)
    # made now: its start time and machine line are the run's, not the report's
    name = "sft_learns" + ("" if args.difficulty == "toy" else f"_{args.difficulty}") + ("_val" if args.split == "val" else "")
    results = Results(name, quick=args.quick,
                      settings={"recipe": args.recipe.name, "overrides": overrides, "split": args.split,
                                "data_seeds": args.data_seeds, "train_seeds": args.train_seeds, "n": args.n,
                                "difficulty": args.difficulty, "baseline": args.baseline})
    grid = [(d, t) for d in seeds(args.data_seeds) for t in seeds(args.train_seeds)]
    arms = {"recipe": overrides, **({"baseline": [*overrides, *shlex.split(args.baseline)]} if args.baseline else {})}
    with tempfile.TemporaryDirectory(prefix="gleamx-sft-learns-") as tmp:
        root = args.work_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for d, t in grid:  # made once, before any job starts: the jobs share them
            make_data(root, d, args.n, args.difficulty, args.image_size, args.views.split(",") if args.views else None)
            make_model(root, t)
        jobs = [(d, t, args, arm_overrides, root, arm) for d, t in grid for arm, arm_overrides in arms.items()]
        done = run_cells(one_cell, jobs, args.jobs)
    out: dict[str, list[dict[str, Any]]] = {arm: [c for c, j in zip(done, jobs) if j[5] == arm] for arm in arms}
    for arm, cells in out.items():
        for c in cells:
            print(f"data seed {c['data_seed']}, training seed {c['train_seed']}, {arm}: {pct(c['after']['accuracy'])}% "
                  f"on {args.split} (matching {pct(c['after']['accuracy_positive'])}%, non-matching "
                  f"{pct(c['after']['accuracy_negative'])}%), train {c['train_s']:.0f} s", flush=True)

    c0 = out["recipe"][0]
    print(f"\ndata: synthesize(n={args.n}, difficulty={args.difficulty!r}, image_size={args.image_size}) per data seed "
          f"{args.data_seeds}; {args.split} split, {c0['after']['n']} pairs; model: tiny qwen2_5_vl per training seed "
          f"{args.train_seeds}, {c0['mode']}")
    print(f"recipe: {' '.join([args.recipe.name, *overrides])}; task={c0['task']}, {c0['steps']} steps x batch "
          f"{c0['batch']}, lr {c0['lr']:g}")
    print(f"eval: run_eval, {args.split} split, lang=en, greedy, 8 new tokens; intervals: Student t over the "
          f"{len(grid)} cells (the spread between seeds, not the test set's sampling error)")
    for arm, cells in out.items():
        print_cells(cells, f"{arm} ({' '.join(arms[arm]) or 'as shipped'})")
        for f in FIELDS:
            results.add(f"{arm}.{f}", [c["after"][f] or 0.0 for c in cells], unit="fraction",
                        label=f"{arm}: {f} on {args.split}, one value per cell (data seed x training seed)")
        if all(c["train_s"] == c["train_s"] for c in cells):  # NaN: reused runs, trained by an earlier command
            results.add(f"{arm}.train_s", [c["train_s"] for c in cells], unit="s", label=f"{arm}: training wall time")
        for step in sorted(set.intersection(*(set(c["curve"]) for c in cells))) if cells[0]["curve"] else []:
            results.add(f"{arm}.curve.{step}", [c["curve"][step] for c in cells], unit="fraction",
                        label=f"{arm}: accuracy on {args.split} of the checkpoint at step {step}, one value per cell")
        results.add(f"{arm}.cells_learned", sum(learned(c["after"]) for c in cells), unit="cells",
                    label=f"{arm}: cells with >= 75% accuracy and both classes above 50%, of {len(cells)}")
    if args.baseline:
        diffs = [paired(b["after"], r["after"], seed=i) for i, (r, b) in enumerate(zip(out["recipe"], out["baseline"]))]
        print("\nrecipe minus baseline, paired on the same samples:")
        for (d, t), x in zip(grid, diffs):
            print(f"  data seed {d}, training seed {t}: {diff_text(x)}")
        print(f"  over cells: {interval_text([x['diff'] for x in diffs], unit=' points')}")
        results.add("recipe_minus_baseline", [x["diff"] for x in diffs], unit="fraction",
                    label="paired accuracy difference recipe - baseline, per cell",
                    per_cell_ci=[[x["ci_low"], x["ci_high"]] for x in diffs])
    ok = sum(learned(c["after"]) for c in out["recipe"])
    print(f"\nverdict: {'LEARNS on every cell' if ok == len(grid) else f'learns on {ok} of {len(grid)} cells'} "
          "(>= 75% with both classes above 50%)")
    results.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
