"""Batched vs one-at-a-time generation on the tiny model, and scoring time per 1,000 samples.

    python benchmark/bench_eval.py                     # 21 min at load 6 on 2 cores (sentence embeddings take most)
    python benchmark/bench_eval.py --generation-only   # no scoring
    python benchmark/bench_eval.py --quick             # 16 samples, scoring on 20
    python benchmark/bench_eval.py --scoring-only      # no generation

The explanation metrics are timed one by one, all together (``score_explanations``, no cache and with
the references' embeddings cached, as a second eval of the same data finds them) and against the
default embedding model's bare batched forward pass over the same texts (target: all metrics at most
1.5x that pass).

Prints, measured in this one run: samples/s of gleamx's batched generation
(left padding, batch 8) against generating one sample at a time and the ratio
(target >= 5x at batch 8) at three answer lengths, an assertion that both give
the same answers, and seconds per 1,000 samples for each explanation metric, all of them
together, and for match scoring. The two generation paths alternate (one at a time, batched, x ``--repeats``),
and so do the scoring steps (all of them once per round); every figure is the median over the
rounds with its min and max, and the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
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
    ap.add_argument("--tokenizer", choices=("qwen", "bpe"), default="qwen",
                    help="tiny model's vocabulary: qwen = the real 151,936-row output layer (default; issue 13's setting), "
                         "bpe = the small test vocabulary")
    ap.add_argument("--generation-only", action="store_true", help="skip the scoring timings")
    ap.add_argument("--scoring-only", action="store_true", help="skip the generation timings")
    ap.add_argument("--score-n", type=int, default=None,
                    help="explanation pairs each scoring step runs on (default 50, quick 20; sentence embeddings "
                         "take 0.2-0.7 s a text on one loaded CPU thread)")
    ap.add_argument("--score-langs", type=lambda v: v.split(","), default=["en", "zh"],
                    help="comma-separated languages whose explanation metrics are timed (default en,zh)")
    args = ap.parse_args()

    import torch

    from gleamx.data import load_samples
    from gleamx.synth import synthesize
    from gleamx.eval.generate import generate_answers
    from gleamx.models import build_tiny_model, load_model_and_processor

    torch.manual_seed(0)
    set_threads_and_describe(args.threads)
    n_gen = 16 if args.quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", n=max(10 * n_gen, 200), seed=0)
        if args.scoring_only:
            score_timings(args, load_samples(tmp / "data").samples, tmp / "embedding_cache")
            return
        model_dir = build_tiny_model("qwen2_5_vl", tmp / "model", tokenizer=args.tokenizer)
        model, processor = load_model_and_processor(model_dir)
        model.eval()
        samples = load_samples(tmp / "data", split="test").samples
        samples = (samples * (n_gen // len(samples) + 1))[:n_gen]
        # A test file is rarely sorted by view or image size: shuffle, as the order a real file could have.
        random.Random(0).shuffle(samples)

        generate_answers(model, processor, samples[:2], "en", "explain", batch_size=2, max_new_tokens=4)  # warm-up
        vocab = model.get_output_embeddings().weight.shape[0]
        print(f"generation on the tiny Qwen2.5-VL model ({args.tokenizer} tokenizer, vocabulary {vocab:,}; CPU, "
              f"{torch.get_num_threads()} threads), {n_gen} samples "
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
        output_layer_bound(model, args.batch_size, args.repeats)

        if args.generation_only:
            return
        score_timings(args, load_samples(tmp / "data").samples, tmp / "embedding_cache")


def output_layer_bound(model: object, batch_size: int, repeats: int) -> None:
    """Time the model's output layer alone (logits + argmax) for 1 and ``batch_size`` rows, and its own
    batching ratio ``batch_size * t(1) / t(batch)``. With the real vocabulary it is most of a decoding step
    of the tiny model, so the step's ratio lies near it: above it by what fixed per-step costs (Python,
    cache bookkeeping) gain from batching, below it by what per-row costs (logit copies) lose."""
    import torch

    weight = model.get_output_embeddings().weight.detach()
    rows = {b: torch.randn(b, weight.shape[1], dtype=weight.dtype) for b in (1, batch_size)}

    def step(b: int) -> object:  # noqa: ANN202
        def run(_r: int) -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                for _ in range(10):
                    torch.nn.functional.linear(rows[b], weight).argmax(dim=-1)
                return (time.perf_counter() - t0) / 10
        return run

    got = alternate({"one": step(1), "batch": step(batch_size)}, max(repeats, 3))
    print(f"  output layer alone ({weight.shape[0]:,} x {weight.shape[1]}, logits + argmax, ms per step): "
          f"1 row {spread([1000 * t for t in got['one']], '.1f')}, {batch_size} rows "
          f"{spread([1000 * t for t in got['batch']], '.1f')}; its own ratio "
          f"{spread([batch_size * a / b for a, b in zip(got['one'], got['batch'])], '.2f', 'x')}")


def score_timings(args: argparse.Namespace, all_samples: list, cache_dir: Path) -> None:
    """Seconds per 1,000 pairs of every scoring step, and all explanation metrics against the default
    embedding model's bare batched forward pass over the same texts (target: at most 1.5x)."""
    from gleamx.eval.match import match_metrics
    from gleamx.eval.stats import bootstrap_ci
    from gleamx.task.verdict import parse_verdict

    # Explanations of the data against themselves with one word changed: every text distinct (the
    # worst case for deduplication), as a model's answers usually are.
    n = args.score_n or (20 if args.quick else 50)
    refs = [s.explanation["en"] for s in all_samples]
    refs = (refs * (n // len(refs) + 1))[:n]
    preds = [r.replace("north", "south", 1) for r in refs]
    labels = [i % 2 == 0 for i in range(n)]
    steps = {"verdict parsing + match metrics": lambda: match_metrics(labels, [parse_verdict(p) for p in preds]),
             "bootstrap CIs (1,000 resamples)": lambda: bootstrap_ci(labels, [parse_verdict(p) for p in preds],
                                                                     n_resamples=1000)}
    notes: dict[str, str] = {}
    try:
        from gleamx.eval.metrics import METRICS, explanation_text, score_explanations
        from gleamx.eval.metrics.gleamx_sbert_cosine.gleamx_sbert_cosine import default_model, load_encoder
    except ImportError as e:
        print(f"  explanation metrics unavailable ({e})")
        METRICS = ()  # noqa: N806
    texts: dict[str, tuple[list[str], list[str]]] = {}
    if METRICS:
        texts["en"] = ([explanation_text(p) for p in preds], [explanation_text(r) for r in refs])
        zh = [explanation_text(s.explanation["zh"]) for s in all_samples]
        zh = (zh * (n // len(zh) + 1))[:n]
        texts["zh"] = ([t.replace("北", "南", 1) for t in zh], zh)
    langs = [lang for lang in args.score_langs if lang in texts]
    for lang in langs:
        p_txt, r_txt = texts[lang]
        distinct = list(dict.fromkeys([*p_txt, *r_txt]))
        model = default_model(lang)
        encode = load_encoder(model)
        encode(distinct[:2])  # load the model outside the timings
        for metric in METRICS:
            score_explanations(p_txt[:4], r_txt[:4], lang, metrics=(metric,))  # import each module once
            steps[f"{lang} {metric}"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang, metric=metric:
                                         score_explanations(p_txt, r_txt, lang, metrics=(metric,)))
        notes[f"{lang} sbert_cosine"] = f"  ({model})"
        steps[f"{lang} all metrics"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang:
                                        score_explanations(p_txt, r_txt, lang))
        lang_cache = cache_dir / lang
        score_explanations(p_txt, r_txt, lang, metrics=("sbert_cosine",), reference_cache=lang_cache)  # warm
        steps[f"{lang} all, references cached"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang, c=lang_cache:
                                                   score_explanations(p_txt, r_txt, lang, reference_cache=c))
        steps[f"{lang} bare batched forward"] = lambda encode=encode, distinct=distinct: encode(distinct)
        notes[f"{lang} bare batched forward"] = f"  ({len(distinct)} distinct texts, one {model} call)"
    # every step once per round, round after round: load from other processes hits them alike
    got = alternate({k: (lambda _r, fn=fn: timed(fn)[0]) for k, fn in steps.items()}, args.repeats)
    print(f"scoring time per 1,000 pairs (measured on {n}, median of {args.repeats} rounds (min, max))")
    for name, times in got.items():
        print(f"  {name:<32}: {spread([1000 * t / n for t in times], '.3f', ' s')}{notes.get(name, '')}")
    for lang in langs:
        bare = got[f"{lang} bare batched forward"]
        print(f"  {lang} all metrics / bare forward      : "
              f"{spread(ratios(got[f'{lang} all metrics'], bare), '.2f', 'x')}   (target <= 1.5x)")
        print(f"  {lang} references cached / bare forward: "
              f"{spread(ratios(got[f'{lang} all, references cached'], bare), '.2f', 'x')}")


if __name__ == "__main__":
    main()
