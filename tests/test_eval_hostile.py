"""gleamx-eval, its judge and retrieval eval against hostile inputs: nothing lost, nothing stale.

Every case either gets a correct result or one ``error: ...`` line naming the flag/file/line/field and
what was expected: never a traceback, never silence.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gleamx.errors import GleamConfigError, GleamDataError, GleamModelError
from gleamx.outputs import RECORD

from test_judge import _key, good, stub  # noqa: F401  (tests/test_judge.py's loopback judge stub and key fixture)

ARCH = "qwen2_5_vl"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# --- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("hostile_data")
    synthesize(root / "data", n=48, seed=3)
    return root / "data"


@pytest.fixture(scope="module")
def model(models_tiny_dir) -> Path:
    return models_tiny_dir(ARCH)


def _cfg(data: Path, out: Path, **kw):
    from gleamx.eval.run import EvalConfig

    base = dict(data=str(data), split="test", task="label", max_new_tokens=2, batch_size=2, limit=4, bootstrap=0,
                output=str(out))
    return EvalConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def straight(data, model, tmp_path_factory) -> Path:
    """An uninterrupted model eval (4 samples, batches of 2) that other tests copy and damage."""
    from gleamx.eval.run import run_eval

    out = tmp_path_factory.mktemp("hostile_straight") / "out"
    run_eval(_cfg(data, out, model=str(model)))
    return out


def _save_adapter(model_dir: Path, out: Path, seed: int = 0, *, merger: bool = True) -> Path:
    """A LoRA adapter (non-zero B) saved with peft, as a training run would leave it."""
    import torch
    from peft import LoraConfig, get_peft_model

    from gleamx.models import load_model_and_processor

    base = load_model_and_processor(model_dir, dtype="float32", with_processor=False)[0]
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False,
                        modules_to_save=["merger"] if merger else None)
    get_peft_model(base, config).save_pretrained(out)
    return out


def _results(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    r.pop("config")
    return r


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines() if x]


def _one_error_line(err: str) -> str:
    """The one ``error: ...`` line of a failed command (library progress bars aside), with no traceback."""
    lines = [x for x in err.replace("\r", "\n").splitlines()
             if x.strip() and not x.startswith(("Loading weights", "Writing model shards"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- 1. caches know what made them ---------------------------------------------------------------------------


def test_directory_fingerprint_sees_contents(tmp_path):
    from safetensors.torch import save_file
    import torch

    from gleamx.eval.fingerprint import directory_fingerprint, model_fingerprint

    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text('{"a": 1}')
    save_file({"w": torch.zeros(2)}, d / "model.safetensors")
    fp = directory_fingerprint(d)
    assert directory_fingerprint(d) == fp and model_fingerprint(d) == "dir:" + fp
    (d / "notes.txt").write_text("not part of the model")
    assert directory_fingerprint(d) == fp
    save_file({"w": torch.ones(2)}, d / "model.safetensors")  # rewritten (same header, new mtime)
    assert directory_fingerprint(d) != fp
    fp = directory_fingerprint(d)
    (d / "config.json").write_text('{"a": 2}')
    assert directory_fingerprint(d) != fp
    assert model_fingerprint(None) is None


@pytest.mark.slow
def test_retrained_adapter_is_refused_not_reused(data, model, tmp_path, capsys):
    """Eval with --adapter A, retrain into A, eval again into the same --output: refused in one line."""
    from gleamx.cli.eval import main

    adapter = _save_adapter(model, tmp_path / "a", seed=0)
    out = tmp_path / "eval"
    argv = ["--model", str(model), "--adapter", str(adapter), "--data", str(data), "--task", "label",
            "--max-new-tokens", "2", "--limit", "2", "--bootstrap", "0", "--output", str(out)]
    assert main(argv) == 0
    first_key = _rows(out)[0]["config"]
    time.sleep(0.01)
    _save_adapter(model, adapter, seed=1)  # "retrained" into the same directory
    capsys.readouterr()
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--adapter {adapter}: its files changed since" in line and "--overwrite" in line
    assert main([*argv, "--overwrite"]) == 0
    rows = _rows(out)
    assert len(rows) == 2 and all(r["config"] != first_key for r in rows)  # nothing of the old adapter kept


def test_changed_data_under_the_same_ids_regenerates_only_those_rows(data, model, straight, tmp_path, capsys):
    from gleamx.data import load_samples
    from gleamx.eval.run import run_eval

    out = tmp_path / "out"
    shutil.copytree(straight, out)
    other = tmp_path / "data2"
    shutil.copytree(data, other)
    samples = load_samples(other, split="test").samples[:4]
    changed = Path(samples[1].satellite_image)  # a satellite tile: may be shared by other pairs
    from PIL import Image

    with Image.open(changed) as im:
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed)
    hit = {s.id for s in samples if changed in (Path(s.query_image), Path(s.satellite_image))}
    before = len(_rows(out))
    capsys.readouterr()
    run_eval(_cfg(other, out, model=str(model)))
    assert f"note: {len(hit)} sample(s) changed" in capsys.readouterr().out
    new_rows = _rows(out)[before:]
    assert {r["id"] for r in new_rows} == hit and len(new_rows) == len(hit)
    # and the answers are those of a fresh run on the new data
    fresh = tmp_path / "fresh"
    run_eval(_cfg(other, fresh, model=str(model)))
    assert {r["id"]: r["prediction"] for r in _rows(fresh)} == {r["id"]: r["prediction"] for r in _rows(out)}


def test_judge_cache_key_covers_reference_view_and_images(stub, tmp_path):
    from PIL import Image

    from gleamx.eval.judge import JudgeConfig, JudgeItem, cache_key, judge_explanations

    s, url = stub()
    cfg = JudgeConfig(model="judge", base_url=url, api_key_env="GLEAMX_TEST_JUDGE_KEY", timeout=5)
    item = JudgeItem("a", "en", True, "cand\nAnswer: Yes", "ref\nAnswer: Yes", "uav")
    base = cache_key(item, cfg)
    assert cache_key(JudgeItem("a", "en", True, "cand\nAnswer: Yes", "ref 2\nAnswer: Yes", "uav"), cfg) != base
    assert cache_key(JudgeItem("a", "en", True, "cand\nAnswer: Yes", "ref\nAnswer: Yes", "ground"), cfg) != base
    assert cache_key(JudgeItem("a", "en", False, "cand\nAnswer: Yes", "ref\nAnswer: Yes", "uav"), cfg) != base
    assert cache_key(item, JudgeConfig(**{**cfg.__dict__, "model": "judge-2"})) != base
    for name, colour in (("q", (1, 2, 3)), ("s", (4, 5, 6))):
        Image.new("RGB", (8, 8), colour).save(tmp_path / f"{name}.png")
    with_images = JudgeConfig(**{**cfg.__dict__, "include_images": True})
    pic = JudgeItem("a", "en", True, "c", "r", "uav", str(tmp_path / "q.png"), str(tmp_path / "s.png"))
    k1 = cache_key(pic, with_images)
    Image.new("RGB", (8, 8), (9, 9, 9)).save(tmp_path / "s.png")
    assert cache_key(pic, with_images) != k1  # the judge sees the image, so its bytes are in the key
    cache = tmp_path / "judge.jsonl"
    judge_explanations([item], cfg, cache)
    judge_explanations([JudgeItem("a", "en", True, "cand\nAnswer: Yes", "new ref\nAnswer: Yes", "uav")], cfg, cache)
    judge_explanations([item], cfg, cache)
    assert sum(s.counts.values()) == 2  # the edited reference was judged again; the original was cached


# --- 2. numbers checked at parse time ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value", [
    ("--limit", "-1"), ("--limit", "0"), ("--batch-size", "0"), ("--max-new-tokens", "0"), ("--bootstrap", "-1"),
    ("--judge-concurrency", "0"), ("--judge-timeout", "0"), ("--judge-timeout", "nan"), ("--judge-max-retries", "-1"),
    ("--min-pixels", "0"), ("--max-pixels", "-5"), ("--repetition-penalty", "0"), ("--repetition-penalty", "x"),
])
def test_eval_number_flags_are_checked_at_parse_time(flag, value, capsys):
    from gleamx.cli.eval import main

    line = _bad_flag_line(main, ["--model", "m", "--data", "d", "--output", "o", flag, value], capsys)
    assert flag in line and value in line and ("expected" in line or "invalid float value" in line), line


def _bad_flag_line(main, argv: list[str], capsys) -> str:
    """Exit code 2 and the one error line, whether argparse refused the text (not a number) or the config's
    checks refused the value."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    return _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("command, flag, value", [
    ("localize", "--k", "0"), ("localize", "--limit", "-1"), ("localize", "--batch-size", "0"),
    ("localize", "--max-new-tokens", "0"), ("localize", "--repetition-penalty", "-1"), ("localize", "--max-pixels", "0"),
    ("retrieval eval", "--batch-size", "0"), ("retrieval eval", "--img-size", "0"),
    ("retrieval eval", "--num-workers", "-1"), ("retrieval eval", "--ks", "1,0"),
])
def test_localize_and_retrieval_number_flags(command, flag, value, capsys):
    from gleamx.cli.main import main

    required = ["--encoder", "tiny", "--data", "d", "--output", "o"] + (["--model", "m"] if command == "localize" else [])
    line = _bad_flag_line(main, [*command.split(), *required, flag, value], capsys)
    assert line.startswith(f"error: {flag}: expected") and value in line


