"""Bilingual (en/zh) match-and-explain texts, generated from the ground truth of both scenes.

:func:`compare` lines up what the query view *shows* (from its render's object
mask) with what the satellite tile shows, in the world frame relative to each
scene's junction. :func:`explain` turns that into four lines: what the query
shows, what the satellite shows, the shared evidence or the concrete differences,
and the verdict line. Sentence templates are picked by the rng; English and
Chinese are written separately (no word-by-word translation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gleamx.data.synth.render import (
    ID_BRIDGE, ID_BUILDING, ID_PARK, ID_WATER, ViewInfo, panorama_direction, relative_side,
)
from gleamx.data.synth.world import SIDES, Building, Point, Scene, compass_of_bearing
from gleamx.prompts.verdict import verdict_line

FINE_VIEWS = ("satellite", "uav", "street_map")
"""Views that show footprint shapes; panoramas and ground photos show colour, roundness and height only."""
NEAR_M = 22.0
"""Two buildings closer than this (relative to their junctions) stand on "the same spot"."""

VIEW_EN = {"uav": "the drone view", "street_map": "the street map", "panorama": "the panorama",
           "ground": "the ground photo"}
VIEW_ZH = {"uav": "无人机图", "street_map": "街道地图", "panorama": "全景图", "ground": "地面照片"}
SAT_EN, SAT_ZH = "the satellite tile", "卫星图"
JUNCTION_EN = {"t": "T-junction", "cross": "crossroads", "roundabout": "roundabout"}
JUNCTION_ZH = {"t": "丁字路口", "cross": "十字路口", "roundabout": "环岛"}
DIR_ZH = {"north": "北", "north-east": "东北", "east": "东", "south-east": "东南", "south": "南",
          "south-west": "西南", "west": "西", "north-west": "西北"}
COLOUR_ZH = {"red": "红色", "blue": "蓝色", "yellow": "黄色", "white": "白色", "grey": "灰色", "green": "绿色"}
LAND_COVER_ZH = {"grass": "草地", "sand": "沙地", "snow": "雪地", "red clay": "红土", "heather": "石楠荒地",
                 "concrete": "水泥地"}
SIDE_EN = {"left": "on the left", "ahead": "straight ahead", "right": "on the right"}
SIDE_ZH = {"left": "左侧", "ahead": "正前方", "right": "右侧"}


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


def _b_en(b: Building, fine: bool) -> str:
    c = b.colour
    if b.kind == "stadium":
        return "stadium"
    if b.kind == "tower":
        return f"tall {c} tower"
    if b.shape == "round":
        return f"round {c} {'tower' if b.tall else 'building'}"
    if not fine:
        return f"{'tall' if b.tall else 'low'} {c} building"
    return {"rect": f"{c} rectangular building", "l_shape": f"{c} L-shaped building",
            "slab": f"long {c} slab block"}[b.shape]


def _b_zh(b: Building, fine: bool) -> str:
    c = COLOUR_ZH.get(b.colour, b.colour)
    if b.kind == "stadium":
        return "体育场"
    if b.kind == "tower":
        return f"{c}高塔"
    if b.shape == "round":
        return f"{c}圆塔" if b.tall else f"{c}圆形建筑"
    if not fine:
        return f"{c}{'高楼' if b.tall else '矮楼'}"
    return {"rect": f"{c}长方形建筑", "l_shape": f"{c}L形建筑", "slab": f"{c}长条形板楼"}[b.shape]


def _a(b: Building, fine: bool) -> str:
    return "a " + _b_en(b, fine)


def _the(b: Building, fine: bool) -> str:
    return "the " + _b_en(b, fine)


def _yi(b: Building, fine: bool) -> str:
    """Chinese noun phrase with numeral and classifier (一栋 / 一座)."""
    cls = "座" if b.kind in ("stadium", "tower") or b.shape == "round" else "栋"
    return f"一{cls}{_b_zh(b, fine)}"


def _look(b: Building, fine: bool) -> tuple[object, ...]:
    """What a view can tell apart: shape only from above, roundness from the ground."""
    if b.kind == "stadium":
        return ("stadium",)
    return (b.kind, b.colour, b.shape) if fine else (b.kind, b.colour, b.shape == "round")


def _jn(s: Scene) -> tuple[str, str]:
    return JUNCTION_EN[s.junction], JUNCTION_ZH[s.junction]


def _join_en(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _join_zh(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "、".join(items[:-1]) + "和" + items[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _side4(deg: float) -> str:
    return SIDES[int(((deg % 360.0) + 45.0) // 90.0) % 4]


def _water_en(s: Scene) -> str:
    w = s.water
    assert w is not None
    if w.kind == "river":
        return f"a river along the {w.side} side"
    return f"a pond {s.direction(w.center)} of the {_jn(s)[0]}"


def _water_zh(s: Scene) -> str:
    w = s.water
    assert w is not None
    if w.kind == "river":
        return f"沿{DIR_ZH[w.side]}侧流过的河流"
    return f"{_jn(s)[1]}{DIR_ZH[s.direction(w.center)]}侧的池塘"


# ----------------------------------------------------------------------------- visibility


def _min_px(info: ViewInfo, per_128: float) -> int:
    """A pixel threshold given for a 128×128 image, scaled to this view's area."""
    w, h = info.size
    return max(2, int(round(per_128 * w * h / 128**2)))


