"""Batched vs one-at-a-time generation at GLEAM-X's answer lengths, and scoring against the bare embedding pass.

    python benchmark/bench_eval.py                     # generation on 48 samples, then scoring on 50 pairs
    python benchmark/bench_eval.py --generation-only   # no scoring
    python benchmark/bench_eval.py --scoring-only      # no generation
    python benchmark/bench_eval.py --quick             # 16 samples, scoring on 20 pairs

Generation: gleamx's batched generation (left padding, batch 8) against generating one sample at a time,
greedy, on the same synthetic test samples with the tiny Qwen2.5-VL model (the real 151,936-token
vocabulary by default). The two paths alternate (one at a time, batched, x ``--repeats``), their answers
are asserted identical, and the ratio is the median of the per-round ratios.

Answer lengths are GLEAM-X's: the random tiny model never stops by itself, so each answer is *made* to
stop at its own end-of-sequence after as many tokens as that sample's reference answer has (its
explanation and verdict line, tokenised with the same Qwen tokenizer; the distribution over all the
synthetic references is printed: median, p10, p90, max). The stop is imposed by :class:`ImposedStop`, a
logits processor that keeps the stop tokens out of the argmax before that step and makes ``<|im_end|>`` the
argmax at it, row by row; the row is found by its images, so batched and one-at-a-time generation impose the
same length on the same sample, and every answer's length is checked after generation. What batching then
does past a row's end (the finished row decoded as padding until its batch's longest answer ends) is real
work, and the share of such padded row-steps is printed. ``--fixed-lengths 1,32,256`` adds the earlier
setting: every answer runs to ``max_new_tokens``.

Scoring: seconds per 1,000 pairs of match scoring, bootstrap CIs, each lexical explanation metric, all
explanation metrics together (``score_explanations``, what ``gleamx-eval`` runs) with no cache and with the
references' embeddings cached (what a second eval of the same data finds), against their lower bound: the
default embedding model's bare batched pass over exactly the texts that scoring embeds (recorded from its
own encoder call: every distinct prediction and reference without the cache, the predictions not among
the references with it). Target: all metrics at most 1.5x that pass. Every step runs once per round.

Every figure is the median over the rounds with its min and max, written to
``benchmark/results/bench_eval_generation.json`` and ``bench_eval_scoring.json`` (one file per part, so a
``--generation-only`` or ``--scoring-only`` run replaces only its own; ``--quick`` to ``results/quick/``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from machine import alternate, ratios, set_threads_and_describe, spread, timed  # benchmark/machine.py
from results import Results  # benchmark/results.py

MAX_NEW_TOKENS = 256  # gleamx-eval's default: every synthetic reference answer fits under it


def token_lengths(tokenizer: Any, samples: Sequence[Any], lang: str) -> list[int]:
    """Tokens of each sample's reference answer (``build_answer``: explanation + verdict line), no special tokens."""
    from gleamx.prompts.messages import build_answer

    return [len(tokenizer.encode(build_answer(s, lang, "explain"), add_special_tokens=False)) for s in samples]


def distribution(values: Sequence[int]) -> dict[str, float]:
    """median, p10, p90, min, max and n of a list of lengths."""
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return {"median": statistics.median(values), "p10": deciles[0], "p90": deciles[-1], "min": min(values),
            "max": max(values), "n": len(values)}


def describe(d: dict[str, float]) -> str:
    return (f"median {d['median']:.0f}, p10 {d['p10']:.0f}, p90 {d['p90']:.0f}, min {d['min']}, max {d['max']} "
            f"(n={d['n']})")


class ImposedStop(LogitsProcessor):
    """Ends row ``r``'s answer after ``lengths[r]`` tokens: before that step the stop tokens are kept out of the
    argmax, at it ``eos_id`` is made the argmax (one above the row's largest score). Rows past their end are
    left alone (``generate`` pads them). Everything else is the model's own greedy choice."""

    def __init__(self, lengths: Sequence[int], prompt_len: int, eos_id: int, stop_ids: Sequence[int]) -> None:
        self.lengths = torch.tensor(list(lengths))
        self.prompt_len, self.eos_id = prompt_len, eos_id
        self.stop_ids = torch.tensor(list(stop_ids))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        made = input_ids.shape[1] - self.prompt_len  # tokens generated so far, the same in every row
        early = torch.nonzero(self.lengths > made).squeeze(1)
        if early.numel():
            scores[early[:, None], self.stop_ids[None, :]] = float("-inf")
        due = torch.nonzero(self.lengths == made).squeeze(1)
        if due.numel():
            scores[due, self.eos_id] = scores[due].max(dim=-1).values + 1.0
        return scores


