"""``gleamx-eval``: generate (or read) answers, parse verdicts, score, write the report.

Predictions are appended to ``OUTPUT/predictions.jsonl`` batch by batch. Each row carries two keys:

* ``config``: the run's key (:meth:`EvalConfig.generation_key`): the model's and the adapter's
  contents (:func:`gleamx.eval.fingerprint.model_fingerprint`), the decoding config, and language,
  task, backend, pixel flags and dtype. A directory holding answers under another run key is
  refused in one line naming what changed, unless ``--overwrite``.
* ``input``: a hash of what the model saw for that sample (prompt text, image bytes, pixel budget;
  :func:`gleamx.eval.fingerprint.sample_input_keys`). A row whose sample changed (other data under
  the same id) is stale and that sample alone is generated again.

A run killed at any point and started again with the same arguments generates only what is missing
(whole batches of the uninterrupted run's batch grid, so every answer and P(yes) is computed with the
same batch members) and ends with a byte-identical ``results.json``. One run writes into a directory
at a time (``OUTPUT/.lock``). ``eval_config.json`` records the mode (``model`` or ``predictions``) and
the key of what made the directory's results; another mode or config is refused unless ``--overwrite``.

Under ``accelerate launch --num_processes N`` (transformers backend) the batches to generate are shared out
between the processes and their answers gathered into the first one, which alone writes the folder's files and
scores, exactly as one process would (:mod:`gleamx.eval.ranks`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gleamx.data.jsonl import read_json_objects
from gleamx.data.load import load_samples, no_samples
from gleamx.data.schema import GleamSample, samples_of
from gleamx.checks import gleamx_provenance
from gleamx.console import percent_text
from gleamx.errors import GleamConfigError, GleamDataError, GleamError
from gleamx.outputs import claim_folder
from gleamx.eval.appendlog import read_records, repair_tail, single_writer
from gleamx.eval.agreement import agreement, agreement_lines, usable_ratings
from gleamx.eval.config import BACKENDS, EvalConfig, config_hash  # noqa: F401  (EvalConfig, BACKENDS re-exported)
from gleamx.eval.match import grouped_match_metrics, match_metrics
from gleamx.eval.ranks import Ranks, fold_rank_logs, rank_log, rank_logs
from gleamx.eval.ratings import Rating, read_ratings
from gleamx.eval.stats import bootstrap_ci, calibration
from gleamx.task.verdict import parse_verdict

_FLAG = {"max_new_tokens": "--max-new-tokens", "repetition_penalty": "--repetition-penalty"}


def _is_probability(p: Any) -> bool:
    return isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and 0.0 <= p <= 1.0


def read_predictions(path: str | Path, key: str | None = None,
                     inputs: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``{id: row}`` from a predictions JSONL (``id`` + ``prediction`` text; optional ``p_yes``).

    Without ``key`` (a file made elsewhere, ``--predictions``) every line is checked: a bad line is
    one ``file:line: field: expected ...`` error (not UTF-8, not a JSON object, no text ``prediction``,
    a repeated ``id``, a ``p_yes`` that is not a probability in [0, 1] or null).

    With ``key`` (gleamx-eval's own cache) only rows made under that run key are read, and with
    ``inputs`` (``{id: input hash}``) only rows whose sample is unchanged; a line damaged by a kill
    is skipped (it is generated again).
    """
    path = Path(path)
    if key is not None:
        out: dict[str, dict[str, Any]] = {}
        for _, row in read_records(path):
            rid = row.get("id")
            if not isinstance(rid, str) or not isinstance(row.get("prediction"), str) or row.get("config") != key:
                continue
            if inputs is not None and row.get("input") != inputs.get(rid):
                continue
            out[rid] = row
        return out
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "predictions file not found (expected JSONL with id, prediction)")
    out, first_seen = {}, {}
    for lineno, row in read_json_objects(path):
        if "id" not in row or not isinstance(row.get("prediction"), str):
            raise GleamDataError.at(str(path), lineno, "prediction",
                                    "expected an object with 'id' and 'prediction' (text)")
        if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
            raise GleamDataError.at(str(path), lineno, "id", f"expected a string, got {row['id']!r}")
        rid = str(row["id"])
        if rid in first_seen:
            raise GleamDataError.at(str(path), lineno, "id",
                                    f"duplicate id {rid!r} (first on line {first_seen[rid]}); "
                                    "expected one prediction per id")
        p = row.get("p_yes")
        if p is not None and not _is_probability(p):
            raise GleamDataError.at(str(path), lineno, "p_yes",
                                    f"expected a probability in [0, 1] or null, got {json.dumps(p)[:40]}")
        first_seen[rid] = lineno
        out[rid] = row
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



