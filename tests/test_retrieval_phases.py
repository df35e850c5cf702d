"""Retrieval encoder in phases: the recipe's phase plan, view-balanced batches, a two-phase run and its resumes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from gleamx.errors import GleamConfigError

ROOT = Path(__file__).resolve().parents[1]
VIEWS4 = ["uav", "street_map", "panorama", "ground"]

from test_recipes import retrieval_data  # noqa: E402, F401  (900 toy pairs, 180 training locations)
from test_retrieval import toy  # noqa: E402, F401  (synthetic toy level, 32 px: 60 locations, all four views)


def _cfg(data: Path, out: Path, **kw):
    from gleamx.retrieval.config import RetrievalConfig

    phases = [{"name": "uav", "views": ["uav"], "epochs": 1, "learning_rate": 1e-3, "batch_size": 8},
              {"name": "mixed", "views": VIEWS4, "view_mix": "equal", "epochs": 2, "learning_rate": 5e-4,
               "batch_size": 8, "hard_negatives": 2}]
    base = dict(data=str(data), output_dir=str(out), encoder="tiny", img_size=32, logging_steps=4, seed=0,
                phases=phases, save_total_limit=None)
    return RetrievalConfig(**{**base, **kw})


# --- the plan -------------------------------------------------------------------------------------------


def test_two_phase_recipes_parse_into_a_plan():
    from trl import TrlParser

    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.parsing import parse_recipe

    for name in ("two_phase_tiny", "two_phase_convnext_base"):
        path = ROOT / "recipes" / "retrieval" / f"{name}.yaml"
        (cfg,) = parse_recipe(TrlParser((RetrievalConfig,)), ["--config", str(path)])
        one, two = cfg.phase_plan()
        assert one.views == ["uav"] and one.view_mix is None
        assert two.views == VIEWS4 and two.view_mix == "equal" and two.learning_rate < one.learning_rate
    # a phase's keys override the top-level ones; on the command line the phases are JSON
    (cfg,) = parse_recipe(TrlParser((RetrievalConfig,)), [
        "--config", str(ROOT / "recipes" / "retrieval" / "two_phase_tiny.yaml"),
        "--phases", '[{"views": ["uav"], "epochs": 1}, {"view_mix": "uav=3,ground=1", "batch_size": 16}]'])
    one, two = cfg.phase_plan()
    assert (one.epochs, one.batch_size, two.batch_size) == (1, cfg.batch_size, 16)
    assert two.view_mix == {"uav": 3.0, "ground": 1.0} and two.views is None
    # single-phase recipes: one phase of the top-level settings, as before
    (single,) = parse_recipe(TrlParser((RetrievalConfig,)), ["--config", str(ROOT / "recipes" / "retrieval" / "tiny.yaml")])
    (only,) = single.phase_plan()
    assert (only.epochs, only.batch_size, only.view_mix, only.name) == (single.epochs, single.batch_size, None, "train")


@pytest.mark.parametrize(("kw", "match"), [
    ({"phases": [{"epochs": 1, "lr": 1e-3}]}, r"^phases\[0\]: unknown key 'lr'.*expected any of name, views"),
    ({"phases": [{"epochs": 1}, {"epochs": 0}]}, r"^phases\[1\]\.epochs: expected an integer >= 1, got 0$"),
    ({"phases": [{"views": ["drone"]}]}, r"^phases\[0\]\.views: expected one of uav, street_map, panorama, ground"),
    ({"phases": [{"views": ["uav"], "view_mix": {"ground": 1}}]}, r"^phases\[0\]\.view_mix: view 'ground' is not "),
    ({"phases": []}, r"^phases: expected a non-empty list of mappings"),
    ({"phases": "[{epochs: 1"}, r"^phases: not valid JSON/YAML"),
    ({"view_mix": "uav:2"}, r"^view_mix: expected natural, equal or view=weight"),
    ({"view_mix": {"uav": 0}}, r"^view_mix: every weight is 0$"),
    ({"view_mix": {"uav": -1}}, r"^view_mix\.uav: expected a weight >= 0, got -1$"),
])
def test_bad_phase_settings_are_one_line(kw, match):
    from gleamx.retrieval.config import RetrievalConfig

    with pytest.raises(GleamConfigError, match=match):
        RetrievalConfig(**kw)


# --- view-balanced batches ----------------------------------------------------------------------------------


def _uneven(n_locs: int = 40) -> tuple[list[str], list[str]]:
    """Every location has a UAV view; half have street maps and panoramas, three quarters ground photos."""
    locs, views = [], []
    for i in range(n_locs):
        for v in VIEWS4:
            if v == "uav" or i < n_locs // 2 or (v == "ground" and i < 3 * n_locs // 4):
                locs.append(f"L{i:02d}")
                views.append(v)
    return locs, views


@pytest.mark.parametrize("mix", [dict.fromkeys(VIEWS4, 1.0), {"uav": 3.0, "street_map": 1.0, "ground": 1.0}])
def test_balanced_batches_hold_the_view_mix_and_one_pair_per_location(mix):
    from gleamx.retrieval.sampler import LocationBatchSampler

    locs, views = _uneven()
    assert Counter(views) == {"uav": 40, "ground": 30, "street_map": 20, "panorama": 20}  # natural mix: uneven
    s = LocationBatchSampler(locs, 8, seed=1, pair_views=views, view_mix=mix)
    near = {f"L{k:02d}": [f"L{(k + 1) % 40:02d}", f"L{(k + 2) % 40:02d}"] for k in range(40)}
    for epoch, neighbours in ((0, None), (1, near)):  # random batches, then with hard negatives pulled in
        s.set_epoch(epoch)
        if neighbours:
            s.set_neighbours(neighbours, 2)
        batches = list(s)
        assert len(batches) == sum(views.count(v) for v in mix) // 8  # an epoch keeps the natural number of batches
        assert all(len(b) == 8 and len({locs[i] for i in b}) == 8 for b in batches)  # one pair per location
        total = sum(mix.values())
        counts = Counter(views[i] for b in batches for i in b)
        n = sum(counts.values())
        for v, w in mix.items():
            assert abs(counts[v] / n - w / total) <= 0.02, (v, counts)  # shares over the epoch
        for b in batches:  # and in every batch: within one of the share
            per = Counter(views[i] for i in b)
            assert all(abs(per[v] - 8 * w / total) < 1 for v, w in mix.items()), per
        assert not set(counts) - set(mix)
    if neighbours:
        # the neighbours still join their anchor's batch when their view has room
        assert sum(any(locs[j] in near[locs[b[0]]] for j in b[1:]) for b in batches) >= len(batches) // 2


def test_balanced_batches_keep_semi_positives_apart_and_refuse_bad_mixes():
    from gleamx.retrieval.sampler import LocationBatchSampler

    locs, views = _uneven()
    # VIGOR-like: each pair's query is also covered by the next location's tile
    semis = [[f"L{(int(loc[1:]) + 1) % 40:02d}"] for loc in locs]
    s = LocationBatchSampler(locs, 8, seed=0, pair_semi_positives=semis, pair_views=views,
                             view_mix=dict.fromkeys(VIEWS4, 1.0))
    batches = list(s)
    assert len(batches) >= 0.8 * (len(locs) // 8)
    for b in batches:
        here = {locs[i] for i in b}
        assert len(here) == len(b) and all(not (set(semis[i]) & here) for i in b)
        assert Counter(views[i] for i in b) == dict.fromkeys(VIEWS4, 2)
    with pytest.raises(ValueError, match=r"view_mix: no training pairs of view\(s\) panorama"):
        LocationBatchSampler(["a", "b"], 2, pair_views=["uav", "uav"], view_mix={"panorama": 1})
    with pytest.raises(ValueError, match="distinct locations of the mixed views"):
        LocationBatchSampler(["a", "b", "c", "a"], 3, pair_views=["uav", "uav", "ground", "ground"],
                             view_mix={"ground": 1})


# --- training in phases -------------------------------------------------------------------------------------------


class _Killed(Exception):
    pass


def _kill_at(monkeypatch, epoch: int) -> None:
    """The run dies as epoch ``epoch`` starts (after the last checkpoint, before any new one)."""
    import gleamx.retrieval.train as train_mod

    real = train_mod.train_one_epoch

    def dying(run, e):
        if e == epoch:
            raise _Killed
        return real(run, e)

    monkeypatch.setattr(train_mod, "train_one_epoch", dying)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from gleamx.retrieval.encoder import load_encoder

    return load_encoder(str(path), device="cpu").state_dict()


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.slow
def test_two_phase_run_continues_from_phase_one_and_resumes_across_the_boundary(toy, tmp_path, monkeypatch):
    from huggingface_hub import ModelCard
    from safetensors.torch import load_file

    from gleamx.retrieval.train import setup_run, train_retrieval

    straight = train_retrieval(_cfg(toy, tmp_path / "straight"))
    for f in ("phase-1/model.safetensors", "phase-2/model.safetensors", "model.safetensors", "results.json",
              "checkpoint-0", "checkpoint-2", "README.md"):
        assert (straight / f).exists(), f
    final = _weights(straight)
    phase1 = _weights(straight / "phase-1")
    assert _same(_weights(straight / "phase-2"), final) and not _same(phase1, final)
    # phase 1 ends where epoch 0's checkpoint ends; phase 2 starts from it
    ckpt0 = load_file(str(straight / "checkpoint-0" / "model.safetensors"))
    assert _same(phase1, {k: v for k, v in ckpt0.items()})
    hist = json.loads((straight / "log_history.json").read_text())
    evals = [h for h in hist if "eval" in h]
    assert [(h["epoch"], h["phase"]) for h in evals] == [(0, "uav"), (1, "mixed"), (2, "mixed")]
    steps = [h["step"] for h in hist]
    assert steps == sorted(steps)  # optimizer steps count on across the phases
    # the card records both phases, with their optimizer steps
    card = ModelCard.load(straight / "README.md").text
    assert "## Training phases" in card
    n_uav = 6  # 48 training locations, one UAV view each, batch 8
    assert f"| 1 | uav | uav | natural | 1 | 0.001 | 8 | {n_uav} |" in card
    mixed = setup_run(_cfg(toy, tmp_path / "probe"), phase_index=1)
    assert mixed.sampler.view_share == dict.fromkeys(sorted(VIEWS4), 0.25)
    n_mixed = 2 * len(mixed.sampler)
    assert f"| 2 | mixed | uav, street_map, panorama, ground | equal | 2 | 0.0005 | 8 | {n_mixed} |" in card

    # killed right after phase 1 (checkpoint-0 written, phase 2 not started): the resume starts phase 2
    boundary = tmp_path / "boundary"
    _kill_at(monkeypatch, 1)
    with pytest.raises(_Killed):
        train_retrieval(_cfg(toy, boundary))
    assert (boundary / "checkpoint-0").is_dir() and not (boundary / "checkpoint-1").exists()
    monkeypatch.undo()
    import shutil

    shutil.rmtree(boundary / "phase-1")  # as if killed before phase-1/ was written: the resume writes it
    train_retrieval(_cfg(toy, boundary, resume_from_checkpoint=str(boundary / "checkpoint-0")))
    assert _same(_weights(boundary), final) and _same(_weights(boundary / "phase-1"), phase1)
    assert json.loads((boundary / "log_history.json").read_text()) == hist

    # killed in phase 2 (after its first epoch): the resume restores phase 2's optimizer and schedule
    inside = tmp_path / "inside"
    _kill_at(monkeypatch, 2)
    with pytest.raises(_Killed):
        train_retrieval(_cfg(toy, inside))
    monkeypatch.undo()
    assert json.loads((inside / "checkpoint-1" / "retrieval_state.json").read_text())["phase"] == 1
    train_retrieval(_cfg(toy, inside, resume_from_checkpoint=str(inside / "checkpoint-1")))
    assert _same(_weights(inside), final)
    assert json.loads((inside / "log_history.json").read_text()) == hist
    assert (json.loads((inside / "results.json").read_text())["R@1"]
            == pytest.approx(json.loads((straight / "results.json").read_text())["R@1"]))


def test_resuming_with_changed_phases_is_one_line(toy, tmp_path):
    from gleamx.retrieval.train import train_retrieval

    out = tmp_path / "o"
    ck = out / "checkpoint-4"
    ck.mkdir(parents=True)
    (ck / "retrieval_state.json").write_text(json.dumps({"epoch": 4, "phase": 1, "step": 40}))
    with pytest.raises(GleamConfigError, match=r"^resume_from_checkpoint: .* beyond this recipe's 3 epochs$"):
        train_retrieval(_cfg(toy, out, resume_from_checkpoint=str(ck)))
    (ck / "retrieval_state.json").write_text(json.dumps({"epoch": 0, "phase": 1, "step": 6}))
    with pytest.raises(GleamConfigError, match=r"written in phase 2, but epoch 0 is in phase 1 of"):
        train_retrieval(_cfg(toy, out, resume_from_checkpoint=str(ck)))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["two_phase_tiny", "two_phase_convnext_base"])
def test_two_phase_recipes_run_as_shipped_one_epoch_per_phase(recipe, retrieval_data, tmp_path):
    """Each phase as shipped (views, mix, batch, optimiser, precision) for one epoch; the backbone becomes the
    tiny random ConvNeXt at 32 px, as in tests/test_recipes.py. ``--phases`` is the way to shorten phases
    from the command line, so the shipped list goes back in with ``epochs: 1``."""
    import yaml
    from accelerate.state import AcceleratorState
    from trl import TrlParser

    from gleamx.retrieval.config import RetrievalConfig
    from gleamx.retrieval.train import train_retrieval
    from gleamx.parsing import parse_recipe

    data = retrieval_data  # 180 training locations: the ConvNeXt-B recipe's global batch of 128 fits
    path = ROOT / "recipes" / "retrieval" / f"{recipe}.yaml"
    shipped = yaml.safe_load(path.read_text())["phases"]
    (cfg,) = parse_recipe(TrlParser((RetrievalConfig,)), [
        "--config", str(path), "--data", str(data), "--output_dir", str(tmp_path / "out"), "--encoder", "tiny",
        "--img_size", "32", "--num_workers", "0", "--phases", json.dumps([{**p, "epochs": 1} for p in shipped])])
    AcceleratorState._reset_state(reset_partial_state=True)  # one process, several runs with other precisions
    try:
        out = Path(train_retrieval(cfg))
    finally:  # the next test's runs are in full precision
        AcceleratorState._reset_state(reset_partial_state=True)
    assert (out / "phase-1" / "model.safetensors").is_file() and (out / "model.safetensors").is_file()
    evals = [h for h in json.loads((out / "log_history.json").read_text()) if "eval" in h]
    assert [h["phase"] for h in evals] == [p["name"] for p in shipped]
    assert set(evals[-1]["eval"]["by_view"]) == set(VIEWS4)
