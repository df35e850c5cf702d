"""``gleamx-eval``: GLEAM-X match accuracy and explanation quality of a model, or of a predictions file."""

from __future__ import annotations

import argparse
import sys

from gleamx.cli.common import (
    console,
    nonnegative_int,
    one_line_errors,
    positive_float,
    positive_int,
    run_cli,
)


def build_parser() -> argparse.ArgumentParser:
    p = one_line_errors(argparse.ArgumentParser(prog="gleamx-eval", description=__doc__))
    src = p.add_argument_group("what to evaluate (one of)")
    src.add_argument("--model", help="model directory or Hub id (generates answers)")
    src.add_argument("--predictions", help="JSONL with id and prediction (answers made by any model or API)")
    p.add_argument("--adapter", help="PEFT adapter directory to apply to --model")
    p.add_argument("--data", required=True, help="GLEAM-X data: JSONL/ShareGPT file, directory or Hub id")
    p.add_argument("--split", default="test")
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--task", default="explain", choices=["explain", "label"])
    p.add_argument("--backend", default="hf", choices=["hf", "vllm"], help="vllm needs the 'vllm' extra and a GPU")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--max-new-tokens", type=positive_int, default=256)
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0,
                   help="greedy decoding's repetition penalty (1.0: none); the checkpoint's generation_config.json "
                        "is never used, so every backend decodes alike")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N samples (N >= 1)")
    p.add_argument("--min-pixels", type=positive_int, default=None,
                   help="override the per-image pixel floor (default: the processor saved with --adapter, "
                        "else --model's)")
    p.add_argument("--max-pixels", type=positive_int, default=None,
                   help="override the per-image pixel budget (default: the one the adapter's run trained with)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--sbert-model", default=None,
                   help="sentence-transformers id or path for explanation similarity (default: an offline model)")
    p.add_argument("--bertscore-model", default=None,
                   help="also score BERTScore with this encoder id or path (extra 'bertscore'; "
                        "all-MiniLM-L6-v2 works offline, English)")
    p.add_argument("--no-explanation-metrics", action="store_true")
    p.add_argument("--judge-model", default=None, help="LLM judge model name (OpenAI-compatible API)")
    p.add_argument("--judge-base-url", default=None, help="e.g. https://api.openai.com/v1 or a vLLM server")
    p.add_argument("--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    p.add_argument("--judge-concurrency", type=positive_int, default=8, help="judge requests in flight at once")
    p.add_argument("--judge-timeout", type=positive_float, default=60.0,
                   help="seconds one judge request may take before it is retried (default 60)")
    p.add_argument("--judge-max-retries", type=nonnegative_int, default=5,
                   help="retries of a judge request after a timeout, 429 or 5xx (default 5); then the run stops, "
                        "and a rerun resumes from judge.jsonl")
    p.add_argument("--bootstrap", type=nonnegative_int, default=1000,
                   help="bootstrap resamples for 95%% intervals (0: none)")
    p.add_argument("--output", required=True,
                   help="directory for predictions.jsonl, results.json/.md, report.html (one run at a time)")
    p.add_argument("--overwrite", action="store_true",
                   help="discard what --output holds from another model, adapter, decoding config or mode")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from gleamx.eval.run import EvalConfig, run_eval

        cfg = EvalConfig(**vars(args))
        results = run_eval(cfg)
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
        console.print(
            f"n={results['n']}  accuracy={pct(results['accuracy'])}  on matching pairs={pct(results['accuracy_positive'])}  "
            f"on non-matching pairs={pct(results['accuracy_negative'])}  invalid={pct(results['invalid_rate'])}"
        )
        images = results.get("images") or {}
        if images.get("image_tokens_per_sample") is not None and images.get("min_pixels") and images.get("max_pixels"):
            console.print(f"images: {images['min_pixels']:,} to {images['max_pixels']:,} pixels each, "
                          f"{images['image_tokens_per_sample']:.1f} image tokens per sample "
                          f"(processor of {images['processor']})", markup=False)
        expl = results.get("explanation") or {}
        if expl.get("sbert_cosine") is not None:
            console.print(f"explanations: sbert_cosine={expl['sbert_cosine']:.4f} ({expl.get('sbert_model')})  "
                          f"bleu={expl.get('bleu', 0):.2f}  chrf={expl.get('chrf', 0):.2f}  rouge_l={expl.get('rouge_l', 0):.4f}")
        console.print(f"report: {cfg.output}/report.html  tables: {cfg.output}/results.md  numbers: {cfg.output}/results.json")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
