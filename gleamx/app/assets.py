"""What the app serves besides its code: the model, the encoder, the gallery and the example pairs.

Without ``--model`` the app serves what ``gleamx demo`` builds, run once in the work directory (:func:`demo_run`): a
tiny random-initialised Qwen-VL-class model, a LoRA adapter trained on the generated pairs with the packaged tiny
recipe (a few steps on a random model teach the verdict line, not the match: the page then shows verdicts and
P(yes), whose values mean nothing), a tiny retrieval encoder, and the generated data, whose test split is the
Localize tab's gallery and whose pairs are the examples. With ``--model``/``--adapter`` the examples are generated
pairs (:func:`gleamx.synth.synthesize`), built once in a temporary directory renamed into place, so a killed first
start leaves nothing half-built."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gleamx.app.config import AppConfig
from gleamx.errors import GleamConfigError, GleamModelError, first_line
from gleamx.sources import looks_like_path

N_PAIRS = 64
SPLIT_FRACTIONS = (0.5, 0.125, 0.375)  # a test split of 6 locations: a gallery worth searching, k = 5 < 6
DONE = ".gleamx-app-done"


@dataclass
class Assets:
    """Resolved sources: local directories or Hub ids, as the library loaders take them."""

    model: str
    adapter: str | None
    encoder: str | None
    gallery: str | None  # a retrieval layout or GLEAM-X pairs (gleamx localize's --data)
    split: str
    examples: Path  # the generated dataset the example pairs come from
    notes: list[str] = field(default_factory=list)


def _built(target: Path, build: Callable[[Path], None]) -> Path:
    """``target``, built by ``build(tmp)`` into a temporary directory renamed into place unless already there."""
    if (target / DONE).is_file():
        return target
    tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build(tmp)
    (tmp / DONE).write_text("")
    shutil.rmtree(target, ignore_errors=True)  # an older build without its marker (killed mid-rename)
    try:
        os.replace(tmp, target)
    except OSError:  # another app process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def example_data(cfg: AppConfig) -> Path:
    """The generated dataset (pairs, retrieval layout) in the work directory, built on first use."""
    from gleamx.synth import synthesize

    return _built(cfg.work_dir() / f"synth-s{cfg.seed}",
                  lambda d: synthesize(d, n=N_PAIRS, seed=cfg.seed, split_fractions=SPLIT_FRACTIONS))


def demo_run(cfg: AppConfig) -> dict[str, Path]:
    """``gleamx demo``'s outputs for ``cfg.arch`` and ``cfg.seed`` in the work directory, run there once (about a
    minute on a CPU): a tiny random model, its LoRA adapter from the packaged tiny recipe, a tiny retrieval encoder
    and the generated data, whose test split (6 locations) is the Localize tab's gallery. A finished demo folder
    (its ``demo_outputs.json``) is reused as it is; an unfinished one (a killed first start) is run again. Two app
    processes starting at once take turns (a file lock), and the second reuses the first one's run."""
    from filelock import FileLock

    from gleamx.demo import DemoConfig, finished_demo, run_demo

    target = cfg.work_dir() / f"demo-{cfg.arch}-s{cfg.seed}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        paths = finished_demo(target)
        if paths is None:
            from gleamx.console import console

            console.print(f"building the tiny model, adapter, encoder and data with `gleamx demo --out {target}` "
                          "(once, about a minute)", markup=False)
            run_demo(DemoConfig(out=str(target), arch=cfg.arch, seed=cfg.seed))
            paths = finished_demo(target)
    return paths


def local_adapter(adapter: str | None) -> str | None:
    """A local directory for ``adapter``: itself, or the Hub snapshot of a repo id (downloaded once, then
    read from the Hub cache), so the library's loaders find its ``adapter_config.json`` and saved processor."""
    if adapter is None or Path(adapter).expanduser().exists() or adapter.count("/") != 1 or looks_like_path(adapter):
        return adapter
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id=adapter)
    except Exception as e:  # noqa: BLE001 - network, auth and not-found errors alike: one line
        raise GleamModelError(f"--adapter {adapter}: not a local directory, and the Hub did not give it "
                              f"({first_line(e, with_type=True)})") from None


def base_model(adapter: str) -> str:
    """The base model an adapter directory names (``base_model_name_or_path`` of its ``adapter_config.json``)."""
    import json

    path = Path(adapter) / "adapter_config.json"
    try:
        base = json.loads(path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        base = None
    if not isinstance(base, str) or not base:
        raise GleamConfigError(f"--adapter: {path} names no base_model_name_or_path; pass --model")
    return base


def resolve(cfg: AppConfig) -> Assets:
    """Everything the app serves, building what is missing (the tiny model, encoder and examples)."""
    if cfg.tiny:
        run = demo_run(cfg)
        return Assets(model=str(run["model"]), adapter=str(run["sft"]), encoder=str(run["retrieval"]),
                      gallery=str(run["data"]), split="test", examples=run["data"],
                      notes=[f"A tiny random {cfg.arch} model with a LoRA adapter of a few steps, a tiny retrieval "
                             "encoder and generated data (gleamx demo's): the mechanics, not the numbers."])
    data = example_data(cfg)
    adapter = local_adapter(cfg.adapter)
    return Assets(model=cfg.model or base_model(adapter), adapter=adapter, encoder=cfg.encoder, gallery=cfg.gallery,
                  split=cfg.split, examples=data)
