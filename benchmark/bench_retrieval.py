"""Retrieval encoder: chunked top-k search vs the full similarity matrix, faiss vs torch, training throughput,
and retrieval quality of the tiny encoder before and after training, all measured in one run.

    python benchmark/bench_retrieval.py            # ~3 min on 2 CPU cores
    python benchmark/bench_retrieval.py --quick    # ~1 min
    python benchmark/bench_retrieval.py --two-phase [--seeds 3]   # only the two-phase section, 6-10 min

Search: ``topk_search`` (query x gallery blocks, partial top-k merged) against ``torch.topk`` over
the materialised ``queries @ gallery.T``, alternating ``--repeats`` (3) rounds in this process. It reports the
time ratio and the peak memory each needs for scores (measured: peak RSS growth of each search in a fresh process,
full and chunked alternating, ``--repeats`` processes each; the ratio is the median of the per-round ratios), and
checks that the results are the same. Figures go to ``benchmark/results/bench_retrieval.json``
(``bench_retrieval_two_phase.json`` for ``--two-phase``).
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
from machine import alternate, ratios, set_threads_and_describe, spread  # benchmark/machine.py (the script's folder)
from results import Results  # benchmark/results.py


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


def _peak_mib(n_q: int, n_g: int, dim: int, k: int, chunk: int, method: str) -> float:
    """Peak RSS growth (MiB) of one search in a fresh process (Linux /proc)."""
    import subprocess

    r = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, *map(str, (n_q, n_g, dim, k, chunk)), method],
                       capture_output=True, text=True)
    if r.returncode or not r.stdout.strip():
        raise SystemExit(f"memory probe ({method}) failed (it needs Linux /proc):\n{r.stderr[-2000:]}")
    return float(r.stdout.strip())


def _spread(values: list[float]) -> str:
    import statistics

    return f"{statistics.median(values):7.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def bench_search(results: Results, n_q: int, n_g: int, dim: int, k: int, chunk: int, repeats: int = 3) -> None:
    import statistics

    from gleamx.retrieval.search import faiss_topk, topk_search

    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(n_q, dim, generator=g), dim=-1)
    gal = F.normalize(torch.randn(n_g, dim, generator=g), dim=-1)
    times: dict[str, list[float]] = {"full": [], "chunked": [], "faiss": []}
    time_ratio: list[float] = []
    for _ in range(repeats):  # alternate, so load from other processes hits all alike
        t0 = time.perf_counter()
        full_s, full_i = torch.topk(q @ gal.T, k, dim=1)
        times["full"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ch_s, ch_i = topk_search(q, gal, k, chunk_size=chunk)
        times["chunked"].append(time.perf_counter() - t0)
        time_ratio.append(times["chunked"][-1] / times["full"][-1])
        try:
            t0 = time.perf_counter()
            fa_s, fa_i = faiss_topk(q, gal, k)
            times["faiss"].append(time.perf_counter() - t0)
        except ImportError:
            fa_s = None
    same_scores = torch.allclose(full_s, ch_s, atol=1e-5)
    same_indices = (full_i == ch_i).float().mean().item()
    # full, chunked, full, chunked, ...: each a fresh process; the ratio is the median of the per-round ratios
    mem = alternate({m: (lambda r, m=m: _peak_mib(n_q, n_g, dim, k, chunk, m)) for m in ("full", "chunked")},
                    max(repeats, 3))
    full_mb, chunk_mb = statistics.median(mem["full"]), statistics.median(mem["chunked"])
    mem_ratio = ratios(mem["full"], mem["chunked"])
    print(f"search: {n_q:,} queries x {n_g:,} gallery, dim {dim}, top-{k}, chunk {chunk} (median of {repeats} "
          f"alternating runs, {torch.get_num_threads()} threads)")
    n_mem = len(mem["full"])
    for name, secs, mib in (("full matrix + torch.topk", times["full"], full_mb),
                            ("gleamx topk_search", times["chunked"], chunk_mb)):
        print(f"  {name:<24} : {_spread(secs)}   peak memory {mib:8.1f} MiB (median of {n_mem} fresh processes)")
    if times["faiss"]:
        print(f"  faiss IndexFlatIP        : {_spread(times['faiss'])}")
    print(f"  time ratio chunked / full: {statistics.median(time_ratio):.2f}x (min {min(time_ratio):.2f}, "
          f"max {max(time_ratio):.2f}); measured peak-memory ratio full / chunked, per round of fresh processes: "
          f"{spread(mem_ratio, '.1f', 'x')}")
    print(f"  same top-k scores: {same_scores}; same indices: {100 * same_indices:.2f}% (ties may swap places)")
    if fa_s is not None:
        print(f"  faiss scores equal: {torch.allclose(full_s, fa_s, atol=1e-4)}")
    results.settings.update(search={"queries": n_q, "gallery": n_g, "dim": dim, "k": k, "chunk": chunk,
                                    "repeats": repeats})
    results.add("search.full_s", times["full"], unit="s", fmt=".2f", label="full matrix + torch.topk")
    results.add("search.chunked_s", times["chunked"], unit="s", fmt=".2f", label="gleamx topk_search (chunked)")
    if times["faiss"]:
        results.add("search.faiss_s", times["faiss"], unit="s", fmt=".2f", label="faiss IndexFlatIP")
        results.add("search.full_over_faiss", ratios(times["full"], times["faiss"]), unit="x", fmt=".1f",
                    label="full matrix time / faiss time, per round")
    results.add("search.time_ratio", time_ratio, unit="x", fmt=".2f", label="chunked / full matrix time, per round")
    results.add("search.full_mib", mem["full"], unit="MiB", fmt=",.0f",
                label="peak RSS growth of the full matrix search, fresh processes")
    results.add("search.chunked_mib", mem["chunked"], unit="MiB", fmt=",.0f",
                label="peak RSS growth of the chunked search, fresh processes")
    results.add("search.memory_ratio", mem_ratio, unit="x", fmt=".1f",
                label="peak memory full / chunked, per round of fresh processes")
    results.add("search.same_scores", float(same_scores), unit="", label="same top-k scores (1 = yes)")
    results.add("search.same_indices", 100 * same_indices, unit="%", fmt=".2f", label="same top-k indices")


def bench_training(results: Results, root: Path, difficulty: str, n: int, epochs: int, batch: int, img: int,
                   hard: int = 4) -> None:
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
    # one training run per setting (deterministic per seed): each figure is a single value, n=1
    arm = f"{difficulty}{'' if hard else '_random'}"
    what = f"{difficulty} level, {'hard negatives' if hard else 'random batches'}"
    for name, m in (("untrained", before), ("trained", after)):
        for metric in ("R@1", "R@5", "mAP"):
            results.add(f"{arm}.{name}.{metric.replace('@', '').lower()}", 100 * m[metric], unit="%", fmt=".1f",
                        label=f"{what}: {name} {metric}")
        for v in sorted(m["by_view"]):
            results.add(f"{arm}.{name}.r1.{v}", 100 * m["by_view"][v]["R@1"], unit="%", fmt=".0f",
                        label=f"{what}: {name} R@1, {v} queries")
    results.add(f"{arm}.train_s", wall, unit="s", fmt=".0f",
                label=f"{what}: training wall time, per-epoch eval included")
    results.add(f"{arm}.pairs_s", epochs * n_train / wall, unit="pairs/s", fmt=".0f",
                label=f"{what}: training pairs per second, per-epoch eval included")
    results.add(f"{arm}.chance_r1", 100 / after["n_gallery"], unit="%", fmt=".1f", label=f"{what}: chance R@1")


def bench_sampling_cost(results: Results, root: Path, img: int) -> None:
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
    results.add("sampling_ms", t / max(len(train.gallery), 1) * 1000, unit="ms/location", fmt=".1f",
                label="similarity sampling (embed the training tiles + top-16 neighbours), per location")


def bench_two_phase(results: Results, root: Path, difficulty: str, n: int, img: int, batch: int, uav_epochs: int,
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
    keys = dict(zip(r1, ("phase1", "phase2", "one_phase")))  # short keys, in the order the arms were scored
    for arm, by_view in r1.items():
        print(f"  {arm}")
        for v, vals in by_view.items():
            print(f"    {v:<11} {spread(vals, '.1f')}")
            results.add(f"{keys[arm]}.r1.{v}", vals, unit="%", fmt=".1f", label=f"{arm}: test R@1, {v} queries",
                        per_seed=vals)
    results.settings.update(difficulty=difficulty, n=n, img=img, batch=batch, uav_epochs=uav_epochs,
                            mixed_epochs=mixed_epochs, seeds=seeds, phase2_lr=phase2_lr, steps_two=steps_two,
                            steps_one=steps_one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the other benchmarks)")
    ap.add_argument("--two-phase", action="store_true", help="only the two-phase vs one-phase section")
    ap.add_argument("--seeds", type=int, default=3, help="--two-phase: training seeds per arm")
    ap.add_argument("--phase2-lr", type=float, default=1e-3, help="--two-phase: phase 2's learning rate")
    ap.add_argument("--repeats", type=int, default=3,
                    help="alternating search rounds, and fresh processes per memory measurement (at least 3)")
    args = ap.parse_args()
    set_threads_and_describe(args.threads)
    if args.two_phase:
        results = Results("bench_retrieval_two_phase", quick=args.quick)
        with tempfile.TemporaryDirectory(prefix="gleamx-bench-two-phase-") as tmp:
            n = 800 if args.quick else 2000
            bench_two_phase(results, Path(tmp), "easy", n, 64, 32, uav_epochs=4, mixed_epochs=2, seeds=args.seeds,
                            phase2_lr=args.phase2_lr)
        results.write()
        return
    results = Results("bench_retrieval", quick=args.quick)
    if args.quick:
        bench_search(results, 4000, 4000, 128, 10, 1024, args.repeats)
    else:
        bench_search(results, 20000, 20000, 128, 10, 4096, args.repeats)
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-retrieval-") as tmp:
        root = Path(tmp)
        n, epochs = (800, 3) if args.quick else (2000, 6)
        results.settings.update(n=n, epochs=epochs, batch=32, img=64)
        bench_training(results, root, "toy", n, epochs, 32, 64)
        bench_sampling_cost(results, root, 64)
        if not args.quick:
            bench_training(results, root, "easy", n, epochs, 32, 64)
            bench_training(results, root, "easy", n, epochs, 32, 64, hard=0)  # the same without similarity sampling
    results.write()


if __name__ == "__main__":
    sys.exit(main())
