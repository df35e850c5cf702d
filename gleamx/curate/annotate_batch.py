"""``gleamx annotate --batch``: the same annotation through the provider's Batch API (OpenAI's, or an
OpenAI-compatible one with ``/files`` and ``/batches``), answered within 24 h at the provider's batch price.

The requests are the online run's (:mod:`gleamx.curate.annotate`: the same messages and decoding parameters),
written one per line as ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` to a JSONL
file, uploaded (``purpose="batch"``) and submitted as a batch (``completion_window="24h"``); a round is split
into several batches past ``--batch-requests`` requests or 190 MB. The batches are polled every
``--poll-interval`` seconds and each one's output and error files are downloaded when it ends. Each reply goes
through the online run's verdict check: kept (canonical verdict line), re-asked in the next round's batch (no
verdict: with the reminder; a contradiction: afresh at ``--retry-temperature``) or, after ``--verdict-retries``
re-asks, flagged; the results go to the same cache, under the same keys, as online ones (``"via": "batch"`` and
the batch id say how they were asked), so ``annotated.jsonl``, ``flagged.jsonl`` and ``cost.json`` are the online
run's.

``annotate/batches.jsonl`` records, in fsynced lines, each batch submitted (its id, endpoint, and the pair each
``custom_id`` carries with what its earlier asks cost), the re-asks a collected batch left, and each batch's end.
A rerun with the same settings polls the batches still in flight instead of sending them again, collects the ended
ones, and never asks a pair the cache holds. A batch is recorded as asked for before it is created, and created
without the client's retries: after a failed create, and in a run after one killed in between, the provider's
batches are searched for its input file, so a batch made whose reply was lost is collected, never paid twice. A
collected batch's files (input, output, errors) are deleted at the provider. Batches at another ``--base-url``, or
carrying none of the run's pairs (other settings), are left in flight, said in one line.

How a batch ends: ``completed`` or ``expired`` - the answered lines are kept; a line answered with 408, 409, 429
or 5xx, one with an ``error`` (``batch_expired`` when the window ran out) and one missing from the output go out
again in the next round, at most ``--max-retries`` times (then the pair fails: not cached, asked on the next run),
counted in one line per kind; a line refused (HTTP 400 ...) fails its pair. ``failed`` (the file did not
validate) and ``cancelled`` end the run in one line naming the batch and the provider's message; what a cancelled
batch answered is kept, and the rest goes out again on the next run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.curate.annotate import (ANNOTATE_FLAGS, RUN_DIR, AnnotateConfig, Annotation, Outcomes, ask_messages, ask_params,
                                    build_messages, check_reply, flag_reason, sample_images)
from gleamx.errors import GleamError
from gleamx.models.api import Usage

STATE_NAME = f"{RUN_DIR}/batches.jsonl"
INPUT_NAME = f"{RUN_DIR}/batch-input.jsonl"  # the file being uploaded; removed once its batch is recorded
ENDPOINT = "/v1/chat/completions"
WINDOW = "24h"
ENDED = frozenset({"completed", "expired", "failed", "cancelled"})
FILE_BYTES_MAX = 190 << 20  # OpenAI takes batch input files up to 200 MB
STATE_BYTES_MAX = 16 << 20  # one state line stays far below read_records' 64 MB line limit

Pair = tuple[str, str, str]  # (sample id, language, cache key)
_KIND_WORDS = {"reply": "answered", "retry": "failed (sent again)", "unanswered": "unanswered (sent again)",
               "refused": "refused"}


class BatchError(GleamError):
    """A batch the provider failed (its input did not validate) or that was cancelled."""


@dataclass
class Item:
    """One pair at its ``ask``-th ask (0: the first), with what its asks so far cost, and ``tries``: how often
    this ask went out without an answer (expired, failed lines). ``remind`` is the reply without a verdict line
    that this ask shows back; ``label`` lets any run check the reply, the pair's sample loaded or not."""

    id: str
    lang: str
    key: str
    label: bool
    ask: int = 0
    tries: int = 0
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    remind: str | None = None

    @property
    def pair(self) -> Pair:
        return self.id, self.lang, self.key

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "lang": self.lang, "key": self.key, "label": self.label, "ask": self.ask,
                "tries": self.tries, "attempts": self.attempts, "usage": self.usage.as_dict(), "remind": self.remind}

    @classmethod
    def from_dict(cls, row: Any) -> Item | None:
        """The item of a state line, or ``None`` when it is not a well-formed one (a hand-edited file)."""
        try:
            u = row.get("usage") or {}
            usage = Usage(int(u["prompt_tokens"]), int(u["completion_tokens"]), int(u["requests"]))
            remind = row.get("remind")
            if not all(isinstance(row[k], str) for k in ("id", "lang", "key")) or not isinstance(row["label"], bool):
                return None
            return cls(row["id"], row["lang"], row["key"], row["label"], int(row["ask"]), int(row["tries"]),
                       int(row["attempts"]), usage, remind if isinstance(remind, str) else None)
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


