"""Assemble the synthetic GLEAM-X dataset: locations, splits, pairs, hard negatives, files and card.

Randomness: every random draw comes from a generator seeded by ``(seed, purpose,
index...)``, so one location's scene and renders do not depend on how many
locations came before it, and the same arguments give the same bytes.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import DatasetCard, DatasetCardData
from PIL import Image

from gleamx import __version__
from gleamx.data.card import PairCounts, size_category
from gleamx.data.jsonl import write_samples
from gleamx.data.schema import LANGS, SPLITS, VIEWS, GleamSample
from gleamx.synth.explain import Comparison, compare, explain, visible_buildings
from gleamx.synth.render import ViewInfo, render_satellite, render_view
from gleamx.synth.world import LAND_COVERS, Scene, generate_scene, perturb_scene, scene_similarity
from gleamx.errors import GleamConfigError
from gleamx.outputs import claim_folder
from gleamx.task.verdict import parse_verdict

SOURCE = "gleamx-synth"
CONFIG_NAME = "synth_config.json"  # the settings a dataset was made with (also what marks an older gleamx's output)
_PURPOSE = {"scene": 1, "twin": 2, "render": 3, "assemble": 4, "explain": 5, "cover": 6}


@dataclass(frozen=True)
class Level:
    """What a difficulty changes besides the renderers' distortion."""

    hard_negative_ratio: float  # default share of negatives that are hard
    twin_fraction: float  # share of locations generated as perturbed twins of another
    twin_changes: tuple[int, int]  # how many edits a twin gets (fewer = harder)
    land_cover: bool = False  # wash each location in a land-cover colour, cycled so neighbours differ


DIFFICULTIES: dict[str, Level] = {
    # Every view washed in its location's land cover; negatives always pair different covers. Decidable
    # from global colour alone: the level at which a tiny random-init model is shown to learn.
    "toy": Level(0.0, 0.0, (3, 5), land_cover=True),
    "easy": Level(0.2, 0.3, (3, 5)),
    "medium": Level(0.4, 0.5, (2, 3)),
    "hard": Level(0.7, 0.8, (1, 2)),
}


@dataclass
class SynthSummary(PairCounts):
    """What :func:`synthesize` wrote."""

    out_dir: Path
    seed: int
    difficulty: str
    n_samples: int
    n_locations: int
    jsonl: dict[str, Path]
    gallery: Path
    queries: Path
    locations: Path
    card: Path
    config: Path
    image_dirs: dict[str, Path] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """What ``gleamx data synth`` prints: how many samples went where, then the count of each split."""
        return [f"wrote {self.n_samples} samples to {self.out_dir}", *self.split_lines()]


@dataclass
class _Location:
    scene: Scene
    split: str
    sat: ViewInfo
    views: dict[str, ViewInfo]
    images: dict[str, Path]  # "satellite" and each query view -> absolute path

    @property
    def id(self) -> str:
        return self.scene.location_id


def _rng(seed: int, purpose: str, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, _PURPOSE[purpose], *keys])


def _check(n: int, seed: int, image_size: int, difficulty: str, views: Sequence[str], neg_ratio: float,
           hard_negative_ratio: float, split_fractions: Sequence[float]) -> None:
    def bad(name: str, msg: str) -> GleamConfigError:
        return GleamConfigError(f"synthesize: {name}: {msg}")

    if n < 1:
        raise bad("n", f"expected a positive number of samples, got {n}")
    if seed < 0:
        raise bad("seed", f"expected a non-negative integer, got {seed}")
    if image_size < 32 or image_size % 4:
        raise bad("image_size", f"expected a multiple of 4 that is at least 32, got {image_size}")
    if difficulty not in DIFFICULTIES:
        raise bad("difficulty", f"expected one of {sorted(DIFFICULTIES)}, got {difficulty!r}")
    if not views or len(set(views)) != len(views) or any(v not in VIEWS for v in views):
        raise bad("views", f"expected distinct views from {list(VIEWS)}, got {list(views)}")
    for name, v in (("neg_ratio", neg_ratio), ("hard_negative_ratio", hard_negative_ratio)):
        if not 0.0 <= v <= 1.0:
            raise bad(name, f"expected a value in [0, 1], got {v}")
    if len(split_fractions) != 3 or min(split_fractions) < 0 or abs(sum(split_fractions) - 1.0) > 1e-6:
        raise bad("split_fractions", f"expected three non-negative fractions (train, val, test) summing to 1, "
                                     f"got {list(split_fractions)}")


