"""What the app serves besides its code: the model, the encoder, the gallery and the example pairs.

Examples are synthetic pairs (:func:`gleamx.synth.synthesize`) generated into the work directory on first
start, so the page has something to try offline. Without ``--model`` the app also builds, once, what
``gleamx demo`` builds: a tiny random-initialised Qwen-VL-class model, a LoRA adapter trained on the generated
pairs with the packaged tiny recipe (a few steps on a random model teach the verdict line, not the match: the
page then shows verdicts and P(yes), whose values mean nothing), and a tiny GLEAM-C encoder trained for two
epochs on the generated locations, whose test split is then the Localize tab's gallery (about a minute on a
CPU). Each piece is
built in a temporary directory renamed into place, so a killed first start leaves nothing half-built.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gleamx.app.config import AppConfig
from gleamx.errors import GleamConfigError, GleamModelError, first_line

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


def tiny_model(cfg: AppConfig) -> Path:
    """A tiny random-initialised ``cfg.arch`` model with its processor (``gleamx models tiny``)."""
    from gleamx.models import build_tiny_model

    return _built(cfg.work_dir() / f"tiny-{cfg.arch}-s{cfg.seed}",
                  lambda d: build_tiny_model(cfg.arch, d, seed=cfg.seed))


def tiny_adapter(cfg: AppConfig, data: Path, model: Path) -> Path:
    """A LoRA adapter of the tiny model from the packaged tiny recipe (``gleamx demo``'s stage 6), label task."""
    from gleamx.demo import _tiny_recipe_args  # the recipe parsed as recipes/sft.py parses it
    from gleamx.train.sft import run_sft

    def build(d: Path) -> None:
        out = run_sft(*_tiny_recipe_args(model, data, d / "run", cfg.seed))
        for ckpt in out.glob("checkpoint-*"):  # resumable training states: the app needs the adapter only
            shutil.rmtree(ckpt, ignore_errors=True)

    return _built(cfg.work_dir() / f"tiny-{cfg.arch}-s{cfg.seed}-sft", build) / "run"


def tiny_encoder(cfg: AppConfig, data: Path) -> Path:
    """A tiny GLEAM-C encoder trained for two epochs on the generated train split (as ``gleamx demo``)."""
    from gleamx.retrieval.config import GleamCConfig
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.train import train_gleamc

    def build(d: Path) -> None:
        n_train = len(load_retrieval(data, "train").gallery)  # a batch holds one pair per location
        train_gleamc(GleamCConfig(data=str(data), output_dir=str(d), encoder="tiny", img_size=64, epochs=2,
                                  batch_size=min(8, n_train), hard_negatives=2, eval_split="test", seed=cfg.seed,
                                  logging_steps=5, save_total_limit=1))

    return _built(cfg.work_dir() / f"gleamc-tiny-s{cfg.seed}", build)


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def local_adapter(adapter: str | None) -> str | None:
    """A local directory for ``adapter``: itself, or the Hub snapshot of a repo id (downloaded once, then
    read from the Hub cache), so the library's loaders find its ``adapter_config.json`` and saved processor."""
    if adapter is None or Path(adapter).expanduser().is_dir() or not _looks_like_hub_id(adapter):
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
    data = example_data(cfg)
    if cfg.tiny:
        model = tiny_model(cfg)
        adapter = tiny_adapter(cfg, data, model)
        encoder = tiny_encoder(cfg, data)
        return Assets(model=str(model), adapter=str(adapter), encoder=str(encoder), gallery=str(data), split="test",
                      examples=data, notes=[f"A tiny random {cfg.arch} model with a LoRA adapter of a few steps, a "
                                            "tiny GLEAM-C encoder and generated data: the mechanics, not the "
                                            "numbers."])
    adapter = local_adapter(cfg.adapter)
    return Assets(model=cfg.model or base_model(adapter), adapter=adapter, encoder=cfg.encoder, gallery=cfg.gallery,
                  split=cfg.split, examples=data)