def _plan(samples: list[GleamSample], done: set[str], stale: set[str],
          batch_size: int) -> tuple[list[GleamSample], list[GleamSample]]:
    """``(grid, changed)``: what to generate.

    ``grid``: every batch of an uninterrupted run's batch grid (``batch_size`` consecutive samples) in
    which a sample has no answer yet (a killed run), whole, so that each answer and P(yes) is computed
    with the same batch members as without the kill. Only the last grid batch can be short, and it
    comes last, so generating ``grid`` ``batch_size`` at a time reproduces the grid.
    ``changed``: the other samples whose cached answer is stale (their input changed), alone.
    """
    grid: list[GleamSample] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        if any(s.id not in done and s.id not in stale for s in batch):
            grid.extend(batch)
    in_grid = {s.id for s in grid}
    return grid, [s for s in samples if s.id in stale and s.id not in in_grid]


@dataclass
class _Plan:
    """What a model eval generates, as the main process decided it and sends to the others: ``batches`` (each a
    list of positions in the evaluated samples, in the order a single process generates them), the run ``key``
    and each of their samples' ``input`` hash (the predictions cache's row fields)."""

    key: str
    batches: list[list[int]]
    inputs: dict[str, str]


def _missing(cfg: EvalConfig, samples: list[GleamSample], pred_path: Path, key: str,
             inputs: dict[str, str]) -> list[list[int]]:
    """The batches (sample positions) to generate: the grid batches a killed run left unfinished, then the
    samples whose cached answer is stale, ``batch_size`` at a time (see :func:`_plan`)."""
    from gleamx.console import console

    wanted = {s.id for s in samples}
    done: set[str] = set()
    cached: set[str] = set()
    for _, row in read_records(pred_path):
        rid = row.get("id")
        if rid in wanted and row.get("config") == key and isinstance(row.get("prediction"), str):
            cached.add(rid)
            if row.get("input") == inputs[rid]:
                done.add(rid)
    stale = cached - done
    if stale:
        console.print(f"note: {len(stale)} sample(s) changed since their answers in {pred_path} were made "
                      f"(prompt or image bytes), e.g. {sorted(stale)[0]!r}; generating them again", markup=False)
    # vLLM batches internally (no batch grid to keep), so only its missing samples are asked for.
    size = cfg.batch_size if cfg.backend == "hf" else 1
    grid, changed = _plan(samples, done, stale, size)
    at = {id(s): i for i, s in enumerate(samples)}
    return [[at[id(s)] for s in part[i:i + size]] for part in (grid, changed) for i in range(0, len(part), size)]


