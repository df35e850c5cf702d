"""``gleamx``: the command table (:data:`COMMANDS`); ``gleamx --help`` lists every command from it.

Every command is a config dataclass parsed by :class:`gleamx.parsing.GleamParser` (flags and
``--config FILE.yaml``) and one library call, whose result (a small dataclass of the library) says what to print:
``summary_lines()``, or ``as_dict()`` under ``--json``; the progress bars are this file's own.
``sft`` and ``retrieval train`` hand their arguments to the recipe scripts, whose TrlParser reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gleamx.console import console, progress, run_cli
from gleamx.parsing import GleamParser, command_parser


# --- what each command prints (the work is one library call; its result says what to print) ------------------


def _show(result: Any, as_json: bool = False) -> None:
    """``result.summary_lines()`` as plain lines (no markup, never wrapped), or with ``as_json`` its JSON."""
    if as_json:
        print(json.dumps(result.as_dict(), ensure_ascii=False, indent=2))
        return
    for line in result.summary_lines():
        print(line)


def _load(ref: str) -> Any:
    """``"data.cvgl:convert_layout"``: ``gleamx.data.cvgl.convert_layout``, imported only now (``gleamx --help``
    imports no command's module)."""
    from importlib import import_module

    module, _, name = ref.partition(":")
    return getattr(import_module(f"gleamx.{module}"), name)


def _prints(ref: str) -> Callable[[Any], int]:
    """A command that prints what the library call ``ref`` (``"module:function"`` of gleamx) returns for its
    config."""
    def run(cfg: Any) -> int:
        _show(_load(ref)(cfg))
        return 0

    return run


def cmd_predict(cfg) -> int:
    from gleamx.app.predict import predict

    _show(predict(cfg), cfg.json)
    return 0


def cmd_data_synth(cfg) -> int:
    from gleamx.synth import synthesize

    with progress() as bar:
        task = bar.add_task("rendering", total=cfg.n)
        summary = synthesize(
            cfg.out, n=cfg.n, seed=cfg.seed, image_size=cfg.image_size, difficulty=cfg.difficulty,
            progress=lambda done, total: bar.update(task, completed=done, total=total), overwrite=cfg.overwrite,
        )
    _show(summary)
    return 0


def cmd_data_validate(cfg) -> int:
    from gleamx.data.validation import validate

    report = validate(cfg.path, format=cfg.format, split=cfg.split, columns=cfg.columns,
                      decode_images=cfg.decode, allow_outside_paths=cfg.allow_outside_paths)
    _show(report, cfg.json)
    return 0 if report.ok else 1


def cmd_push(cfg) -> int:
    from gleamx.hub.push import push_output_dir

    _show(push_output_dir(cfg.output_dir, cfg.repo_id, private=cfg.private, dry_run=cfg.dry_run))
    return 0


def cmd_merge(cfg) -> int:
    from gleamx.hub.merge import merge_adapter

    _show(merge_adapter(cfg.base, cfg.adapter, cfg.out, dtype=cfg.dtype, overwrite=cfg.overwrite))
    return 0


def cmd_demo(cfg) -> int:
    from gleamx.demo import run_demo

    run_demo(cfg)
    return 0


def cmd_app(cfg) -> int:
    if cfg.export_space:
        from gleamx.app.space import export_space

        _show(export_space(cfg))
        return 0
    from gleamx.app.ui import serve

    try:
        serve(cfg)
    except KeyboardInterrupt:
        console.print("stopped")
    return 0


def cmd_annotate(cfg) -> int:
    from gleamx.curate.annotate import annotate

    with progress() as bar:
        task = bar.add_task("annotating", total=None)
        summary = annotate(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total),
                           log=lambda line: console.print(line, markup=False))
    _show(summary)
    return 1 if summary.count("failed") else 0


def _pop_option(argv: list[str], flag: str,
                expected: str = "an accelerate config file or a packaged config name") -> tuple[str | None, list[str]]:
    """``flag``'s value (``--flag V`` or ``--flag=V``; dashes or underscores) and ``argv`` without it."""
    spellings = {flag, flag.replace("_", "-")}
    rest: list[str] = []
    value: str | None = None
    it = iter(range(len(argv)))
    for i in it:
        a = argv[i]
        name, eq, inline = a.partition("=")
        if name in spellings:
            if eq:
                value = inline
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value = argv[i + 1]
                next(it)
            else:
                from gleamx.errors import GleamConfigError

                raise GleamConfigError(f"{flag}: expected {expected}")
            continue
        rest.append(a)
    return value, rest


