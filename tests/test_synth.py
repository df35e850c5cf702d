"""The procedural synthetic dataset: determinism, splits, balance, explanations, hard negatives, files, card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gleamx.data.schema import VIEWS
from gleamx.synth import compare, generate_scene, perturb_scene, render_view, synthesize
from gleamx.synth.render import ID_BUILDING
from gleamx.errors import GleamConfigError
from gleamx.task.verdict import parse_verdict, verdict_line

SIZE = 64  # small images keep the module fast; sizes scale with it


def _tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path) -> list[dict]:
    return [json.loads(line) for s in ("train", "val", "test") for line in (root / f"{s}.jsonl").open(encoding="utf-8")]


@pytest.fixture(scope="module")
def synth_small(tmp_path_factory: pytest.TempPathFactory):
    """A 48-pair dataset (medium difficulty, 64 px) and its summary, built once for the module."""
    out = tmp_path_factory.mktemp("synth_small")
    calls: list[tuple[int, int]] = []
    summary = synthesize(out, 48, seed=7, image_size=SIZE, progress=lambda i, n: calls.append((i, n)))
    return out, summary, calls


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a = synthesize(tmp_path / "a", 24, seed=1, image_size=SIZE).out_dir
    b = synthesize(tmp_path / "b", 24, seed=1, image_size=SIZE).out_dir
    c = synthesize(tmp_path / "c", 24, seed=2, image_size=SIZE).out_dir
    ha, hb, hc = _tree_hash(a), _tree_hash(b), _tree_hash(c)
    assert ha == hb
    assert any(k.endswith(".png") for k in ha)
    assert ha["train.jsonl"] != hc["train.jsonl"]
    assert ha["images/satellite/loc00000.png"] != hc["images/satellite/loc00000.png"]


def test_splits_use_disjoint_locations(synth_small) -> None:
    out, summary, _ = synth_small
    by_split: dict[str, set[str]] = {}
    for r in _rows(out):
        for key in ("location_id", "satellite_location_id"):
            by_split.setdefault(r["split"], set()).add(r["meta"][key])
    assert set(by_split) == {"train", "val", "test"}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    assert summary.by_split == {"train": 38, "val": 5, "test": 5}


def test_labels_balanced_views_present_ids_unique(synth_small) -> None:
    out, summary, _ = synth_small
    rows = _rows(out)
    assert len(rows) == summary.n_samples == 48
    assert abs(sum(r["label"] for r in rows) - 24) <= 1
    views = Counter(r["query_view"] for r in rows)
    assert set(views) == set(VIEWS)
    assert max(views.values()) - min(views.values()) <= 3  # each split balances its own views to within one
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids) and all(i.startswith("synth-s7-") for i in ids)
    assert {r["source"] for r in rows} == {"gleamx-synth"}


def test_every_explanation_is_bilingual_and_ends_in_its_verdict(synth_small) -> None:
    out, _, _ = synth_small
    for r in _rows(out):
        assert set(r["explanation"]) == {"en", "zh"}
        for lang, text in r["explanation"].items():
            assert text.splitlines()[-1] == verdict_line(r["label"], lang)
            assert parse_verdict(text) is r["label"]
            assert len(text.splitlines()) == 4
        assert any("\u4e00" <= ch <= "\u9fff" for ch in r["explanation"]["zh"])
        assert r["explanation"]["en"].isascii() or "°" in r["explanation"]["en"]


def test_negatives_name_differences_and_hard_ones_exist(synth_small) -> None:
    out, summary, _ = synth_small
    rows = _rows(out)
    negs = [r for r in rows if not r["label"]]
    assert all(r["meta"]["negative"] in ("hard", "random") and r["meta"]["differences"] for r in negs)
    assert all(r["meta"]["negative"] is None and r["meta"]["location_id"] == r["meta"]["satellite_location_id"]
               for r in rows if r["label"])
    hard = [r for r in negs if r["meta"]["negative"] == "hard"]
    assert hard and summary.by_negative["hard"] == len(hard)
    assert all(r["meta"]["satellite_location_id"] != r["meta"]["location_id"] for r in hard)
    facts = {json.loads(line)["location_id"]: json.loads(line)
             for line in (out / "scenes" / "locations.jsonl").open(encoding="utf-8")}
    twins = [r for r in hard if r["meta"]["hard_source"] == "twin"]
    assert twins, "medium difficulty should pair some queries with their perturbed twin"
    for r in twins:
        q, s = facts[r["meta"]["location_id"]], facts[r["meta"]["satellite_location_id"]]
        assert q["split"] == s["split"] and (q["twin_of"] == s["location_id"] or s["twin_of"] == q["location_id"])
        assert q["junction"] == s["junction"]  # a twin keeps the road layout


def test_image_sizes_follow_image_size(synth_small) -> None:
    out, summary, _ = synth_small
    expected = {"satellite": (SIZE, SIZE), "uav": (SIZE, SIZE), "street_map": (SIZE, SIZE),
                "panorama": (2 * SIZE, SIZE // 2), "ground": (SIZE, SIZE * 3 // 4)}
    for view, size in expected.items():
        files = sorted((out / "images" / view).glob("*.png"))
        assert len(files) == summary.n_locations
        for f in files[:3]:
            with Image.open(f) as im:
                assert im.size == size and im.mode == "RGB"


def test_samples_and_retrieval_files_reference_existing_images(synth_small) -> None:
    out, summary, _ = synth_small
    for r in _rows(out):
        assert (out / r["query_image"]).is_file() and (out / r["satellite_image"]).is_file()
        assert r["query_image"] == f"images/{r['query_view']}/{r['meta']['location_id']}.png"
    base = out / "retrieval"
    gallery = [json.loads(line) for line in (base / "gallery.jsonl").open(encoding="utf-8")]
    queries = [json.loads(line) for line in (base / "queries.jsonl").open(encoding="utf-8")]
    assert len(gallery) == summary.n_locations and len(queries) == summary.n_locations * len(VIEWS)
    split_of = {g["location_id"]: g["split"] for g in gallery}
    for row in gallery + queries:
        assert (base / row["image"]).is_file()
        assert split_of[row["location_id"]] == row["split"]
    assert {q["query_view"] for q in queries} == set(VIEWS)


def test_card_config_and_progress(synth_small) -> None:
    out, summary, calls = synth_small
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(out / "README.md")
    assert card.data.license and set(card.data.language) == {"en", "zh"}
    files = {d["split"]: d["path"] for d in card.data.configs[0]["data_files"]}
    assert files == {"train": "train.jsonl", "val": "val.jsonl", "test": "test.jsonl"}
    text = (out / "README.md").read_text(encoding="utf-8")
    assert "| train | 38 |" in text and "| **total** | 48 |" in text and "seed" in text
    cfg = json.loads((out / "synth_config.json").read_text(encoding="utf-8"))
    assert cfg["n"] == 48 and cfg["seed"] == 7 and cfg["difficulty"] == "medium"
    assert calls and calls[-1] == (summary.n_locations, summary.n_locations)


def test_positive_compare_is_clean_and_twin_differs() -> None:
    scene = generate_scene("a", np.random.default_rng(3))
    sat = render_view("satellite", scene, SIZE, np.random.default_rng(0)).info
    twin = perturb_scene(scene, "b", np.random.default_rng(4), 1)
    twin_sat = render_view("satellite", twin, SIZE, np.random.default_rng(0)).info
    for view in ("uav", "street_map"):
        info = render_view(view, scene, SIZE, np.random.default_rng(1)).info
        same = compare(scene, info, scene, sat)
        assert same.shared and not same.diffs
        assert compare(scene, info, twin, twin_sat).diffs
    assert twin.roads == scene.roads and twin.junction == scene.junction and twin.changes
    assert any(ID_BUILDING + b.idx in sat.counts for b in scene.buildings)


def test_difficulty_changes_hard_negative_share(tmp_path: Path) -> None:
    easy = synthesize(tmp_path / "e", 40, seed=0, image_size=32, difficulty="easy", views=("uav", "ground"))
    hard = synthesize(tmp_path / "h", 40, seed=0, image_size=32, difficulty="hard", views=("uav", "ground"))
    assert easy.by_view == {"uav": 20, "ground": 20}
    assert hard.by_negative.get("hard", 0) > easy.by_negative.get("hard", 0)


def test_toy_level_washes_views_in_land_cover_and_negatives_differ_in_it(tmp_path: Path) -> None:
    from gleamx.synth.world import LAND_COVERS

    summary = synthesize(tmp_path, 60, seed=0, image_size=32, difficulty="toy")
    rows = _rows(summary.out_dir)
    assert summary.by_negative == {"random": 30}  # no hard negatives or twins at this level
    for r in rows:
        meta = r["meta"]
        q, s = meta["land_cover"], meta["satellite_land_cover"]
        assert q in LAND_COVERS and s in LAND_COVERS
        assert (q == s) == r["label"]  # decidable from the wash alone
        if not r["label"]:
            assert "land_cover" in meta["differences"].split(",")
        # the explanation names the covers, in both languages
        assert q in r["explanation"]["en"] and s in r["explanation"]["en"]
        assert ("底色" in r["explanation"]["zh"])
        for key, cover in (("query_image", q), ("satellite_image", s)):
            mean = np.asarray(Image.open(summary.out_dir / r[key]).convert("RGB"), np.float32).mean(axis=(0, 1))
            # 70% of every pixel is the cover colour: the mean sits within 30% of 255 of it
            assert np.abs(mean - np.asarray(LAND_COVERS[cover])).max() < 0.3 * 255, (r["id"], key, mean, cover)
    assert len({r["meta"]["land_cover"] for r in rows}) >= 4
    # other levels carry no land cover
    easy = _rows(synthesize(tmp_path / "e", 8, seed=0, image_size=32, difficulty="easy").out_dir)
    assert all(r["meta"]["land_cover"] is None for r in easy)


def test_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthesize(tmp_path, 8, seed=0, image_size=32)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("kwargs", [
    {"n": 0}, {"difficulty": "extreme"}, {"views": ("uav", "drone")}, {"views": ()}, {"image_size": 30},
    {"split_fractions": (0.5, 0.5, 0.5)}, {"neg_ratio": 1.5}, {"hard_negative_ratio": -0.1}, {"seed": -1},
])
def test_bad_arguments_raise_config_error(tmp_path: Path, kwargs: dict) -> None:
    args = {"n": 8, **kwargs}
    with pytest.raises(GleamConfigError):
        synthesize(tmp_path, **args)


@pytest.mark.slow
def test_rate_and_load_dataset(tmp_path: Path) -> None:
    import datasets

    summary = synthesize(tmp_path / "d", 400, seed=0)
    ds = datasets.load_dataset(str(summary.out_dir), cache_dir=str(tmp_path / "cache"))
    assert {s: len(ds[s]) for s in ds} == summary.by_split


def test_phrase_tables_name_every_kind_in_both_languages():
    from gleamx.synth import phrases, world

    for table, kinds in [(phrases.JUNCTION_NAMES, world.JUNCTIONS), (phrases.COMPASS_NAMES, world.COMPASS),
                         (phrases.COLOUR_NAMES, world.COLOURS), (phrases.LAND_COVER_NAMES, world.LAND_COVERS),
                         (phrases.VIEW_NAMES, VIEWS), (phrases.WATER_NAMES, ("river", "pond")),
                         (phrases.BUILDING_NAMES, ["stadium", "tower", "round_tall", "round_low", "tall", "low",
                                                   *(s for s in world.SHAPES if s != "round")])]:
        assert set(table) == set(kinds)
        assert all(set(names) == {"en", "zh"} and all(names.values()) for names in table.values())

