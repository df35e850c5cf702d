"""``gleamx compare RUN_A RUN_B [...]``: paired comparisons of eval runs on the samples both scored.

Each run is an eval output folder (its ``per_sample.jsonl``; a ``--lang en,zh`` run's folder holds one per
language). Every run after the first is compared with the first, sample by sample, on the samples both scored,
identified by language and id *and* by what the sample is (:func:`gleamx.eval.scored.sample_hashes`): the same id
over other images or another label is refused in one line, and runs that scored different sets of samples are
refused unless ``--intersect`` (then the samples both scored, with a note saying how many were left out).

For each group of samples (all, each language, each query view, matching and non-matching pairs): the difference
B minus A of accuracy, F1 and the per-label accuracies with a paired bootstrap interval (the samples are drawn once
per resample and both runs scored on them), McNemar's exact test on right/wrong verdicts, and the difference of
every explanation score both runs have (per-sample sbert cosine raw and rescaled, chrF, ROUGE-L, BERTScore, the
judge's mean). For each run: its rate of "yes" verdicts against the rate of matching pairs (a lean to "no match"
shows as a negative difference). Written as ``compare.json`` (for scripts), ``compare.md`` and ``compare.html``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.checks import COUNT_MAX, check_int, check_ranges, comma_list, field_help
from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.scored import FILE, read_rows
from gleamx.eval.stats import mcnemar_exact, paired_bootstrap_diff, paired_bootstrap_match, yes_rate_bias

MATCH_KEYS = ("accuracy", "f1", "accuracy_positive", "accuracy_negative", "invalid_rate")
Key = tuple[str, str]  # (language, sample id)


@dataclass(kw_only=True)
class CompareConfig:
    """Compare eval runs on the samples they share: paired intervals, McNemar's test, the "no match" bias."""

    runs: list[str] = field(metadata={"positional": True, "help": "eval output folders; the first is the reference "
                                                                  "(A), each other one is compared with it"})
    names: list[str] | None = field(default=None, metadata=field_help(
        "a short name per run for the tables (default: each folder's name)"))
    output: str | None = field(default=None, metadata=field_help(
        "folder for compare.json, compare.md and compare.html (default: print the tables only)"))
    intersect: bool = field(default=False, metadata=field_help(
        "runs that scored different samples: compare the samples all of them scored (default: refuse)"))
    bootstrap: int = field(default=2000, metadata=field_help("bootstrap resamples for the intervals", low=100,
                                                             high=100_000))
    seed: int = field(default=0, metadata=field_help("seed of the bootstrap resamples", low=0, high=COUNT_MAX))
    overwrite: bool = field(default=False, metadata=field_help("replace what an earlier compare wrote in --output"))

    def __post_init__(self) -> None:
        self.runs = comma_list(self.runs) or []
        self.names = comma_list(self.names)
        if len(self.runs) < 2:
            raise GleamConfigError(f"runs: expected at least two eval output folders to compare, got {len(self.runs)}")
        if self.names is not None and len(self.names) != len(self.runs):
            raise GleamConfigError(f"--names: expected one name per run ({len(self.runs)}), got {len(self.names)}")
        names = self.names or [Path(r).name or r for r in self.runs]
        if len(set(names)) != len(names):
            raise GleamConfigError(f"--names: runs need distinct names (got {', '.join(names)}); pass --names")
        check_int("--bootstrap", self.bootstrap, 100)
        check_int("--seed", self.seed, 0)
        check_ranges(self)

    def run_names(self) -> list[str]:
        return self.names or [Path(r).name or r for r in self.runs]


@dataclass
class Run:
    """One eval run's scored samples, keyed by (language, id)."""

    name: str
    path: Path
    rows: dict[Key, dict[str, Any]]


def load_run(path: str | Path, name: str) -> Run:
    """The rows of an eval output folder (or of each language folder of a ``--lang en,zh`` run)."""
    path = Path(path)
    if not path.is_dir():
        raise GleamConfigError(f"{path}: not a folder (expected a gleamx eval output folder)")
    files = [path / FILE] if (path / FILE).is_file() else sorted(path.glob(f"*/{FILE}"))
    if not files:
        raise GleamDataError.at(str(path / FILE), None, "path", "not found: expected the per_sample.jsonl that gleamx "
                                                               "eval writes (rerun the eval with this gleamx)")
    rows: dict[Key, dict[str, Any]] = {}
    for f in files:
        for row in read_rows(f):
            key = (row["lang"], row["id"])
            if key in rows:
                raise GleamDataError.at(str(f), None, "id", f"sample {row['id']!r} ({row['lang']}) appears twice in "
                                                            f"{path}: expected each sample once per language")
            rows[key] = row
    return Run(name, path, rows)


