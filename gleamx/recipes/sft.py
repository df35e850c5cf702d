"""GLEAM-X supervised fine-tuning.

    python recipes/sft.py --config recipes/tiny/sft_lora.yaml
    accelerate launch --config_file accelerate_configs/zero2.yaml recipes/sft.py --config recipes/qwen2.5-vl-3b/sft_lora.yaml

Every option of the YAML can be overridden on the command line (``--learning_rate 1e-4``).
"""

import sys

from trl import ModelConfig, SFTConfig, TrlParser

from gleamx.cli.common import run_cli
from gleamx.train.args import GleamScriptArguments
from gleamx.train.recipe import parse_recipe
from gleamx.train.sft import run_sft

if __name__ == "__main__":
    def main() -> None:
        script_args, training_args, model_args = parse_recipe(
            TrlParser((GleamScriptArguments, SFTConfig, ModelConfig)), sys.argv[1:]
        )
        run_sft(script_args, training_args, model_args)

    sys.exit(run_cli(main))