def _key(pixels: torch.Tensor) -> str:
    return hashlib.blake2b(pixels.contiguous().numpy().tobytes(), digest_size=16).hexdigest()


def sample_key(processor: Any, sample: Any) -> str:
    """A sample's identity as ``generate`` sees it: a hash of its images' pixel values (the image processor
    treats each image alone, so the values are the same in a batch of 8 and alone)."""
    from gleamx.prompts import sample_images

    return _key(processor.image_processor(images=sample_images(sample), return_tensors="pt")["pixel_values"])


def row_keys(pixel_values: torch.Tensor, image_grid_thw: torch.Tensor, images_per_row: int) -> list[str]:
    """:func:`sample_key` of every row of a batch: the rows' images lie in row order in ``pixel_values``, each
    ``t * h * w`` patches (``image_grid_thw``)."""
    chunks = torch.split(pixel_values, image_grid_thw.prod(-1).tolist())
    return [_key(torch.cat(chunks[i:i + images_per_row])) for i in range(0, len(chunks), images_per_row)]


@contextlib.contextmanager
def imposed_stops(model: Any, processor: Any, samples: Sequence[Any], lengths: Sequence[int],
                  stop_ids: Sequence[int], max_new_tokens: int) -> Iterator[list[int]]:
    """Within the block, ``model.generate`` ends each sample's answer after its ``lengths`` entry (found by its
    images, :func:`row_keys`) and checks afterwards that every row stopped there (or at ``max_new_tokens``).
    Yields a list that collects the decode steps each row went through, padding after its end included."""
    from gleamx.task.templates import IMAGE_ORDER

    wanted: dict[str, int] = {}
    for s, n in zip(samples, lengths, strict=True):
        k = sample_key(processor, s)
        if wanted.setdefault(k, n) != n:
            raise ValueError(f"two samples with the same images want {wanted[k]} and {n} tokens")
    original = model.generate  # the bound method, found on the class
    stops = torch.tensor(list(stop_ids))
    steps: list[int] = []

    def generate(**kwargs: Any) -> torch.Tensor:
        rows = [wanted[k] for k in row_keys(kwargs["pixel_values"], kwargs["image_grid_thw"], len(IMAGE_ORDER))]
        prompt_len = kwargs["input_ids"].shape[1]
        stop = ImposedStop(rows, prompt_len, int(stop_ids[0]), stop_ids)
        out = original(**kwargs, logits_processor=LogitsProcessorList([stop]))
        new = out[:, prompt_len:]
        for row, n in zip(new, rows, strict=True):
            at = torch.nonzero(torch.isin(row, stops))
            got = int(at[0]) if at.numel() else new.shape[1]
            assert got == min(n, max_new_tokens), f"answer stopped after {got} tokens, {n} imposed"
        steps.extend([new.shape[1]] * new.shape[0])
        return out

    model.generate = generate  # an instance attribute: shadows the class's method inside the block only
    try:
        yield steps
    finally:
        del model.generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples (16) and scoring pairs (20)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--fixed-lengths", type=lambda v: [int(x) for x in v.split(",")], default=[],
                    help="also measure answers that never stop early, at these max_new_tokens (comma-separated; "
                         "the earlier setting: e.g. 1,32,256)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per setting; medians are printed")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1, as the other benchmarks: two oversubscribe a shared 2-core box)")
    ap.add_argument("--tokenizer", choices=("qwen", "bpe"), default="qwen",
                    help="tiny model's vocabulary: qwen = the real 151,936-row output layer (default; issue 13's "
                         "setting), bpe = the small test vocabulary (answer lengths are measured with the Qwen "
                         "tokenizer either way)")
    ap.add_argument("--generation-only", action="store_true", help="skip the scoring timings")
    ap.add_argument("--scoring-only", action="store_true", help="skip the generation timings")
    ap.add_argument("--score-n", type=int, default=None,
                    help="explanation pairs each scoring step runs on (default 50, quick 20; sentence embeddings "
                         "take 0.2-0.7 s a text on one loaded CPU thread)")
    ap.add_argument("--score-langs", type=lambda v: v.split(","), default=["en", "zh"],
                    help="comma-separated languages whose explanation metrics are timed (default en,zh)")
    args = ap.parse_args()

    from gleamx.data import load_samples
    from gleamx.synth import synthesize

    torch.manual_seed(0)
    set_threads_and_describe(args.threads)
    n_gen = 16 if args.quick else 48
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "data", n=max(10 * n_gen, 200), seed=0)
        if not args.scoring_only:
            results = Results("bench_eval_generation", quick=args.quick,
                              settings={"samples": n_gen, "batch_size": args.batch_size, "repeats": args.repeats,
                                        "tokenizer": args.tokenizer, "max_new_tokens": MAX_NEW_TOKENS,
                                        "fixed_lengths": args.fixed_lengths})
            generation_timings(args, tmp, n_gen, results)
            results.write()
        if not args.generation_only:
            results = Results("bench_eval_scoring", quick=args.quick,
                              settings={"pairs": args.score_n or (20 if args.quick else 50),
                                        "langs": args.score_langs, "repeats": args.repeats})
            score_timings(args, load_samples(tmp / "data").samples, tmp / "embedding_cache", results)
            results.write()


