"""Configs of the data commands: ``gleamx data validate``, ``convert`` and ``cvgl``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gleamx.checks import check_choice, check_given
from gleamx.errors import GleamConfigError
from gleamx.choices import (FORMATS, LANGS_OR_BOTH, SPLITS, TASKS, VIEWS, DataFormat, LangOrBoth, Split, Task,
                            View)
from gleamx.data.cvgl import CVACT_SETS, LAYOUTS, CvactSet, Layout
from gleamx.outputs import overwrite_option


@dataclass(kw_only=True)
class DataSourceConfig:
    """How a command reads GLEAM-X data (shared by every command that reads samples)."""

    format: DataFormat = field(default="auto", metadata={"help": "input format (default: detect from the path)"})
    split: str | None = field(default=None, metadata={"help": "only this split (train/val/test/...)"})
    columns: str | None = field(default=None, metadata={
        "help": "for Hugging Face datasets: gleamx_field=column pairs, e.g. query_image=drone,label=match"})
    allow_outside_paths: bool = field(default=False, metadata={
        "help": "accept image paths that resolve (symlinks followed) outside the dataset directory (default: "
                "refused, so a downloaded dataset cannot make gleamx read other images)"})

    def __post_init__(self) -> None:
        check_choice("--format", self.format, FORMATS)


@dataclass(kw_only=True)
class ValidateConfig(DataSourceConfig):
    """Count samples and list every problem (exit 1 if any)."""

    path: str = field(metadata={"positional": True, "help": "JSONL/ShareGPT file, dataset directory or Hub dataset id"})
    decode: bool = field(default=True, metadata={
        "help": "decode every image (--no-decode: only check that the image files exist)"})
    json: bool = field(default=False, metadata={"help": "print the report as JSON"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_given("path", self.path, "a JSONL/ShareGPT file, dataset directory or Hub dataset id")


@dataclass(kw_only=True)
class ConvertConfig(DataSourceConfig):
    """Convert between gleamx JSONL and ShareGPT/LLaMA-Factory."""

    src: str = field(metadata={"positional": True, "help": "input file, directory or Hub dataset id"})
    out: str = field(metadata={"help": "output file (.jsonl for gleamx, .json for ShareGPT)"})
    to: Literal["jsonl", "sharegpt"] = field(metadata={"help": "output format"})
    lang: LangOrBoth = field(default="both", metadata={"help": "ShareGPT: languages to write"})
    task: Task = field(default="explain", metadata={"help": "ShareGPT: answer variant"})
    skip_bad: bool = field(default=False, metadata={
        "help": "skip bad records (and report how many) instead of stopping"})
    overwrite: bool = field(default=False, metadata={"help": "replace --out if it exists"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_given("src", self.src, "an input file, directory or Hub dataset id")
        check_given("--out", self.out, "an output file")
        check_choice("--to", self.to, ("jsonl", "sharegpt"))
        check_choice("--lang", self.lang, LANGS_OR_BOTH)
        check_choice("--task", self.task, TASKS)


@dataclass(kw_only=True)
class CvglConfig:
    """Write the retrieval layout for a CVGL dataset on disk (nothing is copied)."""

    root: str = field(metadata={"positional": True, "help": "the dataset's root directory"})
    layout: Layout = field(metadata={
        "help": "the dataset's layout; paired: ROOT/satellite/<id>.<ext> + ROOT/<view>/<id>.<ext> "
                "[+ ROOT/splits.csv]"})
    out: str = field(metadata={"help": "output dir (its retrieval/ points into root; nothing is copied)"})
    split: Split = field(default="test", metadata={"help": "which split to write (val: paired layouts only)"})
    distractors: bool = field(default=True, metadata={
        "help": "University-1652: keep the 250 satellite tiles no query matches (--no-distractors: drop them, "
                "Sample4Geo's protocol)"})
    cross_area: bool = field(default=False, metadata={
        "help": "VIGOR: train on NewYork+Seattle, test on SanFrancisco+Chicago (default: same-area)"})
    cvact_set: CvactSet = field(default="val", metadata={
        "help": "CVACT: the test split is CVACT_val (ACT_data.mat's valSet, 8,884 pairs, what papers report) or "
                "CVACT_test (the ANU_data_test folder)"})
    view: View | None = field(default=None, metadata={
        "help": "paired: read only ROOT/<view>/ (or ROOT/query/ when there is no such folder) as this view "
                "(default: every ROOT/<view>/ folder named after a view)"})
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        check_given("root", self.root, "the dataset's root directory")
        check_given("--out", self.out, "an output directory")
        check_choice("--layout", self.layout, LAYOUTS)
        check_choice("--split", self.split, SPLITS)
        if self.view is not None:
            check_choice("--view", self.view, VIEWS)
        check_choice("--cvact-set", self.cvact_set, CVACT_SETS)
        if self.cvact_set != "val" and self.layout != "cvact":
            raise GleamConfigError(f"--cvact-set: applies to --layout cvact only, not {self.layout}")
