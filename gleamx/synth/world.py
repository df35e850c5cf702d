"""Procedural ground-truth scenes: roads, buildings, water, vegetation and landmarks on a plane.

Coordinates are metres, ``x`` east and ``y`` north, the junction near ``(0, 0)``. A
satellite tile covers ``[-TILE_HALF, TILE_HALF]²``; roads and rivers continue to
``WORLD_HALF`` so that oblique and ground-level views see them run on past the tile
edge. Every renderer and every explanation reads the same :class:`Scene`, so what a
view shows and what its explanation says cannot drift apart.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from gleamx.synth.phrases import JUNCTION_NAMES

TILE_HALF = 100.0
"""Half the side of a satellite tile (m)."""
WORLD_HALF = 200.0
"""Half the side of the modelled world; far views see this much."""

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (178, 58, 48),
    "blue": (52, 92, 176),
    "yellow": (222, 186, 58),
    "white": (234, 232, 224),
    "grey": (120, 120, 128),
    "green": (60, 140, 72),
}
"""Roof colours: few and far apart, so a colour survives every renderer's distortion."""

LAND_COVERS: dict[str, tuple[int, int, int]] = {
    "grass": (60, 160, 60),
    "sand": (220, 200, 120),
    "snow": (240, 240, 250),
    "red clay": (170, 70, 50),
    "heather": (70, 70, 140),
    "concrete": (150, 150, 150),
}
"""Land covers of the ``toy`` level: one per location, washed over every view of it (see
:func:`gleamx.synth.render.wash`), so a match is decidable from global colour alone."""

SHAPES: tuple[str, ...] = ("rect", "l_shape", "round", "slab")
JUNCTIONS: tuple[str, ...] = ("t", "cross", "roundabout")
COMPASS: tuple[str, ...] = (
    "north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west",
)
SIDES: tuple[str, ...] = ("north", "east", "south", "west")

Point = tuple[float, float]


def bearing(dx: float, dy: float) -> float:
    """Compass bearing of the vector ``(dx, dy)`` in degrees, clockwise from north."""
    return math.degrees(math.atan2(dx, dy)) % 360.0


