"""SFT step cost: the real gleamx training loop vs bare forward+backward+step on the same tensors.

``run_sft`` runs of the tiny recipe (``recipes/tiny/sft_lora.yaml``: LoRA, batch 8, both
languages, label task) on synthetic data, with the collator in the training process
(``dataloader_num_workers`` 0) and in one DataLoader worker (1), alternating 0, 1, 0, 1, 0, 1
(``--repeats`` 3). After every real training step (``GleamSFTTrainer`` inside ``trainer.train()``:
DataLoader fetch of dataset rows -> TRL collator -> forward -> backward -> clip -> optimizer ->
scheduler -> callbacks/logging), a callback runs two replays on the very tensors that step's
collator produced: gleamx's ``compute_loss`` (``GleamSFTTrainer``: the loss on the labelled positions
only) + backward + clip + AdamW (the trainer's compute without its data path), TRL's stock
``SFTTrainer.compute_loss`` (fused chunked LM head + metrics) the same way, and a *bare*
``model(**batch).loss`` + backward + clip + AdamW. The replays alternate (their order rotates step by
step), so load from other processes hits them alike.

    data + collator overhead = (real step - gleamx replay) / real step     (target <= 5%)
    gleamx step / bare step  = real step / bare replay                      (target <= 1.10x)

``--shape qwen3b`` trains a model with Qwen2.5-VL-3B's proportions instead of the tiny one: the real
151,936-token vocabulary (tied embeddings, as the 3B) and a language model whose LM head is the same
share of its parameters as the real one's (10.1%); it prints both shares. ``--anatomy`` times the LM
head + loss variants (TRL's tiles, metrics, positions vs gleamx's) on one batch's hidden states.

Each figure is printed as the median over the runs with its min and max. The worker only hides the
data path when it has a core of its own: on a machine whose other processes keep every core busy
it competes with the training process instead (each run prints the load average around it).

Also prints tokens/s, peak RSS, and image tokens per sample at three ``max_pixels`` budgets
(``image_token_count`` vs the processor's actual ``<|image_pad|>`` count).

    python benchmark/bench_sft.py            # 3 x 2 runs of 40 measured steps, 14 min at load 5-6 on 2 cores
    python benchmark/bench_sft.py --quick    # 3 x 2 runs of 20 measured steps
    python benchmark/bench_sft.py --shape qwen3b --workers 0 --steps 8 --anatomy --no-image-table
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

import gleamx.train.sft as sft
from gleamx.synth import synthesize
from gleamx.models import build_tiny_model, image_token_count, load_model_and_processor, training_chat_template
from gleamx.models.load import set_pixel_budget
from machine import alternate, ratios, set_threads_and_describe, spread, timed  # benchmark/machine.py

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_lora.yaml"
REAL_3B = Path(__file__).resolve().parents[2] / "shared" / "real-qwen-vl" / "qwen2_5_vl_3b_instruct"
WARMUP = 3  # first steps pay one-off costs (allocator, lazy imports) on both paths
# --shape qwen3b: text width 64 (2 heads of 32, so the tiny mrope sections fit), 16 layers; the MLP width is
# solved so the LM head is the real 3B's share of the language model. Activations at these proportions are
# ~7 MB per token whatever the width (the body must be ~9x the 151,936 x hidden head), so the default batch
# is 2 conversations, not the recipe's 8, to stay within a shared machine's memory. 16 layers, not 2: with 2
# the MLP is 225k wide and every activation (~200 MB) is a fresh mmap, so page faults, not arithmetic, set the
# step time (22 s); at 16 layers each is ~25 MB, under glibc's 32 MB mmap threshold.
QWEN3B_HIDDEN, QWEN3B_LAYERS, QWEN3B_BATCH = 64, 16, 2


def head_shares(model: Any) -> tuple[float, float, int]:
    """(LM head share of all parameters, share of the language model's (all but the vision tower), head size);
    a tied head counts once, as the parameter it is."""
    total = sum(p.numel() for p in model.parameters())  # parameters() yields a tied weight once
    vision = sum(p.numel() for p in model.model.visual.parameters())
    head = model.get_output_embeddings().weight.numel()
    return head / total, head / (total - vision), head


def real_3b_shares() -> tuple[float, float, int]:
    """Head shares of the real Qwen2.5-VL-3B, from its config (weights never built: meta device)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    with torch.device("meta"):
        return head_shares(AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(REAL_3B)))


