"""gleamx's numbers against *independent* references: published values and implementations written here.

tests/test_explain_metrics.py checks that each metric module equals its wrapped library
called with the same arguments. That catches wiring mistakes but not a wrong choice of
arguments, scale or order. This file pins the numbers another way:

- BLEU and chrF: hand-counted values on tiny inputs, and both recomputed from their definitions
  (Popović 2015; Papineni et al. 2002) with code in this file, run through gleamx's ``evaluate``
  modules.
- ROUGE-L: a hand-written LCS F-measure over the documented Chinese segmentation (jieba
  words with punctuation dropped, Latin and digits lowercased), never rouge-score.
- Match and calibration statistics: scikit-learn on random inputs with ties, and an ECE
  written with explicit bin edges.
- Argument order: a metric fed prediction and reference swapped gives another number,
  and each test pins which order gleamx uses.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter

import numpy as np
import pytest

from gleamx.eval.match import match_metrics
from gleamx.eval.stats import auroc, bootstrap_ci, calibration


@pytest.fixture(scope="module")
def bleu():
    from gleamx.eval.metrics.gleamx_bleu.gleamx_bleu import GleamxBleu

    return GleamxBleu(keep_in_memory=True)


@pytest.fixture(scope="module")
def chrf():
    from gleamx.eval.metrics.gleamx_chrf.gleamx_chrf import GleamxChrf

    return GleamxChrf(keep_in_memory=True)


@pytest.fixture(scope="module")
def rouge_l():
    from gleamx.eval.metrics.gleamx_rouge_l.gleamx_rouge_l import GleamxRougeL

    return GleamxRougeL(keep_in_memory=True)


# --- BLEU (en) ---------------------------------------------------------------------------------------


def test_bleu_en_means_13a_and_no_shared_word_is_zero(bleu) -> None:
    pred = "A red-roofed warehouse stands at the junction's north-east corner."
    ref = "The warehouse with the red roof is at the north-east corner of the junction."
    assert bleu.compute(predictions=[pred], references=[ref], lang="en")["bleu"] == pytest.approx(
        bleu.compute(predictions=[pred], references=[ref], tokenize="13a")["bleu"], abs=1e-12)
    assert bleu.compute(predictions=["a small pond"], references=["wide river bend"], lang="en")["bleu"] == 0.0


def test_bleu_argument_order_is_prediction_then_reference(bleu) -> None:
    # A prediction that is the first half of its reference: every n-gram matches (precisions 1) but
    # it is short, so BLEU = brevity penalty exp(1 - r/c). Swapped, there is no brevity penalty and
    # the precisions drop instead. Plain lowercase words: 13a splits them on spaces only.
    short = "the red roof at the north east corner of the junction"
    long = short + " faces a river and a wide road to the south"
    c, r = len(short.split()), len(long.split())
    ours = bleu.compute(predictions=[short], references=[long], lang="en")
    assert ours["precisions"] == [100.0] * 4
    assert ours["bleu"] == pytest.approx(100 * math.exp(1 - r / c), abs=1e-9)
    swapped = bleu.compute(predictions=[long], references=[short], lang="en")["bleu"]
    assert swapped == pytest.approx(_bleu_by_definition([long.split()], [short.split()]), abs=1e-9)
    assert abs(swapped - ours["bleu"]) > 5  # 40.3 vs 48.5


# --- BLEU (zh): recomputed from the definition on character tokens ---------------------------------

# CJK ideographs, CJK symbols and punctuation (U+3000-303F), full-width forms (U+FF00-FFEF).
_CJK_TOKEN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef"


def _zh_tokens(text: str) -> list[str]:
    """The documented rule of sacrebleu's "zh" tokenizer for text without ASCII punctuation:
    every CJK character or CJK punctuation mark is a token, and Latin/digit runs are words."""
    return re.findall(rf"[{_CJK_TOKEN}]|[^\s{_CJK_TOKEN}]+", text)


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _bleu_by_definition(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """Corpus BLEU (Papineni et al. 2002): clipped n-gram precisions p1..p4 pooled over the corpus,
    geometric mean, brevity penalty exp(1 - r/c) when c < r. No smoothing: every order must match."""
    log_p = 0.0
    for n in range(1, 5):
        match = sum(sum((_ngrams(h, n) & _ngrams(r, n)).values()) for h, r in zip(hyps, refs))
        total = sum(max(len(h) - n + 1, 0) for h in hyps)
        assert match > 0, "pick examples where every order matches (no smoothing here)"
        log_p += math.log(match / total) / 4
    c, r = sum(map(len, hyps)), sum(map(len, refs))
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(log_p)


ZH_PRED = [
    "在A3号公路旁有2座红色建筑，河流在东侧。",
    "卫星图中B12路口北侧有3栋灰色楼房。",
    "两张图中都有一座向南弯曲的河流和一座桥。",
]
ZH_REF = [
    "A3号公路旁边有两座红色的建筑，河流位于东侧。",
    "B12路口的北侧有3栋灰色的楼房。",
    "两张图中都有一条向南弯曲的河流，河上有一座桥。",
]


def test_zh_bleu_equals_the_definition_on_character_tokens(bleu) -> None:
    assert _zh_tokens(ZH_PRED[0])[:4] == ["在", "A3", "号", "公"]
    hyps, refs = [_zh_tokens(t) for t in ZH_PRED], [_zh_tokens(t) for t in ZH_REF]
    expected = _bleu_by_definition(hyps, refs)
    out = bleu.compute(predictions=ZH_PRED, references=ZH_REF, lang="zh")
    assert out["bleu"] == pytest.approx(expected, abs=1e-9)
    assert (out["sys_len"], out["ref_len"]) == (sum(map(len, hyps)), sum(map(len, refs)))
    # Order: hypotheses are shorter here, so swapping removes the brevity penalty and changes the score.
    # Order: clipped matches are symmetric, but the precision denominators and the brevity penalty are
    # not. Swapped, the score moves by ~0.17 here, far outside the 1e-9 above, so that equality pins
    # prediction=hypothesis, reference=reference.
    swapped = bleu.compute(predictions=ZH_REF, references=ZH_PRED, lang="zh")["bleu"]
    assert swapped == pytest.approx(_bleu_by_definition(refs, hyps), abs=1e-9)
    assert abs(swapped - out["bleu"]) > 0.1


# --- chrF: values that follow from the definition, and the definition itself ------------------------

# Corpus-level chrF with char_order=6, word_order=0, beta=3 and sacrebleu's default (effective-order,
# no epsilon) smoothing, which gleamx uses, on inputs small enough to count by hand.
_CHRF_PUBLISHED_BETA3 = [
    (["a"], ["a"], 100.0),
    ([""], ["reference"], 0.0),
    (["a b c"], ["a b c"], 100.0),
    (["a b c"], ["abc"], 100.0),
    ([""], ["c"], 0.0),
    (["a", "b"], ["a", "c"], 50.0),
    (["aa"], ["ab"], 25.0),
]


@pytest.mark.parametrize(("hyps", "refs", "published"), _CHRF_PUBLISHED_BETA3)
def test_chrf_hand_counted_corpus_values(chrf, hyps, refs, published) -> None:
    out = chrf.compute(predictions=hyps, references=refs, beta=3, char_order=6, word_order=0)
    assert out["chrf"] == pytest.approx(published, abs=1e-4)


def _char_stats(hyp: str, ref: str, order: int = 6) -> list[tuple[int, int, int]]:
    """Per n-gram order: (hypothesis n-grams, reference n-grams, matches); whitespace removed."""
    h, r = "".join(hyp.split()), "".join(ref.split())
    stats = []
    for n in range(1, order + 1):
        hc = Counter(h[i:i + n] for i in range(len(h) - n + 1))
        rc = Counter(r[i:i + n] for i in range(len(r) - n + 1))
        stats.append((sum(hc.values()), sum(rc.values()), sum((hc & rc).values())))
    return stats


def _chrf_by_definition(pairs: list[tuple[str, str]], beta: float = 2.0) -> float:
    """chrF (Popović 2015): character n-gram precision and recall, each averaged over the orders
    1..6 that both sides have, then F_beta (beta=2 weighs recall more). A corpus pools the counts."""
    pooled = np.zeros((6, 3))
    for hyp, ref in pairs:
        pooled += np.array(_char_stats(hyp, ref))
    prec = [m / nh for nh, nr, m in pooled if nh > 0 and nr > 0]
    rec = [m / nr for nh, nr, m in pooled if nh > 0 and nr > 0]
    if not prec:
        return 0.0
    p, r = sum(prec) / len(prec), sum(rec) / len(rec)
    return 100 * (1 + beta**2) * p * r / (beta**2 * p + r) if p + r else 0.0


EN_PRED = [
    "The red-roofed building sits at the north-east corner of the junction in both views.",
    "Both images show a river bending south with a bridge near the centre.",
    "Two parallel roads run east to west; the parking lot is the same.",
]
EN_REF = [
    "A red roof stands at the north-east corner of the crossroads in the query and the satellite image.",
    "A river bends to the south and a bridge crosses it near the middle of both images.",
    "The parking lot and the two parallel east-west roads line up.",
]


@pytest.mark.parametrize(("lang", "pred", "ref"), [("en", EN_PRED, EN_REF), ("zh", ZH_PRED, ZH_REF)])
def test_chrf_equals_the_definition_and_pins_argument_order(chrf, lang, pred, ref) -> None:
    out = chrf.compute(predictions=pred, references=ref, lang=lang)
    expected = [_chrf_by_definition([(p, r)]) for p, r in zip(pred, ref)]
    assert out["scores"] == pytest.approx(expected, abs=1e-9)
    assert out["chrf"] == pytest.approx(_chrf_by_definition(list(zip(pred, ref))), abs=1e-9)
    # chrF2 weighs recall (of the reference) four times precision: swapping the roles of prediction
    # and reference changes every sentence score, so the order above is the one gleamx uses.
    swapped = [_chrf_by_definition([(r, p)]) for p, r in zip(pred, ref)]
    assert all(abs(a - b) > 0.5 for a, b in zip(out["scores"], swapped))


def test_chrf_a_short_prediction_is_punished_for_recall(chrf) -> None:
    # A prediction that is a prefix of its reference has precision 1 and low recall: with beta=2 the
    # score stays low. Fed the other way round (recall 1, low precision) it would be high.
    short, long = "red roof", "red roof at the north-east corner of the junction"
    ours = chrf.compute(predictions=[short], references=[long])["scores"][0]
    assert ours == pytest.approx(_chrf_by_definition([(short, long)]), abs=1e-9)
    assert ours < 30 < _chrf_by_definition([(long, short)])


# --- ROUGE-L (zh): hand-written LCS over the documented segmentation --------------------------------

def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def _rouge_l_f(pred: list[str], ref: list[str]) -> float:
    lcs = _lcs(pred, ref)
    if not lcs:
        return 0.0
    p, r = lcs / len(pred), lcs / len(ref)
    return 2 * p * r / (p + r)


def _documented_tokens(text: str) -> list[str]:
    """gleamx's documented zh rule: jieba words (default mode) of the lowercased text, keeping tokens
    that hold a letter, digit or ideograph (punctuation and spaces go, as rouge-score's English
    tokenizer drops them). Written with Unicode categories, not the implementation's helper."""
    import jieba

    return [t for t in jieba.lcut(text.lower())
            if any(unicodedata.category(ch)[0] in "LN" for ch in t)]


