"""GLEAM-C: chunked top-k search vs the full similarity matrix, faiss vs torch, training throughput,
and retrieval quality of the tiny encoder before and after training, all measured in one run.

    python benchmark/bench_retrieval.py            # ~3 min on 2 CPU cores
    python benchmark/bench_retrieval.py --quick    # ~1 min

Search: ``topk_search`` (query x gallery blocks, partial top-k merged) against ``torch.topk`` over
the materialised ``queries @ gallery.T``. It reports the time ratio and the peak memory each needs for
scores (analytic: the float32 blocks alive at once), and checks that the results are the same.
Training: pairs/s of ``train_gleamc`` with the tiny encoder, and the share of an epoch that the
similarity sampling (embedding the training gallery and finding neighbours) costs.
Quality: R@1/R@5/mAP on the test split for the untrained tiny encoder and after training, at the
``toy`` level (colour decides the location) and at ``easy`` (layout decides).
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
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)


def bench_search(n_q: int, n_g: int, dim: int, k: int, chunk: int) -> None:
    from gleamx.retrieval.search import faiss_topk, topk_search

    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(n_q, dim, generator=g), dim=-1)
    gal = F.normalize(torch.randn(n_g, dim, generator=g), dim=-1)
    times: dict[str, list[float]] = {"full": [], "chunked": [], "faiss": []}
    for _ in range(3):  # alternate, so load from other processes hits all alike
        t0 = time.perf_counter()
        full_s, full_i = torch.topk(q @ gal.T, k, dim=1)
        times["full"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ch_s, ch_i = topk_search(q, gal, k, chunk_size=chunk)
        times["chunked"].append(time.perf_counter() - t0)
        try:
            t0 = time.perf_counter()
            fa_s, fa_i = faiss_topk(q, gal, k)
            times["faiss"].append(time.perf_counter() - t0)
        except ImportError:
            fa_s = None
    same = torch.allclose(full_s, ch_s, atol=1e-5) and (full_i == ch_i).float().mean().item()
    best = {name: min(v) for name, v in times.items() if v}
    full_mb = n_q * n_g * 4 / 2**20
    chunk_mb = min(chunk, n_q) * min(chunk, n_g) * 4 / 2**20
    print(f"search: {n_q:,} queries x {n_g:,} gallery, dim {dim}, top-{k}, chunk {chunk} (best of 3, "
          f"{torch.get_num_threads()} threads)")
    print(f"  full matrix + torch.topk : {best['full']:7.3f} s   scores in memory {full_mb:9.1f} MiB")
    print(f"  gleamx topk_search       : {best['chunked']:7.3f} s   scores in memory {chunk_mb:9.1f} MiB (one block)")
    if "faiss" in best:
        print(f"  faiss IndexFlatIP        : {best['faiss']:7.3f} s")
    print(f"  time ratio chunked / full: {best['chunked'] / best['full']:.2f}x; memory ratio full / chunked: "
          f"{full_mb / chunk_mb:.0f}x; same scores: {bool(same)}, same indices: {100 * float(same):.2f}%")
    if fa_s is not None:
        print(f"  faiss scores equal: {torch.allclose(full_s, fa_s, atol=1e-4)}")


def bench_training(root: Path, difficulty: str, n: int, epochs: int, batch: int, img: int, hard: int = 4) -> None:
    from gleamx.data.synth import synthesize
    from gleamx.retrieval.config import GleamCConfig
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import GleamCEncoder
    from gleamx.retrieval.evaluate import evaluate_retrieval
    from gleamx.retrieval.train import train_gleamc

    data = root / f"data-{difficulty}"
    if not data.exists():
        synthesize(data, n=n, seed=0, image_size=img, difficulty=difficulty)
    test = load_retrieval(data, "test")
    torch.manual_seed(0)
    before = evaluate_retrieval(GleamCEncoder.tiny(img), test)
    out = root / f"gleamc-{difficulty}-hard{hard}"
    t0 = time.perf_counter()
    train_gleamc(GleamCConfig(data=str(data), output_dir=str(out), encoder="tiny", img_size=img, epochs=epochs,
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
    from gleamx.retrieval.encoder import GleamCEncoder
    from gleamx.retrieval.train import similar_locations

    data = root / "data-toy"
    train = load_retrieval(data, "train")
    enc = GleamCEncoder.tiny(img)
    t0 = time.perf_counter()
    similar_locations(enc, train, 16, 64)
    t = time.perf_counter() - t0
    print(f"\nsimilarity sampling: embedding {len(train.gallery)} training tiles + top-16 neighbours: {t:.2f} s "
          f"(~{t / max(len(train.gallery), 1) * 1000:.1f} ms per location, once per epoch)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the other benchmarks)")
    args = ap.parse_args()
    set_threads_and_describe(args.threads)
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