def split_counts(n: int, fractions: Sequence[float]) -> dict[str, int]:
    """Samples per split by largest remainder (exactly ``n`` in total)."""
    raw = [n * f for f in fractions]
    counts = [int(math.floor(r)) for r in raw]
    order = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return dict(zip(SPLITS, counts))


def _save_png(img: Image.Image, path: Path) -> None:
    # PIL writes no time or text chunks unless asked, so the bytes depend on pixels only.
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=False, compress_level=1)  # 3x faster than 6, ~6% larger


def _render_location(scene: Scene, split: str, idx: int, seed: int, out: Path, size: int, difficulty: str,
                     views: Sequence[str]) -> _Location:
    sat = render_satellite(scene, size, _rng(seed, "render", idx, 0))
    images = {"satellite": out / "images" / "satellite" / f"{scene.location_id}.png"}
    _save_png(sat.image, images["satellite"])
    infos: dict[str, ViewInfo] = {}
    for view in views:
        rng = _rng(seed, "render", idx, 1 + VIEWS.index(view))
        for _ in range(6):  # a street camera can face a blank stretch: re-pose until it supports a positive
            r = render_view(view, scene, size, rng, difficulty)
            cmp = compare(scene, r.info, scene, sat.info)
            if cmp.shared and not cmp.diffs:
                break
        infos[view] = r.info
        images[view] = out / "images" / view / f"{scene.location_id}.png"
        _save_png(r.image, images[view])
    return _Location(scene, split, sat.info, infos, images)


