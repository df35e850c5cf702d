"""University-1652 and CVUSA trees (built here, with the real folder layouts) -> the retrieval layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from gleamx.errors import GleamConfigError, GleamDataError


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
    assert (train.n_gallery, train.n_queries) == (2, 4) and train.notes == []


def test_university1652_folders_it_does_not_read_are_named(university, tmp_path, gleamx_cli):
    """The release's train/google/ (web street views) and the test split's drone gallery are not read: said."""
    _img(university / "train" / "google" / "0100" / "g.jpg", (5, 5, 5))
    _img(university / "test" / "gallery_drone" / "0001" / "d.jpeg", (5, 5, 5))
    r = gleamx_cli("data", "cvgl", university, "--layout", "university1652", "--split", "train", "--out",
                   tmp_path / "train")
    assert r.returncode == 0, r.stderr
    assert "note: train/: not read: google (this layout takes drone, satellite, street)" in r.stdout
    from gleamx.data.cvgl import convert_university1652

    s = convert_university1652(university, tmp_path / "uav", views=("uav",))
    assert s.notes == ["test/: not read: gallery_drone, query_street (this layout takes gallery_satellite, "
                       "query_drone)"]


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
    from gleamx.retrieval.encoder import RetrievalEncoder
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
    m = evaluate_retrieval(RetrievalEncoder.tiny(32).eval(), rset)
    # the hit rate counts semi-positives too, so it is never below R@1
    assert m["hit_rate@1"] >= m["R@1"] and "hit_rate@1" in m["by_view"]["panorama"]
    bad = root / "splits" / "Chicago" / "same_area_balanced_test.txt"
    bad.write_text(bad.read_text().replace("satellite_3_2.png", "nowhere.png", 1))
    with pytest.raises(GleamDataError, match=r"same_area_balanced_test\.txt:1: satellite: 'Chicago/nowhere'"):
        convert_vigor(root, tmp_path / "bad")


def test_hit_rate_is_absent_without_semi_positives(university, tmp_path):
    from gleamx.data.cvgl import convert_university1652
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import RetrievalEncoder
    from gleamx.retrieval.evaluate import evaluate_retrieval

    convert_university1652(university, tmp_path / "u")
    assert "hit_rate@1" not in evaluate_retrieval(RetrievalEncoder.tiny(32).eval(), load_retrieval(tmp_path / "u", "test"))


def test_one_split_per_out_dir_and_symlinked_out_dirs(university, tmp_path):
    from gleamx.data.cvgl import convert_university1652
    from gleamx.retrieval.data import load_retrieval

    convert_university1652(university, tmp_path / "u")
    with pytest.raises(GleamConfigError, match=r"holds a run of `gleamx data cvgl` with other settings \(changed: split\)"):
        convert_university1652(university, tmp_path / "u", split="train")
    assert convert_university1652(university, tmp_path / "u", split="train", overwrite=True).split == "train"
    (tmp_path / "real" / "outs").mkdir(parents=True)
    (tmp_path / "outs").symlink_to(tmp_path / "real" / "outs")
    convert_university1652(university, tmp_path / "outs" / "u")  # written through a symlinked directory
    rset = load_retrieval(tmp_path / "outs" / "u", "test")
    assert all(t.image.is_file() for t in rset.gallery) and all(q.image.is_file() for q in rset.queries)


def _cvact(tmp_path: Path, *, mat: bool = True) -> Path:
    """CVACT as shipped: ANU_data_small/{streetview,satview_polish} and ACT_data.mat (panoIds, trainSet, valSet)."""
    root = tmp_path / "CVACT"
    ids = [f"__-{i}AbCdEfGhIjKlMnOpQ" for i in range(5)]  # panoIds: 22-character Street View ids
    for i, pano in enumerate(ids):
        _img(root / "ANU_data_small" / "streetview" / f"{pano}_grdView.jpg", (i * 40, 0, 0))
        _img(root / "ANU_data_small" / "satview_polish" / f"{pano}_satView_polish.jpg", (0, i * 40, 0))
    if mat:
        import numpy as np
        from scipy.io import savemat

        savemat(root / "ACT_data.mat", {"panoIds": np.array(ids, dtype=object).reshape(-1, 1),
                                        "trainSet": {"trainInd": np.array([[1], [2], [3]], dtype=np.float64)},
                                        "valSet": {"valInd": np.array([[4], [5]], dtype=np.float64)}})
    return root


def test_cvact_as_shipped_reads_act_data_mat(tmp_path):
    import scipy  # noqa: F401
    from gleamx.data.cvgl import convert_cvact
    from gleamx.retrieval.data import load_retrieval

    root = _cvact(tmp_path)
    s = convert_cvact(root, tmp_path / "test")  # valSet (CVACT_val) is the test split papers report
    assert (s.n_gallery, s.n_queries, s.by_view) == (2, 2, {"panorama": 2})
    rset = load_retrieval(tmp_path / "test", "test")
    assert [t.location_id for t in rset.gallery] == ["cvact-__-3AbCdEfGhIjKlMnOpQ", "cvact-__-4AbCdEfGhIjKlMnOpQ"]
    assert rset.queries[0].image.name == "__-3AbCdEfGhIjKlMnOpQ_grdView.jpg"
    assert rset.gallery[0].image.name == "__-3AbCdEfGhIjKlMnOpQ_satView_polish.jpg"
    (root / "ANU_data_small" / "ACT_data.mat").write_bytes((root / "ACT_data.mat").read_bytes())
    assert convert_cvact(root / "ANU_data_small", tmp_path / "inner").n_gallery == 2  # ROOT may be ANU_data_small
    train = convert_cvact(root, tmp_path / "train", split="train")
    assert (train.n_gallery, train.n_queries) == (3, 3)
    (root / "ANU_data_small" / "satview_polish" / "__-4AbCdEfGhIjKlMnOpQ_satView_polish.jpg").unlink()
    with pytest.raises(GleamDataError, match=r"ACT_data\.mat: satellite: file not found for panoId '__-4"):
        convert_cvact(root, tmp_path / "bad")


def test_cvact_test_reads_anu_data_test(tmp_path, capsys):
    from gleamx.cli.main import main
    from gleamx.data.cvgl import convert_cvact
    from gleamx.retrieval.data import load_retrieval

    root = tmp_path / "CVACT"
    for i in range(3):  # CVACT_test: ANU_data_test/{streetview,satview_polish}, no .mat
        _img(root / "ANU_data_test" / "streetview" / f"__-{i}TestTestTestTestTe_grdView.jpg", (i * 50, 0, 0))
        _img(root / "ANU_data_test" / "satview_polish" / f"__-{i}TestTestTestTestTe_satView_polish.jpg", (0, i * 50, 0))
    _img(root / "ANU_data_test" / "streetview" / "__-9Orphan_grdView.jpg", (9, 9, 9))  # no satellite tile
    assert main(["data", "cvgl", str(root), "--layout", "cvact", "--cvact-set", "test", "--out",
                 str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert "gallery 3 tiles, 3 queries (panorama=3)" in out
    assert "note: 1 street views of ANU_data_test have no satellite tile with their panoId: not used" in out
    rset = load_retrieval(tmp_path / "t", "test")
    assert [rset.positive(q) for q in rset.queries] == [0, 1, 2]
    assert rset.gallery[2].image.name == "__-2TestTestTestTestTe_satView_polish.jpg"
    assert convert_cvact(root / "ANU_data_test", tmp_path / "inner", cvact_set="test").n_gallery == 3
    with pytest.raises(GleamDataError, match="cvact_set: test .CVACT_test. is a test split"):
        convert_cvact(root, tmp_path / "x", split="train", cvact_set="test")
    assert main(["data", "cvgl", str(root), "--layout", "cvusa", "--cvact-set", "test", "--out", str(tmp_path / "u")]) == 2
    assert "--cvact-set: applies to --layout cvact only" in capsys.readouterr().err


def test_cvact_split_list_fallback_and_bad_mat(tmp_path):
    from gleamx.data.cvgl import convert_cvact

    root = _cvact(tmp_path, mat=False)
    with pytest.raises(GleamDataError, match=r"ACT_data\.mat: layout: missing"):
        convert_cvact(root, tmp_path / "o")
    (root / "splits").mkdir()
    (root / "splits" / "test.txt").write_text("# CVACT_val\n__-0AbCdEfGhIjKlMnOpQ\n__-1AbCdEfGhIjKlMnOpQ,extra\n\n")
    assert convert_cvact(root, tmp_path / "o").n_queries == 2
    (root / "splits" / "test.txt").unlink()
    (root / "ACT_data.mat").write_bytes(b"not a mat file")
    import scipy  # noqa: F401
    with pytest.raises(GleamDataError, match=r"ACT_data\.mat: file: cannot read it as a MATLAB file"):
        convert_cvact(root, tmp_path / "o2")


def _paired(tmp_path: Path) -> Path:
    """One satellite tile and one street-map / ground image per location id, plus splits.csv."""
    root = tmp_path / "paired"
    for i in range(6):
        _img(root / "satellite" / f"loc{i}.png", (i * 30, 0, 0))
        _img(root / "street_map" / f"loc{i}.png", (0, i * 30, 0))
        if i < 3:
            _img(root / "ground" / f"loc{i}.jpg", (0, 0, i * 30))
    (root / "splits.csv").write_text("location_id,split\n" + "".join(
        f"loc{i},{'train' if i < 4 else 'Test'}\n" for i in range(6)))
    return root


def test_paired_folders_with_splits_and_view_flag(tmp_path):
    from gleamx.data.cvgl import convert_paired
    from gleamx.retrieval.data import load_retrieval

    root = _paired(tmp_path)
    s = convert_paired(root, tmp_path / "train", split="train")
    assert (s.n_gallery, s.n_queries, s.by_view) == (4, 7, {"street_map": 4, "ground": 3})
    rset = load_retrieval(tmp_path / "train", "train")
    assert {q.query_id for q in rset.queries} >= {"street_map/loc0", "ground/loc2"}
    assert convert_paired(root, tmp_path / "test").by_view == {"street_map": 2}
    only = convert_paired(root, tmp_path / "ground", split="train", view="ground")
    assert only.by_view == {"ground": 3} and only.n_gallery == 4  # loc3's tile is a distractor
    (root / "ground").rename(root / "query")  # a query folder not named after a view: --view names it
    assert convert_paired(root, tmp_path / "q", split="train", view="ground").by_view == {"ground": 3}
    (root / "splits.csv").write_text("location_id,split\nloc0,dev\n")
    with pytest.raises(GleamDataError, match=r"splits\.csv:2: split: expected location_id,split"):
        convert_paired(root, tmp_path / "x")
    (root / "splits.csv").unlink()
    _img(root / "street_map" / "loc9.png", (1, 1, 1))
    with pytest.raises(GleamDataError, match=r"loc9\.png: location_id: 'loc9' has no satellite tile"):
        convert_paired(root, tmp_path / "y")


def test_cli_cvgl_takes_the_new_layouts(tmp_path):
    from gleamx.cli.main import main

    root = _paired(tmp_path)
    assert main(["data", "cvgl", str(root), "--layout", "paired", "--split", "val", "--out", str(tmp_path / "v")]) == 2
    assert main(["data", "cvgl", str(root), "--layout", "paired", "--split", "train", "--view", "street_map",
                 "--out", str(tmp_path / "s")]) == 0
    layout = json.loads((tmp_path / "s" / "retrieval" / "layout.json").read_text())
    assert layout == {"layout": "paired", "split": "train"}
    assert main(["data", "cvgl", str(root), "--layout", "cvusa", "--split", "val", "--out", str(tmp_path / "c")]) == 2