def visible_buildings(scene: Scene, info: ViewInfo) -> list[Building]:
    """Buildings the view really shows, most prominent first."""
    base = {"satellite": 4, "uav": 8, "street_map": 8, "panorama": 6, "ground": 12}[info.view]
    px = _min_px(info, base)
    shown = [b for b in scene.buildings if info.shows(b, px)]
    return sorted(shown, key=lambda b: (-info.pixels(ID_BUILDING + b.idx), b.idx))


def _shows_water(scene: Scene, info: ViewInfo) -> bool:
    return scene.water is not None and info.pixels(ID_WATER) >= _min_px(info, 30)


def _shows_park(scene: Scene, info: ViewInfo) -> bool:
    return bool(scene.parks) and info.pixels(ID_PARK) >= _min_px(info, 30)


def _shows_bridge(scene: Scene, info: ViewInfo) -> bool:
    return scene.bridge is not None and info.pixels(ID_BRIDGE) >= _min_px(info, 6)


def shows_junction(scene: Scene, info: ViewInfo) -> bool:
    """Whether the junction's form can be read off the view."""
    if info.view == "ground":
        return abs(info.camera["junction_bearing"]) < info.camera["hfov"] / 2 - 5
    if info.frame is not None:
        return info.covers(scene.center, margin=10.0)
    return True


def _in_query_frame(qs: Scene, qi: ViewInfo, ss: Scene, p: Point) -> bool:
    # A satellite position, carried into the query scene by aligning the junctions.
    r = ss.rel(p)
    return qi.covers((qs.center[0] + r[0], qs.center[1] + r[1]))


# ----------------------------------------------------------------------------- comparison


def compare(qs: Scene, qi: ViewInfo, ss: Scene, si: ViewInfo) -> Comparison:
    """Shared evidence and concrete differences between a query view and a satellite tile."""
    cmp = Comparison()
    qn_en, qn_zh = VIEW_EN[qi.view], VIEW_ZH[qi.view]
    same_j = qs.junction == ss.junction
    j_en, j_zh = _jn(qs) if same_j else ("junction", "路口")
    _compare_land_cover(cmp, qs, ss, qn_en, qn_zh)
    _compare_junction(cmp, qs, qi, ss, qn_en, qn_zh)
    _compare_water(cmp, qs, qi, ss, si, qn_en, qn_zh)
    _compare_buildings(cmp, qs, qi, ss, si, qn_en, qn_zh, j_en, j_zh)
    if _shows_park(qs, qi):
        q_dir = qs.direction(qs.parks[0].center)
        if any(math.dist(qs.rel(qs.parks[0].center), ss.rel(p.center)) < 30 for p in ss.parks) and _shows_park(ss, si):
            cmp.shared.append(Phrase(f"a park {q_dir} of the {j_en}", f"{j_zh}{DIR_ZH[q_dir]}侧的绿地"))
        else:
            cmp.diffs.append((0.8, "park", Phrase(
                f"{qn_en} shows a park {q_dir} of the {j_en}, whereas {SAT_EN} has no park there",
                f"{qn_zh}中{j_zh}{DIR_ZH[q_dir]}侧有一片绿地，{SAT_ZH}同一位置却没有")))
    if same_j and _shows_bridge(qs, qi) and _shows_bridge(ss, si):
        cmp.shared.append(Phrase("a bridge carrying the road over the river", "横跨河流的桥梁"))
    cmp.diffs.sort(key=lambda d: -d[0])  # stable: ties keep query salience order
    return cmp