def compass(dx: float, dy: float) -> str:
    """The 8-point compass word for the vector ``(dx, dy)``."""
    return COMPASS[int((bearing(dx, dy) + 22.5) // 45) % 8]


def compass_of_bearing(deg: float) -> str:
    """The 8-point compass word for a bearing in degrees."""
    return COMPASS[int((deg % 360.0 + 22.5) // 45) % 8]


def side_of_bearing(deg: float) -> str:
    """The side (N/E/S/W) a bearing in degrees points to."""
    return SIDES[int(((deg % 360.0) + 45.0) // 90.0) % 4]


def rotate(points: list[Point], deg: float) -> list[Point]:
    """Rotate points clockwise by ``deg`` (so north turns towards bearing ``deg``)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return [(x * c + y * s, -x * s + y * c) for x, y in points]


def _signed_area(pts: list[Point]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))


def _ccw(pts: list[Point]) -> list[Point]:
    # Renderers take outward wall normals from the winding, so fix it once here.
    return pts if _signed_area(pts) > 0 else pts[::-1]


def _ellipse(rx: float, ry: float, n: int = 24) -> list[Point]:
    return [(rx * math.cos(2 * math.pi * k / n), ry * math.sin(2 * math.pi * k / n)) for k in range(n)]


@dataclass
class Road:
    """A straight road segment; ``major`` roads are wider and drawn in map yellow."""

    start: Point
    end: Point
    width: float
    major: bool


@dataclass
class Building:
    """A footprint extruded to ``height``; towers and stadiums are buildings with a ``kind``."""

    idx: int
    kind: str  # "building" | "tower" | "stadium"
    colour: str
    shape: str  # one of SHAPES, or "oval" for a stadium
    center: Point
    footprint: list[Point]  # world coordinates, counter-clockwise
    height: float

    @property
    def area(self) -> float:
        return abs(_signed_area(self.footprint))

    @property
    def tall(self) -> bool:
        return self.height >= 25.0


@dataclass
class Water:
    """A river band along one side of the tile, or a pond."""

    kind: str  # "river" | "pond"
    polygon: list[Point]
    center: Point  # the river's point nearest the tile centre; the pond's centre
    side: str = ""  # the tile side a river runs along; empty for a pond


@dataclass
class Patch:
    """A park: grass with trees."""

    kind: str
    polygon: list[Point]
    center: Point


@dataclass
class Tree:
    x: float
    y: float
    radius: float
    height: float


@dataclass
class Scene:
    """One location's ground truth."""

    location_id: str
    junction: str
    center: Point
    angle: float  # grid rotation (deg): arms leave at angle + k*90
    arms: list[float]  # bearings of the roads leaving the junction
    ring_radius: float  # roundabout only
    roads: list[Road]
    buildings: list[Building]
    water: Water | None
    parks: list[Patch]
    trees: list[Tree]
    bridge: Point | None
    texture_seed: int
    twin_of: str | None = None
    changes: list[str] = field(default_factory=list)  # what a twin changed
    land_cover: str | None = None  # a LAND_COVERS key at the toy level (set by the dataset builder), else None

    def rel(self, p: Point) -> Point:
        """``p`` relative to the junction centre."""
        return (p[0] - self.center[0], p[1] - self.center[1])

    def direction(self, p: Point) -> str:
        """Compass word for where ``p`` lies as seen from the junction."""
        return compass(*self.rel(p))

    def arm_sides(self) -> list[str]:
        """The sides (N/E/S/W) the junction's roads leave towards, in compass order."""
        got = {side_of_bearing(a) for a in self.arms}
        return [s for s in SIDES if s in got]

    @property
    def landmarks(self) -> list[str]:
        """Distinctive features: stadium, tower, bridge."""
        out = [b.kind for b in self.buildings if b.kind in ("stadium", "tower")]
        return out + (["bridge"] if self.bridge is not None else [])

    def facts(self) -> dict[str, Any]:
        """JSON-able facts: objects with type/colour/shape/position, and spatial relations."""
        jname = JUNCTION_NAMES[self.junction]["en"]
        objects: list[dict[str, Any]] = []
        relations: list[dict[str, str]] = []
        for b in self.buildings:
            oid = f"b{b.idx}"
            objects.append({
                "id": oid, "type": b.kind, "colour": b.colour, "shape": b.shape,
                "center": [round(b.center[0], 1), round(b.center[1], 1)], "height": round(b.height, 1),
            })
            d = self.direction(b.center)
            relations.append({"subject": oid, "relation": f"{d} of", "object": "junction",
                              "text": f"the {b.colour} {b.shape} {b.kind} is {d} of the {jname}"})
        if self.water is not None:
            w = self.water
            objects.append({"id": "water", "type": w.kind, "center": [round(w.center[0], 1), round(w.center[1], 1)]})
            where = f"along the {w.side} side" if w.kind == "river" else f"{self.direction(w.center)} of"
            text = (f"the river runs along the {w.side} side" if w.kind == "river"
                    else f"the pond is {where} the {jname}")
            relations.append({"subject": "water", "relation": where,
                              "object": "tile" if w.kind == "river" else "junction", "text": text})
        for k, p in enumerate(self.parks):
            d = self.direction(p.center)
            objects.append({"id": f"park{k}", "type": "park", "center": [round(p.center[0], 1), round(p.center[1], 1)]})
            relations.append({"subject": f"park{k}", "relation": f"{d} of", "object": "junction",
                              "text": f"a park lies {d} of the {jname}"})
        if self.bridge is not None:
            bx, by = self.bridge
            objects.append({"id": "bridge", "type": "bridge", "center": [round(bx, 1), round(by, 1)]})
        return {
            "location_id": self.location_id,
            "junction": self.junction,
            "junction_center": [round(self.center[0], 1), round(self.center[1], 1)],
            "arms": self.arm_sides(),
            "landmarks": self.landmarks,
            "n_trees": len(self.trees),
            "objects": objects,
            "relations": relations,
            "twin_of": self.twin_of,
            "changes": list(self.changes),
            "land_cover": self.land_cover,
        }


class _Occupancy:
    """A coarse raster of taken ground, for rejection-sampling placements."""

    def __init__(self, half: float = TILE_HALF, cell: float = 2.0) -> None:
        self.half, self.cell = half, cell
        self.n = int(round(2 * half / cell))
        self.grid = np.zeros((self.n, self.n), dtype=bool)

    def _px(self, pts: list[Point]) -> list[Point]:
        return [((x + self.half) / self.cell, (self.half - y) / self.cell) for x, y in pts]

    def raster(self, pts: list[Point], pad: float = 0.0) -> np.ndarray:
        im = Image.new("1", (self.n, self.n), 0)
        d = ImageDraw.Draw(im)
        px = self._px(pts)
        d.polygon(px, fill=1)
        if pad > 0:  # a line along the outline widens the polygon by ``pad`` on each side
            d.line(px + px[:1], fill=1, width=max(1, int(round(2 * pad / self.cell))), joint="curve")
        return np.asarray(im, dtype=bool)

    def road(self, r: Road, pad: float) -> np.ndarray:
        im = Image.new("1", (self.n, self.n), 0)
        width = max(1, int(round((r.width + 2 * pad) / self.cell)))
        ImageDraw.Draw(im).line(self._px([r.start, r.end]), fill=1, width=width)
        return np.asarray(im, dtype=bool)

    def free(self, pts: list[Point], pad: float, margin: float = 4.0) -> bool:
        lim = self.half - margin
        if any(abs(x) > lim or abs(y) > lim for x, y in pts):
            return False
        return not bool(np.any(self.raster(pts, pad) & self.grid))

    def take(self, mask: np.ndarray) -> None:
        self.grid |= mask

    def contains(self, p: Point) -> bool:
        i, j = int((self.half - p[1]) / self.cell), int((p[0] + self.half) / self.cell)
        return 0 <= i < self.n and 0 <= j < self.n and bool(self.grid[i, j])


# ----------------------------------------------------------------------------- generation


def _roads(rng: np.random.Generator, jtype: str, center: Point, angle: float) -> tuple[list[float], float, list[Road]]:
    ks = [0, 1, 2, 3]  # arm k leaves at bearing angle + 90*k
    if jtype == "t" or (jtype == "roundabout" and rng.random() < 0.35):
        ks.pop(int(rng.integers(4)))
    # The through road is an opposite pair that survived; for a T it is the top bar.
    pairs = [k for k in (0, 1) if k in ks and k + 2 in ks]
    through = pairs[int(rng.integers(len(pairs)))]
    ring = float(rng.uniform(13, 18)) if jtype == "roundabout" else 0.0
    major_w, minor_w = float(rng.uniform(14, 18)), float(rng.uniform(8, 11))
    bearings = [angle + 90.0 * k for k in ks]
    roads = []
    for k, b in zip(ks, bearings):
        dx, dy = math.sin(math.radians(b)), math.cos(math.radians(b))
        is_major = k % 2 == through
        start = (center[0] + ring * dx, center[1] + ring * dy)
        end = (center[0] + 2 * WORLD_HALF * dx, center[1] + 2 * WORLD_HALF * dy)
        roads.append(Road(start, end, major_w if is_major else minor_w, is_major))
    if rng.random() < 0.5:  # a side street off one arm gives the layout a second, narrower road
        arm = bearings[int(rng.integers(len(bearings)))]
        dist = float(rng.uniform(48, 68))
        turn = arm + (90.0 if rng.random() < 0.5 else -90.0)
        p = (center[0] + dist * math.sin(math.radians(arm)), center[1] + dist * math.cos(math.radians(arm)))
        q = (p[0] + 2 * WORLD_HALF * math.sin(math.radians(turn)), p[1] + 2 * WORLD_HALF * math.cos(math.radians(turn)))
        roads.append(Road(p, q, float(rng.uniform(6.5, 8.5)), False))
    return [b % 360.0 for b in bearings], ring, roads


def _river(rng: np.random.Generator) -> Water:
    side = SIDES[int(rng.integers(4))]
    off, width = float(rng.uniform(64, 80)), float(rng.uniform(16, 24))
    amp, wave, phase = float(rng.uniform(2, 7)), float(rng.uniform(120, 220)), float(rng.uniform(0, 2 * math.pi))
    sign = 1.0 if side in ("north", "east") else -1.0
    along = np.arange(-WORLD_HALF - 20, WORLD_HALF + 21, 5.0)  # coordinate along the river
    across = sign * off + amp * np.sin(2 * np.pi * along / wave + phase)  # the centreline's across-river coordinate

    def pt(s: float, a: float) -> Point:
        return (a, s) if side in ("east", "west") else (s, a)

    bank1 = [pt(s, a - width / 2) for s, a in zip(along, across)]
    bank2 = [pt(s, a + width / 2) for s, a in zip(along, across)]
    mid = pt(0.0, float(sign * off + amp * math.sin(phase)))
    return Water("river", _ccw(bank1 + bank2[::-1]), mid, side)


def _place(rng: np.random.Generator, occ: _Occupancy, local: list[Point], angle: float, pad: float,
           tries: int = 60) -> tuple[Point, list[Point]] | None:
    """Try random positions for a local footprint; returns (centre, world footprint) or None."""
    rot = rotate(local, angle)
    for _ in range(tries):
        cx, cy = (float(v) for v in rng.uniform(-TILE_HALF + 8, TILE_HALF - 8, 2))
        pts = [(cx + x, cy + y) for x, y in rot]
        if occ.free(pts, pad):
            return (cx, cy), _ccw(pts)
    return None


def _footprint(rng: np.random.Generator, shape: str) -> tuple[list[Point], float]:
    """A local (unrotated) footprint and a height for ``shape``."""
    if shape == "rect":
        w, h = rng.uniform(14, 26), rng.uniform(12, 22)
        return [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)], float(rng.uniform(8, 22))
    if shape == "l_shape":
        w, h, t = rng.uniform(22, 30), rng.uniform(22, 30), rng.uniform(8, 12)
        pts = [(0, 0), (w, 0), (w, t), (t, t), (t, h), (0, h)]
        pts = [(x - w / 2, y - h / 2) for x, y in pts]
        return rotate(pts, 90.0 * int(rng.integers(4))), float(rng.uniform(8, 18))
    if shape == "round":
        r = rng.uniform(6, 10)
        return _ellipse(r, r, 20), float(rng.uniform(14, 42))
    length, thick = rng.uniform(36, 50), rng.uniform(9, 12)  # slab
    pts = [(-length / 2, -thick / 2), (length / 2, -thick / 2), (length / 2, thick / 2), (-length / 2, thick / 2)]
    return (pts if rng.random() < 0.5 else rotate(pts, 90.0)), float(rng.uniform(12, 30))


def _pick_colour(rng: np.random.Generator, taken: list[tuple[str, str]], shape: str) -> str | None:
    # Least-used colours first, and never a (colour, shape) pair twice: every building
    # must be nameable unambiguously in an explanation.
    names = list(COLOURS)
    used = {c: sum(1 for tc, _ in taken if tc == c) for c in names}
    options = [c for c in names if (c, shape) not in taken]
    if not options:
        return None
    low = min(used[c] for c in options)
    best = [c for c in options if used[c] == low]
    return best[int(rng.integers(len(best)))]


def generate_scene(location_id: str, rng: np.random.Generator, difficulty: str = "medium") -> Scene:
    """A random location: junction and roads, water, landmark, park, buildings, trees.

    Each part is placed on the ground the earlier ones left free, drawing from ``rng`` in this order.
    """
    junction = JUNCTIONS[int(rng.integers(3))]
    angle = float(rng.uniform(-15, 15))
    center = (float(rng.uniform(-14, 14)), float(rng.uniform(-14, 14)))
    arms, ring, roads = _roads(rng, junction, center, angle)
    occ = _Occupancy()
    for r in roads:
        occ.take(occ.road(r, pad=3.0))
    if ring:
        occ.take(occ.raster([(center[0] + x, center[1] + y) for x, y in _ellipse(ring + 6, ring + 6)]))
    water, bridge = _add_water(rng, occ, roads)
    buildings: list[Building] = []
    taken: list[tuple[str, str]] = []  # (colour, shape) pairs in use
    _add_landmark(rng, occ, angle, buildings, taken)
    parks, trees = _add_park(rng, occ, angle)
    _add_buildings(rng, occ, angle, difficulty, buildings, taken)
    _add_trees(rng, occ, trees)
    return Scene(location_id, junction, center, angle, arms, ring, roads, buildings, water, parks, trees, bridge,
                 texture_seed=int(rng.integers(2**31)))


WATER_ODDS = {"none": 0.3, "river": 0.35, "pond": 0.35}
LANDMARK_ODDS = {"none": 0.5, "stadium": 0.25, "tower": 0.25}
SHAPE_ODDS = {"rect": 0.35, "l_shape": 0.25, "round": 0.15, "slab": 0.25}
"""How often each shape is drawn for an ordinary building."""


def _draw(rng: np.random.Generator, odds: dict[str, float]) -> str:
    """One key of ``odds``, drawn with the given probabilities."""
    return list(odds)[int(rng.choice(len(odds), p=list(odds.values())))]


def _add_water(rng: np.random.Generator, occ: _Occupancy, roads: list[Road]) -> tuple[Water | None, Point | None]:
    """No water, a river (with a bridge where a road crosses it inside the tile) or a pond; (water, bridge)."""
    kind = _draw(rng, WATER_ODDS)
    if kind == "river":
        water = _river(rng)
        water_occ = _Occupancy(cell=1.0)
        water_occ.take(water_occ.raster(water.polygon))
        bridge = _bridge(roads, water_occ)
        occ.take(occ.raster(water.polygon, pad=3.0))
        return water, bridge
    if kind == "pond":
        got = _place(rng, occ, _ellipse(rng.uniform(13, 20), rng.uniform(9, 14)), float(rng.uniform(0, 180)), pad=4.0)
        if got is not None:
            occ.take(occ.raster(got[1], pad=4.0))
            return Water("pond", got[1], got[0]), None
    return None, None


def _add_landmark(rng: np.random.Generator, occ: _Occupancy, angle: float, buildings: list[Building],
                  taken: list[tuple[str, str]]) -> None:
    """Maybe a stadium or a tall tower, as building 0."""
    landmark = _draw(rng, LANDMARK_ODDS)
    if landmark == "stadium":
        got = _place(rng, occ, _ellipse(24, 16, 28), angle, pad=4.0)
        if got is not None:
            buildings.append(Building(0, "stadium", "white", "oval", got[0], got[1], 12.0))
            occ.take(occ.raster(got[1], pad=4.0))
    elif landmark == "tower":
        r = float(rng.uniform(7, 9))
        got = _place(rng, occ, _ellipse(r, r, 20), 0.0, pad=4.0)
        if got is not None:
            colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
            buildings.append(Building(0, "tower", colour, "round", got[0], got[1], float(rng.uniform(65, 95))))
            taken.append((colour, "round"))
            occ.take(occ.raster(got[1], pad=4.0))


def _add_park(rng: np.random.Generator, occ: _Occupancy, angle: float) -> tuple[list[Patch], list[Tree]]:
    """Half the time, a rectangular park with a few trees in it."""
    if rng.random() >= 0.5:
        return [], []
    w, h = rng.uniform(30, 44), rng.uniform(24, 34)
    got = _place(rng, occ, [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)], angle, pad=2.0)
    if got is None:
        return [], []
    occ.take(occ.raster(got[1], pad=2.0))
    trees = []
    for _ in range(int(rng.integers(4, 9))):
        u, v = rng.uniform(-0.35, 0.35, 2)
        dx, dy = rotate([(u * w, v * h)], angle)[0]
        radius, height = float(rng.uniform(2.5, 4.5)), float(rng.uniform(7, 11))
        trees.append(Tree(got[0][0] + dx, got[0][1] + dy, radius, height))
    return [Patch("park", got[1], got[0])], trees


def _add_buildings(rng: np.random.Generator, occ: _Occupancy, angle: float, difficulty: str,
                   buildings: list[Building], taken: list[tuple[str, str]]) -> None:
    """5-8 (easy, toy) or 6-10 attempts at an ordinary building; a colour never repeats with a shape."""
    lo, hi = (5, 8) if difficulty in ("easy", "toy") else (6, 10)
    for _ in range(int(rng.integers(lo, hi + 1))):
        shape = _draw(rng, SHAPE_ODDS)
        local, height = _footprint(rng, shape)
        got = _place(rng, occ, local, angle, pad=3.0)
        colour = _pick_colour(rng, taken, shape)
        if got is None or colour is None:
            continue
        taken.append((colour, shape))
        buildings.append(Building(len(buildings), "building", colour, shape, got[0], got[1], height))
        occ.take(occ.raster(got[1], pad=3.0))


def _add_trees(rng: np.random.Generator, occ: _Occupancy, trees: list[Tree]) -> None:
    """8-19 attempts at a free-standing tree wherever ground is still free."""
    for _ in range(int(rng.integers(8, 20))):
        r = float(rng.uniform(2.5, 4.5))
        got = _place(rng, occ, _ellipse(r, r, 8), 0.0, pad=1.0, tries=10)
        if got is not None:
            trees.append(Tree(got[0][0], got[0][1], r, float(rng.uniform(6, 11))))
            occ.take(occ.raster(got[1]))


def _bridge(roads: list[Road], water_occ: _Occupancy) -> Point | None:
    """Centre of the first road crossing of the river inside the tile, if any."""
    for r in roads:
        (x0, y0), (x1, y1) = r.start, r.end
        steps = int(math.hypot(x1 - x0, y1 - y0))
        inside = [t for t in range(steps)
                  if water_occ.contains((x0 + (x1 - x0) * t / steps, y0 + (y1 - y0) * t / steps))]
        if inside:
            t = 0.5 * (inside[0] + inside[-1]) / steps
            p = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            if abs(p[0]) < TILE_HALF - 5 and abs(p[1]) < TILE_HALF - 5:
                return p
    return None


# ----------------------------------------------------------------------------- hard negatives


def _occupancy_without(scene: Scene, skip: int) -> _Occupancy:
    occ = _Occupancy()
    for r in scene.roads:
        occ.take(occ.road(r, pad=3.0))
    if scene.ring_radius:
        rr = scene.ring_radius + 6
        occ.take(occ.raster([(scene.center[0] + x, scene.center[1] + y) for x, y in _ellipse(rr, rr)]))
    if scene.water is not None:
        occ.take(occ.raster(scene.water.polygon, pad=3.0))
    for p in scene.parks:
        occ.take(occ.raster(p.polygon, pad=2.0))
    for b in scene.buildings:
        if b.idx != skip:
            occ.take(occ.raster(b.footprint, pad=3.0))
    return occ


def _recolour(scene: Scene, b: Building, rng: np.random.Generator) -> str | None:
    taken = {(o.colour, o.shape) for o in scene.buildings if o is not b}
    options = [c for c in COLOURS if c != b.colour and (c, b.shape) not in taken]
    if not options:
        return None
    old, b.colour = b.colour, options[int(rng.integers(len(options)))]
    return f"recolour b{b.idx} {old}->{b.colour}"


def _swap(scene: Scene, a: Building, b: Building) -> str | None:
    if a.colour == b.colour or (b.colour, a.shape) in {(o.colour, o.shape) for o in scene.buildings if o is not a} \
            or (a.colour, b.shape) in {(o.colour, o.shape) for o in scene.buildings if o is not b}:
        return None
    a.colour, b.colour = b.colour, a.colour
    return f"swap colours b{a.idx}<->b{b.idx}"


def _move(scene: Scene, b: Building, rng: np.random.Generator) -> str | None:
    # Mirror through the junction first (same street, other side), else anywhere free.
    occ = _occupancy_without(scene, b.idx)
    local = [(x - b.center[0], y - b.center[1]) for x, y in b.footprint]
    cx, cy = 2 * scene.center[0] - b.center[0], 2 * scene.center[1] - b.center[1]
    cand = [(cx + x, cy + y) for x, y in local]
    if occ.free(cand, pad=3.0):
        new_c, pts = (cx, cy), cand
    else:
        got = _place(rng, occ, local, 0.0, pad=3.0)
        if got is None:
            return None
        new_c, pts = got
    if compass(*scene.rel(new_c)) == compass(*scene.rel(b.center)):
        return None
    b.center, b.footprint = new_c, _ccw(pts)
    return f"move b{b.idx}"


TWIN_OP_ODDS = {"recolour": 0.35, "swap": 0.25, "move": 0.25, "remove": 0.15}
"""How often a twin's edits after the first (always a recolour of the most prominent building) are each kind."""


def perturb_scene(scene: Scene, location_id: str, rng: np.random.Generator, n_changes: int) -> Scene:
    """A hard-negative twin: same roads and water, with buildings recoloured, swapped, moved or removed.

    The most prominent building is edited first (recoloured), so the twin differs
    in what almost every view shows; ``changes`` records the edits.
    """
    twin = copy.deepcopy(scene)
    twin.location_id, twin.twin_of, twin.changes = location_id, scene.location_id, []
    twin.texture_seed = int(rng.integers(2**31))
    order = sorted(twin.buildings, key=lambda b: -(b.area * b.height))
    for k in range(max(1, n_changes) * 3):  # retries when an operation does not apply
        if len(twin.changes) >= max(1, n_changes) or not order:
            break
        b = order[0] if k == 0 else order[int(rng.integers(len(order)))]
        op = "recolour" if k == 0 else _draw(rng, TWIN_OP_ODDS)
        if b.kind == "stadium":
            op = "remove"
        if op == "recolour":
            msg = _recolour(twin, b, rng)
        elif op == "swap":
            others = [o for o in order if o is not b and o.kind != "stadium"]
            msg = _swap(twin, b, others[int(rng.integers(len(others)))]) if others else None
        elif op == "move":
            msg = _move(twin, b, rng)
        else:
            msg = f"remove b{b.idx}" if len(twin.buildings) > 3 else None
            if msg:
                twin.buildings.remove(b)
                order.remove(b)
        if msg:
            twin.changes.append(msg)
    for i, b in enumerate(twin.buildings):  # mask ids follow list positions
        b.idx = i
    return twin


def scene_similarity(a: Scene, b: Scene) -> float:
    """How alike two layouts look (higher is more alike); ranks non-twin hard negatives."""
    score = 3.0 * (a.junction == b.junction) + 1.0 * (a.arm_sides() == b.arm_sides())
    wa, wb = (a.water.kind if a.water else None), (b.water.kind if b.water else None)
    score += 2.0 * (wa == wb) + 1.0 * (sorted(a.landmarks) == sorted(b.landmarks))
    ca = [(o.colour, o.shape) for o in a.buildings]
    cb = [(o.colour, o.shape) for o in b.buildings]
    score += 2.0 * len(set(ca) & set(cb)) / max(1, len(set(ca) | set(cb)))
    near = sum(1 for p in a.buildings for q in b.buildings
               if p.colour == q.colour and math.dist(a.rel(p.center), b.rel(q.center)) < 30)
    return score + 0.5 * near
