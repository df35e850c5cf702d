"""Data-path throughput: gleamx's training input path vs a plain ``datasets`` + processor loop.

Both paths read the same synthetic JSONL + PNG files and produce the same model inputs
(``input_ids`` and ``pixel_values``; the script checks they are identical):

* gleamx: ``load_samples`` (validates every record and decodes every image once) ->
  ``build_sft_dataset`` -> TRL's ``DataCollatorForVisionLanguageModeling`` over batches of
  dataset rows (``processor.apply_chat_template(tokenize=True)`` + assistant-token mask), i.e.
  exactly what ``GleamSFTTrainer`` feeds the model.
* plain: ``datasets.load_dataset("json")``, PIL-open both images per row, write the Qwen chat
  text by hand, ``processor(text=[...], images=[...])`` one sample at a time (no validation,
  no loss mask).

The two paths alternate ``--repeats`` times in one process (gleamx, plain, gleamx, plain, ...), so
load from other processes on the machine hits both alike; every figure is the median over the runs
with its min and max, and the ratio is the median of the per-round ratios.

    python benchmark/bench_data.py            # 1000 samples (800 train), 3 runs per path, 3 min at load 6
    python benchmark/bench_data.py --quick    # 200 samples, 3 runs per path

Figures go to ``benchmark/results/bench_data.json`` (``results/quick/`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import torch
from PIL import Image
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from gleamx.data import load_samples
from gleamx.synth import synthesize
from gleamx.models import build_tiny_model, load_model_and_processor, training_chat_template
from gleamx.task import user_prompt
from gleamx.train.assistant_mask import speed_up_assistant_masks
from gleamx.train.sft_data import build_sft_dataset
from machine import alternate, ratios, set_threads_and_describe, spread, timed  # benchmark/machine.py
from results import Results  # benchmark/results.py

LANG, TASK = "en", "explain"  # one conversation per sample, the longest answers
# the timer's names, as printed, and the short keys their figures are recorded under
PART_KEYS = {"load_samples (parse + validate + decode check)": "load_samples",
             "build_sft_dataset (Arrow)": "build_sft_dataset",
             "row access (Arrow -> PIL decode)": "row_access",
             "collator (chat template + image processor + mask)": "collator",
             "load_dataset json": "load_dataset",
             "PIL open + convert": "pil_open",
             "chat text by hand": "chat_text",
             "processor (tokenise + image processor)": "processor"}


class Timer:
    """Named wall-clock accumulators (seconds)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[name] += time.perf_counter() - t0


def gleamx_path(data: Path, processor: Any, batch_size: int, keep: list | None = None) -> Timer:
    """load_samples -> build_sft_dataset -> TRL collator over every batch of the train split."""
    tm = Timer()
    with tm("load_samples (parse + validate + decode check)"):
        loaded = load_samples(data, split="train").dataset  # what run_sft reads: Arrow, no sample objects
    with tm("build_sft_dataset (Arrow)"):
        ds = build_sft_dataset(loaded, LANG, TASK).dataset
    collator = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
    for start in range(0, len(ds), batch_size):
        with tm("row access (Arrow -> PIL decode)"):
            # What torch's DataLoader fetcher calls: one Arrow read per batch, rows as dicts.
            rows = ds.__getitems__(list(range(start, min(start + batch_size, len(ds)))))
        with tm("collator (chat template + image processor + mask)"):
            batch = collator(rows)
        if keep is not None and not keep:
            keep.append(batch)
    return tm


def qwen_text(prompt: str, answer: str) -> str:
    """The Qwen2-VL chat text, written out by hand (what a plain script does)."""
    vision = "<|vision_start|><|image_pad|><|vision_end|>"
    return (f"<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{vision}{vision}{prompt}<|im_end|>\n"
            f"<|im_start|>assistant\n{answer}<|im_end|>\n")


def plain_path(data: Path, processor: Any, cache_dir: Path, keep: list | None = None) -> Timer:
    """datasets.load_dataset("json") -> PIL per row -> hand-written chat text -> processor, one by one.

    The instruction wording comes from gleamx's ``user_prompt`` so both paths tokenise identical
    text; it is string formatting (microseconds), not what is measured.
    """
    tm = Timer()
    with tm("load_dataset json"):
        ds = datasets.load_dataset("json", data_files=str(data / "train.jsonl"), split="train", cache_dir=str(cache_dir))
    for row in ds:
        with tm("PIL open + convert"):
            images = [Image.open(data / row[k]).convert("RGB") for k in ("query_image", "satellite_image")]
        with tm("chat text by hand"):
            text = qwen_text(user_prompt(row["query_view"], LANG, TASK), row["explanation"][LANG])
        with tm("processor (tokenise + image processor)"):
            out = processor(text=[text], images=images, return_tensors="pt")
        if keep is not None and len(keep) < 8:
            keep.append(out)
    return tm