def _compare_land_cover(cmp: Comparison, qs: Scene, ss: Scene, qn_en: str, qn_zh: str) -> None:
    """``toy`` level: every view is washed in its location's land cover, the first thing anyone sees."""
    if qs.land_cover is None or ss.land_cover is None:
        return
    q_en, s_en = qs.land_cover, ss.land_cover
    q_zh, s_zh = LAND_COVER_ZH[q_en], LAND_COVER_ZH[s_en]
    if q_en == s_en:
        cmp.shared.append(Phrase(f"the same {q_en} ground colour", f"相同的{q_zh}底色"))
    else:  # outweighs every layout difference: it is the one a glance shows
        cmp.diffs.append((5.0, "land_cover", Phrase(
            f"{qn_en} is tinted with {q_en} ground while {SAT_EN} shows {s_en}",
            f"{qn_zh}是{q_zh}底色，而{SAT_ZH}是{s_zh}底色")))


def _compare_junction(cmp: Comparison, qs: Scene, qi: ViewInfo, ss: Scene, qn_en: str, qn_zh: str) -> None:
    if not shows_junction(qs, qi):
        return
    jq_en, jq_zh = _jn(qs)
    js_en, js_zh = _jn(ss)
    if qs.junction != ss.junction:
        cmp.diffs.append((3.0, "junction", Phrase(
            f"{qn_en} shows a {jq_en}, whereas {SAT_EN} has a {js_en}",
            f"{qn_zh}中是{jq_zh}，而{SAT_ZH}中是{js_zh}")))
        return
    qa, sa = qs.arm_sides(), ss.arm_sides()
    if qi.view != "ground" and qa != sa:
        cmp.diffs.append((2.2, "arms", Phrase(
            f"the roads leave the {jq_en} to the {_join_en(qa)} in {qn_en}, whereas in {SAT_EN} they go {_join_en(sa)}",
            f"{qn_zh}中道路从{jq_zh}向{_join_zh([DIR_ZH[a] for a in qa])}延伸，"
            f"{SAT_ZH}中却是向{_join_zh([DIR_ZH[a] for a in sa])}")))
        return
    if qs.junction == "t" and qi.view != "ground":
        stem = next(a for a in qa if {"north": "south", "south": "north", "east": "west", "west": "east"}[a] not in qa)
        cmp.shared.append(Phrase(f"the T-junction with its side road to the {stem}", f"支路朝{DIR_ZH[stem]}的丁字路口"))
    else:
        cmp.shared.append(Phrase(f"the {jq_en}", jq_zh))


