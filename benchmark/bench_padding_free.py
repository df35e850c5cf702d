"""Padding-free batches vs padded batches: tokens/s and the padding share of the real SFT loop.

``run_sft`` runs of the tiny recipe (``recipes/tiny/sft_lora.yaml``: tiny Qwen2.5-VL, LoRA, batch 8,
sdpa on CPU) with ``task: explain`` and ``lang: en``, on synthetic pairs whose English explanations
are rewritten to lengths that vary the way MLLM-written explanations do: word counts drawn from a
log-normal (median ``--median-words`` 90, sigma 0.6: p90 about 195 words), clipped to 15-400 words,
built from the synthetic world's own sentences. This shape is an assumption (GLEAM-X's own length
statistics are not available here); the length distribution actually trained on is printed, in
tokens per conversation (images, prompt and answer) and per answer.

The two settings alternate, padded, padding-free, padded, ... (``--repeats`` 3), on the same data in
the same order (same seed). Per run, after ``WARMUP`` steps, a callback times every step and the
trainer records each batch it stepped on:

    tokens/s      = real (non-padding) tokens of the measured steps / their summed step time
    padding share = padding positions / all positions of the batches the model ran on (0 when packed)

Each figure is the median over the runs with its min and max; the speed-up is the per-round ratio
(each round's pair shared the same background load).

    python benchmark/bench_padding_free.py                  # 3 x 2 runs of 8 measured steps
    python benchmark/bench_padding_free.py --quick          # smaller: --steps 4 --n 64

Figures go to ``benchmark/results/bench_padding_free.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

import gleamx.train.sft as sft
from gleamx.models import build_tiny_model
from gleamx.synth import synthesize
from machine import alternate, ratios, set_threads_and_describe, spread, timed  # benchmark/machine.py
from results import Results  # benchmark/results.py

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_lora.yaml"
WARMUP = 2  # first steps pay one-off costs (allocator, lazy imports) in both settings


def vary_explanations(data: Path, median_words: float, seed: int) -> None:
    """Rewrite every English explanation of ``data``'s JSONL files to a log-normal number of words."""
    rng = random.Random(seed)
    files = sorted(data.glob("*.jsonl"))
    rows = {f: [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line] for f in files}
    pool = [s.strip() for f in files for r in rows[f] if r.get("explanation", {}).get("en")
            for line in r["explanation"]["en"].splitlines()[:-1] for s in line.split(". ") if s.strip()]
    for f in files:
        for r in rows[f]:
            text = r.get("explanation", {}).get("en")
            if not text:
                continue
            *body, verdict = text.splitlines()  # the last line is the verdict ("Answer: Yes")
            own = [s.strip() for line in body for s in line.split(". ") if s.strip()]
            target = min(400, max(15, round(rng.lognormvariate(math.log(median_words), 0.6))))
            words: list[str] = []
            sentences = own + rng.sample(pool, len(pool))
            i = 0
            while len(words) < target:
                words += sentences[i % len(sentences)].rstrip(".").split() + ["."]
                i += 1
            sentence = " ".join(words[:target]).replace(" .", ".").rstrip(".,;: ")
            r["explanation"]["en"] = sentence + ".\n" + verdict
        f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[f]), encoding="utf-8")


def length_table(data: Path, model_dir: Path) -> dict[str, list[int]]:
    """Tokens per training conversation (all) and per answer, as TRL's collator makes them."""
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from gleamx.data import load_samples
    from gleamx.models import load_model_and_processor, training_chat_template
    from gleamx.train.sft_data import build_sft_dataset

    _, processor = load_model_and_processor(model_dir, max_pixels=50176)
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True,
                                                     chat_template=training_chat_template(processor))
    ds = build_sft_dataset(load_samples(data, split="train").dataset, "en", "explain").dataset
    total, answer = [], []
    for start in range(0, len(ds), 16):
        batch = collator(ds.__getitems__(list(range(start, min(start + 16, len(ds))))))
        total += batch["attention_mask"].sum(1).tolist()
        answer += (batch["labels"] != -100).sum(1).tolist()
    return {"conversation": total, "answer": answer}


def _p90(values: list[int]) -> int:
    v = sorted(values)
    return v[min(len(v) - 1, math.ceil(0.9 * len(v)) - 1)]


def _dist(values: list[int]) -> str:
    v = sorted(values)
    return f"min {v[0]}, median {statistics.median(v):.0f}, p90 {_p90(v)}, max {v[-1]} (n={len(v)})"


class Probe(TrainerCallback):
    """Step times after warm-up, and the real and padded token counts of each batch stepped on."""

    def __init__(self) -> None:
        self.step_s: list[float] = []
        self.real: list[int] = []
        self.positions: list[int] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.step_s.append(time.perf_counter() - self._t0)

    def batch(self, inputs: dict[str, Any]) -> None:
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        self.real.append(int(mask.sum()) if mask is not None else ids.numel())
        self.positions.append(ids.numel())


