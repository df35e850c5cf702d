"""Retrieval encoder evaluation past one process: embedding throughput with 1 vs 2 processes, the peak memory of
evaluating a 50k-tile gallery (chunked ranks vs the full similarity matrix), and search over galleries of up to a
million tiles through faiss indexes vs exact chunked search, each measured.

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
3. **Index search.** Galleries of 10^4, 10^5 and 10^6 random L2-normalised 512-d float32 embeddings, 1,000
   queries, top-10: exact chunked search (``search.topk_search``) and the IVF-PQ and HNSW indexes of
   ``gleamx.retrieval.index`` at their defaults (``build_index`` and ``search_index``, what ``gallery_search`` runs;
   the index is built in memory, not saved), alternating, in a fresh process each: build time, query time, peak
   RSS growth (VmHWM, as in 2.) and recall@10 against the exact top-10 of the same queries. Uniform random points
   have no clusters and no low intrinsic dimension, so they are the hardest case for an approximate index: the
   recall here is a floor, not what real embeddings get (``gleamx retrieval eval`` reports theirs).

Figures of 1. and 2. go to ``benchmark/results/bench_retrieval_scale.json``, of 3. (``--index``) to
``benchmark/results/bench_retrieval_index.json``.

    python benchmark/bench_retrieval_scale.py            # 2,000 images at 64 px, 3 rounds; 10k x 50k, dim 512
    python benchmark/bench_retrieval_scale.py --quick    # 400 images, 2 rounds; 2k x 50k
    python benchmark/bench_retrieval_scale.py --index    # index search at 10^4, 10^5, 10^6, 3 rounds
    python benchmark/bench_retrieval_scale.py --index --quick --index-sizes 2000,10000   # a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
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


_INDEX_PROBE = r"""
import json, sys, time
import numpy as np, torch, torch.nn.functional as F
n, dim, n_q, k, method, threads, out = (int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                        sys.argv[5], int(sys.argv[6]), sys.argv[7])
torch.set_num_threads(threads)
import faiss
faiss.omp_set_num_threads(threads)
from gleamx.retrieval.index import IndexOptions, build_index, search_index
from gleamx.retrieval.search import topk_search
g = torch.Generator().manual_seed(0)
gal = F.normalize(torch.randn(n, dim, generator=g), dim=-1)
q = F.normalize(torch.randn(n_q, dim, generator=g), dim=-1)
gal_np = gal.numpy()  # the same memory: faiss reads the gallery the exact search reads
def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = kib("VmRSS:")
build_s = None
t0 = time.perf_counter()
if method == "exact":
    _, idx = topk_search(q, gal, k)