def _compare_water(cmp: Comparison, qs: Scene, qi: ViewInfo, ss: Scene, si: ViewInfo, qn_en: str, qn_zh: str) -> None:
    qw, sw = _shows_water(qs, qi), _shows_water(ss, si)
    if qw and sw:
        a, b = qs.water, ss.water
        assert a is not None and b is not None
        if a.kind != b.kind:
            cmp.diffs.append((2.5, "water", Phrase(
                f"{qn_en} shows {_water_en(qs)}, whereas {SAT_EN} has {_water_en(ss)} instead",
                f"{qn_zh}中是{_water_zh(qs)}，{SAT_ZH}中却是{_water_zh(ss)}")))
        elif a.kind == "river" and a.side != b.side:
            cmp.diffs.append((2.5, "water", Phrase(
                f"the river runs along the {a.side} side in {qn_en}, whereas in {SAT_EN} it follows the "
                f"{b.side} side",
                f"{qn_zh}中河流沿{DIR_ZH[a.side]}侧流过，{SAT_ZH}中却在{DIR_ZH[b.side]}侧")))
        elif a.kind == "pond" and math.dist(qs.rel(a.center), ss.rel(b.center)) > 45:
            dq, ds = qs.direction(a.center), ss.direction(b.center)
            cmp.diffs.append((2.0, "water", Phrase(
                f"the pond lies {dq} of the junction in {qn_en}, yet {ds} of it in {SAT_EN}",
                f"池塘在{qn_zh}中位于路口{DIR_ZH[dq]}侧，在{SAT_ZH}中却位于{DIR_ZH[ds]}侧")))
        else:
            cmp.shared.append(Phrase(_water_en(qs), _water_zh(qs)))
    elif qw:
        cmp.diffs.append((2.5, "water", Phrase(
            f"{qn_en} shows {_water_en(qs)}, while {SAT_EN} has no water at all",
            f"{qn_zh}中有{_water_zh(qs)}，{SAT_ZH}中却看不到任何水体")))
    elif sw and ss.water is not None and _in_query_frame(qs, qi, ss, ss.water.center):
        cmp.diffs.append((2.3, "water", Phrase(
            f"{SAT_EN} shows {_water_en(ss)} that does not appear in {qn_en}",
            f"{SAT_ZH}中有{_water_zh(ss)}，{qn_zh}中却没有")))


def _compare_buildings(cmp: Comparison, qs: Scene, qi: ViewInfo, ss: Scene, si: ViewInfo,
                       qn_en: str, qn_zh: str, j_en: str, j_zh: str) -> None:
    fine = qi.view in FINE_VIEWS
    s_vis = visible_buildings(ss, si)
    matched: set[int] = set()
    for qb in visible_buildings(qs, qi):
        rq = qs.rel(qb.center)
        near = sorted((b for b in s_vis if math.dist(rq, ss.rel(b.center)) < NEAR_M),
                      key=lambda b: math.dist(rq, ss.rel(b.center)))
        d = qs.direction(qb.center)
        here = [b for b in near if _look(b, fine) == _look(qb, fine)]
        w = 2.4 if qb.kind in ("tower", "stadium") else 2.0
        if here:
            matched.add(here[0].idx)
            cmp.shared.append(Phrase(f"{_the(qb, fine)} {d} of the {j_en}", f"{j_zh}{DIR_ZH[d]}侧的{_b_zh(qb, fine)}",
                                     qb.idx, here[0].idx))
        elif near:
            sb = near[0]
            matched.add(sb.idx)
            cmp.diffs.append((w, "building_changed", Phrase(
                f"{qn_en} has {_a(qb, fine)} {d} of the {j_en}, where {SAT_EN} shows {_a(sb, fine)} instead",
                f"{qn_zh}中{j_zh}{DIR_ZH[d]}侧是{_yi(qb, fine)}，{SAT_ZH}同一位置却是{_yi(sb, fine)}", qb.idx, sb.idx)))
        elif (moved := [b for b in s_vis if _look(b, fine) == _look(qb, fine)]):
            sb = moved[0]
            matched.add(sb.idx)
            ds = ss.direction(sb.center)
            cmp.diffs.append((w - 0.1, "building_moved", Phrase(
                f"{_the(qb, fine)} stands {d} of the {j_en} in {qn_en}, yet {ds} of it in {SAT_EN}",
                f"{_b_zh(qb, fine)}在{qn_zh}中位于{j_zh}{DIR_ZH[d]}侧，在{SAT_ZH}中却位于{DIR_ZH[ds]}侧", qb.idx, sb.idx)))
        else:
            cmp.diffs.append((w - 0.4, "building_missing", Phrase(
                f"{qn_en} shows {_a(qb, fine)} {d} of the {j_en}, whereas {SAT_EN} has no such building",
                f"{qn_zh}中{j_zh}{DIR_ZH[d]}侧有{_yi(qb, fine)}，{SAT_ZH}中却没有这样的建筑", qb.idx)))
    for sb in s_vis:
        if sb.idx in matched or not _in_query_frame(qs, qi, ss, sb.center):
            continue
        ds = ss.direction(sb.center)
        cmp.diffs.append((1.2 + 0.4 * (sb.kind != "building"), "building_extra", Phrase(
            f"{SAT_EN} has {_a(sb, fine)} {ds} of the {j_en} that is absent from {qn_en}",
            f"{SAT_ZH}中{j_zh}{DIR_ZH[ds]}侧有{_yi(sb, fine)}，{qn_zh}中却没有", None, sb.idx)))