def _run_recipe(module: str, argv: list[str], prog: str) -> int:
    """A recipe script's ``main`` (``gleamx.recipes.sft`` ...) in this process; with ``--accelerate_config NAME|FILE``
    under ``accelerate launch`` with that config (a packaged name: ``zero2``, ``zero3``, ``multi_node_zero2``...)."""
    import importlib

    launch, argv = _pop_option(argv, "--accelerate_config")
    if launch is None:
        importlib.import_module(module).main(argv, prog=prog)
        return 0
    return _launch(launch, [module], argv)


def _launch(launch: str, module: list[str], argv: list[str]) -> int:
    """``accelerate launch --config_file CONFIG [--num_processes N] -m MODULE... ARGV``: ``launch`` a packaged
    config name or a file; ``--num_processes N`` in ``argv`` goes to accelerate (fewer processes than the config's)."""
    import subprocess

    from gleamx.accelerate_configs import resolve
    from gleamx.errors import GleamConfigError

    nproc, argv = _pop_option(argv, "--num_processes", "a number of processes")
    if nproc is not None and not (nproc.isdigit() and int(nproc) >= 1):
        raise GleamConfigError(f"--num_processes: expected an integer >= 1, got {nproc!r}")
    config = resolve(launch)
    cmd = ["--config_file", str(config), *(["--num_processes", nproc] if nproc else []), "-m", *module, *argv]
    console.print(f"accelerate launch {' '.join(cmd)}", markup=False)
    return subprocess.call([sys.executable, "-m", "accelerate.commands.launch", *cmd])


LAUNCHER_HELP = ("--accelerate_config NAME|FILE [--num_processes N] runs it under accelerate launch, one process per "
                 "device (packaged configs: {names})")


def _launch_command(name: str, argv: list[str], prog: str | None) -> int:
    """``gleamx NAME ARGV --accelerate_config C`` on the processes of config C: the other arguments are checked here
    first (one line before anything starts), then ``accelerate launch -m gleamx.cli.main NAME ARGV``."""
    launch, argv = _pop_option(argv, "--accelerate_config")
    assert launch is not None
    _, checked = _pop_option(argv, "--num_processes", "a number of processes")
    parse_command(name, checked, prog)
    return _launch(launch, ["gleamx.cli.main", *name.split()], argv)


def cmd_sft(argv: list[str]) -> int:
    return _run_recipe("gleamx.recipes.sft", argv, "gleamx sft")  # the same main as recipes/sft.py


def cmd_grpo(argv: list[str]) -> int:
    return _run_recipe("gleamx.recipes.grpo", argv, "gleamx grpo")  # the same main as recipes/grpo.py


def cmd_retrieval_train(argv: list[str]) -> int:
    return _run_recipe("gleamx.recipes.retrieval", argv, "gleamx retrieval train")  # the same main as recipes/retrieval.py


def cmd_review_serve(cfg) -> int:
    from gleamx.curate.review import serve_review

    def ready(url: str, app) -> None:
        console.print(app.describe(url), markup=False)

    try:
        serve_review(cfg, on_ready=ready)
    except KeyboardInterrupt:  # the way to stop it: every decision is already on disk
        console.print("stopped; every decision made is saved")
    return 0


