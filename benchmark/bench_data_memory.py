"""Peak memory of training's data path for 1k and 20k samples: it should stay flat in the number of samples.

``--streamed`` measures the streamed path instead (``dataset_streaming: true``: ``stream_samples`` ->
``build_sft_dataset`` on the stream -> every conversation row read, images decoded), into
``benchmark/results/bench_stream_memory.json``: nothing is written to Arrow files, so no mapped pages grow either.

Training's data path is ``load_samples(...).dataset`` (read, validate every record and decode every image
once, as a ``datasets.Dataset`` with ``gleamx.data.FEATURES``) -> ``build_sft_dataset`` (prompt building,
a ``.map``) -> reading every conversation row as the collator does (images decoded from Arrow).
Each size runs in a fresh subprocess, which reports its peak RSS (``VmHWM``: ``ru_maxrss`` would keep the
parent's peak across the exec), its peak RSS after the imports, and at the end its heap (``RssAnon``) and
mapped-file pages (``RssFile``); the parent prints them and the ratios 20k/1k. Peak RSS counts the pages of the memory-mapped Arrow files that were read
(page cache the kernel can drop, growing with the data read); the heap is what Python holds.

The data: ``gleamx data synth`` of 1250 samples at ``image_size=32`` (its train split has 1000 rows) is
the 1k set. Synthesising 20k samples takes over 5 minutes on a 2-core machine, so the 20k set repeats
the 1k train rows 20 times under new ids (``<id>-r<k>``), pointing at the same image files. ``--quick``
uses a quarter of each (250 and 5000 samples).

The sizes alternate, 1k, 20k, 1k, 20k, ... (``--repeats`` 3 rounds, never fewer: a ratio of memory is the
median of the per-round ratios of fresh processes, not one pair), and every figure is printed and recorded
(``benchmark/results/bench_data_memory.json``) as median (min, max, n).

    python benchmark/bench_data_memory.py
    python benchmark/bench_data_memory.py --quick

The heap stays flat (a few MB for 20x the samples: the ids seen, for the duplicate-id check); the rest of
the peak's growth is memory-mapped Arrow pages read (RssFile). benchmark/README.md quotes the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import alternate, ratios, set_threads_and_describe, spread  # benchmark/machine.py
from results import Results  # benchmark/results.py

SIZES = (1_000, 20_000)

CHILD = r"""
import sys
from gleamx.data import load_samples
from gleamx.train.sft_data import build_sft_dataset

def status_mb(field):  # RssAnon: the heap; RssFile: mapped files, Arrow's memory-mapped data among them
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

def rss_mb():  # this process's peak; not ru_maxrss, which keeps the forking parent's peak across exec
    return status_mb("VmHWM")

base = rss_mb()
pixels = n_rows = 0
if sys.argv[2] == "streamed":  # dataset_streaming: true - read as training goes, nothing materialised
    from gleamx.data.stream import stream_samples

    stream = stream_samples(sys.argv[1], split="train")
    sft = build_sft_dataset(stream.dataset, "both", "explain")
    for row in sft.dataset:  # what the collator reads, row by row
        n_rows += 1
        pixels += sum(im.size[0] * im.size[1] for im in row["images"])
    n_samples = stream.checker.n_records
else:
    loaded = load_samples(sys.argv[1], split="train")
    sft = build_sft_dataset(loaded.dataset, "both", "explain")
    for i in range(0, len(sft.dataset), 64):  # what the collator reads, a batch at a time
        for row in sft.dataset[i : i + 64]["images"]:
            pixels += sum(im.size[0] * im.size[1] for im in row)
    n_samples, n_rows = len(loaded.dataset), len(sft.dataset)
print(n_samples, n_rows, round(base, 1), round(rss_mb(), 1),
      round(status_mb("RssAnon"), 1), round(status_mb("RssFile"), 1))
