"""``gleamx app --export-space DIR``: the same app as a Hugging Face Space, in one folder.

The folder holds ``README.md`` (the Space's metadata: ``sdk: gradio``, ``sdk_version``, ``app_file``),
``app.py`` (the app's settings, then :func:`gleamx.app.ui.load` / :func:`~gleamx.app.ui.build_demo` /
:func:`~gleamx.app.ui.launch`, the calls ``gleamx app`` makes), ``requirements.txt`` (gleamx's own
dependencies) and ``gleamx/``, a copy of this gleamx, so the Space runs exactly this code. Spaces installs
gradio itself at ``sdk_version`` and sets ``GRADIO_SERVER_NAME``/``GRADIO_SERVER_PORT``, which ``app.py`` reads
(elsewhere it listens on 127.0.0.1:7860). Model, adapter and encoder should be Hub ids (``--adapter user/repo``):
a local path is written as given, with a note, and works only where that path exists.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import pprint
import shutil
from pathlib import Path

from gleamx.app.config import AppConfig
from gleamx.outputs import claim_folder

# Settings that describe where the app runs, not what it serves: the Space decides them.
_NOT_CARRIED = ("host", "port", "share", "export_space", "workdir", "overwrite")
# gradio 6.31 caps pillow below 13, which gleamx's own lower bound excludes; on a Space the pillow gradio
# brings is kept (the pixel checks use only long-standing PIL calls).
_LEFT_TO_GRADIO = ("pillow",)

APP_PY = '''"""Hugging Face Space serving the gleamx app (written by `gleamx app --export-space`).

Spaces runs `python app.py` and says where to listen (GRADIO_SERVER_NAME, GRADIO_SERVER_PORT); elsewhere it
listens on 127.0.0.1:7860. The settings are those `gleamx app` was given.
"""

import os

from gleamx.app.config import AppConfig
from gleamx.app.ui import build_demo, launch, load

SETTINGS = {settings}

config = AppConfig(**SETTINGS, host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
engine, assets = load(config)
demo = build_demo(engine, config, assets.notes)

if __name__ == "__main__":
    launch(demo, config)
'''

README = """---
title: {title}
emoji: 🛰️
colorFrom: blue
colorTo: green
sdk: gradio
sdk_version: {sdk_version}
app_file: app.py
pinned: false
license: apache-2.0
short_description: Match and explain cross-view geo-localization pairs
---

# {title}

A [gleamx](https://arxiv.org/abs/2509.07450) app: **Verify** asks a GLEAM-X model whether a query view (UAV, street
map, panorama or ground photo) and a satellite tile show the same place, streams its explanation and reads P(yes)
at its verdict line; **Localize** retrieves a query's most similar gallery tiles with the retrieval encoder, verifies each and
reranks them.

Serving: {serving}.

Written by `gleamx app --export-space` (gleamx {version}); `gleamx/` is that gleamx's code, `app.py` the settings.
"""


def space_settings(cfg: AppConfig) -> dict[str, object]:
    """The config fields the Space carries over (not where to listen: the Space says that)."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _NOT_CARRIED}


def space_requirements() -> list[str]:
    """gleamx's own (not optional) requirements, as its installed metadata lists them."""
    try:
        reqs = importlib.metadata.requires("gleamx") or []
    except importlib.metadata.PackageNotFoundError:  # a vendored copy: no metadata, the Space's own deps stand
        reqs = []
    out = []
    for r in reqs:
        name = r.split(";")[0].strip()
        if "extra ==" in r or not name:
            continue
        if any(name.lower().startswith(p) for p in _LEFT_TO_GRADIO):
            continue
        out.append(name)
    return out


def _local_paths(cfg: AppConfig) -> list[str]:
    return [f"--{name} {value}" for name in ("model", "adapter", "encoder", "gallery")
            if (value := getattr(cfg, name)) and Path(value).expanduser().exists()]


@dataclasses.dataclass
class ExportedSpace:
    """The Space folder :func:`export_space` wrote, and the settings that name paths on this machine."""

    out: Path
    local_paths: list[str]  # ``--adapter runs/lora``: found on the Space only if it exists there too

    def summary_lines(self) -> list[str]:
        return [*(f"note: {p} is a path on this machine: the Space finds it only if it exists there too (push it "
                  "to the Hub and pass its id)" for p in self.local_paths),
                f"Space written to {self.out} (app.py, requirements.txt, README.md, gleamx/): push it with "
                f"`hf upload USER/SPACE {self.out} --repo-type space`"]


def export_space(cfg: AppConfig) -> ExportedSpace:
    """Write the Space folder ``cfg.export_space``."""
    import gleamx

    try:
        import gradio
        sdk_version = gradio.__version__
    except ImportError:  # exporting needs no gradio here; the Space gets the version gleamx was tested with
        sdk_version = "6.31.0"
    settings = space_settings(cfg)
    folder = claim_folder(Path(cfg.export_space).expanduser(), "--export-space", command="app --export-space",
                          identity=settings, overwrite=cfg.overwrite, writes=["app.py", "requirements.txt",
                                                                              "README.md", "gleamx"],
                          inputs={"--adapter": cfg.adapter, "--model": cfg.model, "--encoder": cfg.encoder,
                                  "--gallery": cfg.gallery})
    out = folder.path
    (out / "app.py").write_text(APP_PY.format(settings=pprint.pformat(settings, sort_dicts=False, width=100)),
                                encoding="utf-8")
    reqs = space_requirements()
    (out / "requirements.txt").write_text(
        "# gleamx's dependencies (gleamx itself is the copy in ./gleamx; gradio comes with the Space's sdk_version;\n"
        "# pillow is the one that gradio version accepts)\n" + "".join(f"{r}\n" for r in reqs), encoding="utf-8")
    if cfg.tiny:
        serving = "a tiny random model with a short LoRA run, a tiny retrieval encoder and generated data (built on " \
                  "first start: the mechanics, not the numbers)"
    else:
        serving = ", ".join(f"{name} `{value}`" for name in ("model", "adapter", "encoder", "gallery")
                            if (value := getattr(cfg, name)))
        if not cfg.model:
            serving = "the adapter's base model, " + serving
    (out / "README.md").write_text(README.format(title="GLEAM-X", sdk_version=sdk_version, serving=serving,
                                                 version=gleamx.__version__), encoding="utf-8")
    package = Path(gleamx.__file__).resolve().parent
    shutil.rmtree(out / "gleamx", ignore_errors=True)
    shutil.copytree(package, out / "gleamx", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    folder.done()
    return ExportedSpace(out, _local_paths(cfg))


__all__ = ["ExportedSpace", "export_space", "space_requirements", "space_settings"]