def check_same(gleamx_batch: dict, plain_outs: list[dict]) -> bool:
    """Unpadded input_ids and pixel_values of the first gleamx batch equal the plain loop's."""
    n = min(len(plain_outs), gleamx_batch["input_ids"].shape[0])
    ids = [gleamx_batch["input_ids"][i][gleamx_batch["attention_mask"][i].bool()] for i in range(n)]
    same_ids = all(torch.equal(ids[i], plain_outs[i]["input_ids"][0]) for i in range(n))
    pix = torch.cat([o["pixel_values"] for o in plain_outs[:n]])
    return same_ids and torch.equal(gleamx_batch["pixel_values"][: pix.shape[0]], pix)


def collator_anatomy(data: Path, processor: Any, batch_size: int, n_batches: int) -> dict[str, float]:
    """Seconds per sample of the collator's parts, on the same batches (rows pre-fetched)."""
    ds = build_sft_dataset(load_samples(data, split="train").dataset, LANG, TASK).dataset
    batches = [ds.__getitems__(list(range(i * batch_size, (i + 1) * batch_size))) for i in range(n_batches)]
    full = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=True)
    no_mask = DataCollatorForVisionLanguageModeling(processor, assistant_only_loss=False)
    tm = Timer()
    for rows in batches:
        with tm("TRL collator, assistant-only mask (the training path)"):
            full(rows)
        with tm("TRL collator, no mask"):
            no_mask(rows)
        with tm("chat template render only (tokenize=False)"):
            texts = processor.apply_chat_template([r["messages"] for r in rows], tokenize=False)
        with tm("processor on rendered text, batched"):
            processor(text=texts, images=[r["images"] for r in rows], padding=True, return_tensors="pt")
    n = n_batches * batch_size
    return {k: v / n for k, v in tm.t.items()}


