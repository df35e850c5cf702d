"""``gleamx export lmms-eval``: a GLEAM-X split as an lmms-eval task folder, so any model lmms-eval runs is scored on
GLEAM-X, and gleamx's own numbers are checked by a harness gleamx did not write.

The folder (``--out``) holds three files:

* ``data.parquet``: the split's samples with gleamx's fields and both images' bytes (one self-contained file that
  ``datasets``' Parquet loader reads; images decode to PIL).
* ``gleamx_<lang>_<task>.yaml``: the task (name = file stem). It names the data file by its absolute path (lmms-eval
  0.7.0, the newest release that runs beside gleamx, reads a relative one from the working directory: a moved folder
  is exported again), decodes greedily with ``--max-new-tokens`` as ``gleamx eval`` does and never cuts an answer
  short (``until: []``: lmms-eval's default stops at a blank line, which would drop an explanation's verdict), keeps
  every answer as generated (``reasoning_tags: none``: lmms-eval strips ``<think>`` blocks by default, gleamx does
  not), and reports ``accuracy``, ``accuracy_positive``, ``accuracy_negative`` and ``invalid_rate``.
* ``utils.py``: imports its functions from :mod:`gleamx.eval.lmms_task`, so the prompt text, the images' order
  and decoding, and the verdict parser are gleamx's own (gleamx must be installed where lmms-eval runs).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.checks import TOKENS_MAX, check_choice, check_given, check_int, check_ranges, field_help
from gleamx.choices import LANGS, TASKS, Lang, Task
from gleamx.outputs import claim_folder, overwrite_option

COMMAND = "export lmms-eval"
DATA_FILE = "data.parquet"
UTILS_FILE = "utils.py"
LMMS_SPLIT = "test"  # the split name lmms-eval scores (test_split); the gleamx split exported is in the metadata


@dataclass(kw_only=True)
class LmmsExportConfig:
    """Write a GLEAM-X split as an lmms-eval task folder (YAML, utils.py, Parquet data with the images)."""

    data: str = field(metadata=field_help("GLEAM-X data: JSONL/ShareGPT file, directory or Hub id"))
    out: str = field(metadata=field_help("the task folder to write (give it to lmms-eval as --include_path)"))
    split: str | None = field(default="test", metadata=field_help("only this split (none: every row)"))
    lang: Lang = field(default="en", metadata=field_help("language of the prompt"))
    task: Task = field(default="explain", metadata=field_help(
        "explain: verdict and explanation; label: the verdict alone"))
    columns: str | None = field(default=None, metadata=field_help(
        "for Hugging Face datasets: gleamx_field=column pairs, e.g. query_image=drone,label=match"))
    max_new_tokens: int = field(default=256, metadata=field_help(
        "longest answer lmms-eval generates (greedy, as gleamx eval decodes)", low=1, high=TOKENS_MAX))
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        check_given("--data", self.data, "a GLEAM-X file, directory or Hub dataset id")
        check_given("--out", self.out, "a folder to write the task into")
        check_choice("--lang", self.lang, LANGS)
        check_choice("--task", self.task, TASKS)
        check_int("--max-new-tokens", self.max_new_tokens, 1)
        check_ranges(self)

    @property
    def task_name(self) -> str:
        """The lmms-eval task name (``--tasks``), also the YAML's file stem."""
        return f"gleamx_{self.lang}_{self.task}"


@dataclass
class LmmsExport:
    """What :func:`export_lmms_task` wrote."""

    out: Path
    task: str
    split: str | None
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "task": self.task, "split": self.split, "n": self.n,
                "files": [f"{self.task}.yaml", UTILS_FILE, DATA_FILE]}

    def summary_lines(self) -> list[str]:
        which = f"split {self.split}" if self.split else "every split"
        return [f"lmms-eval task {self.task}: {self.n} samples of {which} in {self.out} "
                f"({self.task}.yaml, {UTILS_FILE}, {DATA_FILE})",
                f"score a model: python -m lmms_eval --model MODEL --model_args pretrained=PATH_OR_ID "
                f"--tasks {self.task} --include_path {self.out}",
                "the task reads prompts and verdicts with gleamx's own code: install gleamx where lmms-eval runs"]


