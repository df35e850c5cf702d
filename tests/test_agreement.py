"""Explanation metrics checked against people: the rank correlations and kappa (against scipy, scikit-learn and hand
computations), which ratings count, the ratings file's checks, and ``gleamx eval --ratings`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.agreement import (
    JUDGE_FAITHFUL_AT,
    agreement,
    cohen_kappa_rows,
    correlation,
    kappa,
    kendall_tau_b_counts,
    usable_ratings,
)
from gleamx.eval.ratings import Rating, read_ratings

# --- the statistics -----------------------------------------------------------------------------------------------


def test_a_metric_ordered_as_the_ratings_agrees_fully_and_a_reversed_one_disagrees_fully() -> None:
    """Scores that rise with the rating level (one score per level) rank exactly as the ratings: rho = tau = 1;
    reversed, -1."""
    levels = [0, 0, 1, 1, 1, 2, 2, 0, 2]
    up = [{0: 0.1, 1: 0.5, 2: 0.9}[r] for r in levels]
    down = [-x for x in up]
    for scores, want in ((up, 1.0), (down, -1.0)):
        c = correlation(scores, levels, n_resamples=200)
        assert c["spearman"] == pytest.approx(want, abs=1e-12) and c["kendall"] == pytest.approx(want, abs=1e-12)
        # every resample is as ordered, so the whole interval is that value
        assert c["spearman_ci95"] == pytest.approx([want, want]) and c["kendall_ci95"] == pytest.approx([want, want])


def test_strictly_rising_scores_against_tied_ratings_equal_the_hand_computation() -> None:
    """Scores 1..9 against ratings 0,0,0,1,1,1,2,2,2: all 27 pairs across levels concordant, 9 tied in the rating, so
    tau-b = 27 / sqrt(36 * 27); Spearman is Pearson's r of ranks 1..9 and 2,2,2,5,5,5,8,8,8."""
    scores, levels = list(range(1, 10)), [0, 0, 0, 1, 1, 1, 2, 2, 2]
    c = correlation(scores, levels, n_resamples=0)
    assert c["kendall"] == pytest.approx(27 / np.sqrt(36 * 27), abs=1e-12)
    assert c["spearman"] == pytest.approx(np.corrcoef(range(1, 10), [2, 2, 2, 5, 5, 5, 8, 8, 8])[0, 1], abs=1e-12)
    assert c["spearman_ci95"] is None and c["kendall_ci95"] is None  # no resamples asked for


@pytest.mark.parametrize("n", [2, 7, 60, 400])
def test_spearman_and_kendall_equal_scipy_with_ties(n: int) -> None:
    rng = np.random.default_rng(n)
    scores = np.round(rng.normal(size=n), 1)  # ties in the scores too
    levels = rng.integers(0, 3, size=n)
    c = correlation(scores, levels, n_resamples=0)
    if len(set(levels)) > 1:
        assert c["spearman"] == pytest.approx(stats.spearmanr(scores, levels).statistic, abs=1e-12)
        assert c["kendall"] == pytest.approx(stats.kendalltau(scores, levels).statistic, abs=1e-12)  # tau-b


def test_the_bootstrap_kendall_equals_scipy_on_each_resample() -> None:
    """The tallied tau-b of a resample (items drawn several times) equals scipy's on the resampled lists."""
    rng = np.random.default_rng(3)
    scores, levels = rng.normal(size=50).round(1), rng.integers(0, 3, size=50)
    idx = rng.integers(0, 50, size=(40, 50))
    counts = np.zeros((40, 50))
    np.add.at(counts, (np.arange(40)[:, None], idx), 1)
    ours = kendall_tau_b_counts(scores, levels, counts)
    want = [stats.kendalltau(scores[i], levels[i]).statistic for i in idx]
    assert ours == pytest.approx(want, abs=1e-12)


def test_undefined_correlations_are_none_not_a_number() -> None:
    c = correlation([0.1, 0.5, 0.9], [2, 2, 2], n_resamples=50)  # everyone rated faithful
    assert c["spearman"] is None and c["kendall"] is None and c["spearman_ci95"] is None
    assert correlation([0.3], [1])["spearman"] is None


