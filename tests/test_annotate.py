"""gleamx annotate against a loopback OpenAI-compatible stub: both languages, label given or withheld, 429/5xx/
timeouts, malformed bodies, contradicting and missing verdicts, kill-and-resume, key handling, the cost report.

The stub (``POST /v1/chat/completions`` on 127.0.0.1, port 0) knows each sample by the data URL of its query
image (the test computes the same URLs) and each language by the prompt, and is scripted per test with
``reply(sample_id, lang, n) -> (status, headers, body)``, ``n`` counting requests for that (sample, language).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import openai  # noqa: E402,F401  dev dependency: a missing one fails, never skips

from gleamx.curate.annotate import (  # noqa: E402
    ANNOTATED_NAME,
    CACHE_NAME,
    COST_NAME,
    FLAGGED_NAME,
    PROMPTS,
    AnnotateConfig,
    annotate,
    canonical_explanation,
)
from gleamx.errors import GleamConfigError  # noqa: E402
from gleamx.models.api import ApiUnavailableError, image_data_url  # noqa: E402
from test_judge import loopback_servers, send  # noqa: E402  (tests/test_judge.py's loopback server)

SECRET = "sk-annotate-SECRET-0987654321"
ENV = "GLEAMX_TEST_ANNOTATE_KEY"
USAGE = {"prompt_tokens": 1000, "completion_tokens": 120}
Reply = tuple[int, dict[str, str], Any]
N = 6


def completion(content: str, usage: dict[str, int] | None = None) -> Reply:
    u = usage or USAGE
    return 200, {}, {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "annotator",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {**u, "total_tokens": u["prompt_tokens"] + u["completion_tokens"]},
    }


def explanation(sid: str, lang: str, verdict: bool) -> str:
    if lang == "zh":
        return f"图1为{sid}的屋顶与道路。\n图2为卫星图像。\n两者布局{'一致' if verdict else '不同'}。\n结论：{'是' if verdict else '否'}"
    return f"Image 1 shows {sid}.\nImage 2 shows roads.\nThe layouts {'agree' if verdict else 'differ'}.\n" \
           f"**Answer:** {'Yes' if verdict else 'No'}"


class Stub:
    def __init__(self, ids_by_url: dict[str, str], labels: dict[str, bool],
                 reply: Callable[[str, str, int], Reply] | None, delay: float) -> None:
        self.ids_by_url, self.labels, self.delay = ids_by_url, labels, delay
        self.reply = reply or self.correct
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.auth: list[str] = []
        self.bodies: list[dict[str, Any]] = []

    def correct(self, sid: str, lang: str, n: int) -> Reply:
        return completion(explanation(sid, lang, self.labels[sid]))

    def register(self, body: dict[str, Any], auth: str) -> tuple[str, str, int]:
        """The sample and language a chat request asks about, and how many requests asked so far (this one
        included); the request is kept (tests/test_annotate_batch.py answers batch lines with it too)."""
        parts = next(m for m in body["messages"] if m["role"] == "user")["content"]
        sid = self.ids_by_url[parts[0]["image_url"]["url"]]
        lang = "zh" if "图1" in parts[-1]["text"] else "en"
        with self.lock:
            self.counts[(sid, lang)] += 1
            self.auth.append(auth)
            self.bodies.append(body)
            return sid, lang, self.counts[(sid, lang)]

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers["Content-Length"])))
        sid, lang, n = self.register(body, h.headers.get("Authorization", ""))
        try:
            time.sleep(self.delay)
            status, headers, payload = self.reply(sid, lang, n)
            if isinstance(payload, float):  # sleep this long, then answer correctly (timeouts)
                time.sleep(payload)
                status, headers, payload = self.correct(sid, lang, n)
            send(h, status, headers, payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        except OSError:  # the client gave up
            pass


def write_data(root: Path, n: int = N) -> dict[str, bool]:
    """``n`` samples whose images have distinct colours; labels alternate."""
    from PIL import Image

    (root / "img").mkdir(parents=True)
    rows, labels = [], {}
    for i in range(n):
        for kind, colour in (("q", (20 * i, 200 - 20 * i, 90)), ("s", (200 - 20 * i, 20 * i, 160))):
            Image.new("RGB", (48, 40), colour).save(root / "img" / f"{kind}{i}.png")
        labels[f"p{i}"] = i % 2 == 0
        rows.append({"id": f"p{i}", "query_image": f"img/q{i}.png", "satellite_image": f"img/s{i}.png",
                     "query_view": ("uav", "ground", "street_map")[i % 3], "label": labels[f"p{i}"], "split": "train"})
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return labels


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, dict[str, bool]]:
    labels = write_data(tmp_path / "data")
    return tmp_path / "data" / "data.jsonl", labels


def query_urls(path: Path, labels: dict[str, bool]) -> dict[str, str]:
    """Sample id by the data URL of its query image, as annotate sends it (default image settings)."""
    cfg0 = AnnotateConfig(data="x", model="m", base_url="http://x/v1", out="o")
    return {image_data_url(path.parent / "img" / f"q{i}.png", cfg0.image_side, cfg0.image_bytes): f"p{i}"
            for i in range(len(labels))}


@pytest.fixture
def stub(data: tuple[Path, dict[str, bool]]) -> Iterator[Callable[..., tuple[Stub, str]]]:
    path, labels = data
    urls = query_urls(path, labels)
    with loopback_servers() as serve:
        def start(reply: Callable[[str, str, int], Reply] | None = None, delay: float = 0.0) -> tuple[Stub, str]:
            s = Stub(urls, labels, reply, delay)
            return s, serve(s.handle)

        yield start


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def cfg(data: Path, url: str, out: Path, **kw: Any) -> AnnotateConfig:
    base: dict[str, Any] = dict(data=str(data), model="annotator", base_url=url, out=str(out), api_key_env=ENV,
                                concurrency=4, max_retries=3, timeout=5.0)
    return AnnotateConfig(**{**base, **kw})


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines()]


def everything(out: Path) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="ignore") for p in out.rglob("*") if p.is_file())


# --- happy path --------------------------------------------------------------------------------------


def test_both_languages_label_given(stub, data, tmp_path: Path) -> None:
    path, labels = data
    s, url = stub()
    out = tmp_path / "out"
    summary = annotate(cfg(path, url, out, price_in=2.5, price_out=10.0))
    d = summary.as_dict()
    assert (d["n_samples"], d["n_pairs"], d["n_ok"], d["n_flagged"], d["n_failed"]) == (N, 2 * N, 2 * N, 0, 0)
    rows = read_jsonl(out / ANNOTATED_NAME)
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(N)]
    for r in rows:
        yes = labels[r["id"]]
        assert r["label"] is yes and set(r["explanation"]) == {"en", "zh"}
        # the verdict line is rewritten to gleamx's canonical one ("**Answer:** Yes" -> "Answer: Yes")
        assert r["explanation"]["en"].endswith("\nAnswer: Yes" if yes else "\nAnswer: No")
        assert r["explanation"]["zh"].endswith("\n结论：是" if yes else "\n结论：否")
        assert r["explanation"]["en"].startswith(f"Image 1 shows {r['id']}.")
        assert r["meta"]["annotated_by"] == "annotator" and r["meta"]["label_in_prompt"] is True
        assert (out / r["query_image"]).is_file()
    # the gleamx loader reads the output back
    from gleamx.data import load_samples

    assert len(load_samples(out / ANNOTATED_NAME).dataset) == N
    assert read_jsonl(out / FLAGGED_NAME) == []
    # the request: system + user with image 1 (query), image 2 (satellite) as JPEG data URLs, then the prompt
    body = s.bodies[0]
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in parts[:2])
    assert body["model"] == "annotator" and body["temperature"] == 0 and body["max_tokens"] == 1024
    en = [b for b in s.bodies if "Image 1" in b["messages"][1]["content"][-1]["text"]]
    zh = [b for b in s.bodies if "图1" in b["messages"][1]["content"][-1]["text"]]
    assert len(en) == len(zh) == N
    assert all("Known fact" in b["messages"][1]["content"][-1]["text"] for b in en)
    assert all("已知事实" in b["messages"][1]["content"][-1]["text"] for b in zh)
    # the key reached the server and nowhere else
    assert s.auth == [f"Bearer {SECRET}"] * (2 * N)
    assert SECRET not in everything(out)


def test_label_withheld_is_not_in_the_prompt(stub, data, tmp_path: Path) -> None:
    path, labels = data
    s, url = stub()
    summary = annotate(cfg(path, url, tmp_path / "out", label="withheld", lang=["en"]))
    assert summary.as_dict()["n_ok"] == N and len(s.bodies) == N
    texts = [b["messages"][1]["content"][-1]["text"] for b in s.bodies]
    assert all(PROMPTS["en"]["label_withheld"] in t and "Known fact" not in t for t in texts)
    assert all(r["meta"]["label_in_prompt"] is False for r in read_jsonl(tmp_path / "out" / ANNOTATED_NAME))
    # the label of a positive and a negative are stated differently when given
    s.bodies.clear()
    annotate(cfg(path, url, tmp_path / "given", lang=["en"], limit=2))
    given = sorted(b["messages"][1]["content"][-1]["text"] for b in s.bodies)
    assert any(PROMPTS["en"]["label_given"][True] in t for t in given)
    assert any(PROMPTS["en"]["label_given"][False] in t for t in given)


def test_canonical_explanation_drops_trailing_text() -> None:
    assert canonical_explanation("A.\nB.\nAnswer: yes, same place\nThanks!", True, "en") == "A.\nB.\nAnswer: Yes"
    assert canonical_explanation("描述。\n**结论：** 否", False, "zh") == "描述。\n结论：否"


# --- retries ---------------------------------------------------------------------------------------


def test_429_and_500_are_retried_by_the_client(stub, data, tmp_path: Path) -> None:
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p0" and n == 1:
            return 429, {"retry-after-ms": "300"}, {"error": {"message": "slow down"}}
        if sid == "p1" and n <= 2:
            return 500, {"retry-after-ms": "10"}, {"error": {"message": "boom"}}
        if sid == "p2" and n == 1:
            return 503, {"retry-after-ms": "10"}, {"error": {"message": "overloaded"}}
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    summary = annotate(cfg(path, url, tmp_path / "out", lang=["en"]))
    assert summary.as_dict()["n_ok"] == N
    assert [s.counts[(f"p{i}", "en")] for i in range(N)] == [2, 3, 2, 1, 1, 1]
    assert [a.attempts for a in summary.annotations] == [2, 3, 2, 1, 1, 1]
    this_run = summary.cost["this_run"]
    assert this_run["requests"] == 10 and this_run["prompt_tokens"] == N * USAGE["prompt_tokens"]


def test_persistent_500_ends_the_run_in_one_line_and_a_rerun_resumes(stub, data, tmp_path: Path) -> None:
    path, labels = data
    down = {"on": True}

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p3" and down["on"]:
            return 500, {"retry-after-ms": "10"}, {"error": {"message": f"down ({SECRET})"}}
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    out = tmp_path / "out"
    with pytest.raises(ApiUnavailableError) as e:
        annotate(cfg(path, url, out, lang=["en"], concurrency=1, max_retries=2))
    msg = str(e.value)
    assert "'p3/en' failed 3 times (HTTP 500: down (***))" in msg and "rerun to resume" in msg
    assert "\n" not in msg and SECRET not in msg and s.counts[("p3", "en")] == 3
    done = {r["id"] for r in read_jsonl(out / CACHE_NAME)}
    assert done == {"p0", "p1", "p2"}
    down["on"] = False
    s.counts.clear()
    summary = annotate(cfg(path, url, out, lang=["en"]))
    assert summary.as_dict()["n_ok"] == N and summary.n_cached == 3
    assert set(s.counts) == {("p3", "en"), ("p4", "en"), ("p5", "en")}


def test_timeout_is_retried_and_a_hanging_server_fails_fast(stub, data, tmp_path: Path) -> None:
    path, labels = data
    s, url = stub(lambda sid, lang, n: (200, {}, 1.0) if sid == "p0" and n == 1
                  else completion(explanation(sid, lang, labels[sid])))
    summary = annotate(cfg(path, url, tmp_path / "a", lang=["en"], timeout=0.3))
    assert summary.as_dict()["n_ok"] == N and s.counts[("p0", "en")] == 2

    s, url = stub(lambda sid, lang, n: (200, {}, 30.0))  # answers well, after 30 s: only the timeout fails it
    with pytest.raises(ApiUnavailableError, match=r"failed 2 times \(timeout after 0.5 s; see --timeout\)"):
        annotate(cfg(path, url, tmp_path / "b", lang=["en"], timeout=0.5, max_retries=1, limit=1))
    assert sum(s.counts.values()) == 2  # one try, one retry, each cut at 0.5 s


GARBLED = [b"<html>not json</html>", b'{"id": "chatcmpl-1", "choices": [', {"id": "x", "object": "chat.completion"},
           {"choices": []}, {"choices": [{"index": 0, "message": {"role": "assistant"}}]}]
GARBLED_IDS = ["not-json", "cut-json", "no-choices", "empty-choices", "no-content"]


@pytest.mark.parametrize("body", GARBLED, ids=GARBLED_IDS)
def test_a_garbled_200_is_asked_again_within_the_run(stub, data, tmp_path: Path, body: Any) -> None:
    """An HTTP 200 that is no chat completion, then a good one: one run explains the pair (issue 22)."""
    path, labels = data
    s, url = stub(lambda sid, lang, n: (200, {}, body) if sid == "p1" and n == 1
                  else completion(explanation(sid, lang, labels[sid])))
    out = tmp_path / "out"
    # no verdict re-asks: the second request can only be the client's retry of the garbled body
    summary = annotate(cfg(path, url, out, lang=["en"], verdict_retries=0))
    d = summary.as_dict()
    assert (d["n_ok"], d["n_failed"], d["n_flagged"]) == (N, 0, 0)
    assert [s.counts[(f"p{i}", "en")] for i in range(N)] == [1, 2, 1, 1, 1, 1]
    assert [a.attempts for a in summary.annotations] == [1, 2, 1, 1, 1, 1]
    assert summary.cost["this_run"]["requests"] == N + 1
    assert "p1" in {r["id"] for r in read_jsonl(out / CACHE_NAME)}


def test_a_garbled_200_and_a_5xx_share_one_retry_budget(stub, data, tmp_path: Path) -> None:
    """500, then a garbled 200, then a good reply: --max-retries 2 covers both; with 1, the garbled 200 spends the
    last retry and the pair fails (the run goes on)."""
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p0" and n % 3 == 1:
            return 500, {"retry-after-ms": "10"}, {"error": {"message": "boom"}}
        if sid == "p0" and n % 3 == 2:
            return 200, {}, b"<html>not json</html>"
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    one = annotate(cfg(path, url, tmp_path / "a", lang=["en"], limit=2, max_retries=1))
    assert one.annotations[0].status == "failed" and s.counts[("p0", "en")] == 2
    assert "HTTP 200 whose body is not a chat completion, 2 time(s)" in (one.annotations[0].reason or "")
    assert one.annotations[1].status == "ok"
    s.counts.clear()
    two = annotate(cfg(path, url, tmp_path / "b", lang=["en"], limit=2, max_retries=2))
    assert two.annotations[0].status == "ok" and two.annotations[0].attempts == 3 == s.counts[("p0", "en")]


@pytest.mark.parametrize("body", GARBLED, ids=GARBLED_IDS)
def test_an_always_garbled_200_fails_the_pair_only_and_is_asked_again(stub, data, tmp_path: Path, body: Any) -> None:
    path, labels = data
    broken = {"on": True}

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p1" and broken["on"]:
            return 200, {}, body
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    out = tmp_path / "out"
    summary = annotate(cfg(path, url, out, lang=["en"], max_retries=1))
    d = summary.as_dict()
    assert (d["n_ok"], d["n_failed"], d["n_flagged"]) == (N - 1, 1, 0)
    bad = summary.annotations[1]
    assert bad.status == "failed" and "HTTP 200 whose body is not a chat completion" in (bad.reason or "")
    assert s.counts[("p1", "en")] == 2  # one try and --max-retries 1
    assert "p1" not in {r["id"] for r in read_jsonl(out / CACHE_NAME)}  # not cached
    assert "p1" not in {r["id"] for r in read_jsonl(out / ANNOTATED_NAME)}
    broken["on"] = False
    s.counts.clear()
    again = annotate(cfg(path, url, out, lang=["en"]))
    assert again.as_dict()["n_ok"] == N and set(s.counts) == {("p1", "en")}


def test_refused_request_is_a_failure_without_the_key(stub, data, tmp_path: Path) -> None:
    path, labels = data
    s, url = stub(lambda sid, lang, n: (400, {}, {"error": {"message": f"image too large ({SECRET})"}})
                  if sid == "p0" else completion(explanation(sid, lang, labels[sid])))
    summary = annotate(cfg(path, url, tmp_path / "out", lang=["en"]))
    reason = summary.annotations[0].reason or ""
    assert "HTTP 400" in reason and "image too large" in reason and SECRET not in reason
    assert s.counts[("p0", "en")] == 1  # a 400 is not retried


# --- verdicts ----------------------------------------------------------------------------------------


def test_contradicting_verdict_is_retried_then_flagged(stub, data, tmp_path: Path) -> None:
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p0":  # always the wrong verdict
            return completion(explanation(sid, lang, not labels[sid]))
        if sid == "p1" and n == 1:  # wrong once, then right
            return completion(explanation(sid, lang, not labels[sid]))
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    out = tmp_path / "out"
    summary = annotate(cfg(path, url, out, verdict_retries=2))
    d = summary.as_dict()
    assert (d["n_ok"], d["n_flagged"]) == (2 * N - 2, 2)
    assert s.counts[("p0", "en")] == s.counts[("p0", "zh")] == 3 and s.counts[("p1", "en")] == 2
    flagged = read_jsonl(out / FLAGGED_NAME)
    assert {(r["id"], r["lang"]) for r in flagged} == {("p0", "en"), ("p0", "zh")}
    assert all("contradicts the label yes" in r["reason"] and "after 3 tries" in r["reason"] for r in flagged)
    assert all(r["attempts"] == 3 and r["reply"] for r in flagged)
    assert "p0" not in {r["id"] for r in read_jsonl(out / ANNOTATED_NAME)}  # never a training explanation
    # re-asks are fresh samples at --retry-temperature: the rejected reply is never sent back
    assert all(len(b["messages"]) == 2 for b in s.bodies)
    temps = sorted(b["temperature"] for b in s.bodies)
    assert temps.count(0.7) == 2 + 2 + 1 + 1
    # flagged pairs are cached: a rerun does not pay for them again, --retry-flagged does
    s.counts.clear()
    annotate(cfg(path, url, out))
    assert sum(s.counts.values()) == 0
    annotate(cfg(path, url, out, retry_flagged=True))
    assert set(s.counts) == {("p0", "en"), ("p0", "zh")}


def test_a_reply_in_the_wrong_language_is_reasked_then_flagged(stub, data, tmp_path: Path) -> None:
    """The right verdict in the wrong script is no training explanation: asked again, then flagged."""
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        other = "en" if lang == "zh" else "zh"
        if sid == "p0" and lang == "zh":  # always English, with the Chinese verdict line
            return completion(explanation(sid, other, labels[sid]).rsplit("\n", 1)[0] + "\n结论：是")
        if sid == "p1" and n == 1:  # Chinese once (with the English verdict line), then English
            return completion(explanation(sid, other, labels[sid]).rsplit("\n", 1)[0] + "\nAnswer: No")
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    out = tmp_path / "out"
    d = annotate(cfg(path, url, out, verdict_retries=1)).as_dict()
    assert (d["n_ok"], d["n_flagged"]) == (2 * N - 1, 1)
    assert s.counts[("p0", "zh")] == 2 and s.counts[("p1", "en")] == 2
    flagged = read_jsonl(out / FLAGGED_NAME)
    assert [(r["id"], r["lang"], r["reason"]) for r in flagged] == [("p0", "zh", "reply not written in Chinese "
                                                                                 "after 2 tries")]
    kept = {r["id"]: r["explanation"] for r in read_jsonl(out / ANNOTATED_NAME)}
    assert "zh" not in kept["p0"] and kept["p1"]["en"].startswith("Image 1 shows p1")


def test_no_verdict_is_reasked_with_a_reminder_then_flagged(stub, data, tmp_path: Path) -> None:
    path, labels = data

    def reply(sid: str, lang: str, n: int) -> Reply:
        if sid == "p2" and lang == "zh":
            return completion("两张图像都有道路。" if n == 1 else "结论：是/否")
        if sid == "p3" and lang == "en" and n == 1:
            return completion("Image 1 shows a road.")
        return completion(explanation(sid, lang, labels[sid]))

    s, url = stub(reply)
    out = tmp_path / "out"
    summary = annotate(cfg(path, url, out, verdict_retries=1))
    assert summary.as_dict()["n_flagged"] == 1
    flagged = read_jsonl(out / FLAGGED_NAME)
    assert [(r["id"], r["lang"], r["reason"]) for r in flagged] == [("p2", "zh", "no verdict line after 2 tries")]
    rows = {r["id"]: r for r in read_jsonl(out / ANNOTATED_NAME)}
    assert set(rows["p2"]["explanation"]) == {"en"} and set(rows["p3"]["explanation"]) == {"en", "zh"}
    retry = [b for b in s.bodies if len(b["messages"]) == 4 and "Image 1 shows a road." in json.dumps(b)]
    assert len(retry) == 1 and retry[0]["messages"][3]["content"] == PROMPTS["en"]["verdict_reminder"]


# --- kill and resume ------------------------------------------------------------------------------


def test_kill_and_resume_never_asks_twice(stub, data, tmp_path: Path) -> None:
    path, labels = data
    s, url = stub()
    out = tmp_path / "out"

    def interrupt(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        annotate(cfg(path, url, out, concurrency=1), progress=interrupt)
    lines = (out / CACHE_NAME).read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == 5
    sent = Counter(s.counts)  # 5 saved, and maybe a 6th that was in flight when the run stopped
    assert sum(sent.values()) in (5, 6)
    # and a half-written last line, as a kill -9 mid-write leaves it
    (out / CACHE_NAME).write_bytes("".join(lines[:4]).encode() + lines[4].encode()[:-9])
    summary = annotate(cfg(path, url, out, concurrency=3))
    assert summary.as_dict()["n_ok"] == 2 * N and summary.n_cached == 4
    # the resumed run asked each pair not in the cache exactly once, and nothing else
    resumed = s.counts - sent
    assert sum(resumed.values()) == 2 * N - 4 and set(resumed.values()) == {1}
    keys = [(r["id"], r["lang"]) for r in read_jsonl(out / CACHE_NAME)]
    assert len(keys) == len(set(keys)) == 2 * N
    s.counts.clear()
    annotate(cfg(path, url, out))
    assert sum(s.counts.values()) == 0
    # another model, or an edited prompt, is a new key
    annotate(cfg(path, url, out, model="annotator-2", lang=["en"], limit=1))
    assert sum(s.counts.values()) == 1


# --- key, config, cost, CLI -------------------------------------------------------------------------


def test_cost_report_equals_the_servers_usage(stub, data, tmp_path: Path) -> None:
    path, labels = data
    usages = {f"p{i}": {"prompt_tokens": 700 + i, "completion_tokens": 50 + 3 * i} for i in range(N)}
    s, url = stub(lambda sid, lang, n: completion(explanation(sid, lang, labels[sid]), usages[sid]))
    out = tmp_path / "out"
    summary = annotate(cfg(path, url, out, price_in=2.5, price_out=10.0))
    tin = 2 * sum(u["prompt_tokens"] for u in usages.values())
    tout = 2 * sum(u["completion_tokens"] for u in usages.values())
    report = json.loads((out / COST_NAME).read_text())
    assert report == summary.cost
    (m,) = report["models"]
    assert (m["model"], m["requests"], m["prompt_tokens"], m["completion_tokens"]) == ("annotator", 2 * N, tin, tout)
    assert m["cost"] == pytest.approx((tin * 2.5 + tout * 10.0) / 1e6)
    assert report["this_run"]["prompt_tokens"] == tin
    # resumed: nothing this run, the cache total unchanged; an unknown price gives tokens only
    again = annotate(cfg(path, url, out))
    assert again.cost["this_run"]["requests"] == 0 and again.cost["models"][0]["prompt_tokens"] == tin
    assert again.cost["models"][0]["cost"] is None


def test_config_checks_are_one_line(monkeypatch: pytest.MonkeyPatch, data, tmp_path: Path) -> None:
    path, _ = data
    with pytest.raises(GleamConfigError, match="--lang: expected one of en, zh, got 'fr'"):
        cfg(path, "http://127.0.0.1:9/v1", tmp_path, lang="en,fr")
    assert cfg(path, "http://127.0.0.1:9/v1", tmp_path, lang="zh, en").lang == ["zh", "en"]
    assert cfg(path, "http://127.0.0.1:9/v1", tmp_path).lang == ["en", "zh"]
    with pytest.raises(GleamConfigError, match="--label: expected one of given, withheld"):
        cfg(path, "http://127.0.0.1:9/v1", tmp_path, label="maybe")
    with pytest.raises(GleamConfigError, match="--price-in and --price-out go together"):
        cfg(path, "http://127.0.0.1:9/v1", tmp_path, price_in=1.0)
    with pytest.raises(GleamConfigError, match="--base-url: expected an http"):
        annotate(cfg(path, "127.0.0.1:9/v1", tmp_path / "o"))
    monkeypatch.delenv(ENV)
    with pytest.raises(GleamConfigError, match=f"{ENV} is empty or unset.*--api-key-env"):
        annotate(cfg(path, "http://127.0.0.1:9/v1", tmp_path / "o"))


def test_401_is_one_line_without_the_key(stub, data, tmp_path: Path) -> None:
    path, _ = data
    _, url = stub(lambda sid, lang, n: (401, {}, {"error": {"message": f"Incorrect API key: {SECRET}"}}))
    with pytest.raises(GleamConfigError) as e:
        annotate(cfg(path, url, tmp_path / "out"))
    assert "HTTP 401" in str(e.value) and ENV in str(e.value) and SECRET not in str(e.value)


def test_a_one_character_key_leaves_saved_text_as_the_server_sent_it(stub, data, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_API_KEY=a (a keyless local server): explanations, replies and the cache are saved exactly as the
    model wrote them (no "Ro***ds"), read back, and the rerun asks for nothing."""
    path, labels = data
    monkeypatch.setenv(ENV, "a")
    said = {sid: explanation(sid, "en", labels[sid]) for sid in labels}
    said["p5"] = "Roads and buildings differ, a lot."  # no verdict line: flagged, its reply kept as is
    s, url = stub(lambda sid, lang, n: completion(said[sid]))
    out = tmp_path / "out"
    annotate(cfg(path, url, out, lang=["en"], verdict_retries=0))
    assert s.auth == ["Bearer a"] * N  # the key went out in the header, and only there
    cache = (out / CACHE_NAME).read_bytes()
    assert {r["id"]: r["reply"] for r in read_jsonl(out / CACHE_NAME)} == said
    rows = {r["id"]: r["explanation"]["en"] for r in read_jsonl(out / ANNOTATED_NAME)}
    assert rows == {sid: canonical_explanation(said[sid], labels[sid], "en") for sid in labels if sid != "p5"}
    assert [r["reply"] for r in read_jsonl(out / FLAGGED_NAME)] == [said["p5"]]
    s.counts.clear()
    again = annotate(cfg(path, url, out, lang=["en"], verdict_retries=0))
    assert sum(s.counts.values()) == 0 and again.n_cached == N and (out / CACHE_NAME).read_bytes() == cache


