"""The retrieval encoder trained from a stream (``streaming: true``): the matching pairs of Parquet shards (a local
stand-in of a Hub dataset), each process reading its own shards, an exact resume at the step it stopped, and bad
settings refused in one line."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamConfigError, GleamDataError
from hub_shards import N_SHARDS, write_parquet_shards
from training_checks import assert_moved, tensors, tiny_encoder_at_start

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub(synth_dir, tmp_path_factory):
    """Train and val splits of a toy synthetic dataset as Parquet shards (4 each), and the dataset itself."""
    data = synth_dir(120, seed=0, image_size=32, difficulty="toy")
    repo = tmp_path_factory.mktemp("hub") / "repo"
    for split in ("train", "val"):
        write_parquet_shards(data, repo, split=split)
    return {"data": data, "shards": repo}


def _cfg(source: Path, out: Path, **kw):
    from gleamx.retrieval.config import RetrievalConfig

    base = dict(data=str(source), output_dir=str(out), encoder="tiny", img_size=32, batch_size=4, streaming=True,
                max_steps=6, save_steps=3, logging_steps=1, stream_shuffle_buffer=8, eval_split=None, seed=0)
    return RetrievalConfig(**{**base, **kw})


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h}


def _positive_ids(data: Path) -> set[str]:
    from gleamx.data import load_samples

    ds = load_samples(data, split="train").dataset
    return {i for i, label in zip(ds["id"], ds["label"]) if label}


def test_a_stream_trains_the_encoder_and_scores_the_eval_split(hub, tmp_path):
    from gleamx.retrieval.train import train_retrieval

    out = train_retrieval(_cfg(hub["shards"], tmp_path / "o", max_steps=4, save_steps=2, eval_split="val"))
    assert_moved(tiny_encoder_at_start(img_size=32, seed=0), tensors(out / "model.safetensors"), "a streamed run")
    assert sorted(_losses(out)) == [1, 2, 3, 4] and len(set(_losses(out).values())) > 1
    state = json.loads((out / "checkpoint-4" / "retrieval_state.json").read_text())
    # each process's place in its stream: 4 steps x 4 pairs
    assert state == {"step": 4, "streaming": True, "num_processes": 1, "stream_rows_taken": 16}
    # scored on the val split of the same shards, materialised into a retrieval layout beside the run
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "val" and results["n_query"] > 0 and (out / "eval_layout" / "retrieval").is_dir()
    assert [h["step"] for h in json.loads((out / "log_history.json").read_text()) if "eval" in h] == [2, 4]
    card = (out / "README.md").read_text()
    assert "(streamed)" in card and "the matching pairs of a stream, shuffled by shard and a buffer of 8" in card
    assert "| max_steps | 4 |" in card and "| epochs |" not in card


def test_a_resumed_stream_reads_on_where_it_stopped(hub, tmp_path):
    """Stopped at step 3 (its checkpoint copied out), resumed: steps 4-6 see the batches of the straight run and
    end with its weights. Had the resume started the stream again, or skipped too few or too many pairs, the
    losses would differ."""
    from gleamx.retrieval.train import train_retrieval

    straight = train_retrieval(_cfg(hub["shards"], tmp_path / "straight"))
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoint-3", resumed_dir / "checkpoint-3")
    resumed = train_retrieval(_cfg(hub["shards"], resumed_dir,
                                   resume_from_checkpoint=str(resumed_dir / "checkpoint-3")))
    a, b = _losses(straight), _losses(resumed)
    assert sorted(b) == [4, 5, 6]
    for step in b:
        assert b[step] == pytest.approx(a[step], abs=1e-6), step
    end_a, end_b = tensors(straight / "model.safetensors"), tensors(resumed / "model.safetensors")
    assert all(torch.allclose(end_a[k], end_b[k], atol=1e-6) for k in end_a)
    assert_moved(tensors(resumed_dir / "checkpoint-3" / "model.safetensors"), end_b, "steps 4-6 of the resumed run")


# Shuffled: datasets interleaves the shards through threads and sleeps 5 s each time it stops reading Parquet
# (apache/arrow#45214), so every pass and every abandoned reader costs that.
@pytest.mark.parametrize("buffer", [0, pytest.param(8, marks=pytest.mark.slow)])
@pytest.mark.parametrize("n_shards", [N_SHARDS, 3])
def test_each_process_reads_its_own_pairs(hub, tmp_path, n_shards, buffer):
    """Two processes' streams (ranks emulated): disjoint, together every matching pair; with 4 shards each reads
    two of them, with 3 each reads all and keeps every other pair. A resume skips exactly a process's own pairs."""
    from gleamx.retrieval.stream import positive_pairs, process_stream

    shards = write_parquet_shards(hub["data"], tmp_path / "repo", n_shards=n_shards)
    cfg = _cfg(shards, tmp_path / "o", stream_shuffle_buffer=buffer)
    pairs = positive_pairs(cfg)
    everything = _positive_ids(hub["data"])
    seen = []
    for rank in range(2):
        stream = process_stream(pairs, cfg, rank=rank, world=2, step=0, batch=2)
        ids = [r["id"] for r in itertools.islice(stream, len(everything) + 10)]  # past one pass of its part
        seen.append(set(ids))
        skipped = process_stream(pairs, cfg, rank=rank, world=2, step=3, batch=2)  # 3 steps x 2 pairs of its own
        assert [r["id"] for r in itertools.islice(skipped, 10)] == ids[6:16]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == everything


