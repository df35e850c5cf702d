"""Image paths stay inside their dataset.

A dataset downloaded from elsewhere must not make gleamx read any image on the machine, so an
image path (relative or absolute) must resolve, symlinks followed, inside the dataset directory:
the directory of the JSONL/ShareGPT file, the dataset directory above ``retrieval/``, or a local
Hugging Face dataset's directory. ``allow_outside_paths=True`` (``--allow-outside-paths``) turns
the check off.

Files that gleamx itself writes pointing into a dataset left in place (``gleamx data cvgl``
layouts, ``gleamx data convert --out`` elsewhere, localize's ``candidates.jsonl``) name the
extra image roots in a manifest beside them, :data:`MANIFEST_NAME`::

    {"gleamx_manifest": 1, "written_in": "/abs/real/path/of/this/dir",
     "image_roots": ["../../raw/University-1652"]}

Roots are relative to the manifest's directory (or absolute). A root outside the dataset
directory counts only while the manifest is read where it was written (``written_in``), and only
when it carries the ``signature`` gleamx gave it (an HMAC of ``written_in`` and the roots under a
random key kept in the user's gleamx cache folder, :func:`gleamx.keyed_store.user_cache_dir`): a
manifest that arrives with a downloaded or moved dataset, or one written by hand with a guessed
``written_in``, can only narrow what gleamx reads, never widen it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gleamx.errors import GleamDataError

MANIFEST_NAME = "gleamx_manifest.json"
KEY_NAME = "manifest.key"  # in the user's gleamx cache folder: 32 random bytes, this user's only
ALLOW_HINT = "--allow-outside-paths / allow_outside_paths=True allows it"


def _real(path: str | os.PathLike) -> str:
    return os.path.normcase(os.path.realpath(os.path.expanduser(os.fspath(path))))


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _manifest_key(create: bool) -> bytes | None:
    """This user's manifest key (made on first use when ``create``; ``None`` when there is none)."""
    from gleamx.keyed_store import user_cache_dir

    path = user_cache_dir() / KEY_NAME
    if create and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes making it at once keep the first one's key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32))
    try:
        key = path.read_bytes()
    except OSError:
        return None
    return key if len(key) == 32 else None


def _signature(key: bytes, written_in: str, roots: list[str]) -> str:
    import hashlib
    import hmac

    return hmac.new(key, json.dumps([written_in, roots]).encode("utf-8"), hashlib.sha256).hexdigest()


