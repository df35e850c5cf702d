"""``gleamx``: the command table (:data:`COMMANDS`); ``gleamx --help`` lists every command from it.

Every command is a config dataclass parsed by :class:`gleamx.parsing.GleamParser` (flags and
``--config FILE.yaml``) and one library call; this file only prints what the call returns.
``sft`` and ``retrieval train`` hand their arguments to the recipe scripts, whose TrlParser reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gleamx.parsing import GleamParser, command_parser
from gleamx.console import console, progress, run_cli


# --- what each command prints (the work is one library call) ----------------------------------------------


def cmd_predict(cfg) -> int:
    from gleamx.app.predict import predict

    result = predict(cfg)
    if cfg.json:
        print(result.json_text())
    else:
        for line in result.summary_lines():
            print(line)
    return 0


def cmd_data_synth(cfg) -> int:
    from gleamx.synth import synthesize

    with progress() as bar:
        task = bar.add_task("rendering", total=cfg.n)
        summary = synthesize(
            cfg.out, n=cfg.n, seed=cfg.seed, image_size=cfg.image_size, difficulty=cfg.difficulty,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"wrote {summary.n_samples} samples to {cfg.out}")
    for split, n in summary.by_split.items():
        console.print(f"  {split}: {n}")
    return 0


def _print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
        return
    from rich.table import Table

    console.print(f"{report.n_valid} valid of {report.n_records} records, {len(report.problems)} problem(s)")
    table = Table(show_header=False, box=None, padding=(0, 2))
    for title, counter in (("split", report.by_split), ("view", report.by_view),
                           ("label", report.by_label), ("language", report.by_lang)):
        table.add_row(f"by {title}", "  ".join(f"{k}={n}" for k, n in sorted(counter.items())) or "-")
    console.print(table)
    for p in report.problems:  # plain print: one problem per line, never wrapped or styled
        print(p)


def cmd_data_validate(cfg) -> int:
    from gleamx.data.validation import validate

    report = validate(cfg.path, format=cfg.format, split=cfg.split, columns=cfg.columns,
                      decode_images=cfg.decode, allow_outside_paths=cfg.allow_outside_paths)
    _print_report(report, cfg.json)
    return 0 if report.ok else 1


def cmd_data_convert(cfg) -> int:
    from gleamx.data import load_samples, write_samples
    from gleamx.prompts import write_sharegpt

    res = load_samples(cfg.src, format=cfg.format, split=cfg.split, columns=cfg.columns, skip_bad=cfg.skip_bad,
                       allow_outside_paths=cfg.allow_outside_paths)
    if res.n_bad:
        console.print(f"skipped {res.n_bad} bad record(s) (--skip-bad); first: {res.problems[0]}")
    if cfg.to == "sharegpt":
        n = write_sharegpt(res.dataset, cfg.out, lang=cfg.lang, task=cfg.task)
        console.print(f"wrote {n} conversations from {len(res.dataset)} samples to {cfg.out} (+ dataset_info.json)")
    else:
        n = write_samples(res.dataset, cfg.out)
        console.print(f"wrote {n} samples to {cfg.out}")
    return 0


def cmd_data_cvgl(cfg) -> int:
    from gleamx.data.cvgl import convert_layout

    summary = convert_layout(cfg)
    console.print(f"{cfg.layout} {summary.split}: gallery {summary.n_gallery} tiles, {summary.n_queries} queries "
                  f"({', '.join(f'{k}={v}' for k, v in summary.by_view.items())}) -> {summary.out_dir / 'retrieval'}")
    for note in summary.notes:
        console.print(f"note: {note}", markup=False)
    return 0


def cmd_data_pairs(cfg) -> int:
    from gleamx.curate.pairs import make_pairs

    r = make_pairs(cfg)
    console.print(f"{r.source}: {r.by_label['positive']} positive and {r.by_label['negative']} negative pairs "
                  f"({', '.join(f'{k}={v}' for k, v in r.by_negative.items()) or 'no negatives'}) -> {r.out_dir}")
    for split, n in r.by_split.items():
        console.print(f"  {split}: {n}")
    if r.short:
        console.print(f"note: {r.short} negative(s) left out: a split has too few other locations", markup=False)
    console.print(f"dataset card: {r.card}")
    return 0


def cmd_data_push(cfg) -> int:
    from gleamx.curate.publish import push_dataset

    plan = push_dataset(cfg)
    verb = "uploaded" if plan.uploaded else "would upload"
    splits = ", ".join(f"{k}={n}" for k, n in plan.splits.items())
    print(f"{verb} {len(plan.files)} file(s) to dataset {plan.repo_id} ({'private' if plan.private else 'public'}; "
          f"{splits}), written to {plan.preview_dir}:")
    for name, size in plan.files:
        print(f"  {name} ({size:,} bytes)")
    return 0


def cmd_models_tiny(cfg) -> int:
    if cfg.from_real or cfg.full_size:
        from gleamx.models.real_tiny import REAL_CHECKPOINTS, build_real_tiny_model

        out = build_real_tiny_model(cfg.arch, cfg.out, seed=cfg.seed, full_size=cfg.full_size)
        size = "full-size" if cfg.full_size else "tiny"
        console.print(f"{size} random {cfg.arch} model from {REAL_CHECKPOINTS[cfg.arch][1]}'s own files saved to {out}")
        return 0
    from gleamx.models import build_tiny_model

    out = build_tiny_model(cfg.arch, cfg.out, tokenizer=cfg.tokenizer, seed=cfg.seed)
    console.print(f"tiny {cfg.arch} model ({cfg.tokenizer} tokenizer) saved to {out}")
    return 0


def cmd_push(cfg) -> int:
    from gleamx.hub.push import push_output_dir

    plan = push_output_dir(cfg.output_dir, cfg.repo_id, private=cfg.private, dry_run=cfg.dry_run)
    verb = "would upload" if cfg.dry_run else "uploaded"
    print(f"{verb} {len(plan.files)} file(s) to {plan.repo_id} ({'private' if plan.private else 'public'}):")
    for f in plan.files:
        print(f"  {f}")
    if cfg.dry_run:
        print("--- model card (README.md) ---")
        print(plan.card or "(no README.md in the output dir)")
    return 0


def cmd_merge(cfg) -> int:
    from gleamx.hub.merge import merge_adapter

    out = merge_adapter(cfg.base, cfg.adapter, cfg.out, dtype=cfg.dtype)
    console.print(f"merged model -> {out} (loads with AutoModelForImageTextToText.from_pretrained)")
    return 0


def cmd_demo(cfg) -> int:
    from gleamx.demo import run_demo

    run_demo(cfg)
    return 0


def cmd_app(cfg) -> int:
    if cfg.export_space:
        from gleamx.app.space import export_space

        out = export_space(cfg)
        console.print(f"Space written to {out} (app.py, requirements.txt, README.md, gleamx/): push it with "
                      f"`hf upload USER/SPACE {out} --repo-type space`", markup=False)
        return 0
    from gleamx.app.ui import serve

    try:
        serve(cfg)
    except KeyboardInterrupt:
        console.print("stopped")
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def cmd_eval(cfg) -> int:
    from gleamx.eval.run import run_eval

    results = run_eval(cfg)
    console.print(
        f"n={results['n']}  accuracy={_pct(results['accuracy'])}  on matching pairs={_pct(results['accuracy_positive'])}"
        f"  on non-matching pairs={_pct(results['accuracy_negative'])}  invalid={_pct(results['invalid_rate'])}")
    images = results.get("images") or {}
    if images.get("image_tokens_per_sample") is not None and images.get("min_pixels") and images.get("max_pixels"):
        console.print(f"images: {images['min_pixels']:,} to {images['max_pixels']:,} pixels each, "
                      f"{images['image_tokens_per_sample']:.1f} image tokens per sample "
                      f"(processor of {images['processor']})", markup=False)
    expl = results.get("explanation") or {}
    if expl.get("sbert_cosine") is not None:
        rescaled = expl.get("sbert_cosine_rescaled")
        console.print(f"explanations: sbert_cosine={expl['sbert_cosine']:.4f} "
                      f"(rescaled {'-' if rescaled is None else f'{rescaled:.4f}'}; {expl.get('sbert_model')})  "
                      f"bleu={expl.get('bleu', 0):.2f}  chrf={expl.get('chrf', 0):.2f}  "
                      f"rouge_l={expl.get('rouge_l', 0):.4f}")
    console.print(f"report: {cfg.output}/report.html  tables: {cfg.output}/results.md  "
                  f"numbers: {cfg.output}/results.json")
    return 0


def cmd_retrieval_eval(cfg) -> int:
    from gleamx.retrieval.evaluate import run_retrieval_eval
    from gleamx.retrieval.metrics import percent_text as pc

    m = run_retrieval_eval(cfg)
    if not m["is_main"]:  # accelerate launch: the first process reports
        return 0
    ks = tuple(cfg.ks or (1, 5, 10))
    pct = f"R@{1:g}%"
    console.print(f"{m['n_query']} queries, gallery {m['n_gallery']}: "
                  + "  ".join(f"R@{k} {pc(m[f'R@{k}'])}" for k in ks)
                  + f"  {pct} {pc(m[pct])} (top {m[pct + '_k']})  mAP {pc(m['mAP'])}"
                  + (f"  hit rate {pc(m['hit_rate@1'])}" if "hit_rate@1" in m else ""))
    for view, v in m["by_view"].items():
        console.print(f"  {view:<10} R@1 {pc(v['R@1'])}  R@{ks[-1]} {pc(v[f'R@{ks[-1]}'])}  mAP {pc(v['mAP'])}")
    for note in m["notes"]:
        console.print(f"note: {note}", markup=False)
    console.print(f"numbers: {Path(cfg.output) / 'retrieval_results.json'}")
    return 0


def cmd_localize(cfg) -> int:
    from gleamx.retrieval.localize import localize
    from gleamx.retrieval.metrics import percent_text as pc

    r = localize(cfg)
    console.print(f"{r['n_query']} queries, top-{r['k']} of {r['n_gallery']} tiles: the right tile is among the "
                  f"candidates for {pc(r['recall_at_k'], 1)}%; R@1 {pc(r['R@1_retrieval'], 1)}% by retrieval, "
                  f"{pc(r['R@1_verified'], 1)}% after the MLLM's verification")
    console.print(f"ranked candidates with answers: {Path(cfg.output) / 'ranked.jsonl'}  "
                  f"verification report: {Path(cfg.output) / 'verify' / 'report.html'}")
    return 0


def cmd_annotate(cfg) -> int:
    from gleamx.curate.annotate import annotate

    with progress() as bar:
        task = bar.add_task("annotating", total=None)
        s = annotate(cfg, progress=lambda done, total: bar.update(task, completed=done, total=total))
    first, *rest = s.summary_lines()
    console.print(first, markup=False)
    for line in rest:
        print(line)
    return 1 if s.count("failed") else 0


def _pop_option(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
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

                raise GleamConfigError(f"{flag}: expected an accelerate config file or a packaged config name")
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
    import subprocess

    from gleamx.accelerate_configs import resolve

    config = resolve(launch)
    console.print(f"accelerate launch --config_file {config} -m {module} {' '.join(argv)}", markup=False)
    return subprocess.call([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
                            "-m", module, *argv])


def cmd_sft(argv: list[str]) -> int:
    return _run_recipe("gleamx.recipes.sft", argv, "gleamx sft")  # the same main as recipes/sft.py


def cmd_grpo(argv: list[str]) -> int:
    return _run_recipe("gleamx.recipes.grpo", argv, "gleamx grpo")  # the same main as recipes/grpo.py


def cmd_retrieval_train(argv: list[str]) -> int:
    return _run_recipe("gleamx.recipes.retrieval", argv, "gleamx retrieval train")  # the same main as recipes/retrieval.py


def cmd_review_serve(cfg) -> int:
    from gleamx.curate.review import serve_review

    def ready(url: str, app) -> None:
        console.print(f"reviewing {len(app.order)} pairs of split {cfg.split} at {url} (Ctrl+C stops; every decision is "
                      f"saved at once to {app.log.path}; {len(app.log.latest)} reviewed so far)", markup=False)

    try:
        serve_review(cfg, on_ready=ready)
    except KeyboardInterrupt:  # the way to stop it: every decision is already on disk
        console.print("stopped; every decision made is saved")
    return 0


def cmd_review_export(cfg) -> int:
    from gleamx.curate.review import export_sheet

    out, n, n_done = export_sheet(cfg)
    console.print(f"wrote {n} rows ({n_done} with a decision) to {out}", markup=False)
    return 0


def cmd_review_import(cfg) -> int:
    from gleamx.curate.review import STATS_NAME, import_revisions

    r = import_revisions(cfg)
    st = r.stats
    console.print(f"split {st['split']}: {st['n_reviewed']} of {st['n_split']} reviewed: {st['n_accepted']} accepted, "
                  f"{st['n_edited']} edited, {st['n_rejected']} rejected (left out), {st['n_unreviewed']} unreviewed"
                  f" ({'kept' if cfg.keep_unreviewed else 'left out'}); share edited {_pct(st['share_edited'])}",
                  markup=False)
    for lang, v in st["languages"].items():
        if v["n"]:
            console.print(f"  {lang}: {v['n_edited']} of {v['n']} edited ({_pct(v['share_edited'])}), mean edit "
                          f"distance {v['mean_edit_distance']:.2f} characters", markup=False)
    files = ", ".join(f"{name}.jsonl ({n})" for name, n in r.written.items())
    console.print(f"wrote {files} and {STATS_NAME} to {r.out}", markup=False)
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
    ),
    'review export': (
        'gleamx review export --data data/u1652-annotated --split test --out sheet.csv',
    ),
    'review import': (
        'gleamx review import --data data/u1652-annotated --split test --out data/u1652-gleamx',
    ),
}


def _config(module: str, name: str) -> Callable[[], type]:
    def load() -> type:
        from importlib import import_module

        return getattr(import_module(module), name)

    return load


COMMANDS: dict[str, Command] = {
    "data synth": Command(_config("gleamx.synth.config", "SynthConfig"), cmd_data_synth,
                          "generate the procedural cross-view dataset"),
    "data validate": Command(_config("gleamx.data.config", "ValidateConfig"), cmd_data_validate,
                             "count samples and list every problem (exit 1 if any)"),
    "data convert": Command(_config("gleamx.data.config", "ConvertConfig"), cmd_data_convert,
                            "convert between gleamx JSONL and ShareGPT/LLaMA-Factory"),
    "data cvgl": Command(_config("gleamx.data.config", "CvglConfig"), cmd_data_cvgl,
                         "write the retrieval layout for University-1652, VIGOR, CVUSA, CVACT or paired "
                         "folders on disk"),
    "data pairs": Command(_config("gleamx.curate.pairs", "PairsConfig"), cmd_data_pairs,
                          "matching and non-matching pairs (random and hard negatives) from a retrieval layout"),
    "data push": Command(_config("gleamx.curate.publish", "DataPushConfig"), cmd_data_push,
                         "publish a dataset to the Hub as a datasets-loadable repo (Parquet with images, card)"),
    "models tiny": Command(_config("gleamx.models.config", "TinyModelConfig"), cmd_models_tiny,
                           "build a tiny random-initialised Qwen-VL-class model"),
    "sft": Command(None, cmd_sft, "fine-tune from a recipe: --config tiny/sft_lora or a YAML path "
                                  "(same as recipes/sft.py); --accelerate_config zero2 launches it with accelerate"),
    "grpo": Command(None, cmd_grpo, "RL with verifiable rewards (GRPO) from a recipe: --config tiny/grpo or a YAML "
                                    "path (same as recipes/grpo.py); --accelerate_config zero3 launches it"),
    "eval": Command(_config("gleamx.eval.config", "EvalConfig"), cmd_eval,
                    "match accuracy and explanation quality of a model, or of a predictions file "
                    "(also: gleamx-eval)", recipes="eval"),
    "retrieval train": Command(None, cmd_retrieval_train, "train the retrieval encoder from a recipe: --config retrieval/tiny or a "
                                                          "YAML path (same as recipes/retrieval.py); --accelerate_config "
                                                          "ddp launches it"),
    "retrieval eval": Command(_config("gleamx.retrieval.run_config", "RetrievalEvalConfig"), cmd_retrieval_eval,
                              "R@k, R@1%, mAP of an encoder on a split, overall and per view"),
    "localize": Command(_config("gleamx.retrieval.run_config", "LocalizeConfig"), cmd_localize,
                        "the retrieval encoder's top-k candidates, verified and explained by the MLLM, reranked"),
    "annotate": Command(_config("gleamx.curate.annotate", "AnnotateConfig"), cmd_annotate,
                        "explain pairs with an OpenAI-compatible MLLM (en, zh); replies that contradict the label "
                        "are flagged, not kept"),
    "push": Command(_config("gleamx.hub.config", "PushConfig"), cmd_push,
                    "upload a training output dir (adapter/model, processor, card) to the Hub"),
    "merge": Command(_config("gleamx.hub.config", "MergeConfig"), cmd_merge,
                     "merge a LoRA adapter into its base model"),
    "demo": Command(_config("gleamx.demo", "DemoConfig"), cmd_demo,
                    "run the pipeline end to end on generated data and a tiny model"),
    "predict": Command(_config("gleamx.app.predict", "PredictConfig"), cmd_predict,
                       "one pair from the command line: the explanation, verdict and P(yes), as the app answers"),
    "app": Command(_config("gleamx.app.config", "AppConfig"), cmd_app,
                   "a Gradio page: verify and explain a pair, localize a query (tiny model and generated data "
                   "without --model); --export-space DIR writes it as a Hugging Face Space"),
    "review serve": Command(_config("gleamx.curate.review", "ReviewServeConfig"), cmd_review_serve,
                            "open the review page: accept, edit or reject each explanation, saved at once"),
    "review export": Command(_config("gleamx.curate.review", "ReviewExportConfig"), cmd_review_export,
                             "write a split as a CSV/JSONL sheet for review in a spreadsheet"),
    "review import": Command(_config("gleamx.curate.review", "ReviewImportConfig"), cmd_review_import,
                             "merge revisions into a new dataset and report edit statistics"),
}
_GROUPS = {"data": "make, check, convert, pair and publish GLEAM-X data", "models": "model utilities",
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

    parser = command_parser(cmd.config(), prog=prog or f"gleamx {name}",
                            description=with_examples(EXAMPLES.get(name, ()), _escape(cmd.help)))
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
    return run_cli(lambda: cmd.run(parse_command(name, rest, prog)))


if __name__ == "__main__":
    sys.exit(main())
