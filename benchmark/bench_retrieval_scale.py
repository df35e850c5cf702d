"""Retrieval encoder evaluation past one process: embedding throughput with 1 vs 2 processes, and the peak memory of
evaluating a 50k-tile gallery (chunked ranks vs the full similarity matrix), each measured.

1. **Sharded embedding.** ``accelerate launch`` (``accelerate_configs/cpu.yaml``, gloo) of this script in worker
   mode with 1 and with 2 processes, alternating, ``--repeats`` rounds: each process embeds its shard of the
   same image list with the tiny ConvNeXt (``gleamx.retrieval.embed.embed_images(shard=True)``) and the shards
   are all-gathered; rank 0 times the embedding from a barrier to the gathered matrix (process start-up and
   imports are not counted) and checks the gathered matrix equals the 1-process one (saved by the first run).
   On an N-core machine with N free cores the ratio approaches N; with other jobs on the cores it cannot.
2. **Evaluation memory.** In a fresh process each, the ranks of every query's positive over a gallery of
   random L2-normalised embeddings, once through gleamx's chunked scan (``evaluate.scan_ranks``, the path
   ``gleamx retrieval eval`` runs) and once through the full ``queries @ gallery.T`` matrix, alternating, in
   ``--repeats`` rounds (at least 3); peak RSS growth from ``/proc/self/status`` (VmHWM after resetting it), the
   ratio the median of the per-round ratios, and every query's ranks compared, array by array, with the full
   matrix's (exact equality).

Figures go to ``benchmark/results/bench_retrieval_scale.json``.

    python benchmark/bench_retrieval_scale.py            # 2,000 images at 64 px, 3 rounds; 10k x 50k, dim 512
    python benchmark/bench_retrieval_scale.py --quick    # 400 images, 2 rounds; 2k x 50k
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from results import Results  # benchmark/results.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmark"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(encoder_dir: str, images: str, reference: str, result: str) -> None:
    """One process of the sharded embedding run (started by ``accelerate launch``)."""
    import torch
    from accelerate import PartialState

    from gleamx.retrieval.embed import embed_images
    from gleamx.retrieval.encoder import RetrievalEncoder

    torch.set_num_threads(1)
    state = PartialState(cpu=True)
    enc = RetrievalEncoder.from_pretrained(encoder_dir)
    paths = [Path(p) for p in json.loads(Path(images).read_text())]
    embed_images(enc, paths[: 2 * state.num_processes], shard=True)  # first-call costs off the clock
    state.wait_for_everyone()
    t0 = time.perf_counter()
    emb = embed_images(enc, paths, batch_size=32, shard=True)
    seconds = time.perf_counter() - t0
    if state.is_main_process:
        ref = Path(reference)
        if not ref.is_file():
            torch.save(emb, ref)
        same = bool(torch.equal(torch.load(ref), emb))
        Path(result).write_text(json.dumps({"seconds": seconds, "n": len(paths), "same": same,
                                            "processes": state.num_processes}))
    state.wait_for_everyone()
    state.destroy_process_group()


def launch(n_proc: int, encoder_dir: Path, images: Path, reference: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "accelerate_configs" / "cpu.yaml"), "--num_processes", str(n_proc), "--main_process_port",
           str(_free_port()), __file__, "--worker", str(encoder_dir), str(images), str(reference), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if r.returncode:
        raise SystemExit(f"{n_proc}-process run failed:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return json.loads(out.read_text())


def bench_sharding(results: Results, tmp: Path, n_images: int, repeats: int) -> None:
    import torch
    from PIL import Image

    from gleamx.retrieval.encoder import RetrievalEncoder
    from machine import alternate, ratios, spread

    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(n_images):
        p = tmp / "img" / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((torch.rand(64, 64, 3, generator=g) * 255).byte().numpy()).save(p)
        paths.append(str(p))
    (tmp / "images.json").write_text(json.dumps(paths))
    torch.manual_seed(0)
    RetrievalEncoder.tiny(64).save_pretrained(tmp / "enc")
    ref = tmp / "reference.pt"
    runs = alternate({f"{n} process(es)": (lambda r, n=n: launch(n, tmp / "enc", tmp / "images.json", ref,
                                                                   tmp / f"r{n}-{r}.json"))
                      for n in (1, 2)}, repeats)
    one, two = ([x["seconds"] for x in runs[k]] for k in runs)
    print(f"sharded embedding: {n_images} images at 64 px, tiny ConvNeXt, batch 32, 1 thread per process, "
          f"{repeats} alternating rounds (embedding only: start-up not counted)")
    for name, vals in zip(runs, (one, two)):
        print(f"  {name:<14} {spread(vals, '.2f', ' s')}  = {spread([n_images / v for v in vals], '.0f')} images/s")
    same = all(x["same"] for v in runs.values() for x in v)
    print(f"  speed-up 2 processes / 1: {spread(ratios(one, two), '.2f', 'x')}; gathered matrix equal to the "
          f"1-process one in every run: {same}")
    results.settings.update(embed={"images": n_images, "repeats": repeats, "img": 64, "batch": 32})
    results.add("embed.one_s", one, unit="s", fmt=".2f", label="embedding with 1 process")
    results.add("embed.two_s", two, unit="s", fmt=".2f", label="embedding with 2 processes (sharded, gathered)")
    results.add("embed.one_images_s", [n_images / v for v in one], unit="images/s", fmt=".0f",
                label="images/s with 1 process")
    results.add("embed.two_images_s", [n_images / v for v in two], unit="images/s", fmt=".0f",
                label="images/s with 2 processes")
    results.add("embed.speedup", ratios(one, two), unit="x", fmt=".2f", label="speed-up 2 processes / 1, per round")
    results.add("embed.same", float(same), unit="",
                label="gathered matrix equal to the 1-process one in every run (1 = yes)")


_MEMORY_PROBE = r"""
import sys, torch, torch.nn.functional as F
from gleamx.retrieval.data import GalleryTile, Query, RetrievalSet
from gleamx.retrieval.evaluate import scan_ranks
from gleamx.retrieval.metrics import ranks_of_positives
n_q, n_g, dim, method, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
q = F.normalize(torch.randn(n_q, dim, generator=g), dim=-1)
gal = F.normalize(torch.randn(n_g, dim, generator=g), dim=-1)
pos = torch.randint(0, n_g, (n_q,), generator=g).tolist()
rset = RetrievalSet([GalleryTile(f"L{i}", None, "test") for i in range(n_g)],
                    [Query(f"q{i}", None, "uav", f"L{p}", "test") for i, p in enumerate(pos)], "test")
