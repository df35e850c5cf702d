"""Peak memory of training's data path for 1k and 20k samples: it should stay flat in the number of samples.

Training's data path is ``load_samples(...).dataset`` (read, validate every record and decode every image
once, as a ``datasets.Dataset`` with ``gleamx.data.FEATURES``) -> ``build_sft_dataset`` (prompt building,
a ``.map``) -> reading every conversation row as the collator does (images decoded from Arrow).
Each size runs in a fresh subprocess, which reports its peak RSS (``ru_maxrss``), its RSS after the
imports, and at the end its heap (``RssAnon``) and mapped-file pages (``RssFile``); the parent prints
them and the ratios 20k/1k. Peak RSS counts the pages of the memory-mapped Arrow files that were read
(page cache the kernel can drop, growing with the data read); the heap is what Python holds.

The data: ``gleamx data synth`` of 1250 samples at ``image_size=32`` (its train split has 1000 rows) is
the 1k set. Synthesising 20k samples takes over 5 minutes on a 2-core machine, so the 20k set repeats
the 1k train rows 20 times under new ids (``<id>-r<k>``), pointing at the same image files.

    python benchmark/bench_data_memory.py

Measured (2-core CPU machine, shared with other jobs, datasets 5.2.0)::

      1000 samples (2000 conversations): peak RSS  177.9 MB (after imports  177.9 MB); at the end: heap (RssAnon)   99.1 MB, mapped files (RssFile)   67.7 MB
     20000 samples (40000 conversations): peak RSS  258.0 MB (after imports  177.9 MB); at the end: heap (RssAnon)  106.2 MB, mapped files (RssFile)  151.9 MB
    ratio 20k/1k: peak RSS 1.45, heap 1.07

The heap is flat (+7 MB for 20x the samples: the ids seen, for the duplicate-id check); the rest of
the peak's growth is memory-mapped Arrow pages read (RssFile).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = (1_000, 20_000)

CHILD = r"""
import resource, sys
from gleamx.data import load_samples
from gleamx.train.sft_data import build_sft_dataset

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def status_mb(field):  # RssAnon: the heap; RssFile: mapped files, Arrow's memory-mapped data among them
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024

base = rss_mb()
loaded = load_samples(sys.argv[1], split="train")
sft = build_sft_dataset(loaded.dataset, "both", "explain")
pixels = 0
for i in range(0, len(sft.dataset), 64):  # what the collator reads, a batch at a time
    for row in sft.dataset[i : i + 64]["images"]:
        pixels += sum(im.size[0] * im.size[1] for im in row)
print(len(loaded.dataset), len(sft.dataset), round(base, 1), round(rss_mb(), 1),
      round(status_mb("RssAnon"), 1), round(status_mb("RssFile"), 1))
"""


def _synthesize(out: Path, n: int) -> None:
    try:
        from gleamx.synth.build import synthesize  # the synth package's new home
    except ImportError:
        from gleamx.data.synth.build import synthesize
    synthesize(out, n, seed=0, image_size=32)


def make_sets(root: Path) -> dict[int, Path]:
    """``{size: train JSONL}``: the synthetic train split (1k) and its rows repeated (20k)."""
    _synthesize(root, 1250)
    rows = [json.loads(line) for line in (root / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == SIZES[0], len(rows)
    sets = {}
    for size in SIZES:
        path = root / f"train_{size}.jsonl"
        with path.open("w", encoding="utf-8") as f:
            for k in range(size // len(rows)):
                for row in rows:
                    f.write(json.dumps({**row, "id": f"{row['id']}-r{k}", "split": "train"}, ensure_ascii=False) + "\n")
        sets[size] = path
    return sets


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-mem-") as tmp:
        sets = make_sets(Path(tmp) / "data")
        peaks = {}
        for size, path in sets.items():
            out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True)
            n_samples, n_rows, base, peak, anon, mapped = out.stdout.split()
            peaks[size] = (float(peak), float(anon))
            print(f"{size:>6} samples ({n_rows} conversations): peak RSS {float(peak):6.1f} MB "
                  f"(after imports {float(base):6.1f} MB); at the end: heap (RssAnon) {float(anon):6.1f} MB, "
                  f"mapped files (RssFile) {float(mapped):6.1f} MB")
        (peak_1k, anon_1k), (peak_20k, anon_20k) = peaks[SIZES[0]], peaks[SIZES[1]]
        print(f"ratio 20k/1k: peak RSS {peak_20k / peak_1k:.2f}, heap {anon_20k / anon_1k:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
