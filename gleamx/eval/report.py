"""The report people read: ``results.md`` (tables), ``report.html`` (self-contained), model-index entries."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from gleamx.data.schema import GleamSample, open_rgb
from gleamx.task.verdict import parse_verdict

MATCH_COLUMNS = ("n", "accuracy", "accuracy_positive", "accuracy_negative", "precision", "recall", "f1", "invalid_rate")
EXPLANATION_KEYS = ("sbert_cosine", "bleu", "chrf", "rouge_l", "bertscore_f1")
# Embedding scores also come rescaled against a shuffled-pair baseline (gleamx.eval.metrics.baseline).
RESCALED_KEYS = ("sbert_cosine", "bertscore_f1")
_RESCALE_TEXT = ("rescaled = mean over answers of (raw - b) / (1 - b), where b is the answer's mean similarity to the "
                 "other samples' references (its chance level on this data): 1 is a copy of the reference, about 0 an "
                 "answer no closer to its own reference than to the others' (a refusal, garbage), below 0 further "
                 "(reported as is, not clipped); baseline is the mean b.")


def rescale_text(expl: dict[str, Any]) -> str:
    """How the rescaled column is made, and why it is empty when it is."""
    return _RESCALE_TEXT + (f" Note: {expl['rescale_note']}." if expl.get("rescale_note") else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _ci(results: dict[str, Any], key: str) -> str:
    ci = (results.get("ci95") or {}).get(key)
    return f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


def model_index(results: dict[str, Any]) -> list[dict[str, Any]]:
    """model-index ``results`` entries (the Hub's format) that a model card can carry."""
    cfg = results.get("config", {})
    metrics = [{"type": "accuracy", "name": name, "value": round(100 * results[key], 2)}
               for key, name in (("accuracy", "Match accuracy"), ("accuracy_positive", "Accuracy (matching pairs)"),
                                 ("accuracy_negative", "Accuracy (non-matching pairs)")) if results.get(key) is not None]
    if results.get("f1") is not None:
        metrics.append({"type": "f1", "name": "F1 of match", "value": round(100 * results["f1"], 2)})
    for key in (*EXPLANATION_KEYS, *(f"{k}_rescaled" for k in RESCALED_KEYS)):
        value = (results.get("explanation") or {}).get(key)
        if isinstance(value, (int, float)):
            metrics.append({"type": key, "name": f"Explanation {key}", "value": round(float(value), 4)})
    return [{
        "task": {"type": "image-text-to-text", "name": "GLEAM-X cross-view match and explain"},
        "dataset": {"type": str(cfg.get("data")), "name": f"{Path(str(cfg.get('data'))).name} ({cfg.get('lang')})",
                    "split": cfg.get("split") or "test", "config": cfg.get("lang")},
        "metrics": metrics,
    }]


def explanation_rows(expl: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(metric, raw, baseline, rescaled)`` cells for the explanation table; '-' where a metric has none."""
    def cell(key: str) -> str:
        value = expl.get(key)
        return "-" if value is None else f"{value:.4f}"

    return [(key, cell(key), cell(f"{key}_baseline") if key in RESCALED_KEYS else "-",
             cell(f"{key}_rescaled") if key in RESCALED_KEYS else "-")
            for key in EXPLANATION_KEYS if expl.get(key) is not None]


def _coef(value: float | None, ci: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def agreement_rows(section: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(metric, n, Spearman [CI], Kendall [CI])`` cells of the agreement table."""
    return [(name, str(m["n"]), _coef(m["spearman"], m["spearman_ci95"]), _coef(m["kendall"], m["kendall_ci95"]))
            for name, m in section["metrics"].items()]


def agreement_notes(section: dict[str, Any]) -> list[str]:
    """The sentences under the agreement table: what it is, the judge's kappa, the skipped and unchecked ratings."""
    from gleamx.eval.agreement import skipped_text

    counts = ", ".join(f"{n} {r}" for r, n in section["counts"].items())
    resamples = (section.get("bootstrap") or {}).get("resamples")
    intervals = ("95% bootstrap intervals over the rated answers" if resamples else "no intervals (--bootstrap 0)")
    notes = [f"{section['n']} answers rated by people ({counts}; from {section['source']}). Rank correlation of each "
             "metric's per-answer score with the rating (wrong 0 < partly 1 < faithful 2; sentence-level BLEU and "
             f"chrF), with {intervals}; '-' where a side is constant."]
    jk = section.get("judge_kappa")
    if jk:
        agree = "-" if jk["observed_agreement"] is None else f"{100 * jk['observed_agreement']:.1f}%"
        notes.append(f"LLM judge as a yes/no rater (\"faithful\" when its mean score is at least {jk['faithful_at']:g}): "
                     f"Cohen's kappa {_coef(jk['kappa'], jk['kappa_ci95'])} against the rating \"faithful\" on "
                     f"{jk['n']} answers (observed agreement {agree}).")
    skipped = skipped_text(section)
    if skipped:
        notes.append(skipped + ".")
    if section.get("n_unchecked"):
        notes.append(f"{section['n_unchecked']} of the ratings used name no text: that they rate the answer scored "
                     "here was not checked.")
    return notes


def setup_line(results: dict[str, Any]) -> str | None:
    """What the model saw and how it decoded: pixel budget, image tokens per sample, decoding (model runs only)."""
    images, gen = results.get("images"), results.get("generation")
    parts = []
    if images:
        tokens = images.get("image_tokens_per_sample")
        parts.append(f"images {images.get('min_pixels')} to {images.get('max_pixels')} pixels each"
                     + (f", {tokens:.1f} image tokens per sample" if tokens is not None else "")
                     + f" (processor of {images.get('processor')})")
    if gen:
        parts.append("decoding " + ("greedy" if not gen.get("do_sample") else "sampled")
                     + f", repetition_penalty {gen.get('repetition_penalty')}, max_new_tokens {gen.get('max_new_tokens')}")
    return "; ".join(parts) or None


def results_markdown(results: dict[str, Any]) -> str:
    """Tables a person reads: overall (with 95% CIs), by view, by source, confusion, explanation quality."""
    head = "| group | " + " | ".join(MATCH_COLUMNS) + " |\n|" + "---|" * (len(MATCH_COLUMNS) + 1) + "\n"

    def row(name: str, m: dict[str, Any]) -> str:
        return f"| {name} | {m['n']} | " + " | ".join(_pct(m[c]) for c in MATCH_COLUMNS[1:]) + " |\n"

    cfg = results.get("config", {})
    text = "# GLEAM-X evaluation\n\n"
    text += f"- model: `{cfg.get('model') or cfg.get('predictions')}`" + (f" + adapter `{cfg['adapter']}`" if cfg.get("adapter") else "") + "\n"
    text += f"- data: `{cfg.get('data')}` (split {cfg.get('split')}), language {cfg.get('lang')}, task {cfg.get('task')}\n"
    text += (f"- {setup_line(results)}\n\n" if setup_line(results) else "\n")
    text += "## Match\n\nPercentages. Unparseable answers count as wrong and are shown as invalid_rate.\n\n"
    text += (f"Accuracy {_pct(results['accuracy'])}%{_ci(results, 'accuracy')}; on matching pairs "
             f"{_pct(results['accuracy_positive'])}%{_ci(results, 'accuracy_positive')}; on non-matching pairs "
             f"{_pct(results['accuracy_negative'])}%{_ci(results, 'accuracy_negative')} (95% bootstrap intervals).\n\n")
    text += head + row("all", results)
    for view, m in results["by_view"].items():
        text += row(f"view={view}", m)
    for src, m in results.get("by_source", {}).items():
        text += row(f"source={src or '-'}", m)
    c = results["confusion"]
    text += "\n| label \\ answer | match | no match | invalid |\n|---|---|---|---|\n"
    text += f"| match | {c['tp']} | {c['fn']} | {c['invalid_positive']} |\n"
    text += f"| no match | {c['fp']} | {c['tn']} | {c['invalid_negative']} |\n"
    cal = results.get("calibration")
    if cal:
        text += (f"\n## Calibration\n\nP(yes) from the verdict token on {cal['n']} answers: ECE {cal['ece']:.3f}, "
                 f"AUROC {cal['auroc'] if cal['auroc'] is None else round(cal['auroc'], 3)}, Brier {cal['brier']:.3f}.\n")
    expl = results.get("explanation")
    if expl and expl.get("n"):
        text += (f"\n## Explanation quality ({expl['n']} answers with a reference)\n\n"
                 "| metric | raw | baseline | rescaled |\n|---|---|---|---|\n")
        text += "".join(f"| {' | '.join(row)} |\n" for row in explanation_rows(expl))
        text += f"\n{rescale_text(expl)}\n"
        if expl.get("sbert_model"):
            text += f"\nSentence embeddings: `{expl['sbert_model']}`.\n"
        if expl.get("bertscore_model"):
            text += f"BERTScore: `{expl['bertscore_model']}` (F1, no idf; baseline from up to 4 other references per answer).\n"
        judge = expl.get("judge")
        if judge:
            text += "\n### LLM judge (1-5, higher is better)\n\n" + judge["markdown"]
            text += f"\n{judge['n_invalid']} invalid judge replies of {judge['n']}; {judge['n_skipped']} skipped.\n"
    agreement = (expl or {}).get("agreement")
    if agreement:
        text += ("\n### Agreement with people\n\n| metric | n | Spearman rho [95% CI] | Kendall tau-b [95% CI] |\n"
                 "|---|---|---|---|\n")
        text += "".join(f"| {' | '.join(row)} |\n" for row in agreement_rows(agreement))
        text += "\n" + "".join(f"{note}\n" for note in agreement_notes(agreement))
    return text


def _auroc_text(cal: dict[str, Any]) -> str:
    return "-" if cal.get("auroc") is None else f"{cal['auroc']:.3f}"


def _thumb(image: Any, size: int = 192) -> str:
    im = open_rgb(image)
    im.thumbnail((size * 2, size))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _reliability_png(cal: dict[str, Any]) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.4), dpi=100)
    ax.plot([0, 1], [0, 1], "--", color="#999")
    xs = [b["mean_p_yes"] for b in cal["reliability"]]
    ys = [b["frac_match"] for b in cal["reliability"]]
    ax.plot(xs, ys, "o-", color="#1f77b4")
    ax.set_xlabel("mean P(yes)")
    ax.set_ylabel("fraction that match")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"ECE {cal['ece']:.3f}")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def worst_failures(samples: list[GleamSample], predictions: dict[str, dict[str, Any]], results: dict[str, Any],
                   k: int = 12) -> list[tuple[GleamSample, str, str]]:
    """Wrong or invalid verdicts first, then the lowest explanation similarity (rescaled where there is one);
    ``(sample, kind, answer)``."""
    per = ((results.get("explanation") or {}).get("per_sample")) or {}
    ranked = []
    for s in samples:
        answer = predictions[s.id]["prediction"]
        verdict = parse_verdict(answer)
        kind = "invalid" if verdict is None else ("wrong" if verdict != s.label else "right")
        scores = per.get(s.id) or {}
        # rescaled where defined (each answer against its own chance level), else raw
        sim = next((scores[k] for k in ("sbert_cosine_rescaled", "sbert_cosine") if scores.get(k) is not None), None)
        ranked.append(({"invalid": 0, "wrong": 1, "right": 2}[kind], sim if sim is not None else 1.0, s.id, s, kind, answer))
    ranked.sort(key=lambda r: r[:3])
    return [(s, kind, answer) for _, _, _, s, kind, answer in ranked[:k] if kind != "right" or per]


