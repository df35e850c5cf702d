"""gleamx annotate --batch against a loopback stand-in of the Batch API (files, batches): the same outputs and cache
as the online run, re-asks as a second batch, resuming a batch in flight, expired, partly failed, failed and
cancelled batches, and the batch price in the cost report.

The stand-in answers each line of a batch with tests/test_annotate.py's ``Stub`` (the same ``reply(sample_id,
lang, n)`` scripts as the online tests); a line scripted as ``UNANSWERED`` is left out of the batch's files, one
scripted ``(0, {}, {"code", "message"})`` is an error-file line without a response, any other non-200 an
error-file line with that status.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from gleamx.curate.annotate import ANNOTATED_NAME, CACHE_NAME, COST_NAME, FLAGGED_NAME, PROMPTS, annotate
from gleamx.curate.annotate_batch import ENDPOINT, STATE_NAME, BatchError
from gleamx.errors import GleamConfigError
from test_annotate import (ENV, N, SECRET, Reply, Stub, _key, cfg, completion, data, everything,  # noqa: F401
                           explanation, query_urls, read_jsonl, stub)
from test_judge import loopback_servers, send

UNANSWERED: Reply = (0, {}, None)
FAST = 0.01  # --poll-interval


class BatchApi:
    """``/v1/files`` (multipart upload, content) and ``/v1/batches`` (create, retrieve) in memory. A batch stays
    ``in_progress`` for its first ``polls`` status checks; the next one runs its lines through ``chat`` and ends
    it in ``end(n)`` (the n-th batch created, from 1): completed, expired, cancelled, or failed (no line run)."""

    def __init__(self, chat: Stub, polls: int, end: Callable[[int], str]) -> None:
        self.chat, self.polls, self.end = chat, polls, end
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}  # the files held now (a collected batch's are deleted)
        self.n_files = 0
        self.uploads: list[str] = []  # the purpose of each upload
        self.creates: list[dict[str, Any]] = []  # the body of each POST /v1/batches
        self.inputs: list[list[dict[str, Any]]] = []  # each batch's lines, as created
        self.batches: dict[str, dict[str, Any]] = {}
        self.retrieves = 0
        self.lists = 0  # GET /v1/batches (a search for a batch whose id a run never recorded)
        self.lose_creates = 0  # the next n creates make their batch, then drop the connection unanswered
        self.auth: set[str] = set()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        self.auth.add(h.headers.get("Authorization", ""))
        with self.lock:
            if h.command == "POST" and h.path == "/v1/files":
                return send(h, 200, {}, json.dumps(self.upload(h)).encode())
            if h.command == "POST" and h.path == "/v1/batches":
                made = self.create(h)
                if self.lose_creates:
                    self.lose_creates -= 1
                    h.close_connection = True  # made, but its reply never arrives
                    return None
                return send(h, 200, {}, json.dumps(made).encode())
            if h.command == "GET" and h.path.partition("?")[0] == "/v1/batches":
                self.lists += 1
                newest = [self.public(b) for b in reversed(self.batches)]
                return send(h, 200, {}, json.dumps({"object": "list", "data": newest, "has_more": False}).encode())
            if h.command == "GET" and (m := re.fullmatch(r"/v1/batches/([\w-]+)", h.path)):
                return send(h, 200, {}, json.dumps(self.retrieve(m[1])).encode())
            if h.command == "DELETE" and (m := re.fullmatch(r"/v1/files/([\w-]+)", h.path)):
                self.files.pop(m[1])
                return send(h, 200, {}, json.dumps({"id": m[1], "object": "file", "deleted": True}).encode())
            if h.command == "GET" and (m := re.fullmatch(r"/v1/files/([\w-]+)/content", h.path)):
                return send(h, 200, {"Content-Type": "application/octet-stream"}, self.files[m[1]])
        send(h, 404, {}, json.dumps({"error": {"message": f"no route {h.command} {h.path}"}}).encode())

    def new_file_id(self) -> str:
        self.n_files += 1
        return f"file-{self.n_files}"

    def upload(self, h: BaseHTTPRequestHandler) -> dict[str, Any]:
        from email.parser import BytesParser
        from email.policy import HTTP

        raw = h.rfile.read(int(h.headers["Content-Length"]))
        msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {h.headers['Content-Type']}\r\n\r\n".encode() + raw)
        parts = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                 for part in msg.iter_parts()}
        fid = self.new_file_id()
        self.files[fid] = parts["file"]
        self.uploads.append(parts["purpose"].decode())
        return {"id": fid, "object": "file", "bytes": len(parts["file"]), "created_at": 0,
                "filename": "batch.jsonl", "purpose": "batch", "status": "processed"}

    def create(self, h: BaseHTTPRequestHandler) -> dict[str, Any]:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        self.creates.append(body)
        lines = [json.loads(ln) for ln in self.files[body["input_file_id"]].decode().splitlines()]
        self.inputs.append(lines)
        bid = f"batch_{len(self.creates)}"
        self.batches[bid] = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "created_at": int(time.time()),
                             "completion_window": body["completion_window"], "input_file_id": body["input_file_id"],
                             "status": "validating", "request_counts": {"total": len(lines), "completed": 0,
                                                                         "failed": 0},
                             "n": len(self.creates), "lines": lines, "polls": 0}
        return self.public(bid)

    def public(self, bid: str) -> dict[str, Any]:
        return {k: v for k, v in self.batches[bid].items() if k not in ("n", "lines", "polls")}

    def retrieve(self, bid: str) -> dict[str, Any]:
        self.retrieves += 1
        b = self.batches[bid]
        b["polls"] += 1
        if b["status"] in ("validating", "in_progress"):
            b["status"] = "in_progress"
            if b["polls"] > self.polls:
                self.run(b)
        return self.public(bid)

    def run(self, b: dict[str, Any]) -> None:
        end = self.end(b["n"])
        if end == "failed":
            b.update(status="failed", errors={"object": "list", "data": [
                {"code": "model_not_found", "message": "The model 'annotator' does not support the Batch API.",
                 "param": "body.model", "line": 1}]})
            return
        out, err = [], []
        for i, line in enumerate(b["lines"]):
            sid, lang, n = self.chat.register(line["body"], "")
            status, _, payload = self.chat.reply(sid, lang, n)
            if payload is None:
                continue
            row: dict[str, Any] = {"id": f"batch_req_{i}", "custom_id": line["custom_id"], "error": None,
                                   "response": {"status_code": status, "request_id": f"req_{i}", "body": payload}}
            if status == 0:
                row.update(response=None, error=payload)
            (out if status == 200 else err).append(row)
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = self.new_file_id()
                self.files[fid] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
                b[name] = fid
        b["status"] = end
        b["request_counts"].update(completed=len(out), failed=len(err))


@pytest.fixture
def batch_api(data) -> Iterator[Callable[..., tuple[BatchApi, str]]]:
    path, labels = data
    urls = query_urls(path, labels)
    with loopback_servers() as serve:
        def start(reply: Callable[[str, str, int], Reply] | None = None, polls: int = 1,
                  end: Callable[[int], str] = lambda n: "completed") -> tuple[BatchApi, str]:
            api = BatchApi(Stub(urls, labels, reply, 0.0), polls, end)
            return api, serve(api.handle)

        yield start


def bcfg(path: Path, url: str, out: Path, **kw: Any):
    return cfg(path, url, out, **{"batch": True, "poll_interval": FAST, **kw})


def asked(api: BatchApi, batch: int) -> list[tuple[str, str]]:
    """The (sample, language) pairs the ``batch``-th batch (from 1) carried, in its order."""
    return [api.chat.register(line["body"], "")[:2] for line in api.inputs[batch - 1]]


def cache_rows(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["id"], r["lang"]): r for r in read_jsonl(out / CACHE_NAME)}


def killed_in(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, run: Callable[[], Any]) -> None:
    """``run()`` killed (KeyboardInterrupt) when it calls ``owner.name``: the kill at that point of a batch run."""
    def kill(*_: Any, **__: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(owner, name, kill)
        run()


def state_events(out: Path, asks: bool = False) -> list[tuple[str, str]]:
    """``(event, batch id)`` of the state file; ``asks``: with the ``creating``/``dropped`` lines (by input file)."""
    return [(r["event"], r.get("batch", r.get("input_file"))) for r in read_jsonl(out / STATE_NAME)
            if asks or r["event"] not in ("creating", "dropped")]


# --- the same outputs as the online run ---------------------------------------------------------------------


def test_a_batch_run_writes_what_the_online_run_writes(stub, batch_api, data, tmp_path: Path) -> None:
    """Same replies, online and by batch: the same annotated.jsonl, flagged.jsonl, request bodies and cached
    records (apart from ``via`` and ``batch``); the batch file lines are the Batch API's."""
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p0":  # always contradicts: flagged
            return completion(explanation(sid, lang, not labels[sid]))
        if sid == "p3" and lang == "zh" and n == 1:  # no verdict once: re-asked with the reminder
            return completion("两张图像都有道路。")
        if sid == "p4" and lang == "en" and n == 1:  # contradicts once: re-asked afresh
            return completion(explanation(sid, lang, not labels[sid]))
        return completion(explanation(sid, lang, labels[sid]))

    online, url = stub(reply)
    a = annotate(cfg(path, url, tmp_path / "online", verdict_retries=1))
    api, burl = batch_api(reply)
    b = annotate(bcfg(path, burl, tmp_path / "batch", verdict_retries=1))
    on, by = tmp_path / "online", tmp_path / "batch"
    assert (on / ANNOTATED_NAME).read_bytes() == (by / ANNOTATED_NAME).read_bytes()
    assert (on / FLAGGED_NAME).read_bytes() == (by / FLAGGED_NAME).read_bytes()
    assert len(read_jsonl(by / FLAGGED_NAME)) == 2 and len(read_jsonl(by / ANNOTATED_NAME)) == N - 1
    assert {k: v for k, v in a.as_dict().items() if k != "cost"} == {k: v for k, v in b.as_dict().items()
                                                                       if k != "cost"}
    # the same requests: 24 first asks, then the 4 re-asks (p0 twice, p3/zh, p4/en) as a second batch
    dump = sorted(json.dumps(x, sort_keys=True, ensure_ascii=False) for x in online.bodies)
    assert dump == sorted(json.dumps(ln["body"], sort_keys=True, ensure_ascii=False) for lines in api.inputs
                          for ln in lines)
    assert [len(lines) for lines in api.inputs] == [2 * N, 4]
    for lines in api.inputs:
        assert all(ln["method"] == "POST" and ln["url"] == ENDPOINT == "/v1/chat/completions" for ln in lines)
        assert len({ln["custom_id"] for ln in lines}) == len(lines)
    assert api.creates == [{"input_file_id": f, "endpoint": ENDPOINT, "completion_window": "24h"}
                           for f in ("file-1", "file-3")]  # file-2: the first batch's output
    assert api.uploads == ["batch", "batch"]
    assert api.files == {}  # each batch's input and output files deleted once it was collected
    # the cache: the online records, asked another way
    online_rows, batch_rows = cache_rows(on), cache_rows(by)
    assert {r["via"] for r in online_rows.values()} == {"online"}
    assert {(r["via"], r["batch"]) for r in batch_rows.values()} <= {("batch", "batch_1"), ("batch", "batch_2")}
    strip = {"via", "batch"}
    assert {k: {f: v for f, v in r.items() if f not in strip} for k, r in batch_rows.items()} == \
           {k: {f: v for f, v in r.items() if f not in strip} for k, r in online_rows.items()}
    # the key went out as the header of every Batch API request, and was never written
    assert api.auth == {f"Bearer {SECRET}"} and SECRET not in everything(by)
    assert state_events(by) == [("submitted", "batch_1"), ("pending", "batch_1"), ("ended", "batch_1"),
                                ("submitted", "batch_2"), ("ended", "batch_2")]