# The headline example, segmented by hand from jieba 0.42's output and pinned: if a jieba upgrade
# segments differently, the first assertion says so before any score is compared.
_ROUGE_PRED = "在A3号公路旁有2座红色建筑"
_ROUGE_PINNED = {
    _ROUGE_PRED: ["在", "a3", "号", "公路", "旁有", "2", "座", "红色", "建筑"],
    "A3号公路旁边有两座红色的建筑": ["a3", "号", "公路", "旁边", "有", "两座", "红色", "的", "建筑"],
    "2座红色建筑位于A3公路东侧，距离约300米": ["2", "座", "红色", "建筑", "位于", "a3", "公路", "东侧", "距离", "约", "300", "米"],
}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        # LCS = a3 号 公路 红色 建筑 = 5 of 9 and 9 tokens: P = R = F = 5/9.
        ("A3号公路旁边有两座红色的建筑", 5 / 9),
        # LCS = 2 座 红色 建筑 = 4; P = 4/9, R = 4/12, F = 2*4/(9+12) = 8/21.
        ("2座红色建筑位于A3公路东侧，距离约300米", 8 / 21),
        # Identical text (case differs only in the Latin run): F = 1.
        ("在a3号公路旁有2座红色建筑。", 1.0),
    ],
)
def test_rouge_l_zh_equals_hand_counted_lcs(rouge_l, ref, expected) -> None:
    for text, tokens in _ROUGE_PINNED.items():
        assert _documented_tokens(text) == tokens, f"jieba segments {text!r} differently now"
    pred_tokens, ref_tokens = _documented_tokens(_ROUGE_PRED), _documented_tokens(ref)
    assert _rouge_l_f(pred_tokens, ref_tokens) == pytest.approx(expected, abs=1e-12)
    out = rouge_l.compute(predictions=[_ROUGE_PRED], references=[ref], lang="zh")
    assert out["scores"][0] == pytest.approx(expected, abs=1e-12)


