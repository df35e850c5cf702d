"""``gleamx-eval``: an alias of ``gleamx eval`` (match accuracy and explanation quality of a model, or of a
predictions file)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from gleamx.cli.main import main as gleamx_main

    return gleamx_main(["eval", *(sys.argv[1:] if argv is None else argv)], prog="gleamx-eval")


if __name__ == "__main__":
    sys.exit(main())