def run_once(data: Path, model_dir: Path, out: Path, steps: int, padding_free: bool) -> Probe:
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    probe = Probe()

    class ProbedTrainer(sft.GleamSFTTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(probe)

        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001
            probe.batch(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    argv = ["--config", str(RECIPE), "--model_name_or_path", str(model_dir), "--dataset_name", str(data),
            "--output_dir", str(out), "--max_steps", str(steps + WARMUP), "--save_strategy", "no",
            "--logging_steps", "1000", "--disable_tqdm", "true", "--task", "explain", "--lang", "en",
            "--padding_free_vl", str(padding_free).lower()]
    parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
    script_args, training_args, model_args = parse_recipe(parser, argv)
    original = sft.GleamSFTTrainer
    sft.GleamSFTTrainer = ProbedTrainer  # build_trainer looks the class up at call time
    try:
        sft.run_sft(script_args, training_args, model_args)
    finally:
        sft.GleamSFTTrainer = original
    return probe


def metrics(probe: Probe, load: tuple[float, float]) -> dict[str, Any]:
    s, real, pos = probe.step_s[WARMUP:], probe.real[WARMUP:], probe.positions[WARMUP:]
    return {"tok_s": sum(real) / sum(s), "step_ms": 1000 * statistics.median(s),
            "pad": 100 * (sum(pos) - sum(real)) / sum(pos), "real": sum(real), "steps": len(s), "load": load}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=96, help="synthetic pairs (80%% train; default 96)")
    ap.add_argument("--steps", type=int, default=8, help=f"measured steps per run (+{WARMUP} warm-up; default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of padded + padding-free runs (default 3)")
    ap.add_argument("--median-words", type=float, default=90.0, help="median explanation length in words")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: a shared 2-core box)")
    ap.add_argument("--quick", action="store_true", help="--steps 4 --n 64")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.n = 4, 64

    set_threads_and_describe(args.threads)
    results = Results("bench_padding_free", quick=args.quick,
                      settings={"n": args.n, "steps": args.steps, "repeats": args.repeats, "warmup": WARMUP,
                                "median_words": args.median_words})
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-pf-") as tmp:
        root = Path(tmp)
        data = root / "synth"
        synthesize(data, args.n, seed=0, difficulty="medium")
        vary_explanations(data, args.median_words, seed=0)
        model_dir = build_tiny_model("qwen2_5_vl", root / "model")
        lengths = length_table(data, model_dir)
        print(f"tokens per conversation (2 images + prompt + answer): {_dist(lengths['conversation'])}")
        print(f"tokens per answer (explanation + verdict, learned):   {_dist(lengths['answer'])}")
        for kind in ("conversation", "answer"):
            results.add(f"tokens.{kind}", statistics.median(lengths[kind]), unit="tokens", fmt=".0f",
                        label=f"tokens per {kind}, median over the training samples",
                        p90=_p90(lengths[kind]),
                        lowest=min(lengths[kind]), highest=max(lengths[kind]), samples=len(lengths[kind]))

        def one(padding_free: bool) -> Any:
            def run(r: int) -> dict[str, Any]:
                load0 = os.getloadavg()[0]
                _, probe = timed(lambda: run_once(data, model_dir, root / f"out-{padding_free}-{r}", args.steps,
                                                  padding_free))
                return metrics(probe, (load0, os.getloadavg()[0]))
            return run

        res = alternate({"padded": one(False), "padding-free": one(True)}, args.repeats)
        print(f"\nrecipe {RECIPE.name} (tiny Qwen2.5-VL, LoRA r16, sdpa, float32), task explain, lang en, batch 8; "
              f"{args.repeats} rounds x {res['padded'][0]['steps']} measured steps (+{WARMUP} warm-up) per setting")
        for name, runs in res.items():
            for i, m in enumerate(runs, start=1):
                print(f"  {name:<12} run {i}: {m['tok_s']:.0f} tokens/s, step {m['step_ms']:.0f} ms (median), "
                      f"padding {m['pad']:.1f}% of positions; load average {m['load'][0]:.2f} -> {m['load'][1]:.2f}")
        for name, runs in res.items():
            print(f"{name:<12} tokens/s {spread([m['tok_s'] for m in runs], '.0f')}; step "
                  f"{spread([m['step_ms'] for m in runs], '.0f', ' ms')}; padding share "
                  f"{spread([m['pad'] for m in runs], '.1f', '%')}")
        assert all(a["real"] == b["real"] for a, b in zip(res["padded"], res["padding-free"], strict=True)), \
            "the two settings trained on different tokens"
        per_round = ratios([m["tok_s"] for m in res["padding-free"]], [m["tok_s"] for m in res["padded"]])
        print(f"padding-free / padded tokens/s, per round: {spread(per_round, '.2f', 'x')} (same batches, same tokens)")
        for name, key in (("padded", "padded"), ("padding-free", "packed")):
            runs = res[name]
            results.add(f"{key}.tok_s", [m["tok_s"] for m in runs], unit="tokens/s", fmt=".0f",
                        label=f"{name}: non-padding tokens per second")
            results.add(f"{key}.step_ms", [m["step_ms"] for m in runs], unit="ms", fmt=".0f",
                        label=f"{name}: median step time")
            results.add(f"{key}.padding_share", [m["pad"] for m in runs], unit="%", fmt=".1f",
                        label=f"{name}: padding positions / all positions")
        results.add("speedup", per_round, unit="x", fmt=".2f", label="padding-free / padded tokens/s, per round")
    results.write()


if __name__ == "__main__":
    sys.exit(main())