def test_rouge_l_zh_char_mode_equals_hand_counted_lcs(rouge_l) -> None:
    # char mode: one token per ideograph, Latin/digit runs whole, lowercased.
    # pred: 在 a3 号 公 路 旁 有 2 座 红 色 建 筑 (13); ref: a3 号 公 路 旁 边 有 两 座 红 色 的 建 筑 (14);
    # LCS: a3 号 公 路 旁 有 座 红 色 建 筑 (11); F = 2*11/(13+14) = 22/27.
    out = rouge_l.compute(predictions=[_ROUGE_PRED], references=["A3号公路旁边有两座红色的建筑"], lang="zh",
                          zh_tokenizer="char")
    assert out["scores"][0] == pytest.approx(22 / 27, abs=1e-12)


ROUGE_PAIRS = [
    ("卫星图中B12路口北侧有3栋灰色楼房", "B12路口的北边有三栋灰色的楼"),
    ("河流在第2座桥以南转向东，Google地图上也是如此", "在Google地图上，河流过了第2座桥后向东转"),
    ("两张图都显示G15高速与一条河流平行，相距约300米。", "G15高速公路和河流平行，两者相距大约300米"),
    ("查询图中有一座体育场，但卫星图只有农田。", "卫星图只显示田地，缺少查询视图中的体育场。"),
    ("红色屋顶的建筑位于路口东北角", "路口西南角是一片停车场"),
]


