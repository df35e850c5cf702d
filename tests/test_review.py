"""Human revision: the review server's API, the browser page, and the export/import round trip."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from gleamx.curate.review import (
    FORMULA_STARTS,
    ReviewApp,
    ReviewExportConfig,
    ReviewImportConfig,
    ReviewServeConfig,
    as_text_cell,
    default_revisions_path,
    export_sheet,
    from_text_cell,
    host_allowed,
    import_revisions,
    levenshtein,
    load_split,
    make_server,
    read_revisions,
    read_sheet,
)
from gleamx.cli.main import main
from gleamx.data import load_samples
from gleamx.errors import GleamConfigError, GleamDataError

EN = {"t1": "Red roof by the junction.\nAnswer: Yes", "t2": "No red roof on the tile.\nAnswer: No",
      "t3": "Same grey blocks.\nAnswer: Yes", "t4": "The river bends the other way.\nAnswer: No"}
ZH = {"t1": "红色屋顶。\n结论：是", "t2": "没有红色屋顶。\n结论：否", "t3": "相同的灰色街区。\n结论：是",
      "t4": "河流弯曲方向不同。\n结论：否"}
LABELS = {"t1": True, "t2": False, "t3": True, "t4": False}


@contextlib.contextmanager
def _page_of(chromium: str, base: str):
    """The page at ``base`` in headless Debian chromium, once its script has loaded the first sample."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(base + "/")
            page.wait_for_selector("body[data-ready='1']")
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def _serving(app):
    """``app`` served on a free local port in a thread, for the length of the block: yields its base url."""
    srv = make_server(app, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture
def review_data(tmp_path: Path) -> Path:
    """A dataset directory: train.jsonl (1 sample) and test.jsonl (t1..t4, bilingual, both labels)."""
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (90, 90, 90)]):
        Image.new("RGB", (40, 40), colour).save(ds / "images" / f"q{i}.png")
        Image.new("RGB", (40, 40), tuple(255 - c for c in colour)).save(ds / "images" / f"s{i}.png")
    (tmp_path / "secret.txt").write_text("not an image of the dataset")

    def row(sid: str, i: int, split: str) -> dict:
        return {"id": sid, "query_image": f"images/q{i}.png", "satellite_image": f"images/s{i}.png",
                "query_view": "uav", "label": LABELS.get(sid, True),
                "explanation": {"en": EN.get(sid, EN["t1"]), "zh": ZH.get(sid, ZH["t1"])},
                "source": "test", "split": split, "meta": {"location_id": f"L{i}"}}

    (ds / "train.jsonl").write_text(json.dumps(row("r1", 0, "train"), ensure_ascii=False) + "\n", encoding="utf-8")
    (ds / "test.jsonl").write_text("".join(json.dumps(row(f"t{i + 1}", i, "test"), ensure_ascii=False) + "\n"
                                           for i in range(4)), encoding="utf-8")
    return ds


@pytest.fixture
def server(review_data: Path):
    """The review server on a free port in a thread: yields (base url, revisions path)."""
    revisions = default_revisions_path(review_data)
    app = ReviewApp(load_split(review_data, "test"), revisions, split="test", data=str(review_data))
    with _serving(app) as url:
        yield url, revisions


def _call(url: str, body: dict | bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _post(base: str, **body) -> tuple[int, dict]:
    status, raw = _call(f"{base}/api/revision", body)
    return status, json.loads(raw)


def _listing(base: str) -> dict[str, dict]:
    status, raw = _call(f"{base}/api/samples")
    assert status == 200
    return {s["id"]: s for s in json.loads(raw)["samples"]}


# --- the HTTP API -------------------------------------------------------------------------------------------


def test_revisions_are_appended_and_the_last_one_wins(server, review_data: Path) -> None:
    base, revisions = server
    assert [s["decision"] for s in _listing(base).values()] == [None] * 4
    edited = {"en": "Red roofs by the junction.\nAnswer: Yes", "zh": ZH["t1"]}
    status, state = _post(base, id="t1", decision="edit", explanation=edited)
    assert status == 200 and state["decision"] == "edit" and state["explanation"] == edited
    assert state["original"] == {"en": EN["t1"], "zh": ZH["t1"]}
    assert _post(base, id="t2", decision="accept")[1]["decision"] == "accept"
    assert _post(base, id="t1", decision="reject")[1]["decision"] == "reject"
    # an edit that changes nothing is an accept
    unchanged = {"en": EN["t3"], "zh": ZH["t3"]}
    assert _post(base, id="t3", decision="edit", explanation=unchanged)[1]["decision"] == "accept"

    lines = [json.loads(x) for x in revisions.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["decision"]) for r in lines] == [("t1", "edit"), ("t2", "accept"), ("t1", "reject"),
                                                         ("t3", "accept")]  # append-only: nothing rewritten
    now = _listing(base)
    assert (now["t1"]["decision"], now["t2"]["decision"], now["t4"]["decision"]) == ("reject", "accept", None)

    # a new server over the same file (the browser or the server died): the same state, a killed half line dropped
    with revisions.open("ab") as f:
        f.write(b'{"id": "t4", "decision": "rej')
    app = ReviewApp(load_split(review_data, "test"), revisions, split="test")
    assert {i: r["decision"] for i, r in app.log.latest.items()} == {"t1": "reject", "t2": "accept", "t3": "accept"}
    assert revisions.read_bytes().endswith(b"}\n")


