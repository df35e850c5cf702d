"""What made a cached answer: cheap fingerprints of model/adapter contents and of what the model saw.

``gleamx-eval`` keys ``predictions.jsonl`` on two hashes (see :mod:`gleamx.eval.run`):

* the run's key: the model's and the adapter's *contents* (:func:`model_fingerprint`), the decoding
  config and the settings that change every answer (language, task, backend, pixel flags, dtype);
* each sample's key (:func:`sample_input_keys`): the chat-templated prompt text the model gets for
  that sample, the bytes of both images, and the processor's effective pixel budget.

Model contents, cheaply: for a local directory, each top-level weight file (``*.safetensors``,
``*.bin``) by name, size and modification time (ns), plus a hash of the safetensors header (tensor
names, dtypes, shapes and offsets: the first 8 bytes give its length), plus the bytes of
``config.json`` / ``adapter_config.json``. A retrained adapter rewrites its weights (a new mtime),
so its old answers are never reused; a copied directory gets new mtimes too, which costs a fresh
run, never a stale answer. For a Hub id: the commit the Hub resolves it to (offline: the commit of
the cached snapshot), else the id itself.

Images are hashed by content (BLAKE2b over the file bytes, once per file per run), so the same data
moved elsewhere keeps its cache, and another file under an old id is a new input.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WEIGHT_SUFFIXES = (".safetensors", ".bin")
CONFIG_FILES = ("config.json", "adapter_config.json")
_MAX_HEADER = 100 << 20  # safetensors caps its header at 100 MB


def _blake(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _safetensors_header(path: Path) -> str | None:
    """Hash of a safetensors file's JSON header (``None`` when the file is not readable as one)."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                return None
            return _blake(f.read(n))
    except OSError:
        return None


def directory_fingerprint(path: str | Path) -> str:
    """Fingerprint of a saved model or adapter directory (see the module docstring)."""
    path = Path(path)
    parts: list[Any] = []
    for f in sorted(path.iterdir(), key=lambda p: p.name):
        if not f.is_file():
            continue
        if f.name in CONFIG_FILES:
            parts.append([f.name, _blake(f.read_bytes())])
        elif f.name.endswith(WEIGHT_SUFFIXES):
            st = f.stat()
            header = _safetensors_header(f) if f.name.endswith(".safetensors") else None
            parts.append([f.name, st.st_size, st.st_mtime_ns, header])
    return _blake(json.dumps(parts).encode())


@functools.lru_cache(maxsize=64)
def _hub_revision(name: str) -> str | None:
    """The commit ``name`` resolves to: the Hub's answer when online, else the cached snapshot's
    (asked once per process)."""
    try:
        import huggingface_hub

        from gleamx.sources import hub_offline

        if not hub_offline():
            try:
                sha = huggingface_hub.model_info(name, timeout=10).sha
                if sha:
                    return str(sha)
            except Exception:  # noqa: BLE001 - no network, unknown id: fall back to the cache
                pass
        cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    except Exception:  # noqa: BLE001 - an id the cache cannot even parse: keyed by name only
        return None
    return None


def model_fingerprint(name_or_path: str | os.PathLike[str] | None) -> str | None:
    """``dir:<hash>`` for a local directory, ``hub:<id>@<commit>`` (or ``hub:<id>``) for a Hub id."""
    if name_or_path is None:
        return None
    name = os.fspath(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return "dir:" + directory_fingerprint(path)
    revision = _hub_revision(name)
    return f"hub:{name}@{revision}" if revision else f"hub:{name}"


class ImageHasher:
    """Content hashes of images (paths, ``datasets`` image dicts, PIL images), each file read once."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, image: Any) -> str:
        if isinstance(image, (str, os.PathLike)):
            key = os.fspath(image)
            if key not in self._seen:
                try:
                    self._seen[key] = _file_hash(Path(key))
                except OSError:
                    self._seen[key] = "missing:" + key  # loading it fails later, with its own message
            return self._seen[key]
        if isinstance(image, dict):
            if image.get("bytes"):
                return _blake(image["bytes"])
            if image.get("path"):
                return self(image["path"])
        from PIL import Image

        if isinstance(image, Image.Image):
            buf = io.BytesIO()
            buf.write(f"{image.mode}:{image.size}".encode())
            buf.write(image.tobytes())
            return _blake(buf.getvalue())
        return "unknown:" + type(image).__name__


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sample_input_keys(processor: Any, samples: Sequence[Any], lang: str, task: str) -> dict[str, str]:
    """``{sample id: hash}`` of what the model sees for each sample: the prompt text as the processor's
    chat template renders it, both images' bytes, and the processor's effective pixel budget."""
    from gleamx.eval.generate import prompt_texts
    from gleamx.models.load import pixel_budget
    from gleamx.task.templates import IMAGE_ORDER

    budget = list(pixel_budget(processor))
    images = ImageHasher()
    out: dict[str, str] = {}
    for s, text in zip(samples, prompt_texts(processor, samples, lang, task)):
        blob = json.dumps([text, [images(getattr(s, f)) for f in IMAGE_ORDER], budget], ensure_ascii=False)
        out[s.id] = _blake(blob.encode("utf-8"))
    return out


__all__ = ["ImageHasher", "directory_fingerprint", "model_fingerprint", "sample_input_keys"]
