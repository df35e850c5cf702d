"""GLEAM-X RL with verifiable rewards (GRPO): ``gleamx grpo`` and ``recipes/grpo.py`` both run this file's ``main``.

    gleamx grpo --config tiny/grpo                                          # a packaged recipe, by name
    python recipes/grpo.py --config recipes/tiny/grpo.yaml                  # from a checkout (recipes/ links here)
    accelerate launch recipes/grpo.py --config recipes/qwen2.5-vl-3b/grpo_lora.yaml
    accelerate launch --config_file accelerate_configs/zero3.yaml recipes/grpo.py --config recipes/qwen2.5-vl-3b/grpo_full.yaml

``--config`` takes a YAML path, or the name of a packaged recipe when no such file exists. Every option of the
YAML can be overridden on the command line (``--model_name_or_path outputs/my-sft-run --max_steps 200``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from gleamx.console import quiet_third_party

quiet_third_party()  # before trl imports bitsandbytes and DeepSpeed (GLEAMX_VERBOSE=1 shows them)

from trl import GRPOConfig, ModelConfig, TrlParser  # noqa: E402

from gleamx.recipes import describe, resolve_config  # noqa: E402
from gleamx.train.grpo import run_grpo  # noqa: E402
from gleamx.train.arguments import GleamGRPOArguments  # noqa: E402
from gleamx.parsing import grouped, parse_recipe  # noqa: E402


def sentence_encoder(model: str | None) -> Callable[[], Any]:
    """A loader of the sentence encoder gleamx-eval's ``sbert_cosine`` uses (``model``, or its offline default),
    for the ``reference_similarity`` reward; nothing loads until the first batch asks. Built here because the
    recipe layer sits above both training and evaluation."""

    def load() -> Any:
        from gleamx.eval.metrics.gleamx_sbert_cosine.gleamx_sbert_cosine import default_model, load_encoder

        return load_encoder(model or default_model("en"))

    return load


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """Parse ``--config`` and the overrides with TrlParser, then train (``argv``: default ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = grouped(TrlParser)((GleamGRPOArguments, GRPOConfig, ModelConfig), prog=prog, description=describe("grpo"))
    script_args, training_args, model_args = parse_recipe(parser, resolve_config(argv, "grpo"))
    loader = sentence_encoder(script_args.reference_similarity_model) \
        if "reference_similarity" in script_args.reward_funcs else None
    run_grpo(script_args, training_args, model_args, encoder_loader=loader)


if __name__ == "__main__":
    from gleamx.console import run_cli

    sys.exit(run_cli(main))
