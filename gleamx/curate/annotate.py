"""``gleamx annotate``: bilingual explanations for GLEAM-X pairs from an OpenAI-compatible MLLM (GPT-4o, Doubao on
Volcengine Ark, a local vLLM server), checked against the known label.

For every sample and language the model gets image 1 (the query view) and image 2 (the satellite tile), resized
and sent as JPEG data URLs under a size cap, and a prompt (``annotate_prompts.yaml`` beside this module, English
and Chinese) that asks it to describe both images, compare landmarks and spatial layout, and end with gleamx's
verdict line. The known label is stated in the prompt (``--label given``) or withheld (``--label withheld``).

A reply is kept as a training explanation only when its verdict (:func:`gleamx.task.verdict.parse_verdict`)
equals the label; its verdict line is then rewritten to the canonical one. A reply with no verdict is re-asked
with a reminder of the verdict line, one that contradicts the label is re-asked as is (at
``--retry-temperature``), and after ``--verdict-retries`` re-asks the pair is *flagged*: written to
``annotate/flagged.jsonl`` with the reason and the last reply, never to the training data.

Output directory (``--out``; one run at a time, a lock on its ``.lock``); ``annotated.jsonl`` is its only data file,
so ``--data OUT`` reads it, and the run's records live in ``OUT/annotate/``:

* ``annotate/annotations.jsonl`` - the append-only cache, one flushed line per finished (sample, language), keyed by the
  sample (id, label, view and the bytes of both images), the model, the language, the label mode, the prompt
  version and a hash of the prompt text, and the image and decoding settings. A killed run resumes without
  asking, or paying, for anything already answered; flagged pairs are cached too (``--retry-flagged`` asks
  them again).
* ``annotated.jsonl`` - the samples in gleamx JSONL with the accepted explanations of each language (a sample
  with none is left out), image paths relative to it.
* ``annotate/flagged.jsonl`` - ``{"id", "lang", "reason", "reply", "attempts", "model"}`` per flagged pair.
* ``annotate/cost.json`` - tokens in and out and requests per model, over the whole cache and for this run, and the cost
  where ``--price-in`` / ``--price-out`` (per 1 M tokens) are given; online and batch usage apart, batch tokens at
  ``--batch-discount`` off.
* ``annotate/batches.jsonl`` - with ``--batch``: the batches submitted and what came of them (below).

``--batch`` asks the same requests through the provider's Batch API (:mod:`gleamx.curate.annotate_batch`): one
JSONL file per batch, uploaded and submitted, polled every ``--poll-interval`` seconds, its answers checked and
cached exactly as online ones (the same keys; ``"via": "batch"`` and the batch id say how they were asked), re-asks
going out as the next batch. A rerun polls the batches still in flight instead of sending them again.

A request the server refuses (HTTP 400, 413 ...) or answers with a body that is no chat completion fails that
pair only: it is counted, not cached, and asked again on the next run. Timeouts, 429 and 5xx are retried by the
``openai`` client (:mod:`gleamx.models.api`); when its retries run out the run ends in one line (rerun to resume).
The API key is read from the environment variable ``--api-key-env`` and sent only as the request's
``Authorization`` header, so it is never written or printed, and the replies are saved as the model wrote them;
a ``--base-url`` with a credential in it (``?key=...``) is refused (:func:`gleamx.models.api.check_base_url`).
A request whose HTTP 200 body is no chat completion is asked again at once, out of ``--max-retries``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from gleamx.checks import (COUNT_MAX, RETRIES_MAX, SECONDS_MAX, SIDE_MAX, TOKENS_MAX, WORKERS_MAX, check_at_least,
                           check_choice, check_given, check_int, check_positive, check_ranges, comma_list, field_help)
from gleamx.choices import LANGS
from gleamx.errors import GleamConfigError
from gleamx.models.api import ApiFlags, Usage
from gleamx.outputs import claim_folder

LabelMode = Literal["given", "withheld"]
LABEL_MODES: tuple[str, ...] = get_args(LabelMode)

PROMPT_VERSION = "1"
"""Bump when what an annotation means changes; the cache key also hashes the prompt text itself."""
PROMPTS_FILE = "annotate_prompts.yaml"
# The data file alone at the top of --out, so the directory itself loads as a dataset (`--data OUT` in review,
# training, eval); the run's own records live in a subfolder that no reader of the directory looks into.
RUN_DIR = "annotate"
ANNOTATED_NAME = "annotated.jsonl"
CACHE_NAME, FLAGGED_NAME, COST_NAME = (f"{RUN_DIR}/{n}" for n in ("annotations.jsonl", "flagged.jsonl", "cost.json"))

VIAS = ("online", "batch")
ANNOTATE_FLAGS = ApiFlags(what="annotate", base_url="--base-url", model="--model", key_env="--api-key-env",
                  timeout="--timeout", max_retries="--max-retries")



@dataclass(kw_only=True)
class AnnotateConfig:
    """Explain GLEAM-X pairs with an OpenAI-compatible MLLM; keep only replies whose verdict matches the label."""

    data: str = field(metadata=field_help("GLEAM-X data to annotate: JSONL/ShareGPT file, directory or Hub id"))
    model: str = field(metadata=field_help("model name the server expects (gpt-4o, a Doubao endpoint id, ...)"))
    base_url: str = field(metadata=field_help("OpenAI-compatible endpoint, e.g. https://api.openai.com/v1, "
                                         "https://ark.cn-beijing.volces.com/api/v3 or http://localhost:8000/v1"))
    out: str = field(metadata=field_help("directory for annotated.jsonl (loadable as --data OUT) and annotate/ with "
                                    "flagged.jsonl, cost.json and the cache annotations.jsonl (a rerun resumes)"))
    lang: list[str] | None = field(default=None, metadata=field_help("languages, comma-separated (default: en,zh)"))
    label: LabelMode = field(default="given", metadata=field_help(
        "given: the prompt states the known label; withheld: the model decides from the images alone"))
    split: str | None = field(default=None, metadata=field_help("only this split (default: every row)"))
    limit: int | None = field(default=None, metadata=field_help("only the first N samples", low=1, high=COUNT_MAX))
    api_key_env: str = field(default="OPENAI_API_KEY", metadata=field_help(
        "environment variable holding the API key (never written or printed)"))
    concurrency: int = field(default=8, metadata=field_help("requests in flight at once", low=1, high=WORKERS_MAX))
    timeout: float = field(default=120.0, metadata=field_help("seconds one request may take before it is retried",
                                                              low=0, high=SECONDS_MAX))
    max_retries: int = field(default=5, metadata=field_help(
        "retries of a request after a timeout, 429 or 5xx (the client's backoff); then the run stops and a "
        "rerun resumes", low=0, high=RETRIES_MAX))
    verdict_retries: int = field(default=2, metadata=field_help(
        "re-asks after a reply with no verdict or one that contradicts the label, before the pair is flagged",
        low=0, high=RETRIES_MAX))
    max_tokens: int = field(default=1024, metadata=field_help("longest reply asked for", low=1, high=TOKENS_MAX))
    # 2: the largest temperature OpenAI-compatible APIs accept
    temperature: float = field(default=0.0, metadata=field_help("sampling temperature of the first ask", low=0,
                                                                high=2))
    retry_temperature: float = field(default=0.7, metadata=field_help("sampling temperature of re-asks", low=0,
                                                                      high=2))
    image_side: int = field(default=1024, metadata=field_help("longest side of an image sent, in pixels", low=16,
                                                              high=SIDE_MAX))
    image_bytes: int = field(default=400_000, metadata=field_help(
        "most bytes of one image sent (JPEG; quality, then size, is lowered to fit)", low=1024, high=50_000_000))
    price_in: float | None = field(default=None, metadata=field_help(
        "price per 1 M prompt tokens of --model, for the cost report (default: tokens only)", low=0, high=1e6))
    price_out: float | None = field(default=None, metadata=field_help(
        "price per 1 M completion tokens of --model, for the cost report", low=0, high=1e6))
    batch: bool = field(default=False, metadata=field_help(
        "ask through the provider's Batch API (answered within 24 h, usually at a discount) instead of one request "
        "at a time; a rerun collects the batches in flight instead of sending them again"))
    poll_interval: float = field(default=60.0, metadata=field_help(
        "with --batch: seconds between two status checks of the batches in flight", low=0, high=SECONDS_MAX))
    batch_requests: int = field(default=50_000, metadata=field_help(
        "with --batch: most requests in one batch (OpenAI's limit; a batch file also stays under 190 MB)", low=1,
        high=COUNT_MAX))
    batch_discount: float = field(default=0.5, metadata=field_help(
        "with --batch: the provider's discount on batch tokens, for the cost report (0.5: half of --price-in and "
        "--price-out)", low=0, high=1))
    retry_flagged: bool = field(default=False, metadata=field_help("ask flagged pairs in the cache again"))
    overwrite: bool = field(default=False, metadata=field_help(
        "start --out over: replace what gleamx wrote there, the cache of paid answers too (files gleamx did not "
        "write are kept)"))
    allow_outside_paths: bool = field(default=False, metadata=field_help(
        "read images outside the dataset directory"))

    def __post_init__(self) -> None:
        for flag, value, what in (("--data", self.data, "GLEAM-X data to annotate"),
                                  ("--model", self.model, "the model name the server expects, e.g. gpt-4o"),
                                  ("--base-url", self.base_url, "an OpenAI-compatible endpoint URL"),
                                  ("--out", self.out, "an output directory"),
                                  ("--api-key-env", self.api_key_env, "an environment variable name")):
            check_given(flag, value, what)
        langs = comma_list(self.lang) or list(LANGS)
        for lang in langs:
            check_choice("--lang", lang, LANGS)
        self.lang = list(dict.fromkeys(langs))
        check_choice("--label", self.label, LABEL_MODES)
        for flag, value, low, optional in (
                ("--limit", self.limit, 1, True), ("--concurrency", self.concurrency, 1, False),
                ("--max-retries", self.max_retries, 0, False), ("--verdict-retries", self.verdict_retries, 0, False),
                ("--max-tokens", self.max_tokens, 1, False), ("--image-side", self.image_side, 16, False),
                ("--image-bytes", self.image_bytes, 1024, False), ("--batch-requests", self.batch_requests, 1, False)):
            check_int(flag, value, low, optional=optional)
        check_positive("--timeout", self.timeout, what="a positive number of seconds")
        check_positive("--poll-interval", self.poll_interval, what="a positive number of seconds")
        check_at_least("--batch-discount", self.batch_discount, 0)
        check_at_least("--temperature", self.temperature, 0)
        check_at_least("--retry-temperature", self.retry_temperature, 0)
        check_at_least("--price-in", self.price_in, 0, optional=True)
        check_at_least("--price-out", self.price_out, 0, optional=True)
        check_ranges(self)
        if (self.price_in is None) != (self.price_out is None):
            raise GleamConfigError("--price-in and --price-out go together (prices per 1 M tokens in and out)")


# --------------------------------------------------------------------------------------------
# Prompts: data in annotate_prompts.yaml beside this module


def _load_prompts() -> dict[str, dict[str, Any]]:
    import yaml

    return yaml.safe_load(resources.files(__package__).joinpath(PROMPTS_FILE).read_text(encoding="utf-8"))


PROMPTS = _load_prompts()
PROMPT_HASH = hashlib.sha256(json.dumps(PROMPTS, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:12]


def build_messages(view: str, label: bool, lang: str, mode: str, images: tuple[str, str]) -> list[dict[str, Any]]:
    """The chat messages asking for one explanation; ``images`` are the two image URLs (query, satellite)."""
    p = PROMPTS[lang]
    note = p["label_given"][bool(label)] if mode == "given" else p["label_withheld"]
    text = p["user"].format(view=p["views"].get(view, p["unknown_view"]), label_note=note)
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}} for url in images]
    return [{"role": "system", "content": p["system"]}, {"role": "user", "content": parts + [{"type": "text",
                                                                                                 "text": text}]}]


def canonical_explanation(text: str, label: bool, lang: str) -> str:
    """``text`` cut before its last verdict line, ending in gleamx's canonical verdict line instead."""
    from gleamx.task.verdict import parse_verdict, verdict_line

    lines = text.rstrip().splitlines()
    last = max((i for i, ln in enumerate(lines) if parse_verdict(ln) is not None), default=len(lines))
    body = "\n".join(lines[:last]).rstrip()
    return f"{body}\n{verdict_line(label, lang)}" if body else verdict_line(label, lang)