def test_a_reask_goes_out_as_a_second_batch(batch_api, data, tmp_path: Path) -> None:
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p1" and lang == "en" and n == 1:
            return completion("Image 1 shows a road.")  # no verdict
        if sid == "p2" and lang == "zh" and n == 1:
            return completion(explanation(sid, lang, not labels[sid]))  # contradicts
        return completion(explanation(sid, lang, labels[sid]))

    api, url = batch_api(reply)
    out = tmp_path / "out"
    d = annotate(bcfg(path, url, out, verdict_retries=2)).as_dict()
    assert (d["n_ok"], d["n_flagged"], d["n_failed"]) == (2 * N, 0, 0)
    assert len(api.creates) == 2 and asked(api, 2) == [("p1", "en"), ("p2", "zh")]
    remind, afresh = (ln["body"] for ln in api.inputs[1])
    assert [m["role"] for m in remind["messages"]] == ["system", "user", "assistant", "user"]
    assert remind["messages"][2]["content"] == "Image 1 shows a road."
    assert remind["messages"][3]["content"] == PROMPTS["en"]["verdict_reminder"]
    assert len(afresh["messages"]) == 2 and remind["temperature"] == afresh["temperature"] == 0.7
    assert all(ln["body"]["temperature"] == 0 for ln in api.inputs[0])
    rows = cache_rows(out)
    assert rows[("p1", "en")]["attempts"] == 2 and rows[("p1", "en")]["batch"] == "batch_2"
    assert rows[("p0", "en")]["attempts"] == 1 and rows[("p0", "en")]["batch"] == "batch_1"