def synth_rate(out: Path, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    synthesize(out, n, seed=0, difficulty="medium", image_size=128)
    dt = time.perf_counter() - t0
    return n / dt, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 samples (< 1 min)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: with other jobs on this 2-core box, 2 threads ran 3-5x slower)")
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 1000, quick 200)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per path (default 3)")
    ap.add_argument("--batch_size", type=int, default=8)
    args = ap.parse_args()
    n = args.n or (200 if args.quick else 1000)
    repeats = args.repeats

    set_threads_and_describe(args.threads)
    results = Results("bench_data", quick=args.quick,
                      settings={"n": n, "repeats": repeats, "batch_size": args.batch_size, "lang": LANG, "task": TASK})
    with tempfile.TemporaryDirectory(prefix="gleamx-bench-data-") as tmp:
        root = Path(tmp)
        rate, dt = synth_rate(root / "synth", n)
        print(f"synthesize: {n} samples (128 px, 5 images/location) in {dt:.1f} s = {rate:.1f} samples/s")
        results.add("synth_samples_s", rate, unit="samples/s", label="synthesis (128 px, 5 images/location), one run",
                    fmt=".1f")
        _, processor = load_model_and_processor(build_tiny_model("qwen2_5_vl", root / "model"), dtype="float32")
        processor.chat_template = training_chat_template(processor)  # what run_sft does,
        speed_up_assistant_masks(processor)  # ... and this too
        data = root / "synth"
        with open(data / "train.jsonl", encoding="utf-8") as f:
            n_train = sum(1 for _ in f)

        g_keep: list = []
        p_keep: list = []
        # gleamx, plain, gleamx, plain, ...: background load hits both paths alike
        got = alternate({
            "gleamx": lambda r: timed(lambda: gleamx_path(data, processor, args.batch_size, g_keep if r == 0 else None)),
            "plain": lambda r: timed(lambda: plain_path(data, processor, root / f"hf-cache-{r}", p_keep if r == 0 else None)),
        }, repeats)
        g_times, g_parts = [t for t, _ in got["gleamx"]], [tm for _, tm in got["gleamx"]]
        p_times, p_parts = [t for t, _ in got["plain"]], [tm for _, tm in got["plain"]]
        same = check_same(g_keep[0], p_keep)

        g_med, p_med = statistics.median(g_times), statistics.median(p_times)
        print(f"\ntrain split: {n_train} samples, lang={LANG}, task={TASK}, batch {args.batch_size}, "
              f"{repeats} alternating runs per path: median (min, max)")
        print(f"same input_ids and pixel_values on the first batch: {'yes' if same else 'NO'}")
        print(f"gleamx path (load_samples + build_sft_dataset + TRL collator): "
              f"{spread([n_train / t for t in g_times], '.1f', ' samples/s')}")
        print(f"plain loop (load_dataset json + PIL + processor one by one):   "
              f"{spread([n_train / t for t in p_times], '.1f', ' samples/s')}")
        ratio = ratios(p_times, g_times)
        print(f"ratio gleamx/plain throughput, per round: {spread(ratio, '.2f', 'x')} "
              f"({'gleamx faster' if statistics.median(ratio) >= 1 else 'gleamx SLOWER'})")
        results.add("same_inputs", float(same), unit="", label="same input_ids and pixel_values (1 = yes)")
        results.add("gleamx_samples_s", [n_train / t for t in g_times], unit="samples/s", fmt=".1f",
                    label="gleamx path (load_samples + build_sft_dataset + TRL collator)")
        results.add("plain_samples_s", [n_train / t for t in p_times], unit="samples/s", fmt=".1f",
                    label="plain loop (load_dataset json + PIL + processor one by one)")
        results.add("throughput_ratio", ratio, unit="x", fmt=".2f", label="gleamx / plain throughput, per round")

        # Steady state: a second epoch of training repeats only the row access + collator part.
        def epoch(tm: Timer) -> float:
            return sum(v for k, v in tm.t.items() if not k.startswith(("load_samples", "build_sft")))

        g_epoch = [epoch(tm) for tm in g_parts]
        print(f"gleamx per-epoch part only (rows + collator, what each later epoch costs): "
              f"{spread([n_train / t for t in g_epoch], '.1f', ' samples/s')} = "
              f"{spread(ratios(p_times, g_epoch), '.2f', 'x')} the plain loop")
        results.add("epoch_samples_s", [n_train / t for t in g_epoch], unit="samples/s", fmt=".1f",
                    label="gleamx per-epoch part (rows + collator)")
        results.add("epoch_ratio", ratios(p_times, g_epoch), unit="x", fmt=".2f",
                    label="gleamx per-epoch part / plain loop throughput, per round")
        n_anatomy = min(20, n_train // args.batch_size)
        print(f"\ncollator anatomy (ms per sample over the same {n_anatomy} batches, the four variants alternating "
              f"batch by batch; {repeats} rounds: median (min, max)):")
        rounds = [collator_anatomy(data, processor, args.batch_size, n_anatomy) for _ in range(repeats)]
        for k in rounds[0]:
            print(f"  {k:<56} {spread([1000 * r[k] for r in rounds], '.2f')}")
        full, bare = "TRL collator, assistant-only mask (the training path)", "TRL collator, no mask"
        print(f"  => assistant-mask computation: {spread([1000 * (r[full] - r[bare]) for r in rounds], '.2f', ' ms/sample')}"
              f", {spread([100 * (r[full] - r[bare]) / r[full] for r in rounds], '.0f', '%')} of the collator")
        results.add("collator_ms", [1000 * r[full] for r in rounds], unit="ms/sample", fmt=".2f",
                    label="TRL collator with the assistant-only mask (the training path)")
        results.add("collator_no_mask_ms", [1000 * r[bare] for r in rounds], unit="ms/sample", fmt=".2f",
                    label="TRL collator without the mask")
        results.add("mask_ms", [1000 * (r[full] - r[bare]) for r in rounds], unit="ms/sample", fmt=".2f",
                    label="assistant-mask computation")
        results.add("mask_share", [100 * (r[full] - r[bare]) / r[full] for r in rounds], unit="%", fmt=".0f",
                    label="assistant-mask computation, share of the collator")
        for name, parts, total in (("gleamx", g_parts, g_med), ("plain", p_parts, p_med)):
            print(f"\nwhere {name} time goes (median s over runs, share of the median total):")
            for k in parts[0].t:
                v = statistics.median(tm.t[k] for tm in parts)
                print(f"  {k:<52} {v:6.2f} s  {100 * v / total:5.1f}%")
                results.add(f"{name}_part.{PART_KEYS[k]}", [tm.t[k] for tm in parts], unit="s", fmt=".2f",
                            label=f"{name}: {k}", share_of_median_total=100 * v / total)
    results.write()

if __name__ == "__main__":
    main()
