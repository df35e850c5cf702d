"""The paper's ablation (label-only vs with explanations) as shipped, on its tiny twin: ``gleamx ablation --config
tiny/ablation`` on generated data and the tiny random Qwen2.5-VL model, in this process, and the table it prints.

The tiny model trained 20 steps learns nothing, so the table shows what the command writes (two arms, both
languages, paired intervals, McNemar's test, the "yes" bias), not an effect: both arms answer at the prior or write
no verdict. ``recipes/qwen2.5-vl-3b/ablation.yaml`` is the GPU run the paper's 92.76% vs 90.38% calls for.

    python benchmark/ablation_tiny.py            # 400 samples, the recipe's 16 test samples per language

Figures go to ``benchmark/results/ablation_tiny.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from results import Results  # benchmark/results.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 training steps and 6 samples a language")
    args = ap.parse_args()

    from gleamx.cli.main import main as gleamx
    from gleamx.models import build_tiny_model
    from gleamx.synth import synthesize

    results = Results("ablation_tiny", quick=args.quick, settings={"config": "tiny/ablation"})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthesize(root / "data", n=400, seed=0)
        model = build_tiny_model("qwen2_5_vl", root / "model")
        extra = ["--eval_limit", "6", "--overrides", f"--model_name_or_path {model} --dataset_name {root / 'data'} "
                                                      "--max_steps 4 --save_strategy no"] if args.quick else \
            ["--overrides", f"--model_name_or_path {model} --dataset_name {root / 'data'} --max_steps 20 "
                            "--save_strategy no"]
        print("$ gleamx ablation --config tiny/ablation  (model and data: generated here)", flush=True)
        t0 = time.perf_counter()
        code = gleamx(["ablation", "--config", "tiny/ablation", "--output_dir", str(root / "ablation"), *extra])
        if code:
            raise SystemExit(code)
        seconds = time.perf_counter() - t0
        result = json.loads((root / "ablation" / "compare" / "compare.json").read_text(encoding="utf-8"))
    overall = result["comparisons"][0]["groups"]["all"]
    acc = overall["match"]["accuracy"]
    results.add("n", result["n"], unit="samples", fmt="d", label="samples both arms scored (both languages)")
    results.add("label_accuracy", 100 * acc["a"], unit="%", fmt=".1f", label="label arm: match accuracy")
    results.add("explain_accuracy", 100 * acc["b"], unit="%", fmt=".1f", label="explain arm: match accuracy")
    results.add("accuracy_diff", 100 * acc["diff"], unit="points", fmt="+.1f", label="explain minus label",
                ci=[100 * v for v in acc["ci95"]] if acc["ci95"] else None)
    results.add("mcnemar_p", overall["mcnemar"]["p_value"], unit="", fmt=".3f", label="McNemar's exact p")
    results.add("seconds", seconds, unit="s", fmt=".0f", label="the whole ablation: two trainings, two evals, compare")
    results.write()


if __name__ == "__main__":
    main()
