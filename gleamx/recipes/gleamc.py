"""GLEAM-C: train the shared-weight retrieval encoder (query views <-> satellite tiles).

    python recipes/gleamc.py --config recipes/gleamc/tiny.yaml
    accelerate launch --config_file accelerate_configs/ddp.yaml recipes/gleamc.py --config recipes/gleamc/convnext_base.yaml

Every option of the YAML can be overridden on the command line (``--epochs 3``).
"""

import sys

from trl import TrlParser

from gleamx.cli.common import run_cli
from gleamx.retrieval.config import GleamCConfig
from gleamx.retrieval.train import train_gleamc
from gleamx.train.recipe import parse_recipe

if __name__ == "__main__":
    def main() -> None:
        (cfg,) = parse_recipe(TrlParser((GleamCConfig,)), sys.argv[1:])
        train_gleamc(cfg)

    sys.exit(run_cli(main))
