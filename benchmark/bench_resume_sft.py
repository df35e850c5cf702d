"""SFT interrupted by SIGTERM at random points and resumed each time, against one uninterrupted run.

The tiny recipe (``recipes/tiny/sft_lora.yaml``) trains ``--steps`` steps on synthetic data, once
straight through and once as a chain: start, SIGTERM at a random moment (a scheduler's pre-emption),
``--resume_from_checkpoint true``, again, ``--kills`` times, then let it finish. gleamx saves a
checkpoint at the step boundary on SIGTERM, so every loss of the chain must equal the straight
run's and the final adapters must be byte-identical. Prints the loss agreement, whether the
adapters match, and the wall-time ratio chain / straight (the price of the kills: process restarts,
model loads, checkpoint writes).

    python benchmark/bench_resume_sft.py              # 60 steps, 5 kills, ~3-5 min on 2 cores
    python benchmark/bench_resume_sft.py --quick      # 24 steps, 2 kills
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny" / "sft_lora.yaml"


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.kills = 24, 2
    set_threads_and_describe(2)
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

        t0 = time.perf_counter()
        subprocess.run([*cmd, "--output_dir", str(root / "straight")], check=True, capture_output=True)
        straight_s = time.perf_counter() - t0

        out = root / "chain"
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
                print(f"run {k} exited {proc.returncode}:\n{err[-3000:]}", file=sys.stderr)
                return 1
            stops.append(max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")))
        chain_s = time.perf_counter() - t0

        a, b = _losses(root / "straight"), _losses(out)
        worst = max(abs(a[s] - b[s]) for s in a)
        same_adapter = ((root / "straight" / "adapter_model.safetensors").read_bytes()
                        == (out / "adapter_model.safetensors").read_bytes())
    print(f"steps {args.steps}, SIGTERM during the step after {targets}; checkpoints saved at steps {stops}")
    print(f"losses: {len(b)}/{len(a)} steps, largest difference {worst:.2e}; final adapter byte-identical: {same_adapter}")
    print(f"wall time: straight {straight_s:.1f} s, with {len(stops)} kills {chain_s:.1f} s "
          f"-> ratio {chain_s / straight_s:.2f}x")
    return 0 if (worst <= 1e-5 and sorted(b) == sorted(a)) else 1


if __name__ == "__main__":
    sys.exit(main())
