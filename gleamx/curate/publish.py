"""``gleamx data push``: publish a GLEAM-X dataset as a ``datasets``-loadable repo on the Hugging Face Hub.

The data (a ``gleamx review import`` / ``annotate`` / ``data pairs`` output, any JSONL or ShareGPT source, or a
Hugging Face dataset) is read with :func:`gleamx.data.load_samples`, so it is checked like every loader checks it.
Each split becomes its own ``datasets`` split, with both image columns as ``datasets.Image()`` holding the image
*bytes* (the repo is self-contained: no path points back into the machine it was made on), written as Parquet
shards ``data/<split>-NNNNN-of-NNNNN.parquet`` of at most ``--max-shard-size`` MB (each one measured once
written, see :func:`write_shards`). A dataset card (``README.md``) goes beside them: YAML metadata naming the
splits' files (so ``datasets.load_dataset(repo_id)`` and ``gleamx ... --data repo_id`` read it), the sources the
images come from and the note that their licences apply, counts per split, view, label and language, each split's
shard count and size, the annotation models (``meta.annotated_by`` and an annotation run's ``cost.json``) and the
human revision statistics (``review_stats.json``).

The repo is always written to a local folder first (``--preview-dir``, default ``DIR/.hub_preview``): that
folder is exactly what is uploaded, so ``--dry-run`` lists every file without touching the network, and a real
push uploads the same files (``HfApi.upload_folder``; shards of an earlier push that this one does not write are
deleted). The token comes from ``HF_TOKEN`` or ``huggingface-cli login`` and is
never read, printed or written by gleamx.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.checks import check_given, check_positive, check_ranges, field_help
from gleamx.choices import LANGS, SPLITS, VIEWS
from gleamx.curate.annotate import COST_NAME
from gleamx.data.arrow import quiet
from gleamx.data.card import size_category
from gleamx.data.schema import IMAGE_COLUMNS, with_image_bytes
from gleamx.errors import GleamConfigError, GleamDataError, first_line
from gleamx.outputs import claim_folder, read_record
from gleamx.sources import missing_path

PREVIEW_NAME = ".hub_preview"
MARKER = ".gleamx_hub_preview"  # says a preview folder is gleamx's own, so a new push may replace it
DATA_DIR = "data"
REVIEW_STATS, COST = "review_stats.json", "cost.json"
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")  # what a ``datasets`` split name may be


@dataclass(kw_only=True)
class DataPushConfig:
    """Publish a GLEAM-X dataset to the Hub as a datasets-loadable repo (Parquet with images, a dataset card)."""

    data: str = field(metadata={"positional": True, "help": "the dataset: a directory (review import, annotate or "
                                                             "data pairs output), a JSONL/ShareGPT file or a Hub id"})
    repo_id: str = field(metadata={"help": "user/name of the dataset repo on the Hub"})
    private: bool = field(default=False, metadata={"help": "create the repo private"})
    dry_run: bool = field(default=False, metadata={
        "help": "write the repo to the preview folder and list every file, without uploading"})
    preview_dir: str | None = field(default=None, metadata={
        "help": "folder the repo is written to before upload (default: DIR/.hub_preview)"})
    annotations: str | None = field(default=None, metadata={
        "help": "gleamx annotate --out directory (or its cost.json) whose models and tokens the card reports "
                "(default: DIR/cost.json when present)"})
    max_shard_size: float = field(default=500.0, metadata=field_help("largest Parquet shard, in MB", low=0,
                                                                     high=100_000))
    allow_outside_paths: bool = field(default=False, metadata={
        "help": "read images outside the dataset directory and its manifest's roots"})

    def __post_init__(self) -> None:
        check_given("data", self.data, "a dataset directory, JSONL/ShareGPT file or Hub id")
        check_given("--repo-id", self.repo_id, "user/name of the dataset repo on the Hub")
        parts = self.repo_id.split("/")
        if len(parts) != 2 or not all(re.fullmatch(r"[\w.-]+", p) for p in parts):
            raise GleamConfigError(f"--repo-id: expected user/name, got {self.repo_id!r}")
        check_positive("--max-shard-size", self.max_shard_size, what="a size in MB > 0")
        check_ranges(self)


@dataclass
class DataPushPlan:
    """What ``gleamx data push`` wrote to ``preview_dir`` and uploaded (or, with ``--dry-run``, would upload)."""

    repo_id: str
    private: bool
    preview_dir: Path
    files: list[tuple[str, int]]  # (path in the repo, bytes), README.md first
    splits: dict[str, int]        # Hub split name -> samples
    card: str
    uploaded: bool = False

    def summary_lines(self) -> list[str]:
        """What ``gleamx data push`` prints: what went (or would go) where, then each file and its size."""
        verb = "uploaded" if self.uploaded else "would upload"
        splits = ", ".join(f"{k}={n}" for k, n in self.splits.items())
        return [f"{verb} {len(self.files)} file(s) to dataset {self.repo_id} "
                f"({'private' if self.private else 'public'}; {splits}), written to {self.preview_dir}:",
                *(f"  {name} ({size:,} bytes)" for name, size in self.files)]


# --- samples -> DatasetDict ----------------------------------------------------------------------------------


def _hub_split(name: str) -> str:
    """``name`` as a ``datasets`` split name (``val-hard`` -> ``val_hard``; the ``split`` column keeps it)."""
    return name if _SPLIT_NAME.match(name) else re.sub(r"\W", "_", name)


def _split_order(name: str) -> tuple[int, str]:
    base = next((s for s in SPLITS if name == s or name.startswith(s + "_")), None)
    return (SPLITS.index(base) if base else len(SPLITS), name)


def hub_dataset(data: str | os.PathLike, *, allow_outside_paths: bool = False) -> Any:
    """The samples of ``data`` as a ``datasets.DatasetDict`` by split, with gleamx's features and every image's
    bytes embedded (what :func:`push_dataset` uploads)."""
    import datasets

    from gleamx.data import load_samples

    ds = load_samples(data, allow_outside_paths=allow_outside_paths).dataset
    for col in IMAGE_COLUMNS:  # rows as {bytes, path}, never decoded here
        ds = ds.cast_column(col, datasets.Image(decode=False))
    by_split: dict[str, list[int]] = {}
    for i, name in enumerate(ds["split"]):
        by_split.setdefault(name, []).append(i)
    names: dict[str, str] = {}
    for name in by_split:
        hub = _hub_split(name)
        if hub in names:
            raise GleamDataError.at(str(data), None, "split", f"splits {names[hub]!r} and {name!r} both become the "
                                                              f"Hub split {hub!r} (rename one)")
        names[hub] = name
    out = datasets.DatasetDict()
    for hub in sorted(names, key=_split_order):
        out[hub] = with_image_bytes(ds.select(by_split[names[hub]]), desc=f"embedding images ({hub})")
    return out


# --- the dataset card ----------------------------------------------------------------------------------------


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise GleamDataError.at(str(path), None, what, "expected a JSON object (as gleamx writes it)") from None
    if not isinstance(value, dict):
        raise GleamDataError.at(str(path), None, what, "expected a JSON object (as gleamx writes it)")
    return value


def _side_files(cfg: DataPushConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(``cost.json`` of the annotation run, ``review_stats.json``), each when there is one."""
    base = Path(cfg.data)
    base = base if base.is_dir() else base.parent
    if cfg.annotations:
        ann = Path(cfg.annotations)
        # an annotate --out directory keeps it in annotate/; a bare folder holding cost.json works too
        cost_path = next((c for c in (ann / COST_NAME, ann / COST) if c.is_file()), ann / COST_NAME) \
            if ann.is_dir() else ann
        if not cost_path.is_file():
            raise GleamConfigError(f"--annotations: {cost_path} not found (expected an annotate --out directory "
                                   f"or its {COST})")
    else:
        cost_path = base / COST
    return _read_json(cost_path, "cost"), _read_json(base / REVIEW_STATS, "review_stats")