def _generate(cfg: EvalConfig, samples: list[GleamSample], plan: _Plan, out: Path, processor: Any,
              stop_ids: list[int], ranks: Ranks) -> None:
    """Generate this process's share of ``plan.batches``, appending each finished batch to its log; with several
    processes, the main one then gathers every answer into ``predictions.jsonl`` (see :mod:`gleamx.eval.ranks`).

    The batches are the single-process run's own (whole batches are shared out, never re-cut), so every answer
    and P(yes) is computed with the same batch members however many processes there are."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if not plan.batches:
        return
    mine = ranks.share(plan.batches)
    rows: list[dict[str, Any]] = []
    if mine:
        todo = [samples[i] for batch in mine for i in batch]
        shown = ranks.is_main  # one progress bar: the main process's share
        whose = f"; process 1 of {ranks.count}" if ranks.count > 1 else ""
        with rank_log(out, ranks.index).open("a", encoding="utf-8") as f, Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            disable=not shown,
        ) as bar:
            total = len(samples) if ranks.count == 1 else len(todo)
            task = bar.add_task(f"generating ({cfg.lang}, {cfg.task}, {cfg.backend}{whose})", total=total,
                                completed=total - len(todo))

            def append(batch: list[GleamSample], answers: list[str], p_yes: list[float | None]) -> None:
                new = [{"id": s.id, "config": plan.key, "input": plan.inputs[s.id], "prediction": a, "p_yes": p}
                       for s, a, p in zip(batch, answers, p_yes)]
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                f.flush()
                os.fsync(f.fileno())  # a kill -9 after this point loses nothing of this batch
                rows.extend(new)
                bar.advance(task, len(batch))

            if cfg.backend == "vllm":  # one process only (evaluate refuses more)
                from gleamx.eval.vllm_backend import generate_vllm

                generate_vllm(cfg, todo, on_chunk=append, processor=processor, stop_ids=stop_ids)
            else:
                _generate_hf(cfg, [[samples[i] for i in batch] for batch in mine], processor, stop_ids, ranks,
                             append)
    if ranks.count > 1:
        gathered = ranks.gather(rows)
        if ranks.is_main:  # the others' answers after the main's: the single-process file's order
            pred_path = out / "predictions.jsonl"
            with pred_path.open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for part in gathered[1:] for r in part))
                f.flush()
                os.fsync(f.fileno())
            for log in rank_logs(out):  # in predictions.jsonl now
                log.unlink()


def _generate_hf(cfg: EvalConfig, batches: list[list[GleamSample]], processor: Any, stop_ids: list[int],
                 ranks: Ranks, append: Any) -> None:
    """Each of ``batches`` generated as one batch with the transformers backend, then its P(yes) read."""
    from gleamx.eval.decoding import hf_generation_config
    from gleamx.eval.generate import generate_batch, verdict_p_yes
    from gleamx.models.adapter import load_for_inference

    model, processor = load_for_inference(cfg.model, cfg.adapter, dtype=cfg.dtype, processor=processor,
                                          device=ranks.device)
    gen = hf_generation_config(cfg.generation_config(), stop_ids=stop_ids,
                               pad_token_id=processor.tokenizer.pad_token_id)
    for batch in batches:
        answers = generate_batch(model, processor, batch, cfg.lang, cfg.task, generation_config=gen)
        append(batch, answers, verdict_p_yes(model, processor, batch, answers, cfg.lang, cfg.task,
                                             batch_size=cfg.batch_size))


def _check_paths(cfg: EvalConfig) -> None:
    """What only the file system (or one quick Hub call) can say (the values themselves are checked when the
    config is made)."""
    if cfg.adapter:
        from gleamx.models.adapter import check_adapter_dir

        check_adapter_dir(cfg.adapter)
    if cfg.ratings and not Path(cfg.ratings).is_file():  # said now, not after generating
        raise GleamConfigError(f"--ratings: {cfg.ratings}: file not found (expected JSONL with id, lang, rating; "
                               "gleamx review serve --predictions writes one)")
    if cfg.task == "explain" and not cfg.no_explanation_metrics:  # the metric models: said now, not after generating
        from gleamx.eval.metrics import check_metric_model

        check_metric_model("--sbert-model", cfg.sbert_model, "sbert_cosine")
        check_metric_model("--bertscore-model", cfg.bertscore_model, "bertscore")


def _source(value: str | None) -> str | None:
    """A path as an absolute path (so the same file named two ways is one source); anything else as given."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def _describe_change(old: dict[str, Any], cfg: EvalConfig, parts: dict[str, Any]) -> str:
    """What differs between the recorded run and this one, for the one-line refusal."""
    old_parts = old.get("key_parts")
    if not isinstance(old_parts, dict):
        return "recorded by an older gleamx"
    said: list[str] = []
    for name, value in parts.items():
        before = old_parts.get(name)
        if before == value:
            continue
        if name in ("model", "adapter", "predictions", "data"):
            flag, given_before = f"--{name}", old.get(name)
            now = getattr(cfg, name)
            if name in ("model", "adapter") and given_before == now and now is not None:
                said.append(f"{flag} {now}: its files changed since (weights or config)")
            else:
                said.append(f"{flag}: {given_before} -> {now}")
        elif name == "generation" and isinstance(before, dict):
            said += [f"{_FLAG.get(k, 'decoding ' + k)}: {before.get(k)} -> {v}" for k, v in value.items()
                     if before.get(k) != v]
        else:
            said.append(f"--{name.replace('_', '-')}: {before} -> {value}")
    return "; ".join(said) or "recorded key differs"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _claim_output(out: Path, cfg: EvalConfig, mode: str, parts: dict[str, Any]) -> str:
    """Check that ``out`` holds nothing made by another mode or config (unless ``--overwrite``), then
    record this run in ``eval_config.json``. Returns the key. Call with the directory's lock held."""
    key = config_hash({"mode": mode, **parts}) if mode == "predictions" else config_hash(parts)
    cfg_path, pred_path = out / "eval_config.json", out / "predictions.jsonl"
    has_work = (out / "results.json").is_file() or (pred_path.is_file() and pred_path.stat().st_size > 0)
    if not cfg.overwrite and has_work:
        try:
            old = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None
        if not isinstance(old, dict):
            raise GleamConfigError(f"{out}: holds results of an unknown eval (no readable eval_config.json); "
                                   "use another --output or --overwrite")
        old_mode = old.get("mode") or ("model" if "generation_key" in old else "predictions")
        if old_mode != mode:
            made_by = f"--model {old.get('model')}" if old_mode == "model" else f"--predictions {old.get('predictions')}"
            raise GleamConfigError(f"{out}: holds the results of a {old_mode} eval ({made_by}), which this "
                                   f"{mode} eval would overwrite; use another --output or --overwrite")
        if old.get("key", old.get("generation_key")) != key:
            what = "predictions" if mode == "model" else "results"
            raise GleamConfigError(f"{out}: holds {what} made with a different config; use another --output or "
                                   f"--overwrite ({_describe_change(old, cfg, parts)})")
    if cfg.overwrite and pred_path.is_file():
        pred_path.unlink()
    record = {**asdict(cfg), "mode": mode, "key": key, "key_parts": parts}
    if mode == "model":
        record["generation_key"] = key
    _write_atomic(cfg_path, json.dumps(record, ensure_ascii=False, indent=2) + "\n")
    return key