else:
    opts = IndexOptions(index=method)
    index = build_index(gal_np, method, opts.build_params(method, n, dim))
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, idx = search_index(index, q, gal, k, method, opts.search_params(method))
query_s = time.perf_counter() - t0
peak = (kib("VmHWM:") - before) / 1024
np.save(out, idx.numpy())  # after the peak is read
print(json.dumps({"build_s": build_s, "query_s": query_s, "peak_mib": peak}))
"""

INDEX_METHODS = {"exact": "exact (topk_search)", "ivfpq": "IVF-PQ", "hnsw": "HNSW"}


def _index_probe(n: int, dim: int, n_q: int, k: int, method: str, threads: int, out: Path) -> dict[str, Any]:
    """Build time, query time and peak RSS growth of one search in a fresh process, and the top-k it found."""
    import numpy as np

    r = subprocess.run([sys.executable, "-c", _INDEX_PROBE, str(n), str(dim), str(n_q), str(k), method, str(threads),
                        str(out)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"index probe ({method}, {n} tiles) failed:\n{r.stderr[-2000:]}")
    found = json.loads(r.stdout.strip().splitlines()[-1])
    found["indices"] = np.load(out)
    out.unlink()
    return found


def recall_at(found: Any, exact: Any, k: int) -> float:
    """The share of each query's exact top-``k`` that ``found``'s top-``k`` holds, averaged over queries."""
    return sum(len(set(a[:k]) & set(b[:k])) for a, b in zip(found.tolist(), exact.tolist())) / (k * len(exact))


def bench_index(results: Results, tmp: Path, sizes: list[int], n_q: int, k: int, dim: int, repeats: int,
                threads: int = 1) -> None:
    from gleamx.retrieval.index import IndexOptions, describe
    from machine import alternate, spread

    print(f"index search: {n_q:,} queries, top-{k}, random L2-normalised {dim}-d float32 galleries; a fresh process "
          f"per measurement, {repeats} alternating round(s), {threads} thread(s)")
    opts = IndexOptions()
    for m in ("ivfpq", "hnsw"):
        print(f"  {INDEX_METHODS[m]}: {describe(m, {**opts.build_params(m, sizes[-1], dim), **opts.search_params(m)})}"
              + (" (nlist: about the square root of the gallery size)" if m == "ivfpq" else ""))
    for n in sizes:
        runs = alternate({m: (lambda r, m=m: _index_probe(n, dim, n_q, k, m, threads, tmp / f"top-{m}-{r}.npy"))
                          for m in INDEX_METHODS}, repeats)
        exact = runs["exact"][0]["indices"]
        for m, name in INDEX_METHODS.items():
            recall = [recall_at(x["indices"], exact, k) for x in runs[m]]
            build = [x["build_s"] for x in runs[m] if x["build_s"] is not None]
            query = [x["query_s"] for x in runs[m]]
            peak = [x["peak_mib"] for x in runs[m]]
            print(f"  {n:>9,} tiles  {name:<20} build {spread(build, '.2f', ' s') if build else '-':<34} "
                  f"query {spread(query, '.3f', ' s'):<36} peak {spread(peak, '.0f', ' MiB'):<34} "
                  f"recall@{k} {spread(recall, '.3f')}")
            row = dict(row=f"{n:,} tiles, {name}")
            if build:
                results.add(f"index.{n}.{m}.build_s", build, unit="s", fmt=",.2f", label=f"{row['row']}: build",
                            col="build (s)", **row)
            results.add(f"index.{n}.{m}.query_s", query, unit="s", fmt=",.3f",
                        label=f"{row['row']}: {n_q:,} queries, top-{k}", col=f"{n_q:,} queries, top-{k} (s)", **row)
            results.add(f"index.{n}.{m}.peak_mib", peak, unit="MiB", fmt=",.0f",
                        label=f"{row['row']}: peak RSS growth", col="peak RSS growth (MiB)", **row)
            results.add(f"index.{n}.{m}.recall", recall, unit="", fmt=".3f",
                        label=f"{row['row']}: recall@{k} against exact search", col=f"recall@{k} vs exact", **row)
    results.settings.update(index={"sizes": sizes, "queries": n_q, "k": k, "dim": dim, "repeats": repeats,
                                   "threads": threads, "options": dataclasses.asdict(opts)})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None,
                    help="alternating rounds (default 3, --quick 2 for the embedding and 1 for the index search; "
                         "the memory rounds never below 3)")
    ap.add_argument("--index", action="store_true",
                    help="the index search only (section 3), into benchmark/results/bench_retrieval_index.json")
    ap.add_argument("--index-sizes", default=None,
                    help="--index: gallery sizes, comma-separated (default 10000,100000,1000000; --quick "
                         "10000,100000)")
    args = ap.parse_args()
    try:
        sizes = [int(float(x)) for x in (args.index_sizes or ("10000,100000" if args.quick else
                                                               "10000,100000,1000000")).split(",")]
    except ValueError:
        ap.error(f"--index-sizes: expected comma-separated gallery sizes, got {args.index_sizes!r}")
    from machine import set_threads_and_describe
    from results import Results

    set_threads_and_describe(1)
    results = Results("bench_retrieval_index" if args.index else "bench_retrieval_scale", quick=args.quick)
    n_images, repeats = (400, 2) if args.quick else (2000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        if args.index:
            bench_index(results, Path(tmp), sorted(sizes), 1000, 10, 512, args.repeats or (1 if args.quick else 3))
        else:
            bench_sharding(results, Path(tmp), n_images, args.repeats or repeats)
            bench_memory(results, Path(tmp), 2000 if args.quick else 10000, 50000, 512, max(args.repeats or 3, 3))
    results.write()


if __name__ == "__main__":
    main()
