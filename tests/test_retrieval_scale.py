"""Retrieval encoder evaluation at scale: shards across processes, embeddings cached on disk."""

from __future__ import annotations

import json
import os
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
from processes import free_port

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


def launch_retrieval_eval(enc: str, data: Path, out: Path, n_proc: int, *extra: str) -> float:
    """``accelerate launch`` (CPU, gloo) of ``gleamx retrieval eval`` on ``n_proc`` processes; wall seconds."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ROOT / "accelerate_configs" /
           "cpu.yaml"), "--num_processes", str(n_proc), "--main_process_port", str(free_port()),
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


# --- gallery search through a faiss index ------------------------------------------------------------------------

from gleamx.errors import GleamConfigError  # noqa: E402
from gleamx.retrieval import index as index_mod  # noqa: E402
from gleamx.retrieval.index import IndexOptions, gallery_search, index_recall  # noqa: E402
from gleamx.retrieval.search import topk_search  # noqa: E402

KEY = ("e" * 64, "i" * 64)  # a gallery's embedding-cache key: (encoder, images)


def _clustered(n: int, dim: int = 128, centres: int = 40, seed: int = 0) -> torch.Tensor:
    """L2-normalised points around ``centres`` random directions, spread within an 8-d subspace: the structure real
    embeddings have (clusters, a low intrinsic dimension) and an approximate index relies on (uniform random points
    have none)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.nn.functional.normalize(torch.randn(centres, dim, generator=g), dim=-1)
    basis = torch.randn(8, dim, generator=g) / dim**0.5
    x = c[torch.randint(0, centres, (n,), generator=g)] + 0.5 * torch.randn(n, 8, generator=g) @ basis
    return torch.nn.functional.normalize(x, dim=-1)


@pytest.fixture(scope="module")
def gallery() -> tuple[torch.Tensor, torch.Tensor]:
    """(queries, gallery): 200 queries over 3,000 tiles, 128-d, drawn alike (other points of the same clusters)."""
    x = _clustered(3200)
    return x[:200], x[200:]


def _count_builds(monkeypatch) -> list[str]:
    builds: list[str] = []
    real = index_mod.build_index
    monkeypatch.setattr(index_mod, "build_index", lambda g, method, p: builds.append(method) or real(g, method, p))
    return builds


# pq_m 16 on 128-d: 8 dims per code byte, as the default 64 on 512-d (and 16 k-means to train instead of 64, ~5 s)
@pytest.mark.parametrize("opts", [IndexOptions(index="ivfpq", pq_m=16), IndexOptions(index="hnsw")],
                         ids=["ivfpq", "hnsw"])
def test_index_recall_against_exact_search_is_high_on_a_clustered_gallery(gallery, opts: IndexOptions) -> None:
    q, g = gallery
    exact_s, exact = topk_search(q, g, 10)
    res = gallery_search(q, g, 10, opts)
    assert res.method == opts.index and res.built and res.index_file is None  # no cache: built in memory, not saved
    assert index_recall(res.indices, exact, 10) >= 0.9
    found = res.indices == exact  # where the index found the exact tile, its score is the exact one (re-scored)
    assert torch.allclose(res.scores[found], exact_s[found], atol=1e-5)


def test_index_recall_counts_the_shared_top_k() -> None:
    exact = torch.tensor([[0, 1, 2], [3, 4, 5]])
    assert index_recall(exact, exact, 3) == 1.0
    assert index_recall(torch.tensor([[2, 9, 0], [8, 7, 6]]), exact, 3) == pytest.approx(2 / 6)  # order aside
    assert index_recall(torch.tensor([[1, 0, 7], [4, 3, 7]]), exact, 1) == 0.0  # only the top-1 counts at k=1


def test_auto_searches_exactly_below_the_threshold_and_through_an_index_from_it(gallery, monkeypatch) -> None:
    q, g = gallery
    builds = _count_builds(monkeypatch)
    opts = IndexOptions(index="auto", index_threshold=2000)
    assert gallery_search(q, g[:1999], 5, opts).method == "exact" and builds == []
    res = gallery_search(q, g[:2000], 5, opts)
    assert res.method == "hnsw" and builds == ["hnsw"]
    # the defaults: exact at every size (what bench_retrieval_scale --index measured); auto's threshold 100,000
    assert IndexOptions().method(10**7) == "exact"
    assert IndexOptions(index="auto").method(99_999) == "exact" and IndexOptions(index="auto").method(100_000) == "hnsw"