@dataclass
class EvalResult:
    """What :func:`run_eval` wrote: ``results`` is ``results.json`` (scores, config, provenance), ``output`` the
    folder holding it with ``results.md``, ``report.html`` and the predictions."""

    results: dict[str, Any]
    output: Path

    def as_dict(self) -> dict[str, Any]:
        return self.results

    def summary_lines(self) -> list[str]:
        """What ``gleamx eval`` prints: accuracy overall and by label, the image budget, the explanation scores,
        and where the report, tables and numbers are (each language's, then the side-by-side report's); nothing
        in a process other than the main one of an ``accelerate launch`` (it scored nothing)."""
        if not self.results:
            return []
        if "by_lang" in self.results:
            lines = []
            for lang, results in self.results["by_lang"].items():
                lines += [f"[{lang}]"] + EvalResult(results, self.output / lang).summary_lines()
            return lines + [f"both languages side by side: {self.output}/report.html  tables: {self.output}/results.md"]
        r, pct = self.results, lambda x: percent_text(x, sign="%")
        lines = [f"n={r['n']}  accuracy={pct(r['accuracy'])}  on matching pairs={pct(r['accuracy_positive'])}"
                 f"  on non-matching pairs={pct(r['accuracy_negative'])}  invalid={pct(r['invalid_rate'])}"]
        images = r.get("images") or {}
        if images.get("image_tokens_per_sample") is not None and images.get("min_pixels") and images.get("max_pixels"):
            lines.append(f"images: {images['min_pixels']:,} to {images['max_pixels']:,} pixels each, "
                         f"{images['image_tokens_per_sample']:.1f} image tokens per sample "
                         f"(processor of {images['processor']})")
        expl = r.get("explanation") or {}
        if expl.get("sbert_cosine") is not None:
            rescaled = expl.get("sbert_cosine_rescaled")
            lines.append(f"explanations: sbert_cosine={expl['sbert_cosine']:.4f} "
                         f"(rescaled {'-' if rescaled is None else f'{rescaled:.4f}'}; {expl.get('sbert_model')})  "
                         f"bleu={expl.get('bleu', 0):.2f}  chrf={expl.get('chrf', 0):.2f}  "
                         f"rouge_l={expl.get('rouge_l', 0):.4f}")
        lines += agreement_lines(expl.get("agreement"))
        return lines + [f"report: {self.output}/report.html  tables: {self.output}/results.md  "
                        f"numbers: {self.output}/results.json"]