# ----------------------------------------------------------------------------- descriptions


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _layout(s: Scene, info: ViewInfo, with_dirs: bool) -> tuple[list[str], list[str]]:
    """Junction, water, park and bridge as noun phrases (compass positions if ``with_dirs``)."""
    j_en, j_zh = _jn(s)
    en, zh = ([f"a {j_en}"], [f"一个{j_zh}"]) if shows_junction(s, info) else ([], [])
    if _shows_water(s, info):
        w = s.water
        assert w is not None
        if with_dirs:
            en.append(_water_en(s))
            zh.append(_water_zh(s))
        else:
            en.append(f"a {w.kind}")
            zh.append("一条河流" if w.kind == "river" else "一个池塘")
    if _shows_bridge(s, info):
        en.append("a bridge")
        zh.append("一座桥")
    if _shows_park(s, info):
        d = s.direction(s.parks[0].center)
        en.append(f"a park {d} of the {j_en}" if with_dirs else "a park")
        zh.append(f"{DIR_ZH[d]}侧的一片绿地" if with_dirs else "一片绿地")
    return en, zh


def _buildings_with_dirs(s: Scene, bs: list[Building], fine: bool) -> tuple[str, str]:
    j_en, j_zh = _jn(s)
    en, zh = [], []
    for k, b in enumerate(bs):
        d = s.direction(b.center)
        en.append(f"{_a(b, fine)} {d} of the {j_en}" if k == 0 else f"{_a(b, fine)} to the {d}")
        zh.append(f"{j_zh}{DIR_ZH[d]}侧的{_b_zh(b, fine)}" if k == 0 else f"{DIR_ZH[d]}侧的{_b_zh(b, fine)}")
    return _join_en(en), _join_zh(zh)


def _focus(s: Scene, info: ViewInfo, focus: list[int], rng: np.random.Generator) -> list[Building]:
    """Buildings to describe: those the reasoning names first, then the most prominent (2-4 in all)."""
    shown = visible_buildings(s, info)
    by_idx = {b.idx: b for b in shown}
    named = [by_idx[i] for i in dict.fromkeys(focus) if i in by_idx]
    rest = [b for b in shown if b not in named]
    return (named + rest)[: max(len(named), int(rng.integers(2, 4)))][:4]


def _describe_query(s: Scene, info: ViewInfo, focus: list[int], rng: np.random.Generator) -> tuple[str, str]:
    fine = info.view in FINE_VIEWS
    bs = _focus(s, info, focus, rng)
    lay_en, lay_zh = _layout(s, info, with_dirs=info.view == "street_map")
    main_en, main_zh = _join_en(lay_en or ["a street"]), _join_zh(lay_zh or ["一条街道"])
    if info.view == "uav":
        if not bs:
            return f"The drone view looks obliquely down on {main_en}.", f"无人机从斜上方俯拍到{main_zh}。"
        objs_en, objs_zh = _join_en([_a(b, fine) for b in bs]), _join_zh([_yi(b, fine) for b in bs])
        return (_pick(rng, [f"The drone view looks obliquely down on {main_en}, with {objs_en} nearby.",
                            f"From the drone's oblique angle we see {main_en}; around it we can make out {objs_en}.",
                            f"The UAV image shows {main_en} from an oblique angle, together with {objs_en}."]),
                _pick(rng, [f"无人机从斜上方俯拍到{main_zh}，周围可以看到{objs_zh}。",
                            f"这张无人机倾斜航拍图里有{main_zh}，附近还有{objs_zh}。",
                            f"无人机视角下可以看到{main_zh}，以及{objs_zh}。"]))
    if info.view == "street_map":
        if not bs:
            return f"The street map shows {main_en}.", f"街道地图上是{main_zh}。"
        objs_en, objs_zh = _buildings_with_dirs(s, bs, fine)
        return (_pick(rng, [f"The street map shows {main_en}; the building footprints include {objs_en}.",
                            f"On the street map there is {main_en}, and the marked buildings include {objs_en}.",
                            f"The map tile is laid out around {main_en}; among its footprints are {objs_en}."]),
                _pick(rng, [f"街道地图上是{main_zh}，标出的建筑包括{objs_zh}。",
                            f"这张街道地图上有{main_zh}，图中的建筑轮廓有{objs_zh}。",
                            f"地图上可以看到{main_zh}，其中比较醒目的建筑有{objs_zh}。"]))
    if info.view == "panorama":
        return _describe_panorama(s, info, bs, rng)
    return _describe_ground(s, info, bs, rng)


