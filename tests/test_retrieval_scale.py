"""Retrieval encoder evaluation at scale: shards across processes, embeddings cached on disk."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gleamx.retrieval import embed as embed_mod
from gleamx.retrieval.data import load_retrieval
from gleamx.retrieval.embed import embed_images, shard_bounds
from gleamx.retrieval.embed_cache import EmbeddingCache, cache_dir, default_cache_dir
from gleamx.retrieval.encoder import RetrievalEncoder

from test_retrieval import toy  # noqa: E402, F401  (the synthetic toy-level retrieval layout, 60 locations)

ROOT = Path(__file__).resolve().parents[1]


def _encoder(seed: int = 0) -> RetrievalEncoder:
    torch.manual_seed(seed)
    return RetrievalEncoder.tiny(32)


@pytest.mark.parametrize(("n", "world"), [(10, 3), (7, 2), (2, 2), (100, 8), (5, 1)])
def test_shards_cover_the_list_once_in_order(n: int, world: int) -> None:
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [e - s for s, e in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_cache_hits_only_for_the_same_encoder_and_images(toy: Path, tmp_path: Path, monkeypatch) -> None:
    rset = load_retrieval(toy, "test")
    paths = [t.image for t in rset.gallery]
    calls = []
    real = embed_mod._embed
    monkeypatch.setattr(embed_mod, "_embed", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    cache = EmbeddingCache(tmp_path / "cache")
    enc = _encoder()
    first = embed_images(enc, paths, cache=cache)
    assert calls == [len(paths)] and len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    again = embed_images(enc, paths, cache=cache)
    assert calls == [len(paths)] and torch.equal(first, again)  # read back, not recomputed
    assert torch.equal(embed_images(enc, paths), first)  # and equal to a fresh computation
    calls.clear()
    embed_images(_encoder(seed=1), paths, cache=cache)  # other weights: another entry
    assert len(calls) == 1
    small = RetrievalEncoder.tiny(48)
    small.load_state_dict(enc.state_dict())
    embed_images(small, paths, cache=cache)  # same weights, other preprocessing (size): another entry
    assert len(calls) == 2
    embed_images(enc, paths[::-1], cache=cache)  # another image list (order matters)
    assert len(calls) == 3
    changed = tmp_path / "changed.png"
    changed.write_bytes(paths[0].read_bytes())
    embed_images(enc, [changed, *paths[1:]], cache=cache)  # a copy elsewhere: the same content, the same entry
    assert len(calls) == 3
    # another image swapped in place, its size and modification time kept: the entry is stale
    stamp = changed.stat()
    changed.write_bytes(bytes(reversed(changed.read_bytes())))  # other bytes, the same size
    os.utime(changed, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert changed.stat().st_size == stamp.st_size and changed.stat().st_mtime_ns == stamp.st_mtime_ns
    calls.clear()
    from gleamx.retrieval.embed_cache import encoder_key, images_key

    assert images_key([changed, *paths[1:]]) != images_key(paths)
    assert cache.load(encoder_key(enc, enc.transform()), images_key([changed, *paths[1:]]), len(paths)) is None
    for f in (tmp_path / "cache").glob("*.safetensors"):
        f.write_bytes(b"not a safetensors file")  # damaged entries are recomputed, never trusted
    assert torch.equal(embed_images(enc, paths, cache=cache), first) and calls == [len(paths)]


def test_cache_dir_setting(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GLEAMX_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "embeddings" == cache_dir(None)
    assert cache_dir("off") is None and cache_dir("OFF") is None
    assert cache_dir(str(tmp_path / "x")) == tmp_path / "x"
    monkeypatch.delenv("GLEAMX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "gleamx" / "embeddings"


def test_unwritable_cache_is_one_line(toy: Path, tmp_path: Path) -> None:
    from gleamx.errors import GleamConfigError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    rset = load_retrieval(toy, "test")
    with pytest.raises(GleamConfigError, match=r"--embedding-cache: cannot write .*; pass another directory or 'off'"):
        embed_images(_encoder(), [t.image for t in rset.gallery], cache=EmbeddingCache(blocker / "sub"))


def test_retrieval_eval_reuses_the_cache(toy: Path, tmp_path: Path, capsys) -> None:
    from gleamx.cli.main import main

    enc_dir = tmp_path / "enc"
    _encoder().save_pretrained(enc_dir)
    args = ["retrieval", "eval", "--encoder", str(enc_dir), "--data", str(toy), "--split", "train", "--ks", "1,5",
            "--num-workers", "0", "--embedding-cache", str(tmp_path / "cache")]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2  # gallery and queries
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert main([*args, "--output", str(tmp_path / "b")]) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == stamps  # read, not rewritten
    a, b = (json.loads((tmp_path / d / "retrieval_results.json").read_text()) for d in "ab")
    assert {k: v for k, v in a.items() if k != "config"} == {k: v for k, v in b.items() if k != "config"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_retrieval_eval(enc: str, data: Path, out: Path, n_proc: int, *extra: str) -> float:
    """``accelerate launch`` (CPU, gloo) of ``gleamx retrieval eval`` on ``n_proc`` processes; wall seconds."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" /
           "cpu.yaml"), "--num_processes", str(n_proc), "--main_process_port", str(_free_port()),
           "-m", "gleamx.cli.main", "retrieval", "eval", "--encoder", enc, "--data", str(data), "--split", "train",
           "--ks", "1,5", "--num-workers", "0", "--embedding-cache", "off", "--output", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return time.perf_counter() - t0


@pytest.mark.slow
def test_two_processes_give_the_same_metrics_as_one(toy: Path, tmp_path: Path) -> None:
    """Gallery and queries embedded in 2 shards and gathered: every R@k/mAP equals the 1-process run's."""
    enc = tmp_path / "enc"
    _encoder(seed=3).save_pretrained(enc)
    launch_retrieval_eval(str(enc), toy, tmp_path / "one", 1, "--img-size", "32")
    launch_retrieval_eval(str(enc), toy, tmp_path / "two", 2, "--img-size", "32")
    a, b = (json.loads((tmp_path / d / "retrieval_results.json").read_text()) for d in ("one", "two"))
    assert (a["n_processes"], b["n_processes"]) == (1, 2)
    drop = {"config", "n_processes", "gleamx"}
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    assert a["n_query"] > 2 * 10 and 0 < a["R@1"] < 1  # enough queries that a wrong gather would show