def test_rouge_l_zh_per_sample_and_mean_equal_the_documented_rule(rouge_l) -> None:
    pred = [p for p, _ in ROUGE_PAIRS]
    ref = [r for _, r in ROUGE_PAIRS]
    expected = [_rouge_l_f(_documented_tokens(p), _documented_tokens(r)) for p, r in ROUGE_PAIRS]
    out = rouge_l.compute(predictions=pred, references=ref, lang="zh")
    assert out["scores"] == pytest.approx(expected, abs=1e-12)
    assert out["rouge_l"] == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    assert 0 < min(expected[:4]) and max(expected) < 1  # real partial overlaps, not 0/1 cases


# --- match metrics vs scikit-learn --------------------------------------------------------------

def _random_match_data(seed: int, n: int = 400, p_invalid: float = 0.15):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.45).tolist()
    preds = []
    for y in labels:
        u = rng.random()
        preds.append(None if u < p_invalid else (y if u < p_invalid + 0.6 else not y))
    return labels, preds


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_match_metrics_equal_sklearn(seed) -> None:
    from sklearn import metrics as sk

    labels, preds = _random_match_data(seed)
    m = match_metrics(labels, preds)
    # An invalid answer never counts as a "match" prediction: for precision, recall and F1 it is a
    # "no" (an invalid answer on a positive is a miss; on a negative it is not a false alarm).
    as_no = [bool(p) for p in preds]
    assert m["precision"] == pytest.approx(sk.precision_score(labels, as_no), abs=1e-12)
    assert m["recall"] == pytest.approx(sk.recall_score(labels, as_no), abs=1e-12)
    assert m["f1"] == pytest.approx(sk.f1_score(labels, as_no), abs=1e-12)
    # For accuracy an invalid answer is always wrong.
    as_wrong = [(not y) if p is None else p for y, p in zip(labels, preds)]
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(labels, as_wrong), abs=1e-12)
    assert m["accuracy_positive"] == pytest.approx(sk.recall_score(labels, as_wrong, pos_label=True), abs=1e-12)
    assert m["accuracy_negative"] == pytest.approx(sk.recall_score(labels, as_wrong, pos_label=False), abs=1e-12)
    assert m["invalid_rate"] == pytest.approx(sum(p is None for p in preds) / len(preds), abs=1e-12)
    tn, fp, fn, tp = sk.confusion_matrix(labels, as_no, labels=[False, True]).ravel()
    c = m["confusion"]
    assert (c["tp"], c["fp"], c["tn"] + c["invalid_negative"], c["fn"] + c["invalid_positive"]) == (tp, fp, tn, fn)


