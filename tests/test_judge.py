"""LLM-as-judge: reply parsing, retries, errors, cache/resume and concurrency against a loopback stub.

The stub is an OpenAI-compatible ``POST /v1/chat/completions`` on 127.0.0.1 (port 0).
Each test scripts it with ``reply(candidate, n)`` -> ``(status, headers, body)``, where
``candidate`` is the text between the candidate markers and ``n`` counts requests for it; a ``bytes`` body is
sent as is, anything else as JSON.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import openai  # noqa: E402,F401  dev dependency: a missing one fails, never skips

from gleamx.errors import GleamConfigError  # noqa: E402
from gleamx.eval.judge import (  # noqa: E402
    CRITERIA,
    RUBRICS,
    JudgeConfig,
    JudgeItem,
    JudgeReplyError,
    build_messages,
    judge_explanations,
    parse_judge_reply,
    read_judge_cache,
)

SECRET = "sk-test-SECRET-1234567890"
GOOD = {c: {"score": s, "rationale": f"{c} ok"} for c, s in zip(CRITERIA, (4, 3, 5, 2))}
Reply = tuple[int, dict[str, str], Any]


def completion(content: str) -> Reply:
    return 200, {}, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "judge",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
    }


def good(_: str, __: int) -> Reply:
    return completion(json.dumps(GOOD))


class Stub:
    """Records requests, counts them per candidate and tracks the most in flight at once."""

    def __init__(self, reply: Callable[[str, int], Reply], delay: float = 0.0) -> None:
        self.reply, self.delay = reply, delay
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.auth: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0

    @staticmethod
    def candidate(body: dict[str, Any]) -> str:
        user = next(m for m in body["messages"] if m["role"] == "user")["content"]
        text = user if isinstance(user, str) else user[0]["text"]
        return text.rsplit("<<<\n", 1)[1].split("\n>>>", 1)[0]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        cand = self.candidate(body)
        with self.lock:
            self.counts[cand] += 1
            n = self.counts[cand]
            self.auth.append(h.headers.get("Authorization", ""))
            self.bodies.append(body)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
            status, headers, payload = self.reply(cand, n)
            if isinstance(payload, float):  # "sleep this long before answering" (timeouts)
                time.sleep(payload)
                status, headers, payload = completion(json.dumps(GOOD))
            send(h, status, headers, payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        except OSError:  # the client gave up (timeout test)
            pass
        finally:
            with self.lock:
                self.in_flight -= 1


def send(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes) -> None:
    """Answer one request with ``data`` (JSON unless ``headers`` say otherwise)."""
    h.send_response(status)
    for k, v in {"Content-Type": "application/json", **headers}.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


@contextmanager
def loopback_servers() -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], str]]:
    """``serve(handle)`` starts a threading HTTP server on 127.0.0.1 (port 0) whose requests go to ``handle``
    and returns its ``/v1`` base URL; every server started is shut down at the end (tests/test_annotate.py and
    tests/test_annotate_batch.py too)."""
    servers: list[ThreadingHTTPServer] = []

    def serve(handle: Callable[[BaseHTTPRequestHandler], None]) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                handle(self)

            def do_GET(self) -> None:  # noqa: N802  (the Batch API's status and file downloads)
                handle(self)

            def do_DELETE(self) -> None:  # noqa: N802  (the Batch API's files, once collected)
                handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/v1"

    try:
        yield serve
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[..., tuple[Stub, str]]]:
    with loopback_servers() as serve:
        def start(reply: Callable[[str, int], Reply] = good, delay: float = 0.0) -> tuple[Stub, str]:
            s = Stub(reply, delay)
            return s, serve(s.handle)

        yield start


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLEAMX_TEST_JUDGE_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def cfg(url: str, **kw: Any) -> JudgeConfig:
    base: dict[str, Any] = dict(model="judge", base_url=url, api_key_env="GLEAMX_TEST_JUDGE_KEY", concurrency=4,
                                max_retries=3, timeout=5.0)
    return JudgeConfig(**{**base, **kw})


def items(n: int, lang: str = "en") -> list[JudgeItem]:
    return [JudgeItem(f"s{i}", lang, i % 2 == 0, f"cand-{i}\nAnswer: Yes", f"ref {i}\nAnswer: Yes", "uav")
            for i in range(n)]


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        json.dumps(GOOD),
        "```json\n" + json.dumps(GOOD, indent=2) + "\n```",
        "Here is my grading:\n" + json.dumps(GOOD) + "\nHope this helps.",
        json.dumps({c.upper(): {"score": str(v["score"]), "rationale": v["rationale"]} for c, v in GOOD.items()}),
        json.dumps({c: {"score": float(v["score"]), "rationale": v["rationale"]} for c, v in GOOD.items()}),
    ],
    ids=["plain", "fenced", "in-prose", "string-scores", "float-scores"],
)
def test_parse_accepts(reply: str) -> None:
    scores, rationales = parse_judge_reply(reply)
    assert scores == {"landmarks": 4, "spatial": 3, "hallucination": 5, "consistency": 2}
    assert rationales["spatial"] == "spatial ok"


@pytest.mark.parametrize(
    "reply, why",
    [
        ("", "empty"),
        ("The candidate is good.", "no JSON"),
        (json.dumps({**GOOD, "spatial": {"score": 6, "rationale": ""}}), "outside 1-5"),
        (json.dumps({**GOOD, "spatial": {"score": 0}}), "outside 1-5"),
        (json.dumps({**GOOD, "spatial": {"score": 3.5}}), "not an integer"),
        (json.dumps({**GOOD, "spatial": {"score": True}}), "not an integer"),
        (json.dumps({**GOOD, "spatial": {"score": "4/5"}}), "not an integer"),
        (json.dumps({c: v for c, v in GOOD.items() if c != "hallucination"}), "missing criterion"),
        ('{"landmarks": {"score": 4, ', "no JSON"),
    ],
)
def test_parse_rejects(reply: str, why: str) -> None:
    with pytest.raises(JudgeReplyError, match=why):
        parse_judge_reply(reply)


def test_rubric_is_bilingual_and_fenced() -> None:
    item = JudgeItem("x", "zh", False, "候选\n结论：否", "参考\n结论：否", "ground")
    system, user = (m["content"] for m in build_messages(item))
    assert system == RUBRICS["zh"][0] and "幻觉" in system and "地面照片" in user and "不是同一地点" in user
    en = build_messages(JudgeItem("x", "en", True, "c", "r"))
    assert "Hallucination" in en[0]["content"] and "same place (Yes)" in en[1]["content"]
    assert all(c in system and c in en[0]["content"] for c in CRITERIA)


def test_rubric_is_data_in_the_packaged_prompt_file() -> None:
    """The prompts live in gleamx/eval/judge_prompts.yaml, found through the package and shipped in the wheel."""
    import tomllib
    from importlib import resources

    import yaml

    from gleamx.eval import judge

    source = resources.files("gleamx.eval").joinpath(judge.PROMPTS_FILE)
    assert source.is_file()
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    assert {lang: (p["system"], p["user"]) for lang, p in data.items()} == RUBRICS and set(RUBRICS) == {"en", "zh"}
    assert "strict grader" not in Path(judge.__file__).read_text(encoding="utf-8")  # not Python strings
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    shipped = {p.resolve() for g in globs["gleamx"] for p in (root / "gleamx").glob(g)}
    assert Path(str(source)).resolve() in shipped


# --- happy path, key handling, images ------------------------------------------------------------


def test_scores_and_summary(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub()
    cache = tmp_path / "out" / "judge.jsonl"
    seen: list[tuple[int, int]] = []
    summary = judge_explanations(items(3), cfg(url), cache, progress=lambda d, t: seen.append((d, t)))
    assert (summary.n, summary.n_invalid) == (3, 0)
    assert summary.means == {"landmarks": 4, "spatial": 3, "hallucination": 5, "consistency": 2}
    assert summary.overall == pytest.approx(3.5)
    assert [r.id for r in summary.results] == ["s0", "s1", "s2"] and seen[-1] == (3, 3)
    # the key reached the server and nowhere else
    assert s.auth == [f"Bearer {SECRET}"] * 3
    assert SECRET not in cache.read_text(encoding="utf-8")
    assert all(b["temperature"] == 0 and b["model"] == "judge" for b in s.bodies)
    assert "| `judge` | 3 | 0 |" in summary.to_markdown() and summary.to_dict()["invalid_rate"] == 0


def test_images_sent_as_data_urls(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    from PIL import Image

    for name in ("q", "s"):
        Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / f"{name}.png")
    s, url = stub()
    item = JudgeItem("a", "en", True, "cand", "ref", "uav", str(tmp_path / "q.png"), str(tmp_path / "s.png"))
    summary = judge_explanations([item], cfg(url, include_images=True), tmp_path / "judge.jsonl")
    assert summary.n_invalid == 0
    parts = next(m for m in s.bodies[0]["messages"] if m["role"] == "user")["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert parts[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


# --- retries ---------------------------------------------------------------------------------------


def test_fenced_reply_and_transient_errors_are_retried(stub: Callable[..., tuple[Stub, str]], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import openai._base_client as base_client

    waits: list[float] = []  # the client's backoff sleeps, recorded instead of timed (and not slept)
    monkeypatch.setattr(base_client.time, "sleep", waits.append)

    def reply(cand: str, n: int) -> Reply:
        if cand.startswith("cand-0") and n == 1:
            return 429, {"retry-after-ms": "2000"}, {"error": {"message": "slow down"}}
        if cand.startswith("cand-1") and n == 1:
            return 500, {}, {"error": {"message": "boom"}}
        if cand.startswith("cand-2") and n <= 2:
            return 503, {}, {"error": {"message": "overloaded"}}
        return completion("```json\n" + json.dumps(GOOD) + "\n```")

    s, url = stub(reply)
    summary = judge_explanations(items(4), cfg(url), tmp_path / "judge.jsonl")
    assert 2.0 in waits  # cand-0 waited what the server asked (retry-after-ms 2000), not the client's own backoff
    assert summary.n_invalid == 0
    assert [s.counts[f"cand-{i}\nAnswer: Yes"] for i in range(4)] == [2, 2, 3, 1]
    assert [r.attempts for r in summary.results] == [2, 2, 3, 1]


def test_timeout_is_retried(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub(lambda c, n: (200, {}, 1.0) if n == 1 else good(c, n))
    summary = judge_explanations(items(1), cfg(url, timeout=0.3), tmp_path / "judge.jsonl")
    assert summary.n_invalid == 0 and sum(s.counts.values()) == 2


def test_malformed_then_valid_is_reasked_with_the_bad_reply(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub(lambda c, n: completion("I think it is a 4.") if n == 1 else good(c, n))
    summary = judge_explanations(items(1), cfg(url), tmp_path / "judge.jsonl")
    assert summary.n_invalid == 0 and summary.results[0].attempts == 2
    retry = s.bodies[1]["messages"]
    assert retry[-2] == {"role": "assistant", "content": "I think it is a 4."} and "JSON" in retry[-1]["content"]


def test_always_malformed_is_counted_invalid_and_cached(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    def reply(cand: str, n: int) -> Reply:
        if cand.startswith("cand-1"):
            return completion(json.dumps({**GOOD, "landmarks": {"score": "9", "rationale": "x"}}))
        return good(cand, n)

    s, url = stub(reply)
    cache = tmp_path / "judge.jsonl"
    summary = judge_explanations(items(3), cfg(url, max_invalid_retries=2), cache)
    bad = summary.results[1]
    assert (summary.n, summary.n_invalid) == (3, 1)
    assert not bad.valid and bad.scores == {} and "outside 1-5" in (bad.error or "")
    assert s.counts["cand-1\nAnswer: Yes"] == 3  # 1 + max_invalid_retries, then given up
    assert summary.means["landmarks"] == 4  # the invalid item got no default score
    # recorded, so a rerun does not pay for it again
    again = judge_explanations(items(3), cfg(url), cache)
    assert again.n_invalid == 1 and sum(s.counts.values()) == 5


@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b'{"id": "chatcmpl-1", "choices": [',
                                  {"id": "x", "object": "chat.completion"},
                                  {"choices": [{"index": 0, "message": {"role": "assistant"}}]}],
                         ids=["html", "cut-json", "no-choices", "no-content"])
def test_a_garbled_200_is_asked_again_within_the_run(stub: Callable[..., tuple[Stub, str]], tmp_path: Path,
                                                     body: Any) -> None:
    """An HTTP 200 that is no chat completion, then a good one: the same run judges the item (and caches it)."""
    s, url = stub(lambda c, n: (200, {}, body) if c.startswith("cand-0") and n == 1 else good(c, n))
    cache = tmp_path / "judge.jsonl"
    # no re-asks of unreadable replies: the second request can only be the client's retry of the garbled body
    summary = judge_explanations(items(3), cfg(url, max_invalid_retries=0), cache)
    assert (summary.n_invalid, summary.n_failed) == (0, 0)
    assert [s.counts[f"cand-{i}\nAnswer: Yes"] for i in range(3)] == [2, 1, 1]
    assert [r.attempts for r in summary.results] == [2, 1, 1]
    assert sorted(k[0] for k in read_judge_cache(cache)) == ["s0", "s1", "s2"]


def test_a_garbled_200_and_a_5xx_share_one_retry_budget(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    """503, then a garbled 200, then a good reply: max_retries 2 covers both retries; with 1, the garbled 200
    spends the last retry and the item fails (not cached), without ending the run."""
    def reply(c: str, n: int) -> Reply:
        if c.startswith("cand-0") and n % 3 == 1:
            return 503, {"retry-after-ms": "10"}, {"error": {"message": "overloaded"}}
        if c.startswith("cand-0") and n % 3 == 2:
            return 200, {}, b"<html>not json</html>"
        return good(c, n)

    s, url = stub(reply)
    failed = judge_explanations(items(2), cfg(url, max_retries=1), tmp_path / "a.jsonl")
    assert (failed.n_invalid, failed.n_failed, s.counts["cand-0\nAnswer: Yes"]) == (1, 1, 2)
    assert "HTTP 200 whose body is not a chat completion, 2 time(s)" in (failed.results[0].error or "")
    assert [k[0] for k in read_judge_cache(tmp_path / "a.jsonl")] == ["s1"]
    s.counts.clear()
    done = judge_explanations(items(2), cfg(url, max_retries=2), tmp_path / "b.jsonl")
    assert (done.n_invalid, s.counts["cand-0\nAnswer: Yes"], done.results[0].attempts) == (0, 3, 3)


def test_persistent_server_errors_end_the_run(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    from gleamx.eval.judge import JudgeUnavailableError

    s, url = stub(lambda c, n: (503, {}, {"error": {"message": "down"}}))
    with pytest.raises(JudgeUnavailableError, match="failed 3 times .HTTP 503: down.*rerun to resume"):
        judge_explanations(items(1), cfg(url, max_retries=2), tmp_path / "judge.jsonl")
    assert sum(s.counts.values()) == 3


def test_a_fatal_error_stops_the_other_workers_retries(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    """The client retries on its own; once one item ends the run, another worker's next retry is not sent."""
    s, url = stub(lambda c, n: (401, {}, {"error": {"message": "bad key"}}) if c.startswith("cand-0")
                  else (503, {}, {"error": {"message": "down"}}))
    with pytest.raises(GleamConfigError, match="HTTP 401"):
        judge_explanations(items(2), cfg(url, concurrency=2, max_retries=50), tmp_path / "judge.jsonl")
    assert s.counts["cand-1\nAnswer: Yes"] < 10  # of the 51 tries max_retries allows


