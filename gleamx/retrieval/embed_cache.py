"""Embeddings cached on disk, so a gallery is embedded once per encoder: re-evaluation, ``localize`` and the app
reuse it.

One entry of :mod:`gleamx.keyed_store` (a ``.safetensors`` file) per (encoder, image list): the encoder's key
hashes its weights and its preprocessing (the transform's description: size, mean, std), so a retrained or
differently-sized encoder never reads another's embeddings; the image list's key hashes each image's content, so
an edited or replaced image invalidates the entry (even one swapped in place with its size and time kept). Both full keys are stored
in the file's metadata and checked on load; a write is a temporary file renamed into place, so a killed run leaves
no half-written entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from gleamx.errors import GleamConfigError
from gleamx.keyed_store import SUFFIX, load_array, save_array, user_cache_dir

OFF = "off"


def default_cache_dir() -> Path:
    """``embeddings/`` in gleamx's per-user cache folder (:func:`gleamx.keyed_store.user_cache_dir`)."""
    return user_cache_dir() / "embeddings"


def cache_dir(value: str | None) -> Path | None:
    """The cache directory a ``--embedding-cache`` value names (``None``: the default; ``off``: no cache)."""
    if value is not None and value.strip().lower() == OFF:
        return None
    return Path(value) if value else default_cache_dir()


def encoder_key(encoder: torch.nn.Module, transform: object) -> str:
    """Hash of the encoder's weights and buffers (names, dtypes, shapes, bytes) and of its preprocessing."""
    h = hashlib.sha256(repr(transform).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)  # 1-d: a 0-d tensor (logit_scale) has no byte view
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


def images_key(paths: Sequence[Path]) -> str:
    """Hash of the image list, in order: each file's content (not its size and modification time, which an image
    swapped in place can keep). Reading the files costs far less than decoding and embedding them."""
    from gleamx.eval.fingerprint import ImageHasher

    hasher = ImageHasher()  # a missing file hashes as "missing:PATH"; embedding names it in one line
    h = hashlib.sha256(str(len(paths)).encode())
    for p in paths:
        h.update(f"{hasher(p)}\n".encode())
    return h.hexdigest()


def _key(enc: str, imgs: str) -> dict[str, str]:
    return {"encoder": enc, "images": imgs}


class EmbeddingCache:
    """Load and store ``(len(paths), dim)`` embeddings under ``root`` (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, enc: str, imgs: str) -> Path:
        return self.root / f"{enc[:20]}-{imgs[:20]}{SUFFIX}"

    def load(self, enc: str, imgs: str, n: int) -> torch.Tensor | None:
        """The cached embeddings, or ``None`` when there are none (or the entry is not this one's)."""
        emb = load_array(self._file(enc, imgs), _key(enc, imgs), rows=n)
        return None if emb is None else torch.from_numpy(emb)

    def save(self, enc: str, imgs: str, embeddings: torch.Tensor) -> Path:
        path = self._file(enc, imgs)
        try:
            save_array(path, _key(enc, imgs), embeddings.detach().cpu().numpy())
        except OSError as e:
            raise GleamConfigError(f"--embedding-cache: cannot write {path} ({e.strerror or e}); "
                                   f"pass another directory or '{OFF}'") from None
        return path


__all__ = ["EmbeddingCache", "cache_dir", "default_cache_dir", "encoder_key", "images_key"]
