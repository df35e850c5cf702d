"""Batched vs one-at-a-time generation on the tiny model, and scoring time per 1,000 samples.

    python benchmark/bench_eval.py [--quick]

Prints, measured in this one run: samples/s of gleamx's batched generation
(left padding, batch 8) against generating one sample at a time and the ratio
(target >= 5x at batch 8) at three answer lengths, an assertion that both give
the same answers, and seconds per 1,000 samples for each explanation metric and
for match scoring.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer samples (< 1 minute)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=lambda v: [int(x) for x in v.split(",")], default=[1, 32, 256],
                    help="comma-separated answer lengths to measure (default 1,32,256; 256 is gleamx-eval's default)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per setting; medians are printed")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1, as the other benchmarks: two oversubscribe a shared 2-core box)")
    ap.add_argument("--generation-only", action="store_true", help="skip the scoring timings")
    args = ap.parse_args()

    import torch

    from gleamx.data import load_samples
    from gleamx.synth import synthesize
    from gleamx.eval.generate import generate_answers
    from gleamx.eval.match import match_metrics
    from gleamx.eval.stats import bootstrap_ci
    from gleamx.models import build_tiny_model, load_model_and_processor
    from gleamx.prompts.verdict import parse_verdict

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    n_gen = 16 if args.quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", n=max(10 * n_gen, 200), seed=0)
        model_dir = build_tiny_model("qwen2_5_vl", tmp / "model")
        model, processor = load_model_and_processor(model_dir)
        model.eval()
        samples = load_samples(tmp / "data", split="test").samples
        samples = (samples * (n_gen // len(samples) + 1))[:n_gen]
        # A test file is rarely sorted by view or image size: shuffle, as the order a real file could have.
        random.Random(0).shuffle(samples)

        generate_answers(model, processor, samples[:2], "en", "explain", batch_size=2, max_new_tokens=4)  # warm-up
        print(f"generation on the tiny Qwen2.5-VL model (CPU, {torch.get_num_threads()} threads), {n_gen} samples "
              f"of all four views in shuffled order, explain prompt, greedy, median of {args.repeats} alternating runs; the random model never stops early, so every answer has "
              f"max_new_tokens tokens; same answers asserted in every row")
        print(f"  {'max_new_tokens':>14} {'one at a time':>14} {f'batch {args.batch_size}':>9} {'ratio':>6}   (samples/s)")
        for mnt in args.max_new_tokens:
            def timed(**kw):  # noqa: ANN003, ANN202
                t0 = time.perf_counter()
                got = generate_answers(model, processor, samples, "en", "explain", max_new_tokens=mnt, **kw)
                return got, time.perf_counter() - t0

            t_seqs, t_bats = [], []
            for _ in range(args.repeats):  # alternate, so load from other processes hits both alike
                seq, t = timed(batch_size=1)
                t_seqs.append(t)
                bat, t = timed(batch_size=args.batch_size)
                t_bats.append(t)
                assert bat == seq, "batched and sequential generation disagree"
            t_seq, t_bat = statistics.median(t_seqs), statistics.median(t_bats)
            print(f"  {mnt:>14} {n_gen / t_seq:14.1f} {n_gen / t_bat:9.1f} {t_seq / t_bat:5.2f}x")
        print("  target: >= 5x at batch 8 with gleamx-eval's default max_new_tokens (256)")

        if args.generation_only:
            return
        # Scoring: explanations of the test split against themselves with one sentence changed.
        all_samples = load_samples(tmp / "data").samples
        refs = [s.explanation["en"] for s in all_samples][:1000]
        refs = (refs * (1000 // len(refs) + 1))[:1000 if not args.quick else 200]
        preds = [r.replace("north", "south", 1) for r in refs]
        n = len(refs)
        print(f"scoring time per 1,000 samples (measured on {n})")
        labels = [i % 2 == 0 for i in range(n)]
        t0 = time.perf_counter()
        match_metrics(labels, [parse_verdict(p) for p in preds])
        print(f"  verdict parsing + match metrics : {1000 * (time.perf_counter() - t0) / n:8.3f} s")
        t0 = time.perf_counter()
        bootstrap_ci(labels, [parse_verdict(p) for p in preds], n_resamples=1000)
        print(f"  bootstrap CIs (1,000 resamples) : {1000 * (time.perf_counter() - t0) / n:8.3f} s")
        try:
            from gleamx.eval.metrics import explanation_text, score_explanations
        except ImportError as e:
            print(f"  explanation metrics unavailable ({e})")
            return
        p_txt, r_txt = [explanation_text(p) for p in preds], [explanation_text(r) for r in refs]
        for lang in ("en", "zh"):
            if lang == "zh":
                zh = [s.explanation["zh"] for s in all_samples]
                zh = (zh * (n // len(zh) + 1))[:n]
                r_txt = [explanation_text(r) for r in zh]
                p_txt = [t.replace("北", "南", 1) for t in r_txt]
            for metric in ("bleu", "chrf", "rouge_l", "sbert_cosine"):
                score_explanations(p_txt[:4], r_txt[:4], lang, metrics=(metric,))  # load model / modules once
                t0 = time.perf_counter()
                out = score_explanations(p_txt, r_txt, lang, metrics=(metric,))
                dt = time.perf_counter() - t0
                extra = f"  ({out.get('sbert_model')})" if metric == "sbert_cosine" else ""
                print(f"  {lang} {metric:<12} : {1000 * dt / n:8.3f} s{extra}")


if __name__ == "__main__":
    main()