def test_bad_revisions_are_refused_in_one_line(server) -> None:
    base, revisions = server
    status, body = _post(base, id="nope", decision="accept")
    assert status == 404 and body["error"] == "POST /api/revision: id: unknown id 'nope' (not a sample of split 'test')"
    status, body = _post(base, id="t1", decision="maybe")
    assert status == 400 and body["error"].endswith("decision: expected one of accept, edit, reject, got 'maybe'")
    status, body = _post(base, id="t1", decision="edit", explanation={"en": "Looks different.\nAnswer: No",
                                                                      "zh": ZH["t1"]})
    assert status == 400 and "its verdict line says no but label is true" in body["error"]
    # a garbled verdict line is refused as a wrong one is (it used to be saved: "Nor" is no verdict at all)
    status, body = _post(base, id="t1", decision="edit", explanation={"en": "Same roof.\nAnswer: Nor", "zh": ZH["t1"]})
    assert status == 400 and "explanation.en: its verdict line is not a clear verdict" in body["error"]
    status, body = _post(base, id="t1", decision="edit", explanation={"en": "Same roof.\nAnswer: Yes", "zh": "屋顶相同。\n结论：是吗"})
    assert status == 400 and "explanation.zh: its verdict line is not a clear verdict" in body["error"]
    status, body = _post(base, id="t1", decision="edit", explanation={"en": "", "zh": ZH["t1"]})
    assert status == 400 and "explanation.en: empty" in body["error"]
    assert _call(f"{base}/api/revision", b"not json")[0] == 400
    assert _call(f"{base}/api/revision", {"id": "t1", "decision": "accept"},
                 headers={"Origin": "http://evil.example"})[0] == 403
    assert _call(f"{base}/api/revision", {"id": "t1", "decision": "accept"},
                 headers={"Content-Type": "text/plain"})[0] == 415
    assert not revisions.exists() or revisions.read_text() == ""


def test_a_rating_is_saved_with_the_decision(server, review_data: Path) -> None:
    """A decision may carry a rating of each generated text (faithful / partly / wrong, and the wrong claims); it is
    stored in the same log line, with the hash of the text it rates, and a log line without one still loads."""
    from gleamx.eval.ratings import text_hash

    base, revisions = server
    claim = "Red roof by the junction."
    status, state = _post(base, id="t1", decision="accept", rating={"en": {"rating": "partly", "wrong_claims": [claim]},
                                                                   "zh": {"rating": "faithful"}})
    assert status == 200 and state["decision"] == "accept"
    assert state["rating"] == {"en": {"rating": "partly", "wrong_claims": [claim], "of": text_hash(EN["t1"])},
                               "zh": {"rating": "faithful", "wrong_claims": [], "of": text_hash(ZH["t1"])}}
    edited = {"en": "A grey roof by the junction.\nAnswer: Yes", "zh": ZH["t1"]}
    status, state = _post(base, id="t1", decision="edit", explanation=edited,
                          rating={"en": {"rating": "wrong", "wrong_claims": [claim, "typed: the roof is grey"]}})
    # the rating is of the generated text (the one under review), not of the edit
    assert status == 200 and state["rating"]["en"]["of"] == text_hash(EN["t1"]) and "zh" not in state["rating"]
    assert _post(base, id="t2", decision="reject")[1]["rating"] == {}
    lines = [json.loads(x) for x in revisions.read_text(encoding="utf-8").splitlines()]
    assert [sorted(r.get("rating", {})) for r in lines] == [["en", "zh"], ["en"], []]
    assert lines[1]["rating"]["en"]["wrong_claims"] == [claim, "typed: the roof is grey"]
    app = ReviewApp(load_split(review_data, "test"), revisions, split="test")  # read back: the same state
    assert app.log.state(app.samples["t1"])["rating"] == state["rating"]


@pytest.mark.parametrize(("rating", "message"), [
    ({"en": {"rating": "great"}}, "rating.en.rating: expected one of wrong, partly, faithful, got 'great'"),
    ({"en": {"rating": "faithful", "wrong_claims": ["x"]}}, "rating.en.wrong_claims: 1 wrong claim(s) given but the "
                                                             "rating is faithful"),
    ({"en": {"rating": "wrong", "wrong_claims": "the roof"}}, "rating.en.wrong_claims: expected a list of texts, got str"),
    ({"en": {"rating": "wrong", "wrong_claims": [""]}}, "rating.en.wrong_claims[0]: expected a non-empty text"),
    ({"fr": {"rating": "wrong"}}, "rating.fr: unknown language"),
    ({"en": "wrong"}, "rating.en: expected an object {rating, wrong_claims}, got str"),
    (["wrong"], "rating: expected an object with keys en/zh, got list"),
    ({"en": {"rating": "wrong", "of": "0123456789abcdef"}}, "rating.en.of: rates another text than the generated one"),
])
def test_bad_ratings_are_refused_in_one_line(server, rating, message: str) -> None:
    base, revisions = server
    status, body = _post(base, id="t1", decision="accept", rating=rating)
    assert status == 400 and body["error"].startswith("POST /api/revision: " + message), body
    assert not revisions.exists() or revisions.read_text() == ""


