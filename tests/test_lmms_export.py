"""``gleamx export lmms-eval``: the task folder loads in lmms-eval, lmms-eval reads each sample as gleamx does, and
lmms-eval's evaluator scores the same answers with the same numbers as ``gleamx eval`` (a harness gleamx did not write
checks gleamx's; either side drifting fails these tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import ImageChops

from gleamx.task.templates import user_prompt

LIMIT = 8  # gleamx eval --limit and lmms-eval's limit: the first 8 samples of the split (12 in the test split)
METRICS = ("accuracy", "accuracy_positive", "accuracy_negative", "invalid_rate")

# Answers for the matching and the non-matching pairs of the test split (6 each), in split order: correct, wrong and
# invalid ones, in both languages, with a blank line (lmms-eval's default stop string), surrounding whitespace and
# <think> blocks (which lmms-eval strips by default and gleamx does not).
POSITIVE_ANSWERS = (
    "Both show a river bend and a bridge.\n\nThe layouts agree.\nAnswer: Yes",
    "<think>\nAnswer: Yes\n</think>",
    "Answer: No",
    "Probably yes.",
    "图1和图2布局一致。\n结论：是",
    "Answer: Yes or No",
)
NEGATIVE_ANSWERS = (
    "<think>\nAnswer: No\n</think>",
    "**Answer:**\nNo",
    "Answer: Yes",
    "\n  No.\n\n",  # lmms-eval strips the whitespace around an answer, gleamx eval reads it as is
    "I cannot tell.",
    "否",
)


def _export(data: Path, out: Path, *flags: str):
    from gleamx.cli.main import parse_command
    from gleamx.eval.lmms_export import export_lmms_task

    return export_lmms_task(parse_command("export lmms-eval", ["--data", str(data), "--out", str(out), *flags]))


@pytest.fixture(scope="module")
def exported(synth_dir, tmp_path_factory):
    """The test split of a generated dataset, exported as gleamx_en_label and gleamx_zh_explain."""
    data = synth_dir(120)
    root = tmp_path_factory.mktemp("lmms_export")
    _export(data, root / "en_label", "--lang", "en", "--task", "label", "--max-new-tokens", "4")
    _export(data, root / "zh_explain", "--lang", "zh", "--task", "explain")
    return {"data": data, "en_label": root / "en_label", "zh_explain": root / "zh_explain", "root": root}


@pytest.fixture(scope="module")
def lmms(tmp_path_factory):
    """lmms-eval, its ``datasets`` cache in a temp folder (never the user's), and the CLI's default arguments."""
    import datasets
    from PIL import ImageFile

    with pytest.MonkeyPatch.context() as mp:
        # lmms-eval's import turns on PIL's acceptance of truncated files, process-wide: put back for later modules
        mp.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", ImageFile.LOAD_TRUNCATED_IMAGES)
        pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install -e '.[lmms-eval]')")
        from lmms_eval.__main__ import parse_eval_args

        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("lmms_datasets_cache"))
        mp.setattr(sys, "argv", ["lmms_eval"])
        yield {"cli_args": parse_eval_args()[1]}  # as `python -m lmms_eval` runs: no media in process_results, ...


def _task(folder: Path, name: str):
    from lmms_eval.tasks import TaskManager, get_task_dict

    return get_task_dict([name], TaskManager(include_path=str(folder), include_defaults=False))[name]


def _samples(data: Path):
    from gleamx.data import load_samples

    return load_samples(data, split="test").samples


def _replay(answers: dict[str, str]):
    """An lmms-eval model that answers each request with ``answers[id of its sample]`` and keeps what it was asked."""
    from lmms_eval.api.model import lmms

    class Replay(lmms):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[dict] = []

        def generate_until(self, requests):
            out = []
            for r in requests:
                text, gen_kwargs, doc_to_visual, doc_id, task, split = r.args
                doc = self.task_dict[task][split][doc_id]
                self.asked.append({"id": doc["id"], "text": text, "images": doc_to_visual(doc), "gen": gen_kwargs})
                out.append(answers[doc["id"]])
            return out

        def loglikelihood(self, requests):
            raise NotImplementedError

        def generate_until_multi_round(self, requests):
            raise NotImplementedError

    return Replay()


def _lmms_scores(lmms, model, tasks, task_manager=None, **kw) -> dict:
    """lmms-eval's evaluator on ``tasks`` (names, or Task objects) with the CLI's defaults: its numbers by metric."""
    from lmms_eval.evaluator import simple_evaluate

    results = simple_evaluate(model=model, tasks=tasks, task_manager=task_manager, cli_args=lmms["cli_args"],
                              bootstrap_iters=0, **kw)
    (name, scores), = results["results"].items()
    return {m: scores[f"{m},none"] for m in METRICS} | {"n": results["n-samples"][name]["effective"]}


def _gleamx_scores(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return {m: r[m] for m in METRICS} | {"n": r["n"]}


def _same_pixels(a, b) -> bool:
    return a.size == b.size and a.mode == b.mode and ImageChops.difference(a, b).getbbox() is None


# --- the folder, and what is refused -----------------------------------------------------------------------------


def test_the_folder_holds_the_task_its_functions_and_the_data(exported):
    import yaml

    folder = exported["en_label"]
    assert sorted(p.name for p in folder.iterdir()) == [".gleamx_outputs.json", "data.parquet", "gleamx_en_label.yaml",
                                                        "utils.py"]
    text = (folder / "gleamx_en_label.yaml").read_text(encoding="utf-8")
    config = yaml.load(text.replace("!function ", ""), Loader=yaml.SafeLoader)  # the tags as plain names
    assert config["task"] == "gleamx_en_label" and config["test_split"] == "test"
    assert Path(config["dataset_kwargs"]["data_files"]["test"]) == (folder / "data.parquet").resolve()
    assert config["generation_kwargs"] == {"max_new_tokens": 4, "temperature": 0, "do_sample": False, "num_beams": 1,
                                           "until": []}
    assert config["reasoning_tags"] == "none" and config["lmms_eval_specific_kwargs"]["default"] == {
        "lang": "en", "task": "label"}
    assert [m["metric"] for m in config["metric_list"]] == list(METRICS)
    assert config["metadata"]["n"] == len(_samples(exported["data"]))
    assert "from gleamx.eval.lmms_task import" in (folder / "utils.py").read_text(encoding="utf-8")


def test_bad_outputs_and_inputs_are_one_line(exported, tmp_path, gleamx_cli):
    data = exported["data"]
    r = gleamx_cli("export", "lmms-eval", "--data", data, "--out", data / "lmms")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith(f"error: --out: {data / 'lmms'} lies in --data {data}"), r.stderr
    assert not (data / "lmms").exists()
    r = gleamx_cli("export", "lmms-eval", "--data", tmp_path / "nowhere", "--out", tmp_path / "t")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: {tmp_path / 'nowhere'}: path: not found"), r.stderr
    assert not (tmp_path / "t").exists()  # nothing made before the data is read
    r = gleamx_cli("export", "lmms-eval", "--data", data, "--split", "nosuch", "--out", tmp_path / "t")
    assert r.returncode == 2 and "no samples found with split 'nosuch'" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "file").write_text("x")
    r = gleamx_cli("export", "lmms-eval", "--data", data, "--out", tmp_path / "file")
    assert r.returncode == 2 and "is a file (expected a folder" in r.stderr, r.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "utils.py").write_text("# the user's own\n")
    r = gleamx_cli("export", "lmms-eval", "--data", data, "--out", mine, "--overwrite")
    assert r.returncode == 2 and "utils.py was not written by gleamx" in r.stderr, r.stderr
    assert (mine / "utils.py").read_text() == "# the user's own\n"
    # the same export again is a rerun; other settings are refused without --overwrite, which replaces the task
    again = exported["root"] / "again"
    assert gleamx_cli("export", "lmms-eval", "--data", data, "--out", again).returncode == 0
    assert gleamx_cli("export", "lmms-eval", "--data", data, "--out", again).returncode == 0
    r = gleamx_cli("export", "lmms-eval", "--data", data, "--out", again, "--lang", "zh")
    assert r.returncode == 2 and "other settings (changed: lang)" in r.stderr, r.stderr
    assert gleamx_cli("export", "lmms-eval", "--data", data, "--out", again, "--lang", "zh",
                      "--overwrite").returncode == 0
    assert sorted(p.name for p in again.glob("*.yaml")) == ["gleamx_zh_explain.yaml"]


def test_the_task_functions_score_as_gleamx_metrics_do():
    """process_results and the aggregations (no lmms-eval needed) against gleamx's match_metrics, and the empty
    cases: no matching pairs is "undefined", not 0."""
    from gleamx.eval.lmms_task import accuracy_negative, accuracy_positive, process_results
    from gleamx.eval.match import match_metrics
    from gleamx.task.verdict import parse_verdict

    answers = [*POSITIVE_ANSWERS, *NEGATIVE_ANSWERS, "", "Answer: Yes"]
    labels = [True] * len(POSITIVE_ANSWERS) + [False] * len(NEGATIVE_ANSWERS) + [True, False]
    def mean(xs: list[float]) -> float:  # lmms-eval's "mean"
        return sum(xs) / len(xs)

    rows = [process_results({"label": y}, [a]) for y, a in zip(labels, answers)]
    want = match_metrics(labels, [parse_verdict(a) for a in answers])
    assert mean([r["accuracy"] for r in rows]) == want["accuracy"]
    assert mean([r["invalid_rate"] for r in rows]) == want["invalid_rate"]
    assert accuracy_positive([r["accuracy_positive"] for r in rows]) == want["accuracy_positive"]
    assert accuracy_negative([r["accuracy_negative"] for r in rows]) == want["accuracy_negative"]
    assert accuracy_positive([(False, 1.0)]) is None and accuracy_negative([]) is None
    assert process_results({"label": True}, []) == process_results({"label": True}, [None])  # no answer: invalid


# --- lmms-eval reads each sample as gleamx does ------------------------------------------------------------------


@pytest.mark.parametrize("which,lang,task", [("en_label", "en", "label"), ("zh_explain", "zh", "explain")])
def test_lmms_eval_reads_each_sample_as_gleamx_does(exported, lmms, which, lang, task):
    """The same samples in the same order with the same labels; doc_to_text is gleamx's prompt text; doc_to_visual
    is [query image, satellite image] with gleamx's pixels."""
    from gleamx.prompts.messages import sample_images

    t = _task(exported[which], f"gleamx_{lang}_{task}")
    docs, samples = t.test_docs(), _samples(exported["data"])
    assert [d["id"] for d in docs] == [s.id for s in samples]
    for doc, sample in zip(docs, samples):
        assert doc["label"] == sample.label
        assert t.doc_to_text(doc) == user_prompt(sample.query_view, lang, task)
        got, want = t.doc_to_visual(doc), sample_images(sample)
        assert len(got) == 2 and all(_same_pixels(g, w) for g, w in zip(got, want)), sample.id
        assert not _same_pixels(got[0], want[1])  # the query image first, not the satellite tile


# --- lmms-eval's evaluator scores the same answers as gleamx eval ------------------------------------------------


@pytest.fixture(scope="module")
def tiny_eval(exported, models_tiny_dir, tmp_path_factory):
    """``gleamx eval`` of the tiny Qwen2.5-VL on the first 8 test samples (en, label): its folder."""
    from gleamx.cli.main import main

    out = tmp_path_factory.mktemp("lmms_gleamx_eval") / "eval"
    assert main(["eval", "--model", str(models_tiny_dir("qwen2_5_vl")), "--data", str(exported["data"]), "--split",
                 "test", "--lang", "en", "--task", "label", "--max-new-tokens", "4", "--limit", str(LIMIT),
                 "--bootstrap", "0", "--output", str(out)]) == 0
    return out


def test_lmms_eval_scores_gleamx_eval_generations_alike(exported, lmms, tiny_eval):
    """The tiny model's answers made by ``gleamx eval``, given to lmms-eval's evaluator through the exported task (as
    ``python -m lmms_eval --include_path DIR --limit 8`` runs it, lmms-eval's own tasks indexed too): the same
    accuracy overall, on matching and on non-matching pairs, and the same invalid rate, over the same 8 samples."""
    from lmms_eval.tasks import TaskManager

    from gleamx.prompts.messages import sample_images

    rows = [json.loads(line) for line in (tiny_eval / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    model = _replay({row["id"]: row["prediction"] for row in rows})
    manager = TaskManager(include_path=str(exported["en_label"]))  # with lmms-eval's ~2000 tasks, as the CLI
    got = _lmms_scores(lmms, model, ["gleamx_en_label"], manager, limit=LIMIT)
    assert got == _gleamx_scores(tiny_eval)
    samples = _samples(exported["data"])[:LIMIT]
    assert [a["id"] for a in model.asked] == [s.id for s in samples]
    assert [a["text"] for a in model.asked] == [user_prompt(s.query_view, "en", "label") for s in samples]
    assert all(_same_pixels(g, w) for a, s in zip(model.asked, samples) for g, w in zip(a["images"], sample_images(s)))
    assert all(a["gen"]["max_new_tokens"] == 4 and a["gen"]["until"] == [] for a in model.asked)


def test_lmms_eval_scores_hard_answers_alike_and_the_check_would_see_a_difference(exported, lmms, tmp_path,
                                                                                  gleamx_cli):
    """Correct, wrong and invalid answers (hedges, both options, bare words, Chinese, a blank line, <think> blocks)
    over the whole split: lmms-eval's numbers equal ``gleamx eval --predictions``'s. Run with lmms-eval's default
    <think> stripping instead of the task's ``reasoning_tags: none``, the same answers score differently, and the
    comparison says so."""
    samples = _samples(exported["data"])
    positives, negatives = iter(POSITIVE_ANSWERS), iter(NEGATIVE_ANSWERS)
    answers = {s.id: next(positives if s.label else negatives) for s in samples}
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "prediction": v}, ensure_ascii=False) + "\n"
                             for k, v in answers.items()), encoding="utf-8")
    r = gleamx_cli("eval", "--predictions", preds, "--data", exported["data"], "--split", "test", "--lang", "zh",
                   "--task", "explain", "--no-explanation-metrics", "--bootstrap", "0", "--output", tmp_path / "eval")
    assert r.returncode == 0, r.stderr
    want = _gleamx_scores(tmp_path / "eval")
    assert want == {"accuracy": 7 / 12, "accuracy_positive": 3 / 6, "accuracy_negative": 4 / 6,
                    "invalid_rate": 3 / 12, "n": 12}  # the answers are what they are meant to be
    assert _lmms_scores(lmms, _replay(answers), ["gleamx_zh_explain"],
                        _manager(exported["zh_explain"])) == want

    stripped = _task(exported["zh_explain"], "gleamx_zh_explain")
    stripped.config.reasoning_tags = None  # lmms-eval's default: the CLI strips <think>...</think>
    differs = _lmms_scores(lmms, _replay(answers), [stripped])
    assert differs != want and differs["accuracy"] == 5 / 12 and differs["invalid_rate"] == 5 / 12