# --------------------------------------------------------------------------------------------
# One ask and its reply: shared by the online run and the batch run (gleamx.curate.annotate_batch)


def sample_images(sample: Any, cfg: AnnotateConfig) -> tuple[str, str]:
    """Both data URLs of ``sample`` (query, satellite), re-encoded under ``--image-side`` and ``--image-bytes``."""
    from gleamx.models.api import image_data_url

    query, satellite = (image_data_url(im, cfg.image_side, cfg.image_bytes)
                        for im in (sample.query_image, sample.satellite_image))
    return query, satellite


def ask_messages(base: list[dict[str, Any]], lang: str, remind: str | None) -> list[dict[str, Any]]:
    """The messages of one ask: ``base`` (:func:`build_messages`), or, after a reply without a verdict line
    (``remind``), that reply and the reminder of the verdict line."""
    if remind is None:
        return base
    return base + [{"role": "assistant", "content": remind},
                   {"role": "user", "content": PROMPTS[lang]["verdict_reminder"]}]


def ask_params(cfg: AnnotateConfig, ask: int) -> dict[str, Any]:
    """The decoding parameters of a pair's ``ask``-th ask (0: the first; re-asks at ``--retry-temperature``)."""
    return {"temperature": cfg.temperature if ask == 0 else cfg.retry_temperature, "max_tokens": cfg.max_tokens}


