"""``gleamx data push``: a GLEAM-X dataset -> a datasets-loadable Hub repo (Parquet with the image bytes, a card),
round-tripped through ``save_to_disk``/``load_from_disk``, Parquet, and a local stand-in for the Hub upload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gleamx.cli.main import main
from gleamx.retrieval.data import load_retrieval
from gleamx.retrieval.from_pairs import layout_from_pairs
from gleamx.errors import GleamConfigError

ROWS = [  # two sources, three splits (one a sub-split whose name the Hub spells val_hard), en/zh, one unexplained
    ("t0", "train", True, "uav", {"en": "Same roofs.\nAnswer: Yes", "zh": "屋顶相同。\n结论：是"}, "university1652",
     {"annotated_by": "gpt-4o"}),
    ("t1", "train", False, "ground", {"en": "Other roads.\nAnswer: No"}, "university1652", {"annotated_by": "gpt-4o"}),
    ("t2", "train", True, "street_map", None, "vigor", {"source": "vigor"}),
    ("e0", "test", True, "uav", {"en": "Same pond.\nAnswer: Yes", "zh": "同一池塘。\n结论：是"}, "university1652",
     {"annotated_by": "gpt-4o", "revised": True, "review_decision": "edit"}),
    ("e1", "test", False, "panorama", {"en": "No pond.\nAnswer: No", "zh": "没有池塘。\n结论：否"}, "vigor",
     {"annotated_by": "doubao", "revised": True, "review_decision": "accept"}),
    ("v0", "val-hard", False, "uav", {"en": "Twin layout, other place.\nAnswer: No"}, "university1652", {}),
]
COST = {"models": [{"model": "gpt-4o", "requests": 9, "prompt_tokens": 9000, "completion_tokens": 900, "cost": 0.0315}],
        "this_run": {"model": "gpt-4o", "requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": None}}
STATS = {"split": "test", "n_split": 3, "n_reviewed": 3, "n_accepted": 1, "n_edited": 1, "n_rejected": 1,
         "n_unreviewed": 0, "share_edited": 0.5,
         "languages": {"en": {"n": 2, "n_edited": 1, "share_edited": 0.5, "mean_edit_distance": 3.5,
                              "mean_edit_distance_edited": 7.0},
                       "zh": {"n": 2, "n_edited": 0, "share_edited": 0.0, "mean_edit_distance": 0.0,
                              "mean_edit_distance_edited": None}}}


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """A review-import-like directory: <split>.jsonl files, JPEG and PNG images, review_stats.json, cost.json."""
    root = tmp_path / "reviewed"
    by_split: dict[str, list[dict[str, Any]]] = {}
    for i, (sid, split, label, view, expl, source, meta) in enumerate(ROWS):
        for kind, ext in (("q", "jpg"), ("s", "png")):
            path = root / "img" / f"{sid}-{kind}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24 + i, 20), (40 * i, 200 - 30 * i, 90 if kind == "q" else 10)).save(path)
        row = {"id": sid, "query_image": f"img/{sid}-q.jpg", "satellite_image": f"img/{sid}-s.png",
               "query_view": view, "label": label, "source": source, "split": split, "meta": meta}
        if expl:
            row["explanation"] = expl
        by_split.setdefault(split.split("-")[0], []).append(row)
    for name, rows in by_split.items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                            encoding="utf-8")
    (root / "cost.json").write_text(json.dumps(COST), encoding="utf-8")
    (root / "review_stats.json").write_text(json.dumps(STATS), encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _image_bytes(value: Any) -> bytes:
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value["path"]
    return Path(value).read_bytes()


def _content(ds: Any) -> dict[str, tuple]:
    """Every sample by id: label, view, explanations, source, split, meta and the bytes of both images."""
    import datasets

    for col in ("query_image", "satellite_image"):
        ds = ds.cast_column(col, datasets.Image(decode=False))
    return {r["id"]: (r["label"], r["query_view"], {k: v for k, v in r["explanation"].items() if v}, r["source"],
                      r["split"], json.loads(r["meta"] or "{}"), _image_bytes(r["query_image"]),
                      _image_bytes(r["satellite_image"]))
            for r in ds}


def _noisy(root: Path, side: int, seed: int = 0) -> None:
    """Replace every image under ``root`` with random noise of ``side`` x ``side`` pixels (same name and format):
    noise does not compress, so its bytes set a shard's size."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for path in sorted(root.rglob("*")):
        if path.suffix in (".jpg", ".png"):
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)


