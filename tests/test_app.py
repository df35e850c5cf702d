"""``gleamx app``: config and upload checks, the engine against ``gleamx eval`` and ``gleamx localize``, the
Gradio API (gradio_client), the page in headless chromium, and the exported Space started in a subprocess."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from gleamx.app.config import AppConfig
from gleamx.app.engine import UploadError, load_upload
from gleamx.cli.main import main
from gleamx.errors import GleamConfigError
from gleamx.task.verdict import parse_verdict

pytestmark = pytest.mark.xdist_group("demo")  # serves the session's demo run (tests/test_cli.py's demo test)

MAX_NEW = 24  # short answers: the tiny model is fast, and the app and the CLI must agree on every token


# --- config and uploads (no model) ---------------------------------------------------------------------------


def test_defaults_are_safe_and_bad_values_are_one_line(capsys) -> None:
    cfg = AppConfig()
    assert (cfg.host, cfg.port, cfg.share, cfg.tiny) == ("127.0.0.1", 7860, False, True)
    for kwargs, message in (
            ({"port": 70000}, "--port: expected an integer from 0 to 65535, got 70000"),
            ({"k": 0}, "--k: expected an integer >= 1, got 0"),
            ({"lang": "fr"}, "--lang: expected one of en, zh, got 'fr'"),
            ({"max_upload_mb": 0}, "--max-upload-mb: expected a positive number of MB, got 0"),
            ({"model": "m", "encoder": "e"}, "--encoder: needs --gallery too"),
            ({"encoder": "e", "gallery": "g"}, "--encoder/--gallery: need --model or --adapter")):
        with pytest.raises(GleamConfigError) as e:
            AppConfig(**kwargs)
        assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert main(["app", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "error: --port: expected an integer from 0 to 65535, got 70000"


def _png(size: tuple[int, int] = (16, 12), colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def declared_png(width: int, height: int) -> bytes:
    """A few dozen bytes whose PNG header declares ``width`` x ``height`` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _chunk(b"IEND", b"")


BAD_UPLOADS = {  # name -> (bytes, the start of the message)
    "truncated": (_png((64, 64))[:60], "query image: not a readable image: cannot decode"),
    "not an image": (b"GIF? no: plain text", "query image: not a readable image: cannot decode"),
    "1x300": (_png((1, 300)), "query image: 1x300: expected sides at most 200 times one another (the model's "
                              "image processor refuses more)"),
    "30000x30000": (declared_png(30000, 30000),
                    "query image: 900,000,000 pixels, over the app's limit of 40,000,000 pixels"),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_uploads_are_one_line_messages(name: str) -> None:
    data, message = BAD_UPLOADS[name]
    with pytest.raises(UploadError) as e:
        load_upload(data, "query image", max_bytes=20 << 20, max_pixels=40_000_000)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)
    assert "BytesIO" not in str(e.value)


def test_uploads_are_bytes_under_the_caps(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png())
    caps = {"max_bytes": 1000, "max_pixels": 400}
    with pytest.raises(UploadError, match=r"^satellite image: expected the uploaded file's bytes, got str$"):
        load_upload(str(secret), "satellite image", **caps)  # a path is never opened, even one that exists
    with pytest.raises(UploadError, match=r"^query image: 0\.0 MB, over the app's limit of 0\.000953674 MB$"):
        load_upload(b"x" * 1001, "query image", **caps)
    with pytest.raises(UploadError, match=r"^query image: 21x20 = 420 pixels, over the app's limit of 400 pixels$"):
        load_upload(_png((21, 20)), "query image", **caps)
    with pytest.raises(UploadError, match=r"^query image: missing \(upload an image\)$"):
        load_upload(None, "query image", **caps)
    image = load_upload(_png((20, 20)), "query image", **caps)
    assert (image.mode, image.size) == ("RGB", (20, 20))


def test_export_space_writes_a_space_folder(tmp_path: Path) -> None:
    out = tmp_path / "space"
    assert main(["app", "--export-space", str(out), "--adapter", "user/gleamx-lora", "--model",
                 "Qwen/Qwen2.5-VL-3B-Instruct", "--lang", "zh", "--port", "9999"]) == 0
    readme = (out / "README.md").read_text(encoding="utf-8")
    front = readme.split("---")[1]
    import gradio

    assert "sdk: gradio\n" in front and "app_file: app.py\n" in front and f"sdk_version: {gradio.__version__}\n" in front
    app = (out / "app.py").read_text(encoding="utf-8")
    compile(app, "app.py", "exec")
    assert "'adapter': 'user/gleamx-lora'" in app and "'lang': 'zh'" in app and "9999" not in app  # the Space says where
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("torch") for r in reqs) and not any(r.startswith("gradio") for r in reqs)
    assert (out / "gleamx" / "app" / "ui.py").is_file() and not list(out.rglob("__pycache__"))


