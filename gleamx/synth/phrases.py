"""The synthetic world's words: every bilingual name table, ``{kind: {"en": ..., "zh": ...}}``.

Explanations (:mod:`gleamx.synth.explain`) and scene facts (:mod:`gleamx.synth.world`) name
things only through these tables, so an English and a Chinese text always name the same thing.
Sentence templates live next to the code that fills them, also as ``{"en": [...], "zh": [...]}``.
"""

from __future__ import annotations

Bilingual = dict[str, str]
"""``{"en": ..., "zh": ...}``."""

VIEW_NAMES: dict[str, Bilingual] = {
    "uav": {"en": "the drone view", "zh": "无人机图"},
    "street_map": {"en": "the street map", "zh": "街道地图"},
    "panorama": {"en": "the panorama", "zh": "全景图"},
    "ground": {"en": "the ground photo", "zh": "地面照片"},
}
"""How a query view is named inside a sentence."""

SATELLITE_NAME: Bilingual = {"en": "the satellite tile", "zh": "卫星图"}

JUNCTION_NAMES: dict[str, Bilingual] = {
    "t": {"en": "T-junction", "zh": "丁字路口"},
    "cross": {"en": "crossroads", "zh": "十字路口"},
    "roundabout": {"en": "roundabout", "zh": "环岛"},
}
"""Junction forms (:data:`gleamx.synth.world.JUNCTIONS`), without an article."""

COMPASS_NAMES: dict[str, Bilingual] = {
    "north": {"en": "north", "zh": "北"},
    "north-east": {"en": "north-east", "zh": "东北"},
    "east": {"en": "east", "zh": "东"},
    "south-east": {"en": "south-east", "zh": "东南"},
    "south": {"en": "south", "zh": "南"},
    "south-west": {"en": "south-west", "zh": "西南"},
    "west": {"en": "west", "zh": "西"},
    "north-west": {"en": "north-west", "zh": "西北"},
}
"""The 8 compass points (:data:`gleamx.synth.world.COMPASS`)."""

COLOUR_NAMES: dict[str, Bilingual] = {
    "red": {"en": "red", "zh": "红色"},
    "blue": {"en": "blue", "zh": "蓝色"},
    "yellow": {"en": "yellow", "zh": "黄色"},
    "white": {"en": "white", "zh": "白色"},
    "grey": {"en": "grey", "zh": "灰色"},
    "green": {"en": "green", "zh": "绿色"},
}
"""Roof colours (:data:`gleamx.synth.world.COLOURS`)."""

LAND_COVER_NAMES: dict[str, Bilingual] = {
    "grass": {"en": "grass", "zh": "草地"},
    "sand": {"en": "sand", "zh": "沙地"},
    "snow": {"en": "snow", "zh": "雪地"},
    "red clay": {"en": "red clay", "zh": "红土"},
    "heather": {"en": "heather", "zh": "石楠荒地"},
    "concrete": {"en": "concrete", "zh": "水泥地"},
}
"""``toy``-level land covers (:data:`gleamx.synth.world.LAND_COVERS`)."""

BUILDING_NAMES: dict[str, Bilingual] = {
    "stadium": {"en": "stadium", "zh": "体育场"},
    "tower": {"en": "tall {colour} tower", "zh": "{colour}高塔"},
    "round_tall": {"en": "round {colour} tower", "zh": "{colour}圆塔"},
    "round_low": {"en": "round {colour} building", "zh": "{colour}圆形建筑"},
    "tall": {"en": "tall {colour} building", "zh": "{colour}高楼"},
    "low": {"en": "low {colour} building", "zh": "{colour}矮楼"},
    "rect": {"en": "{colour} rectangular building", "zh": "{colour}长方形建筑"},
    "l_shape": {"en": "{colour} L-shaped building", "zh": "{colour}L形建筑"},
    "slab": {"en": "long {colour} slab block", "zh": "{colour}长条形板楼"},
}
"""A building's noun (no article), ``{colour}`` filled in: landmarks by kind, round ones by height, the
rest by footprint shape where the view shows shapes (from above), else by height."""

WATER_NAMES: dict[str, Bilingual] = {
    "river": {"en": "a river", "zh": "一条河流"},
    "pond": {"en": "a pond", "zh": "一个池塘"},
}

GROUND_SIDE_NAMES: dict[str, Bilingual] = {
    "left": {"en": "on the left", "zh": "左侧"},
    "ahead": {"en": "straight ahead", "zh": "正前方"},
    "right": {"en": "on the right", "zh": "右侧"},
}
"""Where something stands in a ground photo (:func:`gleamx.synth.render.relative_side`)."""


def in_zh(compass_point: str) -> str:
    """The Chinese name of a compass point ("north-east" -> "东北")."""
    return COMPASS_NAMES[compass_point]["zh"]