def _source(value: str) -> str:
    """A path as an absolute path (the same data named two ways is one export); a Hub id as given."""
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def task_yaml(cfg: LmmsExportConfig, *, data_file: Path, n: int, version: str) -> str:
    """The task YAML reading ``data_file``. Values are JSON (valid YAML); ``!function`` names the functions of
    ``utils.py``."""
    from gleamx.eval.lmms_task import METRICS

    q = json.dumps
    metrics = "".join(
        f"  - metric: {name}\n    aggregation: {agg if agg == 'mean' else '!function utils.' + agg}\n"
        f"    higher_is_better: {'false' if name == 'invalid_rate' else 'true'}\n" for name, agg in METRICS.items())
    return (
        f"# Written by `gleamx export lmms-eval` (gleamx {version}). Score a model:\n"
        f"#   python -m lmms_eval --model MODEL --model_args pretrained=PATH_OR_ID --tasks {cfg.task_name} "
        f"--include_path THIS_FOLDER\n"
        "# utils.py imports gleamx (prompt text, image order and decoding, verdict parser): "
        "install gleamx beside lmms-eval.\n"
        f"task: {cfg.task_name}\n"
        "dataset_path: parquet\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        "    # absolute: lmms-eval 0.7.0 reads a relative path from its working directory (moved? export again)\n"
        f"    {LMMS_SPLIT}: {q(str(data_file.resolve()))}\n"
        f"test_split: {LMMS_SPLIT}\n"
        "output_type: generate_until\n"
        "doc_to_visual: !function utils.doc_to_visual\n"
        "doc_to_text: !function utils.doc_to_text\n"
        "doc_to_target: !function utils.doc_to_target\n"
        "process_results: !function utils.process_results\n"
        "lmms_eval_specific_kwargs:\n"
        "  default:\n"
        f"    lang: {q(cfg.lang)}\n"
        f"    task: {q(cfg.task)}\n"
        "# greedy, as gleamx eval decodes; no stop string (lmms-eval's default stops at a blank line)\n"
        "generation_kwargs:\n"
        f"  max_new_tokens: {cfg.max_new_tokens}\n"
        "  temperature: 0\n"
        "  do_sample: false\n"
        "  num_beams: 1\n"
        "  until: []\n"
        "# every answer scored as generated: lmms-eval strips <think> blocks unless told not to, gleamx eval does not\n"
        "reasoning_tags: none\n"
        "metric_list:\n"
        f"{metrics}"
        "metadata:\n"
        "  version: 1\n"
        f"  gleamx: {q(version)}\n"
        f"  data: {q(_source(cfg.data))}\n"
        f"  split: {q(cfg.split)}\n"
        f"  n: {n}\n")


_UTILS_PY = '''"""The GLEAM-X lmms-eval task's functions, written by `gleamx export lmms-eval` (gleamx {version}).

They are gleamx's own (gleamx.eval.lmms_task), so lmms-eval builds the same prompt, passes the same two
images in the same order and reads verdicts with the same parser as `gleamx eval`."""

try:
    from gleamx.eval.lmms_task import (accuracy_negative, accuracy_positive, doc_to_target, doc_to_text,
                                       doc_to_visual, process_results)
except ImportError as e:
    raise ImportError("the GLEAM-X task reads prompts and verdicts with gleamx's own code: install gleamx "
                      f"where lmms-eval runs (pip install gleamx); {{e}}") from None

__all__ = ["accuracy_negative", "accuracy_positive", "doc_to_target", "doc_to_text", "doc_to_visual",
           "process_results"]
'''


def utils_py(version: str) -> str:
    """``utils.py``: the task's functions, imported from gleamx (one line naming the fix when it is missing)."""
    return _UTILS_PY.format(version=version)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_lmms_task(cfg: LmmsExportConfig) -> LmmsExport:
    """Write the task folder ``cfg.out`` (checked before the data is read, written after it is)."""
    import gleamx
    from gleamx.data import load_samples
    from gleamx.data.arrow import quiet
    from gleamx.data.schema import with_image_bytes

    yaml_name = f"{cfg.task_name}.yaml"
    identity = {"data": _source(cfg.data), "split": cfg.split, "lang": cfg.lang, "task": cfg.task,
                "columns": cfg.columns, "max_new_tokens": cfg.max_new_tokens}
    claim = dict(command=COMMAND, identity=identity, overwrite=cfg.overwrite, inputs={"--data": cfg.data},
                 writes=[yaml_name, UTILS_FILE, DATA_FILE])
    claim_folder(cfg.out, "--out", write=False, **claim)  # a refused --out is said before the data is read
    data = load_samples(cfg.data, split=cfg.split, columns=cfg.columns).dataset
    folder = claim_folder(cfg.out, "--out", **claim)
    out = folder.path
    tmp = out / f"{DATA_FILE}.tmp"
    with quiet():  # the summary says what was written
        with_image_bytes(data).to_parquet(str(tmp))
    os.replace(tmp, out / DATA_FILE)
    _write_atomic(out / UTILS_FILE, utils_py(gleamx.__version__))
    _write_atomic(out / yaml_name, task_yaml(cfg, data_file=out / DATA_FILE, n=len(data), version=gleamx.__version__))
    folder.done()
    return LmmsExport(out, cfg.task_name, cfg.split, len(data))


__all__ = ["LmmsExport", "LmmsExportConfig", "export_lmms_task", "task_yaml", "utils_py"]
