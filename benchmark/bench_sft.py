"""SFT step cost: the real gleamx training loop against its lower bound, the same work on the same tensors.

``run_sft`` runs of the tiny recipe (``recipes/tiny/sft_lora.yaml``: LoRA, batch 8, both languages, label
task) on synthetic data, with the collator in the training process (``dataloader_num_workers`` 0) and in one
DataLoader worker (1), alternating 0, 1, 0, 1, 0, 1 (``--repeats`` 3). After every real training step
(``GleamSFTTrainer`` inside ``trainer.train()``: DataLoader fetch of dataset rows -> TRL collator -> forward
-> backward -> clip -> optimizer -> scheduler -> callbacks/logging), a callback replays that step's batch
(the very tensors its collator produced) four ways, each followed by backward, clip and an optimizer step
over the same trainable parameters (an optimizer of the trainer's own class and settings), in an order
that rotates step by step (load from other processes hits them alike):

* lower bound: the model's forward with ``logits_to_keep`` on the positions whose next token is labelled
  (a 1-D index of positions for a packed row), one cross-entropy on those logits. This is exactly the
  work a step needs and nothing else: no data path, no trainer, no metrics (:func:`lower_bound_loss`;
  its loss is asserted equal to gleamx's ``compute_loss`` on the first step of every run);
* gleamx: ``trainer.compute_loss`` (``GleamSFTTrainer``: the same positions, plus its bookkeeping and the
  token metrics on logging steps);
* TRL stock: ``SFTTrainer.compute_loss`` (fused, chunked LM head over every position + metrics);
* bare: ``model(**batch).loss`` (the model's own head on every position + cross-entropy).

    gleamx step / lower bound = real step / lower-bound replay       (goal <= 1.05x at --shape qwen3b)
    data overhead = time the step waits for its batch / real step    (target <= 5%: needs a worker on a free core)

The real step is timed in parts (waiting for the batch, logging of the previous step, forward + loss,
backward, clip + optimizer + scheduler + callbacks), the lower bound in the same parts, so the report
says where the time above the lower bound goes.

``--shape qwen3b`` trains a model with Qwen2.5-VL-3B's proportions instead of the tiny one: the real
151,936-token vocabulary (tied embeddings, as the 3B) and a language model whose LM head is the same
share of its parameters as the real one's (10.1%); it prints both shares. ``--anatomy`` times the LM
head + loss variants (TRL's tiles, metrics, positions vs gleamx's) on one batch's hidden states.

Each figure is printed as the median over the runs with its min and max, and written to
``benchmark/results/bench_sft.json`` (``bench_sft_qwen3b.json`` with ``--shape qwen3b``; ``--quick`` runs
to ``benchmark/results/quick/``). The worker only hides the data path when it has a core of its own: on a
machine whose other processes keep every core busy it competes with the training process instead (each run
prints the load average around it, and the data-path target says whether it applied).

Also prints tokens/s, peak RSS, and image tokens per sample at three ``max_pixels`` budgets
(``image_token_count`` vs the processor's actual ``<|image_pad|>`` count).

    python benchmark/bench_sft.py            # 3 x 2 runs of 40 measured steps (tiny shape)
    python benchmark/bench_sft.py --quick    # 3 x 2 runs of 20 measured steps
    python benchmark/bench_sft.py --shape qwen3b   # 3 runs of 8 measured steps, in-process loading, no image table
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
from results import Results  # benchmark/results.py

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


# The replays after every real step; "lower" is the lower bound the step is measured against.
REPLAYS = ("lower", "gleamx", "stock", "bare")
# Parts of a step, in the order they happen; the real step has two more before them (waiting for its batch,
# the previous step's logging), which no replay has.
PARTS = ("fwd", "bwd", "opt")


def lower_bound_loss(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """The loss a step must compute and nothing more: the model's forward with ``logits_to_keep`` on the positions
    whose next token is labelled (position t predicts token t + 1), one mean cross-entropy over those logits.

    A packed row (``padding_free_vl`` batches: one row) selects its positions with a 1-D index tensor; a padded
    batch, whose rows have their labels at different positions, with a boolean ``(batch, seq)`` mask. Written
    here independently of ``gleamx.train.labelled_loss``, so the equality check compares two implementations.
    """
    labels = batch["labels"]
    following = labels[:, 1:]  # the token each position predicts; the last position predicts nothing
    if labels.shape[0] == 1:
        keep: torch.Tensor = (following[0] != -100).nonzero().squeeze(1)
        targets = following[0, keep]
    else:
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = following != -100
        targets = following[following != -100]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    return torch.nn.functional.cross_entropy(logits.reshape(targets.numel(), -1), targets)


class StepProbe:
    """State shared by the collator wrapper, the trainer's overrides and the callback. Every list holds one
    value per step (the warm-up steps included; :func:`run_metrics` drops them)."""

    def __init__(self) -> None:
        self.last_batch: dict[str, Any] | None = None
        self.collate_s: list[float] = []
        self.real_s: list[float] = []
        # the real step's parts: waiting for the batch (fetch + collate + loop), the previous step's
        # logging, forward + loss, backward (+ training_step's own bookkeeping), clip + optimizer + scheduler
        # + zero_grad + callbacks
        self.wait_s: list[float] = []
        self.log_s: list[float] = []
        self.fwd_s: list[float] = []
        self.bwd_s: list[float] = []
        self.opt_s: list[float] = []
        # per replay, (forward + loss, backward, clip + optimizer step + zero_grad) per step
        self.replay_s: dict[str, list[tuple[float, float, float]]] = {name: [] for name in REPLAYS}
        self.tokens: list[int] = []
        self.resume_t: float | None = None  # when the callback handed control back to the trainer
        self.enter_t = self.exit_t = 0.0  # training_step's start and end, this step
        self.in_step = False  # inside the real training_step (compute_loss is also called by the replays)
        self.pending_log = 0.0  # logging time since the last step began (runs after on_step_end)
        self.loss_check: tuple[float, float] | None = None  # (lower bound, gleamx compute_loss) on one batch


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


class ReplayCallback(TrainerCallback):
    """After each real step: close its timing, then time the four replays (:data:`REPLAYS`) of that step's
    batch in an order that rotates from step to step, so none always runs first after the real step."""

    def __init__(self, probe: StepProbe, trainer: Any, replays: tuple[str, ...]) -> None:
        self.probe, self.trainer, self.replays = probe, trainer, replays
        self.model: Any = None
        self.opt: Any = None
        self.params: list[torch.nn.Parameter] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        # Its own optimizer over the same parameters, of the class and settings the trainer built its own from
        # (``optim``: fused AdamW by default), so the replays do the real step's optimizer arithmetic.
        cls, kwargs = self.trainer.get_optimizer_cls_and_kwargs(args, model)
        self.opt = cls(self.params, **kwargs)
        self.probe.resume_t = time.perf_counter()

    def _replay(self, loss_fn: Any, max_grad_norm: float) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        loss = loss_fn()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    def _check_loss(self, batch: dict[str, Any]) -> None:
        """The lower bound computes gleamx's loss: both on this batch, before any replay moves the weights."""
        with torch.no_grad():
            low = float(lower_bound_loss(self.model, batch))
            gx = float(self.trainer.compute_loss(self.model, dict(batch)))
        assert abs(low - gx) <= 1e-5 * max(1.0, abs(gx)), f"lower-bound loss {low} != gleamx compute_loss {gx}"
        self.probe.loss_check = (low, gx)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        p = self.probe
        now = time.perf_counter()
        p.real_s.append(now - p.resume_t)
        p.opt_s.append(now - p.exit_t)
        batch = p.last_batch
        # padded batches count their mask; packed ones (padding_free_vl) are all real tokens
        p.tokens.append(int(batch["attention_mask"].sum()) if "attention_mask" in batch
                        else int(batch["position_ids"].shape[-1]))
        if p.loss_check is None:
            self._check_loss(batch)
        # use_cache=False as TRL's compute_loss sets it; compute_loss gets its own dict (it adds keys).
        fns = {"lower": lambda: lower_bound_loss(self.model, batch),
               "gleamx": lambda: self.trainer.compute_loss(self.model, dict(batch)),
               "stock": lambda: SFTTrainer.compute_loss(self.trainer, self.model, dict(batch)),
               "bare": lambda: self.model(**batch, use_cache=False).loss}
        k = state.global_step % len(self.replays)
        for name in self.replays[k:] + self.replays[:k]:
            p.replay_s[name].append(self._replay(fns[name], args.max_grad_norm))
        p.resume_t = time.perf_counter()


