"""``gleamx data push``: publish a GLEAM-X dataset as a ``datasets``-loadable repo on the Hugging Face Hub.

The data (a ``gleamx review import`` / ``annotate`` / ``data pairs`` output, any JSONL or ShareGPT source, or a
Hugging Face dataset) is read with :func:`gleamx.data.load_samples`, so it is checked like every loader checks it.
Each split becomes its own ``datasets`` split, with both image columns as ``datasets.Image()`` holding the image
*bytes* (the repo is self-contained: no path points back into the machine it was made on), written as Parquet
shards ``data/<split>-NNNNN-of-NNNNN.parquet`` of at most ``--max-shard-size`` MB. A dataset card
(``README.md``) goes beside them: YAML metadata naming the splits' files (so ``datasets.load_dataset(repo_id)``
and ``gleamx ... --data repo_id`` read it), the sources the images come from and the note that their licences
apply, counts per split, view, label and language, the annotation models (``meta.annotated_by`` and an
annotation run's ``cost.json``) and the human revision statistics (``review_stats.json``).

The repo is always written to a local folder first (``--preview-dir``, default ``DIR/.hub_preview``): that
folder is exactly what is uploaded, so ``--dry-run`` lists every file without touching the network, and a real
push uploads the same files (``HfApi.upload_folder``; shards of an earlier push that this one does not write are
deleted). The token comes from ``HF_TOKEN`` or ``huggingface-cli login`` and is
never read, printed or written by gleamx.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.checks import check_given, check_positive, check_ranges, field_help
from gleamx.choices import LANGS, SPLITS, VIEWS
from gleamx.curate.annotate import COST_NAME
from gleamx.data.card import size_category
from gleamx.data.schema import IMAGE_COLUMNS, with_image_bytes
from gleamx.errors import GleamConfigError, GleamDataError, first_line
from gleamx.outputs import claim_folder
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


def dataset_card(repo_id: str, dd: Any, cost: dict[str, Any] | None = None,
                 review_stats: dict[str, Any] | None = None) -> str:
    """The ``README.md`` of the Hub repo: YAML metadata (splits and their files) and what the data is."""
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
        return Path(cfg.preview_dir)
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
    claim_folder(folder, "--preview-dir", command="data push", identity={}, overwrite=True, exclusive=True,
                 marker=MARKER)
    (folder / MARKER).write_text("written by gleamx data push; replaced by the next push\n", encoding="utf-8")


def write_repo(dd: Any, folder: Path, card: str, max_shard_mb: float = 500.0) -> list[tuple[str, int]]:
    """Write ``dd`` as ``data/<split>-NNNNN-of-NNNNN.parquet`` shards and ``card`` as ``README.md`` into
    ``folder`` (emptied first); returns every file to upload with its size, README.md first."""
    _clear(folder)
    (folder / DATA_DIR).mkdir()
    (folder / "README.md").write_text(card, encoding="utf-8", newline="\n")
    files = ["README.md"]
    for name, ds in dd.items():
        n = max(1, min(len(ds), math.ceil(ds.data.nbytes / (max_shard_mb * 1024 * 1024))))
        for i in range(n):
            rel = f"{DATA_DIR}/{name}-{i:05d}-of-{n:05d}.parquet"
            ds.shard(num_shards=n, index=i, contiguous=True).to_parquet(str(folder / rel))
            files.append(rel)
    return [(f, (folder / f).stat().st_size) for f in files]


def push_dataset(cfg: DataPushConfig) -> DataPushPlan:
    """Write the repo of ``cfg.data`` to the preview folder and, unless ``cfg.dry_run``, upload it to
    ``cfg.repo_id`` (see the module docstring)."""
    folder = _preview_dir(cfg)
    cost, review_stats = _side_files(cfg)
    dd = hub_dataset(cfg.data, allow_outside_paths=cfg.allow_outside_paths)
    card = dataset_card(cfg.repo_id, dd, cost, review_stats)
    files = write_repo(dd, folder, card, cfg.max_shard_size)
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


__all__ = ["DataPushConfig", "DataPushPlan", "dataset_card", "hub_dataset", "push_dataset", "write_repo"]