def test_a_rating_of_text_the_data_no_longer_has_is_refused_on_reading(review_data: Path) -> None:
    log = default_revisions_path(review_data)
    _write_log(log, [{"id": "t2", "decision": "accept", "rating": {"en": {"rating": "wrong", "of": "feedc0deb0bafe11"}}}])
    samples = {s.id: s for s in load_split(review_data, "test")}
    with pytest.raises(GleamDataError, match=rf"^{log}:1: rating\.en\.of: rates another text than the generated one "
                                             r"of id 't2' \(the data changed since\)$"):
        read_revisions(log, samples, "test")


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def test_requests_for_another_host_are_refused(server) -> None:
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    base, revisions = server
    port = _port(base)
    for path in ("/", "/api/samples", "/image?id=t1&which=query"):
        status, body = _call(base + path, headers={"Host": f"evil.example:{port}"})
        assert status == 403 and "is not this server" in json.loads(body)["error"], path
        assert _call(base + path, headers={"Host": "evil.example"})[0] == 403
    status, body = _call(f"{base}/api/revision", {"id": "t1", "decision": "accept"},
                         headers={"Host": f"evil.example:{port}"})
    assert status == 403 and "is not this server" in json.loads(body)["error"]
    assert _call(f"{base}/api/samples", headers={"Host": f"127.0.0.1:{port + 1}"})[0] == 403  # another port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert _call(f"{base}/api/samples", headers={"Host": host})[0] == 200
    assert not revisions.exists() or revisions.read_text() == ""


