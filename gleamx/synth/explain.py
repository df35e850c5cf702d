"""Bilingual (en/zh) match-and-explain texts, generated from the ground truth of both scenes.

:func:`compare` lines up what the query view *shows* (from its render's object
mask) with what the satellite tile shows, in the world frame relative to each
scene's junction. :func:`explain` turns that into four lines: what the query
shows, what the satellite shows, the shared evidence or the concrete differences,
and the verdict line. Sentence templates are picked by the rng; English and
Chinese are written separately (no word-by-word translation). Names come from
:mod:`gleamx.synth.phrases`; sentence templates are ``{"en": [...], "zh": [...]}`` tables here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gleamx.choices import LANGS
from gleamx.task.verdict import verdict_line
from gleamx.synth.phrases import (
    BUILDING_NAMES, COLOUR_NAMES, COMPASS_NAMES, GROUND_SIDE_NAMES, JUNCTION_NAMES, LAND_COVER_NAMES,
    SATELLITE_NAME, VIEW_NAMES, WATER_NAMES, Bilingual, in_zh,
)
from gleamx.synth.render import (
    ID_BRIDGE, ID_BUILDING, ID_PARK, ID_WATER, ViewInfo, panorama_direction, relative_side,
)
from gleamx.synth.world import Building, Point, Scene, compass_of_bearing, side_of_bearing

FINE_VIEWS = ("satellite", "uav", "street_map")
"""Views that show footprint shapes; panoramas and ground photos show colour, roundness and height only."""
NEAR_M = 22.0
"""Two buildings closer than this (relative to their junctions) stand on "the same spot"."""
PARK_NEAR_M = 30.0
"""Two parks closer than this (relative to their junctions) are the same park."""
POND_MOVED_M = 45.0
"""A pond whose centre is further than this from the other scene's pond has moved."""

# Salience of each kind of difference. A negative's explanation cites its heaviest 2-3 differences, so
# these values only set an order: the order in which a person comparing the two images would point the
# differences out (ties keep the order of the query's own most prominent buildings).
WEIGHT_LAND_COVER = 5.0  # toy level: a whole-image colour is seen at a glance and outranks every layout detail
WEIGHT_JUNCTION = 3.0  # another junction form changes the whole road layout: the largest layout difference
WEIGHT_WATER = 2.5  # another water body, a river on another side, or water only the query has: large and flat
WEIGHT_WATER_TILE_ONLY = 2.3  # water only the tile has: an absence from the query, a little weaker than a presence
WEIGHT_ARMS = 2.2  # the same junction form with roads to other sides: plain once aligned, below a water body
WEIGHT_POND_MOVED = 2.0  # the same pond in another place: a position to compare, subtler than another water body
WEIGHT_LANDMARK = 2.4  # a tower or stadium dominates its surroundings: above road arms, below water bodies
WEIGHT_BUILDING = 2.0  # an ordinary building, as telling as a moved pond
DISCOUNT_MOVED = 0.1  # the same building stands elsewhere: just below another building on the same spot
DISCOUNT_MISSING = 0.4  # no such building in the tile at all: an absence, below both side-by-side contrasts
WEIGHT_EXTRA = 1.2  # a building only the tile has (inside the query's frame): the weakest building evidence
WEIGHT_EXTRA_LANDMARK = 0.4  # added for a tower or stadium, hard to miss: level with a missing ordinary building
WEIGHT_PARK = 0.8  # a park only the query has: a soft green patch, the least telling difference

MIN_BUILDING_PIXELS = {"satellite": 4, "uav": 8, "street_map": 8, "panorama": 6, "ground": 12}
"""Pixels (in a 128×128 image) a building must cover for a view to show it, by view."""
MIN_WATER_PIXELS, MIN_PARK_PIXELS, MIN_BRIDGE_PIXELS = 30, 30, 6
"""The same for water, a park and a bridge deck."""


@dataclass
class Phrase:
    """One fact said in both languages, with the buildings it names (so descriptions can show them)."""

    en: str
    zh: str
    q: int | None = None  # building index in the query scene
    s: int | None = None  # building index in the satellite scene


@dataclass
class Comparison:
    """What a query view and a satellite tile share, and where they differ (weight, kind, phrase)."""

    shared: list[Phrase] = field(default_factory=list)
    diffs: list[tuple[float, str, Phrase]] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [k for _, k, _ in self.diffs]


# ----------------------------------------------------------------------------- noun phrases


def _building_kind(b: Building, fine: bool) -> str:
    """The :data:`~gleamx.synth.phrases.BUILDING_NAMES` entry naming ``b``; ``fine`` views (from above) show
    footprint shapes."""
    if b.kind in ("stadium", "tower"):
        return b.kind
    if b.shape == "round":
        return "round_tall" if b.tall else "round_low"
    if not fine:
        return "tall" if b.tall else "low"
    return b.shape


