"""Retrieval encoder: train the shared-weight retrieval encoder (query views <-> satellite tiles).

``gleamx retrieval train`` and ``recipes/retrieval.py`` both run this file's ``main``:

    gleamx retrieval train --config retrieval/tiny                          # a packaged recipe, by name
    python recipes/retrieval.py --config recipes/retrieval/tiny.yaml           # from a checkout (recipes/ links here)
    accelerate launch --config_file accelerate_configs/ddp.yaml recipes/retrieval.py --config recipes/retrieval/convnext_base.yaml

``--config`` takes a YAML path, or the name of a packaged recipe when no such file exists.
Every option of the YAML can be overridden on the command line (``--epochs 3``).
"""

from __future__ import annotations

import sys

from gleamx.console import console, quiet_third_party

quiet_third_party()  # before trl imports bitsandbytes and DeepSpeed (GLEAMX_VERBOSE=1 shows them)

from trl import TrlParser  # noqa: E402

from gleamx.recipes import describe, resolve_config  # noqa: E402
from gleamx.retrieval.config import RetrievalConfig  # noqa: E402
from gleamx.retrieval.train import train_retrieval  # noqa: E402
from gleamx.parsing import grouped, parse_recipe  # noqa: E402


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse ``--config`` and the overrides with TrlParser, then train (``argv``: default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = grouped(TrlParser)((RetrievalConfig,), prog=prog, description=describe("retrieval"))
    (cfg,) = parse_recipe(parser, resolve_config(argv, "retrieval"))
    out = train_retrieval(cfg)
    console.print(f"retrieval encoder, log and results -> {out}")


if __name__ == "__main__":
    from gleamx.console import run_cli

    sys.exit(run_cli(main))
