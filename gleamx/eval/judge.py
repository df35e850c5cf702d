"""Optional LLM-as-judge for GLEAM-X explanations (any OpenAI-compatible chat endpoint).

A judge model (GPT-4o, Doubao, a vLLM server, ...) grades each candidate
explanation against the human-revised reference explanation and the ground-truth
label on four criteria, each an integer 1-5 with a one-sentence rationale:

* ``landmarks``     - are the landmarks/features the candidate relies on correct?
* ``spatial``       - are the spatial relations it describes correct?
* ``hallucination`` - does it invent content? (5 = nothing invented)
* ``consistency``   - does its final verdict follow from its own explanation?

The rubric is written in English and Chinese (``judge_prompts.yaml`` beside this
module holds every prompt text); an item is judged with the rubric of its language. Replies must be JSON; one that cannot be read is re-asked a few
times and then recorded as *invalid*: counted in ``n_invalid``, never given a
default score.

Results are appended, one flushed line per item, to a ``judge.jsonl`` cache
keyed by sample id plus a hash of everything that changes a judgment: the judge
model, the rubric version and the exact messages the judge gets (rubric, view,
label, reference and candidate text), and with images on, the bytes of both
images. A rerun - after a crash, a kill or an added model - only asks for what is
missing, and an edited explanation or reference is judged again. One run writes
the cache at a time (a lock on the directory's ``.lock``), and a line half-written
by a killed run is dropped before the next one reads or appends.

A reply that is not a chat completion at all (an HTTP 200 with an HTML page or
broken JSON) is asked again at once, out of the same ``max_retries`` budget as a 5xx; when
every try gets one, or the server refuses the request (HTTP 400, 413, ...), that item
only fails: it is counted in ``n_invalid`` and ``n_failed``, not cached, and asked again
on the next run. Timeouts (``timeout`` seconds each), connection errors, 408, 409, 429 and 5xx are
retried ``max_retries`` times by the ``openai`` client (jittered exponential backoff, ``Retry-After``
honoured); then the run ends with one line (rerun to resume).

The API key is read from an environment variable and handed to the client only, which
sends it as the ``Authorization`` header; it never reaches a log line, an error message
or the cache file, and the judge's replies are cached as written. A ``--judge-base-url``
with a credential in it (``?key=...``) is refused (:func:`gleamx.models.api.check_base_url`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gleamx.errors import GleamConfigError, GleamDataError
from gleamx.eval.appendlog import read_records, repair_tail, single_writer
from gleamx.models.api import (
    FAILED,
    REFUSED,
    ApiClient,
    ApiFlags,
    ApiUnavailableError,
    checked_key,
    image_data_url,
    run_concurrently,
)

if TYPE_CHECKING:
    from gleamx.data.schema import GleamSample, ImageLike

log = logging.getLogger(__name__)

RUBRIC_VERSION = "1"
"""Bump when the meaning of a score changes; the cache key also hashes the prompt text itself."""

CRITERIA: tuple[str, ...] = ("landmarks", "spatial", "hallucination", "consistency")

# --------------------------------------------------------------------------------------------
# Rubric: the prompt text is data, in judge_prompts.yaml beside this module (one section per language).

PROMPTS_FILE = "judge_prompts.yaml"


def _load_prompts() -> dict[str, dict[str, Any]]:
    """``{lang: {system, user, label, views, unknown_view, images_note, fix_request}}`` from the packaged file."""
    from importlib import resources

    import yaml

    return yaml.safe_load(resources.files(__package__).joinpath(PROMPTS_FILE).read_text(encoding="utf-8"))


_PROMPTS = _load_prompts()
RUBRICS: dict[str, tuple[str, str]] = {lang: (p["system"], p["user"]) for lang, p in _PROMPTS.items()}
"""``{lang: (system prompt, user template)}``."""
_LABEL_TEXT = {lang: p["label"] for lang, p in _PROMPTS.items()}
_VIEW_TEXT = {lang: p["views"] for lang, p in _PROMPTS.items()}
_UNKNOWN_VIEW = {lang: p["unknown_view"] for lang, p in _PROMPTS.items()}
_IMAGES_NOTE = {lang: p["images_note"] for lang, p in _PROMPTS.items()}
# Sent after an unreadable reply: at temperature 0 the same prompt tends to give the same
# reply, so the retry shows the judge its own answer and what was wrong with it.
_FIX_REQUEST = {lang: p["fix_request"] for lang, p in _PROMPTS.items()}

_RUBRIC_HASH = hashlib.sha256(
    json.dumps([RUBRICS, _LABEL_TEXT, _VIEW_TEXT, _IMAGES_NOTE], ensure_ascii=False, sort_keys=True).encode()
).hexdigest()[:12]

_MAX_IMAGE_SIDE = 1024  # keeps attached images (and the judge's token bill) bounded


# --------------------------------------------------------------------------------------------
# Public types


@dataclass
class JudgeConfig:
    """How to reach the judge and how hard to try."""

    model: str
    base_url: str
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    max_retries: int = 5
    """Retries of one request on 408/409/429/5xx/timeout/connection errors (the ``openai`` client's ``max_retries``)."""
    max_invalid_retries: int = 2
    """Re-asks after a reply that is not valid rubric JSON, before the item is recorded invalid."""
    timeout: float = 60.0
    """Seconds one request may take (``gleamx-eval --judge-timeout``); a timeout is retried like a 5xx."""
    include_images: bool = False


@dataclass
class JudgeItem:
    """One explanation to grade. ``candidate`` is the model's full answer (verdict line included)."""

    id: str
    lang: str
    label: bool
    candidate: str
    reference: str
    view: str | None = None
    query_image: ImageLike | None = None
    satellite_image: ImageLike | None = None


@dataclass
class JudgeResult:
    """The judgment of one item. ``scores`` is empty when ``valid`` is false; ``error`` says why."""

    id: str
    key: str
    valid: bool
    scores: dict[str, int] = field(default_factory=dict)
    rationales: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    cached: bool = False

    @property
    def mean(self) -> float | None:
        return sum(self.scores.values()) / len(self.scores) if self.valid else None

    def to_record(self, cfg: JudgeConfig, lang: str) -> dict[str, Any]:
        return {
            "id": self.id, "key": self.key, "model": cfg.model, "rubric_version": RUBRIC_VERSION, "lang": lang,
            "valid": self.valid, "scores": self.scores, "rationales": self.rationales, "error": self.error,
            "attempts": self.attempts,
        }


@dataclass
class JudgeSummary:
    """Means over valid items (1-5, higher is better for every criterion) plus per-item results."""

    model: str
    n: int
    n_invalid: int
    means: dict[str, float | None]
    overall: float | None
    results: list[JudgeResult]
    rubric_version: str = RUBRIC_VERSION
    n_failed: int = 0
    """Of ``n_invalid``: items the server failed or refused (not cached; asked again on the next run)."""

    def to_dict(self, with_items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model, "rubric_version": self.rubric_version, "n": self.n, "n_invalid": self.n_invalid,
            "n_failed": self.n_failed,
            "invalid_rate": self.n_invalid / self.n if self.n else None, "means": self.means, "overall": self.overall,
        }
        if with_items:
            out["items"] = [
                {"id": r.id, "valid": r.valid, "scores": r.scores, "rationales": r.rationales, "error": r.error}
                for r in self.results
            ]
        return out

    def to_markdown(self) -> str:
        """A one-row table for results.md."""
        def f(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"

        head = "| judge | n | invalid | " + " | ".join(CRITERIA) + " | overall |\n|" + "---|" * (len(CRITERIA) + 4)
        row = f"| `{self.model}` | {self.n} | {self.n_invalid} | " + " | ".join(f(self.means[c]) for c in CRITERIA)
        return f"{head}\n{row} | {f(self.overall)} |\n"


class JudgeReplyError(ValueError):
    """A judge reply that is not usable rubric JSON (message says why)."""


class JudgeUnavailableError(ApiUnavailableError):
    """The judge kept failing (rate limits, server errors) after every retry."""


# --------------------------------------------------------------------------------------------
# Prompts and parsing


def build_messages(item: JudgeItem, include_images: bool = False) -> list[dict[str, Any]]:
    """The chat messages that ask for a judgment of ``item`` in its language."""
    if item.lang not in RUBRICS:
        raise ValueError(f"lang: expected one of {sorted(RUBRICS)}, got {item.lang!r}")
    system, user = RUBRICS[item.lang]
    text = user.format(
        view=_VIEW_TEXT[item.lang].get(item.view or "", item.view or _UNKNOWN_VIEW[item.lang]),
        label_text=_LABEL_TEXT[item.lang][bool(item.label)],
        reference=item.reference.strip(),
        candidate=item.candidate.strip(),
    )
    if not include_images:
        return [{"role": "system", "content": system}, {"role": "user", "content": text}]
    if item.query_image is None or item.satellite_image is None:
        raise GleamDataError.at("judge", None, "images", f"item {item.id!r}: include_images needs both images")
    parts: list[dict[str, Any]] = [{"type": "text", "text": text + "\n\n" + _IMAGES_NOTE[item.lang]}]
    for image in (item.query_image, item.satellite_image):
        parts.append({"type": "image_url", "image_url": {"url": image_data_url(image, _MAX_IMAGE_SIDE)}})
    return [{"role": "system", "content": system}, {"role": "user", "content": parts}]


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _json_objects(text: str) -> list[Any]:
    """Every JSON object findable in ``text``: fenced blocks first, then any ``{...}`` in the prose."""
    found: list[Any] = []
    decoder = json.JSONDecoder()
    for chunk in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        for start in (i for i, ch in enumerate(chunk) if ch == "{"):
            try:
                obj, _ = decoder.raw_decode(chunk, start)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                found.append(obj)
    return found


def _score(value: Any) -> int:
    # Accept 4, 4.0 and "4" (judges quote numbers); refuse bools, 4.5, "4/5" and anything outside 1-5.
    if isinstance(value, bool):
        raise JudgeReplyError(f"score {value!r} is not an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise JudgeReplyError(f"score {value!r} is not an integer")
    if not 1 <= value <= 5:
        raise JudgeReplyError(f"score {value} is outside 1-5")
    return value


def _validate(obj: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    scores: dict[str, int] = {}
    rationales: dict[str, str] = {}
    for name in CRITERIA:
        if name not in lowered:
            raise JudgeReplyError(f"missing criterion {name!r}")
        entry = lowered[name]
        if isinstance(entry, dict):
            if "score" not in entry:
                raise JudgeReplyError(f"{name}: missing 'score'")
            scores[name] = _score(entry["score"])
            rationale = entry.get("rationale", "")
            rationales[name] = rationale.strip() if isinstance(rationale, str) else json.dumps(rationale)
        else:  # a bare score is readable; it just has no rationale
            scores[name] = _score(entry)
            rationales[name] = ""
    return scores, rationales


def parse_judge_reply(text: str | None) -> tuple[dict[str, int], dict[str, str]]:
    """``(scores, rationales)`` from a judge reply; raises :class:`JudgeReplyError` if unusable.

    Takes the first JSON object in the reply (fenced or embedded in prose) that has
    all four criteria; the error of the first candidate object is reported otherwise.
    """
    if not text or not text.strip():
        raise JudgeReplyError("empty reply")
    objects = _json_objects(text)
    if not objects:
        raise JudgeReplyError("no JSON object in reply")
    first_error: JudgeReplyError | None = None
    for obj in objects:
        try:
            return _validate(obj)
        except JudgeReplyError as e:
            first_error = first_error or e
    assert first_error is not None
    raise first_error


# --------------------------------------------------------------------------------------------
# Cache


def cache_key(item: JudgeItem, cfg: JudgeConfig, images: Callable[[Any], str] | None = None) -> str:
    """Hash of everything that changes the judgment of ``item`` (the id is stored beside it): the judge
    model, the rubric version and the text messages the judge gets (rubric, view, label, reference,
    candidate), and with ``include_images`` the bytes of both images (``images`` hashes one image;
    default :class:`gleamx.eval.fingerprint.ImageHasher`)."""
    seen: list[str] | None = None
    if cfg.include_images:
        if images is None:
            from gleamx.eval.fingerprint import ImageHasher

            images = ImageHasher()
        seen = [images(im) if im is not None else "" for im in (item.query_image, item.satellite_image)]
    blob = json.dumps([cfg.model, RUBRIC_VERSION, _RUBRIC_HASH, build_messages(item), cfg.include_images, seen],
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def read_judge_cache(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(id, key): record}`` from ``judge.jsonl``; unreadable lines (a run killed mid-write) are skipped."""
    return {(row["id"], row["key"]): row for _, row in read_records(path)
            if isinstance(row.get("id"), str) and isinstance(row.get("key"), str)}


def _result_from_record(row: dict[str, Any]) -> JudgeResult | None:
    """A cached record as a result, or ``None`` if it is not a well-formed one (then it is judged again)."""
    try:
        valid = row["valid"] is True
        scores = {c: _score(row["scores"][c]) for c in CRITERIA} if valid else {}
        rationales = {c: str(v) for c, v in (row.get("rationales") or {}).items()}
    except (KeyError, TypeError, JudgeReplyError):
        return None
    return JudgeResult(row["id"], row["key"], valid, scores, rationales, row.get("error"),
                       int(row.get("attempts") or 0), cached=True)


# --------------------------------------------------------------------------------------------
# Client and requests (the shared OpenAI-compatible client is gleamx.models.api)

_FLAGS = ApiFlags(what="judge", base_url="--judge-base-url", model="--judge-model", key_env="--judge-api-key-env",
                  timeout="--judge-timeout", max_retries="--judge-max-retries")


def _check_config(cfg: JudgeConfig) -> str:
    """Validate what the user typed; returns the API key."""
    if not cfg.model:
        raise GleamConfigError("--judge-model: give the judge model name the server expects (e.g. gpt-4o)")
    if cfg.concurrency < 1 or cfg.max_retries < 0 or cfg.max_invalid_retries < 0:
        raise GleamConfigError("judge: concurrency must be >= 1 and retry counts >= 0")
    if not (isinstance(cfg.timeout, (int, float)) and math.isfinite(cfg.timeout) and cfg.timeout > 0):
        raise GleamConfigError(f"--judge-timeout: expected a positive number of seconds, got {cfg.timeout!r}")
    return checked_key(cfg, _FLAGS)


class _Judge:
    """One run's client and the re-asking of unreadable replies."""

    def __init__(self, cfg: JudgeConfig, key: str, cache_path: Path) -> None:
        self.cfg = cfg
        self.api = ApiClient(cfg, key, _FLAGS, saved=f"finished judgments are saved in {cache_path}",
                             unavailable=JudgeUnavailableError)

    def judge(self, item: JudgeItem, key: str) -> JudgeResult:
        base = build_messages(item, self.cfg.include_images)
        messages, attempts, why = base, 0, "no reply"
        for _ in range(self.cfg.max_invalid_retries + 1):
            reply = self.api.complete(item.id, messages, temperature=0)
            attempts += reply.attempts
            if reply.refused is not None:
                return JudgeResult(item.id, key, False, error=reply.refused, attempts=attempts)
            try:
                scores, rationales = parse_judge_reply(reply.text)
            except JudgeReplyError as e:
                why = str(e)
                fix = _FIX_REQUEST[item.lang].format(reason=why)
                messages = base + [{"role": "assistant", "content": reply.text or ""}, {"role": "user", "content": fix}]
                continue
            return JudgeResult(item.id, key, True, scores, rationales, attempts=attempts)
        tries = self.cfg.max_invalid_retries + 1
        return JudgeResult(item.id, key, False, error=f"unreadable reply after {tries} tries: {why}", attempts=attempts)


# --------------------------------------------------------------------------------------------
# Entry points


def judge_explanations(
    items: Sequence[JudgeItem],
    cfg: JudgeConfig,
    cache_path: str | Path,
    progress: Callable[[int, int], None] | None = None,
) -> JudgeSummary:
    """Judge every item (reusing ``cache_path``), append new judgments to it, and summarise.

    ``progress(done, total)`` is called from this thread after each item (cached ones first).
    Invalid items are in ``n_invalid`` and ``results`` with their ``error``. Unreadable replies
    are cached (the judge did answer); items the server refused (HTTP 400...) or answered with a
    body that is no chat completion are not (``n_failed``), so a rerun after fixing the server
    tries them again. The cache's directory is locked while this runs (:func:`single_writer`).
    """
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise GleamDataError.at("judge", None, "id", f"duplicate item id {dup!r}")
    for it in items:
        if it.lang not in RUBRICS:
            raise GleamDataError.at("judge", None, "lang", f"item {it.id!r}: expected one of {sorted(RUBRICS)}, "
                                    f"got {it.lang!r}")
        if not it.reference or not it.reference.strip():
            raise GleamDataError.at("judge", None, "reference", f"item {it.id!r} has no reference explanation")
    key = _check_config(cfg)
    cache_path = Path(cache_path)
    with single_writer(cache_path.parent, "gleamx-eval judge"):
        return _judge_locked(items, cfg, key, cache_path, progress)


def _judge_locked(items: Sequence[JudgeItem], cfg: JudgeConfig, key: str, cache_path: Path,
                  progress: Callable[[int, int], None] | None) -> JudgeSummary:
    from gleamx.eval.fingerprint import ImageHasher

    images = ImageHasher()
    keys = {it.id: cache_key(it, cfg, images) for it in items}
    repair_tail(cache_path)  # a killed run's half-written last line, whatever byte it ends in
    cached = read_judge_cache(cache_path)
    results: dict[str, JudgeResult] = {}
    for it in items:
        row = cached.get((it.id, keys[it.id]))
        res = _result_from_record(row) if row is not None else None
        if res is not None:
            results[it.id] = res
    todo = [it for it in items if it.id not in results]
    total, done = len(items), len(results)
    if progress:
        progress(done, total)

    if todo:
        judge = _Judge(cfg, key, cache_path)
        # Only this thread writes, one flushed line per finished item: a kill leaves at most one
        # partial last line, which the next run's repair_tail drops.
        with cache_path.open("ab") as f:
            def finished(it: JudgeItem, res: JudgeResult) -> None:
                nonlocal done
                results[it.id] = res
                if not _not_cached(res):
                    # saved as the judge wrote it: the key never reaches a record (it is only ever sent as
                    # the Authorization header), so nothing here is searched for it
                    f.write(json.dumps(res.to_record(cfg, it.lang), ensure_ascii=False).encode("utf-8") + b"\n")
                    f.flush()
                done += 1
                if progress:
                    progress(done, total)

            # a fatal error ends the run; the other workers stop before their next request
            run_concurrently(judge.api, lambda it: judge.judge(it, keys[it.id]), todo, cfg.concurrency, finished,
                             name="gleamx-judge")

    ordered = [results[it.id] for it in items]
    valid = [r for r in ordered if r.valid]
    means: dict[str, float | None] = {
        c: (sum(r.scores[c] for r in valid) / len(valid) if valid else None) for c in CRITERIA
    }
    overall = sum(r.mean or 0.0 for r in valid) / len(valid) if valid else None
    return JudgeSummary(cfg.model, len(ordered), len(ordered) - len(valid), means, overall, ordered,
                        n_failed=sum(_not_cached(r) for r in ordered))


def _not_cached(res: JudgeResult) -> bool:
    """Whether ``res`` is a server's failure (refused, or no completion at all), not the judge's verdict."""
    return (res.error or "").startswith((REFUSED, FAILED))


def items_from_samples(
    samples: Sequence[GleamSample], predictions: dict[str, str], lang: str
) -> tuple[list[JudgeItem], list[str]]:
    """Judge items for ``samples`` with a prediction, plus the ids skipped for lack of a ``lang`` reference."""
    items: list[JudgeItem] = []
    skipped: list[str] = []
    for s in samples:
        reference = s.explanation.get(lang)
        if not reference or s.id not in predictions:
            skipped.append(s.id)
            continue
        items.append(JudgeItem(s.id, lang, bool(s.label), predictions[s.id], reference, s.query_view,
                               s.query_image, s.satellite_image))
    return items, skipped