def test_api_callers_get_the_same_bounds(data, tmp_path):
    from gleamx.eval.run import run_eval

    for kw, flag in ((dict(limit=0), "--limit"), (dict(limit=-1), "--limit"), (dict(batch_size=0), "--batch-size"),
                     (dict(bootstrap=-2), "--bootstrap"), (dict(judge_timeout=0), "--judge-timeout")):
        with pytest.raises(GleamConfigError, match=f"^{flag}: expected"):
            run_eval(_cfg(data, tmp_path / "o", predictions=str(tmp_path / "p.jsonl"), **kw))


def test_limit_one_takes_exactly_the_first_sample(data, tmp_path):
    from gleamx.data import load_samples
    from gleamx.eval.run import run_eval

    samples = load_samples(data, split="test").samples
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": "Answer: Yes"}) + "\n" for s in samples))
    assert run_eval(_cfg(data, tmp_path / "o", predictions=str(preds), limit=1)).results["n"] == 1
    assert run_eval(_cfg(data, tmp_path / "o", predictions=str(preds), limit=None)).results["n"] == len(samples)


# --- 3. a predictions file with duplicates or bad P(yes) ----------------------------------------------------------


@pytest.mark.parametrize("p_yes, shown", [(7.5, "7.5"), ("high", '"high"'), (True, "true"), (-0.1, "-0.1"),
                                          ("NaN", "NaN")])
