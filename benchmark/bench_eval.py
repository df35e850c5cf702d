"""Batched vs one-at-a-time generation on the tiny model, and scoring time per 1,000 samples.

    python benchmark/bench_eval.py                     # 21 min at load 6 on 2 cores (sentence embeddings take most)
    python benchmark/bench_eval.py --generation-only   # no scoring
    python benchmark/bench_eval.py --quick             # 16 samples, scoring on 20

Prints, measured in this one run: samples/s of gleamx's batched generation
(left padding, batch 8) against generating one sample at a time and the ratio
(target >= 5x at batch 8) at three answer lengths, an assertion that both give
the same answers, and seconds per 1,000 samples for each explanation metric and
for match scoring. The two generation paths alternate (one at a time, batched, x ``--repeats``),
and so do the scoring steps (all of them once per round); every figure is the median over the
rounds with its min and max, and the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from machine import alternate, ratios, set_threads_and_describe, spread, timed


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
    ap.add_argument("--score-n", type=int, default=None,
                    help="explanation pairs each scoring step runs on (default 50, quick 20; sentence embeddings "
                         "take 0.5-1.4 s a pair on one loaded CPU thread)")
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
    set_threads_and_describe(args.threads)
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
        print(f"  {'max_new_tokens':>14} {'one at a time':>33} {f'batch {args.batch_size}':>33} "
              f"{'ratio (per-round)':>32}   (samples/s: median (min, max) over rounds)")
        for mnt in args.max_new_tokens:
            def run(batch_size: int) -> object:  # noqa: ANN202
                return lambda _r: timed(lambda: generate_answers(model, processor, samples, "en", "explain",
                                                                 max_new_tokens=mnt, batch_size=batch_size))

            # one at a time, batched, one at a time, ...: load from other processes hits both alike
            got = alternate({"seq": run(1), "bat": run(args.batch_size)}, args.repeats)
            assert all(b[1] == q[1] for q, b in zip(got["seq"], got["bat"])), "batched and sequential generation disagree"
            t_seq, t_bat = [t for t, _ in got["seq"]], [t for t, _ in got["bat"]]
            print(f"  {mnt:>14} {spread([n_gen / t for t in t_seq], '.1f'):>33} "
                  f"{spread([n_gen / t for t in t_bat], '.1f'):>33} {spread(ratios(t_seq, t_bat), '.2f', 'x'):>32}")
        print("  target: >= 5x at batch 8 with gleamx-eval's default max_new_tokens (256)")

        if args.generation_only:
            return
        # Scoring: explanations of the test split against themselves with one sentence changed.
        all_samples = load_samples(tmp / "data").samples
        n = args.score_n or (20 if args.quick else 50)
        refs = [s.explanation["en"] for s in all_samples]
        refs = (refs * (n // len(refs) + 1))[:n]
        preds = [r.replace("north", "south", 1) for r in refs]
        labels = [i % 2 == 0 for i in range(n)]
        steps = {"verdict parsing + match metrics": lambda: match_metrics(labels, [parse_verdict(p) for p in preds]),
                 "bootstrap CIs (1,000 resamples)": lambda: bootstrap_ci(labels, [parse_verdict(p) for p in preds],
                                                                         n_resamples=1000)}
        sbert_model: dict[str, str] = {}
        try:
            from gleamx.eval.metrics import explanation_text, score_explanations
        except ImportError as e:
            print(f"  explanation metrics unavailable ({e})")
        else:
            texts = {"en": ([explanation_text(p) for p in preds], [explanation_text(r) for r in refs])}
            zh = [explanation_text(s.explanation["zh"]) for s in all_samples]
            zh = (zh * (n // len(zh) + 1))[:n]
            texts["zh"] = ([t.replace("北", "南", 1) for t in zh], zh)
            for lang, (p_txt, r_txt) in texts.items():
                for metric in ("bleu", "chrf", "rouge_l", "sbert_cosine"):
                    out = score_explanations(p_txt[:4], r_txt[:4], lang, metrics=(metric,))  # load model once
                    if metric == "sbert_cosine":
                        sbert_model[f"{lang} {metric}"] = f"  ({out.get('sbert_model')})"
                    steps[f"{lang} {metric}"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang, metric=metric:
                                                 score_explanations(p_txt, r_txt, lang, metrics=(metric,)))
        # every step once per round, round after round: load from other processes hits them alike
        got = alternate({k: (lambda _r, fn=fn: timed(fn)[0]) for k, fn in steps.items()}, args.repeats)
        print(f"scoring time per 1,000 samples (measured on {n}, median of {args.repeats} rounds (min, max))")
        for name, times in got.items():
            print(f"  {name:<32}: {spread([1000 * t / n for t in times], '.3f', ' s')}{sbert_model.get(name, '')}")

if __name__ == "__main__":
    main()
