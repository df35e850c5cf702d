"""``gleamx-eval``: generate (or read) answers, parse verdicts, score, write the report.

Predictions are appended to ``OUTPUT/predictions.jsonl`` batch by batch, each
line keyed by sample id and a hash of the generation config, so a run killed at
any point and started again with the same arguments generates only what is
missing and ends with the same ``results.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gleamx.data.load import load_samples
from gleamx.data.schema import GleamSample
from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.appendlog import end_with_newline
from gleamx.eval.decoding import greedy_decoding
from gleamx.eval.match import grouped_match_metrics, match_metrics
from gleamx.eval.stats import bootstrap_ci, calibration
from gleamx.prompts.verdict import parse_verdict

BACKENDS = ("hf", "vllm")


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
    backend: str = "hf"
    batch_size: int = 8
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    limit: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    dtype: str = "auto"
    sbert_model: str | None = None
    bertscore_model: str | None = None
    no_explanation_metrics: bool = False
    judge_model: str | None = None
    judge_base_url: str | None = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_concurrency: int = 8
    bootstrap: int = 1000
    overwrite: bool = False

    def generation_config(self) -> dict[str, Any]:
        """The full decoding config both backends get (greedy; see :func:`gleamx.eval.decoding.greedy_decoding`)."""
        return greedy_decoding(self.max_new_tokens, self.repetition_penalty)

    def generation_key(self) -> str:
        """Hash of everything that changes a generated answer (not batch size: batching is exact)."""
        keys = ("model", "adapter", "lang", "task", "backend", "min_pixels", "max_pixels", "dtype")
        blob = json.dumps({**{k: getattr(self, k) for k in keys}, "generation": self.generation_config()},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_predictions(path: str | Path, key: str | None = None) -> dict[str, dict[str, Any]]:
    """``{id: row}`` from a predictions JSONL (``id`` + ``prediction`` text; optional ``p_yes``).

    With ``key`` (our own cache), rows of other configs are ignored and a last line
    cut short by a killed run is skipped (it will be generated again).
    """
    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "predictions file not found (expected JSONL with id, prediction)")
    out: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if key is not None:
                    continue
                raise GleamDataError.at(str(path), lineno, "json", "expected one JSON object per line") from None
            if not isinstance(row, dict) or "id" not in row or not isinstance(row.get("prediction"), str):
                raise GleamDataError.at(str(path), lineno, "prediction",
                                        "expected an object with 'id' and 'prediction' (text)")
            if key is None or row.get("config") == key:
                out[str(row["id"])] = row
    return out


def score(samples: list[GleamSample], predictions: dict[str, dict[str, Any]], *, bootstrap: int = 1000) -> dict[str, Any]:
    """Match metrics overall / by view / by source, bootstrap CIs, and calibration where P(yes) is known."""
    missing = [s.id for s in samples if s.id not in predictions]
    if missing:
        raise GleamDataError.at("predictions", None, "id",
                                f"no prediction for {len(missing)} sample(s), e.g. {missing[0]!r}")
    labels = [s.label for s in samples]
    verdicts = [parse_verdict(predictions[s.id]["prediction"]) for s in samples]
    results = match_metrics(labels, verdicts)
    if bootstrap:
        results["ci95"] = bootstrap_ci(labels, verdicts, n_resamples=bootstrap)
    results["by_view"] = grouped_match_metrics([s.query_view for s in samples], labels, verdicts)
    results["by_source"] = grouped_match_metrics([s.source for s in samples], labels, verdicts)
    p_yes = [predictions[s.id].get("p_yes") for s in samples]
    results["calibration"] = calibration(labels, p_yes) if any(p is not None for p in p_yes) else None
    return results


def _generate_missing(cfg: EvalConfig, samples: list[GleamSample], pred_path: Path, processor: Any,
                      stop_ids: list[int]) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    key = cfg.generation_key()
    done = read_predictions(pred_path, key) if pred_path.is_file() else {}
    todo = [s for s in samples if s.id not in done]
    if not todo:
        return
    end_with_newline(pred_path)
    with pred_path.open("a", encoding="utf-8") as f, Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as bar:
        task = bar.add_task(f"generating ({cfg.lang}, {cfg.task}, {cfg.backend})", total=len(samples),
                            completed=len(samples) - len(todo))

        def append(batch: list[GleamSample], answers: list[str], p_yes: list[float | None]) -> None:
            for s, a, p in zip(batch, answers, p_yes):
                f.write(json.dumps({"id": s.id, "config": key, "prediction": a, "p_yes": p}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a kill -9 after this point loses nothing of this batch
            bar.advance(task, len(batch))

        if cfg.backend == "vllm":
            from gleamx.eval.vllm_backend import generate_vllm

            generate_vllm(cfg, todo, on_chunk=append, processor=processor, stop_ids=stop_ids)
            return

        from gleamx.eval.decoding import hf_generation_config
        from gleamx.eval.generate import generate_answers, verdict_p_yes
        from gleamx.models.adapter import load_for_inference

        model, processor = load_for_inference(cfg.model, cfg.adapter, dtype=cfg.dtype, processor=processor)
        gen = hf_generation_config(cfg.generation_config(), stop_ids=stop_ids,
                                   pad_token_id=processor.tokenizer.pad_token_id)

        def save(batch: list[GleamSample], answers: list[str]) -> None:
            append(batch, answers, verdict_p_yes(model, processor, batch, answers, cfg.lang, cfg.task,
                                                 batch_size=cfg.batch_size))

        generate_answers(model, processor, todo, cfg.lang, cfg.task, batch_size=cfg.batch_size,
                         generation_config=gen, on_batch=save)


def _check_config(cfg: EvalConfig) -> None:
    if (cfg.model is None) == (cfg.predictions is None):
        raise GleamConfigError("give exactly one of --model (generate) or --predictions (score a file)")
    if cfg.backend not in BACKENDS:
        raise GleamConfigError(f"--backend: expected one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    if cfg.lang not in ("en", "zh"):
        raise GleamConfigError(f"--lang: expected en or zh, got {cfg.lang!r}")
    if bool(cfg.judge_model) != bool(cfg.judge_base_url):
        raise GleamConfigError("--judge-model and --judge-base-url go together")
    if cfg.backend == "vllm" and cfg.adapter:
        raise GleamConfigError("--backend vllm: merge the adapter first (gleamx merge) and pass the merged --model")
    if cfg.adapter and not Path(cfg.adapter, "adapter_config.json").is_file():
        raise GleamConfigError(f"--adapter: {cfg.adapter} has no adapter_config.json (expected a PEFT adapter dir)")
    if cfg.repetition_penalty <= 0:
        raise GleamConfigError(
            f"--repetition-penalty: expected a positive number (1.0: none), got {cfg.repetition_penalty}")


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    """Evaluate and write predictions, ``results.json``, ``results.md`` and ``report.html`` under ``cfg.output``."""
    _check_config(cfg)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    samples = load_samples(cfg.data, split=cfg.split).samples
    if cfg.limit:
        samples = samples[: cfg.limit]
    generation = images = None
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
        from gleamx.eval.decoding import checkpoint_stop_token_ids
        from gleamx.eval.generate import image_budget
        from gleamx.models.adapter import load_inference_processor

        # The run's processor (pixel budget, chat template) when the adapter dir holds one; loaded here,
        # not with the model, so results.json records the budget even when nothing is left to generate.
        processor, source = load_inference_processor(cfg.model, cfg.adapter, min_pixels=cfg.min_pixels,
                                                     max_pixels=cfg.max_pixels)
        stop_ids = checkpoint_stop_token_ids(cfg.model, processor.tokenizer)
        generation = {**cfg.generation_config(), "stop_token_ids": stop_ids}
        images = {"processor": source, **image_budget(processor, samples)}
        _generate_missing(cfg, samples, pred_path, processor, stop_ids)
        predictions = read_predictions(pred_path, cfg.generation_key())

    results: dict[str, Any] = {"config": asdict(cfg), "generation": generation, "images": images,
                               **score(samples, predictions, bootstrap=cfg.bootstrap)}
    results["explanation"] = _explanation_scores(cfg, samples, predictions, out)
    from gleamx.eval.report import model_index, write_reports

    results["model_index"] = model_index(results)
    (out / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    write_reports(out, results, samples, predictions)
    return results


def _explanation_scores(cfg: EvalConfig, samples: list[GleamSample], predictions: dict[str, dict[str, Any]],
                        out: Path) -> dict[str, Any] | None:
    """Explanation quality against the reference in ``cfg.lang`` (explain task only)."""
    if cfg.task != "explain" or cfg.no_explanation_metrics:
        return None
    pairs = [(s, predictions[s.id]["prediction"]) for s in samples if s.explanation.get(cfg.lang)]
    if not pairs:
        return {"n": 0, "note": f"no reference explanations in {cfg.lang}"}
    from gleamx.eval.metrics import explanation_text, score_explanations

    preds = [explanation_text(p) for _, p in pairs]
    refs = [explanation_text(s.explanation[cfg.lang]) for s, _ in pairs]
    scores = score_explanations(preds, refs, cfg.lang, sbert_model=cfg.sbert_model,
                                bertscore_model=cfg.bertscore_model)
    per = scores.pop("per_sample", {})
    scores["n"] = len(pairs)
    scores["per_sample"] = {s.id: {k: v[i] for k, v in per.items()} for i, (s, _) in enumerate(pairs)}
    if cfg.judge_model:
        from gleamx.eval.judge import JudgeConfig, items_from_samples, judge_explanations

        texts = {k: v["prediction"] for k, v in predictions.items()}
        items, skipped = items_from_samples(samples, texts, cfg.lang)
        summary = judge_explanations(items, JudgeConfig(model=cfg.judge_model, base_url=cfg.judge_base_url,
                                                        api_key_env=cfg.judge_api_key_env,
                                                        concurrency=cfg.judge_concurrency), out / "judge.jsonl")
        scores["judge"] = {**summary.to_dict(), "n_skipped": len(skipped), "markdown": summary.to_markdown()}
    return scores