def test_state_changes_need_this_servers_origin(server) -> None:
    base, revisions = server
    port = _port(base)
    for origin in ("http://evil.example", "null", f"http://localhost:{port + 1}", f"https://127.0.0.1:{port}"):
        status, body = _call(f"{base}/api/revision", {"id": "t1", "decision": "accept"}, headers={"Origin": origin})
        assert status == 403 and "may not write revisions" in json.loads(body)["error"], origin
    assert not revisions.exists() or revisions.read_text() == ""
    status, _ = _call(f"{base}/api/revision", {"id": "t1", "decision": "accept"},
                      headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200 and json.loads(revisions.read_text())["id"] == "t1"


@pytest.mark.parametrize(("header", "bound", "allowed"), [
    ("127.0.0.1:8765", "127.0.0.1", True), ("localhost:8765", "127.0.0.1", True), ("[::1]:8765", "127.0.0.1", True),
    ("evil.example:8765", "127.0.0.1", False), ("127.0.0.1.nip.io:8765", "127.0.0.1", False),
    ("127.0.0.1:8766", "127.0.0.1", False), ("127.0.0.1", "127.0.0.1", False), (None, "127.0.0.1", False),
    ("user@127.0.0.1:8765", "127.0.0.1", False), ("127.0.0.1:x", "127.0.0.1", False),
    ("192.168.1.5:8765", "127.0.0.1", False), ("192.168.1.5:8765", "0.0.0.0", True),
    ("review.lan:8765", "review.lan", True), ("evil.example:8765", "0.0.0.0", False),
])
def test_host_allowed(header, bound, allowed) -> None:
    assert host_allowed(header, bound, 8765) is allowed


@pytest.mark.parametrize(("body", "message"), [
    # a valid edit but for a lone surrogate, which no UTF-8 file can hold (it was an empty reply)
    (json.dumps({"id": "t1", "decision": "edit", "explanation": {"en": "\ud800 roof\nAnswer: Yes",
                                                                 "zh": ZH["t1"]}}).encode(),
     "POST /api/revision: encoding: lone surrogate escape \\ud800"),
    (b"[" * 5000 + b"]" * 5000, "nested deeper than"),
    (b'{"id": ' + b"9" * 5000 + b"}", "a number too long to convert"),
    (b'{"id": "t1\xed\xa0\x80"}', "invalid continuation byte"),  # a surrogate encoded as UTF-8 bytes
    (b'["t1"]', "expected a JSON object {id, decision, explanation, rating}, got list"),
])
def test_bad_bodies_get_a_400_that_says_why(server, body: bytes, message: str) -> None:
    base, revisions = server
    status, raw = _call(f"{base}/api/revision", body)
    assert status == 400 and message in json.loads(raw)["error"], raw[:300]
    assert not revisions.exists() or revisions.read_text() == ""


def test_only_the_datasets_images_are_served(server, review_data: Path) -> None:
    base, _ = server
    status, body = _call(f"{base}/image?id=t2&which=satellite")
    assert status == 200 and body == (review_data / "images" / "s1.png").read_bytes()
    for path in ("/../secret.txt", "/image?id=../secret.txt&which=query", "/image?id=t1&which=../../secret.txt",
                 "/image?id=t1&which=query_image", "/%2e%2e/secret.txt", "/images/q0.png"):
        status, body = _call(base + path)
        assert status == 404, path
        assert b"not an image" not in body
    status, page = _call(f"{base}/")
    assert status == 200 and b"gleamx review" in page


def test_serve_config_checks() -> None:
    with pytest.raises(GleamConfigError, match=r"^--port: expected an integer from 0 to 65535, got 70000$"):
        ReviewServeConfig(data="d", port=70000)
    with pytest.raises(GleamConfigError, match=r"^--out: expected a \.csv or \.jsonl file, got 'x\.xlsx'$"):
        ReviewExportConfig(data="d", out="x.xlsx")


# --- export / import ----------------------------------------------------------------------------------------


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == levenshtein("abc", "") == 3
    assert levenshtein("红色屋顶", "红色的屋顶") == 1
    assert levenshtein("same", "same") == 0
    assert levenshtein("abcXdef", "abcYYdef") == 2


def _table_distance(a: str, b: str) -> int:
    """The textbook dynamic programme, to check the bit-parallel one against."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def test_levenshtein_equals_the_textbook_table() -> None:
    import random

    rnd = random.Random(0)
    for _ in range(500):
        a, b = ("".join(rnd.choice("ab红 ") for _ in range(rnd.randint(0, 90))) for _ in range(2))
        assert levenshtein(a, b) == _table_distance(a, b), (a, b)


def test_levenshtein_of_a_whole_rewrite_at_the_text_limit_is_fast() -> None:
    """A 19k-character rewrite took 74 s in the pure-Python table; the import scores one per language."""
    import random
    import time

    rnd = random.Random(1)
    a, b = ("".join(rnd.choice("abcdefghij klmnop") for _ in range(19_000)) for _ in range(2))
    start = time.perf_counter()
    distance = levenshtein(a, b)
    assert time.perf_counter() - start < 2
    assert 0 < distance <= 19_000 and levenshtein(a[:300], b[:300]) == _table_distance(a[:300], b[:300])


def _write_log(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def test_import_of_the_review_log(review_data: Path, tmp_path: Path, capsys) -> None:
    log = default_revisions_path(review_data)
    new_en = "Red roofs by the junction.\nAnswer: Yes"  # one character inserted
    _write_log(log, [{"id": "t1", "decision": "accept"}, {"id": "t1", "decision": "edit",
                                                          "explanation": {"en": new_en, "zh": ZH["t1"]}},
                     {"id": "t2", "decision": "accept"}, {"id": "t3", "decision": "reject"}])
    out = tmp_path / "revised"
    assert main(["review", "import", "--data", str(review_data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 of 4 reviewed: 1 accepted, 1 edited, 1 rejected (left out), 1 unreviewed (left out)" in printed
    assert "share edited 50.00%" in printed and "en: 1 of 2 edited (50.00%), mean edit distance 0.50" in printed
    stats = json.loads((out / "review_stats.json").read_text())
    assert (stats["share_edited"], stats["n_written"]) == (0.5, 2)
    assert stats["languages"]["en"] == {"n": 2, "n_edited": 1, "share_edited": 0.5, "mean_edit_distance": 0.5,
                                        "mean_edit_distance_edited": 1.0}
    assert stats["languages"]["zh"]["mean_edit_distance"] == 0.0 and stats["languages"]["zh"]["n_edited"] == 0

    got = {s.id: s for s in load_samples(out).samples}  # the revised dataset loads like any other
    assert sorted(got) == ["r1", "t1", "t2"]  # the test split is its revised samples; train passes through
    t1 = got["t1"]
    assert t1.explanation == {"en": new_en, "zh": ZH["t1"]} and t1.meta["revised"] is True
    assert t1.meta["original_explanation"] == {"en": EN["t1"], "zh": ZH["t1"]}
    assert t1.meta["review_decision"] == "edit" and t1.meta["location_id"] == "L0"
    assert got["t2"].meta["revised"] is True and "revised" not in got["r1"].meta

    keep = import_revisions(ReviewImportConfig(data=str(review_data), out=str(out), keep_unreviewed=True,
                                               overwrite=True))
    assert keep.written == {"train": 1, "test": 3}
    with pytest.raises(GleamConfigError, match=r"holds a run of `gleamx review import` with other settings \(changed: "
                                               r"keep_unreviewed\)"):
        import_revisions(ReviewImportConfig(data=str(review_data), out=str(out)))
    # --overwrite replaces what the import wrote and nothing else: the user's file stays
    (out / "my_notes.jsonl").write_text("{}\n")
    import_revisions(ReviewImportConfig(data=str(review_data), out=str(out), overwrite=True))
    assert (out / "my_notes.jsonl").read_text() == "{}\n" and (out / "test.jsonl").is_file()
    with pytest.raises(GleamConfigError, match=r"lies in --data .*: a command never writes into its own input"):
        import_revisions(ReviewImportConfig(data=str(review_data), out=str(review_data / "revised"), overwrite=True))


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_csv_sheet_round_trip(review_data: Path, tmp_path: Path, capsys) -> None:
    sheet = tmp_path / "sheet.csv"
    assert main(["review", "export", "--data", str(review_data), "--split", "test", "--out", str(sheet)]) == 0
    assert "wrote 4 rows (0 with a decision)" in capsys.readouterr().out
    rows = _rows(sheet)
    assert [r["id"] for r in rows] == ["t1", "t2", "t3", "t4"] and rows[0]["zh"] == ZH["t1"]
    assert rows[0]["query_image"] == "ds/images/q0.png" and rows[1]["label"] == "false"
    rows[0]["zh"] = "红色的屋顶。\n结论：是"  # 1 insertion, no decision written: an edit
    rows[1]["decision"] = "accept"
    rows[2]["decision"] = "Reject"
    rows[3]["en"] = EN["t4"].replace("\n", "\r\n")  # a spreadsheet's line ends are no edit: t4 is unreviewed
    _write_csv(sheet, rows)
    summary = import_revisions(ReviewImportConfig(data=str(review_data), revisions=str(sheet),
                                                  out=str(tmp_path / "out")))
    st = summary.stats
    assert (st["n_accepted"], st["n_edited"], st["n_rejected"], st["n_unreviewed"]) == (1, 1, 1, 1)
    assert st["languages"]["zh"]["mean_edit_distance"] == 0.5 and st["languages"]["en"]["n_edited"] == 0
    t1 = {s.id: s for s in load_samples(tmp_path / "out", split="test").samples}["t1"]
    assert t1.explanation["zh"] == "红色的屋顶。\n结论：是" and t1.meta["original_explanation"]["zh"] == ZH["t1"]


def test_jsonl_sheet_round_trip_equals_the_log(review_data: Path, tmp_path: Path) -> None:
    log = default_revisions_path(review_data)
    _write_log(log, [{"id": "t4", "decision": "edit",
                      "explanation": {"en": "The road bends the other way.\nAnswer: No", "zh": ZH["t4"]}},
                     {"id": "t2", "decision": "reject"}])
    sheet = tmp_path / "sheet.jsonl"
    export = export_sheet(ReviewExportConfig(data=str(review_data), out=str(sheet)))
    assert (export.n_rows, export.n_decided) == (4, 2)
    by_log = import_revisions(ReviewImportConfig(data=str(review_data), out=str(tmp_path / "a"))).stats
    by_sheet = import_revisions(ReviewImportConfig(data=str(review_data), revisions=str(sheet),
                                                   out=str(tmp_path / "b"))).stats
    assert {k: v for k, v in by_log.items() if k != "revisions"} == {k: v for k, v in by_sheet.items()
                                                                     if k != "revisions"}
    assert by_log["n_written"] == 1  # t4 (t2 rejected, t1 and t3 unreviewed)
    assert by_log["languages"]["en"]["mean_edit_distance"] == 4.0  # "iver" -> "oad": 3 substitutions, 1 deletion


def test_unknown_duplicated_and_relabelled_rows_are_refused_in_one_line(review_data: Path, tmp_path: Path,
                                                                      capsys) -> None:
    samples = {s.id: s for s in load_split(review_data, "test")}
    sheet = tmp_path / "sheet.csv"
    export_sheet(ReviewExportConfig(data=str(review_data), out=str(sheet)))
    rows = _rows(sheet)
    _write_csv(sheet, rows[:2] + [dict(rows[2], id="zz")])
    start = 1 + next(i for i, ln in enumerate(sheet.read_text(encoding="utf-8-sig").splitlines())
                     if ln.startswith("zz,"))  # rows span lines: their texts have line breaks
    assert start > 4
    with pytest.raises(GleamDataError) as e:
        read_sheet(sheet, samples, "test")
    assert str(e.value) == f"{sheet}:{start}: id: unknown id 'zz' (not a sample of split 'test')"

    dup = tmp_path / "dup.csv"
    _write_csv(dup, [{"id": "t2", "decision": "reject", "en": "", "zh": ""},
                     {"id": "t3", "decision": "accept", "en": "", "zh": ""},
                     {"id": "t2", "decision": "accept", "en": "", "zh": ""}])
    out = tmp_path / "never"
    assert main(["review", "import", "--data", str(review_data), "--revisions", str(dup), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {dup}:4: id: duplicated id 't2' (first on line 2; keep one row per sample)")
    assert not out.exists()

    relabel = tmp_path / "relabel.csv"
    _write_csv(relabel, [{"id": "t1", "label": "false", "decision": "accept", "en": "", "zh": ""}])
    with pytest.raises(GleamDataError, match=rf"^{relabel}:2: label: changed from true to false for id 't1' "
                                             r"\(labels are not revised; reject the sample instead\)$"):
        read_sheet(relabel, samples, "test")
    log = tmp_path / "log.jsonl"
    _write_log(log, [{"id": "t2", "decision": "accept"}, {"id": "t3", "decision": "accept", "label": False}])
    with pytest.raises(GleamDataError, match=rf"^{log}:2: label: changed from true to false"):
        read_sheet(log, samples, "test")
    _write_log(log, [{"id": "t3", "decision": "edit", "explanation": {"en": "Grey blocks.\nAnswer: Nor",
                                                                         "zh": ZH["t3"]}}])
    with pytest.raises(GleamDataError, match=rf"^{log}:1: explanation.en: its verdict line is not a clear verdict"):
        read_sheet(log, samples, "test")  # the import applies the same rule as the page
    _write_log(log, [{"id": "t2", "decision": "accept", "explanation": {"en": "changed\nAnswer: No"}}])
    with pytest.raises(GleamDataError, match=rf"^{log}:1: explanation.en: decision is accept but the text differs"):
        read_sheet(log, samples, "test")
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("sample,verdict\nt1,yes\n", encoding="utf-8")
    with pytest.raises(GleamDataError, match=rf"^{bad_header}:1: header: missing column\(s\) id, decision, en, zh"):
        read_sheet(bad_header, samples, "test")


def test_ratings_go_through_the_sheets_into_the_revised_datasets_meta(review_data: Path, tmp_path: Path,
                                                                      capsys) -> None:
    """The log's ratings are sheet columns (CSV: one claim a line; JSONL: as logged), a sheet's ratings are read back,
    and the import puts each kept sample's rating into meta.human_rating and counts the ratings."""
    from gleamx.eval.ratings import text_hash

    log = default_revisions_path(review_data)
    claims = ["=1 a formula-like claim", "Red roof by the junction."]
    _write_log(log, [{"id": "t1", "decision": "accept", "rating": {"en": {"rating": "partly", "wrong_claims": claims}}},
                     {"id": "t2", "decision": "reject", "rating": {"zh": {"rating": "wrong"}}},
                     {"id": "t3", "decision": "accept"}])
    sheet = tmp_path / "sheet.csv"
    export_sheet(ReviewExportConfig(data=str(review_data), out=str(sheet)))
    rows = {r["id"]: r for r in _rows(sheet)}
    assert (rows["t1"]["rating_en"], rows["t1"]["rating_zh"], rows["t2"]["rating_zh"]) == ("partly", "", "wrong")
    assert rows["t1"]["wrong_claims_en"] == "'" + "\n".join(claims)  # a formula-like cell gets its apostrophe
    rows["t4"].update(decision="accept", rating_en="Faithful")  # rated in the spreadsheet
    _write_csv(sheet, list(rows.values()))
    out = tmp_path / "out"
    assert main(["review", "import", "--data", str(review_data), "--revisions", str(sheet), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rated: 3 of 4 reviewed (en: 1 faithful, 1 partly, 0 wrong; zh: 0 faithful, 0 partly, 1 wrong)" in printed
    stats = json.loads((out / "review_stats.json").read_text())
    assert stats["n_rated"] == 3 and stats["ratings"]["en"] == {"faithful": 1, "partly": 1, "wrong": 0}
    got = {s.id: s for s in load_samples(out, split="test").samples}
    assert got["t1"].meta["human_rating"] == {"en": {"rating": "partly", "wrong_claims": claims,
                                                     "of": text_hash(EN["t1"])}}
    assert got["t1"].meta["human_rating"]["en"]["of"] == text_hash(got["t1"].meta["original_explanation"]["en"])
    assert got["t4"].meta["human_rating"]["en"]["rating"] == "faithful" and "human_rating" not in got["t3"].meta
    assert "t2" not in got  # rejected: left out, its rating counted above

    jsonl = tmp_path / "sheet.jsonl"  # the JSONL sheet carries the log's ratings as they are
    export_sheet(ReviewExportConfig(data=str(review_data), out=str(jsonl)))
    by_id = {r["id"]: r for r in map(json.loads, jsonl.read_text(encoding="utf-8").splitlines())}
    assert by_id["t1"]["rating"]["en"]["wrong_claims"] == claims and by_id["t3"]["rating"] == {}
    samples = {s.id: s for s in load_split(review_data, "test")}
    assert read_sheet(jsonl, samples, "test") == {i: {k: v for k, v in r.items() if k != "time"}
                                                  for i, r in read_revisions(log, samples, "test").items()}


def test_bad_rating_cells_are_refused_in_one_line(review_data: Path, tmp_path: Path) -> None:
    samples = {s.id: s for s in load_split(review_data, "test")}
    sheet = tmp_path / "sheet.csv"
    base = {"id": "t2", "decision": "", "en": EN["t2"], "zh": ZH["t2"], "rating_en": "", "wrong_claims_en": "", "rating_zh": "",
            "wrong_claims_zh": ""}
    for cells, message in (({"rating_en": "wrong"}, r"decision: empty, but id 't2' is rated \(write accept, edit or "
                                                    r"reject\)"),
                           ({"decision": "accept", "wrong_claims_zh": "a claim"},
                            r"rating_zh: empty, but wrong_claims_zh lists 1 claim\(s\)"),
                           ({"decision": "accept", "rating_en": "meh"},
                            r"rating\.en\.rating: expected one of wrong, partly, faithful, got 'meh'")):
        _write_csv(sheet, [base | cells])
        with pytest.raises(GleamDataError, match=rf"^{sheet}:2: {message}"):
            read_sheet(sheet, samples, "test")


def test_cells_that_start_like_formulas_get_an_apostrophe_and_lose_exactly_it() -> None:
    values = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "'=1", "''@x", "'plain", "plain", "", "-", "'"]
    for value in values:
        cell = as_text_cell(value)
        assert from_text_cell(cell) == value, value
        assert not cell.startswith(FORMULA_STARTS), value  # a spreadsheet shows it as text
    assert [as_text_cell(v) for v in ("=1+1", "'=1", "'plain", "plain")] == ["'=1+1", "''=1", "'plain", "plain"]
    assert from_text_cell("'plain") == "'plain" and as_text_cell(True) is True


def test_csv_export_neutralises_formulas_and_the_round_trip_is_lossless(review_data: Path, tmp_path: Path) -> None:
    log = default_revisions_path(review_data)
    texts = {"t1": {"en": '=HYPERLINK("http://evil.example")\nAnswer: Yes', "zh": "+1 红色屋顶。\n结论：是"},
             "t2": {"en": "-2 no roof here.\nAnswer: No", "zh": "\t制表符开头。\n结论：否"},
             "t3": {"en": "@SUM(A1) grey blocks.\nAnswer: Yes", "zh": "'=已经有撇号。\n结论：是"},
             "t4": {"en": "'quoted river.\nAnswer: No", "zh": "''-两个撇号。\n结论：否"}}
    _write_log(log, [{"id": sid, "decision": "edit", "explanation": texts[sid]} for sid in texts])
    sheet = tmp_path / "sheet.csv"
    export_sheet(ReviewExportConfig(data=str(review_data), out=str(sheet)))
    cells = {r["id"]: r for r in _rows(sheet)}
    for sid, langs in texts.items():
        for lang, text in langs.items():
            shown = cells[sid][lang]
            assert not shown.startswith(FORMULA_STARTS), (sid, lang, shown)
            assert shown == (text if text.startswith("'quoted") else "'" + text), (sid, lang)
    samples = {s.id: s for s in load_split(review_data, "test")}
    assert read_sheet(sheet, samples, "test") == {sid: {k: v for k, v in r.items() if k != "time"}
                                                  for sid, r in read_revisions(log, samples, "test").items()}
    revised = import_revisions(ReviewImportConfig(data=str(review_data), revisions=str(sheet),
                                                  out=str(tmp_path / "out")))
    assert revised.stats["n_edited"] == 4
    got = {s.id: s.explanation for s in load_samples(tmp_path / "out", split="test").samples}
    assert got == texts


# --- rating a model's answers (--predictions) -----------------------------------------------------------------

ANSWERS = {"t1": "Red roofs on both.\nThe river runs north.\nAnswer: Yes", "t2": "No red roof here.\nAnswer: No",
           "t3": "Grey blocks, as in the tile.\nAnswer: Yes"}  # t4: no answer


def _predictions(path: Path, answers: dict[str, str] = ANSWERS) -> Path:
    path.write_text("".join(json.dumps({"id": i, "prediction": a}) + "\n" for i, a in answers.items()))
    return path


@pytest.fixture
def rating_server(review_data: Path, tmp_path: Path):
    """The review server rating the answers of a predictions file: yields (base url, ratings path)."""
    from gleamx.curate.rate import RatingApp, read_answers

    preds = _predictions(tmp_path / "preds.jsonl")
    ratings = tmp_path / "ratings" / "model-en.jsonl"
    app = RatingApp(load_split(review_data, "test"), read_answers(preds), ratings, lang="en", split="test",
                    predictions=str(preds))
    with _serving(app) as url:
        yield url, ratings


def test_rating_a_models_answers_writes_what_eval_reads(rating_server, review_data: Path) -> None:
    from gleamx.curate.rate import RatingApp
    from gleamx.eval.ratings import read_ratings

    base, ratings = rating_server
    status, raw = _call(f"{base}/api/samples")
    listing = json.loads(raw)
    assert status == 200 and listing["mode"] == "rate" and listing["n_without_answer"] == 1
    by_id = {s["id"]: s for s in listing["samples"]}
    assert sorted(by_id) == ["t1", "t2", "t3"] and by_id["t1"]["answer"] == ANSWERS["t1"]
    assert by_id["t1"]["reference"] == EN["t1"] and by_id["t1"]["rating"] is None
    status, state = _call(f"{base}/api/rating", {"id": "t1", "rating": "partly",
                                                  "wrong_claims": ["The river runs north."]})
    assert status == 200 and json.loads(state)["rating"] == "partly"
    assert _call(f"{base}/api/rating", {"id": "t2", "rating": "faithful"})[0] == 200
    assert _call(f"{base}/api/rating", {"id": "t1", "rating": "wrong", "wrong_claims": ["The river runs north."]})[0] \
        == 200  # changed its mind: a new line, the last one wins
    lines = [json.loads(x) for x in ratings.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["lang"], r["rating"], r["text"]) for r in lines] == [
        ("t1", "en", "partly", ANSWERS["t1"]), ("t2", "en", "faithful", ANSWERS["t2"]), ("t1", "en", "wrong",
                                                                                       ANSWERS["t1"])]
    read = read_ratings(ratings)  # gleamx eval --ratings reads the page's file as it is
    assert {k: (r.rating, r.wrong_claims, r.text) for k, r in read.items()} == {
        ("t1", "en"): ("wrong", ("The river runs north.",), ANSWERS["t1"]), ("t2", "en"): ("faithful", (), ANSWERS["t2"])}

    # a new answer for t1 (another model run): the file's rating is of the old one, so t1 shows as not rated
    app = RatingApp(load_split(review_data, "test"), {**ANSWERS, "t1": "Something else.\nAnswer: Yes"}, ratings,
                    lang="en", split="test")
    t1 = app.state("t1")
    assert t1["rating"] is None and t1["rated_other_answer"] is True and app.state("t2")["rating"] == "faithful"


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"id": "t1", "rating": "great"}, 400, "POST /api/rating: rating: expected one of wrong, partly, faithful, got 'great'"),
    ({"id": "t1", "rating": "faithful", "wrong_claims": ["x"]}, 400, "wrong_claims: 1 wrong claim(s) given"),
    ({"id": "t1", "rating": "wrong", "wrong_claims": [3]}, 400, "wrong_claims[0]: expected a non-empty text, got 3"),
    ({"id": "t4", "rating": "wrong"}, 404, "id: unknown id 't4' (not a sample of split 'test' with an answer to rate)"),
    ({"id": "nope", "rating": "wrong"}, 404, "id: unknown id 'nope'"),
])
def test_bad_ratings_of_answers_are_refused_in_one_line(rating_server, body: dict, status: int, message: str) -> None:
    base, ratings = rating_server
    got, raw = _call(f"{base}/api/rating", body)
    assert got == status and message in json.loads(raw)["error"], raw
    assert _call(f"{base}/api/revision", {"id": "t1", "decision": "accept"})[0] == 404  # not a review of the data
    port = _port(base)
    got, raw = _call(f"{base}/api/rating", {"id": "t1", "rating": "wrong"}, headers={"Origin": "http://evil.example"})
    assert got == 403 and "may not write ratings" in json.loads(raw)["error"]
    assert _call(f"{base}/api/samples", headers={"Host": f"evil.example:{port}"})[0] == 403
    assert not ratings.exists() or ratings.read_text() == ""