def _bearing_zh(d: str) -> str:
    # "南面" / "东北方向": a bare one-character bearing plus 方向 reads stiffly in Chinese.
    return f"{DIR_ZH[d]}面" if len(DIR_ZH[d]) == 1 else f"{DIR_ZH[d]}方向"


def _describe_panorama(s: Scene, info: ViewInfo, bs: list[Building], rng: np.random.Generator) -> tuple[str, str]:
    j_en, j_zh = _jn(s)
    items_en = [f"{_a(b, False)} to the {panorama_direction(info, b.center)}" for b in bs]
    items_zh = [f"{_bearing_zh(panorama_direction(info, b.center))}的{_b_zh(b, False)}" for b in bs]
    objs_en = _join_en(items_en) if items_en else "mostly trees and open ground"
    objs_zh = _join_zh(items_zh) if items_zh else "大片树木和空地"
    en = _pick(rng, [f"The 360° panorama is taken from the middle of the {j_en}; around the camera we see {objs_en}.",
                     f"Taken from the centre of a {j_en}, the panorama shows {objs_en}.",
                     f"In the panorama, shot from a {j_en}, we can see {objs_en}."])
    zh = _pick(rng, [f"这张360°全景图拍摄于{j_zh}中央，相机四周可以看到{objs_zh}。",
                     f"全景图从{j_zh}中间拍摄，画面中有{objs_zh}。",
                     f"在{j_zh}处拍摄的全景图里，可以看到{objs_zh}。"])
    if _shows_water(s, info):
        w = s.water
        assert w is not None
        d = w.side if w.kind == "river" else panorama_direction(info, w.center)
        en += f" A {w.kind} is also visible to the {d}."
        zh += f"{DIR_ZH[d]}边还能看到{'一条河流' if w.kind == 'river' else '一个池塘'}。"
    return en, zh


def _describe_ground(s: Scene, info: ViewInfo, bs: list[Building], rng: np.random.Generator) -> tuple[str, str]:
    j_en, j_zh = _jn(s)
    groups: dict[str, list[Building]] = {"left": [], "ahead": [], "right": []}
    for b in bs:
        groups[relative_side(info, b.center)].append(b)
    parts_en = [f"{_join_en([_a(b, False) for b in g])} {SIDE_EN[k]}" for k, g in groups.items() if g]
    parts_zh = [f"{SIDE_ZH[k]}是{_join_zh([_yi(b, False) for b in g])}" for k, g in groups.items() if g]
    objs_en = ", ".join(parts_en) if parts_en else "mostly road, trees and open ground"
    objs_zh = "，".join(parts_zh) if parts_zh else "画面里主要是道路、树木和空地"
    if shows_junction(s, info):
        return (_pick(rng, [f"The ground photo looks along a street towards a {j_en}: {objs_en}.",
                            f"Taken at street level facing a {j_en}, the photo shows {objs_en}.",
                            f"At ground level the camera looks down a road towards a {j_en}; we see {objs_en}."]),
                _pick(rng, [f"地面照片沿着街道望向{j_zh}：{objs_zh}。",
                            f"这张街景照片面朝{j_zh}拍摄，{objs_zh}。",
                            f"相机在街道上朝{j_zh}方向拍摄，{objs_zh}。"]))
    return (f"The ground photo looks along a street: {objs_en}.", f"地面照片沿着一条街道拍摄：{objs_zh}。")


