"""``gleamx demo``: the whole pipeline on generated data and a tiny model, on a laptop CPU.

Synthetic data -> validation -> ShareGPT export -> tiny Qwen2.5-VL-class model
-> match scoring of the untrained model -> LoRA SFT with the packaged tiny recipe
(``gleamx/recipes/tiny/sft_lora.yaml``, through TRL) -> match scoring of the trained
adapter -> GLEAM-C: a tiny retrieval encoder trained on the same locations ->
localize: its top-3 satellite candidates per test query, verified by the adapter.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from gleamx import recipes
from gleamx.console import console

RECIPE = recipes.path("tiny/sft_lora.yaml")  # package data: found in a wheel install as in a checkout


def _tiny_recipe_args(model_dir: Path, data: Path, out: Path, seed: int) -> tuple:
    """The tiny recipe parsed exactly as ``recipes/sft.py`` parses it, pointed at the demo's files."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.args import GleamScriptArguments
    from gleamx.train.recipe import parse_recipe

    parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
    return parse_recipe(parser, ["--config", str(RECIPE), "--model_name_or_path", str(model_dir),
                                 "--dataset_name", str(data), "--output_dir", str(out), "--seed", str(seed),
                                 "--overwrite_output_dir", "true", "--disable_tqdm", "true"])


def run_demo(out: str | Path, *, n: int = 240, arch: str = "qwen2_5_vl", seed: int = 0, eval_limit: int = 40) -> dict:
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

    console.rule("[bold]6. LoRA SFT with the tiny recipe (TRL SFTTrainer, loss on the answer only)")
    from gleamx.train.sft import run_sft

    sft_dir = run_sft(*_tiny_recipe_args(model_dir, data, out / "sft", seed))
    console.print(f"adapter, processor, model card and loss curve -> {sft_dir}")
    paths["sft"] = sft_dir

    console.rule("[bold]7. evaluation of the fine-tuned adapter")
    tuned_dir = out / "eval" / "sft"
    tuned = run_eval(EvalConfig(data=str(data), model=str(model_dir), adapter=str(sft_dir), lang="en", task="label",
                                split="test", limit=eval_limit, max_new_tokens=8, output=str(tuned_dir), overwrite=True))
    for name, r in (("untrained", results), ("fine-tuned", tuned)):
        console.print(f"{name:>10}: accuracy {100 * (r['accuracy'] or 0):.1f}%  positives "
                      f"{100 * (r['accuracy_positive'] or 0):.1f}%  negatives {100 * (r['accuracy_negative'] or 0):.1f}%  "
                      f"invalid {100 * (r['invalid_rate'] or 0):.1f}%")
    console.print("A few LoRA steps on a random model teach the answer format (watch the invalid rate), not the "
                  "match itself; `python benchmark/sft_learns.py` trains the tiny model until it matches (toy level) "
                  "and prints what it measured.")
    paths["eval_sft"] = tuned_dir

    console.rule("[bold]8. GLEAM-C retrieval encoder (tiny ConvNeXt, InfoNCE, similarity-sampled negatives)")
    from gleamx.retrieval.config import GleamCConfig
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.train import train_gleamc

    n_train = len(load_retrieval(data, "train").gallery)  # a batch holds one pair per location
    gc_dir = train_gleamc(GleamCConfig(data=str(data), output_dir=str(out / "gleamc"), encoder="tiny", img_size=64,
                                       epochs=2, batch_size=min(16, n_train), hard_negatives=4, eval_split="test", seed=seed,
                                       logging_steps=5))
    m = json.loads((gc_dir / "results.json").read_text())
    from gleamx.retrieval.metrics import percent_text as pc  # "-": R@k on a gallery of <= k tiles

    console.print(f"test split: R@1 {pc(m['R@1'], 1)}%  R@5 {pc(m['R@5'], 1)}%  mAP {pc(m['mAP'], 1)}% "
                  f"over a gallery of {m['n_gallery']} tiles -> {gc_dir}")
    paths["gleamc"] = gc_dir

    console.rule("[bold]9. localize: top-3 candidates per query, verified by the fine-tuned MLLM")
    from gleamx.retrieval.localize import LocalizeConfig, localize

    loc = localize(LocalizeConfig(encoder=str(gc_dir), model=str(model_dir), adapter=str(sft_dir), data=str(data),
                                  split="test", k=3, limit=8, output=str(out / "localize"), overwrite=True))
    console.print(f"{loc['n_query']} queries: right tile among the {loc['k']} candidates {pc(loc['recall_at_k'], 0)}%, "
                  f"R@1 {pc(loc['R@1_retrieval'], 0)}% by retrieval, {pc(loc['R@1_verified'], 0)}% after "
                  "verification (a tiny random MLLM: the mechanics, not the numbers)")
    paths["localize"] = out / "localize"

    console.rule("[bold]done")
    console.print(f"finished in {time.perf_counter() - t0:.0f}s. Outputs:")
    for name, p in paths.items():
        console.print(f"  {name:9s} {p}")
    return paths