def shared_keys(a: Run, others: list[Run], intersect: bool) -> tuple[list[Key], list[str]]:
    """The samples every run scored, in A's order, and the notes to print; refused in one line when a sample
    differs between runs, or (without ``intersect``) when the runs scored different samples."""
    keys = list(a.rows)
    notes: list[str] = []
    for b in others:
        for key in a.rows.keys() & b.rows.keys():
            if a.rows[key]["sample"] != b.rows[key]["sample"]:
                raise GleamDataError(f"{b.path}: sample {key[1]!r} ({key[0]}) is not the one {a.path} scored under "
                                     "that id (other images, label or view): compare runs of the same data")
        only_a, only_b = a.rows.keys() - b.rows.keys(), b.rows.keys() - a.rows.keys()
        if not (only_a or only_b):
            continue
        example = sorted(only_a or only_b)[0]
        said = (f"{b.name} scored {len(b.rows)} samples and {a.name} {len(a.rows)}: {len(only_a)} only in {a.name}, "
                f"{len(only_b)} only in {b.name} (e.g. {example[1]!r}, {example[0]})")
        if not intersect:
            raise GleamDataError(f"{b.path}: {said}; compare runs of the same data, or pass --intersect to compare the "
                                 "samples both scored")
        keys = [k for k in keys if k in b.rows]
        notes.append(f"note: {said}; comparing the samples every run scored")
    if not keys:
        raise GleamDataError(f"{a.path}: the runs share no sample; nothing to compare")
    if notes:
        notes.append(f"note: {len(keys)} samples compared")
    return keys, notes


def _groups(a: Run, keys: list[Key]) -> dict[str, list[Key]]:
    """All samples, then each language (when there are several), query view and label."""
    by: dict[str, Any] = {"view": lambda k: a.rows[k]["query_view"],
                          "label": lambda k: "match" if a.rows[k]["label"] else "no match"}
    if len({k[0] for k in keys}) > 1:
        by = {"lang": lambda k: k[0], **by}
    groups: dict[str, list[Key]] = {"all": keys}
    for name, of in by.items():
        for value in sorted({of(k) for k in keys}):
            groups[f"{name}={value}"] = [k for k in keys if of(k) == value]
    return groups