def generation_timings(args: argparse.Namespace, tmp: Path, n_gen: int, results: Results) -> None:
    """Batched vs one at a time at the references' answer lengths (and at ``--fixed-lengths``)."""
    from gleamx.data import load_samples
    from gleamx.eval.decoding import stop_token_ids
    from gleamx.eval.generate import generate_answers
    from gleamx.models import build_tiny_model, load_model_and_processor

    model_dir = build_tiny_model("qwen2_5_vl", tmp / "model", tokenizer=args.tokenizer)
    model, processor = load_model_and_processor(model_dir)
    model.eval()
    samples = load_samples(tmp / "data", split="test").samples
    samples = (samples * (n_gen // len(samples) + 1))[:n_gen]
    # A test file is rarely sorted by view or image size: shuffle, as the order a real file could have.
    random.Random(0).shuffle(samples)

    # Answer lengths with the real Qwen tokenizer, whatever the model's vocabulary (bpe: its own tokenizer).
    qwen = processor.tokenizer if args.tokenizer == "qwen" else load_model_and_processor(
        build_tiny_model("qwen2_5_vl", tmp / "qwen-tokenizer", tokenizer="qwen"))[1].tokenizer
    every = token_lengths(qwen, load_samples(tmp / "data").samples, "en")
    lengths = token_lengths(qwen, samples, "en")
    d_all, d_ours = distribution(every), distribution(lengths)
    print(f"reference answer lengths (en explain answers: explanation + verdict line, Qwen tokenizer, no special "
          f"tokens): all {len(every)} synthetic references: {describe(d_all)}; the {n_gen} generated here: "
          f"{describe(d_ours)}")
    over = sum(n >= MAX_NEW_TOKENS for n in lengths)
    if over:
        print(f"  {over} reference(s) reach max_new_tokens ({MAX_NEW_TOKENS}): those answers are cut there, as "
              "gleamx-eval would cut them")

    generate_answers(model, processor, samples[:2], "en", "explain", batch_size=2, max_new_tokens=4)  # warm-up
    vocab = model.get_output_embeddings().weight.shape[0]
    stop_ids = stop_token_ids(getattr(model.generation_config, "eos_token_id", None), processor.tokenizer)
    print(f"generation on the tiny Qwen2.5-VL model ({args.tokenizer} tokenizer, vocabulary {vocab:,}; CPU, "
          f"{torch.get_num_threads()} threads), {n_gen} samples of all four views in shuffled order, explain "
          f"prompt, greedy, {args.repeats} alternating rounds; same answers asserted in every row")
    print(f"  {'answer lengths':>28} {'one at a time':>33} {f'batch {args.batch_size}':>33} "
          f"{'ratio (per-round)':>32}   (samples/s: median (min, max) over rounds)")

    def measure(label: str, max_new_tokens: int) -> list[float]:
        def run(batch_size: int) -> Callable[[int], Any]:
            return lambda _r: timed(lambda: generate_answers(model, processor, samples, "en", "explain",
                                                             max_new_tokens=max_new_tokens, batch_size=batch_size))

        # one at a time, batched, one at a time, ...: load from other processes hits both alike
        got = alternate({"seq": run(1), "bat": run(args.batch_size)}, args.repeats)
        assert all(b[1] == q[1] for q, b in zip(got["seq"], got["bat"])), "batched and sequential generation disagree"
        t_seq, t_bat = [t for t, _ in got["seq"]], [t for t, _ in got["bat"]]
        ratio = ratios(t_seq, t_bat)
        print(f"  {label:>28} {spread([n_gen / t for t in t_seq], '.2f'):>33} "
              f"{spread([n_gen / t for t in t_bat], '.2f'):>33} {spread(ratio, '.2f', 'x'):>32}")
        key = "generation.reference" if label.startswith("reference") else f"generation.fixed{max_new_tokens}"
        results.add(f"{key}.batched_over_sequential", ratio, unit="x",
                    label=f"batch {args.batch_size} / one at a time, samples/s, {label}")
        results.add(f"{key}.sequential_samples_per_s", [n_gen / t for t in t_seq], unit="samples/s",
                    label=f"one at a time, {label}")
        results.add(f"{key}.batched_samples_per_s", [n_gen / t for t in t_bat], unit="samples/s",
                    label=f"batch {args.batch_size}, {label}")
        return ratio

    with imposed_stops(model, processor, samples, lengths, stop_ids, MAX_NEW_TOKENS) as steps:
        measure("reference lengths (stop imposed)", MAX_NEW_TOKENS)
    # One round of each path's steps: the one-at-a-time rows first (each its own answer and its stop), then the
    # batched rows (each as long as its batch's longest answer).
    per_round = len(steps) // args.repeats
    seq_steps, bat_steps = steps[:n_gen], steps[n_gen:per_round]
    padded = 100 * (1 - sum(seq_steps) / sum(bat_steps))
    print(f"  each answer ends at its own <|im_end|> after its reference's length (checked row by row); batch "
          f"{args.batch_size} decodes {sum(bat_steps):,} row-steps for the {sum(seq_steps):,} the answers need: "
          f"{padded:.1f}% are rows padded past their end until their batch's longest answer finishes")
    results.add("generation.reference.answer_tokens", lengths, unit="tokens",
                label="reference answer length of each generated sample (en explain, Qwen tokenizer)",
                p10=d_ours["p10"], p90=d_ours["p90"], all_references=d_all)
    results.add("generation.reference.padded_row_steps", padded, unit="%",
                label=f"batch {args.batch_size} row-steps past a row's end / all its row-steps")
    for mnt in args.fixed_lengths:
        measure(f"never stop, {mnt} tokens", mnt)
    print(f"  target: >= 5x at batch {args.batch_size} at GLEAM-X's answer lengths")
    output_layer_bound(model, args.batch_size, args.repeats, results)


def output_layer_bound(model: Any, batch_size: int, repeats: int, results: Results) -> None:
    """Time the model's output layer alone (logits + argmax) for 1 and ``batch_size`` rows, and its own
    batching ratio ``batch_size * t(1) / t(batch)``. With the real vocabulary it is most of a decoding step
    of the tiny model, so the step's ratio lies near it: above it by what fixed per-step costs (Python,
    cache bookkeeping) gain from batching, below it by what per-row costs (logit copies) lose."""
    weight = model.get_output_embeddings().weight.detach()
    rows = {b: torch.randn(b, weight.shape[1], dtype=weight.dtype) for b in (1, batch_size)}

    def step(b: int) -> Callable[[int], float]:
        def run(_r: int) -> float:
            with torch.inference_mode():
                t0 = time.perf_counter()
                for _ in range(10):
                    torch.nn.functional.linear(rows[b], weight).argmax(dim=-1)
                return (time.perf_counter() - t0) / 10
        return run

    got = alternate({"one": step(1), "batch": step(batch_size)}, max(repeats, 3))
    own = [batch_size * a / b for a, b in zip(got["one"], got["batch"])]
    print(f"  output layer alone ({weight.shape[0]:,} x {weight.shape[1]}, logits + argmax, ms per step): "
          f"1 row {spread([1000 * t for t in got['one']], '.1f')}, {batch_size} rows "
          f"{spread([1000 * t for t in got['batch']], '.1f')}; its own ratio {spread(own, '.2f', 'x')}")
    results.add("generation.output_layer_ratio", own, unit="x",
                label=f"output layer alone: {batch_size} x t(1 row) / t({batch_size} rows)")


def embedded_texts(score: Callable[[], Any]) -> list[str]:
    """The texts ``score()`` hands to the sentence-embedding model, recorded from its encoder (one batched call
    is what the scorer makes: asserted)."""
    from gleamx.eval.metrics.gleamx_sbert_cosine import gleamx_sbert_cosine as sbert

    calls: list[list[str]] = []
    real = sbert.load_encoder

    def spy(model: str, device: str | None = None) -> Callable[[list[str]], Any]:
        encode = real(model, device)
        return lambda texts: (calls.append(list(texts)), encode(texts))[1]

    sbert.load_encoder = spy
    try:
        score()
    finally:
        sbert.load_encoder = real
    assert len(calls) <= 1, f"the scorer embedded in {len(calls)} calls, not one"
    return calls[0] if calls else []


def score_timings(args: argparse.Namespace, all_samples: list, cache_dir: Path, results: Results) -> None:
    """Seconds per 1,000 pairs of every scoring step, and all explanation metrics (without and with the
    references' embeddings cached) against the bare batched pass over the texts each embeds."""
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
        model = default_model(lang)
        encode = load_encoder(model)
        encode(r_txt[:2])  # load the model outside the timings
        for metric in METRICS:
            score_explanations(p_txt[:4], r_txt[:4], lang, metrics=(metric,))  # import each module once
            if metric != "sbert_cosine":  # alone, it is the all-metrics step less the cheap lexical ones
                steps[f"{lang} {metric}"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang, metric=metric:
                                             score_explanations(p_txt, r_txt, lang, metrics=(metric,)))
        lang_cache = cache_dir / lang
        every = embedded_texts(lambda p_txt=p_txt, r_txt=r_txt, lang=lang: score_explanations(
            p_txt, r_txt, lang, metrics=("sbert_cosine",)))
        score_explanations(p_txt, r_txt, lang, metrics=("sbert_cosine",), reference_cache=lang_cache)  # fill it
        cached = embedded_texts(lambda p_txt=p_txt, r_txt=r_txt, lang=lang, c=lang_cache: score_explanations(
            p_txt, r_txt, lang, metrics=("sbert_cosine",), reference_cache=c))
        steps[f"{lang} all metrics"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang:
                                        score_explanations(p_txt, r_txt, lang))
        steps[f"{lang} all, references cached"] = (lambda p_txt=p_txt, r_txt=r_txt, lang=lang, c=lang_cache:
                                                   score_explanations(p_txt, r_txt, lang, reference_cache=c))
        # The lower bounds: the embedding model alone, one call over exactly the texts each step embeds.
        steps[f"{lang} bare pass, all texts"] = lambda encode=encode, t=every: encode(t)
        if cached:  # (none when every prediction equals a reference)
            steps[f"{lang} bare pass, predictions"] = lambda encode=encode, t=cached: encode(t)
        notes[f"{lang} all metrics"] = f"  ({len(every)} texts embedded, {model})"
        notes[f"{lang} all, references cached"] = f"  ({len(cached)} texts embedded)"
        notes[f"{lang} bare pass, all texts"] = f"  (the {len(every)} distinct predictions and references, one call)"
        notes[f"{lang} bare pass, predictions"] = f"  (the {len(cached)} predictions not among the references)"
    # every step once per round, round after round: load from other processes hits them alike
    got = alternate({k: (lambda _r, fn=fn: timed(fn)[0]) for k, fn in steps.items()}, args.repeats)
    print(f"scoring time per 1,000 pairs (measured on {n}, median of {args.repeats} rounds (min, max))")
    for name, times in got.items():
        print(f"  {name:<34}: {spread([1000 * t / n for t in times], '.3f', ' s')}{notes.get(name, '')}")
        key = name.lower().replace(" + ", "_").replace(",", "").replace(" ", "_").replace("(", "").replace(")", "")
        results.add(f"scoring.s_per_1000.{key}", [1000 * t / n for t in times], unit="s",
                    label=f"{name}: seconds per 1,000 pairs")
    for lang in langs:
        full = ratios(got[f"{lang} all metrics"], got[f"{lang} bare pass, all texts"])
        print(f"  {lang} all metrics / bare pass of the texts it embeds  : {spread(full, '.2f', 'x')}   "
              "(target <= 1.5x)")
        results.add(f"scoring.{lang}.all_over_bare", full, unit="x",
                    label=f"{lang}: all explanation metrics / bare embedding pass over the texts they embed")
        if f"{lang} bare pass, predictions" not in got:
            continue
        warm = ratios(got[f"{lang} all, references cached"], got[f"{lang} bare pass, predictions"])
        print(f"  {lang} references cached / bare pass of the predictions: {spread(warm, '.2f', 'x')}")
        results.add(f"scoring.{lang}.cached_over_bare", warm, unit="x",
                    label=f"{lang}: all metrics, references cached / bare embedding pass over the predictions "
                          "it embeds")


if __name__ == "__main__":
    main()
