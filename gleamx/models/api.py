"""One client for OpenAI-compatible chat endpoints (GPT-4o, Doubao on Volcengine Ark, a vLLM server), shared by
the LLM judge (:mod:`gleamx.eval.judge`) and the annotator (:mod:`gleamx.curate.annotate`).

* Both read the same settings from their configs (:class:`ApiSettings`: model, base URL, key variable, timeout,
  retries) and differ only in how their flags are spelled (:class:`ApiFlags`): :func:`checked_key` checks them
  and :class:`ApiClient` is built from them, so every error names the calling command's flag.
* Secrets are kept out by structure, never by searching saved text. The API key comes from an environment
  variable only (:func:`api_key`) and is handed to the ``openai`` client, which sends it as the request's
  ``Authorization`` header and nowhere else; replies and caches are saved exactly as the server sent them. A
  base URL that carries a credential itself (``user:password@``, or a query parameter named like one:
  ``key=``, ``api_key=``, ``access_token=``, ``sig=``, ...) is refused in one line that shows it with the
  values masked (:func:`check_base_url`): a URL is printed in messages and saved in results and configs, so a
  key in it would leak there. Only a server's error message (which may echo the key) is scrubbed, and only
  of a key long enough to be a secret (:func:`scrub_message`).
* Timeouts, connection errors, 408, 409, 429 and 5xx are retried by the ``openai`` client itself
  (``max_retries``, jittered exponential backoff, ``Retry-After`` honoured). An HTTP 200 whose body is not a
  chat completion (not JSON, or no ``choices[0].message.content``) is retried here, with the same backoff and
  out of the same budget: ``max_retries`` retries in all, whatever went wrong. A request hook counts the
  attempts of the current call per thread and stops a worker between two of them once the run is torn down.
* :meth:`ApiClient.complete` sorts every outcome three ways: a reply (text, token usage, attempts); a
  failure of this request only (the server refused it, HTTP 400/413/..., or every try got a 200 whose body
  is not a chat completion), returned as ``refused``; and what ends the run: a bad key or URL
  (:class:`GleamConfigError`) or retries run out on timeouts, 429 or 5xx (``unavailable``, an
  :class:`ApiUnavailableError`), each one line naming the flag.
* :meth:`ApiClient.call` sends any other request (the Batch API's files and batches,
  :mod:`gleamx.curate.annotate_batch`) with the same retries and the same one-line errors.
* :func:`image_data_url` re-encodes an image as a JPEG data URL under a side and byte cap.
* :func:`run_concurrently` runs the calls on a thread pool and hands each result to the calling thread.
"""

from __future__ import annotations

import base64
import concurrent.futures as cf
import io
import os
import random
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from gleamx.errors import GleamConfigError, GleamError, first_line

if TYPE_CHECKING:
    from gleamx.data.schema import ImageLike

T = TypeVar("T")
R = TypeVar("R")

REFUSED = "refused by the server"
"""Prefix of a request the server refused (HTTP 400, 413, ...): that item fails, the run goes on."""
FAILED = "server failure"
"""Prefix of an HTTP 200 whose body is no chat completion on every try: that item fails, the run goes on."""
MIN_SECRET_LEN = 8
"""Shorter keys are not scrubbed from messages: a keyless local server takes any value (``a``), and scrubbing
that would mangle every word with an ``a`` in it. Such a key guards nothing, so nothing leaks."""
# Query-parameter names that carry a credential: the whole name or one of its words (api_key, X-Amz-Signature,
# accessToken), or a word ending in one (apikey, xtoken).
_CREDENTIAL_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd", "sig", "signature",
                               "auth", "authorization", "credential", "credentials", "session", "jwt", "bearer"})
_CREDENTIAL_ENDINGS = ("key", "token", "secret", "password", "signature", "credential")
# Backoff between two tries of a 200 that is no chat completion: the openai client's own for a 5xx.
_RETRY_DELAY_S, _MAX_RETRY_DELAY_S = 0.5, 8.0


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
    """One call's outcome: ``text`` (``""`` when the completion had none), exactly as the server sent it, or,
    when the server failed this request only, ``refused`` (why; see :func:`scrub_message`). ``attempts`` counts
    the HTTP requests sent."""

    text: str | None
    refused: str | None
    attempts: int
    usage: Usage