def _scores(row: dict[str, Any]) -> dict[str, float]:
    """A sample's explanation scores by name (``judge`` for the judge's mean), numbers only."""
    out = {k: float(v) for k, v in (row.get("explanation") or {}).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    judge = (row.get("judge") or {}).get("overall")
    if isinstance(judge, (int, float)):
        out["judge"] = float(judge)
    return out


def _pair(a: Run, b: Run, keys: list[Key], n_resamples: int, seed: int) -> dict[str, Any]:
    labels = [a.rows[k]["label"] for k in keys]
    va, vb = [a.rows[k]["verdict"] for k in keys], [b.rows[k]["verdict"] for k in keys]
    right_a = [v is not None and v == y for v, y in zip(va, labels)]
    right_b = [v is not None and v == y for v, y in zip(vb, labels)]
    out: dict[str, Any] = {"n": len(keys), "match": paired_bootstrap_match(labels, va, vb, n_resamples=n_resamples,
                                                                        seed=seed),
                           "mcnemar": mcnemar_exact(right_a, right_b), "explanation": {}}
    per_a, per_b = [_scores(a.rows[k]) for k in keys], [_scores(b.rows[k]) for k in keys]
    for metric in sorted({m for s in per_a for m in s} & {m for s in per_b for m in s}):
        both = [(x[metric], y[metric]) for x, y in zip(per_a, per_b) if metric in x and metric in y]
        diff = paired_bootstrap_diff([x for x, _ in both], [y for _, y in both], n_resamples=n_resamples, seed=seed)
        out["explanation"][metric] = {"n": diff["n"], "a": sum(x for x, _ in both) / len(both),
                                      "b": sum(y for _, y in both) / len(both), "diff": diff["diff"],
                                      "ci95": [diff["ci_low"], diff["ci_high"]]}
    return out


def compare(cfg: CompareConfig) -> dict[str, Any]:
    """The comparison as ``compare.json`` holds it (see the module docstring)."""
    names = cfg.run_names()
    runs = [load_run(p, n) for p, n in zip(cfg.runs, names)]
    a, others = runs[0], runs[1:]
    keys, notes = shared_keys(a, others, cfg.intersect)
    groups = _groups(a, keys)
    tasks = {r.name: sorted({row["task"] for row in r.rows.values() if "task" in row}) for r in runs}
    return {
        "runs": [{"name": r.name, "path": str(r.path), "n_scored": len(r.rows), "tasks": tasks[r.name]} for r in runs],
        "reference": a.name, "n": len(keys), "notes": notes,
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": 0.95},
        "comparisons": [{"a": a.name, "b": b.name,
                         "groups": {g: _pair(a, b, ks, cfg.bootstrap, cfg.seed) for g, ks in groups.items()}}
                        for b in others],
        "bias": {r.name: {g: yes_rate_bias([r.rows[k]["label"] for k in ks], [r.rows[k]["verdict"] for k in ks],
                                           n_resamples=cfg.bootstrap, seed=cfg.seed) for g, ks in groups.items()}
                 for r in runs},
    }


# --- tables ------------------------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _pct_ci(diff: float | None, ci: list[float] | None) -> str:
    if diff is None:
        return "-"
    return f"{100 * diff:+.2f}" + (f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "")


def _rate_ci(rate: float, ci: list[float] | None) -> str:
    return f"{100 * rate:.2f}" + (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else "")


def _num_ci(diff: float, ci: list[float] | None) -> str:
    return f"{diff:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "")


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def tables(result: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of every table, for Markdown, HTML and the console alike."""
    out = []
    for comp in result["comparisons"]:
        a, b = comp["a"], comp["b"]
        rows = []
        for group, r in comp["groups"].items():
            m, mc = r["match"], r["mcnemar"]
            rows.append([group, str(r["n"]), _pct(m["accuracy"]["a"]), _pct(m["accuracy"]["b"]),
                         _pct_ci(m["accuracy"]["diff"], m["accuracy"]["ci95"]),
                         f"{_p(mc['p_value'])} ({mc['a_only']}/{mc['b_only']})",
                         _pct(m["f1"]["a"]), _pct(m["f1"]["b"]), _pct_ci(m["f1"]["diff"], m["f1"]["ci95"])])
        out.append((f"{b} vs {a}: match verdicts (B minus A, in points; 95% paired bootstrap intervals)",
                    ["samples", "n", f"accuracy {a}", f"accuracy {b}", "Δ accuracy [95% CI]",
                     f"McNemar p ({a} only / {b} only right)", f"F1 {a}", f"F1 {b}", "Δ F1 [95% CI]"], rows))
        expl = [[group, metric, str(e["n"]), f"{e['a']:.4f}", f"{e['b']:.4f}", _num_ci(e["diff"], e["ci95"])]
                for group, r in comp["groups"].items() for metric, e in r["explanation"].items()]
        if expl:
            out.append((f"{b} vs {a}: explanation scores (per-sample means; B minus A, 95% paired bootstrap intervals)",
                        ["samples", "metric", "n", a, b, "Δ [95% CI]"], expl))
    bias = [[name, group, str(v["n"]), _pct(v["label_rate"]), _rate_ci(v["yes_rate"], v["yes_rate_ci95"]),
             _pct_ci(v["bias"], v["bias_ci95"])]
            for name, groups in result["bias"].items() for group, v in groups.items()]
    out.append(('"match" bias: how often each run says "yes" against how often the pair matches (in %; '
                'below 0: a lean to "no match")',
                ["run", "samples", "n", "matching pairs", '"yes" verdicts [95% CI]', "yes − matching [95% CI]"], bias))
    return out


def to_markdown(result: dict[str, Any]) -> str:
    lines = [f"# gleamx compare: {', '.join(r['name'] for r in result['runs'])}", "",
             f"{result['n']} samples every run scored; reference (A): {result['reference']}. Intervals: "
             f"{result['bootstrap']['resamples']} bootstrap resamples of the samples (seed "
             f"{result['bootstrap']['seed']}); McNemar's exact test on right/wrong verdicts (two-sided, not corrected "
             "for the number of groups and runs).", *result["notes"], ""]
    for title, header, rows in tables(result):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
    return "\n".join(lines)


def to_html(result: dict[str, Any]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>gleamx compare</title><style>"
             "body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;"
             "margin-bottom:2em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
             "td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}</style></head><body>",
             f"<h1>gleamx compare: {html.escape(', '.join(r['name'] for r in result['runs']))}</h1>",
             f"<p>{result['n']} samples every run scored; reference (A): {html.escape(result['reference'])}.</p>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in result["notes"]]
    for title, header, rows in tables(result):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    return "\n".join(parts + ["</body></html>"]) + "\n"


@dataclass
class CompareResult:
    """What :func:`run_compare` found (``compare.json``'s content) and where it wrote the tables."""

    result: dict[str, Any]
    output: Path | None

    def as_dict(self) -> dict[str, Any]:
        return self.result

    def summary_lines(self) -> list[str]:
        """The Markdown tables, then where they were written."""
        lines = to_markdown(self.result).splitlines()
        if self.output is not None:
            lines.append(f"written: {self.output}/compare.md, compare.html, compare.json")
        return lines


def run_compare(cfg: CompareConfig) -> CompareResult:
    """Compare the runs and, with ``cfg.output``, write ``compare.json``, ``compare.md`` and ``compare.html``."""
    result = compare(cfg)
    if not cfg.output:
        return CompareResult(result, None)
    from gleamx.outputs import claim_folder

    folder = claim_folder(cfg.output, "--output", command="compare",
                          identity={"runs": [str(Path(r).resolve()) for r in cfg.runs], "names": cfg.run_names(),
                                    "intersect": cfg.intersect, "bootstrap": cfg.bootstrap, "seed": cfg.seed},
                          overwrite=cfg.overwrite, inputs={f"runs[{i}]": r for i, r in enumerate(cfg.runs)})
    out = Path(cfg.output)
    (out / "compare.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(to_markdown(result), encoding="utf-8")
    (out / "compare.html").write_text(to_html(result), encoding="utf-8")
    folder.done()
    return CompareResult(result, out)