def test_the_stream_is_only_matching_pairs_of_the_views_asked_for(hub):
    from gleamx.retrieval.stream import positive_pairs

    from gleamx.data import load_samples

    ds = load_samples(hub["data"], split="train").dataset
    uav = {i for i, label, view in zip(ds["id"], ds["label"], ds["query_view"]) if label and view == "uav"}
    rows = list(positive_pairs(_cfg(hub["shards"], Path("unused"), views=["uav"])))
    assert {r["id"] for r in rows} == uav and len(rows) == len(uav) > 0
    assert set(rows[0]) == {"id", "query_image", "satellite_image"} and rows[0]["query_image"]["bytes"]


@pytest.mark.parametrize(("kw", "match"), [
    ({"max_steps": None}, r"^max_steps: a streamed dataset has no length, so max_steps \(> 0\) says how long to train "
                          r"\(streaming: true\)$"),
    ({"hard_negatives": 2}, r"^hard_negatives: 2: mining similar locations needs the whole gallery"),
    ({"phases": [{"epochs": 1}]}, r"^phases: train in phases from a retrieval layout"),
    ({"view_mix": "equal"}, r"^view_mix: a stream's batches take the pairs as they come"),
    ({"streaming": False}, r"^max_steps: only with streaming: true"),
    ({"max_steps": 0}, r"^max_steps: expected an integer >= 1, got 0$"),
    ({"stream_shuffle_buffer": -1}, r"^stream_shuffle_buffer: expected an integer >= 0, got -1$"),
])
def test_bad_stream_settings_are_one_line(kw, match):
    with pytest.raises(GleamConfigError, match=match):
        _cfg(Path("d"), Path("o"), **kw)