# --- resuming --------------------------------------------------------------------------------------------------


def test_a_rerun_polls_the_batch_in_flight_instead_of_sending_it_again(batch_api, data, tmp_path: Path) -> None:
    path, _ = data
    api, url = batch_api(polls=3)
    out = tmp_path / "out"
    seen: list[str] = []

    def killed(line: str) -> None:
        seen.append(line)
        if "in_progress" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        annotate(bcfg(path, url, out), log=killed)
    assert len(api.creates) == 1 and api.retrieves == 1 and seen[0].startswith("batch batch_1: 12 requests submitted")
    assert state_events(out) == [("submitted", "batch_1")] and read_jsonl(out / CACHE_NAME) == []
    lines: list[str] = []
    summary = annotate(bcfg(path, url, out), log=lines.append)
    assert summary.as_dict()["n_ok"] == 2 * N
    assert len(api.creates) == 1 and api.retrieves == 4  # polled on, never sent again
    assert sum(api.chat.counts.values()) == 2 * N  # every line answered once
    assert not any("submitted" in ln for ln in lines) and "batch batch_1: completed, collected: 12 answered" in lines
    # finished pairs are never asked again: nothing is submitted or polled
    annotate(bcfg(path, url, out))
    assert len(api.creates) == 1 and api.retrieves == 4


