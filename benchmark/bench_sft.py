"""SFT step cost: the real gleamx training loop vs bare forward+backward+step on the same tensors.

One ``run_sft`` run of the tiny recipe (``recipes/tiny/sft_lora.yaml``: LoRA, batch 8, both
languages, label task) on synthetic data. After every real training step (``GleamSFTTrainer``
inside ``trainer.train()``: DataLoader fetch of dataset rows -> TRL collator -> forward -> backward
-> clip -> optimizer -> scheduler -> callbacks/logging), a callback runs two replays on the
very tensors that step's collator produced: TRL's ``compute_loss`` + backward + clip + AdamW (the
trainer's compute without its data path) and a *bare* ``model(**batch).loss`` + backward + clip +
AdamW. The three alternate, so load from other processes hits them alike.

    data + collator overhead = (real step - TRL replay) / real step     (target <= 5%)
    TRL loss-path cost       = (TRL replay - bare replay) / real step

Also prints tokens/s, peak RSS, and image tokens per sample at three ``max_pixels`` budgets
(``image_token_count`` vs the processor's actual ``<|image_pad|>`` count).

    python benchmark/bench_sft.py            # 60 measured steps, ~1-3 min
    python benchmark/bench_sft.py --quick    # 20 measured steps, < 1 min
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

import gleamx.train.sft as sft
from gleamx.synth import synthesize
from gleamx.models import build_tiny_model, image_token_count, load_model_and_processor, training_chat_template
from gleamx.models.load import set_pixel_budget
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_lora.yaml"
WARMUP = 3  # first steps pay one-off costs (allocator, lazy imports) on both paths


class StepProbe:
    """State shared by the collator wrapper and the callback."""

    def __init__(self) -> None:
        self.last_batch: dict[str, Any] | None = None
        self.collate_s: list[float] = []
        self.real_s: list[float] = []
        self.bare_s: list[float] = []
        self.trl_s: list[float] = []
        self.tokens: list[int] = []
        self.resume_t: float | None = None  # when the callback handed control back to the trainer


class TimedCollator:
    """Times the trainer's collator (in-process loading only; in a worker its clock is not ours)."""

    def __init__(self, inner: Any, probe: StepProbe) -> None:
        self.inner, self.probe = inner, probe

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        batch = self.inner(examples)
        self.probe.collate_s.append(time.perf_counter() - t0)
        return batch

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


class BareStepCallback(TrainerCallback):
    """After each real step: time it, then time two replays of that step's batch.

    * bare: ``model(**batch).loss`` (the model's own lm_head + cross-entropy), backward, clip, AdamW;
    * trl:  ``trainer.compute_loss`` (TRL's fused, chunked LM head with entropy/accuracy metrics),
      backward, clip, AdamW: the trainer's own compute without the data path.
    """

    def __init__(self, probe: StepProbe, trainer: Any) -> None:
        self.probe, self.trainer = probe, trainer
        self.model: Any = None
        self.opt: torch.optim.Optimizer | None = None
        self.params: list[torch.nn.Parameter] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        # Its own AdamW over the same parameters: the same optimizer arithmetic as the real step.
        self.opt = torch.optim.AdamW(self.params, lr=args.learning_rate, weight_decay=args.weight_decay)
        self.probe.resume_t = time.perf_counter()

    def _replay(self, loss_fn: Any, max_grad_norm: float) -> float:
        t0 = time.perf_counter()
        loss_fn().backward()
        torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        p = self.probe
        p.real_s.append(time.perf_counter() - p.resume_t)
        batch = p.last_batch
        p.tokens.append(int(batch["attention_mask"].sum()))
        # use_cache=False as TRL's compute_loss sets it; compute_loss gets its own dict (it adds keys).
        p.bare_s.append(self._replay(lambda: self.model(**batch, use_cache=False).loss, args.max_grad_norm))
        p.trl_s.append(self._replay(lambda: self.trainer.compute_loss(self.model, dict(batch)), args.max_grad_norm))
        p.resume_t = time.perf_counter()


