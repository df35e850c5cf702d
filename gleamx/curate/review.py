"""Human revision of generated explanations: a review page in the browser, a spreadsheet round trip, and the
import that makes the revised dataset.

* ``gleamx review serve`` serves a small page (plain HTML+JS, Python's ``http.server``, bound to 127.0.0.1):
  each pair side by side, the explanation in both languages in editable fields, accept / edit / reject, and
  optionally a rating of the generated text (faithful / partly / wrong, and which claims are wrong).
  Every decision is one line appended (and fsynced) to a revisions file, ``review/revisions.jsonl`` beside
  the data by default; the file is never rewritten, and the last line of an id wins when it is read.
  With ``--predictions`` it rates a model's answers instead (:mod:`gleamx.curate.rate`).
* ``gleamx review export`` writes the split as a CSV or JSONL sheet (current decisions included) for people
  who prefer spreadsheets; ``gleamx review import`` merges a revisions file or a sheet into a new dataset:
  reviewed samples carry ``meta.revised: true`` and ``meta.original_explanation``, rejected ones are left
  out, and edit statistics (share edited, mean character edit distance per language) are printed and saved;
  a rated sample carries ``meta.human_rating``.

A revision line::

    {"id": "a", "decision": "edit", "label": true, "explanation": {"en": "...", "zh": "..."},
     "rating": {"en": {"rating": "partly", "wrong_claims": ["..."], "of": "<hash>"}},
     "time": "2026-01-01T00:00:00+00:00"}

``explanation`` is given for ``edit`` only; ``accept`` keeps the generated text and ``reject`` drops the sample.
``rating`` (optional; older logs have none) rates the *generated* text of each language, the one under review,
before any edit; ``of`` is :func:`gleamx.eval.ratings.text_hash` of that text, so a rating never outlives it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import ipaddress
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gleamx.checks import PORT_MAX, check_choice, check_given, check_int, check_ranges, field_help, shown
from gleamx.choices import LANGS, SPLITS
from gleamx.console import percent_text
from gleamx.errors import GleamConfigError, GleamDataError, first_line
from gleamx.eval.appendlog import append_record
from gleamx.outputs import claim_file, claim_folder, overwrite_option

DECISIONS: tuple[str, ...] = ("accept", "edit", "reject")
REVISIONS_NAME = Path("review") / "revisions.jsonl"
STATS_NAME = "review_stats.json"
SHEET_COLUMNS: tuple[str, ...] = ("id", "label", "query_view", "decision", "en", "zh", "original_en", "original_zh",
                                  "rating_en", "wrong_claims_en", "rating_zh", "wrong_claims_zh",
                                  "query_image", "satellite_image")
MAX_TEXT_CHARS = 20_000
# What a spreadsheet reads as the start of a formula (OWASP, CSV injection): such a CSV cell gets a leading "'"
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
MAX_BODY_BYTES = 1 << 20


# --- configs ------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class _ReviewDataConfig:
    """The split under review (shared by the review commands)."""

    data: str = field(metadata={"help": "the dataset: a gleamx JSONL file or a dataset directory"})
    split: str = field(default="test", metadata={"help": "the split to review (default: test)"})
    allow_outside_paths: bool = field(default=False, metadata={
        "help": "accept image paths that resolve outside the dataset directory (default: refused)"})

    def __post_init__(self) -> None:
        check_given("--data", self.data, "a gleamx JSONL file or dataset directory")
        check_given("--split", self.split, "a split name such as test")


@dataclass(kw_only=True)
class ReviewServeConfig(_ReviewDataConfig):
    """Open the review page: accept, edit or reject each explanation, and rate it; every change is saved at once.
    With --predictions, rate a model's answers instead (what gleamx eval --ratings checks the metrics against)."""

    revisions: str | None = field(default=None, metadata={
        "help": "the append-only revisions file (default: review/revisions.jsonl beside the data)"})
    predictions: str | None = field(default=None, metadata={
        "help": "rate a model's answers instead of revising the data: a predictions JSONL (gleamx eval's "
                "OUTPUT/predictions.jsonl, or a file made elsewhere with id and prediction); each answer is shown "
                "beside the reference"})
    lang: str = field(default="en", metadata={"help": "with --predictions: the answers' language (default: en)"})
    ratings: str | None = field(default=None, metadata={
        "help": "with --predictions: the append-only ratings file the page writes and gleamx eval --ratings reads "
                "(one per model and language, outside the eval's --output)"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on (default 127.0.0.1: this machine only)"})
    port: int = field(default=8765, metadata=field_help("port to listen on (0: any free port)", low=0, high=PORT_MAX))
    open_browser: bool = field(default=False, metadata={"help": "open the page in the default browser"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("--lang", self.lang, LANGS)
        if self.lang != "en" and not self.predictions:
            raise GleamConfigError("--lang: the language of the answers rated with --predictions (a review of the data "
                                   "shows both languages)")
        if self.predictions and not self.ratings:
            raise GleamConfigError("--ratings: needed with --predictions (the file the page appends each rating to, "
                                   "e.g. ratings/MODEL-en.jsonl; gleamx eval --ratings reads it)")
        if self.ratings and not self.predictions:
            raise GleamConfigError("--ratings: the page rates a model's answers into it; give the answers with "
                                   "--predictions (a review of the data itself saves its ratings with the decisions, "
                                   "in --revisions)")
        if self.predictions and self.revisions:
            raise GleamConfigError("--revisions: with --predictions the page writes ratings (--ratings), not revisions")
        check_given("--host", self.host, "an address such as 127.0.0.1")
        check_int("--port", self.port, 0)
        check_ranges(self)


@dataclass(kw_only=True)
class ReviewExportConfig(_ReviewDataConfig):
    """Write the split as a CSV or JSONL sheet, with the decisions made so far."""

    out: str = field(metadata={"help": "the sheet to write: a .csv or .jsonl file"})
    revisions: str | None = field(default=None, metadata={
        "help": "revisions to include (default: review/revisions.jsonl beside the data, if it exists)"})
    overwrite: bool = field(default=False, metadata={"help": "replace the sheet if --out exists"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_given("--out", self.out, "a .csv or .jsonl file")
        if Path(self.out).suffix.lower() not in (".csv", ".jsonl"):
            raise GleamConfigError(f"--out: expected a .csv or .jsonl file, got {self.out!r}")


@dataclass(kw_only=True)
class ReviewImportConfig(_ReviewDataConfig):
    """Merge revisions (the review page's file or a sheet) into a new dataset and report edit statistics."""

    out: str = field(metadata={"help": "output dataset directory (one <split>.jsonl per split)"})
    revisions: str | None = field(default=None, metadata={
        "help": "revisions: a .jsonl file (the review page's, or an exported sheet) or a .csv sheet "
                "(default: review/revisions.jsonl beside the data)"})
    keep_unreviewed: bool = field(default=False, metadata={
        "help": "keep the split's samples nobody reviewed (default: the split is its reviewed samples only)"})
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_given("--out", self.out, "an output dataset directory")
        if self.revisions and Path(self.revisions).suffix.lower() not in (".csv", ".jsonl"):
            raise GleamConfigError(f"--revisions: expected a .jsonl or .csv file, got {self.revisions!r}")


# --- samples and revisions ----------------------------------------------------------------------------------


def default_revisions_path(data: str | os.PathLike) -> Path:
    """``review/revisions.jsonl`` in the dataset directory (beside the file for a JSONL file). The
    subdirectory keeps it out of the data files a directory is read through."""
    path = Path(data)
    return (path if path.is_dir() else path.parent) / REVISIONS_NAME


def load_split(data: str | os.PathLike, split: str, *, allow_outside_paths: bool = False) -> list[Any]:
    """The samples of ``split`` (checked like every loader checks them), in dataset order."""
    from gleamx.data import load_samples

    return load_samples(data, split=split, allow_outside_paths=allow_outside_paths).samples


def _text(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def levenshtein(a: str, b: str) -> int:
    """Character edit distance (insertions, deletions, substitutions each cost 1), over code points.

    Exact, by Myers' bit-parallel algorithm (Hyyro's form for edit distance): one column of the table is a pair of
    Python integers used as bit vectors, so each character of ``b`` costs a dozen big-integer operations instead of
    ``len(a)`` Python steps; two 20,000-character texts (``MAX_TEXT_CHARS``) take well under a second."""
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    a, b = a[start:len(a) - end], b[start:len(b) - end]
    if not a or not b:
        return len(a) + len(b)
    masks: dict[str, int] = {}  # character -> bit i set where a[i] is it
    for i, ch in enumerate(a):
        masks[ch] = masks.get(ch, 0) | (1 << i)
    full, top = (1 << len(a)) - 1, 1 << (len(a) - 1)
    plus, minus, distance = full, 0, len(a)  # vertical +1 / -1 deltas of the current column
    for ch in b:
        eq = masks.get(ch, 0)
        xv = eq | minus
        xh = (((eq & plus) + plus) ^ plus) | eq
        h_plus = minus | (~(xh | plus) & full)
        h_minus = plus & xh
        if h_plus & top:
            distance += 1
        elif h_minus & top:
            distance -= 1
        h_plus = ((h_plus << 1) | 1) & full  # row 0 grows by one per character of b
        h_minus = (h_minus << 1) & full
        plus = h_minus | (~(xv | h_plus) & full)
        minus = h_plus & xv
    return distance


def check_ratings(sample: Any, rating: Any, *, file: str, line: int | None) -> dict[str, dict[str, Any]]:
    """The ratings of ``sample``'s generated texts as stored (``{lang: {rating, wrong_claims, of}}``; empty for
    none), or a :class:`GleamDataError` naming ``file:line`` and the field. A language without a generated text
    cannot be rated, and an ``of`` naming another text than the sample's generated one is refused."""
    from gleamx.eval.ratings import check_rating, text_hash

    if rating is None:
        return {}
    if not isinstance(rating, dict):
        raise GleamDataError.at(file, line, "rating", f"expected an object with keys {'/'.join(LANGS)}, got "
                                                      f"{type(rating).__name__}")
    original = {k: _text(v) for k, v in sample.explanation.items() if v}
    out: dict[str, dict[str, Any]] = {}
    for lang, given in rating.items():
        if lang not in LANGS:
            raise GleamDataError.at(file, line, f"rating.{lang}", f"unknown language (expected one of: "
                                                                  f"{', '.join(LANGS)})")
        if given is None:
            continue
        if lang not in original:
            raise GleamDataError.at(file, line, f"rating.{lang}", f"id {sample.id!r} has no generated {lang} text "
                                                                  "to rate")
        if not isinstance(given, dict):
            raise GleamDataError.at(file, line, f"rating.{lang}", f"expected an object {{rating, wrong_claims}}, "
                                                                  f"got {type(given).__name__}")
        checked = check_rating(given.get("rating"), given.get("wrong_claims"), file=file, line=line,
                               prefix=f"rating.{lang}.")
        of = text_hash(original[lang])
        if given.get("of") is not None and given["of"] != of:
            raise GleamDataError.at(file, line, f"rating.{lang}.of", f"rates another text than the generated one of "
                                                                     f"id {sample.id!r} (the data changed since)")
        out[lang] = checked | {"of": of}
    return out


def check_revision(sample: Any, decision: Any, explanation: Any, *, file: str, line: int | None,
                   label: Any = None, rating: Any = None) -> dict[str, Any]:
    """One revision of ``sample`` as it is stored (``id``, ``decision``, ``label``, ``explanation`` for edit,
    ``rating`` when given: :func:`check_ratings`), or a :class:`GleamDataError` naming ``file:line``. An edit that
    changes nothing is an accept; a label other than the sample's, and an edited verdict line that disagrees with
    the label, are refused."""
    from gleamx.data.schema import parse_label
    from gleamx.task.verdict import verdict_problem

    def bad(fld: str, message: str) -> GleamDataError:
        return GleamDataError.at(file, line, fld, message)

    if decision not in DECISIONS:
        raise bad("decision", f"expected one of {', '.join(DECISIONS)}, got {decision!r}")
    if label is not None and label != "":
        parsed = parse_label(label)
        if parsed is None:
            raise bad("label", f"expected true or false, got {label!r}")
        if parsed != sample.label:
            raise bad("label", f"changed from {str(sample.label).lower()} to {str(parsed).lower()} for id "
                               f"{sample.id!r} (labels are not revised; reject the sample instead)")
    original = {k: _text(v) for k, v in sample.explanation.items() if v}
    texts: dict[str, str] = {}
    if explanation is not None:
        if not isinstance(explanation, dict):
            raise bad("explanation", f"expected an object with keys {'/'.join(LANGS)}, got "
                                     f"{type(explanation).__name__}")
        for lang, text in explanation.items():
            if lang not in LANGS:
                raise bad(f"explanation.{lang}", f"unknown language (expected one of: {', '.join(LANGS)})")
            if text is None or text == "":
                continue
            if not isinstance(text, str):
                raise bad(f"explanation.{lang}", f"expected text, got {type(text).__name__}")
            if len(text) > MAX_TEXT_CHARS:
                raise bad(f"explanation.{lang}", f"longer than {MAX_TEXT_CHARS} characters ({len(text)})")
            texts[lang] = _text(text)
    record: dict[str, Any] = {"id": sample.id, "decision": decision, "label": bool(sample.label)}
    ratings = check_ratings(sample, rating, file=file, line=line)
    if ratings:
        record["rating"] = ratings
    if decision == "reject":
        return record
    if decision == "accept":
        changed = [lang for lang in texts if texts[lang] != original.get(lang)]
        if changed:
            raise bad(f"explanation.{changed[0]}", f"decision is accept but the text differs from the generated "
                                                   f"one for id {sample.id!r} (write edit to keep the change)")
        return record
    for lang in original:
        if not texts.get(lang, "").strip():
            raise bad(f"explanation.{lang}", f"empty for id {sample.id!r} (expected the revised text; "
                                             f"reject the sample to drop it)")
    for lang, text in texts.items():
        problem = verdict_problem(text, sample.label)  # the rule validate and the loaders apply
        if problem:
            raise bad(f"explanation.{lang}", f"{problem} for id {sample.id!r}")
    if texts == original:
        return record | {"decision": "accept"}  # an edit that changes nothing
    return record | {"explanation": texts}


def unknown_sample(file: str, line: int | None, sample_id: Any, split: str) -> GleamDataError:
    return GleamDataError.at(file, line, "id", f"unknown id {sample_id!r} (not a sample of split {split!r})")


def read_revisions(path: str | os.PathLike, samples: dict[str, Any], split: str) -> dict[str, dict[str, Any]]:
    """The latest revision of each id in an append-only revisions file (the last line of an id wins). A
    half-written last line (a killed writer) is skipped; an id not in ``samples`` is refused."""
    from gleamx.eval.appendlog import read_records

    latest: dict[str, dict[str, Any]] = {}
    for line, row in read_records(path):
        sample = samples.get(str(row.get("id")))
        if sample is None:
            raise unknown_sample(str(path), line, row.get("id"), split)
        record = check_revision(sample, row.get("decision"), row.get("explanation"), file=str(path), line=line,
                                label=row.get("label"), rating=row.get("rating"))
        latest[sample.id] = record | {"time": row.get("time")}
    return latest


class RevisionLog:
    """The review page's revisions file: whole lines appended, flushed and fsynced, one at a time."""

    def __init__(self, path: str | os.PathLike, samples: dict[str, Any], split: str) -> None:
        from gleamx.eval.appendlog import end_with_newline

        self.path = Path(path)
        self.samples, self.split = samples, split
        self.path.parent.mkdir(parents=True, exist_ok=True)
        end_with_newline(self.path)  # a killed server's half line goes before anything is appended
        self._lock = threading.Lock()
        self.latest = read_revisions(self.path, samples, split)

    def append(self, sample_id: Any, decision: Any, explanation: Any = None, rating: Any = None) -> dict[str, Any]:
        sample = self.samples.get(sample_id) if isinstance(sample_id, str) else None
        if sample is None:
            raise unknown_sample("POST /api/revision", None, sample_id, self.split)
        record = check_revision(sample, decision, explanation, file="POST /api/revision", line=None, rating=rating)
        record["time"] = now_iso()
        with self._lock:
            append_record(self.path, record)
            self.latest[sample.id] = record
        return record

    def state(self, sample: Any) -> dict[str, Any]:
        """What the page shows for ``sample``: the current texts, the generated ones, the decision and the ratings."""
        original = {k: v for k, v in sample.explanation.items() if v}
        record = self.latest.get(sample.id, {})
        return {"id": sample.id, "label": bool(sample.label), "query_view": sample.query_view,
                "original": original, "explanation": record.get("explanation", original),
                "decision": record.get("decision"), "rating": record.get("rating", {}), "time": record.get("time")}


# --- the review server --------------------------------------------------------------------------------------


def _image_bytes(image: Any) -> tuple[bytes, str]:
    """An image of the dataset as bytes and its content type (a path's own bytes, an in-memory one as PNG)."""
    import io
    import mimetypes

    if isinstance(image, (str, os.PathLike)):
        kind = mimetypes.guess_type(os.fspath(image))[0] or "application/octet-stream"
        return Path(image).read_bytes(), kind if kind.startswith("image/") else "application/octet-stream"
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue(), "image/png"


def _page() -> bytes:
    from importlib.resources import files

    return files("gleamx.curate").joinpath("review_page.html").read_bytes()


class ReviewApp:
    """The review page's data: the split's samples and its revisions file. The server asks an app for
    ``listing()``, ``samples`` (the images) and ``save(body)`` (a POST to ``post_path``);
    :class:`gleamx.curate.rate.RatingApp` is the other one."""

    post_path = "/api/revision"
    body_fields = "{id, decision, explanation, rating}"
    writes = "revisions"

    def __init__(self, samples: list[Any], revisions: str | os.PathLike, *, split: str, data: str = "") -> None:
        self.order = [s.id for s in samples]
        self.samples = {s.id: s for s in samples}
        self.split, self.data = split, data
        self.log = RevisionLog(revisions, self.samples, split)

    def listing(self) -> dict[str, Any]:
        return {"mode": "review", "split": self.split, "data": self.data, "revisions": str(self.log.path),
                "n": len(self.order), "samples": [self.log.state(self.samples[i]) for i in self.order]}

    def save(self, body: dict[str, Any]) -> dict[str, Any]:
        """Append the decision in ``body``; the sample's new state (a :class:`GleamDataError` when it is bad)."""
        record = self.log.append(body.get("id"), body.get("decision"), body.get("explanation"), body.get("rating"))
        return self.log.state(self.samples[record["id"]])

    def describe(self, url: str) -> str:
        """The line ``gleamx review serve`` prints once the page is up."""
        return (f"reviewing {len(self.order)} pairs of split {self.split} at {url} (Ctrl+C stops; every decision is "
                f"saved at once to {self.log.path}; {len(self.log.latest)} reviewed so far)")


def host_allowed(host_header: str | None, bound_host: str, port: int) -> bool:
    """Whether a request's ``Host`` names this server: its port, and a name no DNS answer can move elsewhere
    (``localhost``, the address it listens on, a loopback address; any IP address when it listens on all of them).
    A page served from ``evil.example`` whose name an attacker re-points at 127.0.0.1 (DNS rebinding) still
    sends ``Host: evil.example``, and is refused."""
    if not host_header:
        return False
    try:
        url = urlsplit(f"//{host_header}")
        name, given_port = (url.hostname or "").lower(), url.port or 80
    except ValueError:
        return False
    bound = bound_host.strip("[]").lower()
    if given_port != port or url.username is not None or url.password is not None:
        return False
    if name in ("localhost", bound):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # another DNS name: what a rebinding page sends
    return address.is_loopback or bound in ("", "0.0.0.0", "::")  # an address literal cannot be re-pointed


def _handler(app: Any) -> type[BaseHTTPRequestHandler]:
    """The request handler of ``app`` (a :class:`ReviewApp` or a :class:`gleamx.curate.rate.RatingApp`)."""
    class Handler(BaseHTTPRequestHandler):
        server_version = "gleamx-review"

        def _own_host(self) -> bool:
            """Refuse (403) a request whose ``Host`` is not this server's: DNS rebinding."""
            host, port = self.server.server_address[:2]
            if host_allowed(self.headers.get("Host"), str(host), int(port)):
                return True
            self._error(403, f"refused: Host {shown(self.headers.get('Host'))} is not this server (open "
                             f"http://127.0.0.1:{port}/ or the address gleamx review serve printed)")
            return False

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet: the terminal is the user's)
            return

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def do_GET(self) -> None:  # noqa: N802
            self._guarded(self._get)

        def do_POST(self) -> None:  # noqa: N802
            self._guarded(self._post)

        def _guarded(self, handle: Callable[[], None]) -> None:
            """``handle()``; an error it did not expect is a 500 that names it, not a dropped connection."""
            try:
                handle()
            except Exception as e:  # noqa: BLE001
                self._error(500, f"internal error: {first_line(e, with_type=True)}")

        def _get(self) -> None:
            if not self._own_host():
                return
            url = urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                self._send(200, _page(), "text/html; charset=utf-8")
            elif url.path == "/api/samples":
                self._json(200, app.listing())
            elif url.path == "/image":
                query = parse_qs(url.query)
                sample = app.samples.get((query.get("id") or [""])[0])
                which = (query.get("which") or [""])[0]
                if sample is None or which not in ("query", "satellite"):
                    self._error(404, "no such image (expected id=<a sample of the split>&which=query|satellite)")
                    return
                try:
                    body, kind = _image_bytes(getattr(sample, f"{which}_image"))
                except OSError as e:
                    self._error(404, f"{sample.id}: {which} image unreadable ({e.strerror or e})")
                    return
                self._send(200, body, kind)
            else:
                self._error(404, f"not found: {url.path}")

        def _post(self) -> None:
            if not self._own_host():
                return
            if urlsplit(self.path).path != app.post_path:
                self._error(404, f"not found: {urlsplit(self.path).path}")
                return
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{self.headers.get('Host')}":
                self._error(403, f"refused: a page from {shown(origin)} may not write {app.writes}")
                return
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                self._error(415, "expected Content-Type: application/json")
                return
            try:
                size = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                size = -1
            if not 0 < size <= MAX_BODY_BYTES:
                self._error(413, f"expected a JSON body of 1 to {MAX_BODY_BYTES} bytes")
                return
            body = self._json_body(size)
            if body is None:
                return
            try:
                state = app.save(body)
            except GleamDataError as e:
                self._error(404 if e.problem.field == "id" else 400, str(e))
                return
            except OSError as e:
                self._error(500, f"{app.log.path}: could not save ({e.strerror or e})")
                return
            self._json(200, state)

        def _json_body(self, size: int) -> dict[str, Any] | None:
            """The request's JSON object, or None after a 400 saying why (not UTF-8 or JSON, past the JSON
            limits, a lone surrogate that no file can hold, not an object)."""
            from gleamx.data.text import parse_json, surrogate_problem

            expected = f"expected a JSON object {app.body_fields}"
            try:
                text = self.rfile.read(size).decode("utf-8")
                body = parse_json(text)
            except ValueError as e:  # UnicodeDecodeError included
                self._error(400, f"{expected} ({first_line(e)})")
                return None
            problem = surrogate_problem(f"POST {app.post_path}", None, text, body)
            if problem is not None:
                self._error(400, str(problem))
                return None
            if not isinstance(body, dict):
                self._error(400, f"{expected}, got {type(body).__name__}")
                return None
            return body

    return Handler


def make_server(app: Any, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The review server (not yet serving; ``port`` 0 picks a free one: ``server.server_address[1]``)."""
    try:
        server = ThreadingHTTPServer((host, port), _handler(app))
    except OSError as e:
        raise GleamConfigError(f"--host/--port: cannot listen on {host}:{port} ({e.strerror or e})") from None
    server.daemon_threads = True
    return server


def serve_review(cfg: ReviewServeConfig, on_ready: Callable[[str, Any], None] | None = None) -> None:
    """Serve the review page until interrupted; ``on_ready(url, app)`` is called once it listens. One server
    writes a revisions (or ratings) file at a time (a second fails at once with one line)."""
    from gleamx.eval.appendlog import single_writer

    samples = load_split(cfg.data, cfg.split, allow_outside_paths=cfg.allow_outside_paths)
    make: Callable[[], Any]
    if cfg.predictions:
        from gleamx.curate.rate import RatingApp, check_ratings_path, read_answers

        log, flag = check_ratings_path(cfg.ratings or "", cfg.predictions), "--ratings"
        answers = read_answers(cfg.predictions)
        make = lambda: RatingApp(samples, answers, log, lang=cfg.lang, split=cfg.split,  # noqa: E731
                                 predictions=cfg.predictions)
    else:
        log = Path(cfg.revisions) if cfg.revisions else default_revisions_path(cfg.data)
        flag = "--revisions"
        make = lambda: ReviewApp(samples, log, split=cfg.split, data=str(cfg.data))  # noqa: E731
    with single_writer(log.parent, what="gleamx review serve", flag=flag):
        app = make()
        server = make_server(app, cfg.host, cfg.port)
        host, port = server.server_address[:2]
        url = f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"
        if on_ready:
            on_ready(url, app)
        if cfg.open_browser:
            import webbrowser

            webbrowser.open(url)
        try:
            server.serve_forever()
        finally:
            server.server_close()


# --- sheets: export and read back ---------------------------------------------------------------------------


def _rel_image(image: Any, base: Path) -> str:
    if isinstance(image, (str, os.PathLike)):
        return Path(os.path.relpath(Path(image).resolve(), base.resolve())).as_posix()
    return "(in-memory image)"


@dataclass
class SheetExport:
    """What :func:`export_sheet` wrote: the sheet, its rows, and how many of them already have a decision."""

    out: Path
    n_rows: int
    n_decided: int

    def summary_lines(self) -> list[str]:
        return [f"wrote {self.n_rows} rows ({self.n_decided} with a decision) to {self.out}"]


def export_sheet(cfg: ReviewExportConfig) -> SheetExport:
    """Write the split as a sheet (CSV with a BOM so spreadsheets read UTF-8, or JSONL)."""
    samples = load_split(cfg.data, cfg.split, allow_outside_paths=cfg.allow_outside_paths)
    by_id = {s.id: s for s in samples}
    revisions = Path(cfg.revisions) if cfg.revisions else default_revisions_path(cfg.data)
    if cfg.revisions and not revisions.is_file():
        raise GleamConfigError(f"--revisions: {revisions}: file not found")
    latest = read_revisions(revisions, by_id, cfg.split) if revisions.is_file() else {}
    out = claim_file(cfg.out, "--out", overwrite=cfg.overwrite,
                     inputs={"--data": cfg.data, "--revisions": revisions if revisions.is_file() else None})
    rows = []
    for s in samples:
        record = latest.get(s.id, {})
        original = {k: v for k, v in s.explanation.items() if v}
        current = record.get("explanation", original)
        rating = record.get("rating", {})
        rows.append({"id": s.id, "label": str(bool(s.label)).lower(), "query_view": s.query_view,
                     "decision": record.get("decision") or "", "en": current.get("en", ""),
                     "zh": current.get("zh", ""), "original_en": original.get("en", ""),
                     "original_zh": original.get("zh", ""),
                     **{f"{name}_{lang}": value for lang in LANGS for name, value in _rating_cells(rating.get(lang))},
                     "query_image": _rel_image(s.query_image, out.parent),
                     "satellite_image": _rel_image(s.satellite_image, out.parent)})
    if out.suffix.lower() == ".csv":
        with out.open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=SHEET_COLUMNS)
            writer.writeheader()
            writer.writerows({k: as_text_cell(v) for k, v in row.items()} for row in rows)
    else:
        with out.open("w", encoding="utf-8", newline="\n") as f:
            for row, s in zip(rows, samples):
                expl = {lang: row.pop(lang) for lang in LANGS}
                orig = {lang: row.pop(f"original_{lang}") for lang in LANGS}
                for lang in LANGS:
                    del row[f"rating_{lang}"], row[f"wrong_claims_{lang}"]
                row["label"] = row["label"] == "true"
                row["decision"] = row["decision"] or None
                row["explanation"] = {k: v for k, v in expl.items() if v}
                row["original_explanation"] = {k: v for k, v in orig.items() if v}
                row["rating"] = latest.get(s.id, {}).get("rating", {})  # of original_explanation, as in the log
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return SheetExport(out, len(rows), len(latest))


def _rating_cells(rating: dict[str, Any] | None) -> list[tuple[str, str]]:
    """A language's rating as the sheet's ``rating_<lang>`` and ``wrong_claims_<lang>`` cells (one claim a line)."""
    rating = rating or {}
    return [("rating", rating.get("rating", "")), ("wrong_claims", "\n".join(rating.get("wrong_claims", [])))]


def _rating_of_cells(row: dict[str, Any], path: Path, line: int) -> dict[str, Any] | None:
    """The ``rating_<lang>`` / ``wrong_claims_<lang>`` cells of a CSV row as a revision's ``rating`` (None: no
    cell filled; a sheet exported before ratings had no such columns)."""
    rating: dict[str, Any] = {}
    for lang in LANGS:
        value = (row.get(f"rating_{lang}") or "").strip().lower()
        claims = [c.strip() for c in (row.get(f"wrong_claims_{lang}") or "").splitlines() if c.strip()]
        if claims and not value:
            raise GleamDataError.at(str(path), line, f"rating_{lang}",
                                    f"empty, but wrong_claims_{lang} lists {len(claims)} claim(s) (write partly or "
                                    "wrong)")
        if value:
            rating[lang] = {"rating": value, "wrong_claims": claims}
    return rating or None


def _formula_like(value: str) -> bool:
    """Whether ``value``, less any leading apostrophes, starts like a formula. Apostrophes count so that a text
    that itself starts with ``'=`` gets one more, and reading undoes exactly what writing did."""
    return value.lstrip("'").startswith(FORMULA_STARTS)


def as_text_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: ``'`` before a value that would start a formula."""
    return "'" + value if isinstance(value, str) and _formula_like(value) else value


def from_text_cell(value: Any) -> Any:
    """The value :func:`as_text_cell` was given: one leading ``'`` dropped where it added one, nothing else."""
    return value[1:] if isinstance(value, str) and value.startswith("'") and _formula_like(value) else value


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, row)`` of a CSV sheet, its cells as written before export protected them from formulas;
    ``line`` is where the row starts (a cell may span lines)."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in ("id", "decision", "en", "zh") if c not in header]  # rating columns: optional
            if missing:
                raise GleamDataError.at(str(path), 1, "header", f"missing column(s) {', '.join(missing)} (expected "
                                                                f"the columns gleamx review export writes)")
            start = reader.line_num + 1
            for row in reader:
                if None in row:
                    raise GleamDataError.at(str(path), start, "row", "more cells than the header has columns")
                row = {k: from_text_cell(v) for k, v in row.items()}
                if any((v or "").strip() for v in row.values()):
                    explanation = {lang: row.get(lang) or "" for lang in LANGS}
                    yield start, {"id": (row.get("id") or "").strip(), "decision": row.get("decision"),
                                  "label": row.get("label"), "explanation": explanation,
                                  "rating": _rating_of_cells(row, path, start)}
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise GleamDataError.at(str(path), None, "encoding", f"invalid UTF-8 at byte {e.start} (save the sheet "
                                                             f"as UTF-8 CSV)") from None
    except csv.Error as e:
        raise GleamDataError.at(str(path), None, "csv", f"not a readable CSV sheet ({e})") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    from gleamx.data.jsonl import iter_jsonl_rows
    from gleamx.errors import Problem

    for line, row in iter_jsonl_rows(path):
        if isinstance(row, Problem):
            raise GleamDataError(row)
        if not isinstance(row, dict):
            raise GleamDataError.at(str(path), line, "row", f"expected a JSON object, got {type(row).__name__}")
        yield line, row


def read_sheet(path: str | os.PathLike, samples: dict[str, Any], split: str) -> dict[str, dict[str, Any]]:
    """The revisions in a sheet or revisions file, by id. In a JSONL file the last line of an id wins (it is a
    log); in a CSV sheet an id given twice is refused. A row without a decision is an edit when its text
    differs from the generated one and is left unreviewed otherwise (a rating with no decision is refused: a
    rating goes with a decision)."""
    path = Path(path)
    if not path.is_file():
        raise GleamDataError.at(str(path), None, "path", "file not found (expected a .jsonl or .csv revisions file)")
    is_csv = path.suffix.lower() == ".csv"
    rows = _csv_rows(path) if is_csv else _jsonl_rows(path)
    latest: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        sample_id = row.get("id")
        sample = samples.get(sample_id) if isinstance(sample_id, str) else None
        if sample is None:
            raise unknown_sample(str(path), line, sample_id, split)
        if is_csv and sample_id in seen:
            raise GleamDataError.at(str(path), line, "id", f"duplicated id {sample_id!r} (first on line "
                                                           f"{seen[sample_id]}; keep one row per sample)")
        seen[sample_id] = line
        decision = (row.get("decision") or "").strip().lower() if isinstance(row.get("decision"), str) \
            else row.get("decision")
        explanation = row.get("explanation")
        if not decision:
            original = {k: _text(v) for k, v in sample.explanation.items() if v}
            given = {k: _text(v) for k, v in (explanation or {}).items() if isinstance(v, str) and v} \
                if isinstance(explanation, dict) else original
            if given == original:
                if row.get("rating"):
                    raise GleamDataError.at(str(path), line, "decision", f"empty, but id {sample_id!r} is rated "
                                                                         "(write accept, edit or reject)")
                continue  # nobody looked at it
            decision = "edit"
        latest[sample.id] = check_revision(sample, decision, explanation, file=str(path), line=line,
                                           label=row.get("label"), rating=row.get("rating"))
    return latest


# --- import: the revised dataset and its statistics ---------------------------------------------------------


@dataclass
class ImportSummary:
    """What ``gleamx review import`` wrote, and the edit statistics of the reviewed split."""

    out: Path
    written: dict[str, int]
    stats: dict[str, Any]
    keep_unreviewed: bool = False  # the reviewed split's unreviewed samples were written too

    def summary_lines(self) -> list[str]:
        """What ``gleamx review import`` prints: the decisions, each language's edits, and what was written."""
        st = self.stats
        lines = [f"split {st['split']}: {st['n_reviewed']} of {st['n_split']} reviewed: {st['n_accepted']} accepted, "
                 f"{st['n_edited']} edited, {st['n_rejected']} rejected (left out), {st['n_unreviewed']} unreviewed "
                 f"({'kept' if self.keep_unreviewed else 'left out'}); share edited "
                 f"{percent_text(st['share_edited'], sign='%')}"]
        lines += [f"  {lang}: {v['n_edited']} of {v['n']} edited ({percent_text(v['share_edited'], sign='%')}), mean "
                  f"edit distance {v['mean_edit_distance']:.2f} characters" for lang, v in st["languages"].items()
                  if v["n"]]
        rated = st.get("ratings") or {}
        if st.get("n_rated"):
            by_lang = "; ".join(f"{lang}: " + ", ".join(f"{n} {r}" for r, n in counts.items())
                                for lang, counts in rated.items() if any(counts.values()))
            lines.append(f"  rated: {st['n_rated']} of {st['n_reviewed']} reviewed ({by_lang}); kept samples carry "
                         "meta.human_rating")
        files = ", ".join(f"{name}.jsonl ({n})" for name, n in self.written.items())
        return lines + [f"wrote {files} and {STATS_NAME} to {self.out}"]


def edit_stats(samples: list[Any], latest: dict[str, dict[str, Any]], split: str) -> dict[str, Any]:
    """Counts of decisions and, over the kept reviewed samples (accepted or edited), the share whose text was
    changed and the mean character edit distance per language (``mean_edit_distance``: over every kept
    reviewed sample with text in that language, unchanged ones counting 0; ``mean_edit_distance_edited``: over
    the changed ones only)."""
    counts = {d: 0 for d in DECISIONS}
    per_lang: dict[str, list[int]] = {lang: [] for lang in LANGS}
    for s in samples:
        record = latest.get(s.id)
        if record is None:
            continue
        counts[record["decision"]] += 1
        if record["decision"] == "reject":
            continue
        original = {k: _text(v) for k, v in s.explanation.items() if v}
        revised = record.get("explanation", original)
        for lang in LANGS:
            if lang in original or lang in revised:
                per_lang[lang].append(levenshtein(original.get(lang, ""), revised.get(lang, "")))
    kept = counts["accept"] + counts["edit"]

    def mean(values: list[int]) -> float | None:
        return sum(values) / len(values) if values else None

    languages = {}
    for lang, distances in per_lang.items():
        changed = [d for d in distances if d]
        languages[lang] = {"n": len(distances), "n_edited": len(changed),
                           "share_edited": len(changed) / len(distances) if distances else None,
                           "mean_edit_distance": mean(distances), "mean_edit_distance_edited": mean(changed)}
    return {"split": split, "n_split": len(samples), "n_reviewed": sum(counts.values()),
            "n_accepted": counts["accept"], "n_edited": counts["edit"], "n_rejected": counts["reject"],
            "n_unreviewed": len(samples) - sum(counts.values()),
            "share_edited": counts["edit"] / kept if kept else None, "languages": languages}


def rating_stats(latest: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How many reviewed samples were rated (``n_rated``), and per language how many got each rating (``ratings``;
    rejected samples count: a rating is of the generated text, whatever became of it)."""
    from gleamx.eval.ratings import RATINGS

    counts = {lang: dict.fromkeys(reversed(RATINGS), 0) for lang in LANGS}
    for record in latest.values():
        for lang, rating in (record.get("rating") or {}).items():
            counts[lang][rating["rating"]] += 1
    return {"n_rated": sum(1 for r in latest.values() if r.get("rating")), "ratings": counts}


def _revised(sample: Any, record: dict[str, Any]) -> Any:
    original = {k: v for k, v in sample.explanation.items() if v}
    meta = dict(sample.meta) | {"revised": True, "review_decision": record["decision"],
                                "original_explanation": original}
    if record.get("rating"):  # of original_explanation (its hash in "of"), not of the revised text
        meta["human_rating"] = record["rating"]
    if record.get("time"):
        meta["review_time"] = record["time"]
    return dataclasses.replace(sample, explanation=record.get("explanation", original), meta=meta)


def import_revisions(cfg: ReviewImportConfig) -> ImportSummary:
    """Write the dataset with the revisions merged into ``cfg.out`` (one ``<split>.jsonl`` per split; the
    reviewed split holds its reviewed samples, rejected ones left out) and ``review_stats.json``."""
    from gleamx.data import load_samples, write_samples
    from gleamx.data.schema import canonical_split

    revisions = Path(cfg.revisions) if cfg.revisions else default_revisions_path(cfg.data)
    split = canonical_split(cfg.split) or cfg.split
    data = Path(cfg.data)
    every = load_samples(cfg.data, allow_outside_paths=cfg.allow_outside_paths).samples
    reviewed = [s for s in every if s.split == split]
    if not reviewed:
        raise GleamDataError.at(str(cfg.data), None, "split", f"no samples of split {split!r} to review")
    latest = read_sheet(revisions, {s.id: s for s in reviewed}, split)
    stats = edit_stats(reviewed, latest, split) | rating_stats(latest) | {"revisions": str(revisions)}
    by_split: dict[str, list[Any]] = {}
    for s in every:
        if s.split == split:
            record = latest.get(s.id)
            if record is None:
                if not cfg.keep_unreviewed:
                    continue
            elif record["decision"] == "reject":
                continue
            else:
                s = _revised(s, record)
        by_split.setdefault(s.split, []).append(s)
    folder = claim_folder(cfg.out, "--out", command="review import", overwrite=cfg.overwrite,
                          identity={"data": str(data.resolve()), "revisions": str(revisions.resolve()),
                                    "split": split, "keep_unreviewed": cfg.keep_unreviewed},
                          inputs={"--data": data, "--revisions": revisions},
                          writes=[*(f"{s}.jsonl" for s in SPLITS), STATS_NAME], marker=STATS_NAME)
    out = folder.path  # claimed once the revisions are read: a bad sheet leaves no folder behind
    for old in out.glob("*.jsonl"):  # the last run's splits, not the user's files
        if old.name not in folder.kept:
            old.unlink()
    written = {name: write_samples(rows, out / f"{name}.jsonl") for name, rows in by_split.items()}
    stats["n_written"] = written.get(split, 0)
    (out / STATS_NAME).write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    folder.done()
    return ImportSummary(out, written, stats, cfg.keep_unreviewed)


__all__ = ["DECISIONS", "FORMULA_STARTS", "ImportSummary", "ReviewApp", "ReviewExportConfig", "ReviewImportConfig",
           "ReviewServeConfig", "RevisionLog", "SheetExport", "as_text_cell", "check_revision",
           "check_ratings", "default_revisions_path", "edit_stats", "export_sheet", "from_text_cell", "host_allowed",
           "import_revisions", "levenshtein", "make_server", "rating_stats", "read_revisions", "read_sheet",
           "serve_review"]
