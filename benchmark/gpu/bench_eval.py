"""Time gleamx-eval: ``gleamx.eval.run.run_eval`` with a counter around ``generate``.

Runs the same ``run_eval`` that ``gleamx-eval`` runs (HF backend), and measures around it:

* wall time of the whole run (model + adapter loading, generation, scoring, reports);
* every ``generate`` call, CUDA-synchronised: its time, the tokens it generated per row (up to and
  including the first stop token, so padding after an early stop is not counted), the prompt tokens
  (attention mask) and the image placeholder tokens in its input;
* ``torch.cuda.max_memory_allocated()`` over the run (null without a GPU);
* image tokens per sample as gleamx-eval reports them (``results.json`` -> ``images``), or, where
  that field is absent, computed with ``gleamx.models.image_token_count`` over the samples.

Decoding is gleamx-eval's own (greedy); ``--max-new-tokens`` caps the answer. A random-weight model
has no reason to stop early, so it usually runs to the cap; the token counts here are the ones
actually generated either way, so tokens/s stays well defined.

Placement is gleamx-eval's own (``load_for_inference`` puts the model on the GPU when there is one);
where a GPU is visible and generation ran elsewhere, this script fails rather than report CPU numbers.

    python benchmark/gpu/bench_eval.py --model M --adapter RUN_DIR --data D --limit 64 --output OUT/eval \\
        --result OUT/eval_bench.json

Prints one ``bench-eval:`` JSON line and writes it to ``--result``.

``--sequential`` also runs the same eval one sample at a time (batch 1, into ``OUTPUT-sequential``) and
adds ``sequential_generate_s``, ``batched_over_sequential`` (generate time, sequential / batched) and
``same_predictions`` (the fraction of samples whose answers agree; 1.0 in float32 on a CPU, where padding
changes no logit, and possibly lower in bf16 on a GPU). Issue 13's batching target is ">= 5x at batch 8
on the tiny model with the real Qwen vocabulary":

    gleamx models tiny --arch qwen2_5_vl --tokenizer qwen --out /tmp/tiny-qwen
    gleamx data synth --out /tmp/synth --n 200 --seed 0
    python benchmark/gpu/bench_eval.py --model /tmp/tiny-qwen --data /tmp/synth --limit 48 --batch-size 8 \
        --max-new-tokens 256 --dtype float32 --sequential --output /tmp/ev --result /tmp/ev.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_sft.py beside it (benchmark/ is no package)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class GenerateMeter:
    """Wraps ``transformers.GenerationMixin.generate`` (class level: whichever loader or PEFT wrapper
    gleamx-eval uses, the Qwen model's own ``generate`` runs exactly once per batch)."""

    def __init__(self) -> None:
        self.batch_s: list[float] = []  # one per generate call (one eval batch)
        self.generated: list[int] = []  # per row
        self.hit_cap: list[bool] = []
        self.prompt_tokens: list[int] = []
        self.image_tokens: list[int] = []
        self.model_info: dict[str, Any] = {}
        self._orig = None

    def install(self) -> None:
        from transformers.generation.utils import GenerationMixin

        self._orig = orig = GenerationMixin.generate
        meter = self

        def generate(model: Any, *args: Any, **kwargs: Any) -> Any:
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            _sync()
            t0 = time.perf_counter()
            out = orig(model, *args, **kwargs)
            _sync()
            meter.batch_s.append(time.perf_counter() - t0)
            meter._count(model, input_ids, kwargs, out)
            return out

        GenerationMixin.generate = generate

    @property
    def calls(self) -> int:
        return len(self.batch_s)

    @property
    def seconds(self) -> float:
        return sum(self.batch_s)

    def uninstall(self) -> None:
        if self._orig is not None:
            from transformers.generation.utils import GenerationMixin

            GenerationMixin.generate = self._orig

    def _count(self, model: Any, input_ids: Any, kwargs: dict[str, Any], out: Any) -> None:
        sequences = out if isinstance(out, torch.Tensor) else out.sequences
        if input_ids is None:
            raise RuntimeError("bench-eval: generate was called without input_ids; cannot count tokens")
        gen_cfg = kwargs.get("generation_config") or model.generation_config
        eos = gen_cfg.eos_token_id
        stops = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=sequences.device)
        cap = int(gen_cfg.max_new_tokens or 0)
        new = sequences[:, input_ids.shape[1]:]
        for row in new:
            hits = torch.isin(row, stops).nonzero() if stops.numel() else row.new_zeros((0, 1))
            stopped = bool(hits.numel())
            self.generated.append(int(hits[0, 0]) + 1 if stopped else int(row.shape[0]))
            self.hit_cap.append(not stopped and int(row.shape[0]) >= cap > 0)  # cut at the cap, no stop token
        mask = kwargs.get("attention_mask")
        prompt = mask.sum(dim=1) if mask is not None else torch.full((input_ids.shape[0],), input_ids.shape[1])
        self.prompt_tokens.extend(int(x) for x in prompt)
        image_id = getattr(model.config, "image_token_id", None)
        if image_id is not None:
            self.image_tokens.extend(int(x) for x in (input_ids == image_id).sum(dim=1))
        if not self.model_info:
            from bench_sft import _attn_implementations  # the training benchmark's reading, for one answer

            params = list(model.parameters())
            self.model_info = {"model_device": str(params[0].device) if params else None,
                               "param_dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in params}),
                               "attn_implementation": _attn_implementations(model)}


