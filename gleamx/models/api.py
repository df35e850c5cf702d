"""One client for OpenAI-compatible chat endpoints (GPT-4o, Doubao on Volcengine Ark, a vLLM server), shared by
the LLM judge (:mod:`gleamx.eval.judge`) and the annotator (:mod:`gleamx.curate.annotate`).

* Both read the same settings from their configs (:class:`ApiSettings`: model, base URL, key variable, timeout,
  retries) and differ only in how their flags are spelled (:class:`ApiFlags`): :func:`checked_key` checks them
  and :class:`ApiClient` is built from them, so every error names the calling command's flag.
* The API key comes from an environment variable only (:func:`api_key`); it is handed to the ``openai``
  client and nowhere else, and every text that could echo it (a server's error message) goes through
  :func:`redact`.
* Timeouts, connection errors, 408, 409, 429 and 5xx are retried by the ``openai`` client itself
  (``max_retries``, jittered exponential backoff, ``Retry-After`` honoured). A request hook counts the
  attempts of the current call per thread and stops a worker between two of them once the run is torn down.
* :meth:`ApiClient.complete` sorts every outcome three ways: a reply (text, token usage, attempts); a
  failure of this request only (the server refused it, HTTP 400/413/..., or a 200 whose body is not a chat
  completion), returned as ``refused``; and what ends the run: a bad key or URL (:class:`GleamConfigError`)
  or retries run out (``unavailable``, an :class:`ApiUnavailableError`), each one line naming the flag.
* :func:`image_data_url` re-encodes an image as a JPEG data URL under a side and byte cap.
* :func:`run_concurrently` runs the calls on a thread pool and hands each result to the calling thread.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from gleamx.errors import GleamConfigError, GleamError, first_line

if TYPE_CHECKING:
    from gleamx.data.schema import ImageLike

T = TypeVar("T")
R = TypeVar("R")

REFUSED = "refused by the server"
"""Prefix of a request the server refused (HTTP 400, 413, ...): that item fails, the run goes on."""
FAILED = "server failure"
"""Prefix of an HTTP 200 whose body is no chat completion: that item fails, the run goes on."""


class ApiUnavailableError(GleamError):
    """The endpoint kept failing (rate limits, server errors, timeouts) after every retry."""


@dataclass(frozen=True)
class ApiFlags:
    """How the calling command spells its settings, so that each error names the flag to change."""

    what: str  # "judge", "annotate": the first word of every message
    base_url: str
    model: str
    key_env: str
    timeout: str
    max_retries: str


class ApiSettings(Protocol):
    """The settings a command's config holds to reach its endpoint (``AnnotateConfig``, ``JudgeConfig``)."""

    model: str
    base_url: str
    api_key_env: str
    timeout: float
    max_retries: int


@dataclass
class Usage:
    """Tokens billed, summed over calls."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.requests += other.requests

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens}


@dataclass
class Reply:
    """One call's outcome: ``text`` (``""`` when the completion had none) or, when the server failed this
    request only, ``refused`` (why, redacted). ``attempts`` counts the HTTP requests sent."""

    text: str | None
    refused: str | None
    attempts: int
    usage: Usage


def redact(text: str, secret: str) -> str:
    """``text`` with ``secret`` replaced by ``***``."""
    return text.replace(secret, "***") if secret else text


def check_base_url(url: str | None, flag: str) -> None:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GleamConfigError(f"{flag}: expected an http(s) URL such as https://api.openai.com/v1, got {url!r}")


def api_key(env: str, flags: ApiFlags) -> str:
    """The API key from environment variable ``env``; one line naming it when it is empty or unset."""
    key = os.environ.get(env, "").strip()
    if not key:
        raise GleamConfigError(
            f"{flags.what}: environment variable {env} is empty or unset; export the API key there "
            f"(any non-empty value for a server without auth) or name another variable with {flags.key_env}")
    return key


def checked_key(settings: ApiSettings, flags: ApiFlags) -> str:
    """What a run checks before its first request: the base URL's form, then the API key (returned)."""
    check_base_url(settings.base_url, flags.base_url)
    return api_key(settings.api_key_env, flags)