# --- the command table: one row per command -------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A command: its config dataclass (``None``: a recipe script that parses its own arguments), what runs
    it, and its one-line help."""

    config: Callable[[], type] | None
    run: Callable[[Any], int]
    help: str
    recipes: str | None = None  # ``--config NAME`` also takes the packaged recipes of this kind
    launches: bool = False  # runs on several processes: --accelerate_config starts it under accelerate launch


# What ``gleamx COMMAND --help`` shows first (recipe commands: gleamx.recipes.EXAMPLES); tests/test_docs.py checks
# every flag of every example as it checks the docs'.
EXAMPLES: dict[str, tuple[str, ...]] = {
    'data synth': (
        'gleamx data synth --out data/synth --n 400 --seed 0',
        'gleamx data synth --out data/toy --n 2000 --difficulty toy --image-size 64',
    ),
    'data validate': (
        'gleamx data validate data/synth',
        'gleamx data validate user/some-hf-dataset --columns query_image=drone,satellite_image=sat,label=match',
    ),
    'data convert': (
        'gleamx data convert data/synth --split train --to sharegpt --out lf/gleamx_train.json',
        'gleamx data convert lf/gleamx_train.json --to jsonl --out back/train.jsonl',
    ),
    'data cvgl': (
        'gleamx data cvgl raw/University-Release --layout university1652 --split train --out data/u1652-train',
    ),
    'data pairs': (
        'gleamx data pairs --retrieval data/u1652-train --out data/u1652-pairs --split-fractions 0.8,0.1,0.1',
    ),
    'data push': (
        'gleamx data push data/u1652-gleamx --repo-id you/gleamx-u1652 --dry-run',
    ),
    'models tiny': (
        'gleamx models tiny --arch qwen2_5_vl --out models/tiny',
        'gleamx models tiny --arch qwen3_vl --from-real --out models/tiny-qwen3',
    ),
    'eval': (
        'gleamx eval --model models/tiny --data data/synth --split test --lang zh --task label --output eval/tiny',
        'gleamx eval --config eval/zh_explain --model Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/lora',
        'gleamx eval --accelerate_config ddp --num_processes 8 --model Qwen/Qwen2.5-VL-3B-Instruct '
        '--adapter outputs/lora --data data/gleamx --split test --output eval/en-8gpu',
    ),
    'compare': (
        'gleamx compare eval/base eval/sft --names base,sft --output eval/compare',
    ),
    'export lmms-eval': (
        'gleamx export lmms-eval --data data/synth --split test --lang en --task explain --out lmms-tasks/gleamx',
        'gleamx export lmms-eval --data data/synth --lang zh --task label --max-new-tokens 16 --out lmms-tasks/zh',
    ),
    'ablation': (
        'gleamx ablation --config tiny/ablation',
        'gleamx ablation --config qwen2.5-vl-3b/ablation --accelerate_config zero2',
    ),
    'retrieval eval': (
        'gleamx retrieval eval --encoder outputs/retrieval-tiny --data data/synth --split test --output eval/retrieval',
    ),
    'localize': (
        'gleamx localize --encoder outputs/retrieval-tiny --model models/tiny --adapter outputs/tiny-sft-lora '
        '--data data/synth --split test --k 3 --output eval/localize',
    ),
    'annotate': (
        'gleamx annotate --data data/u1652-pairs --model gpt-4o --base-url https://api.openai.com/v1 '
        '--lang en,zh --out data/u1652-annotated',
        'gleamx annotate --data data/u1652-pairs --model gpt-4o --base-url https://api.openai.com/v1 '
        '--lang en,zh --out data/u1652-annotated --batch --price-in 2.5 --price-out 10',
    ),
    'push': (
        'gleamx push outputs/tiny-sft-lora --repo-id you/gleamx-tiny --dry-run',
    ),
    'merge': (
        'gleamx merge --base Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/lora --out merged/',
    ),
    'demo': (
        'gleamx demo --out gleamx-demo',
    ),
    'predict': (
        'gleamx predict --query query.jpg --satellite satellite.jpg --view uav',
        'gleamx predict --query q.jpg --satellite s.jpg --model Qwen/Qwen2.5-VL-3B-Instruct '
        '--adapter outputs/lora --lang zh',
    ),
    'app': (
        'gleamx app',
        'gleamx app --model Qwen/Qwen2.5-VL-3B-Instruct --adapter outputs/lora --encoder outputs/retrieval '
        '--gallery data/u1652-test',
    ),
    'review serve': (
        'gleamx review serve --data data/u1652-annotated --split test',
        'gleamx review serve --data data/u1652-gleamx --split test --predictions eval/u1652-en/predictions.jsonl '
        '--lang en --ratings ratings/u1652-en.jsonl',
    ),
    'review export': (
        'gleamx review export --data data/u1652-annotated --split test --out sheet.csv',
    ),
    'review import': (
        'gleamx review import --data data/u1652-annotated --split test --out data/u1652-gleamx',
    ),
}


def _config(ref: str) -> Callable[[], type]:
    """The config dataclass ``ref`` (``"module:Class"`` of gleamx), imported when its command is parsed."""
    return lambda: _load(ref)


COMMANDS: dict[str, Command] = {
    "data synth": Command(_config("synth.config:SynthConfig"), cmd_data_synth,
                          "generate the procedural cross-view dataset"),
    "data validate": Command(_config("data.config:ValidateConfig"), cmd_data_validate,
                             "count samples and list every problem (exit 1 if any)"),
    "data convert": Command(_config("data.config:ConvertConfig"), _prints("prompts.convert:convert"),
                            "convert between gleamx JSONL and ShareGPT/LLaMA-Factory"),
    "data cvgl": Command(_config("data.config:CvglConfig"), _prints("data.cvgl:convert_layout"),
                         "write the retrieval layout for University-1652, VIGOR, CVUSA, CVACT or paired "
                         "folders on disk"),
    "data pairs": Command(_config("curate.pairs:PairsConfig"), _prints("curate.pairs:make_pairs"),
                          "matching and non-matching pairs (random and hard negatives) from a retrieval layout"),
    "data push": Command(_config("curate.publish:DataPushConfig"), _prints("curate.publish:push_dataset"),
                         "publish a dataset to the Hub as a datasets-loadable repo (Parquet with images, card)"),
    "models tiny": Command(_config("models.config:TinyModelConfig"), _prints("models.tiny:build_tiny"),
                           "build a tiny random-initialised Qwen-VL-class model"),
    "sft": Command(None, cmd_sft, "fine-tune from a recipe: --config tiny/sft_lora or a YAML path "
                                  "(same as recipes/sft.py); --accelerate_config zero2 launches it with accelerate"),
    "grpo": Command(None, cmd_grpo, "RL with verifiable rewards (GRPO) from a recipe: --config tiny/grpo or a YAML "
                                    "path (same as recipes/grpo.py); --accelerate_config zero3 launches it"),
    "eval": Command(_config("eval.config:EvalConfig"), _prints("eval.run:run_eval"),
                    "match accuracy and explanation quality of a model, or of a predictions file "
                    "(also: gleamx-eval)", recipes="eval", launches=True),
    "retrieval train": Command(None, cmd_retrieval_train,
                               "train the retrieval encoder from a recipe: --config retrieval/tiny or a YAML path "
                               "(same as recipes/retrieval.py); --accelerate_config ddp launches it"),
    "compare": Command(_config("eval.compare:CompareConfig"), _prints("eval.compare:run_compare"),
                       "paired comparison of eval runs: differences with intervals, McNemar's test, the "
                       '"no match" bias, per view, label and language'),
    "export lmms-eval": Command(_config("eval.lmms_export:LmmsExportConfig"),
                                _prints("eval.lmms_export:export_lmms_task"),
                                "write a split as an lmms-eval task folder: any model lmms-eval runs is scored on "
                                "GLEAM-X with gleamx's prompt and verdict parser"),
    "ablation": Command(_config("recipes.ablation:AblationConfig"), _prints("recipes.ablation:run_ablation"),
                        "train the arms of an ablation (one SFT recipe, one difference each), evaluate each on the "
                        "same samples, compare them (the paper's label vs explanations: --config "
                        "qwen2.5-vl-3b/ablation)", recipes="ablation"),
    "retrieval eval": Command(_config("retrieval.run_config:RetrievalEvalConfig"),
                              _prints("retrieval.evaluate:run_retrieval_eval"),
                              "R@k, R@1%, mAP of an encoder on a split, overall and per view", launches=True),
    "localize": Command(_config("retrieval.run_config:LocalizeConfig"), _prints("retrieval.localize:localize"),
                        "the retrieval encoder's top-k candidates, verified and explained by the MLLM, reranked"),
    "annotate": Command(_config("curate.annotate:AnnotateConfig"), cmd_annotate,
                        "explain pairs with an OpenAI-compatible MLLM (en, zh); replies that contradict the label "
                        "are flagged, not kept"),
    "push": Command(_config("hub.config:PushConfig"), cmd_push,
                    "upload a training output dir (adapter/model, processor, card) to the Hub"),
    "merge": Command(_config("hub.config:MergeConfig"), cmd_merge, "merge a LoRA adapter into its base model"),
    "demo": Command(_config("demo:DemoConfig"), cmd_demo,
                    "run the pipeline end to end on generated data and a tiny model"),
    "predict": Command(_config("app.predict:PredictConfig"), cmd_predict,
                       "one pair from the command line: the explanation, verdict and P(yes), as the app answers"),
    "app": Command(_config("app.config:AppConfig"), cmd_app,
                   "a Gradio page: verify and explain a pair, localize a query (tiny model and generated data "
                   "without --model); --export-space DIR writes it as a Hugging Face Space"),
    "review serve": Command(_config("curate.review:ReviewServeConfig"), cmd_review_serve,
                            "open the review page: accept, edit, reject and rate each explanation, saved at once "
                            "(--predictions: rate a model's answers, for gleamx eval --ratings)"),
    "review export": Command(_config("curate.review:ReviewExportConfig"), _prints("curate.review:export_sheet"),
                             "write a split as a CSV/JSONL sheet for review in a spreadsheet"),
    "review import": Command(_config("curate.review:ReviewImportConfig"), _prints("curate.review:import_revisions"),
                             "merge revisions into a new dataset and report edit statistics"),
}
_GROUPS = {"data": "make, check, convert, pair and publish GLEAM-X data", "models": "model utilities",
           "export": "GLEAM-X for other evaluation harnesses",
           "retrieval": "Retrieval encoder: train and score the retrieval encoder",
           "review": "human revision of explanations: review page, sheets, import"}


def _escape(text: str) -> str:
    return text.replace("%", "%%")


def _every_command() -> str:
    """``gleamx``: every command, a group's leaves together (``data synth|validate|...``), from :data:`COMMANDS`."""
    seen: dict[str, list[str]] = {}
    for name in COMMANDS:
        head, _, leaf = name.partition(" ")
        seen.setdefault(head, []).extend([leaf] if leaf else [])
    return "gleamx commands: " + ", ".join(f"{h} {'|'.join(leaves)}" if leaves else h for h, leaves in seen.items())