def _rows(ds: Any) -> list[tuple]:
    """The rows of ``ds`` (a Dataset or IterableDataset) in order: id, label, view, explanations, meta, both
    images' bytes."""
    import datasets

    for col in ("query_image", "satellite_image"):
        ds = ds.cast_column(col, datasets.Image(decode=False))
    return [(r["id"], r["label"], r["query_view"], {k: v for k, v in (r["explanation"] or {}).items() if v},
             json.loads(r["meta"] or "{}"), _image_bytes(r["query_image"]), _image_bytes(r["satellite_image"]))
            for r in ds]


def _source(dataset: Path) -> dict[str, tuple]:
    from gleamx.data import load_samples

    return _content(load_samples(dataset).dataset)


def test_dry_run_lists_every_file_and_writes_the_card(dataset: Path, monkeypatch, capsys) -> None:
    from huggingface_hub import HfApi

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--dry-run must not touch the Hub")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    assert main(["data", "push", str(dataset), "--repo-id", "me/gleamx-u1652", "--dry-run"]) == 0
    out = capsys.readouterr().out
    preview = dataset / ".hub_preview"
    on_disk = sorted(p.relative_to(preview).as_posix() for p in preview.rglob("*")
                     if p.is_file() and p.name not in (".gleamx_hub_preview", ".gleamx_outputs.json"))
    assert on_disk == ["README.md", "data/test-00000-of-00001.parquet", "data/train-00000-of-00001.parquet",
                       "data/val_hard-00000-of-00001.parquet"]
    assert "would upload 4 file(s) to dataset me/gleamx-u1652 (public; train=3, val_hard=1, test=2)" in out
    for f in on_disk:
        assert f"  {f} ({(preview / f).stat().st_size:,} bytes)" in out

    from huggingface_hub import DatasetCard

    card = DatasetCard.load(preview / "README.md")
    assert card.data.configs == [{"config_name": "default", "data_files": [
        {"split": "train", "path": "data/train-*"}, {"split": "val_hard", "path": "data/val_hard-*"},
        {"split": "test", "path": "data/test-*"}]}]
    assert card.data.license == "other" and card.data.language == ["en", "zh"]
    text = card.text
    assert "respect the source datasets' licences" in text
    assert "| university1652 | 4 |" in text and "| vigor | 2 |" in text  # from source and meta.source
    # counts per split: samples, positive, negative, uav, street_map, panorama, ground, en, zh, revised
    assert "| train | 3 | 2 | 1 | 1 | 1 | 0 | 1 | 2 | 1 | 0 |" in text
    assert "| test | 2 | 1 | 1 | 1 | 0 | 1 | 0 | 2 | 2 | 2 |" in text
    assert "| **total** | 6 | 3 | 3 | 3 | 1 | 1 | 1 | 5 | 3 | 2 |" in text
    assert "| uav | 2 | 1 |" in text
    assert "| gpt-4o | 3 |" in text and "| doubao | 1 |" in text  # meta.annotated_by
    assert "| gpt-4o | 9 | 9000 | 900 | 0.03 |" in text  # cost.json
    assert "1 accepted, 1 edited, 1 rejected" in text and "| en | 2 | 1 | 50.0% | 3.50 | 7.00 |" in text


def test_save_to_disk_and_parquet_round_trip(dataset: Path, tmp_path: Path) -> None:
    import datasets

    from gleamx.curate.publish import DataPushConfig, hub_dataset, push_dataset
    from gleamx.data import load_samples

    want = _source(dataset)
    # a JSONL file works too; its repo goes beside it by default
    plan = push_dataset(DataPushConfig(data=str(dataset / "test.jsonl"), repo_id="me/x", dry_run=True))
    assert plan.preview_dir == dataset / ".hub_preview" and plan.splits == {"test": 2}
    dd = hub_dataset(dataset)
    assert list(dd) == ["train", "val_hard", "test"]
    assert all(isinstance(dd[s].features[c], datasets.Image) for s in dd for c in ("query_image", "satellite_image"))
    # the images are embedded: the repo holds bytes, and no path of this machine
    raw = dd["train"].cast_column("query_image", datasets.Image(decode=False))
    assert all(v["bytes"] and "/" not in (v["path"] or "") for v in raw["query_image"])
    dd.save_to_disk(str(tmp_path / "disk"))
    shutil.rmtree(dataset / "img")  # nothing may point back at the source images
    assert _content(load_samples(tmp_path / "disk").dataset) == want
    assert {k: len(v) for k, v in datasets.load_from_disk(str(tmp_path / "disk")).items()} == {
        "train": 3, "val_hard": 1, "test": 2}
    # the Parquet shards a push uploads, read by datasets' own Parquet builder
    parquet = datasets.load_dataset("parquet", data_files={"test": str(plan.preview_dir / "data" / "test-*")})
    assert _content(parquet["test"]) == {k: v for k, v in want.items() if k in ("e0", "e1")}


