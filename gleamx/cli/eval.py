"""``gleamx-eval``: score GLEAM-X match accuracy of a model, or of a predictions file."""

from __future__ import annotations

import argparse
import sys

from gleamx.cli.common import console, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gleamx-eval", description=__doc__)
    src = p.add_argument_group("what to evaluate (one of)")
    src.add_argument("--model", help="model directory or Hub id (generates answers)")
    src.add_argument("--predictions", help="JSONL with id and prediction (answers made elsewhere)")
    p.add_argument("--adapter", help="PEFT adapter directory to apply to --model")
    p.add_argument("--data", required=True, help="GLEAM-X data: JSONL/ShareGPT file, directory or Hub id")
    p.add_argument("--split", default="test")
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--task", default="explain", choices=["explain", "label"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    p.add_argument("--min-pixels", type=int, default=None)
    p.add_argument("--max-pixels", type=int, default=None)
    p.add_argument("--output", required=True, help="directory for predictions.jsonl, results.json, results.md")
    p.add_argument("--overwrite", action="store_true", help="discard predictions made with another config")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> int:
        from gleamx.eval.run import EvalConfig, run_eval

        cfg = EvalConfig(**{k: v for k, v in vars(args).items()})
        results = run_eval(cfg)
        pct = lambda x: "-" if x is None else f"{100 * x:.2f}%"  # noqa: E731
        console.print(
            f"n={results['n']}  accuracy={pct(results['accuracy'])}  positives={pct(results['accuracy_positive'])}  "
            f"negatives={pct(results['accuracy_negative'])}  invalid={pct(results['invalid_rate'])}"
        )
        console.print(f"results: {cfg.output}/results.json, {cfg.output}/results.md")
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