def test_a_batch_made_but_never_recorded_is_found_and_collected_not_paid_for_twice(batch_api, data, tmp_path: Path,
                                                                                   monkeypatch) -> None:
    """Killed after the provider made the batch and before its id reached the state file: the next run finds the
    batch by its input file and collects it; nothing is created twice."""
    from gleamx.curate import annotate_batch

    path, _ = data
    api, url = batch_api()
    out = tmp_path / "out"
    killed_in(monkeypatch, annotate_batch.BatchState, "submitted", lambda: annotate(bcfg(path, url, out)))
    assert len(api.creates) == 1 and [e for e, _ in state_events(out, asks=True)] == ["creating"]
    lines: list[str] = []
    summary = annotate(bcfg(path, url, out), log=lines.append)
    assert summary.as_dict()["n_ok"] == 2 * N and len(api.creates) == 1 and api.lists == 1
    assert sum(api.chat.counts.values()) == 2 * N  # every line answered once
    assert any(ln.startswith("batch batch_1: made at the provider before the last run stopped") for ln in lines)


def test_a_create_whose_reply_is_lost_is_found_not_made_again(batch_api, data, tmp_path: Path) -> None:
    """The provider made the batch and the connection dropped before its reply: the run looks for it by its input
    file instead of creating it again (the openai client's retry would have made and billed a second batch)."""
    path, _ = data
    api, url = batch_api()
    api.lose_creates = 1
    summary = annotate(bcfg(path, url, tmp_path / "out"))
    assert summary.as_dict()["n_ok"] == 2 * N and len(api.creates) == 1 and api.lists == 1
    assert sum(api.chat.counts.values()) == 2 * N