def _describe_satellite(s: Scene, info: ViewInfo, focus: list[int], rng: np.random.Generator) -> tuple[str, str]:
    bs = _focus(s, info, focus, rng)
    lay_en, lay_zh = _layout(s, info, with_dirs=True)
    j_en, j_zh = _jn(s)
    rest_en, rest_zh = lay_en[1:], lay_zh[1:]  # the satellite always shows its junction first
    all_en, all_zh = _join_en(lay_en), _join_zh(lay_zh)
    if not bs:
        return f"The satellite tile shows {all_en}.", f"卫星图中是{all_zh}。"
    objs_en, objs_zh = _buildings_with_dirs(s, bs, True)
    with_en = f", with {_join_en(rest_en)}" if rest_en else ""
    with_zh = f"，还能看到{_join_zh(rest_zh)}" if rest_zh else ""
    return (_pick(rng, [f"The satellite tile is centred on a {j_en}{with_en}; notable roofs include {objs_en}.",
                        f"In the satellite image we can see {all_en}, plus {objs_en}.",
                        f"From above, the satellite tile shows {all_en}; among the roofs are {objs_en}."]),
            _pick(rng, [f"卫星图以{j_zh}为中心{with_zh}，比较显眼的屋顶有{objs_zh}。",
                        f"从卫星图上看，画面中有{all_zh}，周围分布着{objs_zh}。",
                        f"卫星图显示了{all_zh}，其中清晰可辨的建筑包括{objs_zh}。"]))


# ----------------------------------------------------------------------------- reasoning


def _alignment(qs: Scene, qi: ViewInfo, rng: np.random.Generator) -> tuple[str, str]:
    """Why the views line up: the pose that makes the query fit the tile."""
    if qi.view == "uav":
        hd = compass_of_bearing(qi.camera["heading"])
        return (_pick(rng, [f"Rotating the drone view so that north is up makes everything line up; "
                            f"the drone was facing roughly {hd}.",
                            f"Once the drone view is turned to north-up, the layout matches the tile; "
                            f"the camera was pointing roughly {hd}."]),
                _pick(rng, [f"把无人机图旋转到正北朝上后，布局与卫星图完全吻合，无人机大致朝{DIR_ZH[hd]}方向拍摄。",
                            f"将无人机视角转正（北朝上）后，两者一一对应；相机大约朝向{DIR_ZH[hd]}。"]))
    if qi.view == "street_map":
        return (_pick(rng, ["The road geometry and building footprints line up one-to-one.",
                            "Map and satellite tile share the same road geometry and footprint arrangement."]),
                _pick(rng, ["道路形状与建筑轮廓一一对应。", "地图与卫星图的道路走向和建筑布局完全一致。"]))
    if qi.view == "panorama":
        return (_pick(rng, ["The bearings of these objects in the panorama match where they sit around the junction "
                            "in the tile.",
                            "Each object appears in the panorama at the bearing the tile predicts from the junction."]),
                _pick(rng, ["这些目标在全景图中的方位与它们在卫星图中相对路口的位置一致。",
                            "全景图中每个目标的方位都与卫星图中从路口看过去的方向相符。"]))
    arm, hd = _side4(qi.camera["arm"]), compass_of_bearing(qi.camera["heading"])
    return (_pick(rng, [f"This fits a camera standing on the road {arm} of the junction and looking {hd}.",
                        f"It is consistent with a photo taken on the road {arm} of the junction, facing {hd}."]),
            _pick(rng, [f"这与相机站在路口{DIR_ZH[arm]}侧的道路上、朝{DIR_ZH[hd]}方向拍摄的情形相符。",
                        f"这符合从路口{DIR_ZH[arm]}侧街道朝{DIR_ZH[hd]}方向拍摄的视角。"]))