def completion_text(resp: Any) -> str | None:
    """The reply text of a chat completion (``""`` when it has none); ``None`` when ``resp`` is not one."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None) if message is not None else None
    return content if isinstance(content, str) else ""


def completion_usage(resp: Any) -> Usage:
    """The token counts a completion reports (0 for what it leaves out)."""
    usage = getattr(resp, "usage", None)

    def count(name: str) -> int:
        value = getattr(usage, name, None) if usage is not None else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    return Usage(count("prompt_tokens"), count("completion_tokens"), 1)


def image_data_url(image: ImageLike, max_side: int = 1024, max_bytes: int | None = None, quality: int = 90) -> str:
    """``image`` as a ``data:image/jpeg;base64,...`` URL: at most ``max_side`` pixels a side, and with
    ``max_bytes`` at most that many bytes of JPEG (lower quality first, then smaller sides).

    Re-encoded as JPEG because satellite tiles may be TIFFs or huge PNGs that endpoints refuse or bill
    heavily; the pixel count is checked before decoding (:func:`gleamx.data.schema.open_rgb`).
    """
    from gleamx.data.schema import open_rgb

    im = open_rgb(image)
    im.thumbnail((max_side, max_side))
    q = quality
    while True:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=q)
        data = buf.getvalue()
        if max_bytes is None or len(data) <= max_bytes or max(im.size) <= 16:
            break
        if q > 50:
            q -= 20
        else:
            im.thumbnail((max(16, int(max(im.size) * 0.75)),) * 2)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


class _Stopped(Exception):
    """A worker noticed the run is being torn down."""


class ApiClient:
    """The ``openai`` client of one run (``settings``, ``key``: see :func:`checked_key`), its stop flag, and
    whether any request has succeeded yet.

    Once the client's retries are spent the run ends in one ``unavailable`` error (an
    :class:`ApiUnavailableError` subclass) saying ``saved`` (where the finished results are) and to rerun;
    ``params`` of :meth:`complete` are sent with its request (``temperature``, ``max_tokens`` ...).
    """

    def __init__(self, settings: ApiSettings, key: str, flags: ApiFlags, *, saved: str,
                 unavailable: type[ApiUnavailableError] = ApiUnavailableError) -> None:
        try:
            import openai
        except ImportError:
            raise GleamConfigError(f"{flags.what}: the 'openai' package is missing; pip install 'gleamx[judge]'") \
                from None
        self.openai = openai
        base_url, timeout, max_retries = settings.base_url, settings.timeout, settings.max_retries
        self.base_url, self.key_env, self.key = base_url, settings.api_key_env, key
        self.timeout, self.max_retries = timeout, max_retries
        self.flags, self.model, self.saved, self.unavailable = flags, settings.model, saved, unavailable
        self.stop = threading.Event()
        self.any_success = threading.Event()
        self._tries = threading.local()  # requests sent for the current call of each worker thread
        http = openai.DefaultHttpxClient(event_hooks={"request": [self._on_request]})
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=max_retries,
                                    http_client=http)

    def close(self) -> None:
        self.client.close()

    def _on_request(self, request: Any) -> None:
        if self.stop.is_set():
            raise _Stopped()
        self._tries.n += 1

    def _status_error(self, exc: Any) -> GleamError | None:
        """The run-ending error for a status the user must fix, or ``None`` if it is this request's problem."""
        openai, f, url, model, env = self.openai, self.flags, self.base_url, self.model, self.key_env
        if isinstance(exc, openai.AuthenticationError):
            return GleamConfigError(f"{f.what}: {url} rejected the API key in ${env} (HTTP 401); set a valid key in "
                                    f"{env} or name another variable with {f.key_env}")
        if isinstance(exc, openai.PermissionDeniedError):
            return GleamConfigError(f"{f.what}: {url} refused access (HTTP 403); check that the key in ${env} may "
                                    f"use model {model!r}")
        if isinstance(exc, openai.NotFoundError):
            return GleamConfigError(f"{f.what}: endpoint or model not found at {url} (HTTP 404); check {f.base_url} "
                                    f"(OpenAI-compatible servers usually end in /v1) and {f.model} {model!r}")
        return None

    def _server_message(self, exc: Any) -> str:
        body = getattr(exc, "body", None)
        msg = body.get("message") if isinstance(body, dict) else None
        return redact(" ".join(str(msg or "").split())[:200], self.key)

    def complete(self, item_id: str, messages: list[dict[str, Any]], **params: Any) -> Reply:
        """Ask for one chat completion of ``messages``; see the module docstring for the outcomes."""
        openai, f = self.openai, self.flags
        self._tries.n = 0

        def fail(what: str) -> Reply:
            return Reply(None, redact(what, self.key), self._tries.n, Usage(requests=self._tries.n))

        try:
            raw = self.client.chat.completions.with_raw_response.create(model=self.model, messages=messages,
                                                                        **params)
            resp = raw.parse()
        except openai.APIStatusError as exc:
            fatal = self._status_error(exc)
            if fatal is not None:
                raise fatal from None
            msg = self._server_message(exc)  # e.g. 429 "insufficient_quota" is worth showing
            # What the client retries (408, 409, 429, 5xx) failed every time; anything else (400, 413, 422...)
            # is this request's problem.
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                last = f"HTTP {exc.status_code}" + (f": {msg}" if msg else "")
                raise self._unavailable(item_id, last) from None
            return fail(f"{REFUSED} (HTTP {exc.status_code}): {msg}")
        except openai.APITimeoutError:
            raise self._unavailable(item_id, f"timeout after {self.timeout:g} s; see {f.timeout}") from None
        except openai.APIConnectionError:
            if not self.any_success.is_set():
                raise GleamConfigError(f"{f.what}: cannot connect to {self.base_url}; check {f.base_url} "
                                       "and that the server is running") from None
            raise self._unavailable(item_id, "connection error") from None
        except (openai.OpenAIError, ValueError) as exc:  # a 200 whose body is not a completion (broken JSON)
            return fail(f"{FAILED}: HTTP 200 whose body is not a chat completion ({first_line(exc, with_type=True)})")
        content = completion_text(resp)
        if content is None:  # e.g. an HTML page served with HTTP 200 (the SDK returns it as a str)
            return fail(f"{FAILED}: HTTP 200 whose body is not a chat completion "
                        f"(got {type(resp).__name__}: {str(resp)[:80]!r})")
        self.any_success.set()
        usage = completion_usage(resp)
        usage.requests = self._tries.n
        return Reply(content, None, self._tries.n, usage)

    def _unavailable(self, item_id: str, last: str) -> ApiUnavailableError:
        f = self.flags
        return self.unavailable(f"{f.what}: request for {item_id!r} failed {self._tries.n} times "
                                f"({redact(last, self.key)}); {self.saved}, rerun to resume "
                                f"({f.max_retries}: {self.max_retries})")


def run_concurrently(client: ApiClient, work: Callable[[T], R], todo: Iterable[T], concurrency: int,
                     done: Callable[[T, R], None], name: str = "gleamx-api") -> None:
    """``work(item)`` for every item on ``concurrency`` threads; ``done(item, result)`` runs in this thread as
    each finishes (it writes the caches: one writer). An exception in ``work`` or ``done`` ends the run:
    queued items are cancelled, running ones stop before their next request, and the client is closed."""
    pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
    try:
        futures = {pool.submit(work, it): it for it in todo}
        for fut in cf.as_completed(futures):
            done(futures[fut], fut.result())
    finally:
        client.stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        client.close()
