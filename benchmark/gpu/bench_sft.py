"""Time gleamx SFT: recipes/sft.py plus a callback that measures step time, tokens/s and peak GPU memory.

Takes exactly the arguments of recipes/sft.py and runs the same ``run_sft`` code path, so what is
timed is what users train with. Launch it like recipes/sft.py, usually through bench_zero3_bf16.sh:

    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 1 \\
        benchmark/gpu/bench_sft.py --config recipes/tiny/sft_lora.yaml --model_name_or_path M ...

``BENCH_WARMUP`` (default 3) steps are left out of the averages: they include CUDA/NCCL start-up,
allocator growth and kernel autotuning. Image tokens per sample come from the ``image_tokens_per_batch``
that gleamx's trainer logs (rank 0's micro-batches), divided by the per-device batch size. Rank 0 prints one ``bench:`` JSON line and writes it to
``<output_dir>/bench_result.json``. Without a GPU it still runs (memory is reported as null), which
is how the script itself is checked on CPU; such numbers say nothing about GPU performance.

Padding-free comparison (``BENCH_PADDING_FREE``, default ``compare``): the run alternates optimizer steps
between padded batches (TRL's vision collator) and padding-free ones (the same batches packed by
``gleamx.train.packing.pack_batch`` in the training process, on the device: with flash attention a
varlen call per sample), the first measured step padded. ``bench_result.json`` gains ``padding_free``:
per setting the measured steps, the synchronised step time, tokens/s (non-padding tokens over all ranks
per second of step time), the padding share of the positions the model ran on and the peak GPU memory
of its steps, plus the per-setting ratio. The run-level figures above then average both settings.
``BENCH_PADDING_FREE=recipe`` turns the alternation off (the recipe's own ``padding_free_vl`` decides).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import ModelConfig, SFTConfig, TrlParser

import gleamx.train.sft as sft
from gleamx.console import run_cli
from gleamx.train.arguments import GleamScriptArguments
from gleamx.train.packing import PaddingFreeCollator, pack_batch
from gleamx.parsing import parse_recipe

RESULT_FILE = "bench_result.json"


def _sync() -> None:
    # CUDA kernels run asynchronously: without a sync the clock stops before the step's work is done.
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _world_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (token counts are per rank)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
    return t.tolist()


def _world_max(value: float) -> float:
    """The largest ``value`` over all ranks (peak memory is per GPU; report the worst one)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())


def _zero_stage(args: Any) -> int | None:
    plugin = getattr(args, "deepspeed_plugin", None)
    if plugin is None:
        return None
    return int(plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0) or 0)


def _param_dtypes(model: Any) -> list[str]:
    # Under ZeRO-3 parameters are 0-size placeholders, but they keep the dtype they were loaded in.
    return sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})


def _param_counts(model: Any) -> dict[str, int]:
    # ds_numel: a ZeRO-3 placeholder's real size (numel() is 0 there).
    total = trainable = 0
    for p in model.parameters():
        n = int(getattr(p, "ds_numel", p.numel()))
        total += n
        trainable += n if p.requires_grad else 0
    return {"total": total, "trainable": trainable}


def _attn_implementations(model: Any) -> dict[str, str | None]:
    """Attention kernel per sub-config (text and vision towers can differ)."""
    config = model.config
    out = {"model": getattr(config, "_attn_implementation", None)}
    for name in ("text_config", "vision_config"):
        sub = getattr(config, name, None)
        if sub is not None:
            out[name.removesuffix("_config")] = getattr(sub, "_attn_implementation", None)
    return out