def test_answers_of_an_eval_output_and_of_a_file_made_elsewhere(tmp_path: Path) -> None:
    """gleamx eval's own predictions.jsonl is a cache (its run's rows; a regenerated sample's last row is its answer);
    any other file is read as gleamx eval --predictions reads it (an id twice is refused)."""
    from gleamx.curate.rate import read_answers

    out = tmp_path / "eval-out"
    out.mkdir()
    (out / "eval_config.json").write_text(json.dumps({"mode": "model", "key": "K"}))
    rows = [{"id": "a", "config": "K", "prediction": "old"}, {"id": "b", "config": "OLD", "prediction": "other run"},
            {"id": "a", "config": "K", "prediction": "new"}]
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_answers(out / "predictions.jsonl") == {"a": "new"}
    elsewhere = tmp_path / "p.jsonl"
    elsewhere.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(GleamDataError, match=rf"^{elsewhere}:3: id: duplicate id 'a' \(first on line 1\)"):
        read_answers(elsewhere)


def test_rating_serve_config_checks(tmp_path: Path) -> None:
    from gleamx.curate.rate import check_ratings_path

    with pytest.raises(GleamConfigError, match=r"^--ratings: needed with --predictions"):
        ReviewServeConfig(data="d", predictions="p.jsonl")
    with pytest.raises(GleamConfigError, match=r"^--ratings: the page rates a model's answers into it; give the "
                                               r"answers with --predictions"):
        ReviewServeConfig(data="d", ratings="r.jsonl")
    with pytest.raises(GleamConfigError, match=r"^--revisions: with --predictions the page writes ratings"):
        ReviewServeConfig(data="d", predictions="p.jsonl", ratings="r.jsonl", revisions="x.jsonl")
    with pytest.raises(GleamConfigError, match=r"^--lang: "):
        ReviewServeConfig(data="d", predictions="p.jsonl", ratings="r.jsonl", lang="fr")
    out = tmp_path / "eval-out"
    out.mkdir()
    (out / "eval_config.json").write_text("{}")
    with pytest.raises(GleamConfigError, match=r"^--ratings: .* lies in gleamx eval's output folder .*eval-out, which "
                                               r"that eval would refuse as its input"):
        check_ratings_path(out / "ratings.jsonl", out / "predictions.jsonl")
    with pytest.raises(GleamConfigError, match=r"^--ratings: .* is the --predictions file"):
        check_ratings_path(tmp_path / "p.jsonl", tmp_path / "p.jsonl")
    assert check_ratings_path(tmp_path / "ratings.jsonl", out / "predictions.jsonl") == tmp_path / "ratings.jsonl"