def run_eval(cfg: EvalConfig) -> EvalResult:
    """Evaluate and write predictions, ``results.json``, ``results.md`` and ``report.html`` under ``cfg.output``."""
    return EvalResult(evaluate(cfg)[0], Path(cfg.output))


_VLLM_ONE_PROCESS = ("--backend vllm: run it as one process, not under accelerate launch --num_processes N "
                     "(vLLM spreads a model over GPUs itself); or use --backend hf")


def evaluate(cfg: EvalConfig) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """:func:`run_eval`, also returning the predictions scored (``{id: row}``; of the first language when there
    are several). Under ``accelerate launch`` with N processes each one generates a share of the samples and the
    first one scores and writes everything; the others return empty results (:mod:`gleamx.eval.ranks`)."""
    if len(cfg.languages()) > 1:
        return _evaluate_languages(cfg)
    ranks = Ranks.current()
    if not ranks.is_main:
        return _other_process(cfg, ranks)
    out = Path(cfg.output)
    with contextlib.ExitStack() as held:
        try:  # what stops the run before generation stops every process, in one line printed once
            if ranks.count > 1 and cfg.backend == "vllm" and cfg.model:
                raise GleamConfigError(_VLLM_ONE_PROCESS)
            _check_paths(cfg)
            # The one output rule (gleamx.outputs): never into an input, and a folder of the user's files only
            # with --overwrite; which earlier answers a config may reuse is eval_config.json's to say
            # (_claim_output).
            folder = claim_folder(out, "--output", command="eval", identity={}, overwrite=cfg.overwrite,
                                  replace=False, marker="eval_config.json",
                                  inputs={"--data": cfg.data, "--predictions": cfg.predictions,
                                          "--adapter": cfg.adapter, "--model": cfg.model, "--ratings": cfg.ratings})
            held.enter_context(single_writer(out, "gleamx-eval"))
            run = _prepare(cfg, out)
        except GleamError as e:
            ranks.stop(e)
        ranks.from_main(run.plan)
        if run.plan is not None:
            _generate(cfg, run.samples, run.plan, out, run.processor, run.stop_ids, ranks)
        result = _score_and_write(cfg, out, run)
    folder.done()
    return result