class PaddingFreeCompare:
    """Which setting each optimizer step runs, and per setting: step times, tokens, positions, peak memory.

    Step ``k`` (0-based) is padded when ``k - warmup`` is even, so measured steps start padded and alternate.
    Tokens are counted per micro-batch in the training process (``record``), before the forward.
    """

    SETTINGS = ("padded", "padding_free")

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.step_s: dict[str, list[float]] = {k: [] for k in self.SETTINGS}
        self.tokens = dict.fromkeys(self.SETTINGS, 0)  # non-padding tokens of measured steps, this rank
        self.positions = dict.fromkeys(self.SETTINGS, 0)  # positions the model ran on (padding included)
        self.peak: dict[str, float | None] = dict.fromkeys(self.SETTINGS)

    def setting(self, step: int) -> str:
        return self.SETTINGS[(step - self.warmup) % 2]

    def record(self, step: int, inputs: dict[str, Any]) -> None:
        if step < self.warmup:
            return
        ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        name = self.setting(step)
        self.tokens[name] += int(mask.sum()) if mask is not None else ids.numel()
        self.positions[name] += ids.numel()

    def step_done(self, step: int, seconds: float, peak_gib: float | None) -> None:
        if step < self.warmup:
            return
        name = self.setting(step)
        self.step_s[name].append(seconds)
        if peak_gib is not None:
            self.peak[name] = max(self.peak[name] or 0.0, peak_gib)

    def result(self, world_size: int) -> dict[str, Any]:
        tokens = _world_sum([float(self.tokens[k]) for k in self.SETTINGS])  # collective: every rank calls it
        positions = _world_sum([float(self.positions[k]) for k in self.SETTINGS])
        peaks = {k: (None if self.peak[k] is None else _world_max(self.peak[k])) for k in self.SETTINGS}
        out: dict[str, Any] = {}
        for i, name in enumerate(self.SETTINGS):
            times = self.step_s[name]
            out[name] = {"steps": len(times),
                         "step_time_s_mean": round(sum(times) / len(times), 4) if times else None,
                         "tokens_per_s": round(tokens[i] / sum(times), 1) if times else None,
                         "padding_share": round(1 - tokens[i] / positions[i], 4) if positions[i] else None,
                         "peak_gpu_mem_gib": None if peaks[name] is None else round(peaks[name], 3)}
        a, b = out["padding_free"], out["padded"]
        if a["tokens_per_s"] and b["tokens_per_s"]:
            out["tokens_per_s_ratio"] = round(a["tokens_per_s"] / b["tokens_per_s"], 3)
            out["step_time_ratio"] = round(a["step_time_s_mean"] / b["step_time_s_mean"], 3)
        out["world_size"] = world_size
        return out


