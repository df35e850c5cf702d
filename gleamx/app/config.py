"""``AppConfig``: what ``gleamx app`` serves (flags, ``--config FILE.yaml`` or the Python API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gleamx.checks import (BATCH_MAX, CANDIDATES_MAX, PIXELS_MAX, PORT_MAX, SEED_MAX, TOKENS_MAX, check_choice,
                           check_given, check_int, check_pixel_budget, check_positive, check_ranges, field_help,
                           pixel_budget_option, pixel_floor_option)
from gleamx.choices import ARCHS, DTYPES, LANGS, TASKS, Arch, Dtype, Lang, Task
from gleamx.errors import GleamConfigError

MB = 1 << 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")



def default_workdir() -> Path:
    """``app/`` in gleamx's per-user cache folder (:func:`gleamx.keyed_store.user_cache_dir`)."""
    from gleamx.keyed_store import user_cache_dir

    return user_cache_dir() / "app"


@dataclass(kw_only=True)
class AppConfig:
    """Serve the GLEAM-X app: verify and explain one pair; localize a query against a satellite gallery."""

    model: str | None = field(default=None, metadata=field_help(
        "MLLM directory or Hub id (default: --adapter's base model; with neither, gleamx demo's tiny random model, "
        "short LoRA run, tiny retrieval encoder and generated data, run once into --workdir on first start)"))
    adapter: str | None = field(default=None, metadata=field_help(
        "PEFT adapter directory from recipes/sft.py, or a Hub id (downloaded once); its saved processor sets the "
        "pixel budget, as in gleamx eval"))
    encoder: str | None = field(default=None, metadata=field_help(
        "trained retrieval encoder directory or Hub id for the Localize tab (goes with --gallery)"))
    gallery: str | None = field(default=None, metadata=field_help(
        "satellite tiles for the Localize tab: a retrieval layout or GLEAM-X pairs, as gleamx localize's --data"))
    split: str = field(default="test", metadata=field_help("the gallery's split (default test)"))
    k: int = field(default=5, metadata=field_help(
        "candidates per query in the Localize tab (default 5, or every tile of a smaller gallery)", low=1,
        high=CANDIDATES_MAX))
    lang: Lang = field(default="en", metadata=field_help("language selected when the page opens"))
    task: Task = field(default="explain", metadata=field_help("task selected when the page opens"))
    max_new_tokens: int | None = field(default=None, metadata=field_help(
        "longest answer generated (default 16 for the label task, 256 for explain, as gleamx localize)", low=1,
        high=TOKENS_MAX))
    repetition_penalty: float = field(default=1.0, metadata=field_help(
        "greedy decoding's repetition penalty (1.0: none)", low=0, high=10))
    batch_size: int = field(default=8, metadata=field_help("candidate pairs per MLLM batch in the Localize tab",
                                                           low=1, high=BATCH_MAX))
    dtype: Dtype = field(default="auto", metadata=field_help("the MLLM's weights' dtype"))
    min_pixels: int | None = pixel_floor_option()
    max_pixels: int | None = pixel_budget_option()
    host: str = field(default="127.0.0.1", metadata=field_help(
        "address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app to the network)"))
    port: int = field(default=7860, metadata=field_help("port to listen on (0: any free port)", low=0,
                                                        high=PORT_MAX))
    share: bool = field(default=False, metadata=field_help("also open a public gradio.live link (off unless asked)"))
    max_upload_mb: float = field(default=20.0, metadata=field_help("largest upload accepted, in MB (default 20)",
                                                                   low=0, high=4096))
    max_upload_pixels: int = field(default=40_000_000, metadata=field_help(
        "largest image accepted, in pixels (width x height, read from the header before decoding; default 40 M)",
        low=1, high=PIXELS_MAX))
    workdir: str | None = field(default=None, metadata=field_help(
        "where the app keeps its examples and, without --model, its tiny model, encoder and data (default "
        "$GLEAMX_CACHE/app or ~/.cache/gleamx/app)"))
    embedding_cache: str | None = field(default=None, metadata=field_help(
        "directory of cached gallery embeddings (default $GLEAMX_CACHE/embeddings or ~/.cache/gleamx/embeddings; "
        "'off': none)"))
    arch: Arch = field(default="qwen2_5_vl", metadata=field_help("Qwen-VL class of the tiny model built without --model"))
    seed: int = field(default=0, metadata=field_help("seed of the tiny model, encoder and generated data", low=0,
                                                     high=SEED_MAX))
    export_space: str | None = field(default=None, metadata=field_help(
        "write a Hugging Face Space (app.py, requirements.txt, README.md) serving this app into this directory, "
        "and exit"))
    overwrite: bool = field(default=False, metadata=field_help(
        "--export-space: replace a Space gleamx wrote there with other settings (files gleamx did not write are "
        "kept)"))

    def __post_init__(self) -> None:
        check_given("--host", self.host, "an address such as 127.0.0.1")
        check_given("--split", self.split, "a split name such as test")
        check_int("--port", self.port, 0)
        check_choice("--lang", self.lang, LANGS)
        check_choice("--task", self.task, TASKS)
        check_choice("--dtype", self.dtype, DTYPES)
        check_choice("--arch", self.arch, ARCHS)
        for flag, value, low, optional in (
                ("--k", self.k, 1, False), ("--batch-size", self.batch_size, 1, False),
                ("--max-new-tokens", self.max_new_tokens, 1, True),
                ("--max-upload-pixels", self.max_upload_pixels, 1, False),
                ("--seed", self.seed, 0, False)):
            check_int(flag, value, low, optional=optional)
        check_pixel_budget("--min-pixels", self.min_pixels, "--max-pixels", self.max_pixels)
        check_positive("--repetition-penalty", self.repetition_penalty, what="a positive number (1.0: none)")
        check_positive("--max-upload-mb", self.max_upload_mb, what="a positive number of MB")
        check_ranges(self)
        if not self.tiny and bool(self.encoder) != bool(self.gallery):
            given, missing = ("--encoder", "--gallery") if self.encoder else ("--gallery", "--encoder")
            raise GleamConfigError(f"{given}: needs {missing} too (the Localize tab searches a gallery with an "
                                   "encoder)")
        if self.tiny and (self.encoder or self.gallery):
            raise GleamConfigError("--encoder/--gallery: need --model or --adapter (without them the app builds "
                                   "its own tiny model, encoder and gallery)")

    @property
    def tiny(self) -> bool:
        """Whether the app runs on its own tiny model, encoder and generated data (no ``--model``, no
        ``--adapter``)."""
        return not self.model and not self.adapter

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    def new_tokens(self, task: str) -> int:
        """Longest answer for ``task``: ``--max-new-tokens``, else gleamx localize's default for it."""
        return self.max_new_tokens or (16 if task == "label" else 256)

    def work_dir(self) -> Path:
        return Path(self.workdir).expanduser() if self.workdir else default_workdir()
