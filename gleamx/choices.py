"""Every fixed choice gleamx offers, defined once: a ``Literal`` type for dataclass fields (the CLI's
``choices`` come from it) and the tuple of its values for checks in code."""

from __future__ import annotations

from typing import Literal, get_args

Lang = Literal["en", "zh"]
LangOrBoth = Literal["en", "zh", "both"]
Task = Literal["explain", "label"]
View = Literal["uav", "street_map", "panorama", "ground"]
Split = Literal["train", "val", "test"]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Arch = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
DataFormat = Literal["auto", "jsonl", "sharegpt", "hf"]

LANGS: tuple[str, ...] = get_args(Lang)
LANGS_OR_BOTH: tuple[str, ...] = get_args(LangOrBoth)
TASKS: tuple[str, ...] = get_args(Task)
VIEWS: tuple[str, ...] = get_args(View)
SPLITS: tuple[str, ...] = get_args(Split)
DTYPES: tuple[str, ...] = get_args(Dtype)
ARCHS: tuple[str, ...] = get_args(Arch)
FORMATS: tuple[str, ...] = get_args(DataFormat)
Difficulty = Literal["toy", "easy", "medium", "hard"]
DIFFICULTY_NAMES: tuple[str, ...] = get_args(Difficulty)