class BenchCallback(TrainerCallback):
    """Per-step wall time (synchronised), TRL's global token count, and peak allocated GPU memory."""

    def __init__(self, warmup: int, compare: PaddingFreeCompare | None = None) -> None:
        self.warmup = warmup
        self.compare = compare
        self.peak_all = 0.0  # with per-step peaks (compare), the run's peak is the largest of them
        self.step_times: list[float] = []  # on_step_begin -> on_step_end: forward, backward, optimizer
        self.step_ends: list[float] = []  # clock at each on_step_end: intervals include data loading and logging
        self.tokens_at: dict[int, float] = {}  # global step -> cumulative tokens over all ranks (TRL's num_tokens)
        self.image_tokens: list[float] = []  # gleamx's image_tokens_per_batch, one per logged step (rank 0)
        self.max_seq_len = 0
        self.setup: dict[str, Any] = {}
        self._t0 = 0.0

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.setup = {
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "world_size": args.world_size,
            "zero_stage": _zero_stage(args),
            "bf16": bool(args.bf16),
            "param_dtypes": _param_dtypes(model) if model is not None else None,
            "attn_implementation": _attn_implementations(model) if model is not None else None,
            "params": _param_counts(model) if model is not None else None,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "gradient_checkpointing": bool(args.gradient_checkpointing),
        }

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        _sync()
        if self.compare is not None and torch.cuda.is_available():
            # Per-step peaks: keep the run's peak so far, then measure this step alone.
            self.peak_all = max(self.peak_all, torch.cuda.max_memory_allocated() / 2**30)
            torch.cuda.reset_peak_memory_stats()
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        _sync()
        now = time.perf_counter()
        self.step_times.append(now - self._t0)
        self.step_ends.append(now)
        if self.compare is not None:
            peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
            self.compare.step_done(state.global_step - 1, now - self._t0, peak)  # global_step already counts it

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if logs and "num_tokens" in logs:
            self.tokens_at[state.global_step] = float(logs["num_tokens"])
        if logs and "image_tokens_per_batch" in logs:  # GleamSFTTrainer.log adds it to every loss log
            self.image_tokens.append(float(logs["image_tokens_per_batch"]))
            self.max_seq_len = max(self.max_seq_len, int(logs.get("max_seq_len", 0)))

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        peak = max(self.peak_all, torch.cuda.max_memory_allocated() / 2**30) if torch.cuda.is_available() else None
        peak = _world_max(peak) if peak is not None else None  # collective: every rank calls it
        timed = self.step_times[self.warmup:]
        result: dict[str, Any] = {**self.setup, "steps": len(self.step_times), "warmup_steps": self.warmup,
                                  "peak_gpu_mem_gib": None if peak is None else round(peak, 3)}
        if timed:
            result["step_time_s_mean"] = round(sum(timed) / len(timed), 4)
            result["step_time_s_min"] = round(min(timed), 4)
        # Throughput end to end (data loading included) from the end of warm-up step `first` to the last
        # logged step: tokens trained in steps first+1..last over the clock between their step ends.
        first, last = max(self.warmup, 1), max(self.tokens_at, default=0)
        if first in self.tokens_at and last > first and last <= len(self.step_ends):
            seconds = self.step_ends[last - 1] - self.step_ends[first - 1]
            tokens = self.tokens_at[last] - self.tokens_at[first]
            result["tokens_per_s"] = round(tokens / seconds, 1)
            result["tokens_per_s_per_device"] = round(tokens / seconds / max(args.world_size, 1), 1)
            # Samples (conversations) per optimizer step over all ranks; the last micro-batch of an epoch
            # can be short, so this is an upper bound by at most one batch per epoch crossed.
            per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
            result["samples_per_s"] = round(per_step * (last - first) / seconds, 3)
            result["tokens_per_sample"] = round(tokens / (per_step * (last - first)), 1)
        if self.image_tokens:
            per_batch = sum(self.image_tokens) / len(self.image_tokens)
            result["image_tokens_per_batch"] = round(per_batch, 1)
            result["image_tokens_per_sample"] = round(per_batch / args.per_device_train_batch_size, 1)
            result["max_seq_len"] = self.max_seq_len
        if self.compare is not None:
            result["padding_free"] = self.compare.result(args.world_size)  # collective: every rank calls it
        if state.is_world_process_zero:
            line = json.dumps(result)
            print(f"bench: {line}", flush=True)
            if self.compare is not None:
                print(padding_free_lines(result), flush=True)
            out = Path(args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            (out / RESULT_FILE).write_text(line + "\n", encoding="utf-8")


def padding_free_lines(result: dict[str, Any]) -> str:
    """The comparison as a few human lines (the JSON has every number)."""
    pf = result["padding_free"]
    attn = (result.get("attn_implementation") or {}).get("text")
    rows = [f"bench: padding-free vs padded, alternating optimizer steps, text attention {attn}:"]
    for name in PaddingFreeCompare.SETTINGS:
        r = pf[name]
        rows.append(f"  {name:<13} {r['steps']} steps, step {r['step_time_s_mean']} s, {r['tokens_per_s']} tokens/s, "
                    f"padding {r['padding_share']}, peak GPU memory {r['peak_gpu_mem_gib']} GiB")
    if "tokens_per_s_ratio" in pf:
        rows.append(f"  padding-free / padded: tokens/s x{pf['tokens_per_s_ratio']}, "
                    f"step time x{pf['step_time_ratio']}")
    return "\n".join(rows)


def main() -> None:
    warmup = int(os.environ.get("BENCH_WARMUP", "3"))
    mode = os.environ.get("BENCH_PADDING_FREE", "compare")
    if mode not in ("compare", "recipe"):
        raise SystemExit(f"error: bench: BENCH_PADDING_FREE={mode!r}: expected compare or recipe")
    compare = PaddingFreeCompare(warmup) if mode == "compare" else None
    callback = BenchCallback(warmup, compare)

    class BenchTrainer(sft.GleamSFTTrainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.add_callback(callback)
            self._packer: PaddingFreeCollator | None = None

        def get_train_dataloader(self):  # noqa: ANN201
            # compare: the loader yields TRL's padded batches; training_step packs every other step itself.
            if compare is not None and isinstance(self.data_collator, PaddingFreeCollator):
                self._packer, self.data_collator = self.data_collator, self.data_collator.inner
            return super().get_train_dataloader()

        def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001
            if compare is not None and self._packer is not None:
                step = self.state.global_step
                if compare.setting(step) == "padding_free":  # warm-up steps alternate too: both paths warm up
                    inputs = pack_batch(inputs, self._packer.rope_index, flash_kwargs=self._packer.flash_kwargs)
                compare.record(step, inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    # run_sft builds its trainer internally; swapping the class in its module adds the timer without
    # a benchmark hook in library code and keeps every other step of the real training path.
    sft.GleamSFTTrainer = BenchTrainer
    script_args, training_args, model_args = parse_recipe(
        TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), sys.argv[1:]
    )
    # Every step must be logged for the token count; the Trainer logs on rank 0's schedule anyway.
    training_args.logging_steps = 1
    if compare is not None:
        script_args.padding_free_vl = True  # the trainer gets the packing collator (unwrapped above) and token count
    sft.run_sft(script_args, training_args, model_args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
