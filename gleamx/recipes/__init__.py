"""The packaged recipes: SFT, GRPO and retrieval-encoder YAMLs, and the scripts that run them (``sft.py``, ``grpo.py``,
``retrieval.py``).

They ship inside the package, so a pip-installed gleamx trains without a checkout
(``gleamx sft --config tiny/sft_lora``). In a checkout the top-level ``recipes/`` is a
link to this folder, so ``python recipes/sft.py --config recipes/tiny/sft_lora.yaml``
reads the same files.
"""

from __future__ import annotations

from pathlib import Path

from gleamx.errors import GleamConfigError

ROOT = Path(__file__).resolve().parent

# kind -> which packaged recipes it runs (retrieval recipes live in retrieval/, eval configs in eval/, GRPO recipes are
# named grpo*.yaml, ablations ablation*.yaml, every other YAML is an SFT recipe)
_stem_starts = lambda name, prefix: name.rsplit("/", 1)[-1].startswith(prefix)  # noqa: E731
_model_recipe = lambda name: not name.startswith(("retrieval/", "eval/"))  # noqa: E731
_KINDS = {"sft": lambda name: _model_recipe(name) and not _stem_starts(name, ("grpo", "ablation")),
          "retrieval": lambda name: name.startswith("retrieval/"), "eval": lambda name: name.startswith("eval/"),
          "grpo": lambda name: _model_recipe(name) and _stem_starts(name, "grpo"),
          "ablation": lambda name: _model_recipe(name) and _stem_starts(name, "ablation")}
_WHAT = {"sft": "SFT recipes", "retrieval": "retrieval recipes", "eval": "eval configs", "grpo": "GRPO recipes",
         "ablation": "ablations"}


def names(kind: str | None = None) -> list[str]:
    """Names of the packaged recipes (``tiny/sft_lora``, ``retrieval/tiny``, ...); ``kind``: ``sft``, ``grpo``,
    ``retrieval`` or ``eval``."""
    keep = _KINDS[kind] if kind else (lambda name: True)
    found = (p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.rglob("*.yaml"))
    return sorted(n for n in found if keep(n))


# Spellings of one release ago: the retrieval model's recipes and script were named "gleamc" (GLEAM-C, the paper's
# name for it). They still resolve, with a notice.
_OLD_PREFIXES = {"gleamc/": "retrieval/", "gleamc.py": "retrieval.py"}


def _renamed(name: str) -> str:
    """``name`` in today's spelling; an old one gets a one-line notice (removed in the next release)."""
    import re

    for old, new in _OLD_PREFIXES.items():
        renamed = re.sub(rf"(^|/){re.escape(old)}", rf"\g<1>{new}", name, count=1)
        if renamed != name:
            import warnings

            warnings.warn(f"{name} is now {renamed}; the old name goes in the next release", FutureWarning, stacklevel=3)
            return renamed
    return name


def _find(name: str) -> Path | None:
    name = _renamed(name.replace("\\", "/"))
    for candidate in (name, name.removeprefix("recipes/")):  # README paths name them recipes/...
        for n in (candidate, candidate + ".yaml"):
            p = ROOT / n
            if n and p.is_file() and ROOT in p.resolve().parents:
                return p
    return None


def path(name: str) -> Path:
    """The packaged file ``name``: a recipe with or without ``.yaml`` (``tiny/sft_lora``) or a script (``sft.py``)."""
    p = _find(name)
    if p is None:
        raise GleamConfigError(f"{name}: no packaged recipe of that name; packaged recipes: {', '.join(names())}")
    return p


EXAMPLES = {
    "sft": ("gleamx sft --config tiny/sft_lora",
            "gleamx sft --config qwen2.5-vl-3b/sft_lora --dataset_name data/gleamx --output_dir outputs/lora",
            "gleamx sft --accelerate_config zero2 --config qwen2.5-vl-3b/sft_lora"),
    "grpo": ("gleamx grpo --config tiny/grpo",
             "gleamx grpo --accelerate_config zero2 --config qwen2.5-vl-3b/grpo_lora --model_name_or_path outputs/lora"),
    "retrieval": ("gleamx retrieval train --config retrieval/tiny",
                  "gleamx retrieval train --config retrieval/convnext_base --data data/u1652-train"),
}


def describe(kind: str) -> str:
    """The ``--help`` description of a recipe script: examples, what ``--config`` takes, and the packaged recipes."""
    from gleamx.parsing import with_examples

    what = {"sft": "GLEAM-X supervised fine-tuning", "grpo": "GLEAM-X RL with verifiable rewards (GRPO)"}.get(
        kind, "Retrieval encoder training")
    from gleamx import accelerate_configs

    return with_examples(EXAMPLES[kind], (
        f"{what}. --config takes a recipe YAML path, or the name of a packaged recipe when no such file exists "
        f"({', '.join(names(kind))}); every option below overrides the recipe's value (gleamx's options first, "
        f"then TRL's). Through the gleamx command, --accelerate_config FILE|NAME runs it under accelerate launch "
        f"(packaged: {', '.join(accelerate_configs.names())})."))


def resolve_config(argv: list[str], kind: str) -> list[str]:
    """``argv`` with ``--config VALUE`` pointing at a file: VALUE itself if it is one, else the packaged recipe
    named VALUE. Neither is one line naming both and listing the packaged ``kind`` recipes."""
    argv = list(argv)
    for i, a in enumerate(argv):  # TrlParser reads only "--config PATH"; accept "--config=PATH" too
        if a.startswith("--config="):
            argv[i:i + 1] = ["--config", a.split("=", 1)[1]]
            break
    if "--config" not in argv:
        return argv
    i = argv.index("--config")
    if i + 1 >= len(argv):
        return argv  # parse_recipe reports the missing value
    value = argv[i + 1]
    if Path(value).is_file():
        return argv
    packaged = _find(value)
    if (packaged is None or packaged.suffix != ".yaml"
            or not _KINDS[kind](packaged.relative_to(ROOT).with_suffix("").as_posix())):
        raise GleamConfigError(
            f"--config {value}: neither a recipe file (no {Path(value).absolute()}) nor a packaged recipe of that "
            f"name; packaged {_WHAT[kind]}: {', '.join(names(kind))}")
    argv[i + 1] = str(packaged)
    return argv