@pytest.mark.parametrize("base", ["{url}?key=SECRET123", "{url}?model=m&api_key=SECRET123", "{url}?sig=SECRET123",
                                  "http://me:SECRET123@{host}/v1"])
def test_a_key_in_the_base_url_is_refused_before_anything_is_printed_or_saved(stub, data, tmp_path: Path, capsys,
                                                                              caplog, base: str) -> None:
    from gleamx.cli.main import main

    path, _ = data
    s, url = stub()
    out = tmp_path / "out"
    code = main(["annotate", "--data", str(path), "--model", "annotator", "--out", str(out), "--api-key-env", ENV,
                 "--base-url", base.format(url=url, host=url.split("//")[1].split("/")[0])])
    printed = capsys.readouterr()
    assert code != 0 and "--base-url" in printed.err and "carries a credential" in printed.err
    assert len([ln for ln in printed.err.splitlines() if ln.strip()]) == 1
    assert "SECRET123" not in printed.out + printed.err + caplog.text
    assert not out.exists() and not s.bodies


def test_cli_end_to_end_never_prints_the_key(stub, data, tmp_path: Path, capsys, caplog) -> None:
    from gleamx.cli.main import main

    path, labels = data
    s, url = stub(lambda sid, lang, n: completion("no verdict here" if sid == "p5" else explanation(sid, lang, labels[sid])))
    out = tmp_path / "out"
    argv = ["annotate", "--data", str(path), "--model", "annotator", "--base-url", url, "--lang", "en,zh",
            "--out", str(out), "--api-key-env", ENV, "--verdict-retries", "0", "--price-in", "1", "--price-out", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "10 explained, 2 flagged, 0 failed" in printed.out
    assert "annotator: 12 requests, 12,000 tokens in, 1,440 tokens out, cost 0.0178" in printed.out
    assert SECRET not in printed.out + printed.err + caplog.text + everything(out)
    _, bad = stub(lambda sid, lang, n: (401, {}, {"error": {"message": f"bad key {SECRET}"}}))
    assert main(argv[:6] + [bad] + argv[7:10] + [str(tmp_path / "out2")] + argv[11:]) != 0
    printed = capsys.readouterr()
    assert "HTTP 401" in printed.err and SECRET not in printed.out + printed.err
    assert len([ln for ln in printed.err.splitlines() if ln.strip()]) == 1


def test_prompts_are_packaged_data() -> None:
    import tomllib
    from importlib import resources

    from gleamx.curate import annotate as mod

    source = resources.files("gleamx.curate").joinpath(mod.PROMPTS_FILE)
    assert source.is_file() and set(PROMPTS) == {"en", "zh"}
    assert "Answer: Yes" in PROMPTS["en"]["user"] and "结论：是" in PROMPTS["zh"]["user"]
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    assert Path(str(source)).resolve() in {p.resolve() for g in globs["gleamx"] for p in (root / "gleamx").glob(g)}


def test_the_failure_report_lists_some_says_how_many_more_and_how_to_retry(tmp_path: Path) -> None:
    """16 failed pairs: five with their reason, '... and 11 more failed', and the rerun that retries them; the
    cost lines say which count is the cache's (one per reply) and which is this run's (re-asks included)."""
    from gleamx.curate.annotate import Annotation, AnnotateSummary

    failed = [Annotation(f"p{i}", "en", f"k{i}", "failed", reason="HTTP 500: down") for i in range(16)]
    ok = [Annotation("q0", "en", "kq", "ok", explanation="Roads match.\nAnswer: Yes")]
    usage = {"model": "annotator", "requests": 3, "prompt_tokens": 30, "completion_tokens": 6, "cost": None}
    summary = AnnotateSummary(17, ["en"], failed + ok, 1, tmp_path, {"models": [usage], "this_run": usage})
    lines = summary.summary_lines()
    assert lines[0].startswith("17 samples x en: 1 explained, 0 flagged, 16 failed")
    assert lines[1].startswith("cache, all runs (one per reply)  annotator: 3 requests")
    assert lines[2].startswith("this run (re-asks and retries included)  annotator: 3 requests")
    assert lines[3:8] == [f"p{i}/en: HTTP 500: down" for i in range(5)]
    assert lines[8] == "... and 11 more failed"
    assert lines[9].startswith("16 pair(s) failed: rerun the same command to retry them")
    assert AnnotateSummary(1, ["en"], ok, 1, tmp_path, {"models": [], "this_run": usage}).summary_lines()[-1] \
        .startswith("this run")  # nothing failed: no retry line
