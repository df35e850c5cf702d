"""``gleamx-eval``: generate (or read) answers, parse verdicts, score, write results.

Predictions are appended to ``OUTPUT/predictions.jsonl`` batch by batch, keyed
by sample id and a hash of the generation config, so a rerun with the same
arguments only generates what is missing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gleamx.data.load import load_samples
from gleamx.data.schema import GleamSample
from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.match import grouped_match_metrics, match_metrics
from gleamx.prompts.verdict import parse_verdict


@dataclass
class EvalConfig:
    data: str
    lang: str = "en"
    output: str = "eval-out"
    model: str | None = None
    adapter: str | None = None
    predictions: str | None = None
    split: str | None = "test"
    task: str = "explain"
    batch_size: int = 8
    max_new_tokens: int = 128
    limit: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    overwrite: bool = False

    def generation_key(self) -> str:
        """Hash of everything that changes a generated answer."""
        keys = ("model", "adapter", "lang", "task", "max_new_tokens", "min_pixels", "max_pixels")
        blob = json.dumps({k: getattr(self, k) for k in keys}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_predictions(path: str | Path, key: str | None = None) -> dict[str, str]:
    """``{id: prediction}`` from a JSONL file with ``id`` and ``prediction`` (optionally one config key)."""
    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "predictions file not found (expected JSONL with id, prediction)")
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if key is not None:  # a line cut short by a killed run: regenerate it
                    continue
                raise GleamDataError.at(str(path), lineno, "json", "expected one JSON object per line") from None
            if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("prediction"), str):
                raise GleamDataError.at(str(path), lineno, "prediction", "expected an object with 'id' and 'prediction' (text)")
            if key is None or row.get("config") == key:
                out[str(row["id"])] = row["prediction"]
    return out


def score(samples: list[GleamSample], predictions: dict[str, str]) -> dict[str, Any]:
    """Match metrics overall, by query view and by source, from raw prediction texts."""
    missing = [s.id for s in samples if s.id not in predictions]
    if missing:
        raise GleamDataError.at("predictions", None, "id", f"no prediction for {len(missing)} sample(s), e.g. {missing[0]!r}")
    labels = [s.label for s in samples]
    verdicts = [parse_verdict(predictions[s.id]) for s in samples]
    results = match_metrics(labels, verdicts)
    results["by_view"] = grouped_match_metrics([s.query_view for s in samples], labels, verdicts)
    results["by_source"] = grouped_match_metrics([s.source for s in samples], labels, verdicts)
    return results


def _generate_missing(cfg: EvalConfig, samples: list[GleamSample], pred_path: Path) -> None:
    from rich.progress import Progress

    from gleamx.eval.generate import generate_answers
    from gleamx.models import load_model_and_processor

    key = cfg.generation_key()
    done = read_predictions(pred_path, key) if pred_path.is_file() else {}
    todo = [s for s in samples if s.id not in done]
    if not todo:
        return
    model, processor = load_model_and_processor(cfg.model, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter)
    model.eval()
    with pred_path.open("a", encoding="utf-8") as f, Progress() as bar:
        task = bar.add_task(f"generating ({cfg.lang})", total=len(samples), completed=len(samples) - len(todo))

        def save(batch: list[GleamSample], answers: list[str]) -> None:
            for s, a in zip(batch, answers):
                f.write(json.dumps({"id": s.id, "config": key, "prediction": a}, ensure_ascii=False) + "\n")
            f.flush()
            bar.advance(task, len(batch))

        generate_answers(model, processor, todo, cfg.lang, cfg.task, batch_size=cfg.batch_size,
                         max_new_tokens=cfg.max_new_tokens, on_batch=save)


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate and write ``results.json`` / ``results.md`` under ``cfg.output``; returns the results."""
    if (cfg.model is None) == (cfg.predictions is None):
        raise GleamConfigError("give exactly one of --model (generate) or --predictions (score a file)")
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    samples = load_samples(cfg.data, split=cfg.split).samples
    if cfg.limit:
        samples = samples[: cfg.limit]
    if cfg.predictions:
        predictions = read_predictions(cfg.predictions)
    else:
        pred_path = out / "predictions.jsonl"
        cfg_path = out / "eval_config.json"
        if cfg_path.is_file() and not cfg.overwrite:
            old = json.loads(cfg_path.read_text())
            if old.get("generation_key") != cfg.generation_key():
                raise GleamConfigError(
                    f"{out}: holds predictions made with a different config; use another --output or --overwrite"
                )
        if cfg.overwrite and pred_path.is_file():
            pred_path.unlink()
        cfg_path.write_text(json.dumps({**asdict(cfg), "generation_key": cfg.generation_key()}, indent=2) + "\n")
        _generate_missing(cfg, samples, pred_path)
        predictions = read_predictions(pred_path, cfg.generation_key())
    results = {"config": asdict(cfg), **score(samples, predictions)}
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(results_markdown(results), encoding="utf-8")
    return results


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def results_markdown(results: dict[str, Any]) -> str:
    """Tables a person reads: overall, then by view."""
    cols = ("n", "accuracy", "accuracy_positive", "accuracy_negative", "precision", "recall", "f1", "invalid_rate")
    head = "| group | " + " | ".join(cols) + " |\n|" + "---|" * (len(cols) + 1) + "\n"

    def row(name: str, m: dict[str, Any]) -> str:
        return f"| {name} | {m['n']} | " + " | ".join(_pct(m[c]) for c in cols[1:]) + " |\n"

    cfg = results.get("config", {})
    text = f"# GLEAM-X match results\n\nmodel: `{cfg.get('model') or cfg.get('predictions')}`, "
    text += f"data: `{cfg.get('data')}` ({cfg.get('split')}), lang: {cfg.get('lang')}, task: {cfg.get('task')}\n\n"
    text += "Percentages. Unparseable answers count as wrong and appear in invalid_rate.\n\n"
    text += head + row("all", results)
    for view, m in results["by_view"].items():
        text += row(f"view={view}", m)
    c = results["confusion"]
    text += "\n| | predicted match | predicted no match | invalid |\n|---|---|---|---|\n"
    text += f"| match | {c['tp']} | {c['fn']} | {c['invalid_positive']} |\n"
    text += f"| no match | {c['fp']} | {c['tn']} | {c['invalid_negative']} |\n"
    return text