def build_qwen3b_shaped(out: Path, lm_share: float) -> tuple[Path, tuple[float, float, int], int]:
    """A random tiny Qwen2.5-VL with the real vocabulary and tokenizer (``build_tiny_model(tokenizer="qwen")``)
    whose text width is :data:`QWEN3B_HIDDEN` and whose MLP width makes the LM head ``lm_share`` of the language
    model. Returns (dir, its head shares, intermediate size)."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    build_tiny_model("qwen2_5_vl", out, tokenizer="qwen")  # tokenizer, processor, generation config, ids
    config = AutoConfig.from_pretrained(out)
    text = config.text_config
    text.hidden_size, text.num_hidden_layers = QWEN3B_HIDDEN, QWEN3B_LAYERS
    text.num_attention_heads = text.num_key_value_heads = QWEN3B_HIDDEN // 32
    text.max_window_layers = QWEN3B_LAYERS
    if getattr(text, "layer_types", None):  # one entry per layer
        text.layer_types = [text.layer_types[0]] * QWEN3B_LAYERS
    config.vision_config.out_hidden_size = QWEN3B_HIDDEN

    def shares(intermediate: int) -> tuple[float, float, int]:
        text.intermediate_size = intermediate
        with torch.device("meta"):
            return head_shares(AutoModelForImageTextToText.from_config(config))

    _, lm0, head = shares(64)
    # Each extra MLP unit adds 3 x hidden parameters per layer (gate, up, down): solve for the target share.
    body_needed = head / lm_share - head / lm0
    intermediate = 64 + round(body_needed / (3 * QWEN3B_HIDDEN * QWEN3B_LAYERS) / 64) * 64
    got = shares(intermediate)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForImageTextToText.from_config(config).to(torch.float32)
    model.save_pretrained(out)
    return out, got, intermediate


class StepProbe:
    """State shared by the collator wrapper and the callback."""

    def __init__(self) -> None:
        self.last_batch: dict[str, Any] | None = None
        self.collate_s: list[float] = []
        self.real_s: list[float] = []
        self.bare_s: list[float] = []
        self.trl_s: list[float] = []  # gleamx's compute_loss (GleamSFTTrainer), on the step's tensors
        self.stock_s: list[float] = []  # TRL's stock SFTTrainer.compute_loss, on the same tensors
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
    """After each real step: time it, then time three replays of that step's batch, in an order that rotates
    from step to step (so none always runs first after the real step):

    * bare:   ``model(**batch).loss`` (the model's own lm_head on every position + cross-entropy), backward,
      clip, AdamW;
    * gleamx: ``trainer.compute_loss`` (``GleamSFTTrainer``: logits of the labelled positions only; metrics
      only on logging steps), backward, clip, AdamW: the trainer's own compute without the data path;
    * stock:  TRL's ``SFTTrainer.compute_loss`` (fused, chunked LM head with entropy/accuracy metrics on every
      step), backward, clip, AdamW.
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
        # padded batches count their mask; padding-free ones (gleamx's default on CPU) are all real tokens
        p.tokens.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch
                        else int(batch["position_ids"].shape[-1]))
        # use_cache=False as TRL's compute_loss sets it; compute_loss gets its own dict (it adds keys).
        replays = [(p.bare_s, lambda: self.model(**batch, use_cache=False).loss),
                   (p.trl_s, lambda: self.trainer.compute_loss(self.model, dict(batch))),
                   (p.stock_s, lambda: SFTTrainer.compute_loss(self.trainer, self.model, dict(batch)))]
        k = state.global_step % len(replays)
        for out, fn in replays[k:] + replays[:k]:
            out.append(self._replay(fn, args.max_grad_norm))
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