def _building_en(b: Building, fine: bool) -> str:
    """English noun for ``b``, without article."""
    return BUILDING_NAMES[_building_kind(b, fine)]["en"].format(colour=b.colour)


def _building_zh(b: Building, fine: bool) -> str:
    """Chinese noun for ``b``, without numeral."""
    colour = COLOUR_NAMES[b.colour]["zh"] if b.colour in COLOUR_NAMES else b.colour
    return BUILDING_NAMES[_building_kind(b, fine)]["zh"].format(colour=colour)


def _a_building_en(b: Building, fine: bool) -> str:
    return "a " + _building_en(b, fine)


def _the_building_en(b: Building, fine: bool) -> str:
    return "the " + _building_en(b, fine)


def _a_building_zh(b: Building, fine: bool) -> str:
    """Chinese noun phrase with numeral and classifier (一栋 / 一座)."""
    classifier = "座" if b.kind in ("stadium", "tower") or b.shape == "round" else "栋"
    return f"一{classifier}{_building_zh(b, fine)}"


def _appearance(b: Building, fine: bool) -> tuple[object, ...]:
    """What a view can tell apart: shape only from above, roundness from the ground."""
    if b.kind == "stadium":
        return ("stadium",)
    return (b.kind, b.colour, b.shape) if fine else (b.kind, b.colour, b.shape == "round")


def _junction_name(s: Scene) -> Bilingual:
    return JUNCTION_NAMES[s.junction]