def test_bad_p_yes_is_one_line(data, tmp_path, p_yes, shown, capsys):
    from gleamx.cli.eval import main
    from gleamx.data import load_samples

    samples = load_samples(data, split="test").samples[:3]
    rows = [json.dumps({"id": s.id, "prediction": "Answer: No", "p_yes": 0.25}) for s in samples]
    rows[2] = rows[2].replace("0.25", shown if p_yes == "NaN" else json.dumps(p_yes))
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(rows) + "\n")
    assert main(["--predictions", str(preds), "--data", str(data), "--task", "label", "--limit", "3",
                 "--output", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line == f"error: {preds}:3: p_yes: expected a probability in [0, 1] or null, got {shown}"


def test_duplicate_id_in_predictions_is_one_line(data, tmp_path, capsys):
    from gleamx.cli.eval import main
    from gleamx.data import load_samples

    samples = load_samples(data, split="test").samples[:2]
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": "Answer: Yes", "p_yes": None}) + "\n"
                             for s in [samples[0], samples[1], samples[0]]))
    assert main(["--predictions", str(preds), "--data", str(data), "--task", "label", "--output",
                 str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {preds}:3: id: duplicate id {samples[0].id!r} (first on line 1)")
    preds.write_bytes(b'{"id": "a", "prediction": "\xe4\xb8"}\n')  # not UTF-8
    with pytest.raises(GleamDataError, match=r"p.jsonl:1: encoding: invalid UTF-8 at byte \d+ of the file .*; expected UTF-8 text"):
        from gleamx.eval.run import read_predictions

        read_predictions(preds)


# --- 4. one directory, one mode and config ----------------------------------------------------------------------


def test_predictions_eval_does_not_overwrite_a_model_eval(data, model, straight, tmp_path, capsys):
    from gleamx.cli.eval import main
    from gleamx.data import load_samples

    out = tmp_path / "out"
    shutil.copytree(straight, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in (".lock", RECORD)}
    samples = load_samples(data, split="test").samples
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": "Answer: Yes"}) + "\n" for s in samples))
    argv = ["--predictions", str(preds), "--data", str(data), "--task", "label", "--bootstrap", "0",
            "--output", str(out)]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "holds the results of a model eval (--model" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name not in (".lock", RECORD)} == before
    assert main([*argv, "--overwrite"]) == 0
    record = json.loads((out / "eval_config.json").read_text())
    assert record["mode"] == "predictions" and not (out / "predictions.jsonl").exists()
    # another predictions config, and a model eval, into the predictions eval's directory: refused too
    assert main([*argv[:-2], "--lang", "zh", "--output", str(out)]) == 2
    assert "different config" in _one_error_line(capsys.readouterr().err)
    assert main(["--model", str(model), "--data", str(data), "--task", "label", "--limit", "2",
                 "--max-new-tokens", "2", "--bootstrap", "0", "--output", str(out)]) == 2
    assert "holds the results of a predictions eval (--predictions" in _one_error_line(capsys.readouterr().err)
    assert main(argv) == 0  # the same predictions eval again is fine


def test_results_without_a_record_are_not_overwritten(data, tmp_path):
    from gleamx.eval.run import run_eval

    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    preds = tmp_path / "p.jsonl"
    preds.write_text("")
    with pytest.raises(GleamConfigError, match=r"holds files gleamx did not write \(e.g. results.json\); choose "
                                               r"another --output"):
        run_eval(_cfg(data, out, predictions=str(preds)))


# --- 5. a judge that answers junk or hangs ---------------------------------------------------------------------


def _explain_preds(data: Path, tmp_path: Path, n: int = 3) -> Path:
    from gleamx.data import load_samples

    samples = load_samples(data, split="test").samples[:n]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": s.explanation["en"]}) + "\n" for s in samples))
    return preds


@pytest.mark.slow
def test_judge_non_json_body_is_an_item_failure_and_results_are_written(data, stub, raw_bodies, tmp_path, capsys):
    """HTTP 200 with an HTML page (one item) and with a broken JSON body (another), on every try: both counted as
    judge failures in one warning line; results.json is written; a rerun asks only for those two again."""
    from gleamx.eval.run import run_eval

    preds = _explain_preds(data, tmp_path)
    bad = {}

    def reply(cand: str, n: int):
        if not bad:
            bad["html"] = cand
        elif len(bad) == 1 and cand != bad["html"]:
            bad["json"] = cand
        if cand == bad.get("html"):
            return 200, {"Content-Type": "text/html"}, "<html>502 Bad Gateway</html>"
        if cand == bad.get("json"):
            return 200, {}, RawBody(b'{"id": "chatcmpl-1", "choices": [')
        return good(cand, n)

    s, url = stub(reply)
    cfg = _cfg(data, tmp_path / "o", predictions=str(preds), task="explain", limit=3, judge_model="judge",
               judge_base_url=url, judge_api_key_env="GLEAMX_TEST_JUDGE_KEY", judge_concurrency=1,
               judge_max_retries=1)
    results = run_eval(cfg).results
    judge = results["explanation"]["judge"]
    assert (judge["n"], judge["n_invalid"], judge["n_failed"]) == (3, 2, 2)
    out = capsys.readouterr().out
    warnings = [x for x in out.splitlines() if x.startswith("warning: judge:")]
    assert len(warnings) == 1 and "2 of 3 explanation(s) got no valid judgment (2 server failure(s)" in warnings[0]
    assert (tmp_path / "o" / "results.json").is_file()
    s.counts.clear()
    run_eval(cfg)
    assert sum(s.counts.values()) == 4  # the failures were not cached (a try and a retry each); the good one was


class RawBody(bytes):
    """A stub payload sent as these exact bytes (not JSON-encoded)."""


@pytest.fixture
def raw_bodies(monkeypatch):
    """Let the test_judge stub send a :class:`RawBody` as is (a broken JSON body with a JSON content type)."""
    import test_judge

    real = test_judge.json.dumps

    class _Json:
        def __getattr__(self, name):
            return getattr(json, name)

        @staticmethod
        def dumps(obj, *a, **kw):
            return obj.decode() if isinstance(obj, RawBody) else real(obj, *a, **kw)

    monkeypatch.setattr(test_judge, "json", _Json())


def test_judge_broken_bodies_do_not_raise(stub, raw_bodies, tmp_path):
    from gleamx.eval.judge import JudgeConfig, JudgeItem, judge_explanations, read_judge_cache

    _, url = stub(lambda c, n: (200, {}, RawBody(b"<html>not json</html>")) if c.startswith("c0")
                  else (200, {"Content-Type": "text/plain"}, "plain text") if c.startswith("c1") else good(c, n))
    items = [JudgeItem(f"s{i}", "en", True, f"c{i}\nAnswer: Yes", "ref\nAnswer: Yes", "uav") for i in range(3)]
    cfg = JudgeConfig(model="judge", base_url=url, api_key_env="GLEAMX_TEST_JUDGE_KEY", timeout=5, max_retries=1)
    summary = judge_explanations(items, cfg, tmp_path / "judge.jsonl")
    assert (summary.n_invalid, summary.n_failed) == (2, 2)
    assert all("HTTP 200 whose body is not a chat completion" in (r.error or "") for r in summary.results[:2])
    assert [k[0] for k in read_judge_cache(tmp_path / "judge.jsonl")] == ["s2"]


def test_hanging_judge_fails_within_seconds_with_flags(stub, tmp_path):
    """--judge-timeout 1 --judge-max-retries 1 against a stub that never answers in time: one line, fast."""
    from gleamx.eval.judge import JudgeConfig, JudgeItem, JudgeUnavailableError, judge_explanations

    s, url = stub(lambda c, n: (200, {}, 30.0))  # "sleep 30 s, then answer" (a good answer: see _hang)

    # Without the 1 s timeout the client would wait out the 30 s and get a valid judgment: no error at all.
    with pytest.raises(JudgeUnavailableError, match=r"failed 2 times \(timeout after 1 s; see --judge-timeout\)"):
        judge_explanations([JudgeItem("s0", "en", True, "c\nAnswer: Yes", "r\nAnswer: Yes", "uav")],
                           JudgeConfig(model="judge", base_url=url, api_key_env="GLEAMX_TEST_JUDGE_KEY",
                                       timeout=1.0, max_retries=1), tmp_path / "judge.jsonl")
    assert sum(s.counts.values()) == 2  # one try and --judge-max-retries 1: no retry storm
    from gleamx.cli.main import parse_command

    cfg = parse_command("eval", ["--predictions", "p", "--data", "d", "--output", "o", "--judge-timeout", "1",
                                 "--judge-max-retries", "1"])
    assert (cfg.judge_timeout, cfg.judge_max_retries) == (1.0, 1)


@pytest.mark.slow
def test_hanging_judge_through_gleamx_eval(data, stub, tmp_path, capsys):
    from gleamx.cli.eval import main

    preds = _explain_preds(data, tmp_path, n=1)
    s, url = stub(lambda c, n: (200, {}, 30.0))
    code = main(["--predictions", str(preds), "--data", str(data), "--task", "explain", "--limit", "1",
                 "--bootstrap", "0", "--judge-model", "judge", "--judge-base-url", url,
                 "--judge-api-key-env", "GLEAMX_TEST_JUDGE_KEY", "--judge-timeout", "1", "--judge-max-retries", "1",
                 "--output", str(tmp_path / "o")])
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "timeout after 1 s; see --judge-timeout" in line and "--judge-max-retries: 1" in line
    assert sum(s.counts.values()) == 2  # the flags reached the client: one try, one retry, each cut at 1 s


# --- 6. an adapter of another architecture ------------------------------------------------------------------------


@pytest.mark.slow
def test_adapter_of_another_arch_is_one_line(models_tiny_dir, data, tmp_path, capsys):
    from gleamx.cli.eval import main

    for trained_on, applied_to in (("qwen2_5_vl", "qwen2_vl"), ("qwen2_vl", "qwen2_5_vl")):
        adapter = _save_adapter(models_tiny_dir(trained_on), tmp_path / f"a_{trained_on}")
        code = main(["--model", str(models_tiny_dir(applied_to)), "--adapter", str(adapter), "--data", str(data),
                     "--task", "label", "--limit", "1", "--max-new-tokens", "2", "--output",
                     str(tmp_path / f"o_{trained_on}")])
        captured = capsys.readouterr()
        assert code == 2, captured.out[-2000:]
        line = _one_error_line(captured.err)
        assert line.startswith(f"error: --adapter {adapter}: ") and "KeyError" not in line
        assert "match the model" in line or "does not fit" in line or "missing e.g." in line


def test_load_adapter_refuses_another_arch_in_one_line(models_tiny_dir, tmp_path):
    from gleamx.models import load_model_and_processor
    from gleamx.models.adapter import load_adapter

    adapter = _save_adapter(models_tiny_dir("qwen2_5_vl"), tmp_path / "a")
    other = load_model_and_processor(models_tiny_dir("qwen2_vl"), dtype="float32", with_processor=False)[0]
    with pytest.raises(GleamModelError) as e:
        load_adapter(other, adapter)
    assert str(e.value).startswith(f"--adapter {adapter}: ") and "\n" not in str(e.value)


# --- 7. Retrieval encoder: recall on a gallery too small for k --------------------------------------------------------------


def test_retrieval_eval_nulls_recall_the_gallery_cannot_test(data, tmp_path, capsys):
    from gleamx.cli.main import main
    from gleamx.retrieval.data import load_retrieval

    n_gallery = len(load_retrieval(data, "test").gallery)
    assert n_gallery < 10
    assert main(["retrieval", "eval", "--encoder", "tiny", "--img-size", "32", "--num-workers", "0", "--data",
                 str(data), "--output", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "r" / "retrieval_results.json").read_text())
    assert m["R@10"] is None and all(v["R@10"] is None for v in m["by_view"].values())
    assert (m["R@5"] is None) == (n_gallery <= 5) and m["R@1"] is not None
    assert any(n.startswith("R@") and "not reported (null)" in n for n in m["notes"])
    assert "note: " in out and "R@10 -" in out
    # a k named by the user that the gallery cannot test is an error
    assert main(["retrieval", "eval", "--encoder", "tiny", "--img-size", "32", "--num-workers", "0", "--data",
                 str(data), "--ks", f"1,{n_gallery}", "--output", str(tmp_path / "r2")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: --ks: R@{n_gallery} needs a gallery of more than {n_gallery} tiles")


def test_trivial_recalls_and_percent_cutoff():
    from gleamx.retrieval.evaluate import trivial_recalls

    assert trivial_recalls(1000) == ([], [])
    names, notes = trivial_recalls(7)
    assert names == ["R@10"] and "top 1 (= R@1)" in notes[-1]
    names, _ = trivial_recalls(1)
    assert names == ["R@1", "R@5", "R@10", "R@1%"]
    names, notes = trivial_recalls(100, percent=50)
    assert names == [] and notes == []


def test_localize_k_above_the_gallery(data, model, tmp_path, capsys):
    from gleamx.cli.main import main

    assert main(["localize", "--encoder", "tiny", "--model", str(model), "--data", str(data), "--k", "50",
                 "--output", str(tmp_path / "l")]) == 2
    assert "error: --k: expected at most the gallery's" in _one_error_line(capsys.readouterr().err)


# --- 8. one writer per directory ------------------------------------------------------------------------------------


_HOLDER = """
import sys, time
from gleamx.eval.appendlog import single_writer
with single_writer(sys.argv[1]):
    print("ready", flush=True)
    time.sleep(120)
"""


def test_second_writer_fails_at_once_and_a_killed_holder_frees_the_lock(data, tmp_path):
    from gleamx.data import load_samples
    from gleamx.eval.run import run_eval

    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        samples = load_samples(data, split="test").samples
        preds = tmp_path / "p.jsonl"
        preds.write_text("".join(json.dumps({"id": s.id, "prediction": "Answer: No"}) + "\n" for s in samples))
        with pytest.raises(GleamConfigError) as e:  # refused, not queued: the holder never lets go
            run_eval(_cfg(data, out, predictions=str(preds)))
        assert str(e.value) == (f"{out}: another gleamx-eval is writing here (pid {holder.pid}); "
                                "wait for it or use another --output")
        assert not (out / "results.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the dead holder's lock
    assert run_eval(_cfg(data, out, predictions=str(preds))).results["n"] == 4


def _locked_elsewhere(directory: Path) -> bool:
    """Whether another holder (a new open file description: what a second process has) is refused the lock."""
    import fcntl

    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def test_lock_nests_within_one_process(tmp_path):
    """gleamx-eval holds OUTPUT and its judge asks again: the inner hold succeeds, and leaving it keeps the
    outer hold (a second writer is still refused) until the outer block ends."""
    from gleamx.eval.appendlog import single_writer

    assert not _locked_elsewhere(tmp_path)
    with single_writer(tmp_path):
        assert _locked_elsewhere(tmp_path)
        with single_writer(tmp_path):
            assert _locked_elsewhere(tmp_path)
        assert _locked_elsewhere(tmp_path)  # the inner exit did not release the outer hold
    assert not _locked_elsewhere(tmp_path)
    with single_writer(tmp_path):  # taken again after release
        assert _locked_elsewhere(tmp_path)


@pytest.mark.slow
def test_two_identical_evals_at_once_write_every_id_once(data, model, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "o"
    # the train split, one sample per batch, long answers: the first run is still generating when the second starts
    cmd = [sys.executable, "-m", "gleamx.cli.eval", "--model", str(model), "--data", str(data), "--split", "train",
           "--task", "label", "--max-new-tokens", "64", "--batch-size", "1", "--bootstrap", "0", "--output", str(out)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "predictions.jsonl").is_file():
            time.sleep(0.05)
        assert first.poll() is None, "the first eval finished before the second started"
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None, "the first eval finished before the second one checked the lock"
        assert second.returncode == 2
        assert _one_error_line(second.stderr) == (
            f"error: {out}: another gleamx-eval is writing here (pid {first.pid}); wait for it or use another --output")
        assert first.wait(timeout=300) == 0
    finally:
        if first.poll() is None:
            first.kill()
    ids = [r["id"] for r in _rows(out)]
    assert len(ids) == len(set(ids)) == json.loads((out / "results.json").read_text())["n"]


# --- 9. byte-safe append-only files ----------------------------------------------------------------------------------


def test_repair_tail_cuts_a_partial_line_whatever_byte_it_ends_in(tmp_path):
    from gleamx.eval.appendlog import read_records, repair_tail

    path = tmp_path / "c.jsonl"
    good_line = json.dumps({"id": "a", "text": "路口"}, ensure_ascii=False).encode() + b"\n"
    for tail in (b'{"id": "b", "text": "\xe8\xb7', b"\xe8", b'{"id": "b"}', b"\n\xff\xfe", b""):
        path.write_bytes(good_line + tail)
        assert [r for _, r in read_records(path)] == [{"id": "a", "text": "路口"}]
        repair_tail(path)
        expected = good_line + (b"\n" if tail.startswith(b"\n") else b"")
        assert path.read_bytes() == expected
    path.write_bytes(b"\xe8\xb7")  # nothing complete at all
    repair_tail(path)
    assert path.read_bytes() == b""
    big = good_line * 5000 + b"x" * 70_000  # a partial line longer than the scan block
    path.write_bytes(big)
    assert repair_tail(path) == 70_000 and path.read_bytes() == good_line * 5000


def test_predictions_cut_inside_a_chinese_character_resume_to_the_same_results(data, model, straight, tmp_path):
    from gleamx.eval.run import run_eval

    out = tmp_path / "out"
    shutil.copytree(straight, out)
    rows = (out / "predictions.jsonl").read_bytes().splitlines(keepends=True)
    assert len(rows) == 4
    partial = json.loads(rows[1])
    partial["prediction"] = "路口旁有一座红色屋顶"
    cut = json.dumps(partial, ensure_ascii=False).encode("utf-8")
    cut = cut[: cut.index("屋".encode()) + 1]  # one byte into a three-byte character
    (out / "predictions.jsonl").write_bytes(rows[0] + cut)
    (out / "results.json").unlink()
    run_eval(_cfg(data, out, model=str(model)))
    assert _results(out) == _results(straight)
    assert (out / "results.json").read_text(encoding="utf-8").replace(str(out), str(straight)) == \
        (straight / "results.json").read_text(encoding="utf-8")
    # the partial line is gone; the batch it belonged to was generated again whole (same batch members)
    assert {r["id"] for r in _rows(out)} == {r["id"] for r in _rows(straight)}


def test_judge_cache_cut_inside_a_chinese_character_resumes(stub, tmp_path):
    from gleamx.eval.judge import JudgeConfig, JudgeItem, judge_explanations

    s, url = stub()
    items = [JudgeItem(f"s{i}", "zh", True, f"候选{i}\n结论：是", f"参考{i}\n结论：是", "uav") for i in range(4)]
    cfg = JudgeConfig(model="judge", base_url=url, api_key_env="GLEAMX_TEST_JUDGE_KEY", timeout=5,
                      concurrency=1)
    cache = tmp_path / "judge.jsonl"
    full = judge_explanations(items, cfg, cache)
    lines = cache.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[1])
    record["rationales"]["landmarks"] = "地标正确"
    cut = json.dumps(record, ensure_ascii=False).encode()
    cache.write_bytes(lines[0] + cut[: cut.index("标".encode()) + 2])  # two bytes into a three-byte character
    s.counts.clear()
    again = judge_explanations(items, cfg, cache)
    assert sum(s.counts.values()) == 3 and again.to_dict() == full.to_dict()
    assert len(cache.read_bytes().splitlines()) == 4