def probed_trainer(probe: StepProbe) -> type:
    class ProbedTrainer(sft.GleamSFTTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(BareStepCallback(probe, self))

        def get_train_dataloader(self):  # noqa: ANN201
            if not isinstance(self.data_collator, TimedCollator) and not self.args.dataloader_num_workers:
                self.data_collator = TimedCollator(self.data_collator, probe)
            return super().get_train_dataloader()

        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001
            # The batch as the trainer got it, from this process's collator or a worker's.
            probe.last_batch = dict(inputs)  # shallow copy: the trainer adds use_cache etc. to its own dict
            return super().training_step(model, inputs, num_items_in_batch)

    return ProbedTrainer


def run_probed_sft(data: Path, model_dir: Path, out: Path, steps: int, workers: int) -> StepProbe:
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.args import GleamScriptArguments
    from gleamx.train.recipe import parse_recipe

    argv = ["--config", str(RECIPE), "--model_name_or_path", str(model_dir), "--dataset_name", str(data),
            "--output_dir", str(out), "--max_steps", str(steps + WARMUP), "--save_strategy", "no",
            "--logging_steps", "10", "--disable_tqdm", "true", "--dataloader_num_workers", str(workers)]
    script_args, training_args, model_args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), argv)
    probe = StepProbe()
    original = sft.GleamSFTTrainer
    sft.GleamSFTTrainer = probed_trainer(probe)  # run_sft looks the class up at call time
    try:
        sft.run_sft(script_args, training_args, model_args)
    finally:
        sft.GleamSFTTrainer = original
    return probe


def image_token_table(data: Path, model_dir: Path, budgets: list[int]) -> None:
    """Image tokens per sample (query + satellite) per budget: predicted vs the processor's output."""
    from PIL import Image

    from gleamx.data import load_samples
    from gleamx.train.dataset import build_sft_dataset
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = load_model_and_processor(model_dir, dtype="float32")
    processor.chat_template = training_chat_template(processor)
    samples = load_samples(data, split="train").samples[:8]
    rows = build_sft_dataset(samples, "en", "label").dataset.__getitems__(list(range(len(samples))))
    pad_id = model.config.image_token_id
    model.train()
    print(f"\nimage tokens per sample (2 images) by max_pixels; synthetic images are "
          f"{sorted({Image.open(s.query_image).size for s in samples} | {Image.open(samples[0].satellite_image).size})}"
          "; 'x4' rows upscale them 4x (512 px side), like real photos")
    print(f"  {'max_pixels':<16} {'scale':<5} {'predicted':>9} {'actual':>7} {'seq len':>8} {'bare fwd+bwd s/batch8':>22}")
    for budget in budgets:
        set_pixel_budget(processor, max_pixels=budget)
        collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
        for scale in (1, 4):
            batch_rows = [{**r, "images": [im.resize((im.width * scale, im.height * scale)) for im in r["images"]]}
                          for r in rows]
            predicted = statistics.mean(sum(image_token_count(processor, *im.size) for im in r["images"])
                                        for r in batch_rows)
            batch = collator(batch_rows)
            actual = int((batch["input_ids"] == pad_id).sum()) / len(batch_rows)
            times = []
            for _ in range(3):  # first is warm-up
                t0 = time.perf_counter()
                model(**batch, use_cache=False).loss.backward()
                times.append(time.perf_counter() - t0)
                model.zero_grad(set_to_none=True)
            side = int(budget ** 0.5)
            print(f"  {f'{side}*{side}':<16} x{scale:<4} {predicted:9.1f} {actual:7.1f} {batch['input_ids'].shape[1]:8d} "
                  f"{min(times[1:]):22.3f}")