def _positive(ev: list[Phrase], qs: Scene, qi: ViewInfo, rng: np.random.Generator) -> tuple[str, str]:
    ev_en, ev_zh = _join_en([p.en for p in ev]), _join_zh([p.zh for p in ev])
    al_en, al_zh = _alignment(qs, qi, rng)
    en = _pick(rng, [f"Both images show {ev_en}.", f"The key evidence agrees: {ev_en}.",
                     f"Comparing the two, each image contains {ev_en}."])
    zh = _pick(rng, [f"两幅图都能看到{ev_zh}。", f"关键证据完全一致：{ev_zh}。", f"对比两张图，{ev_zh}都能一一对应。"])
    close_en = _pick(rng, ["Therefore both images show the same place.",
                           "All the key landmarks agree, so this is a match.",
                           "The query was taken at the location shown in the satellite tile."])
    close_zh = _pick(rng, ["因此两张图显示的是同一个地方。", "关键地标全部吻合，可以判定为同一地点。",
                           "可以确定查询图就拍摄于卫星图所示的位置。"])
    return f"{en} {al_en} {close_en}", f"{zh}{al_zh}{close_zh}"


def _negative(ds: list[Phrase], shared: list[Phrase], rng: np.random.Generator) -> tuple[str, str]:
    d_en = "; ".join(p.en for p in ds[:-1]) + ("; and " if len(ds) > 1 else "") + ds[-1].en
    d_zh = "；".join(p.zh for p in ds)
    if shared:
        s_en, s_zh = _join_en([p.en for p in shared]), _join_zh([p.zh for p in shared])
        en = _pick(rng, [f"At first glance the two look alike: both have {s_en}. However, {d_en}.",
                         f"The layouts are similar; both share {s_en}. But on closer inspection, {d_en}."])
        zh = _pick(rng, [f"乍看之下两者很相似，都有{s_zh}。但仔细比较，{d_zh}。",
                         f"两者布局相近，都能看到{s_zh}。然而，{d_zh}。"])
    else:
        en = _pick(rng, [f"The two images do not agree: {d_en}.", f"Several things do not match: {d_en}.",
                         f"Comparing them reveals clear differences: {d_en}."])
        zh = _pick(rng, [f"两幅图并不一致：{d_zh}。", f"有几处明显不符：{d_zh}。", f"对比之下差异很明显：{d_zh}。"])
    close_en = _pick(rng, ["These differences mean the two images show different places.",
                           "So the query was not taken at the location in the satellite tile.",
                           "Therefore they are not the same place."])
    close_zh = _pick(rng, ["这些差异说明两张图拍的不是同一个地方。", "因此，查询图并非拍摄于卫星图所示的位置。",
                           "所以两者不是同一地点。"])
    return f"{en} {close_en}", f"{zh}{close_zh}"


def explain(qs: Scene, qi: ViewInfo, ss: Scene, si: ViewInfo, label: bool, rng: np.random.Generator,
            cmp: Comparison | None = None) -> dict[str, str]:
    """``{"en": ..., "zh": ...}``: query, satellite, evidence or differences, then the verdict line.

    The descriptions name the buildings the reasoning cites. Raises ``ValueError``
    when the ground truth cannot support ``label`` (a negative without a visible
    difference, a positive without shared evidence), so no sample carries an
    unfounded explanation.
    """
    cmp = cmp if cmp is not None else compare(qs, qi, ss, si)
    if label and (cmp.diffs or not cmp.shared):
        raise ValueError(f"{qs.location_id}/{qi.view} does not visibly match {ss.location_id}")
    if not label and not cmp.diffs:
        raise ValueError(f"no visible difference between {qs.location_id}/{qi.view} and {ss.location_id}")
    cited = cmp.shared[:4] if label else [p for _, _, p in cmp.diffs][: int(rng.integers(2, 4))]
    shared = [] if label else cmp.shared[:2]
    q_en, q_zh = _describe_query(qs, qi, [p.q for p in cited + shared if p.q is not None], rng)
    s_en, s_zh = _describe_satellite(ss, si, [p.s for p in cited + shared if p.s is not None], rng)
    r_en, r_zh = _positive(cited, qs, qi, rng) if label else _negative(cited, shared, rng)
    return {"en": "\n".join([q_en, s_en, r_en, verdict_line(label, "en")]),
            "zh": "\n".join([q_zh, s_zh, r_zh, verdict_line(label, "zh")])}
