"""gleamx annotate: throughput of the sequential vs the concurrent client against a local OpenAI-compatible stub with
artificial latency, a kill -9 / resume chain that must lose and duplicate nothing, and the cost report.

    python benchmark/bench_annotate.py              # ~1 min on 2 CPU cores
    python benchmark/bench_annotate.py --quick

The stub runs in its own process (a ``ThreadingHTTPServer`` on 127.0.0.1) and answers each request after
``--latency`` seconds with an explanation whose verdict follows the label stated in the prompt, and a fixed token
usage. Throughput is pairs (sample x language) per second over the request phase of ``annotate()`` (from the
first progress call, after loading and hashing, to the last), at ``--concurrency 1`` and ``16``, alternating
(1, 16, 1, 16, 1, 16) so that background load hits both alike; the ratio is per round. The kill chain runs
``gleamx annotate`` as a process, SIGKILLs it once ``annotations.jsonl`` holds a random number of lines, restarts
it with the same command and lets the last one finish. Figures go to ``benchmark/results/bench_annotate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from machine import alternate, ratios, set_threads_and_describe, spread  # benchmark/machine.py
from results import Results  # benchmark/results.py

ROOT = Path(__file__).resolve().parent.parent
ENV = "GLEAMX_BENCH_ANNOTATE_KEY"
USAGE = {"prompt_tokens": 1100, "completion_tokens": 160}

_STUB = r'''
import hashlib, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
latency, yes_note_en, yes_note_zh, usage = float(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
lock = threading.Lock()
stats = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "by_pair": {}}

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        with lock:
            data = json.dumps(stats).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        parts = body["messages"][1]["content"]
        text = parts[-1]["text"]
        zh = "图1" in text
        pair = hashlib.sha1(parts[0]["image_url"]["url"].encode()).hexdigest()[:12] + ("/zh" if zh else "/en")
        yes = (yes_note_zh if zh else yes_note_en) in text
        with lock:
            stats["requests"] += 1
            stats["prompt_tokens"] += usage["prompt_tokens"]
            stats["completion_tokens"] += usage["completion_tokens"]
            stats["by_pair"][pair] = stats["by_pair"].get(pair, 0) + 1
        time.sleep(latency)
        answer = ("图1与图2的道路和建筑布局" + ("一致。\n结论：是" if yes else "不同。\n结论：否")) if zh else \
                 ("The roads and buildings of both images " + ("agree.\nAnswer: Yes" if yes else "differ.\nAnswer: No"))
        data = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": answer}}],
                           "usage": {**usage, "total_tokens": sum(usage.values())}}).encode()
        try:
            self.send_response(200); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
        except OSError:
            pass

s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
'''


def write_data(root: Path, n: int) -> Path:
    from PIL import Image

    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(n):
        for kind, colour in (("q", (i % 256, (7 * i) % 256, 90)), ("s", ((5 * i) % 256, i % 256, 160))):
            Image.new("RGB", (96, 96), colour).save(root / "img" / f"{kind}{i}.png")
        rows.append({"id": f"b{i:04d}", "query_image": f"img/q{i}.png", "satellite_image": f"img/s{i}.png",
                     "query_view": "uav", "label": i % 2 == 0, "split": "train"})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root / "data.jsonl"


class StubProcess:
    def __init__(self, latency: float) -> None:
        from gleamx.curate.annotate import PROMPTS

        notes = [PROMPTS[lang]["label_given"][True] for lang in ("en", "zh")]
        self.proc = subprocess.Popen([sys.executable, "-c", _STUB, str(latency), *notes, json.dumps(USAGE)],
                                     stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url.rsplit("/v1", 1)[0] + "/stats", timeout=10) as r:
            return json.loads(r.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def throughput(data: Path, url: str, work: Path, concurrency: int, tag: str) -> float:
    from gleamx.curate.annotate import AnnotateConfig, annotate

    marks: list[float] = []
    cfg = AnnotateConfig(data=str(data), model="bench-model", base_url=url, out=str(work / tag), api_key_env=ENV,
                         concurrency=concurrency, timeout=30)
    summary = annotate(cfg, progress=lambda done, total: marks.append(time.perf_counter()))
    pairs = summary.as_dict()["n_ok"]
    assert pairs == len(summary.annotations), summary.as_dict()
    return pairs / (marks[-1] - marks[0])


def kill_chain(data: Path, url: str, stub: StubProcess, out: Path, n_pairs: int, kills: int,
               seed: int) -> dict[str, float]:
    """Kill, restart, ... finish; print what was lost, duplicated and sent again, and return those counts."""
    before = stub.stats()
    cmd = [sys.executable, "-m", "gleamx.cli.main", "annotate", "--data", str(data), "--model", "bench-model",
           "--base-url", url, "--out", str(out), "--api-key-env", ENV, "--concurrency", "16",
           "--price-in", "2.5", "--price-out", "10"]
    from gleamx.curate.annotate import CACHE_NAME, COST_NAME

    cache = out / CACHE_NAME
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, n_pairs - 1), kills))
    print(f"kill chain: {n_pairs} pairs at concurrency 16; SIGKILL once annotations.jsonl holds "
          f"{', '.join(map(str, points))} lines, then to the end")

    def lines() -> int:
        return cache.read_bytes().count(b"\n") if cache.is_file() else 0

    t0 = time.perf_counter()
    for k, point in enumerate(points, 1):
        goal = max(point, lines() + 1)  # each process saves at least one line before its kill
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while lines() < goal and proc.poll() is None:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"  kill {k}: at {lines()} complete lines, {cache.stat().st_size:,} bytes")
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"the last run failed: {done.stderr.strip()}")
    after = stub.stats()

    rows = [json.loads(ln) for ln in cache.read_text(encoding="utf-8").splitlines()]
    keys = [(r["id"], r["lang"]) for r in rows]
    annotated = [json.loads(ln) for ln in (out / "annotated.jsonl").read_text(encoding="utf-8").splitlines()]
    ids = [r["id"] for r in annotated]
    expected = {f"b{i:04d}" for i in range(n_pairs // 2)}
    both = sum(set(r["explanation"]) == {"en", "zh"} for r in annotated)
    sent = after["requests"] - before["requests"]
    by_pair = {k: v - before["by_pair"].get(k, 0) for k, v in after["by_pair"].items()}
    again = sum(v > 1 for v in by_pair.values())
    extra = sum(v - 1 for v in by_pair.values())
    print(f"  samples in annotated.jsonl: {len(ids)} of {len(expected)}; lost {len(expected - set(ids))}, "
          f"duplicated {len(ids) - len(set(ids))}; with both languages: {both}")
    print(f"  cache lines: {len(rows)} for {len(set(keys))} distinct (sample, language) of {n_pairs}; "
          f"duplicated {len(keys) - len(set(keys))}")
    print(f"  requests sent: {sent} for {n_pairs} pairs: {extra} sent again for {again} pairs that were in flight at "
          f"a kill (reply never saved); at most 16 per kill at concurrency 16")
    print(f"  chain wall time {wall:.1f} s (process starts included); last process: "
          f"{next((ln for ln in done.stdout.splitlines() if 'explained' in ln), '').strip()}")
    report = json.loads((out / COST_NAME).read_text())
    from gleamx.curate.annotate import cost_lines

    print("cost report (example prices 2.5 / 10 per 1 M tokens in / out):")
    for line in cost_lines(report):
        print(f"  {line}")
    (m,) = report["models"]
    print(f"  cache total vs the stub's usage of the saved replies: tokens in {m['prompt_tokens']:,} = "
          f"{len(rows)} x {USAGE['prompt_tokens']:,}: {m['prompt_tokens'] == len(rows) * USAGE['prompt_tokens']}; "
          f"tokens out {m['completion_tokens']:,} = {len(rows)} x {USAGE['completion_tokens']}: "
          f"{m['completion_tokens'] == len(rows) * USAGE['completion_tokens']}; the stub served "
          f"{after['prompt_tokens'] - before['prompt_tokens']:,} in (the difference: replies lost to the kills)")
    return {"lost": len(expected - set(ids)), "duplicated": len(ids) - len(set(ids)),
            "cache_duplicated": len(keys) - len(set(keys)), "resent": extra, "resent_pairs": again,
            "cost_matches": float(m["prompt_tokens"] == len(rows) * USAGE["prompt_tokens"]
                                  and m["completion_tokens"] == len(rows) * USAGE["completion_tokens"]),
            "tokens_lost_in": after["prompt_tokens"] - before["prompt_tokens"] - m["prompt_tokens"],
            "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int, default=None, help="samples (x 2 languages); default 48, quick 24")
    ap.add_argument("--latency", type=float, default=0.1, help="the stub's seconds per request")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = args.samples or (24 if args.quick else 48)
    os.environ[ENV] = "sk-bench-not-a-real-key"
    set_threads_and_describe(1)
    results = Results("bench_annotate", quick=args.quick,
                      settings={"samples": n, "latency": args.latency, "repeats": args.repeats, "kills": args.kills,
                                "seed": args.seed})
    stub = StubProcess(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            data = write_data(work / "data", n)
            print(f"throughput: {n} samples x en,zh = {2 * n} pairs, stub latency {1000 * args.latency:.0f} ms "
                  f"per request, {args.repeats} alternating rounds")
            runs = alternate({"sequential": lambda r: throughput(data, stub.url, work, 1, f"seq{r}"),
                              "concurrent": lambda r: throughput(data, stub.url, work, 16, f"conc{r}")},
                             args.repeats)
            print(f"  sequential (concurrency 1) : {spread(runs['sequential'], '.1f', ' pairs/s')}")
            print(f"  concurrent (concurrency 16): {spread(runs['concurrent'], '.1f', ' pairs/s')}")
            r = ratios(runs["concurrent"], runs["sequential"])
            print(f"  ratio concurrent / sequential: {spread(r, '.2f', 'x')}; target >= 8x; "
                  f"ideal {min(16, 2 * n):d}x at this latency")
            chain = kill_chain(data, stub.url, stub, work / "chain", 2 * n, args.kills, args.seed)
    finally:
        stub.close()
    results.add("sequential_pairs_s", runs["sequential"], unit="pairs/s", fmt=".1f", label="sequential (concurrency 1)")
    results.add("concurrent_pairs_s", runs["concurrent"], unit="pairs/s", fmt=".1f",
                label="concurrent (concurrency 16)")
    results.add("concurrency_ratio", r, unit="x", fmt=".2f", label="concurrent / sequential throughput, per round")
    labels = {"lost": "kill chain: samples lost", "duplicated": "kill chain: samples duplicated in annotated.jsonl",
              "cache_duplicated": "kill chain: (sample, language) pairs duplicated in the cache",
              "resent": "kill chain: requests sent again (in flight at a kill)",
              "resent_pairs": "kill chain: pairs asked again", "cost_matches":
              "cost report equals the stub's usage of the saved replies (1 = yes)",
              "tokens_lost_in": "kill chain: prompt tokens of replies lost to the kills",
              "wall_s": "kill chain wall time"}
    for key, label in labels.items():
        results.add(f"chain.{key}", chain[key], unit="s" if key == "wall_s" else "", label=label,
                    fmt=".1f" if key == "wall_s" else ",.0f")
    results.write()


if __name__ == "__main__":
    main()