def scrub_message(text: str, key: str) -> str:
    """A message (never saved data) with ``key`` replaced by ``***``, when the key is at least
    :data:`MIN_SECRET_LEN` characters long; a shorter one is left alone (it guards nothing)."""
    return text.replace(key, "***") if len(key) >= MIN_SECRET_LEN else text


def error_text(error: Any, key: str) -> str:
    """The ``message`` of a server's error object (``{"message": ...}``) on one line, cut to 200 characters and
    scrubbed of ``key`` (:func:`scrub_message`); ``""`` when there is none."""
    msg = error.get("message") if isinstance(error, dict) else None
    return scrub_message(" ".join(str(msg or "").split())[:200], key)


def is_credential_name(name: str) -> bool:
    """Whether a URL query parameter called ``name`` looks like it carries a credential."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)  # accessToken -> access Token
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    return any(w in _CREDENTIAL_WORDS or w.endswith(_CREDENTIAL_ENDINGS) for w in words)


def masked_url(url: str) -> str:
    """``url`` fit to print: as typed when it holds no credential (:func:`url_credentials`); else without
    ``user:password@`` and with the value of every credential-like query parameter ``***`` (the names stay, so
    the user sees which one to remove)."""
    if not url_credentials(url):
        return url
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    query = "&".join(f"{k}=***" if is_credential_name(k) else (f"{k}={v}" if v else k)
                     for k, v in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def url_credentials(url: str) -> list[str]:
    """What in ``url`` is a credential: ``user:password@`` and the names of credential-like query parameters."""
    parts = urlsplit(url)
    found = ["user:password@"] if "@" in parts.netloc else []
    return found + [k for k, _ in parse_qsl(parts.query, keep_blank_values=True) if is_credential_name(k)]


def check_base_url(url: str | None, flag: str, key_env_flag: str = "the API key variable") -> None:
    """One line unless ``url`` is an http(s) URL without a credential in it.

    A key in the URL is refused, not stripped: the URL is echoed in messages and saved in results and configs,
    and a quietly edited URL would reach another endpoint than the one typed. The key belongs in the environment
    variable (``key_env_flag`` names it), which is sent as the ``Authorization`` header only."""
    text = url or ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GleamConfigError(f"{flag}: expected an http(s) URL such as https://api.openai.com/v1, "
                               f"got {masked_url(text)!r}")
    found = url_credentials(text)
    if found:
        raise GleamConfigError(
            f"{flag}: {masked_url(text)} carries a credential ({', '.join(found)}), which would be printed and "
            f"saved with the URL; remove it and put the key in the environment variable named by {key_env_flag} "
            "(sent only as the Authorization header)")


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
    check_base_url(settings.base_url, flags.base_url, flags.key_env)
    return api_key(settings.api_key_env, flags)


def completion_text(resp: Any) -> str | None:
    """The reply text of a chat completion; ``None`` when ``resp`` is not one (no ``choices[0].message``, or a
    message without a ``content`` field). ``content: null`` (a refusal, say) is a reply with no text: ``""``."""
    choices = getattr(resp, "choices", None)
    if not isinstance(choices, list) or not choices:
        return None
    message = getattr(choices[0], "message", None)
    present = getattr(message, "model_fields_set", None)  # the fields the body held (the SDK's models)
    if message is None or not isinstance(present, (set, frozenset)) or "content" not in present:
        return None
    content = getattr(message, "content", None)
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
        return error_text(getattr(exc, "body", None), self.key)  # the SDK's body is the "error" object

    def call(self, what: str, request: Callable[[], T]) -> T:
        """``request()``: one call of the ``openai`` client other than a chat completion (a file upload, a
        batch's status ...), named ``what`` in messages. The client retries timeouts, 429 and 5xx; a bad key or
        URL, retries run out, or a refusal (HTTP 400 ...) end the run in one line."""
        openai, f = self.openai, self.flags
        self._tries.n = 0  # the request hook counts into it
        try:
            result = request()
        except openai.NotFoundError:
            raise GleamConfigError(f"{f.what}: {what}: not found at {self.base_url} (HTTP 404); check {f.base_url} "
                                   "and that the endpoint offers the Batch API (/files, /batches)") from None
        except openai.APIStatusError as exc:
            fatal = self._status_error(exc)
            if fatal is not None:
                raise fatal from None
            last = f"HTTP {exc.status_code}" + (f": {msg}" if (msg := self._server_message(exc)) else "")
            if _retried(exc.status_code):
                raise self._unavailable(what, last) from None
            raise GleamConfigError(f"{f.what}: {what}: {REFUSED} ({last})") from None
        except openai.APIConnectionError as exc:  # APITimeoutError among them
            raise self._lost(exc, what) from None
        except (openai.OpenAIError, ValueError) as exc:  # a 200 whose body is not what was asked for
            raise self._unavailable(what, first_line(exc, with_type=True)) from None
        self.any_success.set()
        return result

    def complete(self, item_id: str, messages: list[dict[str, Any]], **params: Any) -> Reply:
        """Ask for one chat completion of ``messages``; see the module docstring for the outcomes."""
        self._tries.n = 0
        while True:
            outcome = self._send(item_id, messages, params)
            if isinstance(outcome, Reply):
                return outcome
            # A 200 that is no chat completion (a proxy's error page, a cut body) is as transient as a 502:
            # asked again now, out of what is left of the same retry budget, after the client's backoff.
            sent = self._tries.n
            if sent > self.max_retries:
                return self._fail(f"{FAILED}: HTTP 200 whose body is not a chat completion, {sent} time(s) "
                                  f"({outcome}); see {self.flags.max_retries}")
            delay = min(_RETRY_DELAY_S * 2 ** (sent - 1), _MAX_RETRY_DELAY_S) * (1 - 0.25 * random.random())
            if self.stop.wait(delay):
                raise _Stopped()

    def _fail(self, why: str) -> Reply:
        """This request's failure (``refused``): counted, not fatal."""
        return Reply(None, scrub_message(why, self.key), self._tries.n, Usage(requests=self._tries.n))

    def _send(self, item_id: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Reply | str:
        """One ``create`` (the client retrying timeouts, 429 and 5xx within what is left of the budget): a
        :class:`Reply` (a completion, or a refusal), or why the HTTP 200 it got is not a chat completion."""
        openai, sent = self.openai, self._tries.n
        client = self.client if sent == 0 else self.client.with_options(max_retries=self.max_retries - sent)
        try:
            raw = client.chat.completions.with_raw_response.create(model=self.model, messages=messages, **params)
            resp = raw.parse()
        except openai.APIStatusError as exc:
            fatal = self._status_error(exc)
            if fatal is not None:
                raise fatal from None
            msg = self._server_message(exc)  # e.g. 429 "insufficient_quota" is worth showing
            # What the client retries (408, 409, 429, 5xx) failed every time; anything else (400, 413, 422...)
            # is this request's problem.
            if _retried(exc.status_code):
                last = f"HTTP {exc.status_code}" + (f": {msg}" if msg else "")
                raise self._unavailable(item_id, last) from None
            return self._fail(f"{REFUSED} (HTTP {exc.status_code}): {msg}")
        except openai.APIConnectionError as exc:  # APITimeoutError among them
            raise self._lost(exc, item_id) from None
        except (openai.OpenAIError, ValueError) as exc:  # a 200 whose body is not a completion (broken JSON)
            return first_line(exc, with_type=True)
        content = completion_text(resp)
        if content is None:  # e.g. an HTML page served with HTTP 200 (the SDK returns it as a str)
            return f"got {type(resp).__name__}: {str(resp)[:80]!r}"
        self.any_success.set()
        usage = completion_usage(resp)
        usage.requests = self._tries.n
        return Reply(content, None, self._tries.n, usage)

    def _lost(self, exc: Any, what: str) -> GleamError:
        """The run-ending error for a request the network lost after the client's retries: a timeout, or a
        connection that failed (before any request succeeded: a wrong URL or no server, in one line)."""
        f = self.flags
        if isinstance(exc, self.openai.APITimeoutError):
            return self._unavailable(what, f"timeout after {self.timeout:g} s; see {f.timeout}")
        if not self.any_success.is_set():
            return GleamConfigError(f"{f.what}: cannot connect to {self.base_url}; check {f.base_url} "
                                    "and that the server is running")
        return self._unavailable(what, "connection error")

    def _unavailable(self, item_id: str, last: str) -> ApiUnavailableError:
        f = self.flags
        return self.unavailable(f"{f.what}: request for {item_id!r} failed {self._tries.n} times "
                                f"({scrub_message(last, self.key)}); {self.saved}, rerun to resume "
                                f"({f.max_retries}: {self.max_retries})")


def _retried(status: int) -> bool:
    """Whether the ``openai`` client retries an HTTP status (so an error with it means its retries ran out)."""
    return status in (408, 409, 429) or status >= 500


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