def _join_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _join_zh(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "、".join(items[:-1]) + "和" + items[-1]


WATER_TEMPLATES: dict[str, Bilingual] = {
    "river": {"en": "a river along the {side} side", "zh": "沿{side}侧流过的河流"},
    "pond": {"en": "a pond {direction} of the {junction}", "zh": "{junction}{direction}侧的池塘"},
}
"""A scene's water with its place: the tile side a river runs along, or where a pond lies from the junction."""


def _water_name(s: Scene) -> Bilingual:
    water = s.water
    assert water is not None
    template = WATER_TEMPLATES[water.kind]
    side = COMPASS_NAMES[water.side] if water.kind == "river" else {"en": "", "zh": ""}
    direction = COMPASS_NAMES[s.direction(water.center)]
    junction = _junction_name(s)
    return {lang: template[lang].format(side=side[lang], direction=direction[lang], junction=junction[lang])
            for lang in LANGS}


# ----------------------------------------------------------------------------- visibility


def _min_pixels(info: ViewInfo, per_128: float) -> int:
    """A pixel threshold given for a 128×128 image, scaled to this view's area."""
    w, h = info.size
    return max(2, int(round(per_128 * w * h / 128**2)))


def visible_buildings(scene: Scene, info: ViewInfo) -> list[Building]:
    """Buildings the view really shows, most prominent first."""
    min_px = _min_pixels(info, MIN_BUILDING_PIXELS[info.view])
    shown = [b for b in scene.buildings if info.shows(b, min_px)]
    return sorted(shown, key=lambda b: (-info.pixels(ID_BUILDING + b.idx), b.idx))


def _shows_water(scene: Scene, info: ViewInfo) -> bool:
    return scene.water is not None and info.pixels(ID_WATER) >= _min_pixels(info, MIN_WATER_PIXELS)


def _shows_park(scene: Scene, info: ViewInfo) -> bool:
    return bool(scene.parks) and info.pixels(ID_PARK) >= _min_pixels(info, MIN_PARK_PIXELS)


def _shows_bridge(scene: Scene, info: ViewInfo) -> bool:
    return scene.bridge is not None and info.pixels(ID_BRIDGE) >= _min_pixels(info, MIN_BRIDGE_PIXELS)


def shows_junction(scene: Scene, info: ViewInfo) -> bool:
    """Whether the junction's form can be read off the view."""
    if info.view == "ground":
        return abs(info.camera["junction_bearing"]) < info.camera["hfov"] / 2 - 5
    if info.frame is not None:
        return info.covers(scene.center, margin=10.0)
    return True


# ----------------------------------------------------------------------------- comparison


@dataclass
class _Pair:
    """The two sides of a comparison: the query scene and view, the satellite scene and tile."""

    query: Scene
    query_info: ViewInfo
    sat: Scene
    sat_info: ViewInfo

    @property
    def view_name(self) -> Bilingual:
        """How sentences name the query view."""
        return VIEW_NAMES[self.query_info.view]

    @property
    def junction_name(self) -> Bilingual:
        """The junction's form when both scenes share it, else just "junction"."""
        if self.query.junction == self.sat.junction:
            return _junction_name(self.query)
        return {"en": "junction", "zh": "路口"}

    def in_query_frame(self, p: Point) -> bool:
        """Whether satellite position ``p``, carried into the query scene by aligning the junctions, is in view."""
        r = self.sat.rel(p)
        return self.query_info.covers((self.query.center[0] + r[0], self.query.center[1] + r[1]))


def compare(query: Scene, query_info: ViewInfo, sat: Scene, sat_info: ViewInfo) -> Comparison:
    """Shared evidence and concrete differences between a query view and a satellite tile."""
    cmp = Comparison()
    pair = _Pair(query, query_info, sat, sat_info)
    _compare_land_cover(cmp, pair)
    _compare_junction(cmp, pair)
    _compare_water(cmp, pair)
    _compare_buildings(cmp, pair)
    _compare_park(cmp, pair)
    if query.junction == sat.junction and _shows_bridge(query, query_info) and _shows_bridge(sat, sat_info):
        cmp.shared.append(Phrase("a bridge carrying the road over the river", "横跨河流的桥梁"))
    cmp.diffs.sort(key=lambda d: -d[0])  # stable: ties keep query salience order
    return cmp


def _compare_land_cover(cmp: Comparison, pair: _Pair) -> None:
    """``toy`` level: every view is washed in its location's land cover, the first thing anyone sees."""
    if pair.query.land_cover is None or pair.sat.land_cover is None:
        return
    view = pair.view_name
    query_cover, sat_cover = LAND_COVER_NAMES[pair.query.land_cover], LAND_COVER_NAMES[pair.sat.land_cover]
    if pair.query.land_cover == pair.sat.land_cover:
        cmp.shared.append(Phrase(f"the same {query_cover['en']} ground colour", f"相同的{query_cover['zh']}底色"))
    else:
        cmp.diffs.append((WEIGHT_LAND_COVER, "land_cover", Phrase(
            f"{view['en']} is tinted with {query_cover['en']} ground while {SATELLITE_NAME['en']} shows "
            f"{sat_cover['en']}",
            f"{view['zh']}是{query_cover['zh']}底色，而{SATELLITE_NAME['zh']}是{sat_cover['zh']}底色")))


def _compare_junction(cmp: Comparison, pair: _Pair) -> None:
    if not shows_junction(pair.query, pair.query_info):
        return
    view, sat_name = pair.view_name, SATELLITE_NAME
    query_j, sat_j = _junction_name(pair.query), _junction_name(pair.sat)
    if pair.query.junction != pair.sat.junction:
        cmp.diffs.append((WEIGHT_JUNCTION, "junction", Phrase(
            f"{view['en']} shows a {query_j['en']}, whereas {sat_name['en']} has a {sat_j['en']}",
            f"{view['zh']}中是{query_j['zh']}，而{sat_name['zh']}中是{sat_j['zh']}")))
        return
    query_arms, sat_arms = pair.query.arm_sides(), pair.sat.arm_sides()
    ground = pair.query_info.view == "ground"
    if not ground and query_arms != sat_arms:
        cmp.diffs.append((WEIGHT_ARMS, "arms", Phrase(
            f"the roads leave the {query_j['en']} to the {_join_en(query_arms)} in {view['en']}, whereas in "
            f"{sat_name['en']} they go {_join_en(sat_arms)}",
            f"{view['zh']}中道路从{query_j['zh']}向{_join_zh([in_zh(a) for a in query_arms])}延伸，"
            f"{sat_name['zh']}中却是向{_join_zh([in_zh(a) for a in sat_arms])}")))
        return
    if pair.query.junction == "t" and not ground:
        opposite = {"north": "south", "south": "north", "east": "west", "west": "east"}
        stem = next(a for a in query_arms if opposite[a] not in query_arms)
        cmp.shared.append(Phrase(f"the T-junction with its side road to the {stem}", f"支路朝{in_zh(stem)}的丁字路口"))
    else:
        cmp.shared.append(Phrase(f"the {query_j['en']}", query_j["zh"]))


def _compare_water(cmp: Comparison, pair: _Pair) -> None:
    query, sat, view, sat_name = pair.query, pair.sat, pair.view_name, SATELLITE_NAME
    query_shows, sat_shows = _shows_water(query, pair.query_info), _shows_water(sat, pair.sat_info)
    if query_shows and sat_shows:
        a, b = query.water, sat.water
        assert a is not None and b is not None
        here, there = _water_name(query), _water_name(sat)
        if a.kind != b.kind:
            cmp.diffs.append((WEIGHT_WATER, "water", Phrase(
                f"{view['en']} shows {here['en']}, whereas {sat_name['en']} has {there['en']} instead",
                f"{view['zh']}中是{here['zh']}，{sat_name['zh']}中却是{there['zh']}")))
        elif a.kind == "river" and a.side != b.side:
            cmp.diffs.append((WEIGHT_WATER, "water", Phrase(
                f"the river runs along the {a.side} side in {view['en']}, whereas in {sat_name['en']} it follows "
                f"the {b.side} side",
                f"{view['zh']}中河流沿{in_zh(a.side)}侧流过，{sat_name['zh']}中却在{in_zh(b.side)}侧")))
        elif a.kind == "pond" and math.dist(query.rel(a.center), sat.rel(b.center)) > POND_MOVED_M:
            dq, ds = query.direction(a.center), sat.direction(b.center)
            cmp.diffs.append((WEIGHT_POND_MOVED, "water", Phrase(
                f"the pond lies {dq} of the junction in {view['en']}, yet {ds} of it in {sat_name['en']}",
                f"池塘在{view['zh']}中位于路口{in_zh(dq)}侧，在{sat_name['zh']}中却位于{in_zh(ds)}侧")))
        else:
            cmp.shared.append(Phrase(here["en"], here["zh"]))
    elif query_shows:
        here = _water_name(query)
        cmp.diffs.append((WEIGHT_WATER, "water", Phrase(
            f"{view['en']} shows {here['en']}, while {sat_name['en']} has no water at all",
            f"{view['zh']}中有{here['zh']}，{sat_name['zh']}中却看不到任何水体")))
    elif sat_shows and sat.water is not None and pair.in_query_frame(sat.water.center):
        there = _water_name(sat)
        cmp.diffs.append((WEIGHT_WATER_TILE_ONLY, "water", Phrase(
            f"{sat_name['en']} shows {there['en']} that does not appear in {view['en']}",
            f"{sat_name['zh']}中有{there['zh']}，{view['zh']}中却没有")))


def _compare_park(cmp: Comparison, pair: _Pair) -> None:
    query = pair.query
    if not _shows_park(query, pair.query_info):
        return
    view, junction = pair.view_name, pair.junction_name
    park = query.parks[0]
    d = query.direction(park.center)
    same_place = any(math.dist(query.rel(park.center), pair.sat.rel(p.center)) < PARK_NEAR_M for p in pair.sat.parks)
    if same_place and _shows_park(pair.sat, pair.sat_info):
        cmp.shared.append(Phrase(f"a park {d} of the {junction['en']}", f"{junction['zh']}{in_zh(d)}侧的绿地"))
    else:
        cmp.diffs.append((WEIGHT_PARK, "park", Phrase(
            f"{view['en']} shows a park {d} of the {junction['en']}, whereas {SATELLITE_NAME['en']} has no park there",
            f"{view['zh']}中{junction['zh']}{in_zh(d)}侧有一片绿地，{SATELLITE_NAME['zh']}同一位置却没有")))


def _compare_buildings(cmp: Comparison, pair: _Pair) -> None:
    """Each building the query shows against the tile's, then the tile's buildings the query lacks."""
    fine = pair.query_info.view in FINE_VIEWS
    sat_visible = visible_buildings(pair.sat, pair.sat_info)
    matched: set[int] = set()
    for qb in visible_buildings(pair.query, pair.query_info):
        _compare_building(cmp, pair, qb, sat_visible, fine, matched)
    view, junction, sat_name = pair.view_name, pair.junction_name, SATELLITE_NAME
    for sb in sat_visible:
        if sb.idx in matched or not pair.in_query_frame(sb.center):
            continue
        ds = pair.sat.direction(sb.center)
        cmp.diffs.append((WEIGHT_EXTRA + WEIGHT_EXTRA_LANDMARK * (sb.kind != "building"), "building_extra", Phrase(
            f"{sat_name['en']} has {_a_building_en(sb, fine)} {ds} of the {junction['en']} that is absent from "
            f"{view['en']}",
            f"{sat_name['zh']}中{junction['zh']}{in_zh(ds)}侧有{_a_building_zh(sb, fine)}，{view['zh']}中却没有",
            None, sb.idx)))


def _compare_building(cmp: Comparison, pair: _Pair, qb: Building, sat_visible: list[Building], fine: bool,
                      matched: set[int]) -> None:
    """Query building ``qb``: the same on the same spot (shared), another one there, moved, or missing."""
    view, junction, sat_name = pair.view_name, pair.junction_name, SATELLITE_NAME
    rq = pair.query.rel(qb.center)
    near = sorted((b for b in sat_visible if math.dist(rq, pair.sat.rel(b.center)) < NEAR_M),
                  key=lambda b: math.dist(rq, pair.sat.rel(b.center)))
    d = pair.query.direction(qb.center)
    here = [b for b in near if _appearance(b, fine) == _appearance(qb, fine)]
    weight = WEIGHT_LANDMARK if qb.kind in ("tower", "stadium") else WEIGHT_BUILDING
    if here:
        matched.add(here[0].idx)
        cmp.shared.append(Phrase(f"{_the_building_en(qb, fine)} {d} of the {junction['en']}",
                                 f"{junction['zh']}{in_zh(d)}侧的{_building_zh(qb, fine)}", qb.idx, here[0].idx))
    elif near:
        sb = near[0]
        matched.add(sb.idx)
        cmp.diffs.append((weight, "building_changed", Phrase(
            f"{view['en']} has {_a_building_en(qb, fine)} {d} of the {junction['en']}, where {sat_name['en']} shows "
            f"{_a_building_en(sb, fine)} instead",
            f"{view['zh']}中{junction['zh']}{in_zh(d)}侧是{_a_building_zh(qb, fine)}，{sat_name['zh']}同一位置却是"
            f"{_a_building_zh(sb, fine)}", qb.idx, sb.idx)))
    elif (moved := [b for b in sat_visible if _appearance(b, fine) == _appearance(qb, fine)]):
        sb = moved[0]
        matched.add(sb.idx)
        ds = pair.sat.direction(sb.center)
        cmp.diffs.append((weight - DISCOUNT_MOVED, "building_moved", Phrase(
            f"{_the_building_en(qb, fine)} stands {d} of the {junction['en']} in {view['en']}, yet {ds} of it in "
            f"{sat_name['en']}",
            f"{_building_zh(qb, fine)}在{view['zh']}中位于{junction['zh']}{in_zh(d)}侧，在{sat_name['zh']}中却位于"
            f"{in_zh(ds)}侧", qb.idx, sb.idx)))
    else:
        cmp.diffs.append((weight - DISCOUNT_MISSING, "building_missing", Phrase(
            f"{view['en']} shows {_a_building_en(qb, fine)} {d} of the {junction['en']}, whereas {sat_name['en']} "
            f"has no such building",
            f"{view['zh']}中{junction['zh']}{in_zh(d)}侧有{_a_building_zh(qb, fine)}，{sat_name['zh']}中却没有这样的建筑",
            qb.idx)))


# ----------------------------------------------------------------------------- descriptions


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _pick_pair(rng: np.random.Generator, templates: dict[str, list[str]], **fields: str | Bilingual) -> tuple[str, str]:
    """One English and one Chinese template (drawn in that order), filled with ``fields[name]["en"/"zh"]``.

    A field given as a plain string is the same in both languages.
    """
    out = []
    for lang in LANGS:
        text = _pick(rng, templates[lang])
        values = {k: (v if isinstance(v, str) else v[lang]) for k, v in fields.items()}
        out.append(text.format(**values))
    return out[0], out[1]


def _layout(s: Scene, info: ViewInfo, with_dirs: bool) -> tuple[list[str], list[str]]:
    """Junction, water, park and bridge as noun phrases (compass positions if ``with_dirs``)."""
    junction = _junction_name(s)
    en, zh = ([f"a {junction['en']}"], [f"一个{junction['zh']}"]) if shows_junction(s, info) else ([], [])
    if _shows_water(s, info):
        water = s.water
        assert water is not None
        names = _water_name(s) if with_dirs else WATER_NAMES[water.kind]
        en.append(names["en"])
        zh.append(names["zh"])
    if _shows_bridge(s, info):
        en.append("a bridge")
        zh.append("一座桥")
    if _shows_park(s, info):
        d = s.direction(s.parks[0].center)
        en.append(f"a park {d} of the {junction['en']}" if with_dirs else "a park")
        zh.append(f"{in_zh(d)}侧的一片绿地" if with_dirs else "一片绿地")
    return en, zh


def _buildings_with_dirs(s: Scene, buildings: list[Building], fine: bool) -> Bilingual:
    """The buildings with their compass positions, the first one relative to the junction."""
    junction = _junction_name(s)
    en, zh = [], []
    for k, b in enumerate(buildings):
        d = s.direction(b.center)
        en.append(f"{_a_building_en(b, fine)} {d} of the {junction['en']}" if k == 0
                  else f"{_a_building_en(b, fine)} to the {d}")
        zh.append(f"{junction['zh']}{in_zh(d)}侧的{_building_zh(b, fine)}" if k == 0
                  else f"{in_zh(d)}侧的{_building_zh(b, fine)}")
    return {"en": _join_en(en), "zh": _join_zh(zh)}


def _focus(s: Scene, info: ViewInfo, focus: list[int], rng: np.random.Generator) -> list[Building]:
    """Buildings to describe: those the reasoning names first, then the most prominent (2-4 in all)."""
    shown = visible_buildings(s, info)
    by_idx = {b.idx: b for b in shown}
    named = [by_idx[i] for i in dict.fromkeys(focus) if i in by_idx]
    rest = [b for b in shown if b not in named]
    return (named + rest)[: max(len(named), int(rng.integers(2, 4)))][:4]


QUERY_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "uav": {
        "en": ["The drone view looks obliquely down on {layout}, with {buildings} nearby.",
               "From the drone's oblique angle we see {layout}; around it we can make out {buildings}.",
               "The UAV image shows {layout} from an oblique angle, together with {buildings}."],
        "zh": ["无人机从斜上方俯拍到{layout}，周围可以看到{buildings}。",
               "这张无人机倾斜航拍图里有{layout}，附近还有{buildings}。",
               "无人机视角下可以看到{layout}，以及{buildings}。"],
    },
    "street_map": {
        "en": ["The street map shows {layout}; the building footprints include {buildings}.",
               "On the street map there is {layout}, and the marked buildings include {buildings}.",
               "The map tile is laid out around {layout}; among its footprints are {buildings}."],
        "zh": ["街道地图上是{layout}，标出的建筑包括{buildings}。",
               "这张街道地图上有{layout}，图中的建筑轮廓有{buildings}。",
               "地图上可以看到{layout}，其中比较醒目的建筑有{buildings}。"],
    },
}
"""Top-down query views with buildings in sight: {layout} (junction, water, ...) and {buildings}."""
QUERY_WITHOUT_BUILDINGS: dict[str, Bilingual] = {
    "uav": {"en": "The drone view looks obliquely down on {layout}.", "zh": "无人机从斜上方俯拍到{layout}。"},
    "street_map": {"en": "The street map shows {layout}.", "zh": "街道地图上是{layout}。"},
}


