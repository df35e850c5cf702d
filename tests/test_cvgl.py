"""University-1652 and CVUSA trees (built here, with the real folder layouts) -> the GLEAM-C retrieval layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from gleamx.errors import GleamDataError


def _img(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path)


@pytest.fixture()
def university(tmp_path: Path) -> Path:
    """3 test locations with drone and street queries, plus 2 distractor tiles; 2 train locations."""
    root = tmp_path / "University-Release"
    for i, loc in enumerate(["0001", "0002", "0003"]):
        _img(root / "test" / "gallery_satellite" / loc / f"{loc}.jpg", (i * 40, 0, 0))
        for k in range(3):
            _img(root / "test" / "query_drone" / loc / f"image-{k:02d}.jpeg", (0, i * 40, k))
        _img(root / "test" / "query_street" / loc / "s1.jpg", (0, 0, i * 40))
    for loc in ["0900", "0901"]:  # distractors: satellite tiles no query matches
        _img(root / "test" / "gallery_satellite" / loc / f"{loc}.jpg", (9, 9, 9))
    for loc in ["0100", "0101"]:
        _img(root / "train" / "satellite" / loc / f"{loc}.jpg", (1, 2, 3))
        _img(root / "train" / "drone" / loc / "image-01.jpeg", (3, 2, 1))
        _img(root / "train" / "street" / loc / "x.jpg", (3, 3, 1))
    return root


def test_university1652_both_protocols_load_as_retrieval_sets(university, tmp_path):
    from gleamx.data.cvgl import convert_university1652
    from gleamx.retrieval.data import load_retrieval

    s = convert_university1652(university, tmp_path / "with")
    assert (s.n_gallery, s.n_queries, s.by_view) == (5, 12, {"uav": 9, "ground": 3})
    rset = load_retrieval(tmp_path / "with", "test")
    assert len(rset.gallery) == 5 and rset.views() == ["ground", "uav"]
    for q, (p,) in zip(rset.queries, rset.positives()):
        assert rset.gallery[p].location_id == q.location_id and q.image.is_file()
    # images stay where they are: paths point into the dataset tree
    line = json.loads((tmp_path / "with" / "retrieval" / "gallery.jsonl").read_text().splitlines()[0])
    assert ".." in line["image"] and "gallery_satellite" in line["image"]
    s = convert_university1652(university, tmp_path / "without", distractors=False)
    assert s.n_gallery == 3  # Sample4Geo's protocol: 701 instead of 951 on the real data
    train = convert_university1652(university, tmp_path / "train", split="train")
    assert (train.n_gallery, train.n_queries) == (2, 4)


def test_university1652_bad_trees_are_one_line(university, tmp_path):
    from gleamx.data.cvgl import convert_university1652

    _img(university / "test" / "gallery_satellite" / "0002" / "extra.jpg", (0, 0, 0))
    with pytest.raises(GleamDataError, match="0002: satellite: expected one satellite image, found 2"):
        convert_university1652(university, tmp_path / "o")
    with pytest.raises(GleamDataError, match="missing directory"):
        convert_university1652(tmp_path / "nowhere", tmp_path / "o")


def test_cvusa_split_files(tmp_path):
    from gleamx.data.cvgl import convert_cvusa
    from gleamx.retrieval.data import load_retrieval

    root = tmp_path / "CVUSA"
    rows = []
    for i in range(4):
        _img(root / "bingmap" / "19" / f"{i:07d}.jpg", (i, 0, 0))
        _img(root / "streetview" / "panos" / f"{i:07d}.jpg", (0, i, 0))
        rows.append(f"bingmap/19/{i:07d}.jpg,streetview/panos/{i:07d}.jpg,annotations/{i:07d}.png")
    (root / "splits").mkdir()
    (root / "splits" / "val-19zl.csv").write_text("\n".join(rows) + "\n")
    s = convert_cvusa(root, tmp_path / "out")
    assert (s.n_gallery, s.n_queries, s.by_view) == (4, 4, {"panorama": 4})
    rset = load_retrieval(tmp_path / "out", "test")
    assert [rset.gallery[p].location_id for (p,) in rset.positives()] == [q.location_id for q in rset.queries]
    (root / "splits" / "val-19zl.csv").write_text(rows[0] + "\nbingmap/19/missing.jpg,streetview/panos/0000001.jpg\n")
    with pytest.raises(GleamDataError, match=r"val-19zl\.csv:2: satellite: file not found"):
        convert_cvusa(root, tmp_path / "out2")


def test_cli_cvgl_then_retrieval_eval(university, tmp_path):
    from gleamx.cli.main import main

    assert main(["data", "cvgl", str(university), "--layout", "university1652", "--out", str(tmp_path / "u")]) == 0
    assert main(["retrieval", "eval", "--encoder", "tiny", "--img-size", "32", "--data", str(tmp_path / "u"),
                 "--output", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "retrieval_results.json").read_text())
    assert m["n_gallery"] == 5 and m["n_query"] == 12


def _vigor(tmp_path: Path) -> Path:
    """4 cities x 3 tiles; each panorama's label line names its positive and 3 semi-positives."""
    root = tmp_path / "VIGOR"
    for c, city in enumerate(["NewYork", "Seattle", "SanFrancisco", "Chicago"]):
        sats = [f"satellite_{c}_{i}.png" for i in range(4)]
        for i, name in enumerate(sats):
            _img(root / city / "satellite" / name, (c * 50, i * 50, 0))
        (root / "splits" / city).mkdir(parents=True)
        (root / "splits" / city / "satellite_list.txt").write_text("\n".join(sats) + "\n")
        lines = []
        for k in range(2):
            pano = f"p{c}{k},40.7,-74.0,.jpg"
            _img(root / city / "panorama" / pano, (c * 50, k * 100, 9))
            order = sats[k:] + sats[:k]  # positive first, then three semi-positives
            lines.append(pano + "".join(f" {s} 10.5 -3.2" for s in order))
        for name in ("same_area_balanced_train.txt", "same_area_balanced_test.txt", "pano_label_balanced.txt"):
            (root / "splits" / city / name).write_text("\n".join(lines) + "\n")
    return root