def test_refused_item_is_invalid_but_not_cached(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub(lambda c, n: (400, {}, {"error": {"message": f"context too long ({SECRET})"}}) if c.startswith("cand-0")
                  else good(c, n))
    cache = tmp_path / "judge.jsonl"
    summary = judge_explanations(items(2), cfg(url), cache)
    assert summary.n_invalid == 1 and "HTTP 400" in (summary.results[0].error or "")
    assert "context too long" in (summary.results[0].error or "") and SECRET not in (summary.results[0].error or "")
    assert [k[0] for k in read_judge_cache(cache)] == ["s1"]


def test_a_one_character_key_leaves_the_cache_as_the_judge_wrote_it(stub: Callable[..., tuple[Stub, str]],
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY=a (a keyless local server): rationales full of a's are cached and read back byte for byte,
    and the rerun asks for nothing."""
    monkeypatch.setenv("GLEAMX_TEST_JUDGE_KEY", "a")
    s, url = stub()
    cache = tmp_path / "judge.jsonl"
    judge_explanations(items(4), cfg(url), cache)
    assert s.auth == ["Bearer a"] * 4  # the key went out in the header, and only there
    written = cache.read_bytes()
    rows = [json.loads(ln) for ln in written.decode("utf-8").splitlines()]
    assert all(r["rationales"] == {c: v["rationale"] for c, v in GOOD.items()} for r in rows)
    assert all(set(r) >= {"id", "key", "valid", "scores", "rationales"} for r in rows)
    s.counts.clear()
    again = judge_explanations(items(4), cfg(url), cache)
    assert sum(s.counts.values()) == 0 and all(r.cached for r in again.results)
    assert again.results[0].rationales["landmarks"] == "landmarks ok" and cache.read_bytes() == written


@pytest.mark.parametrize("query", ["key=SECRET123", "api_key=SECRET123&x=1", "v=1&access_token=SECRET123",
                                   "sig=SECRET123", "X-Amz-Signature=SECRET123", "apiKey=SECRET123",
                                   "client_secret=SECRET123", "password=SECRET123"])
def test_a_credential_in_the_base_url_is_refused_with_its_value_masked(query: str) -> None:
    from gleamx.models.api import check_base_url

    with pytest.raises(GleamConfigError) as e:
        check_base_url(f"http://127.0.0.1:8000/v1?{query}", "--judge-base-url", "--judge-api-key-env")
    msg = str(e.value)
    assert msg.startswith("--judge-base-url: http://127.0.0.1:8000/v1?") and "=***" in msg
    assert "SECRET123" not in msg and "--judge-api-key-env" in msg and "\n" not in msg
    with pytest.raises(GleamConfigError, match="user:password@") as e:
        check_base_url("https://me:SECRET123@api.example.com/v1", "--base-url")
    assert "SECRET123" not in str(e.value)
    for fine in ("http://127.0.0.1:8000/v1", "https://x.example.com/openai?api-version=2024-06-01&model=m"):
        check_base_url(fine, "--judge-base-url")


def test_a_key_in_the_judge_base_url_never_reaches_output_or_files(stub: Callable[..., tuple[Stub, str]],
                                                                    tmp_path: Path, capsys, caplog) -> None:
    """gleamx eval --judge-base-url '...?key=SECRET123': one line before anything is asked or written."""
    from gleamx.cli.main import main

    s, url = stub()
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "s0", "prediction": "cand\nAnswer: Yes"}) + "\n")
    out = tmp_path / "out"
    code = main(["eval", "--predictions", str(preds), "--data", str(tmp_path / "data"), "--output", str(out),
                 "--judge-model", "judge", "--judge-base-url", f"{url}?key=SECRET123",
                 "--judge-api-key-env", "GLEAMX_TEST_JUDGE_KEY"])
    printed = capsys.readouterr()
    assert code != 0 and "--judge-base-url" in printed.err and "key=***" in printed.err
    assert len([ln for ln in printed.err.splitlines() if ln.strip()]) == 1
    assert "SECRET123" not in printed.out + printed.err + caplog.text
    assert not out.exists() and not s.bodies


# --- errors the user must fix ----------------------------------------------------------------------


def test_401_is_a_one_line_config_error_without_the_key(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub(lambda c, n: (401, {}, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    with pytest.raises(GleamConfigError) as e:
        judge_explanations(items(4), cfg(url), tmp_path / "judge.jsonl")
    msg = str(e.value)
    assert "401" in msg and "GLEAMX_TEST_JUDGE_KEY" in msg and "\n" not in msg and SECRET not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert s.auth and all(a == f"Bearer {SECRET}" for a in s.auth)
    assert SECRET not in (tmp_path / "judge.jsonl").read_text()


def test_404_names_the_base_url(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    _, url = stub(lambda c, n: (404, {}, {"error": {"message": "no such model"}}))
    with pytest.raises(GleamConfigError, match="--judge-base-url"):
        judge_explanations(items(1), cfg(url), tmp_path / "judge.jsonl")


def test_missing_key_and_bad_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GLEAMX_TEST_JUDGE_KEY")
    with pytest.raises(GleamConfigError, match="GLEAMX_TEST_JUDGE_KEY is empty or unset"):
        judge_explanations(items(1), cfg("http://127.0.0.1:9/v1"), tmp_path / "judge.jsonl")
    monkeypatch.setenv("GLEAMX_TEST_JUDGE_KEY", SECRET)
    with pytest.raises(GleamConfigError, match="--judge-base-url: expected an http"):
        judge_explanations(items(1), cfg("127.0.0.1:8000/v1"), tmp_path / "judge.jsonl")


def test_unreachable_server_is_a_config_error(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was just free: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(GleamConfigError, match="cannot connect to .*--judge-base-url") as e:
        judge_explanations(items(2), cfg(f"http://127.0.0.1:{port}/v1", max_retries=1), tmp_path / "judge.jsonl")
    assert SECRET not in str(e.value)


# --- cache and resume --------------------------------------------------------------------------------


def test_rerun_only_asks_for_missing_items(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub()
    cache = tmp_path / "judge.jsonl"
    judge_explanations(items(6), cfg(url), cache)
    assert sum(s.counts.values()) == 6
    # simulate a kill: two records lost and a half-written last line without a newline
    lines = cache.read_text(encoding="utf-8").splitlines(keepends=True)
    lost = {json.loads(ln)["id"] for ln in lines[-2:]}
    cache.write_text("".join(lines[:-2]) + lines[-2][:25], encoding="utf-8")
    s.counts.clear()
    summary = judge_explanations(items(6), cfg(url), cache)
    asked = {c.split("\n")[0].replace("cand-", "s") for c in s.counts}
    assert asked == lost and sum(s.counts.values()) == 2
    assert summary.n == 6 and summary.n_invalid == 0
    assert sum(r.cached for r in summary.results) == 4
    assert {k[0] for k in read_judge_cache(cache)} == {f"s{i}" for i in range(6)}
    # a changed candidate (or judge model) is a new key: judged again; nothing else is
    s.counts.clear()
    changed = items(6)
    changed[0].candidate += " (edited)"
    judge_explanations(changed, cfg(url), cache)
    judge_explanations(items(1), cfg(url, model="judge-2"), cache)
    assert sum(s.counts.values()) == 2


def test_interrupt_leaves_a_valid_resumable_file(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub()
    cache = tmp_path / "judge.jsonl"

    def interrupt(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        judge_explanations(items(8), cfg(url, concurrency=1), cache, progress=interrupt)
    rows = [json.loads(ln) for ln in cache.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and all(r["valid"] for r in rows)
    s.counts.clear()
    assert judge_explanations(items(8), cfg(url), cache).n_invalid == 0
    assert sum(s.counts.values()) == 5


# --- concurrency ---------------------------------------------------------------------------------------


def test_requests_run_concurrently(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    s, url = stub(delay=0.1)
    summary = judge_explanations(items(16), cfg(url, concurrency=8), tmp_path / "judge.jsonl")
    # Requests overlapped at the server: measured there, not by a wall-clock bound that load can break.
    assert summary.n_invalid == 0 and 1 < s.max_in_flight <= 8


def test_items_from_samples() -> None:
    from gleamx.data.schema import GleamSample
    from gleamx.eval.judge import items_from_samples

    samples = [GleamSample("a", "q.png", "s.png", "uav", True, {"en": "ref a"}),
               GleamSample("b", "q.png", "s.png", "ground", False, {"zh": "参考"}),
               GleamSample("c", "q.png", "s.png", "ground", False, {"en": "ref c"})]
    got, skipped = items_from_samples(samples, {"a": "pred a", "b": "pred b"}, "en")
    assert [(i.id, i.candidate, i.reference, i.view, i.label) for i in got] == [("a", "pred a", "ref a", "uav", True)]
    assert skipped == ["b", "c"]


def test_gleamx_eval_runs_the_judge_end_to_end(stub: Callable[..., tuple[Stub, str]], tmp_path: Path) -> None:
    """gleamx-eval --judge-model/--judge-base-url: judge means land in results.json and results.md."""
    import json

    from gleamx.data import load_samples
    from gleamx.synth import synthesize
    from gleamx.eval.run import EvalConfig, run_eval

    synthesize(tmp_path / "data", n=30, seed=2)
    samples = load_samples(tmp_path / "data", split="test").samples
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": s.id, "prediction": s.explanation["en"]}) + "\n" for s in samples))
    server, url = stub()
    cfg_ = EvalConfig(data=str(tmp_path / "data"), predictions=str(preds), lang="en", task="explain",
                      output=str(tmp_path / "out"), bootstrap=0, judge_model="judge", judge_base_url=url,
                      judge_api_key_env="GLEAMX_TEST_JUDGE_KEY")
    results = run_eval(cfg_).results
    judge = results["explanation"]["judge"]
    assert judge["n"] == len(samples) and judge["n_invalid"] == 0 and judge["overall"] is not None
    assert len(server.bodies) == len(samples)
    assert "LLM judge" in (tmp_path / "out" / "results.md").read_text()
    run_eval(cfg_)  # resumed from judge.jsonl: nothing asked again
    assert len(server.bodies) == len(samples)
    everything = "".join(p.read_text(errors="ignore") for p in (tmp_path / "out").iterdir() if p.is_file())
    assert SECRET not in everything


@pytest.mark.parametrize("extra, why", [({"no_explanation_metrics": True}, "--no-explanation-metrics turns them off"),
                                        ({"task": "label"}, "--task label has none")])
def test_a_judge_with_nothing_to_judge_is_refused(extra: dict, why: str) -> None:
    """--judge-model where no explanation is scored would send nothing and say nothing: one line instead."""
    from gleamx.eval.config import EvalConfig

    with pytest.raises(GleamConfigError, match=rf"^--judge-model: the judge scores explanations, and {why}; "):
        EvalConfig(predictions="p.jsonl", data="d", judge_model="judge", judge_base_url="http://127.0.0.1:9/v1",
                   **extra)