@dataclass(frozen=True)
class Verdict:
    """What a reply is worth: ``explanation`` (canonical) when it is kept; else ``reason``, and ``remind`` when
    the re-ask shows the reply back with the verdict reminder (it had no verdict line)."""

    explanation: str | None = None
    reason: str | None = None
    remind: bool = False


def check_reply(text: str, label: bool, lang: str) -> Verdict:
    """Keep ``text`` only when its verdict equals ``label`` and it is written in ``lang``."""
    from gleamx.task.language import LANG_NAMES, written_in
    from gleamx.task.verdict import parse_verdict

    verdict = parse_verdict(text)
    if verdict == label and written_in(text, lang):
        return Verdict(canonical_explanation(text, label, lang))
    if verdict == label:  # right verdict, wrong language: asked afresh, like a contradiction
        return Verdict(reason=f"reply not written in {LANG_NAMES[lang]}")
    if verdict is None:
        return Verdict(reason="no verdict line", remind=True)
    # asked afresh: the reply is not shown, so the label is not argued into it
    return Verdict(reason=f"verdict {'yes' if verdict else 'no'} contradicts the label {'yes' if label else 'no'}")


def flag_reason(reason: str, asks: int, attempts: int) -> str:
    """Why a pair is flagged after ``asks`` answers of the model, ``attempts`` requests in all."""
    # attempts counts requests (transport retries and batch lines sent again too); asks counts the model's answers
    return f"{reason} after {asks} tries" + (f" ({attempts} requests with retries)" if attempts != asks else "")


