"""``gleamx data pairs``: University-1652 and VIGOR trees (tests/test_cvgl.py's fixtures) -> ``gleamx data cvgl`` ->
labelled pairs that validate and train unchanged."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_cvgl import _vigor, university  # noqa: F401  (the fixture trees, with the real folder and file naming)

from gleamx.cli.main import main
from gleamx.errors import GleamConfigError


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def layout(university, tmp_path: Path) -> Path:  # noqa: F811
    out = tmp_path / "u"
    assert main(["data", "cvgl", str(university), "--layout", "university1652", "--out", str(out)]) == 0
    return out


def _pairs(layout: Path, out: Path, *flags: str) -> list[dict]:
    assert main(["data", "pairs", "--retrieval", str(layout), "--out", str(out), *flags]) == 0
    return [r for s in ("train", "val", "test") if (out / f"{s}.jsonl").is_file() for r in _rows(out / f"{s}.jsonl")]


def test_pairs_counts_paths_meta_card_and_validate(layout, tmp_path):
    from gleamx.data import load_samples
    from gleamx.train.sft_data import build_sft_dataset

    out = tmp_path / "pairs"
    rows = _pairs(layout, out)
    pos = [r for r in rows if r["label"]]
    neg = [r for r in rows if not r["label"]]
    assert (len(pos), len(neg)) == (12, 12)  # 9 drone + 3 street queries, 1:1 by default
    assert Counter(r["query_view"] for r in pos) == {"uav": 9, "ground": 3}
    assert Counter(r["meta"]["negative"] for r in neg) == {"hard": 6, "random": 6}
    for r in rows:
        assert "explanation" not in r and r["source"] == "university1652" and r["split"] == "test"
        for key in ("query_image", "satellite_image"):
            assert not Path(r[key]).is_absolute() and (out / r[key]).is_file()
        m = r["meta"]
        assert set(m) == {"location_id", "satellite_location_id", "query_id", "negative", "hard_source",
                          "negative_rank", "source", "layout_split"}
        assert (m["location_id"] == m["satellite_location_id"]) == r["label"]
        assert m["negative_rank"] is None  # no encoder: no rank
    # University-1652 has no regions: its hard negatives come from the split
    assert {r["meta"]["hard_source"] for r in neg if r["meta"]["negative"] == "hard"} == {"split"}
    card = (out / "README.md").read_text()
    assert "| test | 24 | 12 | 12 | 6 | 6 | 18 | 6 |" in card and "| uav | 9 | 9 |" in card
    assert main(["data", "validate", str(out)]) == 0
    sft = build_sft_dataset(load_samples(out).dataset, lang="en", task="label")
    assert sft.n_samples == 24 and len(sft.dataset) == 24


def test_pairs_are_deterministic_for_a_seed(layout, tmp_path):
    _pairs(layout, tmp_path / "a", "--seed", "3")
    _pairs(layout, tmp_path / "b", "--seed", "3")
    _pairs(layout, tmp_path / "c", "--seed", "4")
    for name in ("test.jsonl", "README.md", "pairs_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()
    with pytest.raises(GleamConfigError, match=r"holds a run of `gleamx data pairs` with other settings \(changed: seed\)"):
        from gleamx.curate.pairs import PairsConfig, make_pairs

        make_pairs(PairsConfig(retrieval=str(layout), out=str(tmp_path / "a")))
    _pairs(layout, tmp_path / "a", "--seed", "3")  # the same settings again: a rerun, let in
    _pairs(layout, tmp_path / "a", "--seed", "3", "--overwrite")
    assert (tmp_path / "a" / "test.jsonl").read_bytes() == (tmp_path / "b" / "test.jsonl").read_bytes()


def test_ratio_and_per_view_balance(layout, tmp_path):
    rows = _pairs(layout, tmp_path / "bal", "--balance-views", "--neg-ratio", "2", "--hard-ratio", "0")
    pos = [r for r in rows if r["label"]]
    assert Counter(r["query_view"] for r in pos) == {"uav": 3, "ground": 3}
    assert Counter(r["query_view"] for r in rows if not r["label"]) == {"uav": 6, "ground": 6}
    assert {r["meta"]["negative"] for r in rows if not r["label"]} == {"random"}
    rows = _pairs(layout, tmp_path / "cap", "--max-per-view", "2", "--neg-ratio", "0.5", "--views", "uav")
    assert Counter(r["label"] for r in rows) == {True: 2, False: 1}
    with pytest.raises(GleamConfigError, match="--hard-ratio: expected a number from 0 to 1"):
        from gleamx.curate.pairs import PairsConfig

        PairsConfig(retrieval="x", out="y", hard_ratio=2)
    assert main(["data", "pairs", "--retrieval", "x", "--out", "y", "--split-fractions", "0.5,0.6,0"]) == 2


def test_splits_are_disjoint_by_location(layout, tmp_path):
    rows = _pairs(layout, tmp_path / "s", "--split-fractions", "0.4,0.2,0.4", "--neg-ratio", "3")
    where: dict[str, set[str]] = {}
    for r in rows:
        for loc in (r["meta"]["location_id"], r["meta"]["satellite_location_id"]):
            where.setdefault(loc, set()).add(r["split"])
    assert all(len(s) == 1 for s in where.values()) and len({r["split"] for r in rows}) >= 2
    assert main(["data", "validate", str(tmp_path / "s")]) == 0


def test_a_split_of_zero_gets_no_location(synth_dir, tmp_path):
    """0.5,0.5,0 over an odd number of locations: train and val share them all, and no test file is written (test
    took the location rounding left over)."""
    data = synth_dir(24, seed=2, image_size=32)  # 9 locations
    n_locs = len((data / "retrieval" / "gallery.jsonl").read_text().splitlines())
    assert n_locs % 2 == 1
    rows = _pairs(data, tmp_path / "p", "--split-fractions", "0.5,0.5,0")
    assert {r["split"] for r in rows} == {"train", "val"} and not (tmp_path / "p" / "test.jsonl").exists()
    locs = {s: {r["meta"]["location_id"] for r in rows if r["split"] == s and r["label"]} for s in ("train", "val")}
    assert sorted(map(len, locs.values())) == [n_locs // 2, n_locs // 2 + 1]


def test_vigor_semi_positives_are_never_negatives(tmp_path):
    from gleamx.data.cvgl import convert_vigor

    convert_vigor(_vigor(tmp_path), tmp_path / "v")
    semis = {r["query_id"]: {r["location_id"], *r["semi_positive_ids"]}
             for r in _rows(tmp_path / "v" / "retrieval" / "queries.jsonl")}
    rows = _pairs(tmp_path / "v", tmp_path / "p", "--neg-ratio", "4", "--hard-ratio", "0.5")
    neg = [r for r in rows if not r["label"]]
    assert len(neg) == 32 and rows[0]["source"] == "vigor"
    assert all(r["meta"]["satellite_location_id"] not in semis[r["meta"]["query_id"]] for r in neg)
    # each city's other tiles are all semi-positives here, so no same-region tile is left for a hard negative
    assert {r["meta"]["hard_source"] for r in neg if r["meta"]["negative"] == "hard"} == {"split"}
    assert main(["data", "validate", str(tmp_path / "p")]) == 0


def test_hard_negatives_from_a_tiny_encoder(layout, tmp_path):
    flags = ("--encoder", "tiny", "--img-size", "32", "--hard-ratio", "1", "--neg-ratio", "2")
    rows = _pairs(layout, tmp_path / "e", *flags)
    neg = [r for r in rows if not r["label"]]
    assert len(neg) == 24 and {(r["meta"]["negative"], r["meta"]["hard_source"]) for r in neg} == {("hard", "encoder")}
    by_query: dict[str, list[int]] = {}
    for r in neg:
        by_query.setdefault(r["meta"]["query_id"], []).append(r["meta"]["negative_rank"])
    for ranks in by_query.values():  # the nearest wrong tiles, in order: ranks 1, 2 or 1, 3 or 2, 3
        assert ranks == sorted(ranks) and ranks[0] in (1, 2) and ranks[1] <= 3
    _pairs(layout, tmp_path / "e2", *flags)
    assert (tmp_path / "e" / "test.jsonl").read_bytes() == (tmp_path / "e2" / "test.jsonl").read_bytes()
