"""``gleamx demo``: the whole pipeline on generated data and a tiny model, on a laptop CPU.

Today: synthetic data -> validation -> ShareGPT export -> tiny Qwen2.5-VL-class
model -> batched generation + match scoring of the untrained model. Each later
stage (SFT, retrieval) joins here as it lands.
"""

from __future__ import annotations

import time
from pathlib import Path

from gleamx.cli.common import console


def run_demo(out: str | Path, *, n: int = 240, arch: str = "qwen2_5_vl", seed: int = 0, eval_limit: int = 24) -> dict:
    """Run every stage into ``out`` and return the paths it wrote."""
    from gleamx.data import load_samples, validate, write_sharegpt
    from gleamx.data.synth import synthesize
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.models import build_tiny_model

    out = Path(out)
    t0 = time.perf_counter()
    paths: dict[str, Path] = {}

    console.rule("[bold]1. synthetic cross-view data")
    data = out / "data"
    summary = synthesize(data, n=n, seed=seed)
    console.print(f"{summary.n_samples} pairs in {data}  ({', '.join(f'{k}={v}' for k, v in summary.by_split.items())})")
    paths["data"] = data

    console.rule("[bold]2. validation")
    report = validate(data)
    console.print(f"{report.n_valid} valid samples, {len(report.problems)} problem(s); "
                  f"views: {dict(report.by_view)}; languages: {dict(report.by_lang)}")
    for p in report.problems[:10]:
        console.print(str(p))

    console.rule("[bold]3. ShareGPT / LLaMA-Factory export")
    train = load_samples(data, split="train").samples
    sg = out / "llamafactory" / "gleamx_train.json"
    rows = write_sharegpt(train, sg)
    console.print(f"{rows} conversations -> {sg} (+ dataset_info.json)")
    paths["sharegpt"] = sg

    console.rule(f"[bold]4. tiny {arch} model")
    model_dir = build_tiny_model(arch, out / "models" / f"tiny-{arch}", seed=seed)
    console.print(f"random-initialised {arch} + processor -> {model_dir}")
    paths["model"] = model_dir

    console.rule("[bold]5. evaluation of the untrained model (label task)")
    eval_dir = out / "eval" / "untrained"
    results = run_eval(EvalConfig(data=str(data), model=str(model_dir), lang="en", task="label", split="test",
                                  limit=eval_limit, max_new_tokens=8, output=str(eval_dir), overwrite=True))
    acc = results["accuracy"] or 0.0
    console.print(f"accuracy {100 * acc:.1f}% on {results['n']} test pairs, invalid answers "
                  f"{100 * (results['invalid_rate'] or 0):.1f}% (an untrained model answers at random)")
    paths["eval"] = eval_dir

    console.rule("[bold]done")
    console.print(f"finished in {time.perf_counter() - t0:.0f}s. Outputs:")
    for name, p in paths.items():
        console.print(f"  {name:9s} {p}")
    return paths
