"""Deprecated alias of :mod:`gleamx.curate` (GLEAM-X from real data: pairs, annotation, review, publishing).

The package was ``gleamx/build/`` until 0.1; tools treat folders named ``build`` as build output (pytest's
``norecursedirs``, Black's excludes, the standard Python ``.gitignore``), so it moved. ``import gleamx.build.X``
keeps working, with a ``FutureWarning``, until gleamx 0.3.
"""

from __future__ import annotations

import importlib
import sys
import warnings

warnings.warn("gleamx.build is now gleamx.curate; the old name is removed in gleamx 0.3", FutureWarning, stacklevel=2)

for _name in ("annotate", "pairs", "publish", "review"):
    sys.modules[f"{__name__}.{_name}"] = importlib.import_module(f"gleamx.curate.{_name}")
    globals()[_name] = sys.modules[f"{__name__}.{_name}"]