def _meta(value: str | None) -> dict[str, Any]:
    try:
        m = json.loads(value) if value else {}
    except ValueError:
        return {}
    return m if isinstance(m, dict) else {}


@dataclass
class _Counts:
    """What the card says about the samples, gathered from their text columns (images are not read)."""

    splits: dict[str, Counter] = field(default_factory=dict)
    views: dict[str, Counter] = field(default_factory=dict)
    sources: Counter = field(default_factory=Counter)
    annotators: Counter = field(default_factory=Counter)

    @classmethod
    def of(cls, dd: Any) -> _Counts:
        c = cls()
        for name, ds in dd.items():
            n = c.splits.setdefault(name, Counter())
            cols = ds.select_columns(["query_view", "label", "explanation", "source", "meta"])
            for row in cols:
                meta = _meta(row["meta"])
                yes = "positive" if row["label"] else "negative"
                n["samples"] += 1
                n[yes] += 1
                n[row["query_view"]] += 1
                c.views.setdefault(row["query_view"], Counter())[yes] += 1
                for lang in LANGS:
                    n[f"lang_{lang}"] += bool((row["explanation"] or {}).get(lang))
                n["revised"] += bool(meta.get("revised"))
                for src in {row["source"], meta.get("source")} - {None, ""}:
                    c.sources[str(src)] += 1
                if meta.get("annotated_by"):
                    c.annotators[str(meta["annotated_by"])] += 1
        return c


