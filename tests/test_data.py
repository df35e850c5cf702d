"""Readers, validation and converters: every bad input is one line naming file:line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gleamx.data import FEATURES, detect_format, load_samples, to_dataset, validate, write_samples
from gleamx.prompts import write_sharegpt
from gleamx.errors import GleamDataError


def _append(path: Path, row) -> int:
    """Append a row (dict or raw text); returns its line number."""
    text = row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)
    with path.open("a", encoding="utf-8") as f:
        f.write(text + "\n")
    return len(path.read_text(encoding="utf-8").splitlines())


def _good_row(**over):
    row = {"id": "x", "query_image": "images/q1.png", "satellite_image": "images/s1.png",
           "query_view": "uav", "label": True, "explanation": {"en": "ok\nAnswer: Yes"}}
    row.update(over)
    return row


def test_valid_file_has_no_problems_and_counts(data_small_jsonl):
    report = validate(data_small_jsonl)
    assert report.ok and report.n_valid == 4
    assert report.by_split == {"train": 2, "test": 2}
    assert report.by_view == {"uav": 2, "ground": 1, "street_map": 1}
    assert report.by_label == {"match": 2, "no_match": 2}
    assert report.by_lang == {"en": 3, "zh": 2}


def test_truncated_image_is_one_problem_line(data_small_jsonl):
    img = data_small_jsonl.parent / "images" / "broken.png"
    img.write_bytes((data_small_jsonl.parent / "images" / "q1.png").read_bytes()[:70])
    line = _append(data_small_jsonl, _good_row(query_image="images/broken.png"))
    report = validate(data_small_jsonl)
    assert [str(p) for p in report.problems] == [
        f"{data_small_jsonl}:{line}: query_image: cannot decode image images/broken.png "
        "(OSError: image file is truncated); expected a readable PNG/JPEG/WebP"
    ]


def test_bad_json_line_is_reported_and_validation_goes_on(data_small_jsonl):
    bad = _append(data_small_jsonl, '{"id": "y", oops}')
    wrong = _append(data_small_jsonl, _good_row(id="z", label="maybe"))
    problems = [str(p) for p in validate(data_small_jsonl).problems]
    assert problems[0].startswith(f"{data_small_jsonl}:{bad}: json: expected one JSON object per line")
    assert problems[1] == f"{data_small_jsonl}:{wrong}: label: expected a boolean or yes/no, got 'maybe'"


@pytest.mark.parametrize(
    "override,field,message",
    [
        ({"label": "maybe"}, "label", "expected a boolean or yes/no, got 'maybe'"),
        ({"query_view": "drone"}, "query_view",
         "unknown view 'drone' (expected one of: uav, street_map, panorama, ground)"),
        ({"satellite_image": "images/nope.png"}, "satellite_image", "image file not found: images/nope.png"),
        ({"explanation": {"en": "  "}}, "explanation", "empty (expected non-empty text under en and/or zh)"),
        ({"explanation": {"en": "x", "fr": "y"}}, "explanation.fr", "unknown language (expected one of: en, zh)"),
        ({"explanation": {"en": "Roads differ.\nAnswer: No"}}, "explanation.en",
         "its verdict line says no but label is true"),
        ({"lable": True}, "lable", "unknown field"),
        ({"id": ""}, "id", "expected a non-empty string"),
    ],
)
def test_each_bad_field_gives_its_line(data_small_jsonl, override, field, message):
    line = _append(data_small_jsonl, _good_row(**override))
    problems = validate(data_small_jsonl).problems
    assert len(problems) == 1
    p = problems[0]
    assert (p.file, p.line, p.field) == (str(data_small_jsonl), line, field)
    assert message in p.message
    assert "\n" not in str(p)


def test_missing_required_field(data_small_jsonl):
    row = _good_row()
    del row["query_view"]
    line = _append(data_small_jsonl, row)
    assert [str(p) for p in validate(data_small_jsonl).problems] == [
        f"{data_small_jsonl}:{line}: query_view: missing (required)"
    ]


def test_duplicate_id(data_small_jsonl):
    line = _append(data_small_jsonl, _good_row(id="a"))
    (p,) = validate(data_small_jsonl).problems
    assert (p.line, p.field) == (line, "id") and "duplicate id 'a'" in p.message and ":1)" in p.message


def test_loader_raises_the_same_line_and_skip_bad_counts(data_small_jsonl):
    line = _append(data_small_jsonl, _good_row(label="maybe"))
    with pytest.raises(GleamDataError) as e:
        load_samples(data_small_jsonl)
    assert str(e.value) == f"{data_small_jsonl}:{line}: label: expected a boolean or yes/no, got 'maybe'"
    res = load_samples(data_small_jsonl, skip_bad=True)
    assert len(res.samples) == 4 and res.n_bad == 1 and len(res.problems) == 1


def test_labels_accept_yes_no_and_numbers(data_small_jsonl):
    for i, value in enumerate(["yes", "No", 1, 0, "是", "否"]):
        _append(data_small_jsonl, _good_row(id=f"l{i}", label=value, explanation={"en": "text"}))
    got = {s.id: s.label for s in load_samples(data_small_jsonl).samples if s.id.startswith("l")}
    assert got == {"l0": True, "l1": False, "l2": True, "l3": False, "l4": True, "l5": False}


def test_missing_file_and_empty_split():
    with pytest.raises(GleamDataError, match=r"nope\.jsonl: path: not found"):
        load_samples("nope.jsonl")


def test_split_filter(data_small_jsonl):
    assert [s.id for s in load_samples(data_small_jsonl, split="test").samples] == ["c", "d"]
    with pytest.raises(GleamDataError, match="no samples found with split 'val'"):
        load_samples(data_small_jsonl, split="val")


def test_image_paths_are_relative_to_the_jsonl(data_small_jsonl, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path.parent)  # loading must not depend on the working directory
    s = load_samples(data_small_jsonl).samples[0]
    assert Path(s.query_image) == data_small_jsonl.parent / "images" / "q1.png"


def test_jsonl_sharegpt_jsonl_round_trip_is_lossless(data_small_jsonl, tmp_path):
    original = load_samples(data_small_jsonl).samples
    sg = tmp_path / "llamafactory" / "gleamx_train.json"
    n_rows = write_sharegpt(original, sg)
    # bilingual samples give a row per language; the label-only sample one label row per language
    assert n_rows == 2 + 2 + 1 + 2
    info = json.loads((sg.parent / "dataset_info.json").read_text())
    assert info["gleamx_train"]["formatting"] == "sharegpt"
    assert info["gleamx_train"]["columns"] == {"messages": "messages", "images": "images"}
    rows = json.loads(sg.read_text())
    assert rows[0]["messages"][0]["content"].count("<image>") == 2 and len(rows[0]["images"]) == 2
    assert detect_format(sg) == "sharegpt"
    back = load_samples(sg).samples
    assert back == original
    out = tmp_path / "back" / "data.jsonl"
    write_samples(back, out)
    again = load_samples(out).samples
    assert again == original


def test_foreign_sharegpt_rows_take_label_from_verdict_and_view_from_prompt(data_small_jsonl, tmp_path):
    rows = [
        {"conversations": [
            {"from": "human", "value": "<image><image>Image 1 is a UAV (drone) image and image 2 is a satellite image."},
            {"from": "gpt", "value": "Both show a red roof.\nAnswer: Yes"}],
         "images": [str(data_small_jsonl.parent / "images/q1.png"), str(data_small_jsonl.parent / "images/s1.png")]},
        {"messages": [{"role": "user", "content": "<image><image>Same place?"},
                      {"role": "assistant", "content": "Answer: No"}],
         "images": ["images/q1.png", "images/s2.png"], "query_view": "ground"},
        {"messages": [{"role": "user", "content": "<image><image>Same place?"},
                      {"role": "assistant", "content": "Hmm."}],
         "images": ["images/q1.png", "images/s2.png"], "query_view": "ground"},
    ]
    path = data_small_jsonl.parent / "foreign.json"
    path.write_text(json.dumps(rows))
    report = validate(path)
    assert report.n_valid == 2
    (p,) = report.problems
    assert str(p).startswith(f"{path}:3: label: missing, and the assistant answer has no readable verdict line")
    samples = load_samples(path, skip_bad=True).samples
    assert (samples[0].label, samples[0].query_view, samples[0].explanation) == (
        True, "uav", {"en": "Both show a red roof.\nAnswer: Yes"})
    assert (samples[1].label, samples[1].query_view, samples[1].explanation) == (False, "ground", {})


def test_features_dataset_decodes_images_lazily(data_small_jsonl):
    ds = to_dataset(load_samples(data_small_jsonl).samples)
    assert ds.features == FEATURES
    row = ds[0]
    assert row["query_image"].size == (48, 48) and row["label"] is True
    assert row["explanation"]["zh"].endswith("结论：是")
    assert json.loads(row["meta"]) == {"location_id": "L1"}


def test_hf_dataset_with_column_mapping(data_small_jsonl, tmp_path):
    import datasets

    samples = load_samples(data_small_jsonl).samples
    ds = datasets.Dataset.from_dict(
        {
            "drone": [s.query_image for s in samples],
            "sat": [s.satellite_image for s in samples],
            "view": [s.query_view for s in samples],
            "match": ["yes" if s.label else "no" for s in samples],
            "key": [s.id for s in samples],
            "city": ["x"] * len(samples),
        },
        features=datasets.Features({"drone": datasets.Image(), "sat": datasets.Image(), "view": datasets.Value("string"),
                                    "match": datasets.Value("string"), "key": datasets.Value("string"),
                                    "city": datasets.Value("string")}),
    )
    ds.save_to_disk(tmp_path / "hf")
    mapping = "query_image=drone,satellite_image=sat,query_view=view,label=match,id=key"
    got = load_samples(tmp_path / "hf", columns=mapping).samples
    assert [(s.id, s.label, s.query_view) for s in got] == [(s.id, s.label, s.query_view) for s in samples]
    assert got[0].meta == {"city": "x"}  # unmapped columns are kept as metadata
    with pytest.raises(GleamDataError, match=r"columns: no column\(s\) \['nope'\]"):
        load_samples(tmp_path / "hf", columns="label=nope")


def test_cli_validate_exit_codes_and_one_line_errors(data_small_jsonl, tmp_path, gleamx_cli):
    ok = gleamx_cli("data", "validate", data_small_jsonl)
    assert ok.returncode == 0, ok.stderr
    assert "4 valid of 4 records, 0 problem(s)" in ok.stdout
    line = _append(data_small_jsonl, _good_row(query_view="drone"))
    bad = gleamx_cli("data", "validate", data_small_jsonl)
    assert bad.returncode == 1
    assert f"{data_small_jsonl}:{line}: query_view: unknown view 'drone'" in bad.stdout
    missing = gleamx_cli("data", "validate", tmp_path / "none.jsonl")
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "none.jsonl: path: not found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_first_line_of_an_exception_is_short_and_never_empty():
    from gleamx.errors import first_line

    assert first_line(ValueError("\n  bad value\nmore detail")) == "bad value"
    assert first_line(ValueError("bad value"), with_type=True) == "ValueError: bad value"
    assert first_line(RuntimeError("")) == "RuntimeError"  # an empty message must not raise IndexError
    assert len(first_line(OSError("x" * 500))) == 160


def _hf_dict_with_embedded_images(data_small_jsonl: Path, out: Path) -> list:
    """A DatasetDict (train/validation/test, no split column) whose image columns hold PIL images,
    saved with ``save_to_disk``: the images are embedded as bytes, there are no image files."""
    import datasets
    from PIL import Image

    samples = load_samples(data_small_jsonl).samples
    features = datasets.Features({
        "id": datasets.Value("string"), "query_image": datasets.Image(), "satellite_image": datasets.Image(),
        "query_view": datasets.Value("string"), "label": datasets.Value("bool")})

    def part(rows):
        return datasets.Dataset.from_dict({
            "id": [s.id for s in rows], "query_image": [Image.open(s.query_image).convert("RGB") for s in rows],
            "satellite_image": [Image.open(s.satellite_image).convert("RGB") for s in rows],
            "query_view": [s.query_view for s in rows], "label": [s.label for s in rows]}, features=features)

    dd = datasets.DatasetDict({"train": part(samples[:2]), "validation": part(samples[2:3]), "test": part(samples[3:])})
    dd.save_to_disk(out)
    return samples


def test_datasetdict_splits_keep_their_names(data_small_jsonl, tmp_path):
    _hf_dict_with_embedded_images(data_small_jsonl, tmp_path / "hf")
    report = validate(tmp_path / "hf")
    assert report.ok and report.by_split == {"train": 2, "val": 1, "test": 1}
    assert [s.split for s in load_samples(tmp_path / "hf").samples] == ["train", "train", "val", "test"]
    assert [s.id for s in load_samples(tmp_path / "hf", split="test").samples] == ["d"]


def test_loader_returns_a_features_dataset_that_training_consumes(data_small_jsonl):
    from gleamx.train.sft_data import build_sft_dataset

    res = load_samples(data_small_jsonl, split="train")
    assert res.dataset.features == FEATURES and len(res.dataset) == 2 and res.n_bad == 0
    assert res.dataset[0]["query_image"].size == (48, 48)  # decoded lazily, on access
    sft = build_sft_dataset(res.dataset, "both", "explain")
    assert sft.n_samples == 2 and len(sft.dataset) == 4
    assert sft.dataset[0]["images"][0].size == (48, 48)
    assert sft.dataset["id"] == [r["id"] for r in build_sft_dataset(res.samples, "both", "explain").dataset]


def test_convert_dataset_with_embedded_images_writes_image_files(data_small_jsonl, tmp_path, gleamx_cli):
    from PIL import Image

    samples = _hf_dict_with_embedded_images(data_small_jsonl, tmp_path / "hf")
    out = tmp_path / "back" / "all.jsonl"
    run = gleamx_cli("data", "convert", tmp_path / "hf", "--to", "jsonl", "--out", out)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["query_image"] == "all_images/000001-query.png"  # relative to the JSONL, beside it
    assert [r["split"] for r in rows] == ["train", "train", "val", "test"]
    back = load_samples(out).samples
    assert [(s.id, s.label, s.query_view) for s in back] == [(s.id, s.label, s.query_view) for s in samples]
    for got, want in zip(back, samples):
        assert Image.open(got.query_image).tobytes() == Image.open(want.query_image).convert("RGB").tobytes()
    sg = tmp_path / "sg" / "all.json"
    run = gleamx_cli("data", "convert", tmp_path / "hf", "--to", "sharegpt", "--task", "label", "--out", sg)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert [s.id for s in load_samples(sg).samples] == [s.id for s in samples]


def test_dataset_cards_share_one_size_category():
    from gleamx.data.card import size_category

    cases = {0: "n<1K", 999: "n<1K", 1000: "1K<n<10K", 99_999: "10K<n<100K", 100_000: "100K<n<1M",
             1_000_000: "1M<n<10M", 10**9: "n>100M"}
    assert {n: size_category(n) for n in cases} == cases


def test_a_garbled_verdict_line_is_a_problem_where_data_enters(data_small_jsonl):
    """`Answer: Nor` on a same-place pair is not "no verdict": validate and the loaders refuse it, as they refuse
    a verdict that disagrees with the label; an explanation without any verdict line stays valid."""
    line = _append(data_small_jsonl, _good_row(id="g", explanation={"en": "Roads match.\nAnswer: Nor"}))
    _append(data_small_jsonl, _good_row(id="h", explanation={"en": "Roads match, no verdict line."}))
    problems = [str(p) for p in validate(data_small_jsonl).problems]
    assert problems == [f"{data_small_jsonl}:{line}: explanation.en: its verdict line is not a clear verdict "
                        "(expected Answer: Yes or Answer: No, 结论：是 or 结论：否, as the last marked line)"]
    with pytest.raises(GleamDataError, match=rf":{line}: explanation.en: its verdict line is not a clear verdict"):
        load_samples(data_small_jsonl)


def test_a_killed_process_scratch_is_swept_and_a_live_or_recent_one_is_kept(tmp_path):
    import os
    import subprocess
    import sys

    from gleamx.data.arrow import sweep_stale_scratch

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)
    old = tmp_path / f"gleamx-arrow-{dead}-abc"
    recent = tmp_path / f"gleamx-arrow-{dead}-def"
    live = tmp_path / f"gleamx-arrow-{os.getpid()}-ghi"
    other = tmp_path / "gleamx-arrow-notapid"
    for d in (old, recent, live, other):
        d.mkdir()
        (d / "rows.arrow").write_bytes(b"x")
    for d in (old, live, other):
        os.utime(d, (1, 1))
    assert sweep_stale_scratch(tmp_path) == [old]
    assert not old.exists() and recent.exists() and live.exists() and other.exists()