def _manager(folder: Path):
    from lmms_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder), include_defaults=False)


def test_lmms_eval_own_qwen2_5_vl_runs_the_task_and_gleamx_scores_its_answers_alike(exported, lmms, models_tiny_dir,
                                                                                    tmp_path, gleamx_cli):
    """lmms-eval's own Qwen2.5-VL class (``--model qwen2_5_vl``) generates on the tiny model through the exported
    task; ``gleamx eval --predictions`` of the answers it logged scores them as lmms-eval did."""
    pytest.importorskip("decord", reason="lmms-eval's Qwen2.5-VL class imports decord (wheels for x86-64 Linux and "
                                         "Windows only; the lmms-eval extra installs it there)")
    from lmms_eval.evaluator import simple_evaluate

    results = simple_evaluate(model="qwen2_5_vl", force_simple=True, tasks=["gleamx_en_label"],
                              model_args=f"pretrained={models_tiny_dir('qwen2_5_vl')},device=cpu,device_map=cpu",
                              task_manager=_manager(exported["en_label"]), limit=LIMIT, log_samples=True,
                              bootstrap_iters=0, cli_args=lmms["cli_args"])
    logged = results["samples"]["gleamx_en_label"]
    samples = {s.id: s for s in _samples(exported["data"])}
    assert len(logged) == LIMIT
    assert all(row["arguments"][0] == user_prompt(samples[row["doc"]["id"]].query_view, "en", "label")
               for row in logged)
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": row["doc"]["id"], "prediction": row["resps"][0][0]}) + "\n"
                             for row in logged), encoding="utf-8")
    r = gleamx_cli("eval", "--predictions", preds, "--data", exported["data"], "--split", "test", "--lang", "en",
                   "--task", "label", "--limit", LIMIT, "--bootstrap", "0", "--output", tmp_path / "eval")
    assert r.returncode == 0, r.stderr
    scores = results["results"]["gleamx_en_label"]
    assert {m: scores[f"{m},none"] for m in METRICS} | {"n": len(logged)} == _gleamx_scores(tmp_path / "eval")