def _fmt(x: Any, pct: bool = False) -> str:
    if x is None:
        return "-"
    if pct:
        return f"{100 * x:.1f}%"
    return f"{x:.2f}" if isinstance(x, float) else str(x)


def _annotation_lines(c: _Counts, cost: dict[str, Any] | None) -> list[str]:
    lines = ["## Annotation", ""]
    if not c.annotators and not cost:
        return lines + ["No annotation record: the explanations (if any) come with the source data.", ""]
    if c.annotators:
        lines += ["Explanations written by an MLLM with `gleamx annotate` (a reply is kept only when its verdict "
                  "equals the label):", "", "| model | samples |", "|---|---|",
                  *(f"| {m} | {n} |" for m, n in sorted(c.annotators.items())), ""]
    models = (cost or {}).get("models") or []
    if models:
        lines += ["Requests and tokens of the annotation run (`cost.json`):", "",
                  "| model | requests | tokens in | tokens out | cost |", "|---|---|---|---|---|",
                  *(f"| {m.get('model')} | {m.get('requests')} | {m.get('prompt_tokens')} | "
                    f"{m.get('completion_tokens')} | {_fmt(m.get('cost'))} |" for m in models if isinstance(m, dict)),
                  ""]
    return lines


def _review_lines(stats: dict[str, Any] | None) -> list[str]:
    lines = ["## Human revision", ""]
    if not stats:
        return lines + ["No revision record (`review_stats.json`): the explanations were not reviewed by people.", ""]
    lines += [f"Split `{stats.get('split')}` was reviewed with `gleamx review`: {stats.get('n_reviewed')} of "
              f"{stats.get('n_split')} samples reviewed, {stats.get('n_accepted')} accepted, {stats.get('n_edited')} "
              f"edited, {stats.get('n_rejected')} rejected (left out); share edited "
              f"{_fmt(stats.get('share_edited'), pct=True)}. The original text of each reviewed sample is in "
              "`meta.original_explanation`.", ""]
    langs = {k: v for k, v in (stats.get("languages") or {}).items() if isinstance(v, dict) and v.get("n")}
    if langs:
        lines += ["| language | reviewed | edited | share edited | mean edit distance (chars) | mean over edited |",
                  "|---|---|---|---|---|---|",
                  *(f"| {k} | {v.get('n')} | {v.get('n_edited')} | {_fmt(v.get('share_edited'), pct=True)} | "
                    f"{_fmt(v.get('mean_edit_distance'))} | {_fmt(v.get('mean_edit_distance_edited'))} |"
                    for k, v in langs.items()), ""]
    return lines


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MB ({n:,} bytes)"


