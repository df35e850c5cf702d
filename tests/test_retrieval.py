"""Retrieval encoder: the retrieval layout reader, shared encoder, InfoNCE, location-aware batches, training, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamConfigError, GleamDataError, GleamModelError

from training_checks import assert_moved, run_card_snippet, tensors, tiny_encoder_at_start

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(synth_dir):
    """Synthetic data at the toy level (colour decides the location), 32 px: 60 locations."""
    return synth_dir(240, seed=0, image_size=32, difficulty="toy")


def _cfg(data: Path, out: Path, **kw):
    from gleamx.retrieval.config import RetrievalConfig

    base = dict(data=str(data), output_dir=str(out), encoder="tiny", img_size=32, epochs=2, batch_size=8,
                hard_negatives=2, logging_steps=2, seed=0)
    return RetrievalConfig(**{**base, **kw})


# --- data ----------------------------------------------------------------------------------------


def test_load_retrieval_splits_and_positives(toy):
    from gleamx.retrieval.data import load_retrieval

    train, test = load_retrieval(toy, "train"), load_retrieval(toy, "test")
    assert {t.split for t in train.gallery} == {"train"} and {q.split for q in test.queries} == {"test"}
    assert not {t.location_id for t in train.gallery} & {t.location_id for t in test.gallery}
    for q, (p,) in zip(train.queries, train.positives()):
        assert train.gallery[p].location_id == q.location_id
    assert len(train.queries) == 4 * len(train.gallery) and train.views() == ["ground", "panorama", "street_map", "uav"]
    uav = load_retrieval(toy, "test", views=["uav"])
    assert uav.views() == ["uav"] and len(uav.queries) == len(test.gallery)


@pytest.mark.parametrize(("which", "line", "match"), [
    ("queries", "not json", r"queries\.jsonl:2: json: expected one JSON object per line"),
    ("queries", {"query_id": "x", "image": "../images/uav/loc00000.png", "query_view": "drone",
                 "location_id": "loc00000", "split": "train"}, r"queries\.jsonl:2: query_view: expected one of"),
    ("queries", {"query_id": "x", "image": "../images/uav/loc00000.png", "query_view": "uav",
                 "location_id": "nowhere", "split": "train"}, r"location_id: 'nowhere' has no gallery tile"),
    ("gallery", {"location_id": "loc00000", "image": "../images/satellite/missing.png", "split": "train"},
     r"gallery\.jsonl:2: image: file not found"),
    ("queries", {"query_id": "loc00000-uav", "image": "../images/uav/loc00001.png", "query_view": "uav",
                 "location_id": "loc00001", "split": "train"},
     r"queries\.jsonl:2: query_id: duplicate 'loc00000-uav' \(first on line 1; expected one line per query\)"),
])
def test_bad_retrieval_lines_are_one_line_errors(toy, tmp_path, which, line, match):
    import shutil

    from gleamx.retrieval.data import load_retrieval

    data = tmp_path / "d"
    shutil.copytree(toy / "retrieval", data / "retrieval")
    shutil.copytree(toy / "images", data / "images")
    path = data / "retrieval" / f"{which}.jsonl"
    rows = path.read_text().splitlines()
    rows.insert(1, line if isinstance(line, str) else json.dumps(line))
    path.write_text("\n".join(rows) + "\n")
    if which == "gallery":  # the inserted tile would duplicate loc00000; rename the original
        rows[0] = rows[0].replace("loc00000", "loc00000b", 1)
        path.write_text("\n".join(rows) + "\n")
    with pytest.raises(GleamDataError, match=match) as e:
        load_retrieval(data, "train")
    assert "\n" not in str(e.value)
    with pytest.raises(GleamDataError, match="missing"):
        load_retrieval(tmp_path / "nothing", "train")


# --- encoder and loss ------------------------------------------------------------------------------


def test_tiny_encoder_embeds_every_view_and_round_trips(toy, tmp_path):
    from gleamx.data.schema import open_rgb
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import RetrievalEncoder, load_encoder

    rset = load_retrieval(toy, "val")
    enc = RetrievalEncoder.tiny(32).eval()
    tf = enc.transform()
    images = [rset.gallery[0].image] + [q.image for q in rset.queries[:4]]  # satellite + 4 differently shaped views
    x = torch.stack([tf(open_rgb(p)) for p in images])
    assert x.shape == (5, 3, 32, 32)
    with torch.no_grad():
        e = enc(x)
    assert e.shape[0] == 5 and torch.allclose(e.norm(dim=-1), torch.ones(5), atol=1e-5)
    enc.save_pretrained(tmp_path / "enc")
    assert json.loads((tmp_path / "enc" / "config.json").read_text())["backbone"] == "convnext_atto"
    back = load_encoder(str(tmp_path / "enc")).eval()
    with torch.no_grad():
        assert torch.allclose(back(x), e, atol=1e-6)
    with pytest.raises(GleamModelError, match="backbone 'no_such_net'"):
        RetrievalEncoder(backbone="no_such_net")


def test_info_nce_equals_the_formula_and_prefers_aligned_pairs():
    import math

    import torch.nn.functional as F

    from gleamx.retrieval.loss import info_nce

    torch.manual_seed(0)
    q = F.normalize(torch.randn(6, 8), dim=-1)
    s = F.normalize(q + 0.1 * torch.randn(6, 8), dim=-1)
    scale = torch.tensor(math.log(1 / 0.07))
    logits = (1 / 0.07) * q @ s.T
    # label smoothing 0.1 over 6 classes: target 0.9 + 0.1/6 on the diagonal, 0.1/6 elsewhere
    target = torch.full((6, 6), 0.1 / 6) + 0.9 * torch.eye(6)
    by_hand = (-(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.T.log_softmax(1)).sum(1).mean()) / 2
    assert info_nce(q, s, scale, 0.1) == pytest.approx(float(by_hand), rel=1e-5)
    assert info_nce(q, s, scale) < info_nce(q, s[torch.randperm(6)], scale)
    with pytest.raises(ValueError, match="one shape"):
        info_nce(q, s[:5], scale)


# --- batches -------------------------------------------------------------------------------------------


def test_batches_hold_one_pair_per_location_and_pull_in_neighbours():
    from gleamx.retrieval.sampler import LocationBatchSampler

    locs = [f"L{i // 4:02d}" for i in range(160)]  # 40 locations x 4 views
    s = LocationBatchSampler(locs, 8, seed=3)
    epoch0 = list(s)
    flat = [i for b in epoch0 for i in b]
    assert len(flat) == len(set(flat)) and len(flat) >= 160 - 8  # every pair at most once, nearly all used
    assert all(len({locs[i] for i in b}) == len(b) == 8 for b in epoch0)
    assert list(s) == epoch0  # deterministic for (seed, epoch)
    s.set_epoch(1)
    assert list(s) != epoch0
    near = {f"L{k:02d}": [f"L{(k + 1) % 40:02d}", f"L{(k + 2) % 40:02d}"] for k in range(40)}
    s.set_neighbours(near, 2)
    hard = list(s)
    assert all(len({locs[i] for i in b}) == len(b) for b in hard)
    # a batch's first pair is an anchor, and the next two are its most similar locations while they have pairs left
    pulled = [[locs[i] for i in b[1:3]] == near[locs[b[0]]] for b in hard]
    assert sum(pulled) >= 0.5 * len(pulled)
    assert sum([[locs[i] for i in b[1:3]] == near[locs[b[0]]] for b in epoch0]) <= 2  # not by chance
    with pytest.raises(ValueError, match="distinct locations"):
        LocationBatchSampler(locs[:12], 8)


def test_batches_keep_semi_positive_tiles_apart():
    """VIGOR: a tile that also covers a pair's query is never another pair's satellite in its batch."""
    from gleamx.retrieval.sampler import LocationBatchSampler

    locs = [f"L{i:02d}" for i in range(40)]
    semis = [[f"L{(i + 1) % 40:02d}", f"L{(i + 2) % 40:02d}"] for i in range(40)]
    s = LocationBatchSampler(locs, 8, seed=0, pair_semi_positives=semis)
    batches = list(s)
    # a dense ring of conflicts (each tile covers its two neighbours): full batches need spaced-out
    # locations, so the pairs left at the end of an epoch cannot fill one; real VIGOR conflicts are sparse
    assert len(batches) >= 2 and all(len(b) == 8 for b in batches)
    for b in batches:
        here = {locs[i] for i in b}
        assert all(not (set(semis[i]) & here) for i in b)


# --- training ---------------------------------------------------------------------------------------------


def test_train_writes_encoder_log_results_and_resumes_exactly(toy, tmp_path):
    from gleamx.retrieval.encoder import load_encoder
    from gleamx.retrieval.train import train_retrieval

    out = train_retrieval(_cfg(toy, tmp_path / "straight"))
    for f in ("config.json", "model.safetensors", "README.md", "log_history.json", "results.json",
              "retrieval_config.json", "checkpoint-0", "checkpoint-1"):
        assert (out / f).exists(), f
    hist = json.loads((out / "log_history.json").read_text())
    losses = [h["loss"] for h in hist if "loss" in h]
    assert losses[-1] < losses[0]  # InfoNCE falls
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "val" and set(results["by_view"]) == {"ground", "panorama", "street_map", "uav"}
    from huggingface_hub import ModelCard

    from gleamx.hub.push import plan_push

    card = ModelCard.load(out / "README.md")
    metrics = card.data.eval_results
    assert card.data.library_name == "gleamx" and {m.metric_type for m in metrics} >= {"R@1", "mAP"}
    assert next(m for m in metrics if m.metric_type == "R@1").metric_value == round(100 * results["R@1"], 2)
    plan = plan_push(out, "me/gleamc-tiny")  # what `gleamx push --dry-run` would upload: no checkpoints
    assert {"config.json", "model.safetensors", "README.md"} <= set(plan.files)
    assert "RUN = 'me/gleamc-tiny'" in plan.card
    # the card's Use snippet, run as written beside a query image, loads this encoder and embeds it
    query = next((toy / "images").rglob("*.png"))
    assert "torch.Size([1, " in run_card_snippet(out / "README.md", tmp_path, {"query.jpg": query})
    assert not any(f.startswith("checkpoint-") for f in plan.files)
    # R@k with k >= the gallery size is 100% by construction: reported as null, with a note
    testable = [results[f"R@{k}"] for k in (1, 5, 10) if k < results["n_gallery"]]
    assert all(results[f"R@{k}"] is None for k in (1, 5, 10) if k >= results["n_gallery"])
    assert testable and 0.0 <= testable[0] and testable == sorted(testable) and testable[-1] <= 1.0
    assert results["n_gallery"] > 10 or any("not reported (null)" in n for n in results["notes"])

    import shutil

    resumed_dir = tmp_path / "resumed"  # epoch 0's checkpoint of the same run, continued in a new dir
    shutil.copytree(out / "checkpoint-0", resumed_dir / "checkpoint-0")
    resumed = train_retrieval(_cfg(toy, resumed_dir, resume_from_checkpoint=str(resumed_dir / "checkpoint-0")))
    a = load_encoder(str(out)).state_dict()
    b = load_encoder(str(resumed)).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # epoch 0 and epoch 1 each trained: equal weights are not two runs that stood still after the checkpoint
    epoch0 = tensors(out / "checkpoint-0" / "model.safetensors")
    assert_moved(tiny_encoder_at_start(img_size=32, seed=0), epoch0, "epoch 0")
    assert_moved(epoch0, tensors(resumed / "model.safetensors"), "the resumed epoch 1")
    assert json.loads((resumed / "results.json").read_text())["R@1"] == pytest.approx(results["R@1"])
    # resuming from a checkpoint that is not the newest, in the run's own dir, overwrites the later one
    again = train_retrieval(_cfg(toy, out, resume_from_checkpoint=str(out / "checkpoint-0")))
    c = load_encoder(str(again)).state_dict()
    assert all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-0", "checkpoint-1"]
    # run identity: a finished run retrained with another seed, or resumed with another learning rate, or another
    # run's checkpoint resumed with changed settings, is refused before any work, naming what changed
    from gleamx.errors import GleamConfigError

    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(GleamConfigError, match=r"^output_dir: .* holds a run of `gleamx retrieval train` with other settings "
                                               r"\(changed: seed\); .*overwrite_output_dir: true"):
        train_retrieval(_cfg(toy, out, seed=1))
    with pytest.raises(GleamConfigError, match=r"other settings \(changed: learning_rate\)"):
        train_retrieval(_cfg(toy, out, learning_rate=1e-2, resume_from_checkpoint=str(out / "checkpoint-0")))
    with pytest.raises(GleamConfigError, match=r"^resume_from_checkpoint: .*checkpoint-0 is a checkpoint of another "
                                               r"run \(changed: img_size\)"):
        train_retrieval(_cfg(toy, tmp_path / "other", img_size=48, resume_from_checkpoint=str(out / "checkpoint-0")))
    assert (out / "model.safetensors").read_bytes() == before and not (tmp_path / "other").exists()


def test_push_to_hub_uploads_the_run_without_checkpoints(toy, tmp_path, monkeypatch):
    import gleamx.hub.push as hub_push
    from gleamx.retrieval.train import train_retrieval

    calls = []
    monkeypatch.setattr(hub_push, "push_output_dir", lambda out, repo, private=False: calls.append(
        (hub_push.plan_push(out, repo, private=private), private)))
    train_retrieval(_cfg(toy, tmp_path / "o", epochs=1, push_to_hub=True, hub_model_id="me/gleamc", hub_private_repo=True))
    (plan, private), = calls
    assert plan.repo_id == "me/gleamc" and private
    assert "model.safetensors" in plan.files and not any(f.startswith("checkpoint-") for f in plan.files)
    assert "gleam-c" in plan.card
    with pytest.raises(GleamConfigError, match="hub_model_id"):
        train_retrieval(_cfg(toy, tmp_path / "p", push_to_hub=True))


@pytest.mark.parametrize(("kw", "match"), [
    ({"batch_size": 1}, r"^batch_size: expected an integer >= 2, got 1$"),
    ({"epochs": 0}, r"^epochs: expected an integer >= 1, got 0$"),
    ({"num_workers": -1}, r"^num_workers: expected an integer >= 0, got -1$"),
    ({"save_total_limit": 0}, r"^save_total_limit: expected an integer >= 1, got 0$"),
    ({"views": ["uav", "drone"]}, r"^views: expected one of uav, street_map, panorama, ground, got 'drone'$"),
    ({"mixed_precision": "fp8"}, r"^mixed_precision: expected one of no, bf16, fp16, got 'fp8'$"),
    ({"eval_split": "dev"}, r"^eval_split: expected one of train, val, test \(any case\) or None, got 'dev'$"),
    ({"push_to_hub": True, "hub_model_id": "gleamc"}, r"^hub_model_id: push_to_hub needs user/name, got 'gleamc'$"),
])
def test_config_checks_each_value_when_built(kw, match):
    from gleamx.retrieval.config import RetrievalConfig

    with pytest.raises(GleamConfigError, match=match):
        RetrievalConfig(**kw)
    assert RetrievalConfig(eval_split="Validation", save_total_limit=None).eval_split == "Validation"
    assert RetrievalConfig(eval_split="None").eval_split is None and RetrievalConfig(eval_split="null").eval_split is None


def test_bad_recipe_values_are_one_line(toy, tmp_path):
    from gleamx.retrieval.train import train_retrieval

    with pytest.raises(GleamConfigError, match="distinct locations"):
        train_retrieval(_cfg(toy, tmp_path / "o", batch_size=1000))
    with pytest.raises(GleamConfigError, match="resume_from_checkpoint"):
        train_retrieval(_cfg(toy, tmp_path / "o", resume_from_checkpoint=str(tmp_path)))


# --- command line and recipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes" / "retrieval").glob("*.yaml")), ids=lambda p: p.stem)
def test_retrieval_recipes_parse(recipe):
    from trl import TrlParser

    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.parsing import parse_recipe

    (cfg,) = parse_recipe(TrlParser((RetrievalConfig,)), ["--config", str(recipe)])
    assert cfg.batch_size >= 2 and cfg.encoder


def test_cli_train_and_eval(toy, tmp_path, gleamx_cli):
    out = tmp_path / "cli"
    r = gleamx_cli("retrieval", "train", "--config", ROOT / "recipes" / "retrieval" / "tiny.yaml", "--data", toy,
                   "--output_dir", out, "--epochs", "1", "--img_size", "32", "--batch_size", "8")
    assert r.returncode == 0, r.stderr[-2000:]
    assert_moved(tiny_encoder_at_start(img_size=32, seed=0), tensors(out / "model.safetensors"), "gleamx retrieval train")
    r = gleamx_cli("retrieval", "eval", "--encoder", out, "--data", toy, "--split", "test", "--output", tmp_path / "ev")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "R@1" in r.stdout
    m = json.loads((tmp_path / "ev" / "retrieval_results.json").read_text())
    assert m["split"] == "test" and m["n_query"] == 4 * m["n_gallery"] > 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x\nepoch: 3\n")
    r = gleamx_cli("retrieval", "train", "--config", bad)
    assert r.returncode != 0 and "unknown recipe key(s): 'epoch' (did you mean 'epochs'?)" in r.stderr
    assert "Traceback" not in r.stderr


# --- localize: retrieval candidates verified by the MLLM -----------------------------------------------------


def test_rerank_puts_verified_yes_first_then_p_yes_then_retrieval_order():
    from gleamx.retrieval.localize import rerank

    cands = [
        {"retrieval_rank": 0, "verdict": False, "p_yes": 0.4},
        {"retrieval_rank": 1, "verdict": True, "p_yes": 0.7},
        {"retrieval_rank": 2, "verdict": None, "p_yes": None},  # no verdict: with the "no"s, P(yes) taken as 0.5
        {"retrieval_rank": 3, "verdict": True, "p_yes": 0.9},
        {"retrieval_rank": 4, "verdict": True, "p_yes": 0.9},
    ]
    assert [c["retrieval_rank"] for c in rerank(cands)] == [3, 4, 1, 2, 0]


def test_localize_verifies_top_k_candidates_and_resumes(toy, tmp_path, models_tiny_dir):
    from gleamx.retrieval.encoder import RetrievalEncoder
    from gleamx.retrieval.localize import LocalizeConfig, localize

    enc = tmp_path / "enc"
    RetrievalEncoder.tiny(32).save_pretrained(enc)
    cfg = LocalizeConfig(encoder=str(enc), model=str(models_tiny_dir("qwen2_5_vl")), data=str(toy), split="test",
                         k=3, limit=4, output=str(tmp_path / "loc"), max_new_tokens=4)
    r = localize(cfg).results
    out = tmp_path / "loc"
    cands = [json.loads(line) for line in (out / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 12 and {c["source"] for c in cands} == {"gleamc-candidates"}
    ranked = [json.loads(line) for line in (out / "ranked.jsonl").read_text().splitlines()]
    assert len(ranked) == 4 and all(len(q["candidates"]) == 3 for q in ranked)
    assert all(c["is_match"] == (c["candidate_location"] == q["query_id"].rsplit("-", 1)[0])
               for q in ranked for c in q["candidates"])
    assert r["n_query"] == 4 and r["k"] == 3 and 0 <= r["R@1_retrieval"] <= r["recall_at_k"] <= 1
    assert 0 <= r["R@1_verified"] <= r["recall_at_k"]
    assert (out / "verify" / "report.html").is_file()
    before = (out / "verify" / "predictions.jsonl").read_text()
    assert localize(cfg).results == r  # a rerun generates nothing new and gives the same numbers
    assert (out / "verify" / "predictions.jsonl").read_text() == before


@pytest.mark.slow
def test_two_processes_with_gathered_features_train_like_one(toy, tmp_path):
    """2 CPU processes (gloo), each embedding half of every batch, all-gather the embeddings: the loss
    and the trained weights equal one process on the same global batches (epoch 0). Epoch 1 samples
    hard negatives, computed once and shared, so both processes agree on the batches."""
    import os
    import socket

    from gleamx.retrieval.encoder import load_encoder

    args = ["--config", str(ROOT / "recipes" / "retrieval" / "tiny.yaml"), "--data", str(toy), "--epochs", "3",
            "--img_size", "32", "--batch_size", "8", "--hard_negatives", "2", "--hard_negatives_from_epoch", "2",
            "--logging_steps", "1", "--eval_split", "val", "--save_total_limit", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one"
    r = subprocess.run([sys.executable, str(ROOT / "recipes" / "retrieval.py"), *args, "--output_dir", str(one)],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = tmp_path / "two"
    r = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                        str(ROOT / "accelerate_configs" / "cpu.yaml"), "--main_process_port", str(port),
                        str(ROOT / "recipes" / "retrieval.py"), *args, "--output_dir", str(two)],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "x 2 process(es)" in r.stdout + r.stderr
    from safetensors.torch import load_file

    la, lb = ([h["loss"] for h in json.loads((d / "log_history.json").read_text()) if "loss" in h and h["epoch"] < 2]
              for d in (one, two))
    assert len(la) == len(lb) > 20  # epochs 0 and 1: epoch 1 reshuffles the same way on both (set_epoch reaches
    assert la == pytest.approx(lb, abs=1e-5)  # the sampler through accelerate's shard)
    a, b = (load_file(d / "checkpoint-1" / "model.safetensors") for d in (one, two))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    start = tiny_encoder_at_start(img_size=32, seed=0)
    assert_moved(start, a, "one process") and assert_moved(start, b, "two processes")
    # epoch 2 sampled hard negatives (rank 0 mines them, all ranks use them); old checkpoints were pruned
    assert sorted(p.name for p in two.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert load_encoder(str(two)) is not None



def test_hit_rate_counts_semi_positives_exactly():
    from gleamx.retrieval.data import GalleryTile, Query, RetrievalSet
    from gleamx.retrieval.evaluate import scan_ranks

    tiles = [GalleryTile(f"T{i}", Path(f"t{i}.png"), "test") for i in range(4)]
    queries = [Query("q0", Path("q0.png"), "panorama", "T0", "test", ("T1",)),   # top-1 is its semi-positive
               Query("q1", Path("q1.png"), "panorama", "T2", "test", ("T3",)),   # top-1 is a stranger (T0)
               Query("q2", Path("q2.png"), "panorama", "T3", "test", ())]        # top-1 is its positive
    rset = RetrievalSet(tiles, queries, "test")
    g = torch.eye(4)
    q = torch.tensor([[0.1, 0.9, 0.0, 0.0], [0.9, 0.0, 0.1, 0.1], [0.0, 0.0, 0.0, 1.0]])
    ranks, hits = scan_ranks(q, g, rset)
    assert hits == [True, False, True]
    assert [int(r[0]) for r in ranks] == [1, 2, 0]  # the positives' ranks come from the same pass


def test_localize_r_at_1_retrieval_is_the_encoders_own_top_1(toy, tmp_path, models_tiny_dir):
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import RetrievalEncoder, load_encoder
    from gleamx.retrieval.evaluate import propose_candidates
    from gleamx.retrieval.localize import LocalizeConfig, localize

    enc = tmp_path / "enc"
    RetrievalEncoder.tiny(32).save_pretrained(enc)
    r = localize(LocalizeConfig(encoder=str(enc), model=str(models_tiny_dir("qwen2_5_vl")), data=str(toy),
                                split="test", k=2, output=str(tmp_path / "loc"), max_new_tokens=2)).results
    rset = load_retrieval(toy, "test")
    cands = propose_candidates(load_encoder(str(enc)), rset, 2)
    top1 = sum(rset.gallery[c.gallery_indices[0]].location_id == c.query.location_id for c in cands) / len(cands)
    within = sum(any(rset.gallery[i].location_id == c.query.location_id for i in c.gallery_indices)
                 for c in cands) / len(cands)
    assert r["R@1_retrieval"] == pytest.approx(top1) and r["recall_at_k"] == pytest.approx(within)


def test_encoder_loading_refuses_foreign_folders_and_builds_from_names(tmp_path, models_tiny_dir):
    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.encoder import RetrievalEncoder, load_encoder
    from gleamx.retrieval.train import build_encoder

    with pytest.raises(GleamModelError, match="not a retrieval encoder"):
        load_encoder(str(models_tiny_dir("qwen2_5_vl")))  # an MLLM folder, passed by mistake
    RetrievalEncoder.tiny(32).save_pretrained(tmp_path / "enc")
    again = build_encoder(RetrievalConfig(encoder=str(tmp_path / "enc")))
    assert again.backbone_name == "convnext_atto" and again.img_size == 32
    fresh = build_encoder(RetrievalConfig(encoder="convnext_atto", pretrained=False, img_size=32))
    assert fresh.backbone_name == "convnext_atto"


def test_unknown_split_values_and_corrupt_images_are_one_line(toy, tmp_path):
    import shutil

    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import RetrievalEncoder
    from gleamx.retrieval.evaluate import evaluate_retrieval

    data = tmp_path / "d"
    shutil.copytree(toy / "retrieval", data / "retrieval")
    shutil.copytree(toy / "images", data / "images")
    q = data / "retrieval" / "queries.jsonl"
    rows = q.read_text().splitlines()
    q.write_text("\n".join([rows[0].replace('"split": "train"', '"split": "Train"')] + rows[1:]) + "\n")
    assert load_retrieval(data, "train").queries[0].split == "train"  # split names are read case-insensitively
    q.write_text("\n".join([rows[0].replace('"split": "train"', '"split": "training"')] + rows[1:]) + "\n")
    with pytest.raises(GleamDataError, match=r"queries\.jsonl:1: split: expected one of train, val, test \(any case\), "
                                             r"got 'training'"):
        load_retrieval(data, "test")
    q.write_text("\n".join(rows) + "\n")
    rset = load_retrieval(data, "test")
    rset.gallery[0].image.write_bytes(b"not a png")
    with pytest.raises(GleamDataError, match="image: cannot decode"):
        evaluate_retrieval(RetrievalEncoder.tiny(32), rset)
    with pytest.raises(GleamDataError, match="views: expected some of"):
        load_retrieval(data, "test", views=["drone"])


def test_localize_summary_says_when_k_covers_the_gallery(tmp_path):
    """recall_at_k is null when k takes every tile: the line says so instead of printing '-%'."""
    from gleamx.retrieval.localize import LocalizeResult

    base = {"n_query": 2, "k": 2, "n_gallery": 2, "R@1_retrieval": 0.5, "R@1_verified": 1.0}
    covered = LocalizeResult({**base, "recall_at_k": None}, tmp_path).summary_lines()[0]
    assert "every query's candidates hold every tile" in covered and "-%" not in covered
    some = LocalizeResult({**base, "n_gallery": 9, "recall_at_k": 0.5}, tmp_path).summary_lines()[0]
    assert "the right tile is among the candidates for 50.0%; R@1 50.0% by retrieval, 100.0% after" in some
