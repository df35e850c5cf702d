"""SFT interrupted by SIGTERM at random points and resumed each time, against one uninterrupted run.

The tiny recipe (``recipes/tiny/sft_lora.yaml``) trains ``--steps`` steps on synthetic data, once
straight through and once as a chain: start, SIGTERM at a random moment (a scheduler's pre-emption),
``--resume_from_checkpoint true``, again, ``--kills`` times, then let it finish. gleamx saves a
checkpoint at the step boundary on SIGTERM, so every loss of the chain must equal the straight
run's and the final adapters must be byte-identical. Straight run and chain alternate ``--repeats``
times (3), each chain with its own random kill points. Prints each round's loss agreement, whether
the adapters match, and the wall-time ratio chain / straight (the price of the kills: process
restarts, model loads, checkpoint writes) as the median of the per-round ratios with min and max.

    python benchmark/bench_resume_sft.py              # 60 steps, 5 kills, 3 rounds: ~10 min on 2 idle cores
    python benchmark/bench_resume_sft.py --quick      # 24 steps, 2 kills, 3 rounds: ~4 min idle, ~9 min loaded

Figures go to ``benchmark/results/bench_resume_sft.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import alternate, ratios, set_threads_and_describe, spread, timed  # benchmark/machine.py
from results import Results  # benchmark/results.py

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of straight run + chain, alternating (default 3)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.kills = 24, 2
    set_threads_and_describe(2)
    results = Results("bench_resume_sft", quick=args.quick,
                      settings={"steps": args.steps, "kills": args.kills, "repeats": args.repeats, "seed": args.seed})
    rng = random.Random(args.seed)

    from gleamx.synth import synthesize
    from gleamx.models import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "data", n=80, seed=3, image_size=64)
        model = build_tiny_model("qwen2_5_vl", root / "model")
        cmd = [sys.executable, str(ROOT / "recipes" / "sft.py"), "--config", str(RECIPE),
               "--model_name_or_path", str(model), "--dataset_name", str(root / "data"), "--max_steps",
               str(args.steps), "--save_strategy", "no", "--per_device_train_batch_size", "4", "--logging_steps", "1",
               "--report_to", "none"]

        def straight_run(r: int) -> float:
            t, _ = timed(lambda: subprocess.run([*cmd, "--output_dir", str(root / f"straight-{r}")], check=True,
                                                capture_output=True))
            return t

        def chain_run(r: int) -> dict | None:
            out = root / f"chain-{r}"
            t0 = time.perf_counter()
            stops: list[int] = []
            targets = sorted(rng.sample(range(1, args.steps - 1), args.kills))
            for k in range(args.kills + 1):
                resume = ["--resume_from_checkpoint", "true"] if k else []
                proc = subprocess.Popen([*cmd, "--output_dir", str(out), *resume], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                if k < args.kills:
                    # The Trainer prints one "{'loss': ...}" line per step: SIGTERM once the target step is logged,
                    # i.e. somewhere inside the next step.
                    step = stops[-1] if stops else 0
                    target = max(targets[k], step + 1)  # at least one step of this process: its handler is set
                    for line in proc.stdout:
                        step += "'loss'" in line
                        if step >= target:
                            break
                    time.sleep(rng.uniform(0.0, 0.5))
                    proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate()
                if proc.returncode == 0:
                    break
                if proc.returncode != 128 + signal.SIGTERM:
                    print(f"round {r + 1}, run {k} exited {proc.returncode}:\n{err[-3000:]}", file=sys.stderr)
                    return None
                stops.append(max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")))
            t = time.perf_counter() - t0
            a, b = _losses(root / f"straight-{r}"), _losses(out)
            return {"t": t, "targets": targets, "stops": stops, "n_losses": (len(b), len(a)),
                    "worst": max(abs(a[s] - b[s]) for s in a if s in b) if set(a) & set(b) else float("inf"),
                    "same_steps": sorted(a) == sorted(b),
                    "same_adapter": ((root / f"straight-{r}" / "adapter_model.safetensors").read_bytes()
                                     == (out / "adapter_model.safetensors").read_bytes())}

        # straight, chain, straight, chain, ...: load from other processes hits both alike
        got = alternate({"straight": straight_run, "chain": chain_run}, args.repeats)
    if any(c is None for c in got["chain"]):
        return 1
    t_straight, chains = got["straight"], got["chain"]
    print(f"{args.repeats} rounds of {args.steps} steps straight, then with {args.kills} SIGTERMs at random steps "
          "(each round its own)")
    ok = True
    for r, (t, c) in enumerate(zip(t_straight, chains, strict=True), start=1):
        ok &= c["worst"] <= 1e-5 and c["same_steps"]
        print(f"  round {r}: straight {t:.1f} s; chain {c['t']:.1f} s, SIGTERM during the step after {c['targets']}, "
              f"checkpoints saved at steps {c['stops']}; losses {c['n_losses'][0]}/{c['n_losses'][1]} steps, largest "
              f"difference {c['worst']:.2e}; final adapter byte-identical: {c['same_adapter']}")
    t_chain = [c["t"] for c in chains]
    print(f"every loss equal (<= 1e-5) in every round: {'yes' if ok else 'NO'}; final adapter byte-identical in "
          f"{sum(c['same_adapter'] for c in chains)} of {args.repeats} rounds")
    print(f"wall time, median (min, max): straight {spread(t_straight, '.1f', ' s')}, with {args.kills} kills "
          f"{spread(t_chain, '.1f', ' s')}")
    print(f"ratio chain / straight, per round: {spread(ratios(t_chain, t_straight), '.2f', 'x')}")
    results.add("kills", args.kills * len(chains), unit="kills", fmt="d", label="SIGTERMs in all rounds")
    results.add("rounds_losses_equal", sum(c["worst"] <= 1e-5 and c["same_steps"] for c in chains), unit="rounds",
                fmt="d", label="rounds with every loss equal (<= 1e-5) to the straight run's")
    if all(math.isfinite(c["worst"]) for c in chains):  # inf: a chain shared no logged step with its straight run
        results.add("worst_loss_diff", [c["worst"] for c in chains], unit="", fmt=".1e",
                    label="largest loss difference to the straight run, per round")
    results.add("rounds_adapter_identical", sum(c["same_adapter"] for c in chains), unit="rounds", fmt="d",
                label="rounds whose final adapter was byte-identical")
    results.add("straight_s", t_straight, unit="s", fmt=".1f", label="straight run, wall time")
    results.add("chain_s", t_chain, unit="s", fmt=".1f", label=f"with {args.kills} kills, wall time")
    results.add("chain_over_straight", ratios(t_chain, t_straight), unit="x", fmt=".2f",
                label="chain / straight wall time, per round")
    results.write()
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
