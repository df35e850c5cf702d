"""Merge the training and eval benchmark results into one summary JSON and print a short table.

Used by bench_qwen25vl3b_lora.sh as its last stage:

    python benchmark/gpu/bench_report.py --train RUN/bench_result.json --eval EVAL_BENCH.json \\
        --out SUMMARY.json --mode gpu --model M --data D --recipe R --accelerate-config C [--set key=value ...]

Exits 1 (after printing what it has) when a measured field is missing or not positive. GPU memory
may be null only with ``--mode cpu``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "flash-attn", "gleamx")

# Fields every summary must hold with a positive number (GPU memory: also null in CPU mode).
TRAIN_MEASURED = ("step_time_s_mean", "tokens_per_s", "samples_per_s", "image_tokens_per_sample")
EVAL_MEASURED = ("step_time_s_mean", "samples_per_s", "tokens_per_s", "generated_tokens_per_sample",
                 "image_tokens_per_sample", "generate_s", "wall_s")
MEMORY = "peak_gpu_mem_gib"


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    try:
        import torch

        out["cuda"] = torch.version.cuda
    except ImportError:  # pragma: no cover - torch is a gleamx dependency
        out["cuda"] = None
    return out


def _read(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: bench-report: {p} is missing (did that stage run?)")
    return json.loads(p.read_text(encoding="utf-8"))


def problems(summary: dict[str, Any]) -> list[str]:
    """Measured fields that are missing or not positive."""
    bad = []
    cpu = summary["mode"] == "cpu"
    for part, fields in (("train", TRAIN_MEASURED), ("eval", EVAL_MEASURED)):
        for field in (*fields, MEMORY):
            value = summary[part].get(field)
            if field == MEMORY and cpu and value is None:
                continue
            if not isinstance(value, (int, float)) or value <= 0:
                bad.append(f"{part}.{field} = {value!r}")
    return bad


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = str(value)
    return f"{text}{unit}"


def table(summary: dict[str, Any]) -> str:
    t, e = summary["train"], summary["eval"]
    ta, ea = t.get("attn_implementation") or {}, e.get("attn_implementation") or {}
    head = (f"  {summary['device']} | {summary['mode']} | {summary.get('num_processes', t.get('world_size'))} "
            f"process(es) | ZeRO stage {_fmt(t.get('zero_stage'))} | attention: train "
            f"{ta.get('text', ta.get('model'))}/{ta.get('vision')} (text/vision), eval {ea.get('model')}")
    rows = [
        ("", "train", "eval", ""),
        ("step time (s)", _fmt(t.get("step_time_s_mean")), _fmt(e.get("step_time_s_mean")),
         f"train: optimizer step of {t.get('per_device_train_batch_size')} x {t.get('gradient_accumulation_steps')} "
         f"per device; eval: one batch of {e.get('batch_size')}"),
        ("tokens/s", _fmt(t.get("tokens_per_s")), _fmt(e.get("tokens_per_s")),
         f"train: non-padding tokens incl. image; eval: generated ({_fmt(e.get('generated_tokens_per_sample'))}"
         f"/sample, cap {e.get('max_new_tokens')})"),
        ("samples/s", _fmt(t.get("samples_per_s")), _fmt(e.get("samples_per_s")),
         f"eval end to end (loading, scoring): {_fmt(e.get('samples_per_s_end_to_end'))}"),
        ("image tokens / sample", _fmt(t.get("image_tokens_per_sample")), _fmt(e.get("image_tokens_per_sample")), ""),
        ("peak GPU memory (GiB)", _fmt(t.get(MEMORY)), _fmt(e.get(MEMORY)), ""),
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(3)]
    lines = [head] + ["  " + "  ".join(f"{str(c):<{w}}" for c, w in zip(r[:3], widths)) + ("  " + r[3] if r[3] else "")
                      for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="bench_sft.py's bench_result.json")
    p.add_argument("--eval", required=True, help="bench_eval.py's result JSON")
    p.add_argument("--out", required=True, help="summary JSON to write")
    p.add_argument("--mode", required=True, choices=["gpu", "cpu"])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra top-level fields (the value is parsed as JSON when it can be)")
    args = p.parse_args(argv)

    train, ev = _read(args.train), _read(args.eval)
    summary: dict[str, Any] = {"benchmark": "qwen2.5-vl-3b-lora", "mode": args.mode}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            summary[key] = json.loads(value)
        except json.JSONDecodeError:
            summary[key] = value
    summary.update({"device": train.get("device"), "versions": versions(), "zero_stage": train.get("zero_stage"),
                    "attn_implementation": {"train": train.get("attn_implementation"),
                                            "eval": ev.get("attn_implementation")},
                    "train": train, "eval": ev})
    bad = problems(summary)
    summary["ok"] = not bad
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(table(summary))
    print(f"bench: summary in {args.out}")
    if bad:
        print("error: bench-report: measured fields missing or not positive: " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
