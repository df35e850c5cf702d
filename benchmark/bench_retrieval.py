"""Retrieval encoder: chunked top-k search vs the full similarity matrix, faiss vs torch, training throughput,
and retrieval quality of the tiny encoder before and after training, all measured in one run.

    python benchmark/bench_retrieval.py            # ~3 min on 2 CPU cores
    python benchmark/bench_retrieval.py --quick    # ~1 min
    python benchmark/bench_retrieval.py --two-phase [--seeds 3]   # only the two-phase section, 6-10 min

Search: ``topk_search`` (query x gallery blocks, partial top-k merged) against ``torch.topk`` over
the materialised ``queries @ gallery.T``. It reports the time ratio and the peak memory each needs for
scores (measured: peak RSS growth of each search in a fresh process), and checks that the results are the same.
Training: pairs/s of ``train_retrieval`` with the tiny encoder, and the share of an epoch that the
similarity sampling (embedding the training gallery and finding neighbours) costs.
Quality: R@1/R@5/mAP on the test split for the untrained tiny encoder and after training, at the
``toy`` level (colour decides the location) and at ``easy`` (layout decides).
Two phases (``--two-phase``): per-view R@1 on the test split after phase 1 (UAV only) and after phase 2
(all views, equal shares per batch), against one mixed phase (equal shares) of the same number of
optimizer steps; median over seeds with the min-max spread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import set_threads_and_describe, spread  # benchmark/machine.py (the script's own folder)


_MEMORY_PROBE = """
import sys, torch, torch.nn.functional as F
from gleamx.retrieval.search import topk_search
n_q, n_g, dim, k, chunk, method = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
g = torch.Generator().manual_seed(0)
q = F.normalize(torch.randn(n_q, dim, generator=g), dim=-1)
gal = F.normalize(torch.randn(n_g, dim, generator=g), dim=-1)
topk_search(q[:2], gal[:2], 1, chunk_size=chunk); torch.topk(q[:2] @ gal[:2].T, 1, dim=1)  # load code paths first
def kib(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = kib("VmRSS:")
if method == "full":
    torch.topk(q @ gal.T, k, dim=1)
else:
    topk_search(q, gal, k, chunk_size=chunk)
print((kib("VmHWM:") - before) / 1024)
"""


def _peak_mib(n_q: int, n_g: int, dim: int, k: int, chunk: int, method: str) -> float | None:
    """Peak RSS growth (MiB) of one search in a fresh process (Linux /proc), or None where unsupported."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, *map(str, (n_q, n_g, dim, k, chunk)), method],
                       capture_output=True, text=True)
    return float(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip() else None


def _spread(values: list[float]) -> str:
    import statistics

    return f"{statistics.median(values):7.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def bench_search(n_q: int, n_g: int, dim: int, k: int, chunk: int, repeats: int = 5) -> None:
    import statistics

    from gleamx.retrieval.search import faiss_topk, topk_search

    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(n_q, dim, generator=g), dim=-1)
    gal = F.normalize(torch.randn(n_g, dim, generator=g), dim=-1)
    times: dict[str, list[float]] = {"full": [], "chunked": [], "faiss": []}
    ratios: list[float] = []
    for _ in range(repeats):  # alternate, so load from other processes hits all alike
        t0 = time.perf_counter()
        full_s, full_i = torch.topk(q @ gal.T, k, dim=1)
        times["full"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ch_s, ch_i = topk_search(q, gal, k, chunk_size=chunk)
        times["chunked"].append(time.perf_counter() - t0)
        ratios.append(times["chunked"][-1] / times["full"][-1])
        try:
            t0 = time.perf_counter()
            fa_s, fa_i = faiss_topk(q, gal, k)
            times["faiss"].append(time.perf_counter() - t0)
        except ImportError:
            fa_s = None
    same_scores = torch.allclose(full_s, ch_s, atol=1e-5)
    same_indices = (full_i == ch_i).float().mean().item()
    full_mb, chunk_mb = (_peak_mib(n_q, n_g, dim, k, chunk, m) for m in ("full", "chunked"))
    print(f"search: {n_q:,} queries x {n_g:,} gallery, dim {dim}, top-{k}, chunk {chunk} (median of {repeats} "
          f"alternating runs, {torch.get_num_threads()} threads)")
    print(f"  full matrix + torch.topk : {_spread(times['full'])}   peak memory {full_mb or float('nan'):8.1f} MiB")
    print(f"  gleamx topk_search       : {_spread(times['chunked'])}   peak memory {chunk_mb or float('nan'):8.1f} MiB")
    if times["faiss"]:
        print(f"  faiss IndexFlatIP        : {_spread(times['faiss'])}")
    memory = f"{full_mb / chunk_mb:.1f}x" if full_mb and chunk_mb else "not measured (needs Linux /proc)"
    print(f"  time ratio chunked / full: {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"measured peak-memory ratio full / chunked: {memory}")
    print(f"  same top-k scores: {same_scores}; same indices: {100 * same_indices:.2f}% (ties may swap places)")
    if fa_s is not None:
        print(f"  faiss scores equal: {torch.allclose(full_s, fa_s, atol=1e-4)}")


def bench_training(root: Path, difficulty: str, n: int, epochs: int, batch: int, img: int, hard: int = 4) -> None:
    from gleamx.synth import synthesize
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import RetrievalEncoder
    from gleamx.retrieval.evaluate import evaluate_retrieval
    from gleamx.retrieval.train import train_retrieval

    data = root / f"data-{difficulty}"
    if not data.exists():
        synthesize(data, n=n, seed=0, image_size=img, difficulty=difficulty)
    test = load_retrieval(data, "test")
    torch.manual_seed(0)
    before = evaluate_retrieval(RetrievalEncoder.tiny(img), test)
    out = root / f"retrieval-{difficulty}-hard{hard}"
    t0 = time.perf_counter()
    train_retrieval(RetrievalConfig(data=str(data), output_dir=str(out), encoder="tiny", img_size=img, epochs=epochs,
                              batch_size=batch, hard_negatives=hard, hard_negatives_from_epoch=1, eval_split="test",
                              logging_steps=1000, seed=0))
    wall = time.perf_counter() - t0
    after = json.loads((out / "results.json").read_text())
    n_train = len(load_retrieval(data, "train").queries)
    print(f"\nquality, {difficulty} level: {n} pairs at {img} px, tiny ConvNeXt (0.23 M), {epochs} epochs x batch "
          f"{batch}, " + (f"{hard} hard negatives per anchor from epoch 1" if hard else "random batches (no hard negatives)")
          + f"; train wall {wall:.0f} s incl. per-epoch eval "
          f"({epochs * n_train / wall:.0f} training pairs/s overall)")
    print(f"  test gallery {after['n_gallery']} tiles, {after['n_query']} queries "
          f"(chance R@1 {100 / after['n_gallery']:.1f}%)")
    for name, m in (("untrained", before), ("trained", after)):
        print(f"  {name:<10} R@1 {100 * m['R@1']:5.1f}  R@5 {100 * m['R@5']:5.1f}  mAP {100 * m['mAP']:5.1f}   "
              + "  ".join(f"{v} R@1 {100 * m['by_view'][v]['R@1']:.0f}" for v in sorted(m["by_view"])))


def bench_sampling_cost(root: Path, img: int) -> None:
    """Seconds of one epoch's training vs the similarity sampling that precedes it."""
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import RetrievalEncoder
    from gleamx.retrieval.train import similar_locations

    data = root / "data-toy"
    train = load_retrieval(data, "train")
    enc = RetrievalEncoder.tiny(img)
    t0 = time.perf_counter()
    similar_locations(enc, train, 16, 64)
    t = time.perf_counter() - t0
    print(f"\nsimilarity sampling: embedding {len(train.gallery)} training tiles + top-16 neighbours: {t:.2f} s "
          f"(~{t / max(len(train.gallery), 1) * 1000:.1f} ms per location, once per epoch)")


def bench_two_phase(root: Path, difficulty: str, n: int, img: int, batch: int, uav_epochs: int,
                    mixed_epochs: int, seeds: int, phase2_lr: float = 1e-3) -> None:
    """Two-phase (UAV, then all views balanced) vs one balanced mixed phase of the same optimizer steps."""
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import load_encoder
    from gleamx.retrieval.evaluate import evaluate_retrieval
    from gleamx.retrieval.train import train_retrieval
    from gleamx.synth import synthesize

    data = root / f"data-{difficulty}"
    if not data.exists():
        synthesize(data, n=n, seed=0, image_size=img, difficulty=difficulty)
    test, train = load_retrieval(data, "test"), load_retrieval(data, "train")
    views = train.views()
    n_uav = sum(q.view == "uav" for q in train.queries)
    steps_two = (n_uav // batch) * uav_epochs + (len(train.queries) // batch) * mixed_epochs
    single_epochs = round(steps_two / (len(train.queries) // batch))
    steps_one = (len(train.queries) // batch) * single_epochs
    common = dict(data=str(data), encoder="tiny", img_size=img, eval_split=None, logging_steps=10_000,
                  hard_negatives=0, save_total_limit=1, warmup_steps=0.1)
    r1: dict[str, dict[str, list[float]]] = {}

    def score(arm: str, path: Path) -> None:
        m = evaluate_retrieval(load_encoder(str(path), device="cpu"), test)
        for v, vm in [("all", m), *sorted(m["by_view"].items())]:
            r1.setdefault(arm, {}).setdefault(v, []).append(100 * vm["R@1"])

    t0 = time.perf_counter()
    for seed in range(seeds):  # the arms alternate within each seed: background load hits both alike
        two = root / f"two-phase-{seed}"
        train_retrieval(RetrievalConfig(output_dir=str(two), seed=seed, phases=[
            {"name": "uav", "views": ["uav"], "epochs": uav_epochs, "learning_rate": 1e-3, "batch_size": batch},
            {"name": "mixed", "views": views, "view_mix": "equal", "epochs": mixed_epochs, "learning_rate": phase2_lr,
             "batch_size": batch}], **common))
        score("two-phase, after phase 1 (UAV only)", two / "phase-1")
        score("two-phase, after phase 2 (all views)", two)
        one = root / f"one-phase-{seed}"
        train_retrieval(RetrievalConfig(output_dir=str(one), seed=seed, view_mix="equal", epochs=single_epochs,
                                  learning_rate=1e-3, batch_size=batch, **common))
        score("one mixed phase (all views)", one)
    wall = time.perf_counter() - t0
    print(f"\ntwo phases vs one, {difficulty} level: {n} pairs at {img} px, tiny ConvNeXt, batch {batch}, lr 1e-3 "
          f"(two-phase's phase 2: {phase2_lr:g}), warm-up 10% per phase, no hard negatives, {seeds} seed(s) (medians with min-max over seeds), {wall:.0f} s in all")
    print(f"  two-phase: {uav_epochs} epochs UAV only ({n_uav // batch} steps each), then {mixed_epochs} epochs all "
          f"views with equal shares per batch = {steps_two} steps; one phase: {single_epochs} epochs all views, "
          f"equal shares = {steps_one} steps")
    print(f"  test R@1 %, gallery {len(test.gallery)} tiles (chance {100 / len(test.gallery):.1f}%), "
          f"{len(test.queries)} queries ({len(test.queries) // len(views)} per view)")
    for arm, by_view in r1.items():
        print(f"  {arm}")
        for v, vals in by_view.items():
            print(f"    {v:<11} {spread(vals, '.1f')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the other benchmarks)")
    ap.add_argument("--two-phase", action="store_true", help="only the two-phase vs one-phase section")
    ap.add_argument("--seeds", type=int, default=3, help="--two-phase: training seeds per arm")
    ap.add_argument("--phase2-lr", type=float, default=1e-3, help="--two-phase: phase 2's learning rate")
    args = ap.parse_args()
    set_threads_and_describe(args.threads)
    if args.two_phase:
        with tempfile.TemporaryDirectory(prefix="gleamx-bench-two-phase-") as tmp:
            n = 800 if args.quick else 2000
            bench_two_phase(Path(tmp), "easy", n, 64, 32, uav_epochs=4, mixed_epochs=2, seeds=args.seeds,
                            phase2_lr=args.phase2_lr)
        return
    if args.quick:
        bench_search(4000, 4000, 128, 10, 1024)
    else:
        bench_search(20000, 20000, 128, 10, 4096)
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-retrieval-") as tmp:
        root = Path(tmp)
        n, epochs = (800, 3) if args.quick else (2000, 6)
        bench_training(root, "toy", n, epochs, 32, 64)
        bench_sampling_cost(root, 64)
        if not args.quick:
            bench_training(root, "easy", n, epochs, 32, 64)
            bench_training(root, "easy", n, epochs, 32, 64, hard=0)  # the same without similarity sampling


if __name__ == "__main__":
    sys.exit(main())