def _make_locations(out: Path, counts: dict[str, int], seed: int, size: int, difficulty: str, views: Sequence[str],
                    want_hard: bool, progress: Callable[[int, int], None] | None) -> dict[str, list[_Location]]:
    level = DIFFICULTIES[difficulty]
    per_split = {s: (max(2, math.ceil(c / len(views))) if c else 0) for s, c in counts.items()}
    total, idx = sum(per_split.values()), 0
    locs: dict[str, list[_Location]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        n_loc = per_split[split]
        # Keep at least one location out of the twin pairs, so every query has a plain negative too.
        n_pairs = min((n_loc - 1) // 2, int(n_loc * level.twin_fraction / 2))
        if want_hard and n_loc >= 3:
            n_pairs = max(1, n_pairs)
        covers = [list(LAND_COVERS)[int(i)] for i in _rng(seed, "cover", SPLITS.index(split)).permutation(
            len(LAND_COVERS))]
        for k in range(n_loc):
            render = functools.partial(_render_location, split=split, idx=idx, seed=seed, out=out, size=size,
                                       difficulty=difficulty, views=views)
            if k < 2 * n_pairs and k % 2 == 1:  # odd slots of the first pairs are twins of the slot before
                loc = _make_twin(locs[split][-1], f"loc{idx:05d}", _rng(seed, "twin", idx), level, render)
            else:
                scene = generate_scene(f"loc{idx:05d}", _rng(seed, "scene", idx), difficulty)
                if level.land_cover:  # cycled, so every split holds several covers and has negatives
                    scene.land_cover = covers[k % len(covers)]
                loc = render(scene)
            locs[split].append(loc)
            idx += 1
            if progress is not None:
                progress(idx, total)
    return locs


def _make_twin(base: _Location, lid: str, rng: np.random.Generator, level: Level,
               render: Callable[[Scene], _Location]) -> _Location:
    """A perturbed copy of ``base`` whose changes every query view of either location can see.

    A street camera may face away from the edited building; then the twin gets
    one more edit and is rendered again (a few times at most).
    """
    n_changes = int(rng.integers(level.twin_changes[0], level.twin_changes[1] + 1))
    for _ in range(4):
        twin = render(perturb_scene(base.scene, lid, rng, n_changes))
        if all(compare(base.scene, base.views[v], twin.scene, twin.sat).diffs
               and compare(twin.scene, twin.views[v], base.scene, base.sat).diffs for v in base.views):
            break
        n_changes += 1
    return twin


def _pairs(locs: list[_Location], n_samples: int, views: Sequence[str], neg_ratio: float,
           rng: np.random.Generator) -> list[tuple[_Location, str, bool]]:
    """View-balanced (location, view, label) triples with exactly round(n·(1-neg_ratio)) positives."""
    extra = {views[int(i)] for i in rng.permutation(len(views))[: n_samples % len(views)]}
    out: list[tuple[_Location, str]] = []
    for view in views:
        count = n_samples // len(views) + (view in extra)
        order = rng.permutation(len(locs))
        out += [(locs[int(order[i % len(locs)])], view) for i in range(count)]
    p, phase = round(n_samples * (1.0 - neg_ratio)) / max(1, n_samples), float(rng.random())
    # Evenly spaced positives over the view-grouped list keep every view near the target ratio.
    labels = [math.floor((i + 1) * p + phase) > math.floor(i * p + phase) for i in range(len(out))]
    return [(loc, view, lab) for (loc, view), lab in zip(out, labels)]


def _twins(locs: list[_Location]) -> dict[str, _Location]:
    by_id = {loc.id: loc for loc in locs}
    out: dict[str, _Location] = {}
    for loc in locs:
        if loc.scene.twin_of in by_id:
            out[loc.id], out[loc.scene.twin_of] = by_id[loc.scene.twin_of], loc  # type: ignore[index]
    return out


def _negative(q: _Location, view: str, locs: list[_Location], twins: dict[str, _Location], hard: bool,
              rng: np.random.Generator,
              sims: dict[tuple[str, str], float]) -> tuple[_Location, str, str | None, Comparison] | None:
    """A satellite location for a negative pair whose difference the query view really shows."""

    def _similarity(a: Scene, b: Scene) -> float:  # memoised: every hard negative ranks the whole split
        key = (a.location_id, b.location_id)
        if key not in sims:
            sims[key] = scene_similarity(a, b)
        return sims[key]

    cover = q.scene.land_cover  # toy level: a negative never shares the query's land cover
    others = [loc for loc in locs if loc.id != q.id and (cover is None or loc.scene.land_cover != cover)]
    twin = twins.get(q.id)
    twin = twin if twin in others else None
    order: list[tuple[_Location, str, str | None]] = []
    if hard:
        if twin is not None:
            order.append((twin, "hard", "twin"))
        similar = sorted((o for o in others if o is not twin),
                         key=lambda o: (-_similarity(q.scene, o.scene), o.id))
        top = [similar[int(i)] for i in rng.permutation(min(3, len(similar)))]
        order += [(o, "hard", "similar") for o in top + similar[3:]]
    order += [(others[int(i)], "random", None) for i in rng.permutation(len(others)) if others[int(i)] is not twin]
    if twin is not None:
        order.append((twin, "hard", "twin"))
    for cand, kind, source in order:
        cmp = compare(q.scene, q.views[view], cand.scene, cand.sat)
        if cmp.diffs:
            return cand, kind, source, cmp
    return None


def _pair_up(q: _Location, view: str, label: bool, locs: list[_Location], twins: dict[str, _Location], hard: bool,
             rng: np.random.Generator, sims: dict[tuple[str, str], float]
             ) -> tuple[_Location, _Location, str | None, str | None, Comparison]:
    """(query, satellite, negative kind, hard source, comparison) for one sample.

    If ``q``'s view cannot support the label (a positive with no visible evidence,
    a negative with no visible difference: rare), another location of the split
    takes its place, keeping the view and label counts exact.
    """
    for cand in [q] + [locs[int(i)] for i in rng.permutation(len(locs)) if locs[int(i)] is not q]:
        if label:
            cmp = compare(cand.scene, cand.views[view], cand.scene, cand.sat)
            if cmp.shared and not cmp.diffs:
                return cand, cand, None, None, cmp
        elif (got := _negative(cand, view, locs, twins, hard, rng, sims)) is not None:
            return (cand, *got)
    raise RuntimeError(f"no location of this split supports a {'positive' if label else 'negative'} {view} pair")


def _meta(q: _Location, view: str, sat: _Location, difficulty: str, kind: str | None, source: str | None,
          cmp: Comparison) -> dict[str, Any]:
    s = q.scene
    cam = q.views[view].camera
    # Scalar values and the same keys on every line, so the JSONL loads as one Arrow schema.
    return {
        "location_id": q.id,
        "satellite_location_id": sat.id,
        "difficulty": difficulty,
        "negative": kind,
        "hard_source": source,
        "differences": ",".join(dict.fromkeys(cmp.kinds)) if kind else "",
        "junction": s.junction,
        "satellite_junction": sat.scene.junction,
        "water": s.water.kind if s.water else "none",
        "landmarks": ",".join(s.landmarks),
        "n_buildings": len(s.buildings),
        "n_visible_buildings": len(visible_buildings(s, q.views[view])),
        "heading": float(cam["heading"]) if "heading" in cam else None,
        "land_cover": s.land_cover,
        "satellite_land_cover": sat.scene.land_cover,
    }


def _samples(locs: dict[str, list[_Location]], counts: dict[str, int], seed: int, views: Sequence[str],
             neg_ratio: float, hard_ratio: float, difficulty: str) -> dict[str, list[GleamSample]]:
    out: dict[str, list[GleamSample]] = {}
    index = 0
    for split_index, split in enumerate(SPLITS):
        rng = _rng(seed, "assemble", split_index)
        pairs = _pairs(locs[split], counts[split], views, neg_ratio, rng) if counts[split] else []
        neg_ids = [i for i, (_, _, lab) in enumerate(pairs) if not lab]
        hard_ids = {neg_ids[int(i)] for i in rng.permutation(len(neg_ids))[: round(len(neg_ids) * hard_ratio)]}
        twins = _twins(locs[split])
        sims: dict[tuple[str, str], float] = {}
        rows = []
        for i, (q, view, label) in enumerate(pairs):
            q, sat, kind, source, cmp = _pair_up(q, view, label, locs[split], twins, i in hard_ids, rng, sims)
            rows.append((q, view, label, sat, kind, source, cmp))
        samples = []
        for j in rng.permutation(len(rows)):
            q, view, label, sat, kind, source, cmp = rows[int(j)]
            text = explain(q.scene, q.views[view], sat.scene, sat.sat, label, _rng(seed, "explain", index), cmp)
            if any(parse_verdict(t) != label for t in text.values()):  # a template bug, never bad input
                raise RuntimeError(f"explanation does not parse to its label: {text}")
            samples.append(GleamSample(
                id=f"synth-s{seed}-{index:06d}", query_image=str(q.images[view]),
                satellite_image=str(sat.images["satellite"]), query_view=view, label=label, explanation=text,
                source=SOURCE, split=split, meta=_meta(q, view, sat, difficulty, kind, source, cmp)))
            index += 1
        out[split] = samples
    return out


def _write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _rel(p: Path, base: Path) -> str:
    return Path(os.path.relpath(p, base)).as_posix()


def _write_retrieval(out: Path, locs: dict[str, list[_Location]], views: Sequence[str]) -> tuple[Path, Path]:
    base = out / "retrieval"
    all_locs = [loc for s in SPLITS for loc in locs[s]]
    gallery = [{"location_id": loc.id, "image": _rel(loc.images["satellite"], base), "split": loc.split}
               for loc in all_locs]
    queries = [{"query_id": f"{loc.id}-{v}", "image": _rel(loc.images[v], base), "query_view": v,
                "location_id": loc.id, "split": loc.split} for loc in all_locs for v in views]
    _write_jsonl(gallery, base / "gallery.jsonl")
    _write_jsonl(queries, base / "queries.jsonl")
    return base / "gallery.jsonl", base / "queries.jsonl"


def _count_row(name: str, rows: list[GleamSample], views: Sequence[str]) -> str:
    """One line of the card's counts table: samples, positives, negatives, hard negatives, per view."""
    return (f"| {name} | {len(rows)} | {sum(x.label for x in rows)} | {sum(not x.label for x in rows)} | "
            f"{sum(x.meta['negative'] == 'hard' for x in rows)} | "
            + " | ".join(str(sum(x.query_view == view for x in rows)) for view in views) + " |")


def _card_text(config: dict[str, Any], samples: dict[str, list[GleamSample]], n_locations: int) -> str:
    by_split = {s: len(v) for s, v in samples.items()}
    allsamp = [x for v in samples.values() for x in v]
    data = DatasetCardData(
        language=list(LANGS),
        license="apache-2.0",
        pretty_name=f"GLEAM-X synthetic cross-view matching ({config['difficulty']}, seed {config['seed']})",
        task_categories=["image-text-to-text", "visual-question-answering"],
        size_categories=[size_category(len(allsamp))],
        tags=["geo-localization", "cross-view", "synthetic", "gleamx"],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"{s}.jsonl"} for s in SPLITS if by_split[s]]}],
    )
    lines = [
        f"# {data.pretty_name}", "",
        "Procedurally generated pairs for GLEAM-X (match-and-explain cross-view geo-localization): a query view "
        "(UAV, street map, panorama or ground photo) and a satellite tile, a same-place label, and an explanation "
        "in English and Chinese that ends in the verdict line `Answer: Yes|No` / `结论：是|否`.", "",
        "## Counts", "",
        "| split | samples | positive | negative | hard negative | " + " | ".join(config["views"]) + " |",
        "|---|---|---|---|---|" + "---|" * len(config["views"]),
        *(_count_row(s, samples[s], config["views"]) for s in SPLITS),
        _count_row("**total**", allsamp, config["views"]), "",
        f"{n_locations} locations; train, val and test use disjoint locations.", "",
        "## How it was generated", "",
        "Each location is a random scene on a 200 m × 200 m plane: a T-junction, crossroads or roundabout with roads "
        "of different widths, buildings with distinct roof colours and shapes (rectangle, L-shape, round tower, long "
        "slab), sometimes a river (with a bridge) or a pond, a park, trees, and a stadium or tall tower. All views are "
        "rendered from that ground truth: a north-up textured satellite tile; an oblique UAV view (random heading, "
        "perspective, haze); a flat north-up street map; a 360° panorama from the junction (north at the centre "
        "column, east at three quarters; elevation +40° to -20°); and a perspective ground photo looking along a road "
        "towards "
        "the junction.", "",
        "Negatives pair a query with another location of the same split. Hard negatives use a *twin* (same roads and "
        "water, buildings recoloured, swapped, moved or removed) or the most similar layout; every negative differs in "
        "something the query view actually shows, and its explanation names that difference. Explanations are "
        "generated from the ground truth with varied templates; each sample's `meta` records the locations, the "
        "negative type and the differences.", "",
        "## Files", "",
        "- `train.jsonl`, `val.jsonl`, `test.jsonl`: gleamx JSONL (image paths relative to the file).",
        "- `images/satellite/<location>.png`, `images/<view>/<location>.png`: one image per location and view.",
        "- `retrieval/gallery.jsonl`, `retrieval/queries.jsonl`: satellite gallery and query list for retrieval "
        "(GLEAM-C).",
        "- `scenes/locations.jsonl`: each location's scene facts (objects, relations).",
        "- `synth_config.json`: the generator arguments.", "",
        "## Generation settings", "",
        "| setting | value |", "|---|---|",
    ]
    lines += [f"| {k} | {json.dumps(v, ensure_ascii=False)} |" for k, v in config.items()]
    lines += ["", f"Regenerate with `gleamx.synth.synthesize(out_dir, n={config['n']}, seed={config['seed']}, "
                  f"difficulty={config['difficulty']!r}, image_size={config['image_size']})`; the same arguments give "
                  "byte-identical files.", ""]
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)))