def read_manifest(directory: str | os.PathLike) -> list[str]:
    """The extra image roots (real absolute paths) that ``directory``'s manifest names; ``[]`` without one.

    A manifest that cannot be read, or that names roots outside ``directory`` while it is read
    somewhere other than where it was written, raises a one-line :class:`GleamDataError`.
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        return []
    from gleamx.data.text import MAX_JSON_DEPTH, json_too_deep, read_text

    name = str(path)
    text = read_text(path)
    if json_too_deep(text):
        raise GleamDataError.at(name, None, "json", f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GleamDataError.at(name, e.lineno, "json", f"expected a JSON object ({e.msg})") from None
    roots = data.get("image_roots") if isinstance(data, dict) else None
    if not isinstance(roots, list) or not all(isinstance(r, str) and r.strip() for r in roots):
        raise GleamDataError.at(name, None, "image_roots", "expected a list of directory paths")
    here = _real(directory)
    real_roots = [_real(r if os.path.isabs(os.path.expanduser(r)) else os.path.join(here, r)) for r in roots]
    outside = [r for r in real_roots if not _inside(r, here)]
    written_in = data.get("written_in")
    if outside and (not isinstance(written_in, str) or _real(written_in) != here):
        raise GleamDataError.at(
            name, None, "written_in",
            f"written for {written_in!r}, read in {here!r}: a moved or downloaded dataset may not name image roots "
            f"outside itself ({outside[0]}); re-run the gleamx command that wrote it, or {ALLOW_HINT}")
    key = _manifest_key(create=False) if outside else None
    if outside:
        import hmac

        signature = data.get("signature")
        if key is None or not isinstance(signature, str) or not hmac.compare_digest(
                signature, _signature(key, written_in, roots)):  # type: ignore[arg-type]  # checked a str above
            raise GleamDataError.at(
                name, None, "signature", f"not written by gleamx for this user on this machine, so it may not name "
                f"image roots outside its dataset ({outside[0]}); re-run the gleamx command that wrote it, or "
                f"{ALLOW_HINT}")
    return real_roots


class ImageRoots:
    """Where a dataset's images may live: its directory plus its manifest's roots (real paths)."""

    def __init__(self, dataset_dir: str | os.PathLike | None, extra: Iterable[str | os.PathLike] = (), *,
                 allow_outside: bool = False, where: str | None = None) -> None:
        self.allow_outside = allow_outside
        given = ([dataset_dir] if dataset_dir is not None else []) + list(extra)
        self.roots = tuple(_real(r) for r in given)
        self._lexical = tuple(os.path.normcase(os.path.abspath(os.path.expanduser(os.fspath(r)))) for r in given)
        self.where = where or (f"the dataset directory {self.roots[0]}" if self.roots else "the dataset")
        self._seen: dict[str, bool] = {}

    @classmethod
    def for_dir(cls, dataset_dir: str | os.PathLike, manifest_dir: str | os.PathLike | None = None, *,
                allow_outside: bool = False) -> "ImageRoots":
        """``dataset_dir`` plus the roots of the manifest in ``manifest_dir`` (default: ``dataset_dir``)."""
        if allow_outside:
            return cls(dataset_dir, allow_outside=True)
        return cls(dataset_dir, read_manifest(manifest_dir if manifest_dir is not None else dataset_dir))

    def contains(self, path: str | os.PathLike) -> bool:
        if self.allow_outside:
            return True
        key = os.fspath(path)
        if key not in self._seen:
            real = _real(key)
            self._seen[key] = any(_inside(real, r) for r in self.roots)
        return self._seen[key]

    def problem(self, path: str | os.PathLike, shown: str | None = None) -> str | None:
        """``None`` if ``path`` (absolute) resolves inside a root, else what is wrong, naming it as ``shown``."""
        if self.contains(path):
            return None
        lexical = os.path.normcase(os.path.abspath(os.fspath(path)))
        link = " (through a symlink)" if any(_inside(lexical, r) for r in self._lexical + self.roots) else ""
        return (f"image path {shown or os.fspath(path)} resolves{link} outside {self.where}; "
                f"expected a path inside it ({ALLOW_HINT})")


def _covering(reals: Iterable[str]) -> list[str]:
    """One common root per drive for ``reals`` (real paths of image files)."""
    by_drive: dict[str, list[str]] = {}
    for r in reals:
        by_drive.setdefault(os.path.splitdrive(r)[0], []).append(os.path.dirname(r))
    return [os.path.commonpath(dirs) for dirs in by_drive.values()]


def record_image_roots(directory: str | os.PathLike, images: Iterable[Any] = (), *,
                       roots: Iterable[str | os.PathLike] = (), replace: bool = False) -> Path | None:
    """After writing data files into ``directory``, name the roots of those of ``images`` (paths) that
    resolve outside it, plus ``roots``, in its manifest (merged with the roots already there unless
    ``replace``). Returns the manifest's path, or ``None`` if nothing lies outside (no file is written;
    with ``replace`` a stale manifest is removed)."""
    directory = Path(directory)
    here = _real(directory)
    seen: set[str] = set()
    outside: list[str] = []
    for image in images:
        if not isinstance(image, (str, os.PathLike)) or os.fspath(image) in seen:
            continue
        seen.add(os.fspath(image))
        real = _real(image)
        if not _inside(real, here):
            outside.append(real)
    wanted = [_real(r) for r in roots] + _covering(outside)
    wanted = [r for r in wanted if not _inside(r, here)]
    path = directory / MANIFEST_NAME
    if not wanted:
        if replace and path.is_file():
            path.unlink()
        return None
    old: list[str] = []
    if not replace and path.is_file():
        try:
            old = read_manifest(directory)
        except GleamDataError:
            old = []  # written for another place (or unreadable): this write replaces it
    merged: list[str] = []
    for r in sorted(set(old) | set(wanted), key=len):
        if not any(_inside(r, m) for m in merged):
            merged.append(r)
    rel = [Path(os.path.relpath(r, here)).as_posix() if os.path.splitdrive(r)[0] == os.path.splitdrive(here)[0]
           else r for r in merged]
    written_in = os.path.realpath(directory)
    key = _manifest_key(create=True)
    record: dict[str, Any] = {"gleamx_manifest": 1, "written_in": written_in, "image_roots": rel}
    if key is not None:  # without a writable cache folder the manifest is unsigned, and refused when read
        record["signature"] = _signature(key, written_in, rel)
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