def run_probed_sft(data: Path, model_dir: Path, out: Path, steps: int, workers: int, batch: int) -> StepProbe:
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    argv = ["--config", str(RECIPE), "--model_name_or_path", str(model_dir), "--dataset_name", str(data),
            "--output_dir", str(out), "--max_steps", str(steps + WARMUP), "--save_strategy", "no",
            "--logging_steps", "10", "--disable_tqdm", "true", "--dataloader_num_workers", str(workers),
            "--per_device_train_batch_size", str(batch)]
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
    from gleamx.train.sft_data import build_sft_dataset
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
    print(f"  {'max_pixels':<16} {'scale':<5} {'predicted':>9} {'actual':>7} {'seq len':>8}   "
          "bare fwd+bwd s/batch8, median of 3 alternating rounds (min, max)")
    rows_out, batches = [], {}
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
            side = int(budget ** 0.5)
            rows_out.append((f"{side}*{side}", scale, predicted, actual, batch["input_ids"].shape[1]))
            batches[len(rows_out) - 1] = batch

    def fwd_bwd(batch: dict[str, Any]) -> Any:
        def step(_round: int) -> float:
            t, _ = timed(lambda: model(**batch, use_cache=False).loss.backward())
            model.zero_grad(set_to_none=True)
            return t
        return step

    for batch in batches.values():  # warm-up: first pass at each shape
        fwd_bwd(batch)(0)
    times = alternate({i: fwd_bwd(b) for i, b in batches.items()}, 3)
    for i, (name, scale, predicted, actual, seq) in enumerate(rows_out):
        print(f"  {name:<16} x{scale:<4} {predicted:9.1f} {actual:7.1f} {seq:8d}   {spread(times[i], '.3f', ' s')}")
    big, small = len(rows_out) - 1, len(rows_out) - 3  # largest budget x4 vs the one below, x4
    print(f"  {rows_out[big][0]} vs {rows_out[small][0]} at x4: {rows_out[big][3] / rows_out[small][3]:.1f}x the image "
          f"tokens, {spread(ratios(times[big], times[small]), '.2f', 'x')} the fwd+bwd time (per-round ratios)")


