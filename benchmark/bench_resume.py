"""gleamx-eval killed (SIGKILL) at random points and resumed each time, against one uninterrupted run.

An eval of ``--n`` samples on the tiny model (label task, ``--max-new-tokens`` 8, batches of 8) runs once straight
through, then as a chain: start, ``kill -9`` once ``predictions.jsonl`` holds a random number of answers
(the kill lands wherever the process happens to be: generating, scoring P(yes), writing a line), start
again, ``--kills`` times, then let it finish. Both runs write into the same ``--output`` path (the
straight one is moved aside first), so ``results.json`` must be byte-identical: compared ignoring
nothing. After each chain it reruns once more with nothing left to do (the fixed cost of one start).
Straight run and chain alternate ``--repeats`` times (3), each chain with its own random kill points.
Prints each round's kills, whether the results match, how many answers were generated twice, and the
wall time of the chain against the straight run (the price of the kills: process starts, model loads,
the batches in flight) as the median of the per-round ratios with min and max.

    python benchmark/bench_resume.py              # 200 samples, 5 kills, 3 rounds: ~3 min on 2 idle cores
    python benchmark/bench_resume.py --quick      # 48 samples, 2 kills, 3 rounds: ~1.5 min

Figures go to ``benchmark/results/bench_resume.json``.
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

from machine import alternate, ratios, set_threads_and_describe, spread  # benchmark/machine.py
from results import Results  # benchmark/results.py


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
    ap.add_argument("--repeats", type=int, default=3, help="rounds of straight run + chain, alternating (default 3)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.kills = 48, 2
    set_threads_and_describe(args.threads)
    results = Results("bench_resume", quick=args.quick,
                      settings={"n": args.n, "kills": args.kills, "repeats": args.repeats, "batch_size": args.batch_size,
                                "max_new_tokens": args.max_new_tokens, "threads": args.threads, "seed": args.seed})
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

        def answers(path: Path) -> dict[str, tuple]:  # the last row per id is the one scored
            return {r["id"]: (r["prediction"], r["p_yes"]) for r in
                    (json.loads(x) for x in path.read_text(encoding="utf-8").splitlines())}

        def straight_run(r: int) -> float:
            t = run_to_end()
            out.rename(root / f"straight-{r}")
            return t

        def chain_run(r: int) -> dict:
            """Kill, restart, ... finish, into the same --output; then compare with this round's straight run."""
            straight, pred = root / f"straight-{r}", out / "predictions.jsonl"
            n = json.loads((straight / "results.json").read_text())["n"]
            targets = sorted(rng.sample(range(1, n), args.kills))  # distinct answer counts, in increasing order
            t_chain, kills = 0.0, []
            for target in targets:
                # a kill point the last run already passed moves to the next answer this run writes
                target = min(max(target, _complete_rows(pred) + 1), n)
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                while proc.poll() is None and _complete_rows(pred) < target:
                    time.sleep(rng.uniform(0.005, 0.05))
                if proc.poll() is not None:
                    sys.exit(f"a run ended before its kill point ({target} answers):\n{proc.stderr.read()[-3000:]}")
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                t_chain += time.perf_counter() - t0
                half = pred.read_bytes()[-1:] != b"\n"
                kills.append(f"{_complete_rows(pred)}{'+' if half else ''}")
            t_chain += run_to_end()
            a, b = (straight / "results.json").read_bytes(), (out / "results.json").read_bytes()
            rows = [json.loads(x) for x in pred.read_text(encoding="utf-8").splitlines()]
            res = {"n": n, "t": t_chain, "targets": targets, "kills": kills, "same": a == b,
                   "sha": (hashlib.sha256(a).hexdigest()[:12], hashlib.sha256(b).hexdigest()[:12]),
                   "same_answers": answers(straight / "predictions.jsonl") == answers(pred),
                   "same_report": all((straight / f).read_bytes() == (out / f).read_bytes()
                                      for f in ("results.md", "report.html")),
                   "twice": len(rows) - len({row["id"] for row in rows})}
            if a != b:
                ra, rb = json.loads(a), json.loads(b)
                res["diff"] = ", ".join(f"{k}: {json.dumps(ra.get(k))[:150]} vs {json.dumps(rb.get(k))[:150]}"
                                        for k in sorted(set(ra) | set(rb)) if ra.get(k) != rb.get(k))
            res["t_noop"] = run_to_end()  # nothing left to generate: the fixed cost of one start
            res["noop_same"] = (out / "results.json").read_bytes() == a
            out.rename(root / f"chain-{r}")
            return res

        # straight, chain, straight, chain, ...: load from other processes hits both alike
        got = alternate({"straight": straight_run, "chain": chain_run}, args.repeats)
        t_straight, chains = got["straight"], got["chain"]
        print(f"{args.repeats} rounds, each: one uninterrupted eval of {chains[0]['n']} samples (label task, "
              f"{args.max_new_tokens} new tokens, batch {args.batch_size}; process start and model load included), "
              f"then a chain of SIGKILLs once predictions.jsonl holds a random number of answers, then to the end")
        ok = True
        for r, (t, c) in enumerate(zip(t_straight, chains, strict=True), start=1):
            good = c["same"] and c["same_answers"] and c["same_report"] and c["noop_same"]
            ok &= good
            print(f"  round {r}: straight {t:.1f} s; chain {c['t']:.1f} s, killed once {', '.join(map(str, c['targets']))} "
                  f"answers were written (complete lines then: {', '.join(c['kills'])}; + = a half-written line left); "
                  f"results.json byte-identical: {'yes' if c['same'] else 'NO'} (sha256 {c['sha'][0]} vs {c['sha'][1]}); "
                  f"answers and P(yes) identical: {'yes' if c['same_answers'] else 'NO'}; results.md and report.html "
                  f"identical: {'yes' if c['same_report'] else 'NO'}; answers generated twice: {c['twice']}")
            if "diff" in c:
                print(f"    differing fields: {c['diff']}")
        t_chain = [c["t"] for c in chains]
        per_kill = [(c - s) / args.kills for c, s in zip(t_chain, t_straight, strict=True)]
        print(f"results identical in every round: {'yes' if ok else 'NO'}; answers generated twice: "
              f"{sum(c['twice'] for c in chains)} of {sum(c['n'] for c in chains)} (each kill redoes at most the batch "
              "it interrupted)")
        print(f"wall time, median (min, max) over {args.repeats} rounds: straight {spread(t_straight, '.1f', ' s')}, "
              f"chain of {args.kills} kills {spread(t_chain, '.1f', ' s')}")
        print(f"ratio chain / straight, per round: {spread(ratios(t_chain, t_straight), '.2f', 'x')}; "
              f"time lost per kill: {spread(per_kill, '.1f', ' s')}")
        print(f"a rerun with nothing left to generate (process start, imports, processor, scoring, reports): "
              f"{spread([c['t_noop'] for c in chains], '.1f', ' s')}, results.json unchanged: "
              f"{'yes' if all(c['noop_same'] for c in chains) else 'NO'}; so a kill costs about one restart plus the "
              "batch it interrupted")
        record(results, t_straight, chains, per_kill, args.kills)
        return 0 if ok else 1