def test_push_to_a_local_hub_stand_in_then_train_and_eval_read_it(dataset: Path, tmp_path: Path, monkeypatch,
                                                                    capsys) -> None:
    import datasets
    from huggingface_hub import HfApi

    from gleamx.data import load_samples
    from gleamx.train.sft_data import build_sft_dataset

    hub = tmp_path / "hub"
    calls: list[tuple[str, Any]] = []

    def create_repo(self: HfApi, repo_id: str, **kw: Any) -> str:
        calls.append(("create_repo", (repo_id, kw["repo_type"], kw["private"])))
        (hub / repo_id).mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/datasets/{repo_id}"

    def upload_folder(self: HfApi, *, repo_id: str, folder_path: str, repo_type: str, allow_patterns: list[str],
                      delete_patterns: list[str], **kw: Any) -> None:
        calls.append(("upload_folder", (repo_id, repo_type)))
        target = hub / repo_id
        for pattern in delete_patterns:
            for old in target.glob(pattern):
                old.unlink()
        for rel in allow_patterns:
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(folder_path) / rel, target / rel)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    _noisy(dataset, 128)  # ~75 KB a sample: two never fit in 0.1 MB
    want = _source(dataset)
    preview = tmp_path / "preview"
    assert main(["data", "push", str(dataset), "--repo-id", "me/gx", "--private", "--preview-dir", str(preview),
                 "--max-shard-size", "0.1"]) == 0
    assert "uploaded" in capsys.readouterr().out
    assert calls == [("create_repo", ("me/gx", "dataset", True)), ("upload_folder", ("me/gx", "dataset"))]
    repo = hub / "me" / "gx"
    shards = sorted(p.name for p in (repo / "data").iterdir())
    assert len([s for s in shards if s.startswith("train-")]) == 3  # 3 samples of ~75 KB: a shard each
    assert not (repo / ".gleamx_hub_preview").exists()
    for name in ("images", "img"):
        assert not (repo / name).exists()
    shutil.rmtree(dataset / "img")
    got = load_samples(repo)  # what --data me/gx reads once downloaded: datasets.load_dataset on the repo
    assert _content(got.dataset) == want
    parquet = datasets.load_dataset("parquet", data_files={"test": str(repo / "data" / "test-*.parquet")})
    assert isinstance(parquet["test"].features["query_image"], datasets.Image)
    assert sorted(parquet["test"]["id"]) == ["e0", "e1"]
    # training reads it as it is, and so does evaluation
    sft = build_sft_dataset(load_samples(repo, split="train").dataset, lang="en", task="label")
    assert sft.n_samples == 3
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": i, "prediction": "Answer: Yes"}) + "\n" for i in ("e0", "e1")))
    assert main(["eval", "--predictions", str(preds), "--data", str(repo), "--split", "test", "--task", "label",
                 "--bootstrap", "0", "--no-explanation-metrics", "--output", str(tmp_path / "ev")]) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["n"] == 2 and results["accuracy"] == 0.5
    # ... and so do retrieval eval and localize: the gallery is the split's satellite tiles (one per distinct
    # image: no meta names them here), the queries the query views of its positive pairs
    derived = layout_from_pairs(repo, "test", tmp_path / "layout")
    assert (derived.n_gallery, derived.n_queries, derived.n_unlocated) == (2, 1, 1)
    rset = load_retrieval(derived.root, "test")
    assert [q.view for q in rset.queries] == ["uav"] and rset.positive(rset.queries[0]) == 0
    assert (rset.gallery[0].image.read_bytes() == want["e0"][7] and rset.queries[0].image.read_bytes() == want["e0"][6])
    assert main(["retrieval", "eval", "--encoder", "tiny", "--data", str(repo), "--split", "test", "--ks", "1",
                 "--num-workers", "0", "--output", str(tmp_path / "rev")]) == 0
    assert json.loads((tmp_path / "rev" / "retrieval_results.json").read_text())["n_query"] == 1
    assert layout_from_pairs(repo, "test", tmp_path / "layout") == derived  # a rerun: the same layout
    # a second push (of the stand-in repo itself: the source images are gone) replaces the first one's shards
    assert main(["data", "push", str(repo), "--repo-id", "me/gx", "--preview-dir", str(preview)]) == 0
    assert sorted(p.name for p in (repo / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet", "val_hard-00000-of-00001.parquet"]
    assert _content(load_samples(repo).dataset) == want


@pytest.mark.parametrize("estimate", ["encoded", "blind"])
def test_shards_stay_under_the_bound_and_load_back_as_pushed(tmp_path: Path, monkeypatch, estimate: str) -> None:
    """Every shard is at most --max-shard-size, the card reports them, and datasets (streaming or not) and
    gleamx's loader read back the pushed rows in order. ``blind``: the size estimate says 0 bytes a row, so every
    shard is first written too big and the bound holds only by measuring and re-splitting."""
    import datasets
    import numpy as np

    from gleamx.curate import publish
    from gleamx.data import load_samples

    root = tmp_path / "big"
    (root / "img").mkdir(parents=True)
    for split, n in (("train", 23), ("test", 9)):
        rows = [{"id": f"{split}{i:02d}", "query_image": f"img/{split}{i}-q.jpg",
                 "satellite_image": f"img/{split}{i}-s.png", "query_view": "uav", "label": i % 3 != 0,
                 "explanation": {"en": f"Sample {i}.\nAnswer: {'Yes' if i % 3 else 'No'}"}, "source": "synthetic",
                 "split": split, "meta": {"i": i}} for i in range(n)]
        for r in rows:
            for col in ("query_image", "satellite_image"):
                Image.new("RGB", (8, 8)).save(root / r[col])
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _noisy(root, 64)  # ~12 KB PNG + ~5 KB JPEG a sample: about ten to a 0.2 MB shard
    if estimate == "blind":
        monkeypatch.setattr(publish, "_row_bytes", lambda table: np.zeros(table.num_rows, dtype=np.int64))
    want = {split: _rows(load_samples(root, split=split).dataset) for split in ("train", "test")}
    plan = publish.push_dataset(publish.DataPushConfig(data=str(root), repo_id="me/big", dry_run=True,
                                                       max_shard_size=0.2))
    repo = plan.preview_dir
    shards = {split: sorted((repo / "data").glob(f"{split}-*.parquet")) for split in want}
    assert len(shards["train"]) >= 2 and len(shards["test"]) >= 1
    assert all(p.stat().st_size <= 0.2 * 1024 * 1024 for v in shards.values() for p in v)
    assert sorted(p.name for p in (repo / "data").iterdir()) == sorted(p.name for v in shards.values() for p in v)
    n = len(shards["train"])
    assert [p.name for p in shards["train"]] == [f"train-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    # the card states each split's shards, their total size and the bound
    card = (repo / "README.md").read_text(encoding="utf-8")
    assert "of at most 0.2 MB each (`--max-shard-size`)" in card
    for split, files in shards.items():
        size = sum(p.stat().st_size for p in files)
        assert f"| {split} | {len(files)} | {size / 1024 / 1024:.2f} MB ({size:,} bytes) |" in card
    # read back: datasets streaming and materialised, and gleamx's loader: the same rows in the same order
    shutil.rmtree(root / "img")
    streamed = datasets.load_dataset(str(repo), streaming=True)
    # a cache of its own: datasets keys a local folder's cache by its name and card, not its files
    loaded = datasets.load_dataset(str(repo), cache_dir=str(tmp_path / "hf_cache"))
    for split, rows in want.items():
        assert _rows(streamed[split]) == rows
        assert _rows(loaded[split]) == rows
        assert _rows(load_samples(repo, split=split).dataset) == rows
        assert isinstance(loaded[split].features["query_image"], datasets.Image)
        raw = loaded[split].cast_column("satellite_image", datasets.Image(decode=False))
        assert all(v["bytes"] for v in raw["satellite_image"])  # embedded, not a path


def test_a_folder_rewritten_in_place_is_read_anew(dataset: Path, tmp_path: Path) -> None:
    """datasets keys a local folder's Arrow cache by its name and card only: gleamx's loader must not read a
    second push into the same preview folder (same splits, same card, other rows) from the first one's cache."""
    from gleamx.curate.publish import DataPushConfig, push_dataset
    from gleamx.data import load_samples

    cfg = DataPushConfig(data=str(dataset / "test.jsonl"), repo_id="me/x", dry_run=True,
                         preview_dir=str(tmp_path / "same"))
    push_dataset(cfg)
    assert [s.label for s in load_samples(cfg.preview_dir).samples] == [True, False]
    rows = [json.loads(line) for line in (dataset / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r["label"] = not r["label"]
        r.pop("explanation")  # its verdict line would contradict the new label
    (dataset / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    push_dataset(cfg)
    assert [s.label for s in load_samples(cfg.preview_dir).samples] == [False, True]


def test_bad_settings_are_one_line(dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from huggingface_hub import HfApi

    from gleamx.curate.publish import DataPushConfig, push_dataset

    with pytest.raises(GleamConfigError, match=r"--repo-id: expected user/name, got 'nouser'"):
        DataPushConfig(data=str(dataset), repo_id="nouser")
    with pytest.raises(GleamConfigError, match=r"--max-shard-size: expected a size in MB > 0, got 0"):
        DataPushConfig(data=str(dataset), repo_id="a/b", max_shard_size=0)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(GleamConfigError, match="holds files gleamx did not write .* needs a folder of its own"):
        push_dataset(DataPushConfig(data=str(dataset), repo_id="a/b", dry_run=True, preview_dir=str(busy)))
    assert (busy / "keep.txt").read_text() == "mine"
    with pytest.raises(GleamConfigError, match=r"--max-shard-size: sample 't0' \(train\) alone makes a 0\.0\d+ MB "
                                               r"shard, over 0\.001 MB \(raise --max-shard-size\)$"):
        push_dataset(DataPushConfig(data=str(dataset), repo_id="a/b", dry_run=True, max_shard_size=0.001,
                                    preview_dir=str(tmp_path / "small")))
    with pytest.raises(GleamConfigError, match=r"--annotations: .*nowhere.* not found"):
        push_dataset(DataPushConfig(data=str(dataset), repo_id="a/b", dry_run=True,
                                    annotations=str(tmp_path / "nowhere")))

    def offline(self: HfApi, *args: Any, **kw: Any) -> None:
        raise OSError("Offline mode is enabled.\nmore detail")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    assert main(["data", "push", str(dataset), "--repo-id", "a/b"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # (after datasets' progress bars)
    assert err[-1] == "error: push to a/b: OSError: Offline mode is enabled."


def test_the_preview_folder_is_never_the_data_nor_another_commands_output(dataset: Path, tmp_path: Path) -> None:
    """A push replaces its preview folder whole: the data folder itself, a folder holding it, or the output of
    another gleamx command (a generated dataset, which has a record) is refused in one line, untouched; an earlier
    push's preview is replaced (the default preview folder lies inside the data, which is fine)."""
    from gleamx.curate.publish import DataPushConfig, push_dataset
    from gleamx.synth import synthesize

    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    for preview, said in ((dataset, "is the data"), (dataset.parent, "holds the data")):
        with pytest.raises(GleamConfigError, match=rf"^--preview-dir: .* {said} .*choose another --preview-dir$"):
            push_dataset(DataPushConfig(data=str(dataset), repo_id="a/b", dry_run=True, preview_dir=str(preview)))
    synth = tmp_path / "synth"
    synthesize(synth, n=4, seed=0, image_size=32)
    kept = {p: p.read_bytes() for p in synth.rglob("*") if p.is_file()}
    with pytest.raises(GleamConfigError, match=r"^--preview-dir: .*synth holds the output of `gleamx data synth`"):
        push_dataset(DataPushConfig(data=str(dataset), repo_id="a/b", dry_run=True, preview_dir=str(synth)))
    assert {p: p.read_bytes() for p in synth.rglob("*") if p.is_file()} == kept
    for _ in range(2):  # the default preview, inside the data, made and then replaced
        plan = push_dataset(DataPushConfig(data=str(dataset), repo_id="a/b", dry_run=True))
        assert plan.preview_dir == dataset / ".hub_preview"
    assert all(p.read_bytes() == b for p, b in before.items())