def synthesize(
    out_dir: str | os.PathLike,
    n: int,
    seed: int = 0,
    *,
    image_size: int = 128,
    difficulty: str = "medium",
    views: Sequence[str] = VIEWS,
    neg_ratio: float = 0.5,
    hard_negative_ratio: float | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> SynthSummary:
    """Write a synthetic GLEAM-X dataset of ``n`` pairs to ``out_dir``; same arguments, same bytes.

    ``hard_negative_ratio`` (share of negatives drawn from look-alike locations)
    defaults by ``difficulty`` (toy 0, easy 0.2, medium 0.4, hard 0.7). ``progress(done,
    total)`` is called after each location is rendered. Bad arguments raise
    :class:`~gleamx.errors.GleamConfigError`. ``out_dir`` follows :mod:`gleamx.outputs`: a folder holding
    other files or another dataset is refused unless ``overwrite``, which replaces only what gleamx wrote.
    """
    views = tuple(views)
    if difficulty not in DIFFICULTIES:
        raise GleamConfigError(f"synthesize: difficulty: expected one of {sorted(DIFFICULTIES)}, got {difficulty!r}")
    hard_ratio = DIFFICULTIES[difficulty].hard_negative_ratio if hard_negative_ratio is None else hard_negative_ratio
    _check(n, seed, image_size, difficulty, views, neg_ratio, hard_ratio, split_fractions)
    config = {"n": n, "seed": seed, "image_size": image_size, "difficulty": difficulty, "views": list(views),
              "neg_ratio": neg_ratio, "hard_negative_ratio": hard_ratio, "split_fractions": list(split_fractions),
              "generator": "gleamx.synth"}
    folder = claim_folder(out_dir, "--out", command="data synth", identity=config, overwrite=overwrite,
                          writes=[*(f"{s}.jsonl" for s in SPLITS), "images", "retrieval", "scenes", CONFIG_NAME,
                                  "README.md"], marker=CONFIG_NAME)
    out = folder.path.resolve()
    counts = split_counts(n, split_fractions)
    want_hard = hard_ratio > 0 and neg_ratio > 0
    locs = _make_locations(out, counts, seed, image_size, difficulty, views, want_hard, progress)
    samples = _samples(locs, counts, seed, views, neg_ratio, hard_ratio, difficulty)

    jsonl = {s: out / f"{s}.jsonl" for s in SPLITS}
    for s in SPLITS:
        write_samples(samples[s], jsonl[s])
    gallery, queries = _write_retrieval(out, locs, views)
    locations = out / "scenes" / "locations.jsonl"  # kept apart from the split files, which are the data
    _write_jsonl([{"split": loc.split, **loc.scene.facts()} for s in SPLITS for loc in locs[s]], locations)
    config = {**config, "gleamx_version": __version__}
    config_path = out / CONFIG_NAME
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8", newline="\n")
    n_locations = sum(len(v) for v in locs.values())
    card = out / "README.md"
    card.write_text(_card_text(config, samples, n_locations), encoding="utf-8", newline="\n")
    folder.done()

    return SynthSummary(
        out_dir=out, seed=seed, difficulty=difficulty, n_samples=sum(len(samples[s]) for s in SPLITS),
        n_locations=n_locations, **PairCounts.of({s: samples[s] for s in SPLITS}),
        jsonl=jsonl, gallery=gallery, queries=queries, locations=locations, card=card, config=config_path,
        image_dirs={v: out / "images" / v for v in ("satellite", *views)},
    )