def record(results: Results, t_straight: list[float], chains: list[dict], per_kill: list[float], kills: int) -> None:
    """The figures the READMEs quote, to benchmark/results/bench_resume.json."""
    t_chain = [c["t"] for c in chains]
    results.add("kills", kills * len(chains), unit="kills", fmt="d", label="SIGKILLs in all rounds")
    results.add("rounds_identical", sum(c["same"] for c in chains), unit="rounds", fmt="d",
                label="rounds whose results.json was byte-identical to the straight run's")
    results.add("rounds_same_answers", sum(c["same_answers"] for c in chains), unit="rounds", fmt="d",
                label="rounds with every answer and P(yes) identical")
    results.add("rounds_same_reports", sum(c["same_report"] for c in chains), unit="rounds", fmt="d",
                label="rounds with results.md and report.html identical")
    results.add("generated_twice", sum(c["twice"] for c in chains), unit="answers", fmt="d",
                label=f"answers generated twice, of {sum(c['n'] for c in chains)}")
    results.add("straight_s", t_straight, unit="s", fmt=".1f", label="uninterrupted eval, wall time")
    results.add("chain_s", t_chain, unit="s", fmt=".1f", label=f"chain of {kills} kills, wall time")
    results.add("chain_over_straight", ratios(t_chain, t_straight), unit="x", fmt=".2f",
                label="chain / straight wall time, per round")
    results.add("per_kill_s", per_kill, unit="s", fmt=".1f", label="time lost per kill")
    results.add("noop_s", [c["t_noop"] for c in chains], unit="s", fmt=".1f",
                label="a rerun with nothing left to generate (one restart)")
    results.write()

if __name__ == "__main__":
    sys.exit(main())