# --------------------------------------------------------------------------------------------
# Results and the cost report


@dataclass
class Annotation:
    """One (sample, language): ``status`` is ``ok`` (``explanation`` set), ``flagged`` (``reason``) or
    ``failed`` (the server failed the request; not cached)."""

    id: str
    lang: str
    key: str
    status: str
    explanation: str | None = None
    reason: str | None = None
    reply: str | None = None
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    via: str = "online"  # how it was asked: "online" or "batch" (then ``batch`` is the id of the last batch)
    batch: str | None = None

    def to_record(self, model: str) -> dict[str, Any]:
        row = {"id": self.id, "lang": self.lang, "key": self.key, "model": model, "prompt_version": PROMPT_VERSION,
               "status": self.status, "explanation": self.explanation, "reason": self.reason, "reply": self.reply,
               "attempts": self.attempts, "usage": self.usage.as_dict(), "via": self.via}
        return row | ({"batch": self.batch} if self.batch is not None else {})

    @classmethod
    def from_record(cls, row: dict[str, Any]) -> Annotation | None:
        """A cached record, or ``None`` when it is not a well-formed one (then the pair is asked again)."""
        try:
            status, u = row["status"], row.get("usage") or {}
            usage = Usage(int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0)), int(u.get("requests", 0)))
            if status not in ("ok", "flagged") or (status == "ok" and not isinstance(row["explanation"], str)):
                return None
            via = row.get("via") if row.get("via") in VIAS else "online"  # records from before --batch: online
            batch = row.get("batch") if isinstance(row.get("batch"), str) else None
            return cls(row["id"], row["lang"], row["key"], status, row.get("explanation"), row.get("reason"),
                       row.get("reply"), int(row.get("attempts") or 0), usage, cached=True, via=via, batch=batch)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def cost_report(cache: Path, cfg: AnnotateConfig, this_run: dict[str, Usage]) -> dict[str, Any]:
    """Tokens and requests per model over every record of the cache, with the cost where prices are known
    (``--price-in``/``--price-out`` apply to ``--model``; batch tokens at ``--batch-discount`` off), and this
    run's own requests (failed ones too); ``this_run`` and each model are split by how they were asked (``via``)."""
    from gleamx.eval.appendlog import read_records

    models: dict[str, dict[str, Usage]] = {}
    for _, row in read_records(cache):
        ann = Annotation.from_record(row)
        if ann is not None and isinstance(row.get("model"), str):
            models.setdefault(row["model"], {}).setdefault(ann.via, Usage()).add(ann.usage)
    known = cfg.price_in is not None and cfg.price_out is not None

    def part(model: str, u: Usage, factor: float) -> dict[str, Any]:
        cost = None
        if model == cfg.model and cfg.price_in is not None and cfg.price_out is not None:
            cost = round((u.prompt_tokens * cfg.price_in + u.completion_tokens * cfg.price_out) * factor / 1e6, 6)
        return {**u.as_dict(), "cost": cost}

    def priced(model: str, spent: dict[str, Usage]) -> dict[str, Any]:
        total = Usage()
        for u in spent.values():
            total.add(u)
        online = part(model, spent.get("online", Usage()), 1.0)
        batch = part(model, spent.get("batch", Usage()), 1.0 - cfg.batch_discount)
        out: dict[str, Any] = {"model": model, **total.as_dict(), "cost": None}
        if online["cost"] is not None and batch["cost"] is not None:
            out["cost"] = round(online["cost"] + batch["cost"], 6)
            out["price_in_per_1m"], out["price_out_per_1m"] = cfg.price_in, cfg.price_out
        return out | {"online": online, "batch": batch}

    return {"models": [priced(m, u) for m, u in sorted(models.items())], "this_run": priced(cfg.model, this_run),
            "batch_discount": cfg.batch_discount if known else None}


