"""GLEAM-X supervised fine-tuning: ``gleamx sft`` and ``recipes/sft.py`` both run this file's ``main``.

    gleamx sft --config tiny/sft_lora                                   # a packaged recipe, by name
    python recipes/sft.py --config recipes/tiny/sft_lora.yaml           # from a checkout (recipes/ links here)
    accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft.py --config recipes/qwen2.5-vl-3b/sft_lora.yaml
    accelerate launch --config_file CONFIG.yaml -m gleamx.recipes.sft --config qwen2.5-vl-3b/sft_lora   # no checkout

``--config`` takes a YAML path, or the name of a packaged recipe when no such file exists.
Every option of the YAML can be overridden on the command line (``--learning_rate 1e-4``).
"""

from __future__ import annotations

import sys

from gleamx.console import quiet_third_party

quiet_third_party()  # before trl imports bitsandbytes and DeepSpeed (GLEAMX_VERBOSE=1 shows them)

from trl import ModelConfig, SFTConfig, TrlParser  # noqa: E402

from gleamx.recipes import describe, resolve_config  # noqa: E402
from gleamx.train.arguments import GleamScriptArguments  # noqa: E402
from gleamx.parsing import grouped, parse_recipe  # noqa: E402
from gleamx.train.sft import run_sft  # noqa: E402


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse ``--config`` and the overrides with TrlParser, then train (``argv``: default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = grouped(TrlParser)((GleamScriptArguments, SFTConfig, ModelConfig), prog=prog, description=describe("sft"))
    script_args, training_args, model_args = parse_recipe(parser, resolve_config(argv, "sft"))
    run_sft(script_args, training_args, model_args)


if __name__ == "__main__":
    from gleamx.console import run_cli

    sys.exit(run_cli(main))