def _describe_query(s: Scene, info: ViewInfo, focus: list[int], rng: np.random.Generator) -> tuple[str, str]:
    fine = info.view in FINE_VIEWS
    shown = _focus(s, info, focus, rng)
    if info.view == "panorama":
        return _describe_panorama(s, info, shown, rng)
    if info.view == "ground":
        return _describe_ground(s, info, shown, rng)
    lay_en, lay_zh = _layout(s, info, with_dirs=info.view == "street_map")
    layout = {"en": _join_en(lay_en or ["a street"]), "zh": _join_zh(lay_zh or ["一条街道"])}
    if not shown:
        fixed = QUERY_WITHOUT_BUILDINGS[info.view]
        return fixed["en"].format(layout=layout["en"]), fixed["zh"].format(layout=layout["zh"])
    if info.view == "uav":
        buildings = {"en": _join_en([_a_building_en(b, fine) for b in shown]),
                     "zh": _join_zh([_a_building_zh(b, fine) for b in shown])}
    else:
        buildings = _buildings_with_dirs(s, shown, fine)
    return _pick_pair(rng, QUERY_TEMPLATES[info.view], layout=layout, buildings=buildings)


def _bearing_zh(d: str) -> str:
    # "南面" / "东北方向": a bare one-character bearing plus 方向 reads stiffly in Chinese.
    return f"{in_zh(d)}面" if len(in_zh(d)) == 1 else f"{in_zh(d)}方向"