def cost_lines(report: dict[str, Any]) -> list[str]:
    """The cost report as text lines (for the CLI and the benchmark); a total asked partly or wholly by batch is
    followed by its online and batch parts."""
    def usage(r: dict[str, Any]) -> str:
        cost = "price unknown (give --price-in and --price-out)" if r["cost"] is None else f"cost {r['cost']:.4f}"
        return (f"{r['requests']} requests, {r['prompt_tokens']:,} tokens in, {r['completion_tokens']:,} tokens out, "
                f"{cost}")

    discount = report.get("batch_discount")
    at = f" ({discount:.0%} off)" if discount is not None else ""

    def lines(label: str, r: dict[str, Any]) -> list[str]:
        split = [f"  online  {usage(r['online'])}", f"  batch{at}  {usage(r['batch'])}"] \
            if r.get("batch", {}).get("requests") else []
        return [f"{label}  {r['model']}: {usage(r)}"] + split

    # The cache counts one request per kept reply (every run so far); this run counts every request it sent,
    # re-asks and transport retries included, so the two differ by design: the labels say which is which.
    return ([ln for r in report["models"] for ln in lines("cache, all runs (one per reply)", r)]
            + lines("this run (re-asks and retries included)", report["this_run"]))


@dataclass
class AnnotateSummary:
    """What one run did; ``annotations`` holds every (sample, language) of the data, cached ones included."""

    n_samples: int
    langs: list[str]
    annotations: list[Annotation]
    n_written: int
    out: Path
    cost: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what the batch run sent again, one line per kind

    def count(self, status: str) -> int:
        return sum(a.status == status for a in self.annotations)

    @property
    def n_cached(self) -> int:
        return sum(a.cached for a in self.annotations)

    def summary_lines(self, shown_failures: int = 5) -> list[str]:
        """What the CLI prints: the counts and where they went, the cost, and the failed pairs (the first
        ``shown_failures`` with their reason, then how many more) with how to retry them."""
        lines = [f"{self.n_samples} samples x {','.join(self.langs)}: {self.count('ok')} explained, "
                 f"{self.count('flagged')} flagged, {self.count('failed')} failed ({self.n_cached} from the cache); "
                 f"{self.n_written} samples -> {self.out / ANNOTATED_NAME}, flagged: {self.out / FLAGGED_NAME}"]
        lines += self.notes
        lines += cost_lines(self.cost)
        failed = failed_reasons(self)
        lines += failed[:shown_failures]
        if len(failed) > shown_failures:
            lines.append(f"... and {len(failed) - shown_failures} more failed")
        if failed:
            lines.append(f"{len(failed)} pair(s) failed: rerun the same command to retry them (the cache keeps every "
                         "reply already paid for)")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {"n_samples": self.n_samples, "langs": self.langs, "n_pairs": len(self.annotations),
                "n_ok": self.count("ok"), "n_flagged": self.count("flagged"), "n_failed": self.count("failed"),
                "n_cached": self.n_cached, "n_written": self.n_written, "cost": self.cost, "notes": self.notes}