def build_parser() -> argparse.ArgumentParser:
    """The ``gleamx`` command tree, for ``--help`` and for finding a command; leaves parse nothing themselves."""
    top = GleamParser(prog="gleamx", description=f"{_every_command()}\n\n`gleamx COMMAND --help` shows one "
                                                 "command's options; --verbose anywhere shows every library warning.",
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=GleamParser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, cmd in COMMANDS.items():
        head, _, leaf = name.partition(" ")
        where = sub
        if leaf:
            if head not in groups:
                groups[head] = sub.add_parser(head, help=_GROUPS[head]).add_subparsers(
                    dest=f"{head}_command", metavar="COMMAND", required=True)
            where = groups[head]
        where.add_parser(leaf or head, help=_escape(cmd.help), add_help=False)
    return top


def command_of(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command ``argv`` names (``"data synth"``) and the arguments after it; ``None`` when it names none."""
    for n in (2, 1):
        name = " ".join(argv[:n])
        if len(argv) >= n and name in COMMANDS:
            return name, argv[n:]
    return None, argv


def parse_command(name: str, argv: list[str], prog: str | None = None) -> Any:
    """The config of command ``name`` from ``argv``: what ``gleamx NAME ARGV`` would run with."""
    cmd = COMMANDS[name]
    argv = list(argv)
    if cmd.recipes:
        from gleamx.recipes import resolve_config

        argv = resolve_config(argv, cmd.recipes)
    from gleamx.parsing import with_examples

    text = cmd.help
    if cmd.launches:
        from gleamx import accelerate_configs

        text += ". " + LAUNCHER_HELP.format(names=", ".join(accelerate_configs.names()))
    parser = command_parser(cmd.config(), prog=prog or f"gleamx {name}",
                            description=with_examples(EXAMPLES.get(name, ()), _escape(text)))
    return parser.parse_config(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--verbose" in argv:  # anywhere on the line: every library's warnings (no command has a --verbose field)
        argv = [a for a in argv if a != "--verbose"]
        os.environ["GLEAMX_VERBOSE"] = "1"  # the recipe scripts' and accelerate's child processes see it too
    name, rest = command_of(argv)
    if name is None:
        build_parser().parse_args(argv)  # prints the help, or one line naming the unknown command
        return 2
    cmd = COMMANDS[name]
    if cmd.config is None:
        return run_cli(lambda: cmd.run(rest))
    if cmd.launches and any(a.partition("=")[0] in ("--accelerate_config", "--accelerate-config") for a in rest):
        return run_cli(lambda: _launch_command(name, rest, prog))
    return run_cli(lambda: cmd.run(parse_command(name, rest, prog)))


if __name__ == "__main__":
    sys.exit(main())
