"""The packaged accelerate launch configs: one node (``ddp``, ``zero2``, ``zero3``, and ``cpu``, ``zero2_cpu``,
``zero3_cpu`` for CPU runs) and multi-node (``multi_node_ddp``, ``multi_node_zero2``, ``multi_node_zero3``,
``multi_node_cpu``).

They ship inside the package, so a pip-installed gleamx launches ZeRO without a checkout
(``gleamx sft --accelerate_config zero2 --config qwen2.5-vl-3b/sft_lora``). In a checkout the top-level
``accelerate_configs/`` is a link to this folder, so ``accelerate launch --config_file accelerate_configs/zero2.yaml
recipes/sft.py ...`` reads the same files.
"""

from __future__ import annotations

from pathlib import Path

from gleamx.errors import GleamConfigError

ROOT = Path(__file__).resolve().parent


def names() -> list[str]:
    """The packaged configs' names (``zero2``, ``multi_node_zero3``, ...)."""
    return sorted(p.stem for p in ROOT.glob("*.yaml"))


def resolve(value: str) -> Path:
    """``value`` as a file if it is one, else the packaged config of that name (with or without ``.yaml``, or as
    the checkout path ``accelerate_configs/NAME.yaml``); neither is one line listing the packaged names."""
    if Path(value).is_file():
        return Path(value)
    name = value.replace("\\", "/").removeprefix("accelerate_configs/").removesuffix(".yaml")
    packaged = ROOT / f"{name}.yaml"
    if "/" not in name and packaged.is_file():
        return packaged
    raise GleamConfigError(f"--accelerate_config {value}: neither a config file (no {Path(value).absolute()}) nor a "
                           f"packaged accelerate config; packaged configs: {', '.join(names())}")
