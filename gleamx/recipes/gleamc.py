"""Old name of ``recipes/retrieval.py`` (one release): the same ``main``, with a notice."""

from __future__ import annotations

import sys
import warnings

from gleamx.recipes.retrieval import main

warnings.warn("recipes/gleamc.py is now recipes/retrieval.py; the old name goes in the next release", FutureWarning,
              stacklevel=2)

if __name__ == "__main__":
    from gleamx.console import run_cli

    sys.exit(run_cli(main))

__all__ = ["main"]