def _files_lines(shards: Mapping[str, Sequence[tuple[str, int]]] | None, max_shard_mb: float | None) -> list[str]:
    if shards is None:
        return []
    bound = f" of at most {max_shard_mb:g} MB each (`--max-shard-size`)" if max_shard_mb else ""
    sizes = {name: sum(n for _, n in files) for name, files in shards.items()}
    return ["## Files", "", f"Each split is Parquet shards `data/<split>-NNNNN-of-NNNNN.parquet`{bound}.", "",
            "| split | shards | size |", "|---|---|---|",
            *(f"| {name} | {len(files)} | {_mb(sizes[name])} |" for name, files in shards.items()),
            f"| **total** | {sum(len(f) for f in shards.values())} | {_mb(sum(sizes.values()))} |", ""]


def dataset_card(repo_id: str, dd: Any, cost: dict[str, Any] | None = None,
                 review_stats: dict[str, Any] | None = None, *,
                 shards: Mapping[str, Sequence[tuple[str, int]]] | None = None,
                 max_shard_mb: float | None = None) -> str:
    """The ``README.md`` of the Hub repo: YAML metadata (splits and their files) and what the data is; with
    ``shards`` (:func:`write_shards`' result), each split's shard count and size too."""
    from huggingface_hub import DatasetCard, DatasetCardData

    c = _Counts.of(dd)
    views = [v for v in VIEWS if v in c.views] + sorted(v for v in c.views if v not in VIEWS)
    total = sum(n["samples"] for n in c.splits.values())
    data = DatasetCardData(
        license="other", pretty_name=f"GLEAM-X: {repo_id.split('/')[-1]}",
        task_categories=["image-text-to-text", "visual-question-answering"],
        language=[lang for lang in LANGS if any(n[f"lang_{lang}"] for n in c.splits.values())] or None,
        size_categories=[size_category(total)], tags=["geo-localization", "cross-view", "gleamx"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"{DATA_DIR}/{s}-*"} for s in dd]}])

    def row(name: str, n: Counter) -> str:
        return (f"| {name} | {n['samples']} | {n['positive']} | {n['negative']} | "
                + " | ".join(str(n[v]) for v in views) + f" | {n['lang_en']} | {n['lang_zh']} | {n['revised']} |")

    lines = [
        f"# {data.pretty_name}", "",
        "Cross-view geo-localization pairs in the GLEAM-X format: a query view (UAV, street map, panorama or ground "
        "photo) and a satellite tile, whether they show the same place (`label`), and an explanation in English "
        "and/or Chinese whose last line is the verdict (`Answer: Yes` / `结论：是`). Published with "
        "`gleamx data push`; the images are embedded in the Parquet files.", "",
        "## Licence", "",
        "This repo adds no licence of its own: **respect the source datasets' licences.** The images come from the "
        "datasets below, and each one's licence and terms of use apply to its images and to anything derived from "
        "them. Read them at the source before you use or redistribute this data.", "",
        "| source | samples |", "|---|---|", *(f"| {s} | {n} |" for s, n in sorted(c.sources.items())), "",
        "## Counts", "",
        "| split | samples | positive | negative | " + " | ".join(views) + " | en | zh | revised |",
        "|---|---|---|---|" + "---|" * len(views) + "---|---|---|",
        *(row(name, n) for name, n in c.splits.items()),
        row("**total**", sum(c.splits.values(), Counter())), "",
        "| view | positive | negative |", "|---|---|---|",
        *(f"| {v} | {c.views[v]['positive']} | {c.views[v]['negative']} |" for v in views), "",
        *_files_lines(shards, max_shard_mb),
        *_annotation_lines(c, cost), *_review_lines(review_stats),
        "## Use", "",
        "```python", "from datasets import load_dataset", "", f'ds = load_dataset("{repo_id}")', "```", "",
        "```bash",
        f"gleamx data validate {repo_id}",
        f"gleamx sft --config qwen2.5-vl-3b/sft_lora --dataset_name {repo_id}",
        f"gleamx eval --model Qwen/Qwen2.5-VL-3B-Instruct --data {repo_id} --split test --task explain --lang en",
        "```", "",
        "Columns: `id`, `query_image` (image 1), `satellite_image` (image 2), `query_view`, `label`, `explanation` "
        "(`en`, `zh`), `source`, `split`, `meta` (a JSON string: location ids, negative kind, annotation and "
        "revision records).", "",
    ]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


# --- the repo folder and the upload --------------------------------------------------------------------------