# --- the tiny app, served once for the tests below --------------------------------------------------------------


@pytest.fixture(scope="module")
def served(demo_workdir):
    """``gleamx app`` with no model: gleamx demo's tiny model + LoRA run, tiny encoder and generated data (the
    session's demo run, in the app's --workdir: reused, not rebuilt); served on a free port."""
    from gleamx.app.ui import build_demo, launch, load

    cfg = AppConfig(workdir=str(demo_workdir[0]), port=0, max_new_tokens=MAX_NEW)
    cache = Path(os.environ["GLEAMX_CACHE"]) / "embeddings"
    before = {p: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")}
    engine, assets = load(cfg)
    assert Path(assets.adapter) == demo_workdir[0] / "demo-qwen2_5_vl-s0" / "sft"  # the demo's own run
    gallery_cache = {p: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")}
    # the demo's localize embedded this gallery with this encoder: the app read that entry, computed nothing
    assert gallery_cache == before and gallery_cache
    demo = build_demo(engine, cfg, assets.notes)
    url = launch(demo, cfg, block=False)
    yield SimpleNamespace(cfg=cfg, engine=engine, assets=assets, demo=demo, url=url, gallery_cache=gallery_cache)
    demo.close()


@pytest.fixture(scope="module")
def cli_eval(served, tmp_path_factory: pytest.TempPathFactory):
    """``gleamx eval`` on the first two test pairs of the app's generated data: ``{(lang, task): (samples, preds)}``."""
    from gleamx.data import load_samples

    samples = load_samples(served.assets.examples, split="test").samples[:2]
    out = {}
    for lang, task in (("en", "explain"), ("zh", "label")):
        d = tmp_path_factory.mktemp(f"eval_{lang}_{task}")
        assert main(["eval", "--data", str(served.assets.examples), "--split", "test", "--limit", "2",
                     "--model", served.assets.model, "--adapter", served.assets.adapter, "--lang", lang,
                     "--task", task, "--max-new-tokens", str(MAX_NEW), "--no-explanation-metrics",
                     "--bootstrap", "0", "--output", str(d)]) == 0
        preds = {}
        for line in (d / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            preds[row["id"]] = row
        out[(lang, task)] = (samples, preds)
    return out


def _pair(engine, sample):
    return engine.pair(Path(sample.query_image).read_bytes(), Path(sample.satellite_image).read_bytes(),
                       sample.query_view)


@pytest.mark.slow
def test_the_engine_answers_as_gleamx_eval(served, cli_eval) -> None:
    for (lang, task), (samples, preds) in cli_eval.items():
        for s in samples:
            got = served.engine.verify(_pair(served.engine, s), lang, task)
            want = preds[s.id]
            assert got.answer == want["prediction"], (lang, task, s.id)
            assert got.verdict == parse_verdict(want["prediction"])
            assert (got.p_yes is None) == (want["p_yes"] is None)
            if got.p_yes is not None:
                assert got.p_yes == pytest.approx(want["p_yes"], abs=1e-5)
    # the tiny LoRA run teaches the verdict line: the comparison covers verdicts and P(yes), not only noise
    assert any(parse_verdict(p["prediction"]) is not None for _, preds in cli_eval.values() for p in preds.values())


@pytest.mark.slow
def test_the_engine_localizes_as_gleamx_localize(served, tmp_path: Path) -> None:
    from gleamx.data.images import open_image

    a, engine = served.assets, served.engine
    out = tmp_path / "loc"
    assert main(["localize", "--encoder", a.encoder, "--model", a.model, "--adapter", a.adapter, "--data", a.gallery,
                 "--split", "test", "--limit", "1", "--k", "5", "--max-new-tokens", str(MAX_NEW),
                 "--output", str(out)]) == 0
    for path, mtime in served.gallery_cache.items():  # gleamx localize read the app's gallery entry back
        assert path.stat().st_mtime_ns == mtime
    want = json.loads((out / "ranked.jsonl").read_text(encoding="utf-8").splitlines()[0])["candidates"]
    query = engine.gallery.queries[0]
    got = engine.localize(open_image(query.image), query.view, "en", "label", 5)
    assert [c.rank for c in got] == list(range(len(want)))
    assert [(c.location_id, c.retrieval_rank, c.verification.answer, c.verification.verdict) for c in got] == \
        [(w["candidate_location"], w["retrieval_rank"], w["answer"], w["verdict"]) for w in want]
    for c, w in zip(got, want):
        assert c.retrieval_score == pytest.approx(w["retrieval_score"], abs=1e-5)
        assert (c.verification.p_yes is None) == (w["p_yes"] is None)
        if w["p_yes"] is not None:
            assert c.verification.p_yes == pytest.approx(w["p_yes"], abs=1e-5)


# --- the HTTP API ---------------------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.mark.slow
def test_the_page_queues_model_calls_one_at_a_time(served) -> None:
    status, body = _get(served.url + "config")
    assert status == 200
    config = json.loads(body)
    tabs = [c["props"].get("label") for c in config["components"] if c.get("type") == "tabitem"]
    assert tabs == ["Verify", "Localize"]
    fns = {fn.api_name: fn for fn in served.demo.fns.values()}
    assert {fns[n].concurrency_id for n in ("verify", "localize")} == {"model"}  # one slot shared by both tabs
    assert {fns[n].concurrency_limit for n in ("verify", "localize")} == {1}
    assert served.url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_two_users_never_run_the_model_at_once(served, cli_eval, monkeypatch) -> None:
    from gradio_client import Client, handle_file

    engine, spans = served.engine, []
    real = engine._answer_batch

    def slow_batch(*args, **kwargs):
        start = time.monotonic()
        time.sleep(0.3)  # long enough for the other request to arrive while this one runs
        out = real(*args, **kwargs)
        spans.append((start, time.monotonic()))
        return out

    monkeypatch.setattr(engine, "_answer_batch", slow_batch)
    s = cli_eval[("en", "explain")][0][0]
    q, sat = handle_file(s.query_image), handle_file(s.satellite_image)
    jobs = [Client(served.url, verbose=False).submit(q, s.query_view, sat, "en", "label", api_name="/verify"),
            Client(served.url, verbose=False).submit(q, s.query_view, "en", "label", 2, api_name="/localize")]
    for job in jobs:
        job.result(timeout=120)
    spans.sort()
    assert len(spans) >= 2 and all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


@pytest.mark.slow
def test_the_api_answers_as_gleamx_eval_and_refuses_bad_images(served, cli_eval, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from gleamx.app.ui import verdict_text

    client = Client(served.url, verbose=False)
    # every input and output of the API has a name a client can read (no gradio value_NN placeholders)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    names = {e: [x["label"] for x in api[e]["parameters"] + api[e]["returns"]] for e in ("/verify", "/localize")}
    assert all(n and not n.startswith("value_") for ns in names.values() for n in ns), names
    samples, preds = cli_eval[("en", "explain")]
    s = samples[0]
    answer, verdict, p_yes, p_num = client.predict(handle_file(s.query_image), s.query_view, handle_file(s.satellite_image),
                                            "en", "explain", api_name="/verify")
    want = preds[s.id]
    assert answer == want["prediction"] and verdict == verdict_text(parse_verdict(want["prediction"]))
    if want["p_yes"] is not None:
        assert {c["label"]: c["confidence"] for c in p_yes["confidences"]}["yes"] == pytest.approx(want["p_yes"],
                                                                                                abs=1e-5)
        assert p_num == pytest.approx(want["p_yes"], abs=1e-4)
    for name, (data, message) in BAD_UPLOADS.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.png"
        bad.write_bytes(data)
        with pytest.raises(AppError) as e:
            client.predict(handle_file(str(bad)), "uav", handle_file(s.satellite_image), "en", "label",
                           api_name="/verify")
        assert str(e.value).startswith(message), str(e.value)
    # a path the caller names is not an upload: gradio refuses it before the app sees anything
    req = urllib.request.Request(served.url + "gradio_api/call/verify", method="POST",
                                 headers={"Content-Type": "application/json"},
                                 data=json.dumps({"data": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}},
                                                           "uav", {"path": str(s.satellite_image),
                                                                   "meta": {"_type": "gradio.FileData"}},
                                                           "en", "label"]}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    status, body = _get(f"{served.url}gradio_api/call/verify/{event}")
    assert b"event: error" in body and b"root:" not in body
    # the server is still up and answers the next request
    assert client.predict(handle_file(s.query_image), s.query_view, handle_file(s.satellite_image), "en", "explain",
                          api_name="/verify")[0] == want["prediction"]


@pytest.mark.slow
def test_an_upload_over_the_byte_cap_is_refused(served, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    big = tmp_path / "big.png"
    big.write_bytes(_png() + b"\0" * (served.cfg.max_upload_bytes + 1))
    client = Client(served.url, verbose=False)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the cap from the page
        client.predict(handle_file(str(big)), "uav", handle_file(str(big)), "en", "label", api_name="/verify")
    # and the server's upload route refuses it whoever sends it, before the file reaches the app
    boundary = "gleamx-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + big.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(served.url + "gradio_api/upload", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 413


# --- the page in a real browser -------------------------------------------------------------------------------


def _value(page, elem_id: str) -> str:
    return page.eval_on_selector(f"#{elem_id} textarea, #{elem_id} input", "e => e.value")


@pytest.mark.slow
def test_the_page_in_headless_chromium(served, cli_eval, tmp_path: Path) -> None:
    """Upload a pair, press Verify, read the verdict (equal to gleamx eval's); then localize a gallery query."""
    from playwright.sync_api import sync_playwright

    from gleamx.app.ui import TRUE_MARK, localize_examples, verdict_text, verify_examples

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (apt-get install chromium)"
    samples, preds = cli_eval[("en", "explain")]
    s = samples[0]
    query = served.engine.gallery.queries[0]
    expected = served.engine.localize(Image.open(query.image).convert("RGB"), query.view, "en", "label", 5)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(served.url)
            page.wait_for_selector("#verify-button")
            # the example tables show the images themselves: a thumbnail for each query and satellite image
            rows = verify_examples(served.engine.assets)
            page.wait_for_selector("#verify-examples img", timeout=20_000)
            assert page.locator("#verify-examples img").count() == 2 * len(rows) > 0
            page.set_input_files("#verify-query input[type=file]", str(s.query_image))
            page.set_input_files("#verify-satellite input[type=file]", str(s.satellite_image))
            page.wait_for_selector("#verify-query-preview img")
            page.wait_for_selector("#verify-satellite-preview img")
            assert s.query_view == "uav" and _value(page, "verify-view") == "uav"
            page.click("#verify-button")
            page.wait_for_function("() => { const e = document.querySelector('#verify-verdict textarea, "
                                   "#verify-verdict input'); return e && e.value && e.value !== '…'; }",
                                   timeout=120_000)
            assert _value(page, "verify-verdict") == verdict_text(parse_verdict(preds[s.id]["prediction"]))
            assert _value(page, "verify-answer") == preds[s.id]["prediction"]
            page.screenshot(path=str(tmp_path / "verify.png"), full_page=True)

            page.get_by_role("tab", name="Localize").click()
            page.wait_for_selector("#localize-button")
            assert page.locator("#localize-examples img").count() == len(localize_examples(served.engine)) > 0
            page.set_input_files("#localize-query input[type=file]", str(query.image))
            page.wait_for_selector("#localize-query-preview img")
            page.click("#localize-button")
            page.wait_for_function("() => (document.querySelector('#localize-status')?.innerText || '')"
                                   ".includes('reranked')", timeout=120_000)
            cells = [x.strip() for x in page.inner_text("#localize-table").splitlines() if x.strip()]
            at = [i for i, x in enumerate(cells) if x.startswith("loc")]  # the tile column; two ranks before it
            shown = [cells[i - 2:i + 1] for i in at]
            # a query of the gallery's split: the app knows its location and marks its true tile
            assert shown == [[str(c.rank + 1), str(c.retrieval_rank + 1),
                              f"{c.location_id} {TRUE_MARK}" if c.location_id == query.location_id else c.location_id]
                             for c in expected]
            assert f"the query's true tile, {query.location_id}, is" in page.inner_text("#localize-status")
            assert page.locator("#localize-gallery img").count() == len(expected)
            page.screenshot(path=str(tmp_path / "localize.png"), full_page=True)

            page.get_by_role("tab", name="Verify").click()  # an example fills the file inputs the model reads
            other = next(r for r in rows if Path(r[1]).stem != Path(s.query_image).stem)
            page.locator("#verify-examples tbody tr").nth(rows.index(other)).locator("img").first.click()
            page.wait_for_function(f"() => (document.querySelector('#verify-query')?.innerText || '')"
                                   f".includes('{Path(other[1]).stem}')", timeout=20_000)  # shown as stem, suffix
        finally:
            browser.close()
    assert (tmp_path / "verify.png").stat().st_size > 10_000


# --- the exported Space, started as Spaces starts it -----------------------------------------------------------


@pytest.mark.slow
def test_the_exported_space_starts_and_answers(served, cli_eval, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    from gleamx.app.ui import free_port

    space = tmp_path / "space"
    a = served.assets
    assert main(["app", "--export-space", str(space), "--model", a.model, "--adapter", a.adapter,
                 "--max-new-tokens", str(MAX_NEW)]) == 0
    port = free_port("127.0.0.1")
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "OMP_NUM_THREADS": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": ""}
    log = (tmp_path / "space.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "space.log").read_text()[-3000:]
            try:
                if _get(url + "config")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("the Space did not start: " + (tmp_path / "space.log").read_text()[-3000:])
        samples, preds = cli_eval[("en", "explain")]
        s = samples[1]
        answer, *_ = Client(url, verbose=False).predict(
            handle_file(s.query_image), s.query_view, handle_file(s.satellite_image), "en", "explain",
            api_name="/verify")
        assert answer == preds[s.id]["prediction"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert f"gleamx app at {url}" in (tmp_path / "space.log").read_text()
    assert str(space / "gleamx") in subprocess.run(
        [sys.executable, "-c", "import gleamx; print(gleamx.__file__)"], cwd=space, env=env, capture_output=True,
        text=True).stdout  # the Space runs its own copy of gleamx


@pytest.mark.slow
def test_predict_answers_one_pair_as_the_app_and_gleamx_eval(served, cli_eval, tmp_path: Path, capsys) -> None:
    """``gleamx predict`` (library call here; the CLI is a shell over it) loads what the app loads and answers one
    pair as gleamx eval did: the same answer, verdict and P(yes); a missing image is one line."""
    from gleamx.app.predict import PredictConfig, Prediction, predict
    from gleamx.errors import GleamConfigError

    for (lang, task), (samples, preds) in cli_eval.items():
        s = samples[0]
        got = predict(PredictConfig(query=str(s.query_image), satellite=str(s.satellite_image), view=s.query_view,
                                    lang=lang, task=task, max_new_tokens=MAX_NEW, workdir=served.cfg.workdir))
        want = preds[s.id]
        assert isinstance(got, Prediction) and got.answer == want["prediction"]
        assert got.verdict == parse_verdict(want["prediction"]) and Path(got.adapter) == Path(served.assets.adapter)
        if want["p_yes"] is None:
            assert got.p_yes is None
        else:
            assert got.p_yes == pytest.approx(want["p_yes"], abs=1e-4)
        lines = got.summary_lines()
        assert lines[0] == got.answer and lines[-2].startswith("verdict: ") and lines[-1].startswith("P(yes): ")
        assert json.loads(got.json_text())["answer"] == got.answer
    # the command line: a shell over the same call, printing the answer, the verdict and P(yes)
    s = cli_eval[("en", "explain")][0][0]
    capsys.readouterr()
    code = main(["predict", "--query", str(s.query_image), "--satellite", str(s.satellite_image), "--view",
                 s.query_view, "--max-new-tokens", str(MAX_NEW), "--workdir", str(served.cfg.workdir), "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["answer"] == cli_eval[("en", "explain")][1][s.id]["prediction"]
    with pytest.raises(GleamConfigError, match=r"^--query: .*nope\.png: not found \(expected an image file\)$"):
        predict(PredictConfig(query=str(tmp_path / "nope.png"), satellite=str(s.satellite_image),
                              workdir=served.cfg.workdir))


def test_predict_refuses_an_unreadable_or_odd_image_before_any_model_loads(tmp_path: Path, monkeypatch) -> None:
    """Each image is decoded and checked first: one line naming its flag and file, and no model or demo built."""
    from PIL import Image

    from gleamx.app import assets
    from gleamx.app.predict import PredictConfig, predict
    from gleamx.errors import GleamError

    monkeypatch.setattr(assets, "demo_run", lambda *a, **k: pytest.fail("a model was loaded first"))
    good, wide, bad = tmp_path / "good.png", tmp_path / "wide.png", tmp_path / "bad.jpg"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(good)
    Image.new("RGB", (4000, 3)).save(wide)
    bad.write_bytes(b"not an image")
    for query, satellite, said in ((wide, good, rf"^--query: {wide}: 4000x3: expected sides at most 200 times"),
                                   (good, bad, rf"^--satellite: {bad}: not a readable image: cannot decode")):
        with pytest.raises(GleamError, match=said):
            predict(PredictConfig(query=str(query), satellite=str(satellite), workdir=str(tmp_path / "w")))
    assert not (tmp_path / "w").exists()
