"""``gleamx predict``: one pair from the command line, through the engine the app serves.

The answer, its verdict and P(yes) are what ``gleamx app`` (and ``gleamx eval``) give for the same pair: the same
processor, prompt, greedy decoding and P(yes) slot. Without ``--model`` and ``--adapter`` it runs on the app's tiny
demo model (built once into ``--workdir``), which shows the mechanics, not a real answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gleamx.app.config import AppConfig
from gleamx.checks import (PIXELS_MAX, TOKENS_MAX, check_choice, check_int, check_pixel_budget, check_ranges,
                           field_help)
from gleamx.choices import DTYPES, LANGS, TASKS, VIEWS, Dtype, Lang, Task, View
from gleamx.errors import GleamConfigError

VERDICT_TEXT = {True: "yes (the same place)", False: "no (different places)",
                None: "none (the answer has no verdict line)"}



@dataclass(kw_only=True)
class PredictConfig:
    """Ask the model whether a query view and a satellite image show the same place, and why."""

    query: str = field(metadata=field_help("the query view image (UAV, street map, panorama or ground photo)"))
    satellite: str = field(metadata=field_help("the satellite image"))
    view: View = field(default="uav", metadata=field_help("what the query image is: " + ", ".join(VIEWS)))
    model: str | None = field(default=None, metadata=field_help(
        "MLLM directory or Hub id (default: --adapter's base model; with neither, the app's tiny demo model)"))
    adapter: str | None = field(default=None, metadata=field_help("PEFT adapter directory (an SFT or GRPO run) or Hub id"))
    lang: Lang = field(default="en", metadata=field_help("language of the prompt and the answer"))
    task: Task = field(default="explain", metadata=field_help("explain (explanation + verdict) or label (verdict only)"))
    max_new_tokens: int | None = field(default=None, metadata=field_help(
        "longest answer (default 16 for label, 256 for explain)", low=1, high=TOKENS_MAX))
    dtype: Dtype = field(default="auto", metadata=field_help("the MLLM's weights' dtype"))
    min_pixels: int | None = field(default=None, metadata=field_help("override the per-image pixel floor", low=1,
                                                                     high=PIXELS_MAX))
    max_pixels: int | None = field(default=None, metadata=field_help("override the per-image pixel budget", low=1,
                                                                     high=PIXELS_MAX))
    workdir: str | None = field(default=None, metadata=field_help(
        "where the tiny demo model is built without --model/--adapter (default: the app's)"))
    json: bool = field(default=False, metadata=field_help("print the answer, verdict and P(yes) as JSON"))

    def __post_init__(self) -> None:
        check_choice("--view", self.view, VIEWS)
        check_choice("--lang", self.lang, LANGS)
        check_choice("--task", self.task, TASKS)
        check_choice("--dtype", self.dtype, DTYPES)
        check_int("--max-new-tokens", self.max_new_tokens, 1, optional=True)
        check_pixel_budget("--min-pixels", self.min_pixels, "--max-pixels", self.max_pixels)
        check_ranges(self)


@dataclass
class Prediction:
    """One pair's answer, its parsed verdict (``None``: no verdict line) and P(yes)."""

    answer: str
    verdict: bool | None
    p_yes: float | None
    model: str
    adapter: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "verdict": self.verdict, "p_yes": self.p_yes, "model": self.model,
                "adapter": self.adapter}

    def summary_lines(self) -> list[str]:
        p = "n/a (no verdict line)" if self.p_yes is None else f"{self.p_yes:.4f}"
        return [self.answer, "", f"verdict: {VERDICT_TEXT[self.verdict]}", f"P(yes): {p}"]

    def json_text(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)


def _image_bytes(path: str, flag: str) -> bytes:
    p = Path(path).expanduser()
    if not p.is_file():
        raise GleamConfigError(f"{flag}: {path}: not found (expected an image file)")
    return p.read_bytes()


def predict(cfg: PredictConfig) -> Prediction:
    """Load the model (and adapter) as the app does and answer for the one pair."""
    from gleamx.app.assets import Assets, base_model, demo_run, local_adapter
    from gleamx.app.engine import Engine, Pair, load_upload

    app = AppConfig(model=cfg.model, adapter=cfg.adapter, lang=cfg.lang, task=cfg.task,
                    max_new_tokens=cfg.max_new_tokens, dtype=cfg.dtype, min_pixels=cfg.min_pixels,
                    max_pixels=cfg.max_pixels, workdir=cfg.workdir, max_upload_mb=4096,
                    max_upload_pixels=PIXELS_MAX)  # the user's own files: the app's caps (for strangers) at their widest
    # both images decoded and checked before any model loads, each error naming its flag and file
    caps = dict(max_bytes=app.max_upload_bytes, max_pixels=app.max_upload_pixels)
    pair = Pair(*(load_upload(_image_bytes(path, flag), f"{flag}: {path}", **caps)
                  for flag, path in (("--query", cfg.query), ("--satellite", cfg.satellite))), cfg.view)
    if app.tiny:
        run = demo_run(app)
        model, adapter = str(run["model"]), str(run["sft"])
    else:
        adapter = local_adapter(cfg.adapter)
        model = cfg.model or base_model(adapter)  # type: ignore[arg-type]
    engine = Engine(app, Assets(model=model, adapter=adapter, encoder=None, gallery=None, split="test",
                                examples=Path(".")))
    verification = engine.verify(pair, cfg.lang, cfg.task)
    return Prediction(verification.answer, verification.verdict, verification.p_yes, model, adapter)
