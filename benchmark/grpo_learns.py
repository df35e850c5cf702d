"""Does GRPO learn? Verdict reward and test accuracy of a tiny model after a short SFT, before and after GRPO.

For one seed: synthesises the ``toy`` level (as ``sft_learns.py``), builds the tiny random Qwen2.5-VL model,
runs a short SFT with ``recipes/tiny/sft_learns.yaml`` (``--sft_steps``; a random model writes no verdict, so a
verdict reward would be flat), scores that model on the test split with gleamx-eval's ``run_eval`` (label task,
greedy), runs ``run_grpo`` with ``recipes/tiny/grpo.yaml`` from the SFT run (verdict reward only, full
fine-tuning like the SFT, ``--grpo_steps`` steps) and scores the result the same way. Prints accuracy overall,
on matching and on non-matching pairs, the invalid rate, the test verdict reward (accuracy - penalty x invalid),
the training reward curve (mean verdict reward per logged step), steps and wall times.

    python benchmark/grpo_learns.py --quick        # smoke run (~1 min): the path, too short to learn
    python benchmark/grpo_learns.py                # 2000 samples, SFT 400 steps, GRPO 120 x 4 prompts, lr 1e-4 (~4 min)
    python benchmark/grpo_learns.py --sft_steps 800 --grpo_steps 60   # the old default: a confident SFT, no change

The default SFT stops while the seed-0 model is partly right and unsure (66.5%, P(right) ~0.55), so the 8 answers
of a prompt disagree and GRPO has something to rank; GRPO then raises test accuracy to 87.5%. At --seed 1 the
400-step SFT is still at the label prior and GRPO moves nothing: the SFT steps to that state depend on the seed.
Trials: ``--work_dir DIR`` keeps data, model and SFT run and reuses them (each trial then costs GRPO + one eval),
``--sft_save_steps K`` / ``--sft_checkpoint N`` start GRPO from an SFT checkpoint, ``--grpo_seed`` varies GRPO
alone, ``--temperature``/``--top_k``/``--class_balance``/``--no_verdict_penalty``/``--scale_rewards`` the GRPO run.
benchmark/README.md lists the settings tried and what each gave.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gleamx.models import build_tiny_model
from gleamx.synth import synthesize
from machine import set_threads_and_describe  # benchmark/machine.py (the script's own folder)
from sft_learns import score  # benchmark/sft_learns.py: run_eval on the test split, label task, greedy

ROOT = Path(__file__).resolve().parents[1]
SFT_RECIPE = ROOT / "recipes" / "tiny" / "sft_learns.yaml"
GRPO_RECIPE = ROOT / "recipes" / "tiny" / "grpo.yaml"
FIELDS = ("accuracy", "accuracy_positive", "accuracy_negative", "invalid_rate")
PROBS = ("p_right_positive", "p_right_negative")


def pct(x: float | None) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}"


def test_reward(m: dict[str, Any], penalty: float) -> float:
    """Mean verdict reward of the greedy test answers: 1 per correct, 0 per wrong, -penalty per invalid."""
    return (m["accuracy"] or 0.0) - penalty * (m["invalid_rate"] or 0.0)


def verdict_probs(model_path: Path, data: Path, max_pixels: int | None) -> dict[str, float]:
    """Mean probability of the right verdict on the test split, per class: the model's (teacher-forced) sequence
    probabilities of the two verdict lines, renormalised over the two. Greedy accuracy only sees which side of
    0.5 a pair falls; this shows whether GRPO moved the policy at all, and how sure it is."""
    from gleamx.data.load import load_samples
    from gleamx.data.schema import GleamSample
    from gleamx.models import load_model_and_processor
    from gleamx.prompts import build_messages, sample_images
    from gleamx.task import verdict_line

    model, proc = load_model_and_processor(model_path, max_pixels=max_pixels, dtype="float32")
    model.eval()
    right: dict[bool, list[float]] = {True: [], False: []}
    for row in load_samples(str(data), split="test").dataset:
        s = GleamSample.from_features_dict(row)
        images = sample_images(s)
        prompt = proc.apply_chat_template(build_messages(s, "en", "label", with_answer=False),
                                          add_generation_prompt=True, tokenize=False)
        n_prompt = proc(text=[prompt], images=images, return_tensors="pt")["input_ids"].shape[1]
        logp = []
        for verdict in (True, False):
            enc = proc(text=[prompt + verdict_line(verdict, "en")], images=images, return_tensors="pt")
            with torch.no_grad():
                lp = model(**enc).logits[0].float().log_softmax(-1)
            ids = enc["input_ids"][0]
            logp.append(sum(lp[i - 1, ids[i]] for i in range(n_prompt, len(ids))))
        p_yes = torch.stack(logp).softmax(0)[0].item()
        right[bool(s.label)].append(p_yes if s.label else 1.0 - p_yes)
    return {"p_right_positive": statistics.mean(right[True]), "p_right_negative": statistics.mean(right[False])}


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.train.grpo import run_grpo
    from gleamx.train.arguments import GleamGRPOArguments
    from gleamx.parsing import parse_recipe
    from gleamx.train.sft import run_sft

    t0 = time.perf_counter()
    sft_dir = root / "sft"
    meta = {"n": args.n, "seed": args.seed, "sft_steps": args.sft_steps, "sft_save_steps": args.sft_save_steps}
    reuse = (root / "sft_done.json").is_file() and json.loads((root / "sft_done.json").read_text()) == meta
    if not reuse:  # a fresh folder, or one holding another setting's data and SFT run: make them anew
        for old in (root / "sft_done.json", *root.glob("before-*.json")):
            old.unlink(missing_ok=True)
        for old in ("data", "model", "sft"):
            shutil.rmtree(root / old, ignore_errors=True)
        synthesize(root / "data", args.n, seed=args.seed, difficulty="toy", image_size=64)
        build_tiny_model("qwen2_5_vl", root / "model", seed=args.seed)
    model_dir = root / "model"
    save = ["--save_strategy", "steps", "--save_steps", str(args.sft_save_steps), "--save_total_limit", "100",
            "--save_only_model", "true"] if args.sft_save_steps else []
    sft_args = parse_recipe(TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), [
        "--config", str(SFT_RECIPE), "--model_name_or_path", str(model_dir), "--dataset_name", str(root / "data"),
        "--output_dir", str(sft_dir), "--seed", str(args.seed), "--max_steps", str(args.sft_steps),
        "--logging_steps", str(max(1, args.sft_steps // 5)), *save])
    if reuse:
        print(f"reusing the SFT run in {sft_dir} ({meta})", flush=True)
    else:
        run_sft(*sft_args)
        (root / "sft_done.json").write_text(json.dumps(meta))
    sft_s = time.perf_counter() - t0
    start = sft_dir / f"checkpoint-{args.sft_checkpoint}" if args.sft_checkpoint else sft_dir
    if not start.is_dir():
        raise SystemExit(f"--sft_checkpoint {args.sft_checkpoint}: no {start} (save it with --sft_save_steps)")

    t0 = time.perf_counter()
    cached = root / f"before-{start.name}.json"
    before = json.loads(cached.read_text()) if cached.is_file() else {}
    if "p_right_negative" not in before:
        before = score(model_dir, root / "data", root / f"eval0-{start.name}", "label", sft_args[0].max_pixels,
                       model=start)
        before.update(verdict_probs(start, root / "data", sft_args[0].max_pixels))
        cached.write_text(json.dumps({k: before[k] for k in (*FIELDS, *PROBS, "n")}))
    eval_s = time.perf_counter() - t0
    print(f"after SFT ({start.name}, {sft_s:.0f} s): accuracy {pct(before['accuracy'])}%, "
          f"matching {pct(before['accuracy_positive'])}%, "
          f"non-matching {pct(before['accuracy_negative'])}%, invalid {pct(before['invalid_rate'])}%", flush=True)

    grpo_dir = Path(tempfile.mkdtemp(prefix="grpo-", dir=root))
    grpo_args = parse_recipe(TrlParser((GleamGRPOArguments, GRPOConfig, ModelConfig)), [
        "--config", str(GRPO_RECIPE), "--model_name_or_path", str(start), "--dataset_name", str(root / "data"),
        "--output_dir", str(grpo_dir), "--seed", str(args.seed if args.grpo_seed is None else args.grpo_seed),
        "--lang", "en", "--task", "label",
        "--use_peft", "false", "--freeze_merger", "true", "--reward_funcs", "verdict", "--reward_weights", "1",
        "--no_verdict_penalty", str(args.no_verdict_penalty), "--class_balance", str(args.class_balance).lower(),
        "--scale_rewards", args.scale_rewards,
        "--max_steps", str(args.grpo_steps), "--learning_rate", str(args.grpo_lr),
        "--num_generations", str(args.num_generations),
        "--per_device_train_batch_size", str(args.num_generations * args.prompts),
        "--max_completion_length", "6", "--save_strategy", "no", "--logging_steps", "1",
        "--temperature", str(args.temperature), "--top_k", str(args.top_k),
        "--max_pixels", str(sft_args[0].max_pixels)])
    t0 = time.perf_counter()
    out = run_grpo(*grpo_args)
    grpo_s = time.perf_counter() - t0
    after = score(model_dir, root / "data", grpo_dir / "eval1", "label", sft_args[0].max_pixels, model=out)
    after.update(verdict_probs(out, root / "data", sft_args[0].max_pixels))
    history = json.loads((out / "log_history.json").read_text())
    curve = [(h["step"], h["rewards/verdict/mean"], h.get("frac_reward_zero_std")) for h in history
             if "rewards/verdict/mean" in h]
    return {"before": before, "after": after, "reused": reuse, "sft_s": sft_s, "eval_s": eval_s, "grpo_s": grpo_s, "curve": curve,
            "penalty": grpo_args[0].no_verdict_penalty, "batch": grpo_args[1].per_device_train_batch_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 samples, 60 SFT steps, 10 GRPO steps of 2 prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--grpo_seed", type=int, default=None, help="seed of the GRPO run alone (default: --seed)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see README: shared cores)")
    ap.add_argument("--n", type=int, default=None, help="synthetic samples (default 2000; quick 300)")
    ap.add_argument("--sft_steps", type=int, default=None, help="SFT steps x batch 8 before GRPO (default 400; quick 60)")
    ap.add_argument("--grpo_steps", type=int, default=None, help="GRPO steps (default 120; quick 10)")
    ap.add_argument("--grpo_lr", type=float, default=1e-4, help="GRPO learning rate (full fine-tuning)")
    ap.add_argument("--num_generations", type=int, default=8, help="answers per prompt")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per GRPO step (quick 2)")
    ap.add_argument("--temperature", type=float, default=1.0, help="GRPO sampling temperature")
    ap.add_argument("--top_k", type=int, default=0, help="sample GRPO answers from the k likeliest tokens (0: all)")
    ap.add_argument("--no_verdict_penalty", type=float, default=0.5, help="verdict reward of an answer without one: minus this")
    ap.add_argument("--class_balance", action="store_true", help="weigh rewards by class (sets --scale_rewards batch)")
    ap.add_argument("--scale_rewards", default=None, help="TRL's scale_rewards: group (default), batch or none")
    ap.add_argument("--work_dir", type=Path, default=None,
                    help="keep data, model and SFT run here and reuse them when n, seed and SFT steps match "
                         "(else its data/, model/ and sft/ are made anew; default: a temporary folder); each GRPO "
                         "trial then costs GRPO + one eval")
    ap.add_argument("--sft_save_steps", type=int, default=0, help="save an SFT checkpoint every this many steps")
    ap.add_argument("--sft_checkpoint", type=int, default=0,
                    help="start GRPO from SFT checkpoint-N (needs --sft_save_steps) instead of the final SFT model")
    args = ap.parse_args()
    args.n = args.n or (300 if args.quick else 2000)
    args.sft_steps = args.sft_steps or (60 if args.quick else 400)
    args.grpo_steps = args.grpo_steps or (10 if args.quick else 120)
    if args.quick and args.prompts == 4:
        args.prompts = 2
    args.scale_rewards = args.scale_rewards or ("batch" if args.class_balance else "group")
    set_threads_and_describe(args.threads)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=True)
        r = run(args, args.work_dir.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="gleamx-grpo-learns-") as tmp:
            r = run(args, Path(tmp))

    b, a = r["before"], r["after"]
    print(f"\ndata: synthesize(n={args.n}, difficulty='toy', image_size=64, seed={args.seed}), test split {a['n']} pairs; "
          f"model: tiny qwen2_5_vl (seed {args.seed})")
    print(f"SFT: sft_learns.yaml, {args.sft_steps} steps x batch 8, full fine-tuning, {r['sft_s']:.0f} s"
          + (f"; GRPO starts from its checkpoint at step {args.sft_checkpoint}" if args.sft_checkpoint else "")
          + (" (reused)" if r["reused"] else ""))
    print(f"GRPO: grpo.yaml, full fine-tuning, {args.grpo_steps} steps x {args.prompts} prompts x "
          f"{args.num_generations} answers (batch {r['batch']}), lr {args.grpo_lr:g}, temperature {args.temperature:g}"
          f"{f', top_k {args.top_k}' if args.top_k else ''}, "
          f"reward verdict only (no-verdict penalty {r['penalty']:g}"
          f"{', class-balanced' if args.class_balance else ''}), scale_rewards {args.scale_rewards}, {r['grpo_s']:.0f} s "
          f"({r['grpo_s'] / args.grpo_steps:.2f} s/step); {torch.get_num_threads()} torch thread(s)")
    print("eval: run_eval, test split, lang=en, task=label, greedy, 8 new tokens\n")
    print(f"{'model':<12} " + " ".join(f"{f:>18}" for f in FIELDS) + f" {'test verdict reward':>20}")
    for name, m in (("after SFT", b), ("after GRPO", a)):
        print(f"{name:<12} " + " ".join(f"{pct(m[f]):>18}" for f in FIELDS)
              + f" {test_reward(m, r['penalty']):>20.3f}")
    print("\nprobability of the right verdict (teacher-forced 'Answer: Yes' vs 'Answer: No', renormalised), mean on "
          "matching / non-matching test pairs:\n" + "\n".join(
              f"  {name:<12} {m['p_right_positive']:.3f} / {m['p_right_negative']:.3f}" for name, m in
              (("after SFT", b), ("after GRPO", a))))
    curve = r["curve"]
    k = max(1, len(curve) // 5)
    first, last = [c[1] for c in curve[:k]], [c[1] for c in curve[-k:]]
    print(f"\ntraining verdict reward (mean of sampled answers): first {k} steps {statistics.mean(first):.3f}, "
          f"last {k} steps {statistics.mean(last):.3f}")
    print("reward curve (step: mean verdict reward, share of prompts whose answers all scored alike):")
    for lo in range(0, len(curve), k):
        chunk = curve[lo:lo + k]
        zero = [c[2] for c in chunk if c[2] is not None]
        print(f"  steps {chunk[0][0]:>4}-{chunk[-1][0]:<4} {statistics.mean(c[1] for c in chunk):6.3f}"
              + (f"   flat groups {statistics.mean(zero):.2f}" if zero else ""))
    up_reward = test_reward(a, r["penalty"]) > test_reward(b, r["penalty"]) and statistics.mean(last) > statistics.mean(first)
    up_classes = (a["accuracy_positive"] or 0) >= (b["accuracy_positive"] or 0) and \
        (a["accuracy_negative"] or 0) >= (b["accuracy_negative"] or 0) and (a["accuracy"] or 0) > (b["accuracy"] or 0)
    print("\nverdict:", "GRPO RAISED the verdict reward and test accuracy, neither class falling"
          if up_reward and up_classes else
          "GRPO did NOT raise both the verdict reward and test accuracy (both classes) in this setting")
    print(f"wall: SFT {r['sft_s']:.0f} s, one eval {r['eval_s']:.0f} s, GRPO {r['grpo_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