def _preview_dir(cfg: DataPushConfig) -> Path:
    if cfg.preview_dir:
        folder = Path(cfg.preview_dir)
        data = Path(cfg.data).expanduser()
        if data.exists():  # a preview inside the data folder is the default; never the data, or a folder holding it
            f, d = folder.expanduser().resolve(), data.resolve()
            if f == d or f in d.parents:
                raise GleamConfigError(f"--preview-dir: {cfg.preview_dir} {'is' if f == d else 'holds'} the data "
                                       f"{cfg.data}, and a push replaces its preview folder whole; choose another "
                                       "--preview-dir")
        return folder
    problem = missing_path(cfg.data)
    if problem:  # a local folder that is not there: say so, not what would follow from it
        raise GleamConfigError(problem)
    data = Path(cfg.data)
    if data.is_dir():
        return data / PREVIEW_NAME
    if data.is_file():
        return data.parent / PREVIEW_NAME
    raise GleamConfigError(f"{cfg.data}: no such local folder (for a Hub dataset id, name a local folder to write "
                           "the repo in with --preview-dir)")


def _clear(folder: Path) -> None:
    """Make ``folder`` an empty preview folder under the one output rule (:mod:`gleamx.outputs`): what an earlier
    push wrote there is replaced (it is a scratch copy of the repo), a folder holding anything else is refused."""
    record = read_record(folder)
    if record is not None and record.get("command") != "data push":  # never replaced: only a preview is scratch
        raise GleamConfigError(f"--preview-dir: {folder} holds the output of `gleamx {record.get('command')}`, and a "
                               "push replaces its preview folder whole; choose another --preview-dir")
    claim_folder(folder, "--preview-dir", command="data push", identity={}, overwrite=True, exclusive=True,
                 marker=MARKER)
    (folder / MARKER).write_text("written by gleamx data push; replaced by the next push\n", encoding="utf-8")


def _row_bytes(table: Any) -> Any:
    """Each row's encoded size in ``table`` (a ``pyarrow.Table``): the bytes of its strings and binaries (image
    bytes included) plus fixed-width values. An estimate of its Parquet size; :func:`write_shards` checks it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for col in table.columns:
        t = col.type
        if pa.types.is_binary(t) or pa.types.is_string(t) or pa.types.is_large_binary(t) \
                or pa.types.is_large_string(t):
            sizes += pc.fill_null(pc.binary_length(col), 0).to_numpy()
        else:
            try:
                sizes += max(1, t.bit_width // 8)
            except ValueError:  # not fixed-width (a list, say): the re-split check covers what this leaves out
                pass
    return sizes


def _plan(ds: Any, budget: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` row ranges of ``ds`` whose estimated sizes each fit ``budget`` bytes."""
    ranges: list[tuple[int, int]] = []
    start, size = 0, 0
    for batch_start, table in zip(range(0, len(ds), 1000), ds.with_format("arrow").iter(batch_size=1000)):
        for i, n in enumerate(_row_bytes(table).tolist(), start=batch_start):
            if i > start and size + n > budget:
                ranges.append((start, i))
                start, size = i, 0
            size += n
    ranges.append((start, len(ds)))
    return ranges


def write_shards(dd: Any, folder: Path, max_shard_mb: float = 500.0) -> dict[str, list[tuple[str, int]]]:
    """Write each split of ``dd`` as ``data/<split>-NNNNN-of-NNNNN.parquet`` shards of at most ``max_shard_mb``
    MB under ``folder``; returns each split's shards (path in the repo, bytes), in order.

    Arrow sizes are not Parquet sizes (text compresses, the footer holds the schema), so the rows are packed by
    their estimated encoded size and every shard is measured once written: one over the bound is split in two
    and written again, so the bound holds whatever the estimate missed."""
    limit = int(max_shard_mb * 1024 * 1024)
    (folder / DATA_DIR).mkdir(exist_ok=True)
    out: dict[str, list[tuple[str, int]]] = {}
    with quiet():  # a progress bar per shard written says nothing: the summary lists the files
        for name, ds in dd.items():
            out[name] = _write_split(ds, name, folder, limit, max_shard_mb)
    return out