def _similarity_text(sim: dict[str, Any]) -> str:
    """`` · explanation cosine 0.912 raw, 0.412 rescaled`` for a failure card ('' without a score)."""
    if sim.get("sbert_cosine") is None:
        return ""
    resc = sim.get("sbert_cosine_rescaled")
    return (f" · explanation cosine {sim['sbert_cosine']:.3f} raw, "
            + ("- rescaled" if resc is None else f"{resc:.3f} rescaled"))


CSS = """body{font-family:system-ui,-apple-system,'Segoe UI','Noto Sans CJK SC',sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}h1{font-size:1.6em}table{border-collapse:collapse;margin:.8em 0}td,th{border:1px solid #ccc;
padding:.3em .6em;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:8px;padding:.7em 1.1em;min-width:140px}
.card b{display:block;font-size:1.6em}.fail{border:1px solid #ddd;border-radius:8px;margin:1em 0;padding:.8em;display:grid;
grid-template-columns:auto auto 1fr;gap:1em}.fail img{border:1px solid #ccc;max-height:192px}.fail pre{white-space:pre-wrap;
margin:.2em 0;font-size:.85em;background:#fafafa;padding:.4em}.tag{font-weight:bold;color:#b00}.muted{color:#666}"""


def report_html(results: dict[str, Any], samples: list[GleamSample], predictions: dict[str, dict[str, Any]]) -> str:
    """A self-contained HTML page (inline CSS and images, no scripts, no network)."""
    e = html.escape
    cfg = results.get("config", {})
    cards = "".join(
        f'<div class="card">{e(name)}<b>{_pct(results[key])}%</b><span class="muted">{e(_ci(results, key))}</span></div>'
        for key, name in (("accuracy", "accuracy"), ("accuracy_positive", "on matching pairs"),
                          ("accuracy_negative", "on non-matching pairs"), ("invalid_rate", "invalid answers")))
    rows = "".join(
        f"<tr><td>{e(name)}</td>" + "".join(f"<td>{m['n'] if c == 'n' else _pct(m[c])}</td>" for c in MATCH_COLUMNS) + "</tr>"
        for name, m in [("all", results)] + [(f"view={v}", m) for v, m in results["by_view"].items()])
    c = results["confusion"]
    confusion = ("<table><tr><th>label \\ answer</th><th>match</th><th>no match</th><th>invalid</th></tr>"
                 f"<tr><td>match</td><td>{c['tp']}</td><td>{c['fn']}</td><td>{c['invalid_positive']}</td></tr>"
                 f"<tr><td>no match</td><td>{c['fp']}</td><td>{c['tn']}</td><td>{c['invalid_negative']}</td></tr></table>")
    cal = results.get("calibration")
    cal_html = ("<p class='muted'>No token probabilities for this run (predictions made elsewhere).</p>" if not cal else
                f"<p>P(yes) from the verdict token: ECE {cal['ece']:.3f}, AUROC "
                f"{_auroc_text(cal)}, "
                f"Brier {cal['brier']:.3f}</p><img alt='reliability diagram' src='{_reliability_png(cal)}'>")
    expl = results.get("explanation") or {}
    expl_html = ""
    if expl.get("n"):
        cells = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in explanation_rows(expl))
        models = f"sentence embeddings: {expl.get('sbert_model', '-')}" + (
            f"; BERTScore: {expl['bertscore_model']}" if expl.get("bertscore_model") else "")
        expl_html = ("<h2>Explanation quality</h2><table><tr><th>metric</th><th>raw</th><th>baseline</th>"
                     f"<th>rescaled</th></tr>{cells}</table><p class='muted'>{e(rescale_text(expl))}</p>"
                     f"<p class='muted'>{e(models)}</p>")
    agreement = expl.get("agreement")
    if agreement:
        cells = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in agreement_rows(agreement))
        expl_html += ("<h2>Agreement with people</h2><table><tr><th>metric</th><th>n</th><th>Spearman rho [95% CI]</th>"
                      f"<th>Kendall tau-b [95% CI]</th></tr>{cells}</table>"
                      + "".join(f"<p class='muted'>{e(note)}</p>" for note in agreement_notes(agreement)))
    lang = cfg.get("lang") or "en"
    per = expl.get("per_sample") or {}
    fails = []
    for s, kind, answer in worst_failures(samples, predictions, results):
        ref = s.explanation.get(lang) or ("yes" if s.label else "no")
        sim = per.get(s.id) or {}
        fails.append(
            f"<div class='fail'><figure><img alt='query' src='{_thumb(s.query_image)}'><figcaption>{e(s.query_view)} "
            f"(query)</figcaption></figure><figure><img alt='satellite' src='{_thumb(s.satellite_image)}'>"
            f"<figcaption>satellite</figcaption></figure><div><div><span class='tag'>{e(kind)}</span> {e(s.id)} · "
            f"label: {'match' if s.label else 'no match'}{e(_similarity_text(sim))}</div>"
            f"<div>prediction</div><pre>{e(answer)}</pre>"
            f"<div>reference</div><pre>{e(ref)}</pre></div></div>")
    return f"""<!DOCTYPE html><html lang="{e(lang)}"><head><meta charset="utf-8"><title>GLEAM-X evaluation</title>
<style>{CSS}</style></head><body><h1>GLEAM-X evaluation</h1>
<p class="muted">model {e(str(cfg.get('model') or cfg.get('predictions')))}{' + adapter ' + e(cfg['adapter']) if cfg.get('adapter') else ''}
· data {e(str(cfg.get('data')))} ({e(str(cfg.get('split')))}) · language {e(lang)} · task {e(str(cfg.get('task')))} · n={results['n']}</p>
{f'<p class="muted">{e(setup_line(results))}</p>' if setup_line(results) else ''}
<div class="cards">{cards}</div>
<h2>Match by query view</h2><table><tr><th>group</th>{''.join(f'<th>{x}</th>' for x in MATCH_COLUMNS)}</tr>{rows}</table>
<h2>Confusion matrix</h2>{confusion}<h2>Calibration</h2>{cal_html}{expl_html}
<h2>Worst failures</h2>{''.join(fails) or '<p>No failures.</p>'}</body></html>
"""