def test_a_saved_index_is_loaded_not_rebuilt_and_gives_the_same_results(gallery, tmp_path: Path,
                                                                       monkeypatch) -> None:
    q, g = gallery
    cache = EmbeddingCache(tmp_path)
    opts = IndexOptions(index="hnsw")
    first = gallery_search(q, g, 10, opts, cache=cache, gallery_key=KEY)
    assert first.built and first.index_file is not None and first.index_file.parent == tmp_path
    stamp = first.index_file.stat().st_mtime_ns
    builds = _count_builds(monkeypatch)
    again = gallery_search(q, g, 10, opts, cache=cache, gallery_key=KEY)
    assert builds == [] and not again.built and again.index_file == first.index_file
    assert first.index_file.stat().st_mtime_ns == stamp  # read, not rewritten
    assert torch.equal(again.indices, first.indices) and torch.equal(again.scores, first.scores)
    # a search-time parameter is set on the loaded index: the same file, no build
    assert gallery_search(q, g, 10, IndexOptions(index="hnsw", ef_search=16), cache=cache,
                          gallery_key=KEY).index_file == first.index_file and builds == []


def test_a_changed_gallery_or_build_parameter_gets_its_own_index(gallery, tmp_path: Path, monkeypatch) -> None:
    q, g = gallery
    cache = EmbeddingCache(tmp_path)
    opts = IndexOptions(index="hnsw")
    path = gallery_search(q, g, 5, opts, cache=cache, gallery_key=KEY).index_file
    builds = _count_builds(monkeypatch)
    other = gallery_search(q, g.flip(0), 5, opts, cache=cache, gallery_key=(KEY[0], "j" * 64))  # other images
    assert builds == ["hnsw"] and other.index_file != path
    assert not torch.equal(other.indices, gallery_search(q, g, 5, opts, cache=cache, gallery_key=KEY).indices)
    assert builds == ["hnsw"]  # the first gallery's index is still there, and still its own
    new_encoder = gallery_search(q, g, 5, opts, cache=cache, gallery_key=("f" * 64, KEY[1]))
    assert builds == ["hnsw"] * 2 and new_encoder.index_file not in (path, other.index_file)
    m16 = gallery_search(q, g, 5, IndexOptions(index="hnsw", hnsw_m=16), cache=cache, gallery_key=KEY)
    assert builds == ["hnsw"] * 3 and m16.index_file not in (path, other.index_file, new_encoder.index_file)
    # an entry that does not hold this gallery (other rows under the key) or a damaged file is built again
    assert gallery_search(q, g[:2500], 5, opts, cache=cache, gallery_key=KEY).built and builds == ["hnsw"] * 4
    path.write_bytes(b"not a faiss index")
    assert gallery_search(q, g, 5, opts, cache=cache, gallery_key=KEY).built and builds == ["hnsw"] * 5


@pytest.mark.parametrize(("opts", "n", "message"), [
    (dict(index="ivfpq", nlist=3001), 3000, r"^--nlist: expected at most the gallery's 3000 tiles .*, got 3001$"),
    (dict(index="ivfpq", pq_m=60), 3000, r"^--pq-m: expected a divisor of the embedding dim 128, got 60$"),
    (dict(index="ivfpq", pq_m=16), 200, r"^--pq-nbits: expected 2\*\*nbits codes .* at most the gallery's 200 tiles"),
])
def test_bad_index_parameters_for_the_gallery_are_one_line(gallery, opts: dict, n: int, message: str) -> None:
    q, g = gallery
    with pytest.raises(GleamConfigError, match=message) as e:
        gallery_search(q, g[:n], 5, IndexOptions(**opts))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("opts", "message"), [
    (dict(index="annoy"), r"^--index: expected one of auto, exact, ivfpq, hnsw, got 'annoy'$"),
    (dict(nprobe=0), r"^--nprobe: expected .*got 0"),
    (dict(pq_nbits=17), r"^--pq-nbits: expected .*got 17"),
    (dict(ef_search=0), r"^--ef-search: expected .*got 0"),
])
def test_bad_index_options_are_one_line(opts: dict, message: str) -> None:
    from gleamx.retrieval.run_config import LocalizeConfig, RetrievalEvalConfig

    with pytest.raises(GleamConfigError, match=message):
        IndexOptions(**opts)
    with pytest.raises(GleamConfigError, match=message):  # the commands' configs meet the same checks
        RetrievalEvalConfig(encoder="e", data="d", output="o", **opts)
    with pytest.raises(GleamConfigError, match=message):
        LocalizeConfig(encoder="e", model="m", data="d", output="o", **opts)


