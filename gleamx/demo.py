"""``gleamx demo``: the whole pipeline on generated data and a tiny model, on a laptop CPU.

Synthetic data -> validation -> ShareGPT export -> tiny Qwen2.5-VL-class model
-> match scoring of the untrained model -> LoRA SFT with the packaged tiny recipe
(``gleamx/recipes/tiny/sft_lora.yaml``, through TRL) -> match scoring of the trained
adapter -> retrieval: a tiny retrieval encoder trained on the same locations ->
localize: its top-3 satellite candidates per test query, verified by the adapter.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from gleamx import recipes
from gleamx.checks import SEED_MAX, check_choice, check_int, check_ranges, field_help
from gleamx.choices import ARCHS, Arch
from gleamx.console import console
from gleamx.errors import GleamConfigError
from gleamx.outputs import claim_folder, overwrite_option

RECIPE = recipes.path("tiny/sft_lora.yaml")  # package data: found in a wheel install as in a checkout


def tiny_recipe_args(model_dir: Path, data: Path, out: Path, seed: int) -> tuple:
    """The tiny recipe parsed exactly as ``recipes/sft.py`` parses it, pointed at the demo's files."""
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe

    parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
    return parse_recipe(parser, ["--config", str(RECIPE), "--model_name_or_path", str(model_dir),
                                 "--dataset_name", str(data), "--output_dir", str(out), "--seed", str(seed),
                                 "--overwrite_output_dir", "true", "--disable_tqdm", "true"])


OUTPUTS_FILE = "demo_outputs.json"
"""Written last, into ``--out``: every stage's path. Its presence says the demo finished (``gleamx app`` reuses
such a folder as its tiny model, adapter, encoder and examples)."""

EVAL_LIMIT = 40
"""Test pairs each MLLM evaluation scores (keeps the demo to CPU minutes)."""


@dataclass
class DemoConfig:
    """What ``gleamx demo`` runs on (``gleamx demo --out DIR --n N --arch ARCH --seed S``)."""

    out: str = field(default="gleamx-demo", metadata={"help": "output directory (default ./gleamx-demo)"})
    n: int = field(default=240, metadata=field_help("number of synthetic pairs", low=1, high=100_000))
    arch: Arch = field(default="qwen2_5_vl", metadata={"help": "Qwen-VL class of the tiny random-initialised model"})
    seed: int = field(default=0, metadata=field_help("seed for the data, the tiny model and both trainings", low=0,
                                                     high=SEED_MAX))
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise GleamConfigError(f"--n: expected a positive number of pairs, got {self.n}")
        check_choice("--arch", self.arch, ARCHS)
        check_int("--seed", self.seed, 0)
        check_ranges(self)


def make_data(cfg: DemoConfig, out: Path) -> Path:
    """Stage 1: the synthetic cross-view dataset."""
    from gleamx.synth import synthesize

    console.rule("[bold]1. synthetic cross-view data")
    data = out / "data"
    summary = synthesize(data, n=cfg.n, seed=cfg.seed)
    by_split = ", ".join(f"{k}={v}" for k, v in summary.by_split.items())
    console.print(f"{summary.n_samples} pairs in {data}  ({by_split})")
    return data


def validate_data(data: Path) -> None:
    """Stage 2: the validator's counts and problems."""
    from gleamx.data import validate

    console.rule("[bold]2. validation")
    report = validate(data)
    console.print(f"{report.n_valid} valid samples, {len(report.problems)} problem(s); "
                  f"views: {dict(report.by_view)}; languages: {dict(report.by_lang)}")
    for p in report.problems[:10]:
        console.print(str(p))


def export_sharegpt(data: Path, out: Path) -> Path:
    """Stage 3: the train split as ShareGPT for LLaMA-Factory."""
    from gleamx.data import load_samples
    from gleamx.prompts import write_sharegpt

    console.rule("[bold]3. ShareGPT / LLaMA-Factory export")
    train = load_samples(data, split="train").samples
    sg = out / "llamafactory" / "gleamx_train.json"
    rows = write_sharegpt(train, sg)
    console.print(f"{rows} conversations -> {sg} (+ dataset_info.json)")
    return sg