PANORAMA_TEMPLATES = {
    "en": ["The 360° panorama is taken from the middle of the {junction}; around the camera we see {buildings}.",
           "Taken from the centre of a {junction}, the panorama shows {buildings}.",
           "In the panorama, shot from a {junction}, we can see {buildings}."],
    "zh": ["这张360°全景图拍摄于{junction}中央，相机四周可以看到{buildings}。",
           "全景图从{junction}中间拍摄，画面中有{buildings}。",
           "在{junction}处拍摄的全景图里，可以看到{buildings}。"],
}


def _describe_panorama(s: Scene, info: ViewInfo, shown: list[Building], rng: np.random.Generator) -> tuple[str, str]:
    items_en = [f"{_a_building_en(b, False)} to the {panorama_direction(info, b.center)}" for b in shown]
    items_zh = [f"{_bearing_zh(panorama_direction(info, b.center))}的{_building_zh(b, False)}" for b in shown]
    buildings = {"en": _join_en(items_en) if items_en else "mostly trees and open ground",
                 "zh": _join_zh(items_zh) if items_zh else "大片树木和空地"}
    en, zh = _pick_pair(rng, PANORAMA_TEMPLATES, junction=_junction_name(s), buildings=buildings)
    if _shows_water(s, info):
        water = s.water
        assert water is not None
        d = water.side if water.kind == "river" else panorama_direction(info, water.center)
        en += f" A {water.kind} is also visible to the {d}."
        zh += f"{in_zh(d)}边还能看到{WATER_NAMES[water.kind]['zh']}。"
    return en, zh


