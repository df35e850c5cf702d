"""Arrays kept on disk under a content key: the one store behind gleamx's embedding caches
(:mod:`gleamx.retrieval.embed_cache`, :mod:`gleamx.eval.metrics.embedding_cache`); and where gleamx's per-user
cache folder is (:func:`user_cache_dir`).

An entry is one ``.safetensors`` file holding one 2-d float array and, in the file's metadata, the full key it
was stored under: named fingerprints such as ``{"encoder": ..., "images": ...}``. The caller names the file
(usually after a prefix of the key); what is trusted is the metadata: an entry is read back only when every key
field matches and the array has the expected number of rows. A missing, damaged, foreign (another format,
another key) or mis-shaped file is a miss (``None``), never an error: the caller computes it again and stores it.

Writes go to a temporary file beside the entry (its name carries the process id, so two processes storing the
same entry never write into one file), renamed into place: a killed run leaves the old entry or the new one,
never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

SUFFIX = ".safetensors"
CACHE_ENV = "GLEAMX_CACHE"


def user_cache_dir() -> Path:
    """gleamx's per-user cache folder, decided here only: ``$GLEAMX_CACHE``, else ``$XDG_CACHE_HOME/gleamx``, else
    ``~/.cache/gleamx`` (embeddings, the app's files and the manifest key live under it)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gleamx"
_ARRAY = "embeddings"  # the array's name inside the file


def load_array(path: str | os.PathLike[str], key: Mapping[str, str], rows: int) -> np.ndarray | None:
    """The ``(rows, dim)`` float array stored at ``path`` under ``key``, or ``None`` (see the module docstring)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            if any(meta.get(name) != value for name, value in key.items()):
                return None
            array = f.get_tensor(_ARRAY)
    except Exception:  # noqa: BLE001 - a damaged or foreign file is recomputed, never trusted
        return None
    if array.ndim != 2 or array.shape[0] != rows or not np.issubdtype(array.dtype, np.floating):
        return None
    return array


def save_array(path: str | os.PathLike[str], key: Mapping[str, str], array: np.ndarray) -> Path:
    """Store ``array`` at ``path`` under ``key``, atomically (creating the directory); ``OSError`` when it cannot."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        save_file({_ARRAY: np.ascontiguousarray(array)}, str(tmp), metadata=dict(key))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
    return path


__all__ = ["SUFFIX", "load_array", "save_array"]