def test_match_metrics_argument_order_is_labels_then_predictions() -> None:
    from sklearn import metrics as sk

    labels, preds = _random_match_data(7, p_invalid=0.0)
    m = match_metrics(labels, preds)
    swapped = match_metrics(preds, labels)
    assert m["precision"] == pytest.approx(sk.precision_score(labels, preds), abs=1e-12)
    assert m["recall"] == pytest.approx(sk.recall_score(labels, preds), abs=1e-12)
    # precision and recall trade places when the arguments are swapped; they differ on this data.
    assert abs(m["precision"] - m["recall"]) > 0.01
    assert swapped["precision"] == pytest.approx(m["recall"]) and swapped["recall"] == pytest.approx(m["precision"])


@pytest.mark.parametrize(
    ("labels", "preds"),
    [
        ([True, True, False, False], [False, None, False, False]),  # never says yes: F1 = 0, precision undefined
        ([False, False, False], [True, False, None]),                 # no positives, one false alarm: F1 = 0
        ([False, False], [False, None]),                              # nothing to find, nothing claimed
    ],
)
def test_match_metrics_degenerate_cases_follow_sklearn(labels, preds) -> None:
    """F1 = 2TP / (2TP + FP + FN) is defined (0) whenever there is a positive or a false alarm;
    only with neither is it undefined (None here, nan in sklearn with zero_division=nan)."""
    import warnings

    from sklearn import metrics as sk

    m = match_metrics(labels, preds)
    as_no = [bool(p) for p in preds]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, fn in (("precision", sk.precision_score), ("recall", sk.recall_score), ("f1", sk.f1_score)):
            ref = fn(labels, as_no, zero_division=np.nan)
            assert (m[key] is None) == bool(np.isnan(ref)), key
            if m[key] is not None:
                assert m[key] == pytest.approx(ref, abs=1e-12), key


def test_bootstrap_equals_match_metrics_on_each_resample() -> None:
    """bootstrap_ci's vectorised statistics equal match_metrics recomputed on every resample
    (same seeded indices), and its interval is numpy's percentile of those values."""
    labels, preds = _random_match_data(11, n=300)
    b, seed = 200, 5
    idx = np.random.default_rng(seed).integers(0, len(labels), size=(b, len(labels)))
    per = {k: [] for k in ("accuracy", "accuracy_positive", "accuracy_negative", "f1", "invalid_rate")}
    for row in idx:
        m = match_metrics([labels[i] for i in row], [preds[i] for i in row])
        for k in per:
            if m[k] is not None:
                per[k].append(m[k])
    ci = bootstrap_ci(labels, preds, n_resamples=b, seed=seed)
    for k, values in per.items():
        assert ci[k] == pytest.approx([np.percentile(values, 2.5), np.percentile(values, 97.5)], abs=1e-12), k