def test_a_batch_asked_for_but_never_made_goes_out_in_the_next_run(batch_api, data, tmp_path: Path,
                                                                   monkeypatch) -> None:
    """Killed after the request was recorded and before the provider made anything: the next run finds no batch,
    and sends the requests again, once."""
    from gleamx.curate import annotate_batch

    path, _ = data
    api, url = batch_api()
    out = tmp_path / "out"
    killed_in(monkeypatch, annotate_batch._BatchRun, "create", lambda: annotate(bcfg(path, url, out)))
    summary = annotate(bcfg(path, url, out))
    assert summary.as_dict()["n_ok"] == 2 * N and len(api.creates) == 1 and len(api.uploads) == 2
    assert [e for e, _ in state_events(out, asks=True)][:3] == ["creating", "dropped", "creating"]
    assert sum(api.chat.counts.values()) == 2 * N


def test_a_run_killed_while_collecting_collects_the_batch_again_without_duplicates(batch_api, data,
                                                                                    tmp_path: Path) -> None:
    path, _ = data
    api, url = batch_api()
    out = tmp_path / "out"

    def killed(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        annotate(bcfg(path, url, out), progress=killed)
    assert len(read_jsonl(out / CACHE_NAME)) == 5 and state_events(out) == [("submitted", "batch_1")]
    summary = annotate(bcfg(path, url, out))
    assert summary.as_dict()["n_ok"] == 2 * N and summary.n_cached == 5
    keys = [(r["id"], r["lang"]) for r in read_jsonl(out / CACHE_NAME)]
    assert len(keys) == len(set(keys)) == 2 * N
    assert len(api.creates) == 1 and sum(api.chat.counts.values()) == 2 * N


# --- batches that end badly ---------------------------------------------------------------------------------


def test_an_expired_batch_keeps_its_answers_and_sends_the_rest_again(batch_api, data, tmp_path: Path) -> None:
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if n == 1 and sid in ("p3", "p4"):
            return UNANSWERED
        if n == 1 and sid == "p5":  # how OpenAI reports a request the window ran out on
            return 0, {}, {"code": "batch_expired", "message": "This request could not be executed before the "
                                                              "completion window expired."}
        return completion(explanation(sid, lang, labels[sid]))

    api, url = batch_api(reply, end=lambda n: "expired" if n == 1 else "completed")
    out = tmp_path / "out"
    summary = annotate(bcfg(path, url, out, lang=["en"]))
    assert summary.as_dict()["n_ok"] == N and len(api.creates) == 2
    assert asked(api, 2) == [("p3", "en"), ("p4", "en"), ("p5", "en")]
    rows = cache_rows(out)
    assert {k[0] for k, r in rows.items() if r["batch"] == "batch_1"} == {"p0", "p1", "p2"}
    assert rows[("p3", "en")]["attempts"] == 1  # an unanswered line is no request billed
    notes = summary.summary_lines()[1:2]
    assert notes == ["3 request(s) unanswered when their batch ended (no answer in the batch's files (batch "
                     "expired)): sent again in a later batch"]


def test_a_partly_failed_batch_sends_the_failed_lines_again(batch_api, data, tmp_path: Path) -> None:
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p1" and n == 1:
            return 500, {}, {"error": {"message": "boom"}}
        if sid == "p2" and n == 1:
            return 0, {}, {"code": "server_error", "message": "internal"}
        if sid == "p3":  # always: fails after --max-retries
            return 503, {}, {"error": {"message": "overloaded"}}
        if sid == "p4":  # refused: that pair fails, not sent again
            return 400, {}, {"error": {"message": f"image too large ({SECRET})"}}
        return completion(explanation(sid, lang, labels[sid]))

    api, url = batch_api(reply)
    out = tmp_path / "out"
    summary = annotate(bcfg(path, url, out, lang=["en"], max_retries=1))
    d = summary.as_dict()
    assert (d["n_ok"], d["n_failed"]) == (N - 2, 2) and len(api.creates) == 2
    assert asked(api, 2) == [("p1", "en"), ("p2", "en"), ("p3", "en")]
    failed = {a.id: a.reason for a in summary.annotations if a.status == "failed"}
    assert failed["p3"] == "HTTP 503: overloaded, 2 time(s) in a batch; see --max-retries"
    assert "HTTP 400" in failed["p4"] and "image too large (***)" in failed["p4"] and SECRET not in failed["p4"]
    assert set(cache_rows(out)) == {(f"p{i}", "en") for i in (0, 1, 2, 5)}  # failures are not cached
    assert cache_rows(out)[("p1", "en")]["attempts"] == 2
    assert summary.summary_lines()[1] == ("3 request(s) failed inside a batch (first: HTTP 500: boom): sent again in a "
                                          "later batch")


def test_a_failed_batch_is_one_line_and_a_rerun_sends_it_again(batch_api, data, tmp_path: Path, capsys) -> None:
    from gleamx.cli.main import main

    path, _ = data
    api, url = batch_api(end=lambda n: "failed" if n == 1 else "completed")
    out = tmp_path / "out"
    argv = ["annotate", "--data", str(path), "--model", "annotator", "--base-url", url, "--out", str(out),
            "--api-key-env", ENV, "--batch", "--poll-interval", str(FAST)]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "batch batch_1 failed" in err[0]
    assert "model_not_found: The model 'annotator' does not support the Batch API. (line 1 of its file)" in err[0]
    assert read_jsonl(out / CACHE_NAME) == [] and sum(api.chat.counts.values()) == 0
    assert main(argv) == 0 and len(api.creates) == 2
    assert len(read_jsonl(out / ANNOTATED_NAME)) == N


def test_a_cancelled_batch_keeps_its_answers_and_ends_in_one_line(batch_api, data, tmp_path: Path) -> None:
    path, labels = data
    api, url = batch_api(lambda sid, lang, n: UNANSWERED if n == 1 and sid in ("p3", "p4", "p5")
                         else completion(explanation(sid, lang, labels[sid])),
                         end=lambda n: "cancelled" if n == 1 else "completed")
    out = tmp_path / "out"
    with pytest.raises(BatchError) as e:
        annotate(bcfg(path, url, out, lang=["en"]))
    assert str(e.value).startswith("annotate: batch batch_1 was cancelled") and "\n" not in str(e.value)
    assert "3 answered requests are saved, rerun to send the other 3 again" in str(e.value)
    assert set(cache_rows(out)) == {("p0", "en"), ("p1", "en"), ("p2", "en")}
    assert annotate(bcfg(path, url, out, lang=["en"])).as_dict()["n_ok"] == N
    assert asked(api, 2) == [("p3", "en"), ("p4", "en"), ("p5", "en")]


# --- cost and config -----------------------------------------------------------------------------------------


def test_cost_json_shows_the_discounted_batch_price(stub, batch_api, data, tmp_path: Path, capsys) -> None:
    """Two samples asked online, the other four by batch into the same --out: cost.json prices the batch tokens at
    --batch-discount off and reports both parts, and the CLI prints them."""
    from gleamx.cli.main import main

    path, labels = data
    usages = {f"p{i}": {"prompt_tokens": 700 + i, "completion_tokens": 50 + 3 * i} for i in range(N)}

    def reply(sid: str, lang: str, n: int) -> Reply:
        return completion(explanation(sid, lang, labels[sid]), usages[sid])

    out = tmp_path / "out"
    _, url = stub(reply)
    annotate(cfg(path, url, out, lang=["en"], limit=2, price_in=2.5, price_out=10.0))
    api, burl = batch_api(reply)
    argv = ["annotate", "--data", str(path), "--model", "annotator", "--base-url", burl, "--out", str(out),
            "--api-key-env", ENV, "--lang", "en", "--batch", "--poll-interval", str(FAST), "--price-in", "2.5",
            "--price-out", "10", "--batch-discount", "0.25"]
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out

    def tokens(ids: list[str]) -> tuple[int, int]:
        return sum(usages[i]["prompt_tokens"] for i in ids), sum(usages[i]["completion_tokens"] for i in ids)

    (oin, oout), (bin_, bout) = tokens(["p0", "p1"]), tokens(["p2", "p3", "p4", "p5"])
    online_cost, batch_cost = (oin * 2.5 + oout * 10) / 1e6, (bin_ * 2.5 + bout * 10) / 1e6 * 0.75
    report = json.loads((out / COST_NAME).read_text())
    (m,) = report["models"]
    assert report["batch_discount"] == 0.25
    assert (m["online"]["requests"], m["online"]["prompt_tokens"], m["online"]["completion_tokens"]) == (2, oin, oout)
    assert (m["batch"]["requests"], m["batch"]["prompt_tokens"], m["batch"]["completion_tokens"]) == (4, bin_, bout)
    rounding = 1e-6  # costs are rounded to 6 decimals
    assert m["online"]["cost"] == pytest.approx(online_cost, abs=rounding)
    assert m["batch"]["cost"] == pytest.approx(batch_cost, abs=rounding)
    assert m["cost"] == pytest.approx(online_cost + batch_cost, abs=2 * rounding) and m["requests"] == N
    this_run = report["this_run"]
    assert this_run["online"]["requests"] == 0 and this_run["cost"] == pytest.approx(batch_cost, abs=rounding)
    assert f"  batch (25% off)  4 requests, {bin_:,} tokens in, {bout:,} tokens out, cost {batch_cost:.4f}" in printed
    assert f"  online  2 requests, {oin:,} tokens in, {oout:,} tokens out, cost {online_cost:.4f}" in printed
    assert "batch batch_1: 4 requests submitted (4 first asks); a rerun collects it" in printed


def test_batch_options_are_checked_in_one_line(data, tmp_path: Path) -> None:
    path, _ = data
    url = "http://127.0.0.1:9/v1"
    with pytest.raises(GleamConfigError, match="--poll-interval: expected a positive number of seconds, got 0"):
        bcfg(path, url, tmp_path, poll_interval=0)
    with pytest.raises(GleamConfigError, match="--batch-discount: expected a number from 0 to 1, got 1.5"):
        bcfg(path, url, tmp_path, batch_discount=1.5)
    with pytest.raises(GleamConfigError, match="--batch-requests: expected an integer >= 1, got 0"):
        bcfg(path, url, tmp_path, batch_requests=0)


def test_a_round_past_batch_requests_is_split(batch_api, data, tmp_path: Path) -> None:
    path, _ = data
    api, url = batch_api()
    summary = annotate(bcfg(path, url, tmp_path / "out", batch_requests=5))
    assert summary.as_dict()["n_ok"] == 2 * N and [len(x) for x in api.inputs] == [5, 5, 2]