# --------------------------------------------------------------------------------------------
# The run


class _Annotator:
    def __init__(self, cfg: AnnotateConfig, key: str, cache: Path) -> None:
        from gleamx.models.api import ApiClient

        self.cfg = cfg
        self.lock = threading.Lock()
        self.urls: dict[str, list[Any]] = {}  # sample id -> [lock, (query URL, satellite URL), languages left]
        self.api = ApiClient(cfg, key, ANNOTATE_FLAGS, saved=f"finished annotations are saved in {cache}")

    def images(self, sample: Any) -> tuple[str, str]:
        """Both data URLs of ``sample``, encoded once for all its languages (dropped after the last one)."""
        with self.lock:
            entry = self.urls.get(sample.id)
            if entry is None:
                entry = self.urls[sample.id] = [threading.Lock(), None, len(self.cfg.lang)]
        with entry[0]:
            if entry[1] is None:
                entry[1] = sample_images(sample, self.cfg)
            urls = entry[1]
        with self.lock:
            entry[2] -= 1
            if entry[2] <= 0:
                self.urls.pop(sample.id, None)
        return urls

    def annotate(self, sample: Any, lang: str, key: str) -> Annotation:
        cfg, label, asks = self.cfg, bool(sample.label), self.cfg.verdict_retries + 1
        base = build_messages(sample.query_view, label, lang, cfg.label, self.images(sample))
        usage, attempts, remind, reason, text = Usage(), 0, None, "no reply", ""
        for ask in range(asks):
            reply = self.api.complete(f"{sample.id}/{lang}", ask_messages(base, lang, remind), **ask_params(cfg, ask))
            usage.add(reply.usage)
            attempts += reply.attempts
            if reply.refused is not None:
                return Annotation(sample.id, lang, key, "failed", reason=reply.refused, attempts=attempts, usage=usage)
            text = reply.text or ""  # kept as the server sent it: saved text is never rewritten
            verdict = check_reply(text, label, lang)
            if verdict.explanation is not None:
                return Annotation(sample.id, lang, key, "ok", verdict.explanation, reply=text, attempts=attempts,
                                  usage=usage)
            reason, remind = verdict.reason or reason, text if verdict.remind else None
        return Annotation(sample.id, lang, key, "flagged", reason=flag_reason(reason, asks, attempts), reply=text,
                          attempts=attempts, usage=usage)


