"""Hostile and damaged data (issue 9, "nothing lost, nothing stale"): every case is one line or a right result.

Split names in any case, bytes that are not UTF-8, decompression bombs, and image paths that leave
the dataset directory (``..``, absolute, symlinks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from gleamx.data import load_samples, validate, write_samples
from gleamx.prompts import write_sharegpt
from gleamx.errors import GleamConfigError, GleamDataError, GleamModelError

def _row(**over):
    row = {"id": "x", "query_image": "images/q1.png", "satellite_image": "images/s1.png",
           "query_view": "uav", "label": True, "explanation": {"en": "ok\nAnswer: Yes"}}
    row.update(over)
    return row


def _append(path: Path, row) -> int:
    data = row if isinstance(row, bytes) else (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    with path.open("ab") as f:
        f.write(data)
    return path.read_bytes().count(b"\n")


def _one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    for n in needles:
        assert n in proc.stderr, proc.stderr


# --- 1. split names ------------------------------------------------------------------------------


def test_split_names_are_read_case_insensitively_and_validate_agrees(data_small_jsonl):
    _append(data_small_jsonl, _row(id="e", split="Test"))
    _append(data_small_jsonl, _row(id="f", split=" VALIDATION "))
    _append(data_small_jsonl, _row(id="g", split="Test_Human"))
    assert [s.id for s in load_samples(data_small_jsonl, split="test").samples] == ["c", "d", "e"]
    assert [s.id for s in load_samples(data_small_jsonl, split="Val").samples] == ["f"]
    assert [s.id for s in load_samples(data_small_jsonl, split="test_human").samples] == ["g"]
    report = validate(data_small_jsonl)
    assert report.ok and report.by_split == {"train": 2, "test": 3, "val": 1, "test_human": 1}


def test_unknown_split_is_a_problem_naming_the_row_never_a_silent_drop(data_small_jsonl):
    line = _append(data_small_jsonl, _row(id="e", split="testing"))
    (p,) = validate(data_small_jsonl).problems
    assert (p.line, p.field) == (line, "split") and "unknown split 'testing'" in p.message
    with pytest.raises(GleamDataError, match=rf":{line}: split: unknown split 'testing'"):
        load_samples(data_small_jsonl, split="test")
    res = load_samples(data_small_jsonl, split="test", skip_bad=True)
    assert [s.id for s in res.samples] == ["c", "d"] and res.n_bad == 1


def test_sharegpt_rows_without_a_split_take_the_files_split(data_small_jsonl):
    samples = load_samples(data_small_jsonl, split="test").samples
    sg = data_small_jsonl.parent / "test.json"
    write_sharegpt(samples, sg)
    rows = json.loads(sg.read_text())
    for r in rows:
        del r["split"]
    sg.write_text(json.dumps(rows))
    assert [s.split for s in load_samples(sg).samples] == ["test", "test"]


def test_retrieval_split_names_are_case_insensitive(tmp_path):
    from gleamx.retrieval.data import load_retrieval

    _img(tmp_path / "d" / "images" / "s.png")
    _img(tmp_path / "d" / "images" / "q.png")
    _layout(tmp_path / "d", [{"location_id": "L", "image": "../images/s.png", "split": "Test"}],
            [{"query_id": "q", "image": "../images/q.png", "query_view": "uav", "location_id": "L", "split": "TEST"}])
    rset = load_retrieval(tmp_path / "d", "Test")
    assert len(rset.queries) == 1 and rset.split == "test" and rset.queries[0].split == "test"


# --- 2. bytes that are not UTF-8 -----------------------------------------------------------------


def test_bad_bytes_in_jsonl_are_one_problem_each_and_the_rest_still_loads(data_small_jsonl):
    size = data_small_jsonl.stat().st_size
    bad = _append(data_small_jsonl, b'{"id": "\xff\xfe"}\n')
    good = _append(data_small_jsonl, _row(id="after", explanation={"zh": "中文\n结论：是"}))
    cut = _append(data_small_jsonl, '{"id": "中'.encode()[:-1])  # a file cut inside a multi-byte character
    report = validate(data_small_jsonl)
    assert report.n_valid == 5 and good
    assert [str(p) for p in report.problems] == [
        f"{data_small_jsonl}:{bad}: encoding: invalid UTF-8 at byte {size + 8} of the file (byte 8 of the line); "
        "expected UTF-8 text",
        f"{data_small_jsonl}:{cut + 1}: encoding: invalid UTF-8 at byte "
        f"{data_small_jsonl.stat().st_size - 2} of the file (byte 8 of the line); expected UTF-8 text",
    ]
    with pytest.raises(GleamDataError, match=rf":{bad}: encoding: invalid UTF-8 at byte {size + 8} "):
        load_samples(data_small_jsonl)
    res = load_samples(data_small_jsonl, skip_bad=True)
    assert res.n_bad == 2 and "after" in {s.id for s in res.samples}


def test_lone_surrogate_escape_is_a_problem_not_a_crash_on_writing(data_small_jsonl, tmp_path):
    line = _append(data_small_jsonl, b'{"id": "s", "query_image": "images/q1.png", "satellite_image": "images/s1.png", '
                                     b'"query_view": "uav", "label": true, "explanation": {"en": "x \\ud800"}}\n')
    emoji = json.dumps(_row(id="emoji", explanation={"en": "ok \U0001f600"}), ensure_ascii=True)
    assert "\\ud83d\\ude00" in emoji
    _append(data_small_jsonl, (emoji + "\n").encode())  # an escaped surrogate pair is fine
    (p,) = validate(data_small_jsonl).problems
    assert str(p) == f"{data_small_jsonl}:{line}: encoding: lone surrogate escape \\ud800 (not valid Unicode text); " \
                     "expected UTF-8 text"
    res = load_samples(data_small_jsonl, skip_bad=True)
    write_samples(res.samples, tmp_path / "out" / "x.jsonl")  # nothing unencodable got through


def test_bad_bytes_in_a_sharegpt_json_list_name_the_row_and_the_others_load(data_small_jsonl, tmp_path):
    sg = tmp_path / "lf" / "train.json"
    write_sharegpt(load_samples(data_small_jsonl).samples, sg, lang="en")
    raw = sg.read_bytes()
    pos = raw.index(b"The satellite tile")  # inside the second conversation's answer
    sg.write_bytes(raw[:pos] + b"\xc3(" + raw[pos + 2:])
    line = raw[:pos].count(b"\n") + 1
    report = validate(sg)
    assert [str(p) for p in report.problems] == [
        f"{sg}:2: encoding: invalid UTF-8 at byte {pos} of the file (line {line}); expected UTF-8 text"]
    assert report.n_valid == 3
    sg.write_bytes(raw.replace(b"[", b"[\xff", 1))  # outside any string: the file cannot be read as JSON
    with pytest.raises(GleamDataError, match=r"train\.json:1: encoding: invalid UTF-8 at byte 1 of the file"):
        load_samples(sg)


def test_cli_validate_and_convert_skip_bad_with_bad_bytes(data_small_jsonl, tmp_path, gleamx_cli):
    bad = _append(data_small_jsonl, b'{"id": "\xff"}\n')
    proc = gleamx_cli("data", "validate", str(data_small_jsonl))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"{data_small_jsonl}:{bad}: encoding: invalid UTF-8 at byte" in proc.stdout
    proc = gleamx_cli("data", "convert", str(data_small_jsonl), "--to", "jsonl", "--skip-bad", "--out", str(tmp_path / "o.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 bad record(s)" in proc.stdout and "wrote 4 samples" in proc.stdout
    _one_line_error(gleamx_cli("data", "convert", str(data_small_jsonl), "--to", "jsonl", "--out", str(tmp_path / "p.jsonl")),
                    f"{data_small_jsonl}:{bad}: encoding: invalid UTF-8")


def test_retrieval_layout_with_bad_bytes_is_one_line(tmp_path):
    from gleamx.retrieval.data import load_retrieval

    _img(tmp_path / "d" / "images" / "s.png")
    _layout(tmp_path / "d", [{"location_id": "L", "image": "../images/s.png", "split": "test"}], [])
    q = tmp_path / "d" / "retrieval" / "queries.jsonl"
    q.write_bytes(b'{"query_id": "q\xe9", "image": "../images/s.png"}\n')
    with pytest.raises(GleamDataError, match=r"queries\.jsonl:1: encoding: invalid UTF-8 at byte 15 of the file"):
        load_retrieval(tmp_path / "d", "test")


def test_cvgl_split_files_with_bad_bytes_are_one_line(tmp_path):
    from gleamx.data.cvgl import convert_cvusa

    (tmp_path / "CVUSA" / "splits").mkdir(parents=True)
    (tmp_path / "CVUSA" / "splits" / "val-19zl.csv").write_bytes(b"bing\xff.jpg,p.jpg\n")
    with pytest.raises(GleamDataError, match=r"val-19zl\.csv:1: encoding: invalid UTF-8 at byte 4"):
        convert_cvusa(tmp_path / "CVUSA", tmp_path / "out")


# --- 3. bounded images ---------------------------------------------------------------------------


def _bomb(path: Path, side: int = 12000) -> Path:
    """A 1-bit side x side PNG: a few kilobytes on disk, side**2 pixels once decoded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (side, side)).save(path, optimize=True)
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return _bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_image_over_the_pixel_cap_is_refused_from_its_header(data_small_jsonl, bomb, monkeypatch):
    import shutil

    from gleamx.data.images import ImageTooLargeError, open_image

    assert bomb.stat().st_size < 100_000
    shutil.copy(bomb, data_small_jsonl.parent / "images" / "big.png")
    line = _append(data_small_jsonl, _row(query_image="images/big.png"))
    (p,) = validate(data_small_jsonl).problems
    assert str(p) == (f"{data_small_jsonl}:{line}: query_image: image images/big.png is 12000x12000 = 144,000,000 "
                      "pixels, over the limit of 100,000,000 (set GLEAMX_MAX_IMAGE_PIXELS to raise it)")
    with pytest.raises(GleamDataError, match="over the limit"):
        load_samples(data_small_jsonl)
    with pytest.raises(ImageTooLargeError, match=rf"^{bomb}: image: 12000x12000 = 144,000,000 pixels, over the limit"):
        open_image(bomb)
    # the cap is an argument or the environment variable
    with pytest.raises(ImageTooLargeError, match="48x48 = 2,304 pixels, over the limit of 1,000"):
        open_image(data_small_jsonl.parent / "images" / "q1.png", max_pixels=1000)
    monkeypatch.setenv("GLEAMX_MAX_IMAGE_PIXELS", "200000000")
    assert validate(data_small_jsonl).ok
    monkeypatch.setenv("GLEAMX_MAX_IMAGE_PIXELS", "2000")
    problems = validate(data_small_jsonl).problems  # every row's 48x48 images are over 2000 pixels
    assert len(problems) == 10 and all("over the limit of 2,000" in p.message for p in problems)
    monkeypatch.setenv("GLEAMX_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(GleamConfigError, match="GLEAMX_MAX_IMAGE_PIXELS: expected a positive number of pixels"):
        validate(data_small_jsonl)


def test_pils_own_decompression_bomb_error_is_the_same_one_line(tmp_path):
    from gleamx.data.images import ImageTooLargeError, open_image

    huge = _bomb(tmp_path / "huge.png", side=14000)  # 196 M pixels: past PIL's own error threshold
    with pytest.raises(ImageTooLargeError, match=r"huge\.png: image: 196,000,000 pixels, over the limit of 100,000,000"):
        open_image(huge)
    with pytest.raises(ImageTooLargeError, match=r"over PIL's decompression-bomb limit"):
        open_image(huge, max_pixels=10**9)


def test_sample_images_and_in_memory_images_are_capped(data_small_jsonl, bomb, tmp_path):
    import datasets

    from gleamx.data.schema import GleamSample, open_rgb
    from gleamx.prompts import sample_images

    s = GleamSample("b", str(bomb), str(bomb), "uav", True)
    with pytest.raises(GleamDataError, match="over the limit"):
        sample_images(s)
    with pytest.raises(GleamDataError, match="over the limit"):
        open_rgb({"bytes": bomb.read_bytes(), "path": None})
    ds = datasets.Dataset.from_dict(
        {"query_image": [{"bytes": bomb.read_bytes(), "path": None}],
         "satellite_image": [str(data_small_jsonl.parent / "images" / "s1.png")],
         "query_view": ["uav"], "label": [True], "id": ["m"]},
        features=datasets.Features({"query_image": datasets.Image(), "satellite_image": datasets.Image(),
                                    "query_view": datasets.Value("string"), "label": datasets.Value("bool"),
                                    "id": datasets.Value("string")}))
    ds.save_to_disk(tmp_path / "hf")
    (p,) = validate(tmp_path / "hf").problems
    assert p.field == "query_image" and "in-memory image is 12000x12000 = 144,000,000 pixels, over the limit" in p.message


def test_retrieval_layout_refuses_an_oversized_image_at_load(tmp_path, bomb):
    import shutil

    from gleamx.retrieval.data import load_retrieval

    _img(tmp_path / "d" / "images" / "s.png")
    shutil.copy(bomb, tmp_path / "d" / "images" / "q.png")
    _layout(tmp_path / "d", [{"location_id": "L", "image": "../images/s.png", "split": "test"}],
            [{"query_id": "q", "image": "../images/q.png", "query_view": "uav", "location_id": "L", "split": "test"}])
    with pytest.raises(GleamDataError, match=r"queries\.jsonl:1: image: \.\./images/q\.png is 12000x12000 = "):
        load_retrieval(tmp_path / "d", "test")


# --- 4. contained paths --------------------------------------------------------------------------


def _img(path: Path, colour=(10, 20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def _layout(d: Path, gallery: list[dict], queries: list[dict]) -> None:
    (d / "retrieval").mkdir(parents=True, exist_ok=True)
    (d / "retrieval" / "gallery.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gallery))
    (d / "retrieval" / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))


@pytest.fixture
def escaping(tmp_path) -> Path:
    """A dataset dir whose rows point at ../../secret.png, at an absolute path, and through a symlink."""
    secret = _img(tmp_path / "secret.png", (255, 0, 0))
    d = tmp_path / "dl" / "ds"
    _img(d / "images" / "q.png")
    _img(d / "images" / "s.png")
    (d / "images" / "link.png").symlink_to(secret)
    rows = [_row(id="ok", query_image="images/q.png", satellite_image="images/s.png"),
            _row(id="dots", query_image="images/q.png", satellite_image="../../secret.png"),
            _row(id="abs", query_image=str(secret), satellite_image="images/s.png"),
            _row(id="link", query_image="images/link.png", satellite_image="images/s.png"),
            _row(id="abs_in", query_image=str(d / "images" / "q.png"), satellite_image="images/s.png")]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_paths_leaving_the_dataset_are_refused_in_one_line_each(escaping):
    f = escaping / "train.jsonl"
    real = os.path.realpath(escaping)
    problems = [str(p) for p in validate(escaping).problems]
    assert problems == [
        f"{f}:2: satellite_image: image path ../../secret.png resolves outside the dataset directory {real}; "
        "expected a path inside it (--allow-outside-paths / allow_outside_paths=True allows it)",
        f"{f}:3: query_image: image path {escaping.parent.parent / 'secret.png'} resolves outside the dataset "
        f"directory {real}; expected a path inside it (--allow-outside-paths / allow_outside_paths=True allows it)",
        f"{f}:4: query_image: image path images/link.png resolves (through a symlink) outside the dataset directory "
        f"{real}; expected a path inside it (--allow-outside-paths / allow_outside_paths=True allows it)",
    ]
    with pytest.raises(GleamDataError, match=r"train\.jsonl:2: satellite_image: image path \.\./\.\./secret\.png"):
        load_samples(escaping)
    assert [s.id for s in load_samples(escaping, skip_bad=True).samples] == ["ok", "abs_in"]
    assert len(load_samples(escaping, allow_outside_paths=True).samples) == 5
    assert validate(escaping, allow_outside_paths=True).ok


def test_cli_allow_outside_paths_flag(escaping, tmp_path, gleamx_cli):
    proc = gleamx_cli("data", "validate", str(escaping))
    assert proc.returncode == 1 and proc.stdout.count("resolves") == 3
    assert gleamx_cli("data", "validate", str(escaping), "--allow-outside-paths").returncode == 0
    _one_line_error(gleamx_cli("data", "convert", str(escaping), "--to", "jsonl", "--out", str(tmp_path / "o.jsonl")),
                    "satellite_image: image path ../../secret.png resolves outside")
    proc = gleamx_cli("data", "convert", str(escaping), "--to", "jsonl", "--out", str(tmp_path / "o.jsonl"),
                "--allow-outside-paths")
    assert proc.returncode == 0 and "wrote 5 samples" in proc.stdout, proc.stderr


def test_converted_copies_elsewhere_load_back_through_their_manifest(data_small_jsonl, tmp_path):
    samples = load_samples(data_small_jsonl).samples
    out = tmp_path / "elsewhere" / "conv" / "train.jsonl"
    write_samples(samples, out)
    manifest = json.loads((out.parent / "gleamx_manifest.json").read_text())
    assert manifest["image_roots"] == ["../../images"] and manifest["written_in"] == os.path.realpath(out.parent)
    assert load_samples(out).samples == samples
    # a manifest that arrives with a moved or downloaded dataset cannot point outside it
    moved = tmp_path / "moved"
    out.parent.rename(moved)
    with pytest.raises(GleamDataError, match=r"gleamx_manifest\.json: written_in: written for .*may not name image roots"):
        load_samples(moved / "train.jsonl")
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    (hostile / "train.jsonl").write_text(json.dumps(_row(query_image="/etc/x.png", satellite_image="/etc/y.png")) + "\n")
    (hostile / "gleamx_manifest.json").write_text(json.dumps({"image_roots": ["/"]}))
    with pytest.raises(GleamDataError, match="written_in: written for None"):
        load_samples(hostile)
    # a correctly guessed written_in is not enough: only a manifest gleamx signed for this user may widen
    for extra in ({}, {"signature": "0" * 64}):
        (hostile / "gleamx_manifest.json").write_text(json.dumps(
            {"gleamx_manifest": 1, "written_in": os.path.realpath(hostile), "image_roots": ["/"], **extra}))
        with pytest.raises(GleamDataError, match=r"gleamx_manifest\.json: signature: not written by gleamx for "
                                                 r"this user on this machine, so it may not name image roots"):
            load_samples(hostile)
    (hostile / "gleamx_manifest.json").write_bytes(b"{\xff")
    with pytest.raises(GleamDataError, match=r"gleamx_manifest\.json:1: encoding: invalid UTF-8"):
        load_samples(hostile)


def test_retrieval_layout_paths_are_contained(tmp_path):
    from gleamx.retrieval.data import load_retrieval

    secret = _img(tmp_path / "secret.png")
    d = tmp_path / "ds"
    _img(d / "images" / "s.png")
    _img(d / "images" / "q.png")
    (d / "images" / "link.png").symlink_to(secret)
    q = {"query_id": "q", "image": "../images/q.png", "query_view": "uav", "location_id": "L", "split": "test"}
    for image in ("../../secret.png", str(secret), "../images/link.png"):
        _layout(d, [{"location_id": "L", "image": image, "split": "test"}], [q])
        with pytest.raises(GleamDataError, match=r"gallery\.jsonl:1: image: image path .* resolves .*outside the "
                                                 r"dataset directory"):
            load_retrieval(d, "test")
        assert load_retrieval(d, "test", allow_outside_paths=True).gallery[0].image == secret.resolve()
    _layout(d, [{"location_id": "L", "image": "../images/s.png", "split": "test"}], [q])
    assert len(load_retrieval(d / "retrieval", "test").queries) == 1  # the layout dir itself: same root


def test_cvgl_layout_names_its_image_root_and_a_copied_layout_is_refused(tmp_path):
    from gleamx.data.cvgl import convert_cvusa
    from gleamx.retrieval.data import load_retrieval

    root = tmp_path / "raw" / "CVUSA"
    _img(root / "bingmap" / "0.jpg")
    _img(root / "streetview" / "0.jpg")
    (root / "splits").mkdir()
    (root / "splits" / "val-19zl.csv").write_text("bingmap/0.jpg,streetview/0.jpg\n")
    convert_cvusa(root, tmp_path / "work" / "cvusa")
    manifest = json.loads((tmp_path / "work" / "cvusa" / "retrieval" / "gleamx_manifest.json").read_text())
    assert manifest["image_roots"] == ["../../../raw/CVUSA"]
    assert len(load_retrieval(tmp_path / "work" / "cvusa", "test").queries) == 1
    import shutil

    shutil.copytree(tmp_path / "work" / "cvusa", tmp_path / "work" / "copy")  # same depth: its paths still resolve
    with pytest.raises(GleamDataError, match=r"retrieval/gleamx_manifest\.json: written_in: written for"):
        load_retrieval(tmp_path / "work" / "copy", "test")
    assert len(load_retrieval(tmp_path / "work" / "copy", "test", allow_outside_paths=True).queries) == 1


def test_hub_style_hf_dataset_paths_are_contained(tmp_path):
    import datasets

    secret = _img(tmp_path / "secret.png")
    ds = datasets.Dataset.from_dict({"query_image": [str(secret)], "satellite_image": [str(secret)],
                                     "query_view": ["uav"], "label": [True], "id": ["h"]})
    ds.save_to_disk(tmp_path / "hf")
    (p1, p2) = validate(tmp_path / "hf").problems
    assert "resolves outside the dataset directory" in p1.message and p2.field == "satellite_image"
    assert validate(tmp_path / "hf", allow_outside_paths=True).ok


def test_sft_recipe_key_allow_outside_paths_reaches_the_loader(escaping, tmp_path):
    import trl  # noqa: F401
    from trl import ModelConfig, SFTConfig, TrlParser

    from gleamx.train.arguments import GleamScriptArguments
    from gleamx.parsing import parse_recipe
    from gleamx.train.sft import build_trainer

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "sft_lora.yaml"
    (tmp_path / "no-model").mkdir()  # data is loaded first: the model is never reached when the data is refused

    def args(*extra: str):
        parser = TrlParser((GleamScriptArguments, SFTConfig, ModelConfig))
        return parse_recipe(parser, ["--config", str(recipe), "--model_name_or_path", str(tmp_path / "no-model"),
                                     "--dataset_name", str(escaping), "--output_dir", str(tmp_path / "o"), *extra])

    with pytest.raises(GleamDataError, match=r"train\.jsonl:2: satellite_image: image path \.\./\.\./secret\.png"):
        build_trainer(*args())
    with pytest.raises(GleamModelError, match="has no config.json"):  # past the data: the (missing) model fails
        build_trainer(*args("--allow_outside_paths", "true"))


def test_a_row_in_another_splits_file_is_a_problem_not_left_out_of_that_split(tmp_path):
    d = tmp_path / "d"
    _img(d / "images" / "q1.png")
    _img(d / "images" / "s1.png")
    (d / "train.jsonl").write_text(json.dumps(_row(id="t")) + "\n" + json.dumps(_row(id="x", split="TEST")) + "\n")
    (d / "test.jsonl").write_text(json.dumps(_row(id="y", split="test")) + "\n")
    (p,) = validate(d).problems
    assert str(p) == (f"{d / 'train.jsonl'}:2: split: 'test' row in train.jsonl, but --split test reads only "
                      "test.jsonl (move the row there or fix its split)")
    assert [s.id for s in load_samples(d, split="test").samples] == ["y"]
    (d / "test.jsonl").unlink()  # no test.jsonl: --split test reads every file, and finds the row
    assert validate(d).ok and [s.id for s in load_samples(d, split="test").samples] == ["x"]


@pytest.mark.parametrize("size", [(1, 300), (250, 1)])
def test_an_image_the_processor_would_refuse_is_one_line_where_it_enters(tmp_path, size):
    """A valid PNG of a few dozen bytes whose sides are over 200 times apart crashes Qwen-VL's image processor
    (smart_resize); it is refused where data enters (validate, every load) naming the file, before any model."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    Image.new("RGB", size).save(tmp_path / "q.png")
    Image.new("RGB", (64, 64)).save(tmp_path / "s.png")
    (tmp_path / "d.jsonl").write_text(json.dumps(_row(query_image="q.png", satellite_image="s.png")) + "\n")
    with pytest.raises(ValueError, match="aspect ratio"):  # what it would do mid-run
        smart_resize(size[1], size[0])
    message = f"q.png is {size[0]}x{size[1]}: expected sides at most 200 times one another"
    with pytest.raises(GleamDataError, match=message) as e:
        load_samples(tmp_path / "d.jsonl")
    assert "\n" not in str(e.value)
    report = validate(tmp_path / "d.jsonl")
    assert not report.ok and any(message in str(p) for p in report.problems)