def test_bootstrap_f1_is_zero_not_undefined_for_a_model_that_never_says_yes() -> None:
    labels = [i % 2 == 0 for i in range(60)]
    preds = [False] * 60
    assert match_metrics(labels, preds)["f1"] == 0.0
    assert bootstrap_ci(labels, preds, n_resamples=50)["f1"] == [0.0, 0.0]


# --- calibration vs scikit-learn and an explicit-bin ECE ------------------------------------------

def _random_calibration_data(seed: int, n: int = 400, decimals: int = 2):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    # P(yes) correlated with the label, rounded so that many scores tie and many sit on bin edges.
    p = np.clip(np.round(0.5 + (labels - 0.5) * rng.random(n) * 0.8 + rng.normal(0, 0.15, n), decimals), 0, 1)
    return labels.tolist(), p.tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_and_brier_equal_sklearn_with_ties(seed) -> None:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    labels, p = _random_calibration_data(seed, decimals=1)  # 11 distinct values: heavy ties
    assert len(set(p)) <= 11
    assert auroc(labels, p) == pytest.approx(roc_auc_score(labels, p), abs=1e-12)
    cal = calibration(labels, p)
    assert cal["auroc"] == pytest.approx(roc_auc_score(labels, p), abs=1e-12)
    assert cal["brier"] == pytest.approx(brier_score_loss(labels, p), abs=1e-12)
    # argument order: auroc(labels, scores) as sklearn's (y_true, y_score); inverted scores give 1 - AUC.
    assert auroc(labels, [1 - s for s in p]) == pytest.approx(1 - roc_auc_score(labels, p), abs=1e-12)


def test_calibration_leaves_out_missing_probabilities_like_sklearn_on_the_rest() -> None:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    labels, p = _random_calibration_data(4)
    p_missing = [None if i % 7 == 0 else v for i, v in enumerate(p)]
    keep = [i for i, v in enumerate(p_missing) if v is not None]
    cal = calibration(labels, p_missing)
    assert (cal["n"], cal["n_missing"]) == (len(keep), len(p) - len(keep))
    assert cal["auroc"] == pytest.approx(roc_auc_score([labels[i] for i in keep], [p[i] for i in keep]), abs=1e-12)
    assert cal["brier"] == pytest.approx(brier_score_loss([labels[i] for i in keep], [p[i] for i in keep]), abs=1e-12)


def _ece_explicit_bins(labels: list[bool], p: list[float], n_bins: int) -> tuple[float, list[dict]]:
    """Expected calibration error with bins [k/n, (k+1)/n), the last bin closed at 1.0: the sum over
    bins of (bin size / N) * |mean P(yes) - fraction of matches|."""
    n, ece, table = len(p), 0.0, []
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        members = [i for i in range(n) if lo <= p[i] < hi or (k == n_bins - 1 and p[i] == hi)]
        if not members:
            continue
        conf = sum(p[i] for i in members) / len(members)
        acc = sum(labels[i] for i in members) / len(members)
        ece += len(members) / n * abs(conf - acc)
        table.append({"bin": [lo, hi], "n": len(members), "mean_p_yes": conf, "frac_match": acc})
    return ece, table


@pytest.mark.parametrize("n_bins", [10, 15, 20, 100])
@pytest.mark.parametrize("seed", [0, 1])
def test_ece_equals_explicit_bin_reference(seed, n_bins) -> None:
    labels, p = _random_calibration_data(seed)
    # every bin edge k/n_bins appears as a score, so each boundary is tested exactly
    edges = [k / n_bins for k in range(n_bins + 1)]
    labels, p = labels + [k % 2 == 0 for k in range(len(edges))], p + edges
    ece, table = _ece_explicit_bins(labels, p, n_bins)
    cal = calibration(labels, p, n_bins=n_bins)
    assert cal["ece"] == pytest.approx(ece, abs=1e-12)
    assert [(t["bin"], t["n"]) for t in cal["reliability"]] == [(t["bin"], t["n"]) for t in table]
    for ours, ref in zip(cal["reliability"], table):
        assert ours["mean_p_yes"] == pytest.approx(ref["mean_p_yes"], abs=1e-12)
        assert ours["frac_match"] == pytest.approx(ref["frac_match"], abs=1e-12)