def test_vigor_same_and_cross_area_with_semi_positives_and_hit_rate(tmp_path):
    from gleamx.data.cvgl import convert_vigor
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import GleamCEncoder
    from gleamx.retrieval.evaluate import evaluate_retrieval

    root = _vigor(tmp_path)
    s = convert_vigor(root, tmp_path / "same")
    assert (s.n_gallery, s.n_queries, s.by_view) == (16, 8, {"panorama": 8})
    rset = load_retrieval(tmp_path / "same", "test")
    q = rset.queries[1]  # NewYork's second panorama: positive tile 1, semi-positives 2, 3, 0
    assert q.location_id == "NewYork/satellite_0_1"
    assert q.semi_positives == ("NewYork/satellite_0_2", "NewYork/satellite_0_3", "NewYork/satellite_0_0")
    cross = convert_vigor(root, tmp_path / "cross", same_area=False)
    assert cross.n_gallery == 8 and {json.loads(x)["location_id"].split("/")[0] for x in
                                     (tmp_path / "cross" / "retrieval" / "queries.jsonl").read_text().splitlines()} \
        == {"SanFrancisco", "Chicago"}
    m = evaluate_retrieval(GleamCEncoder.tiny(32).eval(), rset)
    # the hit rate counts semi-positives too, so it is never below R@1
    assert m["hit_rate@1"] >= m["R@1"] and "hit_rate@1" in m["by_view"]["panorama"]
    bad = root / "splits" / "Chicago" / "same_area_balanced_test.txt"
    bad.write_text(bad.read_text().replace("satellite_3_2.png", "nowhere.png", 1))
    with pytest.raises(GleamDataError, match=r"same_area_balanced_test\.txt:1: satellite: 'Chicago/nowhere'"):
        convert_vigor(root, tmp_path / "bad")


def test_hit_rate_is_absent_without_semi_positives(university, tmp_path):
    from gleamx.data.cvgl import convert_university1652
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import GleamCEncoder
    from gleamx.retrieval.evaluate import evaluate_retrieval

    convert_university1652(university, tmp_path / "u")
    assert "hit_rate@1" not in evaluate_retrieval(GleamCEncoder.tiny(32).eval(), load_retrieval(tmp_path / "u", "test"))


def test_one_split_per_out_dir_and_symlinked_out_dirs(university, tmp_path):
    from gleamx.data.cvgl import convert_university1652
    from gleamx.retrieval.data import load_retrieval

    convert_university1652(university, tmp_path / "u")
    with pytest.raises(GleamDataError, match="already holds a retrieval layout"):
        convert_university1652(university, tmp_path / "u", split="train")
    assert convert_university1652(university, tmp_path / "u", split="train", overwrite=True).split == "train"
    (tmp_path / "real" / "outs").mkdir(parents=True)
    (tmp_path / "outs").symlink_to(tmp_path / "real" / "outs")
    convert_university1652(university, tmp_path / "outs" / "u")  # written through a symlinked directory
    rset = load_retrieval(tmp_path / "outs" / "u", "test")
    assert all(t.image.is_file() for t in rset.gallery) and all(q.image.is_file() for q in rset.queries)