positives = rset.positives()
def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = kib("VmRSS:")
if method == "full":
    ranks = ranks_of_positives(q @ gal.T, positives)
else:
    ranks, _ = scan_ranks(q, gal, rset)
peak = (kib("VmHWM:") - before) / 1024
import numpy as np  # every query's ranks, for the parent to compare array by array (after the peak is read)
np.savez(out, lengths=np.array([len(r) for r in ranks]), ranks=np.concatenate(ranks))
print(peak)
"""


def _probe(n_q: int, n_g: int, dim: int, method: str, ranks_file: Path) -> tuple[float, dict[str, Any]]:
    """Peak RSS growth (MiB) of one evaluation in a fresh process, and the ranks it computed."""
    import numpy as np

    r = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(n_q), str(n_g), str(dim), method, str(ranks_file)],
                       capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"memory probe ({method}) failed:\n{r.stderr[-2000:]}")
    with np.load(ranks_file) as f:
        ranks = {"lengths": f["lengths"], "ranks": f["ranks"]}
    ranks_file.unlink()
    return float(r.stdout.strip()), ranks


def same_ranks(a: dict[str, Any], b: dict[str, Any]) -> int:
    """How many queries' rank arrays differ between two evaluations (0: every query's ranks are equal)."""
    import numpy as np

    if not np.array_equal(a["lengths"], b["lengths"]):
        return int(len(a["lengths"]))
    bounds = np.cumsum(a["lengths"])[:-1]
    return sum(not np.array_equal(x, y) for x, y in zip(np.split(a["ranks"], bounds), np.split(b["ranks"], bounds)))


def bench_memory(results: Results, tmp: Path, n_q: int, n_g: int, dim: int, repeats: int) -> None:
    from machine import alternate, ratios, spread

    # full, chunked, full, chunked, ...: a fresh process each; the ratio is the median of the per-round ratios
    runs = alternate({m: (lambda r, m=m: _probe(n_q, n_g, dim, m, tmp / f"ranks-{m}-{r}.npz"))
                      for m in ("full", "chunked")}, repeats)
    full = [peak for peak, _ in runs["full"]]
    chunked = [peak for peak, _ in runs["chunked"]]
    reference = runs["full"][0][1]
    differing = [same_ranks(reference, ranks) for _, ranks in runs["full"] + runs["chunked"]]
    print(f"evaluation memory: {n_q:,} queries x {n_g:,}-tile gallery, random embeddings, dim {dim} "
          f"(full matrix {n_q * n_g * 4 / 2**20:,.0f} MiB in float32); peak RSS growth in a fresh process each, "
          f"{repeats} alternating rounds")
    print(f"  full matrix + ranks : {spread(full, '.1f', ' MiB')}")
    print(f"  gleamx chunked scan : {spread(chunked, '.1f', ' MiB')}")
    mem = ratios(full, [max(c, 0.1) for c in chunked])
    print(f"  measured ratio full / chunked, per round: {spread(mem, '.1f', 'x')}; same ranks (every query's rank "
          f"array, all {2 * repeats} runs against the first full-matrix run): {not any(differing)}"
          + (f" ({max(differing)} queries differ)" if any(differing) else ""))
    results.settings.update(memory={"queries": n_q, "gallery": n_g, "dim": dim, "repeats": repeats})
    results.add("memory.full_mib", full, unit="MiB", fmt=",.0f", label="full matrix + ranks, peak RSS growth")
    results.add("memory.chunked_mib", chunked, unit="MiB", fmt=",.0f", label="gleamx chunked scan, peak RSS growth")
    results.add("memory.ratio", mem, unit="x", fmt=".1f", label="peak memory full / chunked, per round")
    results.add("memory.differing_queries", differing, unit="queries", fmt="d",
                label="queries whose ranks differ from the first full-matrix run's (0 = same ranks)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None,
                    help="alternating rounds (default 3, --quick 2 for the embedding; the memory rounds never below 3)")
    args = ap.parse_args()
    from machine import set_threads_and_describe
    from results import Results

    set_threads_and_describe(1)
    results = Results("bench_retrieval_scale", quick=args.quick)
    n_images, repeats = (400, 2) if args.quick else (2000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        bench_sharding(results, Path(tmp), n_images, args.repeats or repeats)
        bench_memory(results, Path(tmp), 2000 if args.quick else 10000, 50000, 512, max(args.repeats or 3, 3))
    results.write()


if __name__ == "__main__":
    main()