class Outcomes:
    """Where each finished (sample, language) goes, as it comes, in the one thread that writes: the cache (``f``,
    one flushed line; failures are not cached), this run's results and spend by ``via``, and ``progress``."""

    def __init__(self, cfg: AnnotateConfig, f: Any, results: dict[tuple[str, str], Annotation], total: int,
                 progress: Callable[[int, int], None] | None) -> None:
        self.cfg, self.f, self.results, self.total, self.progress = cfg, f, results, total, progress
        self.this_run = {via: Usage() for via in VIAS}

    def finished(self, ann: Annotation, ours: bool = True) -> None:
        """Record ``ann``; ``ours``: a pair of this run (a batch also brings back pairs of other runs)."""
        self.this_run[ann.via].add(ann.usage)
        if ann.status != "failed":  # one flushed line each: a kill leaves at most a partial last line
            self.f.write(json.dumps(ann.to_record(self.cfg.model), ensure_ascii=False).encode() + b"\n")
            self.f.flush()
        if ours:
            self.results[(ann.id, ann.lang)] = ann
            if self.progress:
                self.progress(len(self.results), self.total)

    def sync(self) -> None:
        """Make the cache durable before a record that relies on it (a batch marked collected)."""
        import os

        self.f.flush()
        os.fsync(self.f.fileno())