def make_model(cfg: DemoConfig, out: Path) -> Path:
    """Stage 4: a tiny random-initialised model of the real class."""
    from gleamx.models import build_tiny_model

    console.rule(f"[bold]4. tiny {cfg.arch} model")
    model_dir = build_tiny_model(cfg.arch, out / "models" / f"tiny-{cfg.arch}", seed=cfg.seed)
    console.print(f"random-initialised {cfg.arch} + processor -> {model_dir}")
    return model_dir


def evaluate(data: Path, model_dir: Path, output: Path, adapter: Path | None = None) -> dict:
    """The label task on the first :data:`EVAL_LIMIT` test pairs."""
    from gleamx.eval.run import EvalConfig, run_eval

    return run_eval(EvalConfig(data=str(data), model=str(model_dir), adapter=str(adapter) if adapter else None,
                               lang="en", task="label", split="test", limit=EVAL_LIMIT, max_new_tokens=8,
                               output=str(output), overwrite=True)).results


def fine_tune(cfg: DemoConfig, data: Path, model_dir: Path, out: Path) -> Path:
    """Stage 6: LoRA SFT with the packaged tiny recipe."""
    from gleamx.train.sft import run_sft

    console.rule("[bold]6. LoRA SFT with the tiny recipe (TRL SFTTrainer, loss on the answer only)")
    sft_dir = run_sft(*tiny_recipe_args(model_dir, data, out / "sft", cfg.seed))
    console.print(f"adapter, processor, model card and loss curve -> {sft_dir}")
    return sft_dir


def compare_evaluations(untrained: dict, tuned: dict) -> None:
    """Stage 7's summary: the untrained model against the fine-tuned adapter."""
    for name, r in (("untrained", untrained), ("fine-tuned", tuned)):
        console.print(f"{name:>10}: accuracy {100 * (r['accuracy'] or 0):.1f}%  positives "
                      f"{100 * (r['accuracy_positive'] or 0):.1f}%  "
                      f"negatives {100 * (r['accuracy_negative'] or 0):.1f}%  "
                      f"invalid {100 * (r['invalid_rate'] or 0):.1f}%")
    console.print("A few LoRA steps on a random model teach the answer format (watch the invalid rate), not the "
                  "match itself; `python benchmark/sft_learns.py` trains the tiny model until it matches (toy level) "
                  "and prints what it measured.")


def train_retriever(cfg: DemoConfig, data: Path, out: Path) -> Path:
    """Stage 8: a tiny retrieval encoder on the same locations."""
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.data import load_retrieval
    from gleamx.console import percent_text as pc  # "-": R@k on a gallery of <= k tiles
    from gleamx.retrieval.train import train_retrieval

    console.rule("[bold]8. retrieval encoder (tiny ConvNeXt, InfoNCE, similarity-sampled negatives)")
    n_train = len(load_retrieval(data, "train").gallery)  # a batch holds one pair per location
    gc_dir = train_retrieval(RetrievalConfig(data=str(data), output_dir=str(out / "retrieval"), encoder="tiny", img_size=64,
                                       epochs=2, batch_size=min(16, n_train), hard_negatives=4, eval_split="test",
                                       seed=cfg.seed, logging_steps=5))
    m = json.loads((gc_dir / "results.json").read_text())
    console.print(f"test split: R@1 {pc(m['R@1'], 1)}%  R@5 {pc(m['R@5'], 1)}%  mAP {pc(m['mAP'], 1)}% "
                  f"over a gallery of {m['n_gallery']} tiles -> {gc_dir}")
    return gc_dir