def test_without_faiss_a_big_gallery_says_how_to_install_it(gallery, monkeypatch) -> None:
    q, g = gallery
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` raises ImportError
    with pytest.raises(GleamConfigError, match=r"^--index: auto searches a gallery of 3,000 tiles \(>= "
                                               r"--index-threshold 1,000\) with an hnsw index, which needs faiss: "
                                               r"pip install 'gleamx\[retrieval\]' \(or pass --index exact\)$"):
        gallery_search(q, g, 5, IndexOptions(index="auto", index_threshold=1000))
    assert gallery_search(q, g, 5).method == "exact"  # below the default threshold faiss is not needed


def test_retrieval_eval_reports_the_index_recall(toy: Path, tmp_path: Path, capsys) -> None:
    from gleamx.cli.main import main

    enc_dir = tmp_path / "enc"
    _encoder().save_pretrained(enc_dir)
    args = ["retrieval", "eval", "--encoder", str(enc_dir), "--data", str(toy), "--split", "train", "--ks", "1,5",
            "--num-workers", "0", "--embedding-cache", str(tmp_path / "cache"), "--output", str(tmp_path / "out")]
    assert main([*args, "--index", "auto", "--index-threshold", "5"]) == 0  # a gallery past the threshold
    printed = capsys.readouterr().out
    r = json.loads((tmp_path / "out" / "retrieval_results.json").read_text())
    s = r["search"]
    assert s["method"] == "hnsw" and s["built"] and Path(s["index_file"]).is_file()
    # a graph over a few dozen tiles with ef_search 128 visits every tile: the index loses nothing here
    assert s["recall@1"] == s["recall@5"] == 1.0 and (s["R@1"], s["R@5"]) == (r["R@1"], r["R@5"])
    assert "recall@1 100.00" in printed and "recall@5 100.00" in printed and "through it R@1" in printed
    assert main([*args, "--index", "auto", "--index-threshold", "5", "--ef-search", "1", "--hnsw-m", "2"]) == 0
    low = json.loads((tmp_path / "out" / "retrieval_results.json").read_text())["search"]
    assert low["recall@5"] < 1.0  # a sparse graph walked greedily misses tiles, and the figure says so
    capsys.readouterr()
    assert main(args) == 0  # the default: exact, and nothing about an index
    assert json.loads((tmp_path / "out" / "retrieval_results.json").read_text())["search"] == {"method": "exact"}
    assert "recall@" not in capsys.readouterr().out


@pytest.mark.slow
def test_the_benchmark_records_the_index_search_table(tmp_path: Path) -> None:
    """``bench_retrieval_scale.py --quick`` (index section, small galleries): every method's build, query, memory and
    recall figures, in the grid benchmark/README.md renders."""
    env = {**os.environ, "GLEAMX_BENCH_RESULTS": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmark" / "bench_retrieval_scale.py"), "--quick",
                           "--index", "--index-sizes", "600,1200"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = json.loads((tmp_path / "quick" / "bench_retrieval_index.json").read_text())["figures"]
    for n in (600, 1200):
        assert figures[f"index.{n}.exact.recall"]["median"] == 1.0  # exact search equals itself in a fresh process
        assert f"index.{n}.exact.build_s" not in figures
        for m in ("ivfpq", "hnsw"):
            assert {f"index.{n}.{m}.{f}" for f in ("build_s", "query_s", "peak_mib", "recall")} <= set(figures)
            assert 0 < figures[f"index.{n}.{m}.recall"]["median"] <= 1
    sys.path.insert(0, str(ROOT / "benchmark"))
    try:
        import render
    finally:
        sys.path.remove(str(ROOT / "benchmark"))
    text, problems = render.render_text("<!--grid bench_retrieval_index index.*--><!--/grid-->",
                                        render.Results(tmp_path / "quick"))
    assert "| 1,200 tiles, HNSW |" in text and "recall@10 vs exact" in text and len(problems) == 1