GROUND_TEMPLATES = {
    "en": ["The ground photo looks along a street towards a {junction}: {buildings}.",
           "Taken at street level facing a {junction}, the photo shows {buildings}.",
           "At ground level the camera looks down a road towards a {junction}; we see {buildings}."],
    "zh": ["地面照片沿着街道望向{junction}：{buildings}。",
           "这张街景照片面朝{junction}拍摄，{buildings}。",
           "相机在街道上朝{junction}方向拍摄，{buildings}。"],
}
"""A ground photo that shows the junction; {buildings} are grouped left / ahead / right."""
GROUND_WITHOUT_JUNCTION = {"en": "The ground photo looks along a street: {buildings}.",
                           "zh": "地面照片沿着一条街道拍摄：{buildings}。"}


def _describe_ground(s: Scene, info: ViewInfo, shown: list[Building], rng: np.random.Generator) -> tuple[str, str]:
    groups: dict[str, list[Building]] = {"left": [], "ahead": [], "right": []}
    for b in shown:
        groups[relative_side(info, b.center)].append(b)
    parts_en = [f"{_join_en([_a_building_en(b, False) for b in g])} {GROUND_SIDE_NAMES[k]['en']}"
                for k, g in groups.items() if g]
    parts_zh = [f"{GROUND_SIDE_NAMES[k]['zh']}是{_join_zh([_a_building_zh(b, False) for b in g])}"
                for k, g in groups.items() if g]
    buildings = {"en": ", ".join(parts_en) if parts_en else "mostly road, trees and open ground",
                 "zh": "，".join(parts_zh) if parts_zh else "画面里主要是道路、树木和空地"}
    if shows_junction(s, info):
        return _pick_pair(rng, GROUND_TEMPLATES, junction=_junction_name(s), buildings=buildings)
    return (GROUND_WITHOUT_JUNCTION["en"].format(buildings=buildings["en"]),
            GROUND_WITHOUT_JUNCTION["zh"].format(buildings=buildings["zh"]))