def test_kappa_equals_the_hand_computation_and_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score

    a = [True, True, True, False, False, False, True, False]
    b = [True, True, False, False, False, True, True, False]
    # observed 6/8; each says yes 4 of 8 times, so chance agreement is 0.5: kappa = (0.75 - 0.5) / 0.5
    k = kappa(a, b, n_resamples=300)
    assert k["kappa"] == pytest.approx(0.5, abs=1e-12) and k["observed_agreement"] == 0.75
    assert k["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert k["kappa_ci95"][0] < 0.5 < k["kappa_ci95"][1]
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.random(30) < 0.3, rng.random(30) < 0.6
        assert cohen_kappa_rows(x[None], y[None])[0] == pytest.approx(cohen_kappa_score(x, y), abs=1e-12)
    assert kappa([True, True], [True, True])["kappa"] is None  # chance agreement 1: undefined


def test_intervals_are_reproducible_and_bracket_the_estimate() -> None:
    rng = np.random.default_rng(1)
    levels = rng.integers(0, 3, size=80)
    scores = levels + rng.normal(scale=0.8, size=80)
    a, b = correlation(scores, levels, seed=4), correlation(scores, levels, seed=4)
    assert a == b
    assert a["spearman_ci95"][0] < a["spearman"] < a["spearman_ci95"][1]
    assert a["kendall_ci95"][0] < a["kendall"] < a["kendall_ci95"][1] and a["kendall"] > 0.3


# --- which ratings count ------------------------------------------------------------------------------------------


def _rating(sample_id: str, rating: str, text: str | None = None, lang: str = "en") -> Rating:
    return Rating(sample_id, lang, rating, (), text, 1)


def test_only_ratings_of_the_scored_answers_count_and_the_others_are_counted_by_reason() -> None:
    predictions = {"a": {"prediction": "A.\nAnswer: Yes"}, "b": {"prediction": "B.\r\nAnswer: No"},
                   "c": {"prediction": "C."}, "d": {"prediction": "D."}}
    ratings = {("a", "en"): _rating("a", "faithful", "A.\nAnswer: Yes"),
               ("b", "en"): _rating("b", "wrong", "B.\nAnswer: No"),  # line ends differ only: the same answer
               ("c", "en"): _rating("c", "partly", "an older answer"),
               ("d", "en"): _rating("d", "wrong"),  # no text: used, not checked
               ("a", "zh"): _rating("a", "wrong", lang="zh"), ("x", "en"): _rating("x", "wrong"),
               ("e", "en"): _rating("e", "wrong")}
    used, skipped = usable_ratings(ratings, {**predictions, "e": {"prediction": "E."}}, ["a", "b", "c", "d", "e"],
                                   scored={"a", "b", "c", "d"}, lang="en")
    assert sorted(used) == ["a", "b", "d"]
    assert skipped == {"other_lang": 1, "not_evaluated": 1, "text_differs": 1, "no_reference": 1}
    section = agreement(used, skipped, {"a": {"chrf": 90.0}, "b": {"chrf": 10.0}, "d": {"chrf": 20.0}},
                        {"a": {"overall": 4.5}, "b": {"overall": 1.0}, "d": {"overall": JUDGE_FAITHFUL_AT - 0.25}},
                        source="r.jsonl", n_resamples=0)
    assert section["n"] == 3 and section["n_unchecked"] == 1 and section["n_skipped"] == 4
    assert section["counts"] == {"faithful": 1, "partly": 0, "wrong": 2}
    assert list(section["metrics"]) == ["chrf", "judge"]
    # the judge calls "faithful" at a mean of 4 or more: a and no other, as the people did
    assert section["judge_kappa"]["kappa"] == pytest.approx(1.0) and section["judge_kappa"]["n_yes_a"] == 1


# --- the ratings file ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "field", "message"), [
    ({"id": "a", "lang": "en", "rating": "great"}, "rating", "expected one of wrong, partly, faithful, got 'great'"),
    ({"id": "a", "lang": "en", "rating": 2}, "rating", "expected one of wrong, partly, faithful, got 2"),
    ({"id": "a", "lang": "fr", "rating": "wrong"}, "lang", "expected one of en, zh (the answer's language), got 'fr'"),
    ({"lang": "en", "rating": "wrong"}, "id", "expected the sample's id (text), got None"),
    ({"id": "a", "lang": "en", "rating": "faithful", "wrong_claims": ["x"]}, "wrong_claims",
     "1 wrong claim(s) given but the rating is faithful"),
    ({"id": "a", "lang": "en", "rating": "wrong", "wrong_claims": "x"}, "wrong_claims",
     "expected a list of texts, got str"),
    ({"id": "a", "lang": "en", "rating": "wrong", "text": 5}, "text", "expected the rated answer (text) or null"),
])
def test_a_bad_ratings_line_is_one_error_naming_file_line_and_field(tmp_path: Path, line: dict, field: str,
                                                                   message: str) -> None:
    path = tmp_path / "ratings.jsonl"
    good = {"id": "b", "lang": "en", "rating": "partly", "wrong_claims": ["The roof is red."]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(GleamDataError) as e:
        read_ratings(path)
    assert str(e.value).startswith(f"{path}:2: {field}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_the_last_line_of_an_id_and_language_wins(tmp_path: Path) -> None:
    path = tmp_path / "ratings.jsonl"
    rows = [{"id": "a", "lang": "en", "rating": "wrong"}, {"id": "a", "lang": "zh", "rating": "partly"},
            {"id": "a", "lang": "en", "rating": "faithful", "time": "2026-01-01T00:00:00+00:00"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = read_ratings(path)
    assert {k: (r.rating, r.line) for k, r in got.items()} == {("a", "en"): ("faithful", 3), ("a", "zh"): ("partly", 2)}
    path.write_text('{"id": "a", "lang": "en", "rating": "wrong"}\nnot json\n')
    with pytest.raises(GleamDataError, match=rf"^{path}:2: "):
        read_ratings(path)


# --- gleamx eval --ratings, end to end ----------------------------------------------------------------------------

WRONG_CLAIM = "The query view shows a wide lake with a sandy beach in the middle."
VAGUE = "Hard to say, the images look a bit alike."


@pytest.fixture(scope="module")
def rated_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Synthetic data (test split), answers that copy the reference (rated faithful), replace its first line with a
    wrong claim (partly) or say nothing (wrong), and a ratings file with one row of each skipped kind."""
    from gleamx.data import load_samples
    from gleamx.synth import synthesize

    root = tmp_path_factory.mktemp("rated")
    synthesize(root / "data", n=200, seed=5)
    samples = load_samples(root / "data", split="test").samples
    preds, ratings = [], []
    for i, s in enumerate(samples):
        ref = s.explanation["en"]
        lines = ref.split("\n")
        text, rating, claims = [(ref, "faithful", []),
                                ("\n".join([WRONG_CLAIM, *lines[1:]]), "partly", [WRONG_CLAIM]),
                                (f"{VAGUE}\n{lines[-1]}", "wrong", [VAGUE])][i % 3]
        preds.append({"id": s.id, "prediction": text})
        ratings.append({"id": s.id, "lang": "en", "rating": rating, "wrong_claims": claims, "text": text})
    ratings[0] = dict(ratings[0], rating="wrong", text="an answer of another run")  # not the answer scored
    ratings += [{"id": "not-a-sample", "lang": "en", "rating": "wrong"},
                {"id": samples[1].id, "lang": "zh", "rating": "faithful"}]
    (root / "preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in preds))
    (root / "ratings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ratings))
    return {"root": root, "data": root / "data", "preds": root / "preds.jsonl", "ratings": root / "ratings.jsonl",
            "samples": samples, "n": len(samples)}


def _eval(rated_run: dict, out: Path, *extra: str) -> list[str]:
    return ["eval", "--data", str(rated_run["data"]), "--predictions", str(rated_run["preds"]), "--task", "explain",
            "--lang", "en", "--output", str(out), "--bootstrap", "300", *extra]


@pytest.mark.slow  # two explanation scorings (sentence embeddings): ~20 s
def test_eval_reports_each_metrics_agreement_with_people(rated_run: dict, tmp_path: Path, capsys) -> None:
    """A run without ratings, then the same folder with --ratings (not refused: ratings change only what is
    reported): every metric agrees positively with the people, with intervals, and the skipped ratings are said."""
    from gleamx.cli.main import main

    out = tmp_path / "out"
    assert main(_eval(rated_run, out)) == 0
    assert "agreement" not in json.loads((out / "results.json").read_text())["explanation"]
    capsys.readouterr()
    assert main(_eval(rated_run, out, "--ratings", str(rated_run["ratings"]))) == 0
    printed = capsys.readouterr().out
    n = rated_run["n"]
    section = json.loads((out / "results.json").read_text())["explanation"]["agreement"]
    assert section["n"] == n - 1 and section["n_unchecked"] == 0
    assert section["skipped"] == {"other_lang": 1, "not_evaluated": 1, "text_differs": 1, "no_reference": 0}
    assert set(section["metrics"]) == {"sbert_cosine", "sbert_cosine_rescaled", "bleu", "chrf", "rouge_l"}
    for name, m in section["metrics"].items():
        assert m["n"] == n - 1, name
        assert 0.5 < m["spearman"] <= 1 and 0.4 < m["kendall"] <= 1, (name, m)
        assert 0 < m["spearman_ci95"][0] <= m["spearman_ci95"][1] and 0 < m["kendall_ci95"][0], (name, m)
    assert section["judge_kappa"] is None  # no judge ran
    assert f"agreement with {n - 1} people's ratings" in printed
    assert (f"note: 3 of {n + 2} ratings skipped: 1 of another language, 1 an id this run did not evaluate, 1 of "
            "another answer than the one scored") in printed
    md = (out / "results.md").read_text()
    assert "### Agreement with people" in md and "| sbert_cosine_rescaled |" in md and "3 of " in md
    assert "Agreement with people" in (out / "report.html").read_text()
    rows = {r["id"]: r for r in map(json.loads, (out / "per_sample.jsonl").read_text().splitlines())}
    first, second = (s.id for s in rated_run["samples"][:2])
    assert "human_rating" not in rows[first]  # its rating is of another answer
    assert rows[second]["human_rating"] == {"rating": "partly", "wrong_claims": [WRONG_CLAIM]}


@pytest.mark.slow  # one explanation scoring: ~10 s
def test_the_judges_kappa_with_people(rated_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A judge that scores copies 5, a wrong first line 3 and a vague answer 1 calls "faithful" exactly where the
    people did: kappa 1, and its mean ranks as the ratings (Spearman 1)."""
    from test_judge import completion, loopback_servers

    from gleamx.cli.main import main
    from gleamx.eval.judge import CRITERIA

    def handle(h) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        user = next(m for m in body["messages"] if m["role"] == "user")["content"]
        candidate = user.rsplit("<<<\n", 1)[1]
        score = 3 if WRONG_CLAIM in candidate else 1 if VAGUE in candidate else 5
        status, _, payload = completion(json.dumps({c: {"score": score, "rationale": "."} for c in CRITERIA}))
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    monkeypatch.setenv("GLEAMX_TEST_JUDGE_KEY", "sk-test")
    with loopback_servers() as serve:
        url = serve(handle)
        out = tmp_path / "out"
        assert main(_eval(rated_run, out, "--ratings", str(rated_run["ratings"]), "--judge-model", "judge",
                          "--judge-base-url", url, "--judge-api-key-env", "GLEAMX_TEST_JUDGE_KEY")) == 0
    section = json.loads((out / "results.json").read_text())["explanation"]["agreement"]
    k = section["judge_kappa"]
    assert k["faithful_at"] == JUDGE_FAITHFUL_AT and k["n"] == rated_run["n"] - 1
    assert k["kappa"] == pytest.approx(1.0) and k["kappa_ci95"] == pytest.approx([1.0, 1.0])
    assert section["metrics"]["judge"]["spearman"] == pytest.approx(1.0)
    assert {f"judge_{c}" for c in CRITERIA} <= set(section["metrics"])
    assert "Cohen's kappa +1.000" in (out / "results.md").read_text()


def test_a_bad_rating_stops_eval_before_anything_runs_in_one_line(rated_run: dict, tmp_path: Path, capsys) -> None:
    from gleamx.cli.main import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "lang": "en", "rating": "partly"}\n{"id": "b", "lang": "en", "rating": "ok"}\n')
    assert main(_eval(rated_run, tmp_path / "out", "--ratings", str(bad))) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}:2: rating: expected one of wrong, partly, faithful, got 'ok'"
    assert not (tmp_path / "out" / "results.json").exists()
    assert main(_eval(rated_run, tmp_path / "out", "--ratings", str(tmp_path / "missing.jsonl"))) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: --ratings: {tmp_path / 'missing.jsonl'}: file not found")


def test_ratings_need_explanation_metrics() -> None:
    from gleamx.eval.config import EvalConfig

    for extra, why in (({"task": "label"}, r"--task label has none; .*\(--task explain\)$"),
                       ({"no_explanation_metrics": True},
                        r"--no-explanation-metrics turns them off; .*\(without --no-explanation-metrics\)$")):
        with pytest.raises(GleamConfigError, match=rf"^--ratings: people's ratings are checked against the "
                                                   rf"explanation metrics, and {why}"):
            EvalConfig(predictions="p.jsonl", data="d", ratings="r.jsonl", **extra)


def test_the_side_by_side_report_of_two_languages_shows_each_ones_agreement() -> None:
    """``--lang en,zh --ratings``: each language is rated and scored on its own; the combined table has a row per
    metric with each language's rho ('-' where a language had no ratings)."""
    from gleamx.eval.report import languages_markdown

    def run(section: dict | None) -> dict:
        return {"n": 4, "accuracy": 1.0, "by_view": {}, "explanation": {"sbert_cosine": 0.9, "agreement": section}}

    en = {"n": 3, "metrics": {"sbert_cosine": {"spearman": 0.81}, "chrf": {"spearman": None}}}
    md = languages_markdown({"langs": ["en", "zh"], "by_lang": {"en": run(en), "zh": run(None)}, "config": {}})
    assert "| answers rated by people | 3 | - |" in md
    assert "| Spearman with people, sbert_cosine | +0.810 | - |" in md
    assert "| Spearman with people, chrf | - | - |" in md
