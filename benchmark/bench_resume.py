"""gleamx-eval killed (SIGKILL) at random points and resumed each time, against one uninterrupted run.

An eval of ``--n`` samples on the tiny model (label task, ``--max-new-tokens`` 8, batches of 8) runs once straight
through, then as a chain: start, ``kill -9`` once ``predictions.jsonl`` holds a random number of answers
(the kill lands wherever the process happens to be: generating, scoring P(yes), writing a line), start
again, ``--kills`` times, then let it finish. Both runs write into the same ``--output`` path (the
straight one is moved aside first), so ``results.json`` must be byte-identical: compared ignoring
nothing. Prints each kill, whether the results match, how many answers were generated twice, and the
wall time of the chain against the straight run (the price of the kills: process starts, model loads,
the batches in flight), then reruns once more with nothing left to do (the fixed cost of one start).

    python benchmark/bench_resume.py              # 200 samples, 5 kills, ~1 min on 2 idle cores
    python benchmark/bench_resume.py --quick      # 48 samples, 2 kills, ~30 s
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)


def _complete_rows(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="samples to evaluate (default 200)")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=8, help="answer length (default 8: label answers)")
    ap.add_argument("--image-size", type=int, default=128, help="satellite tile side of the synthetic data (default 128)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads of each gleamx-eval process (default 2; the same in every run)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.kills = 48, 2
    set_threads_and_describe(args.threads)
    rng = random.Random(args.seed)

    from gleamx.synth import synthesize
    from gleamx.models import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        if args.keep:
            root.mkdir(parents=True, exist_ok=False)
        # the train split holds 80% of the pairs: enough for --n samples from a small synthesis
        synthesize(root / "data", n=int(args.n * 1.3) + 10, seed=1, image_size=args.image_size)
        model = build_tiny_model("qwen2_5_vl", root / "model")
        out = root / "eval"
        cmd = [sys.executable, "-m", "gleamx.cli.eval", "--model", str(model), "--data", str(root / "data"),
               "--split", "train", "--limit", str(args.n), "--task", "label", "--lang", "en", "--max-new-tokens", str(args.max_new_tokens),
               "--batch-size", str(args.batch_size), "--bootstrap", "200", "--output", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}

        def run_to_end() -> float:
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"gleamx-eval failed:\n{proc.stderr[-3000:]}")
            return time.perf_counter() - t0

        t_straight = run_to_end()
        straight = root / "straight"
        out.rename(straight)
        n = json.loads((straight / "results.json").read_text())["n"]
        print(f"uninterrupted: {n} samples (label task, {args.max_new_tokens} new tokens, batch {args.batch_size}) "
              f"in {t_straight:.1f} s "
              f"wall, process start and model load included")

        # kill points: distinct answer counts, spread over the run, in increasing order
        targets = sorted(rng.sample(range(1, n), args.kills))
        t_chain, pred = 0.0, out / "predictions.jsonl"
        print(f"chain: SIGKILL once predictions.jsonl holds {', '.join(map(str, targets))} answers, then to the end")
        for i, target in enumerate(targets, start=1):
            # a kill point the last run already passed moves to the next answer this run writes
            target = min(max(target, _complete_rows(pred) + 1), n)
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            while proc.poll() is None and _complete_rows(pred) < target:
                time.sleep(rng.uniform(0.005, 0.05))
            if proc.poll() is not None:
                sys.exit(f"run {i} ended before its kill point ({target} answers):\n{proc.stderr.read()[-3000:]}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            t_chain += time.perf_counter() - t0
            size = pred.stat().st_size
            partial = "" if pred.read_bytes()[-1:] == b"\n" else " (a half-written line left behind)"
            print(f"  kill {i} (once {target} answers are written): at {_complete_rows(pred)} complete lines, "
                  f"{time.perf_counter() - t0:5.1f} s after the start"
                  f"{partial}; file {size:,} bytes")
        t_chain += run_to_end()

        a, b = (straight / "results.json").read_bytes(), (out / "results.json").read_bytes()
        rows = [json.loads(x) for x in pred.read_text(encoding="utf-8").splitlines()]
        twice = len(rows) - len({r["id"] for r in rows})

        def answers(path: Path) -> dict[str, tuple]:  # the last row per id is the one scored
            return {r["id"]: (r["prediction"], r["p_yes"]) for r in
                    (json.loads(x) for x in path.read_text(encoding="utf-8").splitlines())}

        same_answers = answers(straight / "predictions.jsonl") == answers(pred)
        same_report = all((straight / f).read_bytes() == (out / f).read_bytes() for f in ("results.md", "report.html"))
        print(f"results.json byte-identical to the uninterrupted run: {'yes' if a == b else 'NO'} "
              f"(sha256 {hashlib.sha256(a).hexdigest()[:12]} vs {hashlib.sha256(b).hexdigest()[:12]}); "
              f"every answer and P(yes) identical: {'yes' if same_answers else 'NO'}; "
              f"results.md and report.html identical: {'yes' if same_report else 'NO'}")
        if a != b:
            ra, rb = json.loads(a), json.loads(b)
            print("  differing fields: " + ", ".join(
                f"{k}: {json.dumps(ra.get(k))[:150]} vs {json.dumps(rb.get(k))[:150]}"
                for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k)))
        print(f"answers generated twice: {twice} of {n} (each kill redoes at most the batch it interrupted)")
        print(f"wall time: chain {t_chain:.1f} s vs uninterrupted {t_straight:.1f} s = {t_chain / t_straight:.2f}x; "
              f"time lost to {args.kills} kills: {t_chain - t_straight:.1f} s "
              f"({(t_chain - t_straight) / args.kills:.1f} s per kill)")
        t_noop = run_to_end()
        unchanged = (out / "results.json").read_bytes() == a
        print(f"a rerun with nothing left to generate (process start, imports, processor, scoring, reports): "
              f"{t_noop:.1f} s, results.json unchanged: {'yes' if unchanged else 'NO'}; so a kill costs about one "
              f"restart ({t_noop:.1f} s) plus the batch it interrupted")
        return 0 if a == b and same_answers and same_report and unchanged else 1


if __name__ == "__main__":
    sys.exit(main())