SATELLITE_TEMPLATES = {
    "en": ["The satellite tile is centred on a {junction}{also}; notable roofs include {buildings}.",
           "In the satellite image we can see {layout}, plus {buildings}.",
           "From above, the satellite tile shows {layout}; among the roofs are {buildings}."],
    "zh": ["卫星图以{junction}为中心{also}，比较显眼的屋顶有{buildings}。",
           "从卫星图上看，画面中有{layout}，周围分布着{buildings}。",
           "卫星图显示了{layout}，其中清晰可辨的建筑包括{buildings}。"],
}
"""{layout}: everything flat; {also}: the same without the junction (", with ..." or empty)."""


def _describe_satellite(s: Scene, info: ViewInfo, focus: list[int], rng: np.random.Generator) -> tuple[str, str]:
    shown = _focus(s, info, focus, rng)
    lay_en, lay_zh = _layout(s, info, with_dirs=True)
    layout = {"en": _join_en(lay_en), "zh": _join_zh(lay_zh)}
    if not shown:
        return f"The satellite tile shows {layout['en']}.", f"卫星图中是{layout['zh']}。"
    rest_en, rest_zh = lay_en[1:], lay_zh[1:]  # the satellite always shows its junction first
    also = {"en": f", with {_join_en(rest_en)}" if rest_en else "",
            "zh": f"，还能看到{_join_zh(rest_zh)}" if rest_zh else ""}
    return _pick_pair(rng, SATELLITE_TEMPLATES, junction=_junction_name(s), also=also, layout=layout,
                      buildings=_buildings_with_dirs(s, shown, True))


# ----------------------------------------------------------------------------- reasoning


ALIGNMENT_TEMPLATES: dict[str, dict[str, list[str]]] = {
    "uav": {
        "en": ["Rotating the drone view so that north is up makes everything line up; "
               "the drone was facing roughly {heading}.",
               "Once the drone view is turned to north-up, the layout matches the tile; "
               "the camera was pointing roughly {heading}."],
        "zh": ["把无人机图旋转到正北朝上后，布局与卫星图完全吻合，无人机大致朝{heading}方向拍摄。",
               "将无人机视角转正（北朝上）后，两者一一对应；相机大约朝向{heading}。"],
    },
    "street_map": {
        "en": ["The road geometry and building footprints line up one-to-one.",
               "Map and satellite tile share the same road geometry and footprint arrangement."],
        "zh": ["道路形状与建筑轮廓一一对应。", "地图与卫星图的道路走向和建筑布局完全一致。"],
    },
    "panorama": {
        "en": ["The bearings of these objects in the panorama match where they sit around the junction "
               "in the tile.",
               "Each object appears in the panorama at the bearing the tile predicts from the junction."],
        "zh": ["这些目标在全景图中的方位与它们在卫星图中相对路口的位置一致。",
               "全景图中每个目标的方位都与卫星图中从路口看过去的方向相符。"],
    },
    "ground": {
        "en": ["This fits a camera standing on the road {arm} of the junction and looking {heading}.",
               "It is consistent with a photo taken on the road {arm} of the junction, facing {heading}."],
        "zh": ["这与相机站在路口{arm}侧的道路上、朝{heading}方向拍摄的情形相符。",
               "这符合从路口{arm}侧街道朝{heading}方向拍摄的视角。"],
    },
}
"""Why the views line up, by query view: {heading} the camera's compass heading, {arm} the road it stands on."""


def _alignment(info: ViewInfo, rng: np.random.Generator) -> tuple[str, str]:
    """Why the views line up: the pose that makes the query fit the tile."""
    fields: dict[str, str | Bilingual] = {}
    if info.view in ("uav", "ground"):
        fields["heading"] = _compass_name(compass_of_bearing(info.camera["heading"]))
    if info.view == "ground":
        fields["arm"] = _compass_name(side_of_bearing(info.camera["arm"]))
    return _pick_pair(rng, ALIGNMENT_TEMPLATES[info.view], **fields)


def _compass_name(point: str) -> Bilingual:
    return {"en": point, "zh": in_zh(point)}