def write_reports(out: Path, results: dict[str, Any], samples: list[GleamSample],
                  predictions: dict[str, dict[str, Any]]) -> None:
    (out / "results.md").write_text(results_markdown(results), encoding="utf-8")
    (out / "report.html").write_text(report_html(results, samples, predictions), encoding="utf-8")


def _language_rows(combined: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: each headline figure in one row, one column per language (``--lang en,zh``)."""
    langs = combined["langs"]
    by = combined["by_lang"]
    rows = [["n", *(str(by[lang]["n"]) for lang in langs)]]
    for key, name in (("accuracy", "accuracy"), ("accuracy_positive", "on matching pairs"),
                      ("accuracy_negative", "on non-matching pairs"), ("f1", "F1"), ("invalid_rate", "invalid answers")):
        rows.append([f"{name} (%)", *(_pct(by[lang].get(key)) + _ci(by[lang], key) for lang in langs)])
    views = sorted({v for lang in langs for v in by[lang].get("by_view", {})})
    rows += [[f"accuracy, view={v} (%)", *(_pct((by[lang]["by_view"].get(v) or {}).get("accuracy")) for lang in langs)]
             for v in views]
    for key in (*EXPLANATION_KEYS, *(f"{k}_rescaled" for k in RESCALED_KEYS)):
        values = [(by[lang].get("explanation") or {}).get(key) for lang in langs]
        if any(isinstance(v, (int, float)) for v in values):
            rows.append([f"explanation {key}", *("-" if v is None else f"{v:.4f}" for v in values)])
    judges = [((by[lang].get("explanation") or {}).get("judge") or {}).get("overall") for lang in langs]
    if any(j is not None for j in judges):
        rows.append(["LLM judge (1-5)", *("-" if j is None else f"{j:.2f}" for j in judges)])
    agreements = [(by[lang].get("explanation") or {}).get("agreement") or {} for lang in langs]
    if any(agreements):  # --ratings: each metric's Spearman rho with people (intervals in each language's report)
        rows.append(["answers rated by people", *(str(a["n"]) if a else "-" for a in agreements)])
        metrics = dict.fromkeys(m for a in agreements for m in a.get("metrics", {}))
        for m in metrics:
            rows.append([f"Spearman with people, {m}",
                         *(_coef(((a.get("metrics") or {}).get(m) or {}).get("spearman"), None) for a in agreements)])
    return ["", *langs], rows


def languages_markdown(combined: dict[str, Any]) -> str:
    """``results.md`` of a ``--lang en,zh`` run: the languages side by side, then where each one's report is."""
    cfg = combined.get("config", {})
    header, rows = _language_rows(combined)
    text = ("# GLEAM-X evaluation, " + " and ".join(combined["langs"]) + "\n\n"
            f"- model: `{cfg.get('model')}`" + (f" + adapter `{cfg['adapter']}`" if cfg.get("adapter") else "") + "\n"
            f"- data: `{cfg.get('data')}` (split {cfg.get('split')}), task {cfg.get('task')}\n\n"
            "Percentages with 95% bootstrap intervals; explanation scores against each language's references.\n\n")
    text += "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    text += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    text += "\n" + "".join(f"- {lang}: [{lang}/results.md]({lang}/results.md), [{lang}/report.html]({lang}/report.html)\n"
                           for lang in combined["langs"])
    return text


def languages_html(combined: dict[str, Any]) -> str:
    """``report.html`` of a ``--lang en,zh`` run: the side-by-side table and links to each language's report."""
    e = html.escape
    cfg = combined.get("config", {})
    header, rows = _language_rows(combined)
    table = ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
             + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
    links = "".join(f"<li><a href='{e(lang)}/report.html'>{e(lang)}: the full report</a> (failures, calibration)</li>"
                    for lang in combined["langs"])
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>GLEAM-X evaluation</title>
<style>{CSS}</style></head><body><h1>GLEAM-X evaluation, {e(' and '.join(combined['langs']))}</h1>
<p class="muted">model {e(str(cfg.get('model')))}{' + adapter ' + e(cfg['adapter']) if cfg.get('adapter') else ''}
· data {e(str(cfg.get('data')))} ({e(str(cfg.get('split')))}) · task {e(str(cfg.get('task')))}</p>
{table}<ul>{links}</ul></body></html>
"""