def _evaluate_languages(cfg: EvalConfig) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--lang en,zh``: each language evaluated as its own run in ``OUTPUT/<lang>`` (resumable, comparable on its
    own), then ``OUTPUT/results.json``, ``results.md`` and ``report.html`` with the languages side by side."""
    from dataclasses import replace

    from gleamx.eval.report import languages_html, languages_markdown

    out = Path(cfg.output)
    ranks = Ranks.current()
    folder = None
    if ranks.is_main:
        try:
            folder = claim_folder(out, "--output", command="eval", identity={"lang": cfg.lang},
                                  overwrite=cfg.overwrite, replace=False,
                                  inputs={"--data": cfg.data, "--adapter": cfg.adapter, "--model": cfg.model,
                                          "--ratings": cfg.ratings})
        except GleamError as e:
            ranks.stop(e)  # the others hear it where they wait for the first language's plan
    by_lang: dict[str, dict[str, Any]] = {}
    first: dict[str, dict[str, Any]] | None = None
    for lang in cfg.languages():
        results, predictions = evaluate(replace(cfg, lang=lang, output=str(out / lang)))
        by_lang[lang] = results
        first = predictions if first is None else first
    if folder is None:  # not the main process: it wrote nothing
        return {}, {}
    combined = {"config": asdict(cfg), "gleamx": gleamx_provenance(), "langs": cfg.languages(), "by_lang": by_lang}
    _write_atomic(out / "results.json", json.dumps(combined, ensure_ascii=False, indent=2) + "\n")
    _write_atomic(out / "results.md", languages_markdown(combined))
    _write_atomic(out / "report.html", languages_html(combined))
    folder.done()
    assert first is not None
    return combined, first


@dataclass
class _Run:
    """What the main process read and decided before generating; ``plan`` is ``None`` for a ``--predictions``
    eval (nothing to generate)."""

    samples: list[GleamSample]
    ratings: dict[tuple[str, str], Rating] | None
    plan: _Plan | None = None
    predictions: dict[str, dict[str, Any]] | None = None
    processor: Any = None
    stop_ids: list[int] | None = None
    generation: dict[str, Any] | None = None
    images: dict[str, Any] | None = None
    inputs: dict[str, str] | None = None  # every sample's input hash: which cached answers are current


def _samples(cfg: EvalConfig) -> list[GleamSample]:
    """The evaluated samples as records (image paths or encoded bytes, never decoded pixels): the resumable batch
    grid and the scores index them by position."""
    if cfg.streaming:  # read as far as the samples evaluated go: the same samples as the materialised split
        from gleamx.data.stream import reading, stream_samples

        stream = stream_samples(cfg.data, split=cfg.split, columns=cfg.columns, limit=cfg.limit).dataset
        with reading(cfg.data):
            samples = list(samples_of(stream))
        if not samples:  # what the materialised load says, not a report of n=0
            raise no_samples(cfg.data, cfg.split)
        return samples
    data = load_samples(cfg.data, split=cfg.split, columns=cfg.columns).dataset
    if cfg.limit is not None:
        data = data.select(range(min(cfg.limit, len(data))))
    return list(samples_of(data))


def _prepare(cfg: EvalConfig, out: Path) -> _Run:
    """The main process's part before generation: the samples, the ratings, ``eval_config.json``, and for a model
    eval the processor and the plan of what is missing from the answers cache."""
    samples = _samples(cfg)
    # read (and checked) before anything is generated; ratings change only what is reported, so they are no part
    # of the run's key: adding them to a finished run scores its answers again and reuses every one
    ratings = read_ratings(cfg.ratings) if cfg.ratings else None
    if cfg.predictions:
        _claim_output(out, cfg, "predictions", {"predictions": _source(cfg.predictions), "data": _source(cfg.data),
                                                "split": cfg.split, "lang": cfg.lang, "task": cfg.task})
        return _Run(samples, ratings, predictions=read_predictions(cfg.predictions))
    # answers a killed multi-process run left in its processes' logs join the cache first, to be checked and
    # reused like the rest
    fold_rank_logs(out)
    key = _claim_output(out, cfg, "model", cfg.key_parts())
    from gleamx.eval.decoding import checkpoint_stop_token_ids
    from gleamx.eval.fingerprint import sample_input_keys
    from gleamx.eval.generate import image_budget
    from gleamx.models.adapter import load_inference_processor

    # The run's processor (pixel budget, chat template) when the adapter dir holds one; loaded here,
    # not with the model, so results.json records the budget even when nothing is left to generate.
    processor, source = load_inference_processor(cfg.model, cfg.adapter, min_pixels=cfg.min_pixels,
                                                 max_pixels=cfg.max_pixels)
    stop_ids = checkpoint_stop_token_ids(cfg.model, processor.tokenizer)
    inputs = sample_input_keys(processor, samples, cfg.lang, cfg.task)
    pred_path = out / "predictions.jsonl"
    repair_tail(pred_path)  # a killed run's half-written last line, whatever byte it ends in
    batches = _missing(cfg, samples, pred_path, key, inputs)
    plan = _Plan(key, batches, {samples[i].id: inputs[samples[i].id] for b in batches for i in b})
    return _Run(samples, ratings, plan=plan, processor=processor, stop_ids=stop_ids, inputs=inputs,
                generation={**cfg.generation_config(), "stop_token_ids": stop_ids},
                images={"processor": source, **image_budget(processor, samples)})


def _other_process(cfg: EvalConfig, ranks: Ranks) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A process other than the main one: read the samples and the processor while the main process plans, take
    its plan, generate this process's share of it and hand the answers over; it scores and writes nothing."""
    ready: tuple[list[GleamSample], Any, list[int]] | None = None
    failed: GleamError | None = None
    if cfg.model and cfg.backend == "hf":  # else the main process has nothing to share out (or refuses)
        try:
            from gleamx.eval.decoding import checkpoint_stop_token_ids
            from gleamx.models.adapter import load_inference_processor

            processor, _ = load_inference_processor(cfg.model, cfg.adapter, min_pixels=cfg.min_pixels,
                                                    max_pixels=cfg.max_pixels)
            ready = (_samples(cfg), processor, checkpoint_stop_token_ids(cfg.model, processor.tokenizer))
        except GleamError as e:  # the main process most likely fails alike and says so: wait to hear it
            failed = e
    plan = ranks.from_main(None)
    if failed is not None:  # this process alone
        raise failed
    if plan is not None and plan.batches:
        assert ready is not None
        samples, processor, stop_ids = ready
        _generate(cfg, samples, plan, Path(cfg.output), processor, stop_ids, ranks)
    return {}, {}


