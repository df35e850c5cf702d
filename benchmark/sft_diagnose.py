"""Why does an SFT cell stay near the label prior? Two diagnostics behind ``benchmark/README.md``'s answer.

``probe``: do the frozen random vision features carry the match? Pools each image's merger output (mean and std
over its tokens), builds |a - b| and a * b for every pair of a split, fits a logistic regression on ``train`` and
scores ``val``. High val accuracy means the information reaches the language model and the failure is in training.

``confusions``: where does a trained model say "Yes" to non-matching pairs? Reads a gleamx-eval output folder
(``predictions.jsonl`` with P(yes)) and tabulates the non-matching pairs by their two land covers (the ``toy``
level's signal): count, accuracy and mean P(yes). A model that cannot yet tell k of the 6 covers apart, but tells
them from the rest, is best off answering P(yes) = (k/12) / (k/12 + C(k,2)/30) on pairs within that group
(positives: half the pairs, over 6 covers; negatives: the other half, over 15 cover pairs): 0.83 for k = 2,
0.71 for k = 3, 0.63 for k = 4. Greedy decoding then says "Yes" to every such negative.

    python benchmark/sft_diagnose.py probe --model MODEL_DIR --data DATA_DIR
    python benchmark/sft_diagnose.py confusions --eval EVAL_DIR --data DATA_DIR --split val
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from math import comb
from pathlib import Path

import numpy as np


def bayes_p_yes(k: int, covers: int = 6) -> float:
    """P(match) within a group of ``k`` covers the model cannot separate (balanced pairs, negatives uniform over
    cover pairs)."""
    pos = 0.5 * k / covers
    neg = 0.5 * comb(k, 2) / comb(covers, 2)
    return pos / (pos + neg)


def probe(model_dir: Path, data: Path, max_pixels: int) -> None:
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(1)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir, max_pixels=max_pixels)
    cache: dict[str, np.ndarray] = {}

    def pooled(rel: str) -> np.ndarray:
        if rel not in cache:
            enc = processor.image_processor(images=[Image.open(data / rel).convert("RGB")], return_tensors="pt")
            with torch.no_grad():
                out = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"])
            tokens = out if torch.is_tensor(out) else (out.pooler_output if getattr(out, "pooler_output", None) is not None
                                                       else out.last_hidden_state)
            cache[rel] = torch.cat([tokens.mean(0), tokens.std(0)]).numpy()
        return cache[rel]

    def pairs(split: str) -> tuple[np.ndarray, np.ndarray]:
        x, y = [], []
        for line in (data / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            a, b = pooled(row["query_image"]), pooled(row["satellite_image"])
            x.append(np.concatenate([np.abs(a - b), a * b]))
            y.append(int(row["label"]))
        return np.asarray(x), np.asarray(y)

    xt, yt = pairs("train")
    xv, yv = pairs("val")
    scale = StandardScaler().fit(xt)
    for c in (0.01, 0.1, 1.0):
        clf = LogisticRegression(C=c, max_iter=3000).fit(scale.transform(xt), yt)
        print(f"probe C={c:g}: train {100 * clf.score(scale.transform(xt), yt):.1f}%, "
              f"val {100 * clf.score(scale.transform(xv), yv):.1f}% ({len(yv)} pairs)")


def confusions(eval_dir: Path, data: Path, split: str) -> None:
    from gleamx.task import parse_verdict

    preds = {}
    for line in (eval_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        preds[row["id"]] = row
    groups: dict[tuple[str, str], list[tuple[bool, float | None]]] = collections.defaultdict(list)
    for line in (data / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["label"]:
            continue
        p = preds[row["id"]]
        covers = tuple(sorted((row["meta"]["land_cover"], row["meta"]["satellite_land_cover"])))
        groups[covers].append((parse_verdict(p["prediction"]) is False, p.get("p_yes")))
    print(f"non-matching {split} pairs by their two land covers: n, accuracy, mean P(yes)")
    for covers, rows in sorted(groups.items()):
        ps = [p for _, p in rows if p is not None]
        print(f"  {covers[0]:>9} / {covers[1]:<9} {len(rows):>3} {100 * np.mean([ok for ok, _ in rows]):6.1f}%"
              f"  {np.mean(ps) if ps else float('nan'):.2f}")
    print("P(yes) a model that cannot separate k covers should answer within them: "
          + ", ".join(f"k={k}: {bayes_p_yes(k):.2f}" for k in (2, 3, 4, 5)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("probe", help="linear probe of the frozen vision features")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--max_pixels", type=int, default=50176, help="as recipes/tiny/sft_learns.yaml")
    c = sub.add_parser("confusions", help="non-matching pairs by land-cover pair")
    c.add_argument("--eval", type=Path, required=True, help="a gleamx-eval output folder")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--split", default="val")
    args = ap.parse_args()
    if args.cmd == "probe":
        probe(args.model, args.data, args.max_pixels)
    else:
        confusions(args.eval, args.data, args.split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
