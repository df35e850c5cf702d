"""A local path or a Hub id? Decided before any download, in well under a second.

Every loader (models, adapters, datasets, retrieval encoders) takes "a directory, a file or a Hub id". Left to the
libraries, a mistyped local path is tried on the Hub, and without a network ``datasets`` and ``huggingface_hub``
retry for half a minute before naming the Hub instead of the missing folder. Here:

* a name that looks like a path (``./``, ``/``, ``~``, more than one ``/``, a backslash or drive letter, or an
  ``a/b`` whose ``a`` is an existing local directory) and does not exist is ``NAME: not found`` at once;
* a Hub id is checked with one metadata call (a short timeout, no retries): an unknown id or an unreachable Hub is
  one line; with ``HF_HUB_OFFLINE`` set it is a cache lookup only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gleamx.errors import first_line

_TRUE = {"1", "ON", "YES", "TRUE"}
HUB_TIMEOUT_S = 10.0  # one metadata call; no network fails in milliseconds, a slow one is cut here


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, read now: huggingface_hub freezes it at import."""
    import huggingface_hub.constants as hc

    env = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(hc.HF_HUB_OFFLINE) or any(v.upper() in _TRUE for v in env)


@contextmanager
def offline_if_asked() -> Iterator[None]:
    """Inside: huggingface_hub and datasets offline when :func:`hub_offline` says so now, though both froze
    ``HF_HUB_OFFLINE`` when they were imported (a caller that sets it later would otherwise wait out datasets'
    half-minute of retries)."""
    import sys

    import huggingface_hub.constants as hc

    modules = [hc] + ([sys.modules["datasets"].config] if "datasets" in sys.modules else [])
    before = [m.HF_HUB_OFFLINE for m in modules]
    if hub_offline():
        for m in modules:
            m.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for m, was in zip(modules, before):
            m.HF_HUB_OFFLINE = was


def looks_like_path(name: str) -> bool:
    """A filesystem path rather than a Hub id (``user/name``: one slash, no prefix, ``user`` not a local folder)."""
    if (name.startswith(("/", "./", "../", "~", "\\")) or name in (".", "..") or name.count("/") > 1
            or "\\" in name or (len(name) > 1 and name[1] == ":")):
        return True
    head = name.split("/", 1)[0]
    return "/" in name and Path(head).expanduser().is_dir()


def missing_path(name: str | os.PathLike[str]) -> str | None:
    """``"NAME: not found (...)"`` when ``name`` looks like a path and nothing is there; else ``None``."""
    text = os.fspath(name)
    if Path(text).expanduser().exists() or not looks_like_path(text):
        return None
    parent = Path(text).expanduser().parent
    where = "" if parent.is_dir() else f"; {parent} does not exist either"
    return f"{text}: not found (no such file or directory{where})"


def hub_access(repo_id: str, repo_type: str = "model", *, cached_file: str = "config.json") -> tuple[str | None, bool]:
    """``(problem, cache only)`` for reading ``repo_id`` from the Hub now: ``problem`` is why it cannot, in one
    line (``None``: it can); ``cache only``: read it with ``local_files_only`` (offline, or the Hub does not answer
    but the cache holds it).

    Offline, a model must be in the Hub cache (its ``cached_file``); a dataset is left to ``datasets``, which reads
    its own cache offline. Otherwise one metadata call decides, without retries."""
    import huggingface_hub
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        return f"not a local path and not a valid Hub id ({first_line(e)})", False
    cached = repo_type == "model" and isinstance(
        huggingface_hub.try_to_load_from_cache(repo_id, cached_file), str)
    if hub_offline():
        if cached or repo_type != "model":
            return None, True
        return "not a local path, and not a Hub id in the local Hub cache (HF_HUB_OFFLINE is set)", True
    info = huggingface_hub.dataset_info if repo_type == "dataset" else huggingface_hub.model_info
    try:
        info(repo_id, timeout=HUB_TIMEOUT_S)
    except Exception as e:  # noqa: BLE001  (not found, gated, no network: each is one line)
        if cached:  # downloaded before: the cache serves it
            return None, True
        what = type(e).__name__
        if what in ("RepositoryNotFoundError", "GatedRepoError"):
            return f"not a local path, and no {repo_type} of that Hub id ({what})", False
        return (f"not a local path, and the Hub is unreachable ({first_line(e, with_type=True)}); set "
                "HF_HUB_OFFLINE=1 to use a cached copy"), False
    return None, False