def _write_split(ds: Any, name: str, folder: Path, limit: int, max_shard_mb: float) -> list[tuple[str, int]]:
    """:func:`write_shards` for one split: shards of at most ``limit`` bytes, each measured once written."""
    probe = folder / DATA_DIR / f".{name}.probe.parquet"
    ds.select([]).to_parquet(str(probe))  # what a shard costs with no rows: schema, metadata, footer
    overhead = probe.stat().st_size
    probe.unlink()
    todo = _plan(ds, max(1, limit - overhead))[::-1]  # a stack: the shards come out in row order
    parts: list[Path] = []
    while todo:
        start, stop = todo.pop()
        part = folder / DATA_DIR / f".{name}.part{len(parts):05d}.parquet"
        ds.select(range(start, stop)).to_parquet(str(part))
        if part.stat().st_size <= limit:
            parts.append(part)
            continue
        if stop - start == 1:  # a row cannot be split: the bound is too small for the data
            size = part.stat().st_size
            part.unlink()
            sid = ds.select_columns(["id"])[start]["id"]
            raise GleamConfigError(f"--max-shard-size: sample {sid!r} ({name}) alone makes a {size / 1024 / 1024:.3f} "
                                   f"MB shard, over {max_shard_mb:g} MB (raise --max-shard-size)")
        mid = (start + stop) // 2
        todo += [(mid, stop), (start, mid)]
    shards = []  # named once their count is known
    for i, part in enumerate(parts):
        rel = f"{DATA_DIR}/{name}-{i:05d}-of-{len(parts):05d}.parquet"
        part.rename(folder / rel)
        shards.append((rel, (folder / rel).stat().st_size))
    return shards


def write_repo(dd: Any, folder: Path, repo_id: str, max_shard_mb: float = 500.0, *,
               cost: dict[str, Any] | None = None,
               review_stats: dict[str, Any] | None = None) -> tuple[list[tuple[str, int]], str]:
    """Write ``dd`` as Parquet shards (:func:`write_shards`) and then its dataset card, which reports them, as
    ``README.md`` into ``folder`` (emptied first); returns every file to upload with its size, README.md first,
    and the card."""
    _clear(folder)
    shards = write_shards(dd, folder, max_shard_mb)
    card = dataset_card(repo_id, dd, cost, review_stats, shards=shards, max_shard_mb=max_shard_mb)
    (folder / "README.md").write_text(card, encoding="utf-8", newline="\n")
    files = [("README.md", (folder / "README.md").stat().st_size)]
    return files + [f for split in shards.values() for f in split], card


def push_dataset(cfg: DataPushConfig) -> DataPushPlan:
    """Write the repo of ``cfg.data`` to the preview folder and, unless ``cfg.dry_run``, upload it to
    ``cfg.repo_id`` (see the module docstring)."""
    folder = _preview_dir(cfg)
    cost, review_stats = _side_files(cfg)
    dd = hub_dataset(cfg.data, allow_outside_paths=cfg.allow_outside_paths)
    files, card = write_repo(dd, folder, cfg.repo_id, cfg.max_shard_size, cost=cost, review_stats=review_stats)
    plan = DataPushPlan(cfg.repo_id, cfg.private, folder, files, {k: len(v) for k, v in dd.items()}, card)
    if cfg.dry_run:
        return plan
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()  # reads HF_TOKEN or the login cache; gleamx never handles the token
    try:
        api.create_repo(cfg.repo_id, repo_type="dataset", private=cfg.private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=cfg.repo_id, repo_type="dataset",
                          allow_patterns=[f for f, _ in files], delete_patterns=[f"{DATA_DIR}/*.parquet"],
                          commit_message="Upload GLEAM-X dataset with gleamx data push")
    except HfHubHTTPError as e:
        raise GleamConfigError(f"push to {cfg.repo_id}: {first_line(e)}") from None
    except Exception as e:  # offline, no token, ...
        raise GleamConfigError(f"push to {cfg.repo_id}: {first_line(e, with_type=True)}") from None
    plan.uploaded = True
    return plan


__all__ = ["DataPushConfig", "DataPushPlan", "dataset_card", "hub_dataset", "push_dataset", "write_repo",
           "write_shards"]
