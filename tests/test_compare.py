"""gleamx compare: paired differences, McNemar's test and the "no match" bias, checked against independent
implementations; runs over other data refused; --lang en,zh in one run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from gleamx.errors import GleamDataError
from gleamx.eval.match import match_metrics
from gleamx.eval.stats import mcnemar_exact, paired_bootstrap_match, yes_rate_bias


@pytest.mark.parametrize("a_only,b_only,agree", [(0, 0, 5), (3, 0, 10), (7, 2, 30), (40, 61, 100), (300, 250, 7)])
def test_mcnemar_exact_equals_scipys_binomial_test(a_only, b_only, agree):
    from scipy.stats import binomtest

    a = [True] * a_only + [False] * b_only + [True] * agree
    b = [False] * a_only + [True] * b_only + [True] * agree
    got = mcnemar_exact(a, b)
    assert (got["a_only"], got["b_only"], got["n_discordant"]) == (a_only, b_only, a_only + b_only)
    want = 1.0 if a_only + b_only == 0 else binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue
    assert got["p_value"] == pytest.approx(want, rel=1e-9)


def test_paired_bootstrap_equals_a_hand_bootstrap_over_match_metrics():
    """Same seed, same draws; each resample scored by ``match_metrics`` (the eval's own, loop-based metric), not
    by the vectorised code under test."""
    rng = random.Random(3)
    labels = [rng.random() < 0.4 for _ in range(60)]
    pred_a = [rng.choice([True, False, None]) for _ in labels]
    pred_b = [y if rng.random() < 0.8 else (not y) for y in labels]
    got = paired_bootstrap_match(labels, pred_a, pred_b, n_resamples=300, seed=11)
    idx = np.random.default_rng(11).integers(0, len(labels), size=(300, len(labels)))
    for name in ("accuracy", "f1"):
        diffs = []
        for row in idx:
            ma = match_metrics([labels[i] for i in row], [pred_a[i] for i in row])
            mb = match_metrics([labels[i] for i in row], [pred_b[i] for i in row])
            if ma[name] is not None and mb[name] is not None:
                diffs.append(mb[name] - ma[name])
        whole = match_metrics(labels, pred_b)[name] - match_metrics(labels, pred_a)[name]
        assert got[name]["diff"] == pytest.approx(whole)
        assert got[name]["ci95"] == pytest.approx([np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)])
    bias = yes_rate_bias(labels, pred_a, n_resamples=300, seed=11)
    assert bias["yes_rate"] == pytest.approx(sum(p is True for p in pred_a) / len(labels))
    assert bias["bias"] == pytest.approx(bias["yes_rate"] - sum(labels) / len(labels))


# --- whole runs --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("compare_data")
    synthesize(root / "data", n=400, seed=5)
    return root / "data"


def _scored_run(data: Path, out: Path, answer, *, task: str = "label", limit: int | None = None) -> Path:
    """An eval of a predictions file whose answer for each sample is ``answer(sample)``."""
    from gleamx.data import load_samples
    from gleamx.eval.run import EvalConfig, run_eval

    samples = load_samples(data, split="test").samples
    preds = out.with_suffix(".jsonl")
    preds.parent.mkdir(parents=True, exist_ok=True)
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": answer(s)}, ensure_ascii=False) + "\n"
                             for s in samples), encoding="utf-8")
    run_eval(EvalConfig(data=str(data), predictions=str(preds), task=task, output=str(out), limit=limit, bootstrap=0))
    return out


def _biased(s) -> str:  # the untuned model: "no" to nearly everything
    return "Answer: Yes" if s.label and s.id.endswith(("0", "5")) else "Answer: No"


def _good(s) -> str:  # right but on every seventh sample
    right = int(s.id.rsplit("-", 1)[-1]) % 7 != 3
    return "Answer: Yes" if s.label == right else "Answer: No"


def test_compare_two_runs_in_process(data, tmp_path, gleamx_cli):
    base = _scored_run(data, tmp_path / "base", _biased)
    tuned = _scored_run(data, tmp_path / "tuned", _good)
    out = tmp_path / "cmp"
    r = gleamx_cli("compare", str(base), str(tuned), "--names", "base,tuned", "--output", str(out),
                   "--bootstrap", "500")
    assert r.returncode == 0, r.stdout
    assert "tuned vs base: match verdicts" in r.stdout and "McNemar" in r.stdout
    result = json.loads((out / "compare.json").read_text())
    rows = {k: [json.loads(x) for x in (d / "per_sample.jsonl").read_text().splitlines()]
            for k, d in (("a", base), ("b", tuned))}
    labels = [x["label"] for x in rows["a"]]
    right = {k: [x["verdict"] == x["label"] for x in v] for k, v in rows.items()}
    res_a, res_b = (json.loads((d / "results.json").read_text()) for d in (base, tuned))
    overall = result["comparisons"][0]["groups"]["all"]
    assert overall["n"] == res_a["n"] == len(labels)
    assert overall["match"]["accuracy"]["diff"] == pytest.approx(res_b["accuracy"] - res_a["accuracy"])
    assert overall["match"]["f1"]["diff"] == pytest.approx(res_b["f1"] - res_a["f1"])
    lo, hi = overall["match"]["accuracy"]["ci95"]
    assert lo <= overall["match"]["accuracy"]["diff"] <= hi and lo > 0  # a clear gain
    assert overall["mcnemar"]["a_only"] == sum(a and not b for a, b in zip(right["a"], right["b"]))
    assert overall["mcnemar"]["b_only"] == sum(b and not a for a, b in zip(right["a"], right["b"]))
    assert overall["mcnemar"]["p_value"] < 0.05
    groups = result["comparisons"][0]["groups"]
    assert {"view=uav", "view=ground", "label=match", "label=no match"} <= set(groups)
    assert sum(groups[g]["n"] for g in groups if g.startswith("view=")) == len(labels)
    # the base model's lean to "no match", with an interval that excludes no lean
    bias = result["bias"]["base"]["all"]
    assert bias["label_rate"] == pytest.approx(sum(labels) / len(labels))
    assert bias["bias"] < 0 and bias["bias_ci95"][1] < 0
    page = (out / "compare.html").read_text()
    assert page.count("<table>") == 2 and "<script" not in page  # match verdicts and bias (label task: no scores)
    assert "| all |" in (out / "compare.md").read_text()
    # the same command again writes again; another output rule is the shared one (gleamx.outputs)
    assert gleamx_cli("compare", str(base), str(tuned), "--names", "base,tuned", "--output", str(out),
                      "--bootstrap", "500").returncode == 0


@pytest.mark.slow  # two explanation scorings (sentence embeddings): 15 s
def test_explanation_scores_are_compared_sample_by_sample(data, tmp_path):
    from gleamx.eval.compare import CompareConfig, run_compare

    def reference(s) -> str:
        return s.explanation["en"]

    def vague(s) -> str:
        return "The images are hard to read.\nAnswer: " + ("Yes" if s.label else "No")

    good = _scored_run(data, tmp_path / "ref", reference, task="explain", limit=12)
    bad = _scored_run(data, tmp_path / "vague", vague, task="explain", limit=12)
    result = run_compare(CompareConfig(runs=[str(good), str(bad)], bootstrap=200)).result
    expl = result["comparisons"][0]["groups"]["all"]["explanation"]
    assert {"sbert_cosine", "chrf", "rouge_l"} <= set(expl)
    for metric in ("sbert_cosine", "chrf", "rouge_l"):
        assert expl[metric]["diff"] < 0 and expl[metric]["ci95"][1] < 0, metric
    # the per-sample mean of the copied references is a perfect score
    assert expl["chrf"]["a"] == pytest.approx(100.0) and expl["sbert_cosine"]["a"] == pytest.approx(1.0, abs=1e-4)
    assert result["comparisons"][0]["groups"]["all"]["match"]["accuracy"]["diff"] == 0.0


def test_other_data_is_refused_and_a_subset_needs_intersect(data, tmp_path, gleamx_cli):
    import shutil

    from PIL import Image, ImageOps

    from gleamx.data import load_samples

    base = _scored_run(data, tmp_path / "base", _biased)
    other_data = tmp_path / "other"
    shutil.copytree(data, other_data)
    image = Path(load_samples(other_data, split="test").samples[3].query_image)
    ImageOps.invert(Image.open(image).convert("RGB")).save(image)  # the same id over another image
    other = _scored_run(other_data, tmp_path / "other_run", _biased)
    r = gleamx_cli("compare", str(base), str(other))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "is not the one" in r.stderr and "same data" in r.stderr
    part = _scored_run(data, tmp_path / "part", _good, limit=5)
    r = gleamx_cli("compare", str(base), str(part))
    assert r.returncode != 0 and "--intersect" in r.stderr and "only in base" in r.stderr
    r = gleamx_cli("compare", str(base), str(part), "--intersect")
    assert r.returncode == 0 and "comparing the samples every run scored" in r.stdout
    from gleamx.eval.compare import CompareConfig, compare

    assert compare(CompareConfig(runs=[str(base), str(part)], intersect=True))["n"] == 5
    with pytest.raises(GleamDataError, match="per_sample.jsonl"):
        compare(CompareConfig(runs=[str(base), str(tmp_path)]))


def test_both_languages_in_one_run_and_compared_by_language(data, tmp_path, models_tiny_dir, gleamx_cli):
    from gleamx.cli.eval import main as gleamx_eval

    out = tmp_path / "both"
    args = ["--model", str(models_tiny_dir("qwen2_5_vl")), "--data", str(data), "--lang", "en,zh", "--task", "label",
            "--max-new-tokens", "4", "--limit", "6", "--bootstrap", "0", "--output", str(out)]
    r = gleamx_cli(*args, entry=gleamx_eval)
    assert r.returncode == 0, r.stdout
    assert "[en]" in r.stdout and "[zh]" in r.stdout and "side by side" in r.stdout
    for lang in ("en", "zh"):
        sub = json.loads((out / lang / "results.json").read_text())
        assert sub["n"] == 6 and sub["config"]["lang"] == lang
    combined = json.loads((out / "results.json").read_text())
    assert combined["langs"] == ["en", "zh"] and set(combined["by_lang"]) == {"en", "zh"}
    md = (out / "results.md").read_text()
    assert "| | en | zh |" in md.replace("|  |", "| |") and "| n | 6 | 6 |" in md
    assert "en/report.html" in (out / "report.html").read_text()
    # a rerun generates nothing again and gives the same tables
    before = (out / "en" / "predictions.jsonl").read_text()
    assert gleamx_cli(*args, entry=gleamx_eval).returncode == 0
    assert (out / "en" / "predictions.jsonl").read_text() == before
    from gleamx.eval.compare import CompareConfig, compare

    result = compare(CompareConfig(runs=[str(out), str(out)], names=["a", "b"], bootstrap=100))
    groups = result["comparisons"][0]["groups"]
    assert result["n"] == 12 and groups["lang=en"]["n"] == groups["lang=zh"]["n"] == 6
    assert groups["all"]["match"]["accuracy"]["diff"] == 0 and groups["all"]["mcnemar"]["p_value"] == 1.0