@dataclass
class Submitted:
    """A batch as the state file knows it; ``status`` is ``None`` while it is in flight."""

    id: str
    base_url: str
    items: dict[str, Item]  # custom_id -> item
    status: str | None = None


def _items(rows: dict[str, Any]) -> dict[str, Item]:
    """A state line's items by ``custom_id`` (a malformed one, from a hand-edited file, left out)."""
    return {str(c): it for c, d in rows.items() if (it := Item.from_dict(d)) is not None}


class BatchState:
    """``annotate/batches.jsonl``, read into the batches submitted and the re-asks waiting for a batch; appended
    to with :func:`gleamx.eval.appendlog.append_record` (fsynced: a kill loses no submitted batch).

    A collected batch writes its re-asks (``pending`` lines) and then its end; re-asks count only once their
    batch's end is written (a kill between them collects the batch again), and a later batch carrying the pair
    takes them over."""

    def __init__(self, path: Path) -> None:
        from gleamx.eval.appendlog import read_records, repair_tail

        self.path = path
        self.batches: dict[str, Submitted] = {}
        self.pending: dict[Pair, Item] = {}
        # input file id -> (base URL, items, when): a batch asked for whose id was never recorded
        self.creating: dict[str, tuple[str, dict[str, Item], float]] = {}
        self._staged: dict[str, list[Item]] = {}
        repair_tail(path)
        for _, row in read_records(path):
            self._apply(row)

    def _apply(self, row: dict[str, Any]) -> None:
        event, bid, fid = row.get("event"), row.get("batch"), row.get("input_file")
        if event == "creating" and isinstance(fid, str) and isinstance(row.get("items"), dict):
            items = _items(row["items"])
            at = row.get("at")
            self.creating[fid] = (str(row.get("base_url")), items, float(at) if isinstance(at, (int, float)) else 0.0)
            return
        if event == "dropped" and isinstance(fid, str):  # never created: its items wait for the next batch
            for it in self.creating.pop(fid, ("", {}, 0.0))[1].values():
                self.pending[it.pair] = it
            return
        if not isinstance(bid, str):
            return
        if isinstance(fid, str):
            self.creating.pop(fid, None)
        if event == "submitted" and isinstance(row.get("items"), dict):
            items = _items(row["items"])
            self.batches[bid] = Submitted(bid, str(row.get("base_url")), items)
            for it in items.values():
                self.pending.pop(it.pair, None)
        elif event == "pending" and isinstance(row.get("items"), list):
            self._staged.setdefault(bid, []).extend(it for d in row["items"] if (it := Item.from_dict(d)))
        elif event == "ended" and bid in self.batches:
            self.batches[bid].status = str(row.get("status"))
            for it in self._staged.pop(bid, []):
                self.pending[it.pair] = it

    def _append(self, row: dict[str, Any]) -> None:
        from gleamx.eval.appendlog import append_record

        append_record(self.path, row)
        self._apply(row)

    def asking(self, input_file: str, cfg: AnnotateConfig, items: dict[str, Item]) -> None:
        """Recorded before a batch is asked for: a kill, or a reply the network lost, between the provider making
        it and its id reaching this file leaves this line, and the next run looks for the batch before asking
        again (:meth:`_BatchRun.recover`)."""
        self._append({"event": "creating", "input_file": input_file, "base_url": cfg.base_url, "at": time.time(),
                      "items": {c: it.as_dict() for c, it in items.items()}})

    def dropped(self, input_file: str) -> None:
        """The batch of ``input_file`` was never made: its items go out in the next batch."""
        self._append({"event": "dropped", "input_file": input_file})

    def submitted(self, bid: str, cfg: AnnotateConfig, input_file: str, items: dict[str, Item]) -> None:
        self._append({"event": "submitted", "batch": bid, "base_url": cfg.base_url, "model": cfg.model,
                      "input_file": input_file, "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "items": {c: it.as_dict() for c, it in items.items()}})

    def ended(self, bid: str, status: str, pending: list[Item]) -> None:
        """``bid`` ended in ``status``, leaving ``pending`` to ask again (in lines of at most STATE_BYTES_MAX)."""
        import json

        chunk: list[dict[str, Any]] = []
        size = 0
        for it in pending:
            row = it.as_dict()
            n = len(json.dumps(row, ensure_ascii=False).encode())
            if chunk and size + n > STATE_BYTES_MAX:
                self._append({"event": "pending", "batch": bid, "items": chunk})
                chunk, size = [], 0
            chunk.append(row)
            size += n
        if chunk:
            self._append({"event": "pending", "batch": bid, "items": chunk})
        self._append({"event": "ended", "batch": bid, "status": status})


def ask_in_batches(cfg: AnnotateConfig, key: str, todo: list[tuple[Any, str, str]], out: Path,
                   saved: list[Annotation], outcomes: Outcomes, log: Callable[[str], None]) -> list[str]:
    """Ask ``todo`` ((sample, language, cache key) pairs not in the cache) in batches until each is kept,
    flagged or failed; ``saved`` is the cache as read. Returns one line per kind of request sent again."""
    run = _BatchRun(cfg, key, todo, out, saved, outcomes, log)
    try:
        run.run()
    finally:
        run.api.close()
    return run.notes()


class _BatchRun:
    def __init__(self, cfg: AnnotateConfig, key: str, todo: list[tuple[Any, str, str]], out: Path,
                 saved: list[Annotation], outcomes: Outcomes, log: Callable[[str], None]) -> None:
        from gleamx.models.api import ApiClient

        self.cfg, self.key, self.out, self.outcomes, self.log = cfg, key, out, outcomes, log
        self.samples = {(s.id, lang, k): s for s, lang, k in todo}
        self.state = BatchState(out / STATE_NAME)
        # answers of a batch already in the cache: a run killed while collecting it collects it again
        self.merged = {(a.id, a.lang, a.key, a.batch) for a in saved if a.batch is not None}
        self.resent: Counter[str] = Counter()  # "expired" / "failed" -> requests sent again
        self.why: dict[str, str] = {}  # the first reason of each kind
        self.api = ApiClient(cfg, key, ANNOTATE_FLAGS, saved=f"batches in flight are recorded in {out / STATE_NAME} and "
                                                     f"collected answers in the cache")
        self._told_left = False

    # -- the rounds

    def open_pairs(self) -> list[Pair]:
        """This run's pairs with no outcome yet."""
        return [p for p in self.samples if (p[0], p[1]) not in self.outcomes.results]

    def run(self) -> None:
        self.recover()
        while True:
            open_ = self.open_pairs()
            flight = self.in_flight(set(open_))
            carried = {it.pair for b in flight for it in b.items.values()}
            todo = [self.state.pending.get(p) or self.fresh(p) for p in open_ if p not in carried]
            if todo:
                self.submit(todo)
                continue
            if not flight:
                return
            self.wait(flight)

    def fresh(self, pair: Pair) -> Item:
        return Item(*pair, label=bool(self.samples[pair].label))

    def in_flight(self, open_: set[Pair]) -> list[Submitted]:
        """The batches in flight at ``--base-url`` that carry a pair of this run; the others are said once."""
        mine, left = [], []
        for b in self.state.batches.values():
            if b.status is not None:
                continue
            ours = b.base_url == self.cfg.base_url and any(it.pair in open_ for it in b.items.values())
            (mine if ours else left).append(b)
        if left and not self._told_left:
            self._told_left = True
            self.log(f"{len(left)} batch(es) in flight carry none of this run's pairs (another --base-url or other "
                     f"settings) and are left alone: {', '.join(b.id for b in left[:3])}"
                     + (", ..." if len(left) > 3 else ""))
        return mine

    # -- submitting

    def submit(self, items: list[Item]) -> None:
        """Send ``items`` in as few batches as the limits allow, each recorded in the state file."""
        import json

        path = self.out / INPUT_NAME
        chunk: dict[str, Item] = {}
        size = state_size = 0
        f = path.open("wb")
        try:
            urls: tuple[str, tuple[str, str]] | None = None  # the last sample's images: its languages come in a row
            for it in items:
                sample = self.samples[it.pair]
                if urls is None or urls[0] != sample.id:
                    urls = (sample.id, sample_images(sample, self.cfg))
                request = self.request(sample, it, urls[1])
                line = (json.dumps(request, ensure_ascii=False) + "\n").encode()  # custom_id "" (a few bytes short)
                n_state = len(json.dumps(it.as_dict(), ensure_ascii=False).encode())
                if chunk and (len(chunk) >= self.cfg.batch_requests or size + len(line) > FILE_BYTES_MAX
                              or state_size + n_state > STATE_BYTES_MAX):
                    f.close()
                    self.send(path, chunk)
                    chunk, size, state_size, f = {}, 0, 0, path.open("wb")
                cid = request["custom_id"] = str(len(chunk))
                line = (json.dumps(request, ensure_ascii=False) + "\n").encode()
                f.write(line)
                chunk[cid] = it
                size, state_size = size + len(line), state_size + n_state
        finally:
            f.close()
        self.send(path, chunk)

    def request(self, sample: Any, it: Item, images: tuple[str, str]) -> dict[str, Any]:
        """One line of the batch file (its ``custom_id`` set by the caller): the online run's request body."""
        base = build_messages(sample.query_view, it.label, it.lang, self.cfg.label, images)
        body = {"model": self.cfg.model, "messages": ask_messages(base, it.lang, it.remind),
                **ask_params(self.cfg, it.ask)}
        return {"custom_id": "", "method": "POST", "url": ENDPOINT, "body": body}

    def send(self, path: Path, chunk: dict[str, Item]) -> None:
        client = self.api.client
        with path.open("rb") as fh:
            upload = self.api.call("uploading the batch file", lambda: client.files.create(
                file=(path.name, fh, "application/jsonl"), purpose="batch"))
        _check_id(upload, "the uploaded file", self.cfg.base_url)
        self.state.asking(upload.id, self.cfg, chunk)
        batch = self.create(upload.id, time.time())
        # recorded (fsynced) at once: a rerun polls this batch instead of paying for it twice
        self.state.submitted(batch.id, self.cfg, upload.id, chunk)
        path.unlink(missing_ok=True)
        asks = Counter("first asks" if it.ask == 0 else "re-asks" for it in chunk.values())
        self.log(f"batch {batch.id}: {len(chunk)} requests submitted ("
                 + ", ".join(f"{n} {what}" for what, n in sorted(asks.items())) + "); a rerun collects it")

    def create(self, input_file: str, since: float) -> Any:
        """The batch of ``input_file``, made once: the ``openai`` client would repeat a create whose reply the
        network lost, and the provider bill both batches, so each try is a single request, and after one that
        failed the provider's batches are searched for this file before the next."""
        client, failed = self.api.client.with_options(max_retries=0), 0
        while True:
            try:
                batch = self.api.call("creating the batch", lambda: client.batches.create(
                    input_file_id=input_file, endpoint=ENDPOINT, completion_window=WINDOW))
            except GleamError:
                found = self.find(input_file, since)
                if found is not None:
                    return found
                failed += 1
                if failed > self.cfg.max_retries:
                    raise
                time.sleep(min(2.0 ** failed, 30.0))
                continue
            _check_id(batch, "the batch", self.cfg.base_url)
            return batch

    def find(self, input_file: str, since: float) -> Any | None:
        """The provider's batch made from ``input_file`` (newest first, back to a day before ``since``), or
        ``None``."""
        def search() -> Any | None:
            for b in self.api.client.batches.list(limit=100):
                if getattr(b, "input_file_id", None) == input_file:
                    return b
                if isinstance(getattr(b, "created_at", None), (int, float)) and b.created_at < since - 86400:
                    return None
            return None

        found = self.api.call("listing the batches", search)
        if found is not None:
            _check_id(found, "the batch", self.cfg.base_url)
        return found

    def recover(self) -> None:
        """Batches asked for whose id a killed run never recorded: found at the provider by their input file and
        collected, or, never made, their requests go out in the next batch (never paid for twice)."""
        for fid, (base_url, items, since) in list(self.state.creating.items()):
            if base_url != self.cfg.base_url:
                continue
            found = self.find(fid, since)
            if found is None:
                self.state.dropped(fid)
                continue
            self.state.submitted(found.id, self.cfg, fid, items)
            self.log(f"batch {found.id}: made at the provider before the last run stopped, its id unrecorded; "
                     f"found by its input file and collected with the rest ({len(items)} requests)")

    # -- waiting and collecting

    def wait(self, flight: list[Submitted]) -> None:
        """Poll ``flight`` until at least one batch ends, then collect the ended ones."""
        shown: dict[str, str] = {}
        while True:
            ended = []
            for b in flight:
                info = self.api.call(f"status of batch {b.id}", lambda b=b: self.api.client.batches.retrieve(b.id))
                text = _status_text(info)
                if shown.get(b.id) != text:
                    shown[b.id] = text
                    self.log(f"batch {b.id}: {text}")
                if info.status in ENDED:
                    ended.append((b, info))
            for b, info in ended:
                self.collect(b, info)
            if ended:
                return
            time.sleep(self.cfg.poll_interval)

    def collect(self, b: Submitted, info: Any) -> None:
        """Merge an ended batch: its answers into the cache, its re-asks and lines to send again into the state."""
        from gleamx.models.api import scrub_message

        if info.status == "failed":  # nothing was answered: its items wait, as they were, for the next run
            self.state.ended(b.id, "failed", list(b.items.values()))
            self.tidy(b.id, info)
            raise BatchError(f"annotate: batch {b.id} failed at {self.cfg.base_url}: "
                             f"{scrub_message(_batch_error(info), self.key)}; rerun to send its {len(b.items)} "
                             "requests again")
        lines: dict[str, dict[str, Any]] = {}
        for fid in (info.output_file_id, info.error_file_id):  # output first: its answer wins
            if fid:
                for cid, row in self.download(fid, b.id).items():
                    lines.setdefault(cid, row)
        pending: list[Item] = []
        counts: Counter[str] = Counter()
        for cid, it in b.items.items():
            kind, detail = _line_outcome(lines.get(cid), self.key, info.status)
            if info.status == "cancelled" and kind in ("unanswered", "retry"):
                pending.append(it)  # not asked, or cut short: it goes out again as it was
                continue
            counts[kind] += 1
            nxt = self.settle(b.id, it, kind, detail)
            if nxt is not None:
                pending.append(nxt)
        self.outcomes.sync()  # the answers are durable before the batch is marked collected
        self.state.ended(b.id, info.status, pending)
        self.tidy(b.id, info)
        self.log(f"batch {b.id}: {info.status}, collected: "
                 + ", ".join(f"{counts[k]} {word}" for k, word in _KIND_WORDS.items() if counts[k]))
        if info.status == "cancelled":
            raise BatchError(f"annotate: batch {b.id} was cancelled at {self.cfg.base_url}; its "
                             f"{sum(counts.values())} answered requests are saved, rerun to send the other "
                             f"{len(b.items) - sum(counts.values())} again")

    def tidy(self, bid: str, info: Any) -> None:
        """Delete the provider's copies of a collected batch's files (input, output, errors): its answers are in the
        cache and its end in the state file, and the files would count against the account's storage until
        deleted by hand. A deletion that fails is said in one line, and the run goes on."""
        for name in ("input_file_id", "output_file_id", "error_file_id"):
            fid = getattr(info, name, None)
            if not isinstance(fid, str) or not fid:
                continue
            try:
                self.api.call(f"deleting file {fid} of batch {bid}", lambda fid=fid: self.api.client.files.delete(fid))
            except GleamError as e:
                self.log(f"file {fid} of batch {bid} left at the provider: {e}")

    def settle(self, bid: str, it: Item, kind: str, detail: Any) -> Item | None:
        """One line's outcome for ``it``: an annotation (kept, flagged, failed) or the item to ask next."""
        cfg, ours = self.cfg, it.pair in self.samples
        if kind == "reply":
            text, usage = detail
            it.attempts += 1
            it.usage.add(usage)
            verdict = check_reply(text, it.label, it.lang)
            if verdict.explanation is not None:
                return self.finish(Annotation(it.id, it.lang, it.key, "ok", verdict.explanation, reply=text,
                                              attempts=it.attempts, usage=it.usage, via="batch", batch=bid), ours)
            if it.ask < cfg.verdict_retries:
                return Item(it.id, it.lang, it.key, it.label, it.ask + 1, 0, it.attempts, it.usage,
                            text if verdict.remind else None)
            reason = flag_reason(verdict.reason or "no reply", cfg.verdict_retries + 1, it.attempts)
            return self.finish(Annotation(it.id, it.lang, it.key, "flagged", reason=reason, reply=text,
                                          attempts=it.attempts, usage=it.usage, via="batch", batch=bid), ours)
        if kind != "unanswered":  # the server answered the line, with an error: a request sent and counted
            it.attempts += 1
            it.usage.add(Usage(requests=1))
        if kind == "refused":
            return self.finish(Annotation(it.id, it.lang, it.key, "failed", reason=detail, attempts=it.attempts,
                                          usage=it.usage, via="batch", batch=bid), ours)
        what = "expired" if kind == "unanswered" else "failed"
        it.tries += 1
        if it.tries > cfg.max_retries:
            reason = f"{detail}, {it.tries} time(s) in a batch; see --max-retries"
            return self.finish(Annotation(it.id, it.lang, it.key, "failed", reason=reason, attempts=it.attempts,
                                          usage=it.usage, via="batch", batch=bid), ours)
        self.resent[what] += 1
        self.why.setdefault(what, detail)
        return it

    def finish(self, ann: Annotation, ours: bool) -> None:
        if (ann.id, ann.lang, ann.key, ann.batch) not in self.merged:  # else: cached by a run killed collecting it
            self.outcomes.finished(ann, ours)

    def download(self, file_id: str, bid: str) -> dict[str, dict[str, Any]]:
        """The lines of a batch's output or error file, by ``custom_id`` (lines that are no JSON object are
        skipped: their requests count as unanswered)."""
        from gleamx.data.text import parse_json

        content = self.api.call(f"file {file_id} of batch {bid}", lambda: self.api.client.files.content(file_id))
        rows: dict[str, dict[str, Any]] = {}
        for raw in content.content.splitlines():
            try:
                row = parse_json(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError too
                continue
            if isinstance(row, dict) and isinstance(row.get("custom_id"), str):
                rows.setdefault(row["custom_id"], row)
        return rows

    def notes(self) -> list[str]:
        lines = []
        if self.resent["expired"]:
            lines.append(f"{self.resent['expired']} request(s) unanswered when their batch ended "
                         f"({self.why['expired']}): sent again in a later batch")
        if self.resent["failed"]:
            lines.append(f"{self.resent['failed']} request(s) failed inside a batch (first: {self.why['failed']}): "
                         "sent again in a later batch")
        return lines


def _line_outcome(line: dict[str, Any] | None, key: str, status: str) -> tuple[str, Any]:
    """What one line of a batch's output or error file says: ``reply`` ((text, usage)); ``retry`` (why: a
    transient error, sent again); ``unanswered`` (why: expired, or missing); ``refused`` (why: fails the pair)."""
    from openai.types.chat import ChatCompletion

    from gleamx.models.api import FAILED, REFUSED, completion_text, completion_usage, error_text

    if line is None:
        return "unanswered", f"no answer in the batch's files (batch {status})"
    resp, err = line.get("response"), line.get("error")
    if isinstance(resp, dict) and isinstance(resp.get("status_code"), int):
        code, body = resp["status_code"], resp.get("body")
        if code == 200:
            completion = ChatCompletion.construct(**body) if isinstance(body, dict) else None
            text = completion_text(completion) if completion is not None else None
            if text is None:
                return "retry", f"{FAILED}: HTTP 200 whose body is not a chat completion"
            return "reply", (text, completion_usage(completion))
        msg = error_text(body.get("error", body) if isinstance(body, dict) else None, key)
        why = f"HTTP {code}" + (f": {msg}" if msg else "")
        if code in (408, 409, 429) or code >= 500:
            return "retry", why
        return "refused", f"{REFUSED} ({why})"
    if isinstance(err, dict):
        why = f"{err.get('code') or 'error'}" + (f": {msg}" if (msg := error_text(err, key)) else "")
        return ("unanswered" if err.get("code") == "batch_expired" else "retry"), why
    return "unanswered", f"a line without a response (batch {status})"


def _check_id(obj: Any, what: str, url: str) -> None:
    """An upload or batch the server answered without an id cannot be followed: one line, nothing recorded."""
    from gleamx.errors import GleamConfigError

    if not isinstance(getattr(obj, "id", None), str) or not obj.id:
        raise GleamConfigError(f"annotate: {url} answered without an id for {what}; check --base-url (an "
                               "OpenAI-compatible endpoint with the Batch API)")


def _status_text(info: Any) -> str:
    """``in_progress, 40 of 100 requests answered (2 failed)``."""
    counts = getattr(info, "request_counts", None)
    total, done, failed = (getattr(counts, k, None) for k in ("total", "completed", "failed"))
    if not isinstance(total, int) or not total:
        return str(info.status)
    answered = (done or 0) + (failed or 0)
    return f"{info.status}, {answered} of {total} requests answered" + (f" ({failed} failed)" if failed else "")


def _batch_error(info: Any) -> str:
    """The provider's first error of a failed batch (``code: message (line N)``)."""
    data = getattr(getattr(info, "errors", None), "data", None) or []
    if not data:
        return "no error message"
    e = data[0]
    where = f" (line {e.line} of its file)" if getattr(e, "line", None) is not None else ""
    return f"{getattr(e, 'code', None) or 'error'}: {' '.join(str(getattr(e, 'message', '') or '').split())[:200]}" \
           f"{where}"


__all__ = ["BatchError", "BatchState", "ENDPOINT", "Item", "STATE_NAME", "ask_in_batches"]