def localize_test_queries(data: Path, gc_dir: Path, model_dir: Path, sft_dir: Path, out: Path) -> Path:
    """Stage 9: The retrieval encoder's top-3 candidates per test query, verified by the fine-tuned MLLM."""
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.localize import LocalizeConfig, localize
    from gleamx.console import percent_text as pc

    console.rule("[bold]9. localize: top-3 candidates per query, verified by the fine-tuned MLLM")
    k = min(3, len(load_retrieval(data, "test").gallery))  # a small --n can leave fewer test tiles than 3
    loc = localize(LocalizeConfig(encoder=str(gc_dir), model=str(model_dir), adapter=str(sft_dir), data=str(data),
                                  split="test", k=k, limit=8, output=str(out / "localize"), overwrite=True)).results
    among = ("the candidates hold every test tile" if loc["recall_at_k"] is None else
             f"right tile among the {loc['k']} candidates {pc(loc['recall_at_k'], 0)}%")
    console.print(f"{loc['n_query']} queries: {among}, R@1 {pc(loc['R@1_retrieval'], 0)}% by retrieval, {pc(loc['R@1_verified'], 0)}% after "
                  "verification (a tiny random MLLM: the mechanics, not the numbers)")
    return out / "localize"


def untrained_note(invalid_rate: float | None) -> str:
    """What the untrained model's numbers mean: with no verdict line an answer is invalid and counts as wrong."""
    if (invalid_rate or 0) >= 0.5:
        return "a random model writes no verdict line: invalid answers count as wrong"
    return "an untrained model's verdicts are chance"


def run_demo(cfg: DemoConfig) -> dict[str, Path]:
    """Run every stage into ``cfg.out`` and return the paths it wrote. A rerun with the same settings runs again
    in place; other settings need ``overwrite`` (:mod:`gleamx.outputs`)."""
    folder = claim_folder(cfg.out, "--out", command="demo", overwrite=cfg.overwrite, marker=OUTPUTS_FILE,
                          identity={"n": cfg.n, "arch": cfg.arch, "seed": cfg.seed})
    out = folder.path
    t0 = time.perf_counter()
    paths: dict[str, Path] = {}
    paths["data"] = data = make_data(cfg, out)
    validate_data(data)
    paths["sharegpt"] = export_sharegpt(data, out)
    paths["model"] = model_dir = make_model(cfg, out)

    console.rule("[bold]5. evaluation of the untrained model (label task)")
    paths["eval"] = out / "eval" / "untrained"
    untrained = evaluate(data, model_dir, paths["eval"])
    console.print(f"accuracy {100 * (untrained['accuracy'] or 0.0):.1f}% on {untrained['n']} test pairs, invalid "
                  f"answers {100 * (untrained['invalid_rate'] or 0):.1f}% ({untrained_note(untrained['invalid_rate'])})")

    paths["sft"] = sft_dir = fine_tune(cfg, data, model_dir, out)
    console.rule("[bold]7. evaluation of the fine-tuned adapter")
    paths["eval_sft"] = out / "eval" / "sft"
    compare_evaluations(untrained, evaluate(data, model_dir, paths["eval_sft"], adapter=sft_dir))

    paths["retrieval"] = gc_dir = train_retriever(cfg, data, out)
    paths["localize"] = localize_test_queries(data, gc_dir, model_dir, sft_dir, out)

    (out / OUTPUTS_FILE).write_text(json.dumps({k: str(v) for k, v in paths.items()}, indent=2) + "\n",
                                    encoding="utf-8")
    folder.done()
    console.rule("[bold]done")
    console.print(f"finished in {time.perf_counter() - t0:.0f}s. Outputs:")
    for name, p in paths.items():
        console.print(f"  {name:9s} {p}")
    console.print(f"Open {paths['eval_sft'] / 'report.html'} in a browser: the fine-tuned adapter's report, pair by "
                  "pair (untrained: eval/untrained/report.html)", markup=False)
    return paths


def finished_demo(out: str | Path) -> dict[str, Path] | None:
    """The paths a finished demo in ``out`` wrote (its :data:`OUTPUTS_FILE`), or ``None`` if it did not finish."""
    record = Path(out) / OUTPUTS_FILE
    try:
        return {k: Path(v) for k, v in json.loads(record.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        return None