# --- the page in a real browser -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_page_in_headless_chromium(server, review_data: Path, tmp_path: Path) -> None:
    """Open the page, edit one explanation and rate the generated one, reject another, reload: all is kept (and a
    screenshot is taken)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    base, revisions = server
    edited = "Red roofs beside the junction, same street pattern.\nAnswer: Yes"
    shot = tmp_path / "review.png"
    with _page_of(chromium, base) as page:
        assert page.text_content("#sample-id") == "t1"
        assert page.text_content("#progress") == "0 of 4 reviewed"
        assert page.input_value("#zh") == ZH["t1"]
        page.fill("#en", edited)
        page.press("#en", "a")  # a shortcut letter typed in a field is text, not a decision
        assert page.text_content("#decision") == "not reviewed"
        page.fill("#en", edited)
        assert not page.is_visible("#rating-en .claims")  # the claims are asked for once it is not faithful
        page.click("#rating-en .rate[data-value='partly']")
        page.check("#rating-en .claims input[value='Red roof by the junction.']")
        page.fill("#rating-en textarea.other", "The junction is a roundabout.")
        page.press("#en", "Control+Enter")  # save the edit (and the rating) from inside the field
        page.wait_for_function("document.getElementById('sample-id').textContent === 't2'")
        page.keyboard.press("Escape")
        page.click("#query-img")  # focus out of any field
        page.keyboard.press("r")  # reject t2
        page.wait_for_function("document.getElementById('progress').textContent === '2 of 4 reviewed'")

        page.goto(base + "/#t1")
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#sample-id") == "t1"
        assert page.input_value("#en") == edited and page.text_content("#decision") == "edited"
        assert page.text_content("#progress") == "2 of 4 reviewed"
        assert page.get_attribute("#rating-en .rate[data-value='partly']", "aria-pressed") == "true"
        assert page.is_checked("#rating-en .claims input[value='Red roof by the junction.']")
        assert page.input_value("#rating-en textarea.other") == "The junction is a roundabout."
        page.keyboard.press("j")
        assert page.text_content("#sample-id") == "t2" and page.text_content("#decision") == "rejected"
        page.wait_for_function("document.getElementById('query-img').naturalWidth > 0")
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("GLEAMX_REVIEW_SCREENSHOT"):  # keep a copy to look at
            shutil.copy(shot, os.environ["GLEAMX_REVIEW_SCREENSHOT"])
    assert shot.is_file() and shot.stat().st_size > 10_000
    with Image.open(shot) as im:
        assert im.size[0] == 1280 and len(im.convert("L").getcolors(256) or ()) > 10
    lines = [json.loads(x) for x in revisions.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["decision"]) for r in lines] == [("t1", "edit"), ("t2", "reject")]
    assert lines[0]["explanation"] == {"en": edited, "zh": ZH["t1"]}
    assert lines[0]["rating"] == {"en": {"rating": "partly", "wrong_claims": ["Red roof by the junction.",
                                                                              "The junction is a roundabout."],
                                         "of": lines[0]["rating"]["en"]["of"]}}
    assert "rating" not in lines[1]


@pytest.mark.slow
def test_rating_answers_in_headless_chromium(rating_server) -> None:
    """Rate one answer with the keys (wrong, one sentence ticked), one with a click (faithful), reload: both kept."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    base, ratings = rating_server
    with _page_of(chromium, base) as page:
        assert page.text_content("#progress") == "0 of 3 rated" and page.text_content("#sample-id") == "t1"
        assert not page.is_visible("#accept") and not page.is_visible("#en")  # nothing to revise here
        assert page.text_content("#answer") == ANSWERS["t1"] and page.text_content("#reference") == EN["t1"]
        page.keyboard.press("s")  # nothing chosen yet: said, not saved
        assert "choose faithful, partly or wrong first" in page.text_content("#status")
        page.keyboard.press("w")
        page.check("#rating-answer .claims input[value='The river runs north.']")
        page.keyboard.press("s")
        page.wait_for_function("document.getElementById('sample-id').textContent === 't2'")
        page.click("#rating-answer .rate[data-value='faithful']")
        page.click("#save-rating")
        page.wait_for_function("document.getElementById('progress').textContent === '2 of 3 rated'")
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#sample-id") == "t3"  # the first one not rated
        page.goto(base + "/#t1")
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
        assert page.text_content("#decision") == "wrong"
        assert page.is_checked("#rating-answer .claims input[value='The river runs north.']")
    lines = [json.loads(x) for x in ratings.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["rating"], r["wrong_claims"], r["text"]) for r in lines] == [
        ("t1", "wrong", ["The river runs north."], ANSWERS["t1"]), ("t2", "faithful", [], ANSWERS["t2"])]