def report(probe: StepProbe, workers: int, wall: float) -> None:
    real, bare, trl_ = probe.real_s[WARMUP:], probe.bare_s[WARMUP:], probe.trl_s[WARMUP:]
    coll = probe.collate_s[WARMUP:len(probe.real_s)]
    tokens = probe.tokens[WARMUP:]
    r_sum, b_sum, t_sum, c_sum = sum(real), sum(bare), sum(trl_), sum(coll)
    ms = lambda xs: f"median {1000 * statistics.median(xs):6.1f} ms, total {sum(xs):6.2f} s"  # noqa: E731
    where = "in the training process" if not workers else f"in {workers} DataLoader worker process(es), overlapped"
    print(f"\nrecipe {RECIPE.name}: LoRA r16, batch 8, dataloader_num_workers={workers} (collator {where}); "
          f"{len(real)} measured steps (+{WARMUP} warm-up), run_sft wall {wall:.1f} s; "
          "the three step kinds alternate on the same batches")
    print(f"  gleamx step  trainer.train: rows -> TRL collator -> TRL loss -> bwd/clip/opt/sched/callbacks  {ms(real)}")
    print(f"  same tensors TRL compute_loss (fused chunked LM head + metrics) -> bwd/clip/AdamW             {ms(trl_)}")
    print(f"  bare         model(**batch).loss (model's lm_head + CE) -> bwd/clip/AdamW                    {ms(bare)}")
    data_oh = (r_sum - t_sum) / r_sum
    line = (f"data + collator overhead (gleamx step vs the same compute on pre-collated tensors): "
            f"{100 * data_oh:.1f}% of the step ({'within' if data_oh <= 0.05 else 'ABOVE'} the 5% target)")
    if coll:
        line += (f"; the collator alone measures {100 * c_sum / r_sum:.1f}% ({1000 * statistics.median(coll):.1f} "
                 f"ms/batch), the rest (row fetch + image decode, scheduler, callbacks, logging) "
                 f"{100 * (data_oh - c_sum / r_sum):.1f}%")
    print(line)
    print(f"TRL's loss path vs the model's own loss: {100 * (t_sum - b_sum) / r_sum:.1f}% of the step "
          f"(TRL step / bare step = {t_sum / b_sum:.2f}x)")
    print(f"ratio gleamx step / bare step: {r_sum / b_sum:.2f}x (all overhead together: "
          f"{100 * (r_sum - b_sum) / r_sum:.1f}% of the gleamx step)")
    print(f"tokens/s (non-pad, image tokens included): gleamx {sum(tokens) / r_sum:.0f}, "
          f"TRL loss on tensors {sum(tokens) / t_sum:.0f}, bare {sum(tokens) / b_sum:.0f}; "
          f"{statistics.mean(tokens) / 8:.0f} tokens per conversation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 measured steps (< 1 min)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: with other jobs on this 2-core box, 2 threads ran 3-5x slower)")
    ap.add_argument("--steps", type=int, default=None, help="measured steps (default 60, quick 20)")
    ap.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1],
                    help="dataloader_num_workers settings to measure, comma-separated (default 0,1: the tiny "
                         "recipe's in-process loading, and one worker process as the GPU recipes use 4)")
    args = ap.parse_args()
    steps = args.steps or (20 if args.quick else 60)

    set_threads_and_describe(args.threads)
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-sft-") as tmp:
        root = Path(tmp)
        data = root / "synth"
        synthesize(data, 200 if args.quick else 400, seed=0, difficulty="medium")
        model_dir = build_tiny_model("qwen2_5_vl", root / "model")
        for workers in args.workers:
            t0 = time.perf_counter()
            probe = run_probed_sft(data, model_dir, root / f"out-w{workers}", steps, workers)
            report(probe, workers, time.perf_counter() - t0)
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(f"peak RSS of this process: {peak_kib / 1024:.0f} MiB")
        image_token_table(data, model_dir, [112 * 112, 224 * 224, 448 * 448])


if __name__ == "__main__":
    sys.exit(main())
