"""The keyed-array store behind both embedding caches: a round trip, and every file that is not this entry a miss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gleamx.keyed_store import SUFFIX, load_array, save_array

KEY = {"encoder": "e" * 64, "images": "i" * 64}


def _rows(n: int = 3, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


def test_round_trip(tmp_path: Path) -> None:
    emb = _rows()
    path = save_array(tmp_path / "sub" / f"entry{SUFFIX}", KEY, emb)  # the directory is created
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    back = load_array(path, KEY, rows=3)
    assert back is not None and back.dtype == np.float32 and np.array_equal(back, emb)
    save_array(path, KEY, emb[:2])  # written again: replaced in place
    assert np.array_equal(load_array(path, KEY, rows=2), emb[:2])


def test_a_key_that_is_not_there_is_a_miss(tmp_path: Path) -> None:
    path = save_array(tmp_path / f"entry{SUFFIX}", KEY, _rows())
    assert load_array(tmp_path / f"other{SUFFIX}", KEY, rows=3) is None  # no file
    assert load_array(path, {**KEY, "images": "j" * 64}, rows=3) is None  # same file name, another key inside
    assert load_array(path, {**KEY, "extra": "x"}, rows=3) is None  # a key field the entry lacks
    assert load_array(path, KEY, rows=4) is None  # another number of rows


@pytest.mark.parametrize("content", [b"", b"not a safetensors file", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'"])
def test_a_damaged_or_foreign_file_is_a_miss(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / f"entry{SUFFIX}"
    path.write_bytes(content)
    assert load_array(path, KEY, rows=3) is None
    truncated = save_array(tmp_path / f"cut{SUFFIX}", KEY, _rows())
    truncated.write_bytes(truncated.read_bytes()[:-5])  # a copy cut short
    assert load_array(truncated, KEY, rows=3) is None


def test_an_old_npy_cache_is_a_miss(tmp_path: Path) -> None:
    """Caches of the earlier ``.npy`` format are recomputed, never misread."""
    path = tmp_path / f"entry{SUFFIX}"
    np.save(tmp_path / "entry.npy", _rows())
    (tmp_path / "entry.npy").rename(path)
    assert load_array(path, KEY, rows=3) is None


def test_non_float_or_non_matrix_arrays_are_a_miss(tmp_path: Path) -> None:
    assert load_array(save_array(tmp_path / f"i{SUFFIX}", KEY, np.arange(6).reshape(3, 2)), KEY, rows=3) is None
    assert load_array(save_array(tmp_path / f"v{SUFFIX}", KEY, np.zeros(3, np.float32)), KEY, rows=3) is None


def test_an_unwritable_place_is_an_oserror_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        save_array(blocker / f"entry{SUFFIX}", KEY, _rows())
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