def _score_and_write(cfg: EvalConfig, out: Path, run: _Run) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Score every sample's answer and write ``results.json``, the reports and ``per_sample.jsonl``."""
    samples = run.samples
    if run.plan is not None:
        predictions = read_predictions(out / "predictions.jsonl", run.plan.key, run.inputs)
    else:
        assert run.predictions is not None
        predictions = run.predictions
    results: dict[str, Any] = {"config": asdict(cfg), "gleamx": gleamx_provenance(), "generation": run.generation,
                               "images": run.images, **score(samples, predictions, bootstrap=cfg.bootstrap)}
    results["explanation"] = _explanation_scores(cfg, samples, predictions, out)
    judged = (results["explanation"] or {}).pop("judge_per_sample", None)
    used = None
    if run.ratings is not None and results["explanation"] is not None:
        used = _agreement(cfg, run.ratings, samples, predictions, results["explanation"], judged)
    from gleamx.eval.report import model_index, write_reports
    from gleamx.eval.scored import FILE, per_sample_rows, write_rows

    results["model_index"] = model_index(results)
    _write_atomic(out / "results.json", json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    write_reports(out, results, samples, predictions)
    verdicts = [parse_verdict(predictions[s.id]["prediction"]) for s in samples]
    write_rows(out / FILE, per_sample_rows(samples, verdicts, predictions, lang=cfg.lang, task=cfg.task,
                                           explanation=results["explanation"], judge=judged, ratings=used))
    return results, predictions


def _agreement(cfg: EvalConfig, ratings: dict[tuple[str, str], Rating], samples: list[GleamSample],
               predictions: dict[str, dict[str, Any]], explanation: dict[str, Any],
               judged: dict[str, dict[str, float]] | None) -> dict[str, Rating]:
    """Put the metrics' agreement with people's ratings into ``explanation["agreement"]``; returns the ratings used
    (those of the answers scored here), by id."""
    per_sample = explanation.get("per_sample") or {}
    used, skipped = usable_ratings(ratings, predictions, [s.id for s in samples], set(per_sample), cfg.lang)
    explanation["agreement"] = agreement(used, skipped, per_sample, judged, source=str(cfg.ratings),
                                         n_resamples=cfg.bootstrap)
    return used


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
    # The references' embeddings are kept beside the predictions cache: evaluating the same data again
    # (another checkpoint, a resumed run) embeds only the predictions.
    scores = score_explanations(preds, refs, cfg.lang, sbert_model=cfg.sbert_model,
                                bertscore_model=cfg.bertscore_model, reference_cache=out / "embedding_cache")
    per = scores.pop("per_sample", {})
    scores["n"] = len(pairs)
    scores["per_sample"] = {s.id: {k: v[i] for k, v in per.items()} for i, (s, _) in enumerate(pairs)}
    if cfg.judge_model:
        from gleamx.eval.judge import JudgeConfig, items_from_samples, judge_explanations

        texts = {k: v["prediction"] for k, v in predictions.items()}
        items, skipped = items_from_samples(samples, texts, cfg.lang)
        summary = judge_explanations(items, JudgeConfig(model=cfg.judge_model, base_url=cfg.judge_base_url,
                                                        api_key_env=cfg.judge_api_key_env,
                                                        concurrency=cfg.judge_concurrency, timeout=cfg.judge_timeout,
                                                        max_retries=cfg.judge_max_retries), out / "judge.jsonl")
        scores["judge"] = {**summary.to_dict(), "n_skipped": len(skipped), "markdown": summary.to_markdown()}
        # each valid judgment's criteria and their mean, for per_sample.jsonl (not results.json)
        scores["judge_per_sample"] = {r.id: {**r.scores, "overall": sum(r.scores.values()) / len(r.scores)}
                                      for r in summary.results if r.valid and r.scores}
        if summary.n_invalid:
            from gleamx.console import console

            first = next(r for r in summary.results if not r.valid)
            console.print(f"warning: judge: {summary.n_invalid} of {summary.n} explanation(s) got no valid judgment "
                          f"({summary.n_failed} server failure(s), asked again on the next run); they are left out of "
                          f"the judge means (e.g. {first.id!r}: {first.error})", markup=False, soft_wrap=True)
    return scores