POSITIVE_TEMPLATES = {
    "en": ["Both images show {evidence}.", "The key evidence agrees: {evidence}.",
           "Comparing the two, each image contains {evidence}."],
    "zh": ["两幅图都能看到{evidence}。", "关键证据完全一致：{evidence}。", "对比两张图，{evidence}都能一一对应。"],
}
MATCH_CONCLUSIONS = {
    "en": ["Therefore both images show the same place.", "All the key landmarks agree, so this is a match.",
           "The query was taken at the location shown in the satellite tile."],
    "zh": ["因此两张图显示的是同一个地方。", "关键地标全部吻合，可以判定为同一地点。", "可以确定查询图就拍摄于卫星图所示的位置。"],
}


def _positive(evidence: list[Phrase], info: ViewInfo, rng: np.random.Generator) -> tuple[str, str]:
    """Evidence, alignment, conclusion for a match."""
    cited = {"en": _join_en([p.en for p in evidence]), "zh": _join_zh([p.zh for p in evidence])}
    align_en, align_zh = _alignment(info, rng)
    en, zh = _pick_pair(rng, POSITIVE_TEMPLATES, evidence=cited)
    close_en, close_zh = _pick_pair(rng, MATCH_CONCLUSIONS)
    return f"{en} {align_en} {close_en}", f"{zh}{align_zh}{close_zh}"


SIMILAR_BUT_TEMPLATES = {
    "en": ["At first glance the two look alike: both have {shared}. However, {differences}.",
           "The layouts are similar; both share {shared}. But on closer inspection, {differences}."],
    "zh": ["乍看之下两者很相似，都有{shared}。但仔细比较，{differences}。",
           "两者布局相近，都能看到{shared}。然而，{differences}。"],
}
"""A negative that shares something with the tile: what is shared, then the differences."""
DIFFERENT_TEMPLATES = {
    "en": ["The two images do not agree: {differences}.", "Several things do not match: {differences}.",
           "Comparing them reveals clear differences: {differences}."],
    "zh": ["两幅图并不一致：{differences}。", "有几处明显不符：{differences}。", "对比之下差异很明显：{differences}。"],
}
MISMATCH_CONCLUSIONS = {
    "en": ["These differences mean the two images show different places.",
           "So the query was not taken at the location in the satellite tile.",
           "Therefore they are not the same place."],
    "zh": ["这些差异说明两张图拍的不是同一个地方。", "因此，查询图并非拍摄于卫星图所示的位置。", "所以两者不是同一地点。"],
}


def _negative(differences: list[Phrase], shared: list[Phrase], rng: np.random.Generator) -> tuple[str, str]:
    """Shared features (if any), the differences, conclusion for a mismatch."""
    listed = {"en": "; ".join(p.en for p in differences[:-1]) + ("; and " if len(differences) > 1 else "")
                    + differences[-1].en,
              "zh": "；".join(p.zh for p in differences)}
    if shared:
        both = {"en": _join_en([p.en for p in shared]), "zh": _join_zh([p.zh for p in shared])}
        en, zh = _pick_pair(rng, SIMILAR_BUT_TEMPLATES, shared=both, differences=listed)
    else:
        en, zh = _pick_pair(rng, DIFFERENT_TEMPLATES, differences=listed)
    close_en, close_zh = _pick_pair(rng, MISMATCH_CONCLUSIONS)
    return f"{en} {close_en}", f"{zh}{close_zh}"


def explain(query: Scene, query_info: ViewInfo, sat: Scene, sat_info: ViewInfo, label: bool,
            rng: np.random.Generator, cmp: Comparison | None = None) -> dict[str, str]:
    """``{"en": ..., "zh": ...}``: query, satellite, evidence or differences, then the verdict line.

    The descriptions name the buildings the reasoning cites. Raises ``ValueError``
    when the ground truth cannot support ``label`` (a negative without a visible
    difference, a positive without shared evidence), so no sample carries an
    unfounded explanation.
    """
    cmp = cmp if cmp is not None else compare(query, query_info, sat, sat_info)
    if label and (cmp.diffs or not cmp.shared):
        raise ValueError(f"{query.location_id}/{query_info.view} does not visibly match {sat.location_id}")
    if not label and not cmp.diffs:
        raise ValueError(f"no visible difference between {query.location_id}/{query_info.view} and {sat.location_id}")
    cited = cmp.shared[:4] if label else [p for _, _, p in cmp.diffs][: int(rng.integers(2, 4))]
    shared = [] if label else cmp.shared[:2]
    q_en, q_zh = _describe_query(query, query_info, [p.q for p in cited + shared if p.q is not None], rng)
    s_en, s_zh = _describe_satellite(sat, sat_info, [p.s for p in cited + shared if p.s is not None], rng)
    r_en, r_zh = _positive(cited, query_info, rng) if label else _negative(cited, shared, rng)
    return {"en": "\n".join([q_en, s_en, r_en, verdict_line(label, "en")]),
            "zh": "\n".join([q_zh, s_zh, r_zh, verdict_line(label, "zh")])}