"""


def _synthesize(out: Path, n: int) -> None:
    try:
        from gleamx.synth.build import synthesize  # the synth package's new home
    except ImportError:
        from gleamx.data.synth.build import synthesize
    synthesize(out, n, seed=0, image_size=32)


def make_sets(root: Path, sizes: tuple[int, int] = SIZES) -> dict[int, Path]:
    """``{size: train JSONL}``: the synthetic train split (the small size) and its rows repeated (the large)."""
    _synthesize(root, math.ceil(sizes[0] / 0.8))  # the train split is 80% of the samples
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= sizes[0], len(rows)
    rows = rows[: sizes[0]]
    sets = {}
    for size in sizes:
        path = root / f"train_{size}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for k in range(size // len(rows)):
                for row in rows:
                    f.write(json.dumps({**row, "id": f"{row['id']}-r{k}", "split": "train"}, ensure_ascii=False) + "\n")
        sets[size] = path
    return sets


def measure(path: Path, mode: str = "materialised") -> dict[str, float]:
    """One fresh process over ``path``: peak RSS, RSS after imports, heap and mapped files at the end (MB)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, check=True)
    _, n_rows, base, peak, anon, mapped = out.stdout.split()
    return {"rows": int(n_rows), "base": float(base), "peak": float(peak), "anon": float(anon),
            "mapped": float(mapped)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="250 and 5000 samples instead of 1k and 20k")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of fresh processes (at least 3)")
    ap.add_argument("--streamed", action="store_true",
                    help="the streamed path (dataset_streaming: true; results in bench_stream_memory.json)")
    args = ap.parse_args()
    mode = "streamed" if args.streamed else "materialised"
    if args.repeats < 3:
        ap.error("--repeats: a memory ratio is the median of at least 3 rounds")
    sizes = tuple(s // 4 for s in SIZES) if args.quick else SIZES
    set_threads_and_describe(1)
    results = Results("bench_stream_memory" if args.streamed else "bench_data_memory", quick=args.quick, settings={"sizes": list(sizes), "repeats": args.repeats})
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-mem-") as tmp:
        sets = make_sets(Path(tmp) / "data", sizes)
        # small, large, small, large, ...: each process fresh, background load hitting both alike
        runs = alternate({size: (lambda r, p=path: measure(p, mode)) for size, path in sets.items()}, args.repeats)
    small, large = sizes
    for size in sizes:
        m = runs[size]
        label = "small" if size == small else "large"  # the same keys for --quick's sizes
        print(f"{size:>6} samples ({m[0]['rows']} conversations), {args.repeats} fresh processes: "
              f"peak RSS {spread([x['peak'] for x in m], '.1f', ' MB')} "
              f"(after imports {spread([x['base'] for x in m], '.1f', ' MB')}); at the end: "
              f"heap (RssAnon) {spread([x['anon'] for x in m], '.1f', ' MB')}, "
              f"mapped files (RssFile) {spread([x['mapped'] for x in m], '.1f', ' MB')}")
        results.add(f"peak_mb.{label}", [x["peak"] for x in m], unit="MB", fmt=".1f",
                    label=f"peak RSS, {size} samples")
        results.add(f"heap_mb.{label}", [x["anon"] for x in m], unit="MB", fmt=".1f",
                    label=f"heap (RssAnon) at the end, {size} samples")
        results.add(f"mapped_mb.{label}", [x["mapped"] for x in m], unit="MB", fmt=".1f",
                    label=f"mapped files (RssFile) at the end, {size} samples")
    peak = ratios([x["peak"] for x in runs[large]], [x["peak"] for x in runs[small]])
    heap = ratios([x["anon"] for x in runs[large]], [x["anon"] for x in runs[small]])
    print(f"ratio {large}/{small} samples, per round: peak RSS {spread(peak, '.2f')}, heap {spread(heap, '.2f')}")
    results.add("peak_ratio", peak, unit="x", fmt=".2f", label=f"peak RSS {large} / {small} samples, per round")
    results.add("heap_ratio", heap, unit="x", fmt=".2f", label=f"heap {large} / {small} samples, per round")
    results.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