def test_bad_streams_and_resumes_are_one_line(hub, tmp_path, data_small_jsonl):
    from gleamx.data.stream import SHUFFLE_BUFFER
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.train import train_retrieval

    assert RetrievalConfig().stream_shuffle_buffer == SHUFFLE_BUFFER  # the config's default, written out there
    # its one ground pair that matches is in the test split: nothing to train on, said before any work (an endless
    # repeat of nothing would never return)
    with pytest.raises(GleamDataError, match=r"data\.jsonl: label: the stream has no matching pair \(label true\) of "
                                             r"views ground to train on in split 'train'$") as e:
        train_retrieval(_cfg(data_small_jsonl, tmp_path / "a", views=["ground"]))
    assert "\n" not in str(e.value) and not (tmp_path / "a").exists()
    with pytest.raises(GleamDataError, match=r"nowhere"):
        train_retrieval(_cfg(tmp_path / "nowhere", tmp_path / "a"))
    # a checkpoint of an epoch run is not a place in a stream, and the other way round
    ckpt = tmp_path / "epoch-run" / "checkpoint-0"
    ckpt.mkdir(parents=True)
    (ckpt / "retrieval_state.json").write_text(json.dumps({"epoch": 0, "phase": 0, "step": 5}))
    with pytest.raises(GleamConfigError, match=r"^resume_from_checkpoint: .*checkpoint-0 is a checkpoint of a run on a "
                                               r"retrieval layout \(streaming: false\)"):
        train_retrieval(_cfg(hub["shards"], tmp_path / "b", resume_from_checkpoint=str(ckpt)))
    (ckpt / "retrieval_state.json").write_text(json.dumps({"step": 3, "streaming": True, "num_processes": 2,
                                                            "stream_rows_taken": 6}))
    with pytest.raises(GleamConfigError, match=r"checkpoint-0 is a checkpoint of a streamed run"):
        train_retrieval(RetrievalConfig(data=str(hub["data"]), output_dir=str(tmp_path / "c"), encoder="tiny",
                                        img_size=32, batch_size=4, resume_from_checkpoint=str(ckpt)))
    with pytest.raises(GleamConfigError, match=r"checkpoint-0 was written by 2 process\(es\), each at its own place in "
                                               r"its own shards; resume a stream with as many \(not 1\)$"):
        train_retrieval(_cfg(hub["shards"], tmp_path / "d", resume_from_checkpoint=str(ckpt)))
    assert not (tmp_path / "d").exists()  # refused before the output folder is claimed
    with pytest.raises(GleamConfigError, match=r"checkpoint-0 is step 3, beyond this recipe's max_steps 2$"):
        train_retrieval(_cfg(hub["shards"], tmp_path / "e", max_steps=2, save_steps=None,
                             resume_from_checkpoint=str(ckpt)))


@pytest.mark.slow
def test_two_processes_read_their_own_shards_and_resume_with_as_many(hub, tmp_path):
    """accelerate launch, 2 CPU processes (gloo): each reads 2 of the 4 shards, the batch's embeddings are gathered,
    every checkpoint holds each process's place in its stream. Resumed at step 2 with 2 processes: the straight
    run's losses and weights; with 1 process: refused in one line."""
    import os
    import socket
    import subprocess
    import sys

    def launch(out: Path, *extra: str) -> subprocess.CompletedProcess:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                               str(ROOT / "accelerate_configs" / "cpu.yaml"), "--main_process_port", str(port),
                               str(ROOT / "recipes" / "retrieval.py"), "--config",
                               str(ROOT / "recipes" / "retrieval" / "stream_tiny.yaml"), "--data", str(hub["shards"]),
                               "--output_dir", str(out), "--img_size", "32", "--batch_size", "4", "--max_steps", "4",
                               "--save_steps", "2", "--logging_steps", "1", "--stream_shuffle_buffer", "8",
                               "--eval_split", "None", *extra],
                              capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})

    straight = tmp_path / "straight"
    r = launch(straight)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "(4 shard(s), shuffle buffer 8), 4 steps, batch 4 x 2 process(es)" in r.stdout + r.stderr
    state = json.loads((straight / "checkpoint-2" / "retrieval_state.json").read_text())
    assert state == {"step": 2, "streaming": True, "num_processes": 2, "stream_rows_taken": 4}  # 2 steps x 2 pairs
    resumed = tmp_path / "resumed"
    shutil.copytree(straight / "checkpoint-2", resumed / "checkpoint-2")
    r = launch(resumed, "--resume_from_checkpoint", str(resumed / "checkpoint-2"))
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == [1, 2, 3, 4] and sorted(b) == [3, 4]
    assert [b[3], b[4]] == pytest.approx([a[3], a[4]], abs=1e-5)
    end_a, end_b = tensors(straight / "model.safetensors"), tensors(resumed / "model.safetensors")
    assert all(torch.allclose(end_a[k], end_b[k], atol=1e-5) for k in end_a)
    assert_moved(tiny_encoder_at_start(img_size=32, seed=0), end_a, "two processes")
    from gleamx.retrieval.train import train_retrieval

    with pytest.raises(GleamConfigError, match=r"checkpoint-2 was written by 2 process\(es\)"):
        train_retrieval(_cfg(hub["shards"], tmp_path / "one", max_steps=4, save_steps=2, batch_size=4,
                             resume_from_checkpoint=str(straight / "checkpoint-2")))