def cache_key(sample: Any, lang: str, cfg: AnnotateConfig, images: Callable[[Any], str]) -> str:
    """Hash of everything that changes the annotation of ``sample`` in ``lang`` (its id is stored beside it)."""
    blob = json.dumps([cfg.model, PROMPT_VERSION, PROMPT_HASH, lang, cfg.label, bool(sample.label),
                       sample.query_view, images(sample.query_image), images(sample.satellite_image),
                       cfg.image_side, cfg.image_bytes, cfg.max_tokens, cfg.temperature, cfg.retry_temperature,
                       cfg.verdict_retries], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def annotate(cfg: AnnotateConfig, progress: Callable[[int, int], None] | None = None,
             log: Callable[[str], None] | None = None) -> AnnotateSummary:
    """Annotate ``cfg.data`` into ``cfg.out`` (see the module docstring); ``progress(done, total)`` is called
    in this thread after each (sample, language), cached ones first; ``log(line)`` gets what the batch run says
    about its batches (submitted, their status as it changes, collected)."""
    from gleamx.data import load_samples
    from gleamx.eval.appendlog import single_writer
    from gleamx.models.api import checked_key

    key = checked_key(cfg, ANNOTATE_FLAGS)
    samples = load_samples(cfg.data, split=cfg.split, allow_outside_paths=cfg.allow_outside_paths).samples
    samples = samples[: cfg.limit] if cfg.limit else samples
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise GleamConfigError(f"--data: duplicate sample id {next(i for i in ids if ids.count(i) > 1)!r}")
    # One dataset per folder (its cache answers other models and settings too, so a rerun with them is let in).
    folder = claim_folder(cfg.out, "--out", command="annotate", overwrite=cfg.overwrite,
                          identity={"data": _source_name(cfg.data), "split": cfg.split}, inputs={"--data": cfg.data},
                          writes=[ANNOTATED_NAME, RUN_DIR], marker=CACHE_NAME)
    with single_writer(folder.path, "gleamx annotate", "--out"):
        summary = _annotate_locked(cfg, key, samples, folder.path, progress, log)
    folder.done()
    return summary


def _source_name(data: str) -> str:
    """A local dataset by its absolute path (one dataset, however it is typed); a Hub id as it is."""
    return str(Path(data).resolve()) if Path(data).exists() else data


def _annotate_locked(cfg: AnnotateConfig, key: str, samples: list[Any], out: Path,
                     progress: Callable[[int, int], None] | None,
                     log: Callable[[str], None] | None) -> AnnotateSummary:
    from gleamx.eval.appendlog import read_records, repair_tail
    from gleamx.eval.fingerprint import ImageHasher
    from gleamx.models.api import run_concurrently

    hasher = ImageHasher()
    pairs = [(s, lang, cache_key(s, lang, cfg, hasher)) for s in samples for lang in cfg.lang]
    cache = out / CACHE_NAME
    cache.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(cache)  # a killed run's half-written last line
    saved = [ann for _, row in read_records(cache) if (ann := Annotation.from_record(row)) is not None]
    cached = {(a.id, a.lang, a.key): a for a in saved if not (cfg.retry_flagged and a.status == "flagged")}
    results: dict[tuple[str, str], Annotation] = {}
    for s, lang, k in pairs:
        if (s.id, lang, k) in cached:
            results[(s.id, lang)] = cached[(s.id, lang, k)]
    todo = [p for p in pairs if (p[0].id, p[1]) not in results]
    if progress:
        progress(len(results), len(pairs))
    notes: list[str] = []
    with cache.open("ab") as f:
        outcomes = Outcomes(cfg, f, results, len(pairs), progress)
        if todo and cfg.batch:
            from gleamx.curate.annotate_batch import ask_in_batches

            notes = ask_in_batches(cfg, key, todo, out, saved, outcomes, log or (lambda line: None))
        elif todo:
            worker = _Annotator(cfg, key, cache)
            run_concurrently(worker.api, lambda p: worker.annotate(*p), todo, cfg.concurrency,
                             lambda _, ann: outcomes.finished(ann), name="gleamx-annotate")
    ordered = [results[(s.id, lang)] for s, lang, _ in pairs]
    n_written = _write_outputs(cfg, samples, results, out)
    report = cost_report(cache, cfg, outcomes.this_run)
    (out / COST_NAME).parent.mkdir(parents=True, exist_ok=True)
    (out / COST_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return AnnotateSummary(len(samples), list(cfg.lang), ordered, n_written, out, report, notes)


def _write_outputs(cfg: AnnotateConfig, samples: list[Any], results: dict[tuple[str, str], Annotation],
                   out: Path) -> int:
    """``annotated.jsonl`` (accepted explanations only) and ``flagged.jsonl``; returns the samples written."""
    from dataclasses import replace

    from gleamx.data import write_samples

    kept, flagged = [], []
    for s in samples:
        expl = {}
        for lang in cfg.lang:
            ann = results[(s.id, lang)]
            if ann.status == "ok" and ann.explanation:
                expl[lang] = ann.explanation
            elif ann.status == "flagged":
                flagged.append({"id": s.id, "lang": lang, "reason": ann.reason, "reply": ann.reply,
                                "attempts": ann.attempts, "model": cfg.model})
        if expl:
            kept.append(replace(s, explanation=expl, meta={**s.meta, "annotated_by": cfg.model,
                                                           "annotation_prompt": f"{PROMPT_VERSION}-{PROMPT_HASH}",
                                                           "label_in_prompt": cfg.label == "given"}))
    n = write_samples(kept, out / ANNOTATED_NAME)
    with (out / FLAGGED_NAME).open("w", encoding="utf-8", newline="\n") as f:
        for row in flagged:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n


def failed_reasons(summary: AnnotateSummary) -> list[str]:
    """One line per pair the server failed (refused or answered with no chat completion)."""
    return [f"{a.id}/{a.lang}: {a.reason}" for a in summary.annotations if a.status == "failed"]


__all__ = ["AnnotateConfig", "AnnotateSummary", "Annotation", "Outcomes", "Verdict", "annotate", "ask_messages",
           "ask_params", "build_messages", "canonical_explanation", "check_reply", "cost_lines", "cost_report",
           "failed_reasons", "flag_reason", "sample_images"]