def loss_anatomy(data: Path, model_dir: Path, batch_size: int, rounds: int = 3, reps: int = 3) -> None:
    """LM head + loss, forward and backward, on one batch's final hidden states (the head frozen, as under LoRA):
    the model's own head and loss, TRL's fused head with and without its metrics, tiles and position selection,
    and gleamx's path. Each variant is timed ``reps`` times per round (median), rounds alternate."""
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from gleamx.data import load_samples
    from gleamx.train.sft_data import build_sft_dataset
    from gleamx.train.labelled_loss import next_token_targets

    model, processor = load_model_and_processor(model_dir, dtype="float32")
    processor.chat_template = training_chat_template(processor)
    samples = load_samples(data, split="train").samples[:batch_size]
    rows = build_sft_dataset(samples, "both", "label").dataset.__getitems__(list(range(batch_size)))
    batch = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)(rows)
    labels = batch.pop("labels")
    with torch.no_grad():
        hidden = model.model(**batch).last_hidden_state
    # As training packs the batch (padding-free, gleamx's default on CPU): the real tokens in one row, each
    # sample's first label -100. Same hidden states: the padded run's real positions equal the packed ones.
    mask = batch["attention_mask"].bool()
    starts = torch.cumsum(mask.sum(1), 0) - mask.sum(1)
    hidden, labels = hidden[mask][None], labels[mask][None].clone()
    labels[0, starts] = -100
    weight = model.get_output_embeddings().weight.detach()
    vocab, width = weight.shape
    keep, targets = next_token_targets(labels)
    shifted = labels[:, 1:]
    valid = shifted != -100
    n = int(valid.sum())

    def trl_head(h: torch.Tensor, compact: bool, chunk: int, metrics: bool) -> torch.Tensor:
        outs = ("log_probs", "entropy", "is_top1") if metrics else ("log_probs",)
        h = h[:, :-1]
        x, y = (h[valid], shifted[valid]) if compact else (h.reshape(-1, width), shifted.clamp(min=0).reshape(-1))
        lp = ChunkedLogProbFunction.apply(x, weight, None, y, 1.0, chunk, None, 1.0, outs)[0]
        lp = lp if compact else lp.view(valid.shape).masked_fill(~valid, 0)
        return -lp.sum() / max(n, 1)

    def gleamx_head(h: torch.Tensor, metrics: bool) -> torch.Tensor:
        logits = torch.nn.functional.linear(h[keep], weight)
        loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum") / max(n, 1)
        if metrics:
            with torch.no_grad():
                log_p = logits.detach().float().log_softmax(-1)
                (-(log_p.exp() * log_p).sum()).item(), (logits.argmax(-1) == targets).sum().item()
        return loss

    def model_head(h: torch.Tensor) -> torch.Tensor:
        logits = torch.nn.functional.linear(h, weight)
        return model.loss_function(logits=logits, labels=labels, vocab_size=vocab)

    variants = {
        "model's own (bare): every position, full logits + HF causal-LM loss": model_head,
        "TRL stock on CPU: every position, 32,768-wide tiles, log-probs + entropy + top-1":
            lambda h: trl_head(h, False, 32768, True),
        "  same without entropy + top-1 (log-probs only)": lambda h: trl_head(h, False, 32768, False),
        f"  same, log-probs only, one {vocab:,}-wide tile": lambda h: trl_head(h, False, vocab, False),
        "TRL on labelled positions only (its GPU/Triton path), 32,768 tiles, metrics":
            lambda h: trl_head(h, True, 32768, True),
        "gleamx: labelled positions, one matmul + cross-entropy (non-logging step)": lambda h: gleamx_head(h, False),
        "gleamx on a logging step (+ entropy, top-1 from the same logits)": lambda h: gleamx_head(h, True),
    }

    def timer(fn: Any) -> Any:
        def run(_round: int) -> float:
            times = []
            for _ in range(reps):
                h = hidden.detach().requires_grad_(True)
                t, _ = timed(lambda: fn(h).backward())
                times.append(t)
            return statistics.median(times)
        return run

    for fn in variants.values():  # warm-up, and every variant gives the same loss
        h = hidden.detach().requires_grad_(True)
        assert abs(fn(h).item() - model_head(hidden).item()) < 1e-4
    times = alternate({name: timer(fn) for name, fn in variants.items()}, rounds)
    print(f"\nloss path anatomy: LM head + loss, forward + backward on one batch's final hidden states "
          f"({batch_size} conversations, {hidden.shape[0] * hidden.shape[1]} positions, {n} labelled; vocab "
          f"{vocab:,} x width {width}; head frozen as under LoRA), {rounds} alternating rounds of {reps}: "
          "median (min, max)")
    for name, t in times.items():
        print(f"  {name:<84} {spread([1000 * x for x in t], '.1f', ' ms')}")


def run_metrics(probe: StepProbe, wall: float, load: tuple[float, float], batch: int) -> dict[str, Any]:
    """One run's figures: medians over its measured steps, shares of the summed gleamx step time."""
    real, bare, trl_ = probe.real_s[WARMUP:], probe.bare_s[WARMUP:], probe.trl_s[WARMUP:]
    stock = probe.stock_s[WARMUP:]
    coll = probe.collate_s[WARMUP:len(probe.real_s)]
    tokens = sum(probe.tokens[WARMUP:])
    r_sum, b_sum, t_sum, c_sum, s_sum = sum(real), sum(bare), sum(trl_), sum(coll), sum(stock)
    m = {"real_ms": 1000 * statistics.median(real), "trl_ms": 1000 * statistics.median(trl_),
         "bare_ms": 1000 * statistics.median(bare), "data_oh": 100 * (r_sum - t_sum) / r_sum,
         "stock_ms": 1000 * statistics.median(stock), "stock_x": s_sum / b_sum,
         "trl_share": 100 * (t_sum - b_sum) / r_sum, "trl_x": t_sum / b_sum, "real_x": r_sum / b_sum,
         "all_oh": 100 * (r_sum - b_sum) / r_sum, "tok_real": tokens / r_sum, "tok_trl": tokens / t_sum,
         "tok_bare": tokens / b_sum, "tok_conv": statistics.mean(probe.tokens[WARMUP:]) / batch,
         "steps": len(real), "wall": wall, "load": load}
    if coll:
        m |= {"coll_share": 100 * c_sum / r_sum, "coll_ms": 1000 * statistics.median(coll),
              "rest_share": m["data_oh"] - 100 * c_sum / r_sum}
    return m