def probed_trainer(probe: StepProbe, replays: tuple[str, ...]) -> type:
    """``GleamSFTTrainer`` with the replay callback and clocks around its step's parts (the code it runs is its
    own: each override times a call to the parent's method)."""
    class ProbedTrainer(sft.GleamSFTTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(ReplayCallback(probe, self, replays))

        def get_train_dataloader(self):  # noqa: ANN201
            if not isinstance(self.data_collator, TimedCollator) and not self.args.dataloader_num_workers:
                self.data_collator = TimedCollator(self.data_collator, probe)
            return super().get_train_dataloader()

        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001
            probe.enter_t = time.perf_counter()
            # from the end of the previous step to here: the previous step's logging, then the wait for this batch
            probe.log_s.append(probe.pending_log)
            probe.wait_s.append(probe.enter_t - probe.resume_t - probe.pending_log)
            probe.pending_log = 0.0
            # The batch as the trainer got it, from this process's collator or a worker's.
            probe.last_batch = dict(inputs)  # shallow copy: the trainer adds use_cache etc. to its own dict
            probe.in_step = True
            try:
                loss = super().training_step(model, inputs, num_items_in_batch)
            finally:
                probe.in_step = False
            probe.exit_t = time.perf_counter()
            probe.bwd_s.append(probe.exit_t - probe.enter_t - probe.fwd_s[-1])
            return loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if not probe.in_step:  # a replay's call: timed by the replay
                return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            t0 = time.perf_counter()
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            probe.fwd_s.append(time.perf_counter() - t0)
            return out

        def _maybe_log_save_evaluate(self, *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super()._maybe_log_save_evaluate(*args, **kwargs)
            finally:
                probe.pending_log += time.perf_counter() - t0

    return ProbedTrainer


def run_probed_sft(data: Path, model_dir: Path, out: Path, steps: int, workers: int, batch: int,
                   replays: tuple[str, ...] = REPLAYS) -> StepProbe:
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
    sft.GleamSFTTrainer = probed_trainer(probe, replays)  # run_sft looks the class up at call time
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


# The real step's parts (see StepProbe) and the replay part each is compared with (None: the replay has none).
STEP_PARTS = {"wait": ("waiting for the batch (fetch + collate)", None),
              "log": ("previous step's logging (every 10th)", None),
              "fwd": ("forward + loss", 0),
              "bwd": ("backward (+ training_step bookkeeping)", 1),
              "opt": ("clip + optimizer + scheduler + callbacks", 2)}


def run_metrics(probe: StepProbe, wall: float, load: tuple[float, float], batch: int) -> dict[str, Any]:
    """One run's figures over its measured steps: mean ms per step of every part (so parts add up to the step),
    ratios of summed step times (real and replays against the lower bound) and shares of the summed real step."""
    def measured(values: list[Any]) -> list[Any]:
        return values[WARMUP:len(probe.real_s)]

    real = measured(probe.real_s)
    n, r_sum = len(real), sum(real)
    replays = {name: measured(v) for name, v in probe.replay_s.items() if v}
    low_parts = [sum(parts[i] for parts in replays["lower"]) for i in range(len(PARTS))]
    l_sum = sum(low_parts)
    m: dict[str, Any] = {"steps": n, "wall": wall, "load": load, "loss_check": probe.loss_check,
                         "real_ms": 1000 * r_sum / n, "lower_ms": 1000 * l_sum / n, "real_x": r_sum / l_sum}
    for part, (_, i) in STEP_PARTS.items():
        got = 1000 * sum(measured(getattr(probe, f"{part}_s"))) / n
        low = 0.0 if i is None else 1000 * low_parts[i] / n
        m[f"{part}_ms"], m[f"{part}_low_ms"] = got, low
        m[f"{part}_above"] = 100 * (got - low) / (1000 * l_sum / n)  # share of the lower-bound step
    for name, parts in replays.items():
        total = sum(map(sum, parts))
        m[f"{name}_replay_ms"], m[f"{name}_x"] = 1000 * total / n, total / l_sum
    m["data_oh"] = 100 * sum(measured(probe.wait_s)) / r_sum
    if "gleamx" in replays:  # the former definition: real step minus gleamx's compute on the same tensors
        m["minus_replay_oh"] = 100 * (r_sum - sum(map(sum, replays["gleamx"]))) / r_sum
    coll = measured(probe.collate_s)
    if coll:
        m |= {"coll_share": 100 * sum(coll) / r_sum, "coll_ms": 1000 * statistics.median(coll)}
    tokens = sum(measured(probe.tokens))
    m |= {"tok_real": tokens / r_sum, "tok_low": tokens / l_sum,
          "tok_conv": statistics.mean(measured(probe.tokens)) / batch}
    return m


def data_target(workers: int, runs: list[dict[str, Any]]) -> tuple[str, list[bool]]:
    """The data-path target's line and, per run, whether it applied: <= 5% of the step, which needs a worker
    that has a core of its own. The load average counts this benchmark's own training process and worker, so
    the worker had a core while it stayed at or below the CPU count, at the start and at the end of the run."""
    cpus = os.cpu_count() or 1
    if not workers:
        return ("no target in-process: the batch is built on the training thread, so its time adds to every "
                "step (only a worker can hide it)"), [False] * len(runs)
    applies = [max(r["load"]) <= cpus for r in runs]
    loads = ", ".join(f"{r['load'][0]:.1f}->{r['load'][1]:.1f}" for r in runs)
    oh = statistics.median(r["data_oh"] for r in runs)
    if all(applies):
        verdict = f"the target applies: {'met' if oh <= 5 else 'NOT met'}"
    elif any(applies):
        verdict = f"the target applies to {sum(applies)} of {len(runs)} runs only"
    else:
        verdict = "the target does not apply to this run"
    return (f"target <= 5% with a DataLoader worker on a free core (load average <= {cpus} on {cpus} CPUs, this "
            f"process and its worker included); this run's loads were {loads}, so {verdict}"), applies


def report(workers: int, runs: list[dict[str, Any]], label: str, batch: int, shape: str) -> None:
    """Per run one line, then every figure as median (min, max) over the runs."""
    def over(key: str, fmt: str = ".1f", unit: str = "") -> str:
        return spread([r[key] for r in runs], fmt, unit)

    where = ("in the training process" if not workers else
             f"in {workers} DataLoader worker process(es), overlapped with the step only while a core is free")
    print(f"\nrecipe {RECIPE.name}: {label}, LoRA r16, batch {batch}, dataloader_num_workers={workers} "
          f"(collator {where}); {len(runs)} runs x {runs[0]['steps']} measured steps (+{WARMUP} warm-up each); "
          "after each real step its batch is replayed (lower bound, gleamx compute_loss, TRL stock, bare), "
          "in rotating order")
    for i, r in enumerate(runs, start=1):
        low, gx = r["loss_check"]
        print(f"  run {i}: gleamx step {r['real_ms']:.1f} ms, lower bound {r['lower_ms']:.1f} ms "
              f"({r['real_x']:.2f}x; means per step); waits {r['data_oh']:.1f}% of the step for its batch; "
              f"loss lower bound {low:.6f} = gleamx compute_loss {gx:.6f}; run_sft wall {r['wall']:.1f} s; "
              f"load average {r['load'][0]:.2f} -> {r['load'][1]:.2f}")
    print("  where the time goes, ms per step (mean over a run's steps; median over runs (min, max)):")
    print(f"    {'part':<42} {'gleamx step':<34} {'lower bound':<34} above the lower bound (% of its step)")
    for part, (name, i) in STEP_PARTS.items():
        low = over(f"{part}_low_ms") if i is not None else "-"
        print(f"    {name:<42} {over(f'{part}_ms'):<34} {low:<34} {over(f'{part}_above', '.1f', '%')}")
    print(f"    {'whole step':<42} {over('real_ms'):<34} {over('lower_ms'):<34} "
          f"{spread([100 * (r['real_x'] - 1) for r in runs], '.1f', '%')}")
    goal = " (goal <= 1.05x at --shape qwen3b)" if shape == "qwen3b" else ""
    print(f"  ratio gleamx step / lower bound: {over('real_x', '.2f', 'x')}{goal}")
    names = {"gleamx": "gleamx compute_loss", "stock": "TRL stock compute_loss", "bare": "bare model(**batch).loss"}
    got = [f"{names[k]} {over(f'{k}_x', '.2f', 'x')}" for k in names if f"{k}_x" in runs[0]]
    if got:
        print(f"  replays on the same tensors / lower bound: {'; '.join(got)}")
    line, _ = data_target(workers, runs)
    print(f"  data overhead (time the step waits for its batch / step): {over('data_oh', unit='%')}; {line}")
    if "coll_share" in runs[0]:
        print(f"    the collator alone: {over('coll_share', unit='%')} of the step, "
              f"{over('coll_ms', unit=' ms')} per batch")
    if "minus_replay_oh" in runs[0]:
        print(f"    (step - gleamx replay) / step, the earlier definition (data path + trainer): "
              f"{over('minus_replay_oh', unit='%')}")
    print(f"  tokens/s (non-pad, image tokens included): gleamx {over('tok_real', '.0f')}, "
          f"lower bound {over('tok_low', '.0f')}; {runs[0]['tok_conv']:.0f} tokens per conversation")


def record(results: Results, workers: int, runs: list[dict[str, Any]], shape: str) -> None:
    """The headline figures of one workers setting, one value per run."""
    def add(key: str, field: str, unit: str, label: str, **extra: Any) -> None:
        if field in runs[0]:
            results.add(f"{key}.{shape}.workers{workers}", [r[field] for r in runs], unit=unit, label=label, **extra)

    loads = [list(r["load"]) for r in runs]
    add("step_over_lower_bound", "real_x", "x", "gleamx step / lower bound (same batch: forward with logits_to_keep "
        "on the labelled positions, cross-entropy, backward, clip, optimizer step)", loads=loads)
    add("gleamx_replay_over_lower_bound", "gleamx_x", "x", "gleamx compute_loss replay / lower bound")
    add("trl_stock_over_lower_bound", "stock_x", "x", "TRL stock compute_loss replay / lower bound")
    add("bare_over_lower_bound", "bare_x", "x", "bare model(**batch).loss replay / lower bound")
    line, applies = data_target(workers, runs)
    add("data_overhead", "data_oh", "%", "time the step waits for its batch / gleamx step", target=line,
        target_applies=applies, loads=loads)
    add("collator_share", "coll_share", "%", "in-process collator / gleamx step")
    add("step_ms", "real_ms", "ms", "gleamx step, mean per step")
    add("lower_bound_ms", "lower_ms", "ms", "lower-bound replay, mean per step")
    for part, (name, _) in STEP_PARTS.items():
        add(f"above_lower_bound.{part}", f"{part}_above", "%", f"{name}: gleamx minus lower bound, % of the lower "
            "bound's step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="half the measured steps (tiny: 20 per run, qwen3b: 4)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: with other jobs on this 2-core box, 2 threads ran 3-5x slower)")
    ap.add_argument("--steps", type=int, default=None,
                    help="measured steps per run (default 40 at the tiny shape, 8 at qwen3b; halved by --quick)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per workers setting, alternating (default 3)")
    ap.add_argument("--workers", type=lambda v: [int(x) for x in v.split(",")], default=None,
                    help="dataloader_num_workers settings to measure, comma-separated (default 0,1 at the tiny "
                         "shape: the recipe's in-process loading, and one worker process as the GPU recipes use 4; "
                         "0 at qwen3b, whose collator is under 1% of a step)")
    ap.add_argument("--shape", choices=["tiny", "qwen3b"], default="tiny",
                    help="tiny: gleamx's tiny model (3,456-token vocabulary); qwen3b: the real 151,936-token "
                         "vocabulary and the real 3B's LM-head share of the language model")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"conversations per step (default: the recipe's 8; {QWEN3B_BATCH} with --shape qwen3b)")
    ap.add_argument("--replays", type=lambda v: tuple(v.split(",")), default=REPLAYS,
                    help=f"replays after each step, comma-separated (default {','.join(REPLAYS)}; 'lower' is "
                         "always run: every ratio is against it)")
    ap.add_argument("--anatomy", action="store_true", help="also time the LM head + loss variants on one batch")
    ap.add_argument("--no-image-table", action="store_true",
                    help="skip the image tokens per max_pixels table (only run at the tiny shape)")
    args = ap.parse_args()
    qwen3b = args.shape == "qwen3b"
    steps = args.steps or ((4 if args.quick else 8) if qwen3b else (20 if args.quick else 40))
    batch = args.batch or (QWEN3B_BATCH if qwen3b else 8)
    workers_list = args.workers or ([0] if qwen3b else [0, 1])
    unknown = set(args.replays) - set(REPLAYS)
    if unknown:
        ap.error(f"--replays: unknown {sorted(unknown)}; choose from {','.join(REPLAYS)}")
    replays = ("lower",) + tuple(r for r in REPLAYS if r in args.replays and r != "lower")

    set_threads_and_describe(args.threads)
    results = Results("bench_sft" if not qwen3b else "bench_sft_qwen3b", quick=args.quick,
                      settings={"shape": args.shape, "batch": batch, "steps": steps, "warmup": WARMUP,
                                "repeats": args.repeats, "workers": workers_list, "replays": list(replays),
                                "recipe": str(RECIPE.relative_to(RECIPE.parents[2]))})
    if any(workers_list):
        print(f"a DataLoader worker hides the data path only on a free core: this machine has {os.cpu_count()} "
              f"CPUs, the training process uses {args.threads} torch thread(s), so the worker has a core of its "
              f"own only while the load average (this process and its worker included) stays at or below "
              f"{os.cpu_count()} (each run prints its load)")
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-sft-") as tmp:
        root = Path(tmp)
        data = root / "synth"
        synthesize(data, 200 if args.quick else 400, seed=0, difficulty="medium")
        real_all, real_lm, real_head = real_3b_shares()
        print(f"Qwen2.5-VL-3B (config in {REAL_3B.parent.name}/{REAL_3B.name}): LM head {real_head / 1e6:.1f}M "
              f"parameters (tied), {100 * real_all:.1f}% of all parameters, {100 * real_lm:.1f}% of the language model")
        if qwen3b:
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
                                                           workers, batch, replays))
                return run_metrics(probe, wall, (load0, os.getloadavg()[0]), batch)
            return run

        # w0, w1, w0, w1, w0, w1: background load hits both settings alike
        runs_by_workers = alternate({w: one_run(w) for w in workers_list}, args.repeats)
        for workers, runs in runs_by_workers.items():
            report(workers, runs, desc, batch, args.shape)
            record(results, workers, runs, args.shape)
        if len(workers_list) == 2:
            a, b = workers_list
            diffs = [ra["data_oh"] - rb["data_oh"] for ra, rb in zip(runs_by_workers[a], runs_by_workers[b],
                                                                       strict=True)]
            print(f"\ndata overhead with workers={a} minus workers={b}, per round: {spread(diffs, '.1f', ' points')}")
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(f"peak RSS of this process (measured, getrusage ru_maxrss): {peak_kib / 1024:.0f} MiB")
        results.write()
        if not args.no_image_table and not qwen3b:
            image_token_table(data, model_dir, [112 * 112, 224 * 224, 448 * 448])


if __name__ == "__main__":
    sys.exit(main())