def _image_tokens_per_sample(results: dict[str, Any], cfg: Any) -> tuple[float | None, str]:
    images = results.get("images") or {}
    if images.get("image_tokens_per_sample") is not None:
        return float(images["image_tokens_per_sample"]), "results.json"
    # A gleamx-eval without the field: the run's processor's own resize rule over the samples' image sizes.
    from gleamx.data import load_samples
    from gleamx.models import image_token_count
    from gleamx.models.adapter import load_inference_processor
    from gleamx.prompts import sample_images

    processor, _ = load_inference_processor(cfg.model, cfg.adapter)
    samples = load_samples(cfg.data, split=cfg.split).samples[: cfg.limit]
    counts = [sum(image_token_count(processor, *im.size) for im in sample_images(s)) for s in samples]
    return (sum(counts) / len(counts) if counts else None), "image_token_count"


def _sequential(args: argparse.Namespace, batched_s: float) -> dict[str, Any]:
    """The same eval one sample at a time: its generate time, the ratio, and how many answers agree."""
    from gleamx.eval.run import EvalConfig, read_predictions, run_eval

    out = f"{args.output.rstrip('/')}-sequential"
    cfg = EvalConfig(data=args.data, lang=args.lang, output=out, model=args.model, adapter=args.adapter,
                     split=args.split, task=args.task, batch_size=1, max_new_tokens=args.max_new_tokens,
                     limit=args.limit, dtype=args.dtype, no_explanation_metrics=True, bootstrap=0, overwrite=True)
    meter = GenerateMeter()
    meter.install()
    try:
        run_eval(cfg)
    finally:
        meter.uninstall()
    batched = read_predictions(Path(args.output) / "predictions.jsonl")
    sequential = read_predictions(Path(out) / "predictions.jsonl")
    same = sum(batched[k]["prediction"] == v["prediction"] for k, v in sequential.items() if k in batched)
    return {"sequential_generate_s": round(meter.seconds, 3),
            "batched_over_sequential": round(meter.seconds / batched_s, 2),
            "same_predictions": round(same / max(len(sequential), 1), 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--adapter", default=None)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--lang", default="en")
    p.add_argument("--task", default="explain")
    p.add_argument("--limit", type=int, required=True, help="number of samples (N)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--output", required=True, help="gleamx-eval output dir (overwritten)")
    p.add_argument("--result", required=True, help="where to write the benchmark JSON")
    p.add_argument("--sequential", action="store_true",
                   help="also run batch 1 on the same samples: ratio and agreement of the answers")
    args = p.parse_args(argv)

    from gleamx.eval.run import EvalConfig, run_eval

    # Explanation metrics (Sentence-BERT, BLEU, ...) and bootstrap intervals time the scorer, not the
    # model: both off. Everything else is gleamx-eval as users run it.
    cfg = EvalConfig(data=args.data, lang=args.lang, output=args.output, model=args.model, adapter=args.adapter,
                     split=args.split, task=args.task, batch_size=args.batch_size,
                     max_new_tokens=args.max_new_tokens, limit=args.limit, dtype=args.dtype,
                     no_explanation_metrics=True, bootstrap=0, overwrite=True)
    meter = GenerateMeter()
    meter.install()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        results = run_eval(cfg).results
    finally:
        meter.uninstall()
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None

    n = len(meter.generated)
    if meter.calls == 0 or n == 0:
        print("error: bench-eval: gleamx-eval generated nothing (no generate call was seen)", file=sys.stderr)
        return 1
    if n != args.limit:
        print(f"error: bench-eval: {n} samples generated, expected {args.limit} (is the split that large?)",
              file=sys.stderr)
        return 1
    if torch.cuda.is_available() and not str(meter.model_info.get("model_device")).startswith("cuda"):
        print(f"error: bench-eval: gleamx-eval generated on {meter.model_info.get('model_device')} although a GPU "
              "is visible; these would be CPU numbers", file=sys.stderr)
        return 1
    img, img_source = _image_tokens_per_sample(results, cfg)
    generated = sum(meter.generated)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        **meter.model_info,
        "n_samples": n, "batch_size": args.batch_size, "split": args.split, "lang": args.lang, "task": args.task,
        "max_new_tokens": args.max_new_tokens, "generation": results.get("generation"),
        "generate_calls": meter.calls,
        # "Step" = one batch: preprocessing excluded, prefill + decode included; the first one warms up kernels.
        "step_time_s_mean": round(meter.seconds / meter.calls, 4),
        "step_time_s_first": round(meter.batch_s[0], 4),
        "generate_s": round(meter.seconds, 3),
        "wall_s": round(wall, 3),
        "samples_per_s": round(n / meter.seconds, 3),
        "tokens_per_s": round(generated / meter.seconds, 1),
        "tokens_per_s_with_prompt": round((generated + sum(meter.prompt_tokens)) / meter.seconds, 1),
        "samples_per_s_end_to_end": round(n / wall, 3),
        "generated_tokens_per_sample": round(generated / n, 1),
        "hit_max_new_tokens_fraction": round(sum(meter.hit_cap) / n, 3),
        "prompt_tokens_per_sample": round(sum(meter.prompt_tokens) / n, 1),
        "image_tokens_per_sample": None if img is None else round(img, 1),
        "image_tokens_per_sample_source": img_source,
        "image_tokens_per_sample_measured": (round(sum(meter.image_tokens) / len(meter.image_tokens), 1)
                                             if meter.image_tokens else None),
        "peak_gpu_mem_gib": None if peak is None else round(peak, 3),
    }
    if args.sequential:
        result.update(_sequential(args, meter.seconds))
    line = json.dumps(result)
    print(f"bench-eval: {line}", flush=True)
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(line + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    from gleamx.console import run_cli

    sys.exit(run_cli(main))