def report(workers: int, runs: list[dict[str, Any]], label: str, batch: int) -> None:
    """Per run one line, then every figure as median (min, max) over the runs."""
    def over(key: str, fmt: str = ".1f", unit: str = "") -> str:
        return spread([r[key] for r in runs], fmt, unit)

    where = ("in the training process" if not workers else
             f"in {workers} DataLoader worker process(es), overlapped with the step only while a core is free")
    print(f"\nrecipe {RECIPE.name}: {label}, LoRA r16, batch {batch}, dataloader_num_workers={workers} "
          f"(collator {where}); "
          f"{len(runs)} runs x {runs[0]['steps']} measured steps (+{WARMUP} warm-up each); within a run the four "
          "step kinds alternate on the same batches")
    for i, r in enumerate(runs, start=1):
        print(f"  run {i}: gleamx {r['real_ms']:.1f} ms, gleamx on tensors {r['trl_ms']:.1f} ms, TRL stock on tensors "
              f"{r['stock_ms']:.1f} ms, bare {r['bare_ms']:.1f} ms "
              f"(step medians); data + collator overhead {r['data_oh']:.1f}%; run_sft wall {r['wall']:.1f} s; "
              f"load average {r['load'][0]:.2f} -> {r['load'][1]:.2f}")
    print("  per-step medians, median over runs (min, max):")
    print(f"  gleamx step  trainer.train: rows -> TRL collator -> gleamx loss -> bwd/clip/opt/sched/callbacks  "
          f"{over('real_ms', unit=' ms')}")
    print(f"  same tensors gleamx compute_loss (labelled positions only) -> bwd/clip/AdamW                   "
          f"{over('trl_ms', unit=' ms')}")
    print(f"  same tensors TRL stock compute_loss (fused chunked LM head + metrics) -> bwd/clip/AdamW        "
          f"{over('stock_ms', unit=' ms')}")
    print(f"  bare         model(**batch).loss (model's lm_head + CE) -> bwd/clip/AdamW                       "
          f"{over('bare_ms', unit=' ms')}")
    oh = statistics.median(r["data_oh"] for r in runs)
    print(f"data + collator overhead (gleamx step vs the same compute on pre-collated tensors): "
          f"{over('data_oh', unit='%')} of the step ({'within' if oh <= 5 else 'ABOVE'} the 5% target)")
    if "coll_share" in runs[0]:
        print(f"  the collator alone: {over('coll_share', unit='%')} of the step, {over('coll_ms', unit=' ms')} per batch; "
              f"the rest (row fetch + image decode, scheduler, callbacks, logging): {over('rest_share', unit='%')}")
    print(f"loss path vs the model's own loss, on the same tensors: gleamx replay / bare = "
          f"{over('trl_x', '.2f', 'x')}; TRL stock replay / bare = {over('stock_x', '.2f', 'x')}")
    ratio = statistics.median(r["real_x"] for r in runs)
    print(f"ratio gleamx step / bare step: {over('real_x', '.2f', 'x')} ({'within' if ratio <= 1.10 else 'ABOVE'} "
          f"the 1.10x target; all overhead together: {over('all_oh', unit='%')} of the gleamx step)")
    print(f"tokens/s (non-pad, image tokens included): gleamx {over('tok_real', '.0f')}, "
          f"gleamx loss on tensors {over('tok_trl', '.0f')}, bare {over('tok_bare', '.0f')}; "
          f"{runs[0]['tok_conv']:.0f} tokens per conversation")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20 measured steps per run (~2 min)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: with other jobs on this 2-core box, 2 threads ran 3-5x slower)")
    ap.add_argument("--steps", type=int, default=None, help="measured steps per run (default 40, quick 20)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per workers setting, alternating (default 3)")
    ap.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1],
                    help="dataloader_num_workers settings to measure, comma-separated (default 0,1: the tiny "
                         "recipe's in-process loading, and one worker process as the GPU recipes use 4)")
    ap.add_argument("--shape", choices=["tiny", "qwen3b"], default="tiny",
                    help="tiny: gleamx's tiny model (3,456-token vocabulary); qwen3b: the real 151,936-token "
                         "vocabulary and the real 3B's LM-head share of the language model")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"conversations per step (default: the recipe's 8; {QWEN3B_BATCH} with --shape qwen3b)")
    ap.add_argument("--anatomy", action="store_true", help="also time the LM head + loss variants on one batch")
    ap.add_argument("--no-image-table", action="store_true", help="skip the image tokens per max_pixels table")
    args = ap.parse_args()
    steps = args.steps or (20 if args.quick else 40)
    batch = args.batch or (QWEN3B_BATCH if args.shape == "qwen3b" else 8)

    set_threads_and_describe(args.threads)
    if any(args.workers):
        print(f"a DataLoader worker hides the data path only on a free core: this machine has {os.cpu_count()} "
              f"CPUs, the training process uses {args.threads} torch thread(s), so the worker has a core of its "
              f"own only while other processes keep the load average below {os.cpu_count() - args.threads} "
              "(each run prints its load)")
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-sft-") as tmp:
        root = Path(tmp)
        data = root / "synth"
        synthesize(data, 200 if args.quick else 400, seed=0, difficulty="medium")
        real_all, real_lm, real_head = real_3b_shares()
        print(f"Qwen2.5-VL-3B (config in {REAL_3B.parent.name}/{REAL_3B.name}): LM head {real_head / 1e6:.1f}M "
              f"parameters (tied), {100 * real_all:.1f}% of all parameters, {100 * real_lm:.1f}% of the language model")
        if args.shape == "qwen3b":
            model_dir, (tiny_all, tiny_lm, tiny_head), inter = build_qwen3b_shaped(root / "model", real_lm)
            desc = (f"qwen3b-shaped model (vocab 151,936 tied, hidden {QWEN3B_HIDDEN}, {QWEN3B_LAYERS} layers, "
                    f"MLP {inter:,})")
        else:
            model_dir = build_tiny_model("qwen2_5_vl", root / "model")
            from transformers import AutoModelForImageTextToText
            tiny = AutoModelForImageTextToText.from_pretrained(model_dir)
            tiny_all, tiny_lm, tiny_head = head_shares(tiny)
            text = tiny.config.text_config
            desc = f"tiny model (vocab {text.vocab_size:,}, hidden {text.hidden_size}, {text.num_hidden_layers} layers)"
        print(f"bench {desc}: LM head {tiny_head / 1e6:.2f}M parameters, {100 * tiny_all:.1f}% of all parameters, "
              f"{100 * tiny_lm:.1f}% of the language model", flush=True)
        if args.anatomy:
            loss_anatomy(data, model_dir, batch)

        def one_run(workers: int) -> Any:
            def run(r: int) -> dict[str, Any]:
                load0 = os.getloadavg()[0]
                wall, probe = timed(lambda: run_probed_sft(data, model_dir, root / f"out-w{workers}-{r}", steps,
                                                           workers, batch))
                return run_metrics(probe, wall, (load0, os.getloadavg()[0]), batch)
            return run

        # w0, w1, w0, w1, w0, w1: background load hits both settings alike
        results = alternate({w: one_run(w) for w in args.workers}, args.repeats)
        for workers, runs in results.items():
            report(workers, runs, desc, batch)
        if len(args.workers) == 2:
            a, b = args.workers
            diffs = [ra["data_oh"] - rb["data_oh"] for ra, rb in zip(results[a], results[b], strict=True)]
            print(f"\noverhead with workers={a} minus workers={b}, per round: {spread(diffs, '.1f', ' points')}")
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(f"peak RSS of this process (measured, getrusage ru_maxrss): {peak_kib / 1024:.0f} MiB")
        if not args.no_image_table:
            image_token_table(data, model_dir, [112 * 112, 224 * 224, 448 * 448])


if __name__ == "__main__":
    sys.exit(main())
