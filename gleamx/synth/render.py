"""Renderers: one :class:`~gleamx.synth.world.Scene` -> satellite, UAV, street map, panorama, ground.

Every renderer paints an object-id mask in lockstep with the RGB image, so the
number of pixels each object covers in the final view is known exactly; the
explanations then mention only what a view really shows. Images are drawn at
``SS``× resolution and downsampled for anti-aliasing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from gleamx.synth.world import COLOURS, LAND_COVERS, TILE_HALF, WORLD_HALF, Building, Point, Road, Scene, bearing, compass

SS = 2
"""Supersampling factor."""
ID_ROAD, ID_WATER, ID_PARK, ID_TREE, ID_BRIDGE = 1, 2, 3, 4, 5
ID_BUILDING = 10
"""Mask id of building ``i`` is ``ID_BUILDING + i``."""

RGB = tuple[int, int, int]
_SUN = np.array([-0.45, -0.89])  # towards the sun (south-south-west): walls facing it are lit
_SKY_TOP, _HORIZON = np.array([96, 142, 204], np.float32), np.array([206, 218, 230], np.float32)



class _UavLevel(NamedTuple):
    spread: float  # heading drawn from [-spread, spread] degrees
    ratio: tuple[float, float]  # far/near width of the ground trapezoid (perspective strength)
    scale: tuple[float, float]  # ground covered relative to the tile
    haze: float
    cast: float  # std of the per-channel colour gain


# Distortion per difficulty ("easy" must stay learnable by a tiny model): UAV pose, map offset (m) and zoom,
# ground-photo heading jitter (deg) and horizontal FOV (deg), panorama north error (deg).
_UAV = {"easy": _UavLevel(20.0, (1.1, 1.25), (0.95, 1.05), 0.0, 0.0),
        "medium": _UavLevel(180.0, (1.3, 1.55), (0.85, 1.1), 0.15, 0.04),
        "hard": _UavLevel(180.0, (1.5, 1.9), (0.75, 1.15), 0.3, 0.08)}
_MAP = {"easy": (0.0, 0.0), "medium": (10.0, 0.1), "hard": (22.0, 0.2)}
_GROUND = {"easy": (8.0, 100.0), "medium": (25.0, 90.0), "hard": (45.0, 75.0)}
_PANO_YAW = {"easy": 0.0, "medium": 5.0, "hard": 15.0}
_EL_TOP, _EL_BOTTOM = 40.0, -20.0  # panorama elevation range (deg): more rows for buildings than for road


@dataclass
class ViewInfo:
    """What a rendered view shows: object pixel counts, camera pose and covered ground."""

    view: str
    size: tuple[int, int]
    counts: dict[int, int]  # mask id -> pixels at output resolution
    camera: dict[str, float]
    frame: list[Point] | None = None  # convex ground polygon fully in view (top-down views only)

    def pixels(self, oid: int) -> int:
        return self.counts.get(oid, 0)

    def shows(self, b: Building, min_px: int = 6) -> bool:
        """Whether building ``b`` covers at least ``min_px`` output pixels."""
        return self.pixels(ID_BUILDING + b.idx) >= min_px

    def covers(self, p: Point, margin: float = 15.0) -> bool:
        """Whether ground point ``p`` is inside the frame by at least ``margin`` metres.

        Only top-down views can vouch that something is absent; panoramas and ground
        photos have occlusion, so they never cover anything.
        """
        if self.frame is None:
            return False
        pts = self.frame
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            ex, ey = x1 - x0, y1 - y0
            # Inward normal of a counter-clockwise polygon is (-ey, ex).
            if ((p[0] - x0) * -ey + (p[1] - y0) * ex) / math.hypot(ex, ey) < margin:
                return False
        return True


@dataclass
class ViewRender:
    image: Image.Image
    info: ViewInfo


def _counts(mask: Image.Image, scale: int) -> dict[int, int]:
    hist = np.bincount(np.asarray(mask).ravel(), minlength=256)
    return {int(k): int(round(v / scale**2)) for k, v in enumerate(hist) if v and k}


def _noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Smooth value noise in [-1, 1] (bicubic-upsampled random grid)."""
    g = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return np.asarray(Image.fromarray(g).resize((w, h), Image.Resampling.BICUBIC)) * 2.0 - 1.0


def _to_img(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _shade(c: RGB | np.ndarray, k: float) -> RGB:
    return tuple(int(min(255, max(0, round(v * k)))) for v in c)  # type: ignore[return-value]


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- top-down painting


class _Canvas:
    """Paints world-space shapes into an RGB image and an id mask at once (north up)."""

    def __init__(self, px: int, half: float, center: Point = (0.0, 0.0), base: np.ndarray | None = None,
                 bg: RGB = (0, 0, 0)) -> None:
        self.px, self.half, self.cx, self.cy = px, half, center[0], center[1]
        self.s = px / (2 * half)
        self.img = _to_img(base) if base is not None else Image.new("RGB", (px, px), bg)
        self.mask = Image.new("L", (px, px), 0)
        self.d, self.m = ImageDraw.Draw(self.img), ImageDraw.Draw(self.mask)

    def uv(self, pts: list[Point]) -> list[Point]:
        return [((x - self.cx + self.half) * self.s, (self.cy + self.half - y) * self.s) for x, y in pts]

    def poly(self, pts: list[Point], fill: RGB, oid: int | None = None, outline: RGB | None = None) -> None:
        uv = self.uv(pts)
        self.d.polygon(uv, fill=fill, outline=outline)
        if oid is not None:
            self.m.polygon(uv, fill=oid)

    def line(self, a: Point, b: Point, width: float, fill: RGB, oid: int | None = None) -> None:
        uv = self.uv([a, b])
        w = max(1, int(round(width * self.s)))
        self.d.line(uv, fill=fill, width=w)
        if oid is not None:
            self.m.line(uv, fill=oid, width=w)

    def disc(self, c: Point, r: float, fill: RGB, oid: int | None = None, ring: float = 0.0) -> None:
        (u, v), = self.uv([c])
        box = [u - r * self.s, v - r * self.s, u + r * self.s, v + r * self.s]
        if ring:  # an annulus of width ``ring`` centred on radius r
            w = max(1, int(round(ring * self.s)))
            box = [box[0] - w / 2, box[1] - w / 2, box[2] + w / 2, box[3] + w / 2]
            self.d.ellipse(box, outline=fill, width=w)
            if oid is not None:
                self.m.ellipse(box, outline=oid, width=w)
            return
        self.d.ellipse(box, fill=fill)
        if oid is not None:
            self.m.ellipse(box, fill=oid)


def _scaled(pts: list[Point], c: Point, k: float) -> list[Point]:
    return [(c[0] + (x - c[0]) * k, c[1] + (y - c[1]) * k) for x, y in pts]


def _bridge_road(scene: Scene) -> tuple[Point, Point, float] | None:
    """Deck of the bridge: a short piece of the road that crosses the river."""
    if scene.bridge is None or scene.water is None:
        return None
    bx, by = scene.bridge

    def dist(r: Road) -> float:
        (x0, y0), (x1, y1) = r.start, r.end
        ex, ey = x1 - x0, y1 - y0
        t = max(0.0, min(1.0, ((bx - x0) * ex + (by - y0) * ey) / (ex * ex + ey * ey)))
        return math.hypot(x0 + t * ex - bx, y0 + t * ey - by)

    road = min(scene.roads, key=dist)
    (x0, y0), (x1, y1) = road.start, road.end
    n = math.hypot(x1 - x0, y1 - y0)
    ux, uy = (x1 - x0) / n, (y1 - y0) / n
    half_len = 18.0
    return (bx - ux * half_len, by - uy * half_len), (bx + ux * half_len, by + uy * half_len), road.width


@dataclass(frozen=True)
class _Palette:
    park: RGB
    water: RGB
    road_edge: RGB
    road: RGB
    road_major: RGB
    island: RGB
    bridge: RGB
    edge_m: float  # extra road-edge width in metres


_SAT = _Palette((80, 132, 62), (44, 82, 110), (164, 160, 150), (82, 84, 88), (78, 80, 84), (92, 138, 70),
                (150, 146, 140), 3.0)
_MAP_PAL = _Palette((200, 236, 188), (170, 211, 223), (182, 178, 172), (255, 255, 255), (252, 214, 164),
                    (200, 236, 188), (236, 232, 226), 0.0)


def _paint_layout(cv: _Canvas, scene: Scene, pal: _Palette) -> None:
    """Parks, water, roads, roundabout and bridge (everything flat)."""
    for p in scene.parks:
        cv.poly(p.polygon, pal.park, ID_PARK)
    if scene.water is not None:
        cv.poly(scene.water.polygon, pal.water, ID_WATER)
    edge = pal.edge_m if pal.edge_m else 2.0 * SS / cv.s  # map outlines: ~1 output pixel either side
    for r in scene.roads:
        cv.line(r.start, r.end, r.width + edge, pal.road_edge, ID_ROAD)
    ring_w = min(r.width for r in scene.roads)
    if scene.ring_radius:
        cv.disc(scene.center, scene.ring_radius, pal.road_edge, ID_ROAD, ring=ring_w + edge)
    for r in sorted(scene.roads, key=lambda r: r.major):  # major roads on top at the junction
        cv.line(r.start, r.end, r.width, pal.road_major if r.major else pal.road, ID_ROAD)
    if scene.ring_radius:
        cv.disc(scene.center, scene.ring_radius, pal.road, ID_ROAD, ring=ring_w)
        cv.disc(scene.center, scene.ring_radius - ring_w / 2, pal.island, 0)
    deck = _bridge_road(scene)
    if deck is not None:
        a, b, w = deck
        cv.line(a, b, w + 4, _shade(pal.bridge, 0.6), ID_BRIDGE)
        cv.line(a, b, w, pal.bridge, ID_BRIDGE)


def _paint_buildings_sat(cv: _Canvas, scene: Scene, rng: np.random.Generator, shadows: bool) -> None:
    shadow_dir = (-_SUN[0] * 0.25, -_SUN[1] * 0.25)  # shadows fall away from the sun
    if shadows:
        for t in scene.trees:
            cv.disc((t.x + shadow_dir[0] * t.height, t.y + shadow_dir[1] * t.height), t.radius, (48, 58, 40))
        for b in scene.buildings:
            for k in np.linspace(0.2, 1.0, 5):
                dx, dy = shadow_dir[0] * b.height * k, shadow_dir[1] * b.height * k
                cv.poly([(x + dx, y + dy) for x, y in b.footprint], (62, 66, 54))
    for t in scene.trees:
        cv.disc((t.x, t.y), t.radius, (40, 88, 44), ID_TREE)
        cv.disc((t.x - 0.3 * t.radius, t.y + 0.3 * t.radius), 0.5 * t.radius, (62, 114, 58), ID_TREE)
    for b in scene.buildings:
        oid = ID_BUILDING + b.idx
        if b.kind == "stadium":
            cv.poly(b.footprint, (206, 206, 210), oid, outline=(150, 150, 156))
            cv.poly(_scaled(b.footprint, b.center, 0.66), (170, 86, 64), oid)
            cv.poly(_scaled(b.footprint, b.center, 0.52), (76, 148, 72), oid)
            continue
        roof = _shade(COLOURS[b.colour], float(rng.uniform(0.93, 1.05)))
        cv.poly(b.footprint, roof, oid, outline=_shade(roof, 0.78))
        if b.shape == "round":  # a lit rim sells the cylinder from above
            cv.poly(_scaled(b.footprint, b.center, 0.55), _shade(roof, 1.08), oid)


def _ground_base(rng: np.random.Generator, px: int) -> np.ndarray:
    # Only low frequencies here (grain comes later), so mix at 1/8 size and upsample.
    lo = max(8, px // 8)
    t = ((_noise(rng, lo, lo, 5) + 1.0) / 2.0)[..., None]
    grass, soil = np.array([110, 124, 76], np.float32), np.array([150, 140, 104], np.float32)
    small = _to_img(grass * (1 - t) + soil * t)
    return np.asarray(small.resize((px, px), Image.Resampling.BILINEAR))


def _texture(img: Image.Image, rng: np.random.Generator, strength: float = 1.0) -> Image.Image:
    """Photographic grain: large-scale brightness variation plus per-pixel noise."""
    arr = np.asarray(img, np.float32)
    h, w = arr.shape[:2]
    grain = rng.standard_normal((h, w), dtype=np.float32)
    gain = 1.0 + strength * (0.10 * _noise(rng, h, w, 7) + 0.045 * grain)
    return _to_img(arr * gain[..., None])


def _satellite_canvas(scene: Scene, rng: np.random.Generator, px: int, half: float) -> _Canvas:
    cv = _Canvas(px, half, base=_ground_base(rng, px))
    _paint_layout(cv, scene, _SAT)
    _paint_buildings_sat(cv, scene, rng, shadows=True)
    return cv


def _square_frame(c: Point, half: float) -> list[Point]:
    (x, y), h = c, half
    return [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]  # counter-clockwise


def render_satellite(scene: Scene, size: int, rng: np.random.Generator) -> ViewRender:
    """Top-down, north-up orthophoto of the tile with texture and shadows."""
    cv = _satellite_canvas(scene, rng, size * SS, TILE_HALF)
    img = _texture(cv.img.reduce(SS), rng)  # grain at output resolution, like sensor noise
    info = ViewInfo("satellite", (size, size), _counts(cv.mask, SS), {}, _square_frame((0.0, 0.0), TILE_HALF))
    return ViewRender(wash(img, scene), info)


def render_street_map(scene: Scene, size: int, rng: np.random.Generator, difficulty: str = "medium") -> ViewRender:
    """Flat cartographic tile (OSM-like colours, no texture), north-up, slightly shifted/zoomed."""
    shift, zoom = _MAP[difficulty]
    c = (float(rng.uniform(-shift, shift)), float(rng.uniform(-shift, shift)))
    half = TILE_HALF * float(rng.uniform(1 - zoom, 1 + zoom))
    cv = _Canvas(size * SS, half, c, bg=(242, 239, 233))
    _paint_layout(cv, scene, _MAP_PAL)
    for b in scene.buildings:
        oid = ID_BUILDING + b.idx
        if b.kind == "stadium":
            cv.poly(b.footprint, (222, 236, 214), oid, outline=(160, 180, 160))
            cv.poly(_scaled(b.footprint, b.center, 0.55), (170, 224, 203), oid)
            continue
        tint = _mix(COLOURS[b.colour], (226, 218, 210), 0.4)  # muted, but the hue survives
        cv.poly(b.footprint, tint, oid, outline=_shade(tint, 0.7))
    img = cv.img.reduce(SS)
    cam = {"x": round(c[0], 2), "y": round(c[1], 2), "half": round(half, 2)}
    return ViewRender(img, ViewInfo("street_map", (size, size), _counts(cv.mask, SS), cam, _square_frame(c, half)))


# ----------------------------------------------------------------------------- UAV


def _homography(src: list[Point], dst: list[Point]) -> np.ndarray:
    """3×3 matrix mapping the four ``src`` points onto ``dst``."""
    a, b = [], []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    h = np.linalg.solve(np.array(a, float), np.array(b, float))
    return np.append(h, 1.0).reshape(3, 3)


def render_uav(scene: Scene, size: int, rng: np.random.Generator, difficulty: str = "medium") -> ViewRender:
    """Oblique drone view: the scene seen from a random heading with perspective foreshortening.

    The image's top edge looks towards ``heading``; the far side covers more ground
    than the near side. Haze and a colour cast grow with difficulty.
    """
    lv = _UAV[difficulty]
    heading = float(rng.uniform(-lv.spread, lv.spread)) % 360.0
    ratio, scale = float(rng.uniform(*lv.ratio)), float(rng.uniform(*lv.scale))
    off = rng.uniform(-6, 6, 2) * (0 if difficulty == "easy" else 1)
    f = np.array([math.sin(math.radians(heading)), math.cos(math.radians(heading))])
    r = np.array([f[1], -f[0]])
    depth, near_w = 0.92 * TILE_HALF * scale, 0.8 * TILE_HALF * scale
    far_w = near_w * ratio
    c = np.asarray(off, float)
    far, near = c + depth * f, c - depth * f
    quad = [far - far_w * r, far + far_w * r, near + near_w * r, near - near_w * r]  # clockwise from far-left
    half = float(max(np.abs(np.array(quad)).max() + 5.0, TILE_HALF))
    src_px = int(round(size * SS * half / TILE_HALF * 1.3))
    cv = _satellite_canvas(scene, rng, src_px, half)
    out = size * SS
    coeffs = _homography([(0, 0), (out, 0), (out, out), (0, out)], cv.uv([tuple(q) for q in quad]))
    data = tuple((coeffs.ravel()[:8] / coeffs[2, 2]).tolist())
    img = cv.img.transform((out, out), Image.Transform.PERSPECTIVE, data, Image.Resampling.BILINEAR)
    mask = cv.mask.transform((out, out), Image.Transform.PERSPECTIVE, data, Image.Resampling.NEAREST)
    img = _atmosphere(_texture(img.reduce(SS), rng, 0.8), rng, lv.haze, lv.cast)
    if difficulty == "hard":
        img = img.filter(ImageFilter.GaussianBlur(0.5))
    frame = [(float(x), float(y)) for x, y in quad][::-1]  # counter-clockwise
    cam = {"heading": round(heading, 2), "ratio": round(ratio, 3), "scale": round(scale, 3)}
    return ViewRender(img, ViewInfo("uav", (size, size), _counts(mask, SS), cam, frame))


def _atmosphere(img: Image.Image, rng: np.random.Generator, haze: float, cast: float) -> Image.Image:
    """Haze that thickens towards the top (far side) and a per-channel colour cast."""
    arr = np.asarray(img, np.float32)
    h = arr.shape[0]
    a = haze * (1.0 - (np.arange(h, dtype=np.float32) + 0.5) / h) ** 1.5
    arr = arr * (1 - a[:, None, None]) + _HORIZON * a[:, None, None]
    gains = 1.0 + rng.normal(0.0, cast, 3).astype(np.float32) if cast else np.ones(3, np.float32)
    return _to_img(arr * gains)


# ----------------------------------------------------------------------------- ground level


_LAST_SURFACE: list[tuple[Scene, tuple[np.ndarray, np.ndarray, float]]] = []


def _surface(scene: Scene) -> tuple[np.ndarray, np.ndarray, float]:
    """Top-down ground texture of the whole world (no buildings, trees or shadows) at 1 px/m.

    Ground-level renderers look it up per pixel; its noise comes from the scene's own
    texture seed, so the panorama and the ground photo of a location share one surface
    (cached for the last scene, by identity).
    """
    if _LAST_SURFACE and _LAST_SURFACE[0][0] is scene:
        return _LAST_SURFACE[0][1]
    surf = _make_surface(scene)
    _LAST_SURFACE[:] = [(scene, surf)]
    return surf


def _make_surface(scene: Scene) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(scene.texture_seed)
    px = int(2 * WORLD_HALF)
    cv = _Canvas(px, WORLD_HALF, base=_ground_base(rng, px))
    _paint_layout(cv, scene, _SAT)
    for b in scene.buildings:
        cv.poly(b.footprint, (96, 96, 98))
    # No grain here: the finished view gets its own at output resolution.
    return np.asarray(cv.img), np.asarray(cv.mask), px / (2 * WORLD_HALF)


def _sky(rng: np.random.Generator, w: int, el: np.ndarray) -> np.ndarray:
    """Sky rows (elevations ``el`` in degrees, one per row): a blue gradient with soft clouds."""
    h = len(el)
    if h == 0:
        return np.zeros((0, w, 3), np.float32)
    t = np.clip(el / 45.0, 0.0, 1.0)[:, None, None]
    sky = _HORIZON * (1 - t) + _SKY_TOP * t
    cloud = np.clip(_noise(rng, h, w, 9) * 1.6 - 0.5, 0.0, 1.0)[..., None] * 0.55
    return sky * (1 - cloud) + 242.0 * cloud


def _backdrop(sky: np.ndarray, ground: tuple[np.ndarray, np.ndarray]) -> tuple[Image.Image, Image.Image]:
    """Stack sky rows over ground rows (the horizon is level) into an image and its class mask."""
    gcol, gcls = ground
    img = _to_img(np.concatenate([sky, gcol], axis=0))
    mask = np.concatenate([np.zeros(sky.shape[:2], np.uint8), gcls], axis=0)
    return img, Image.fromarray(mask)


def _ground_pixels(surf: tuple[np.ndarray, np.ndarray, float], gx: np.ndarray, gy: np.ndarray,
                   dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Colour and class of ground points ``(gx, gy)``, hazed with distance."""
    rgb, cls, s = surf
    n = rgb.shape[0]
    i = np.floor((WORLD_HALF - gy) * s).astype(np.int64)
    j = np.floor((gx + WORLD_HALF) * s).astype(np.int64)
    ok = (i >= 0) & (i < n) & (j >= 0) & (j < n)
    i, j = np.clip(i, 0, n - 1), np.clip(j, 0, n - 1)
    col = np.where(ok[..., None], rgb[i, j].astype(np.float32), np.array([128, 130, 100], np.float32))
    a = (1.0 - np.exp(-dist / 260.0))[..., None]
    return col * (1 - a) + _HORIZON * a, np.where(ok, cls[i, j], 0).astype(np.uint8)


@dataclass
class _Prim:
    """A depth-sorted 2-D primitive: polygon (wall) or ellipse+trunk (tree)."""

    dist: float
    kind: str
    pts: list[Point]
    fill: RGB
    oid: int


def _walls(scene: Scene, cam: np.ndarray) -> list[tuple[float, Building, Point, Point, RGB]]:
    """Camera-facing walls with lit colours, as (distance, building, p0, p1, colour)."""
    out = []
    for b in scene.buildings:
        base = (206, 206, 210) if b.kind == "stadium" else COLOURS[b.colour]
        pts = b.footprint
        for p0, p1 in zip(pts, pts[1:] + pts[:1]):
            ex, ey = p1[0] - p0[0], p1[1] - p0[1]
            n = np.array([ey, -ex]) / (math.hypot(ex, ey) + 1e-9)  # outward normal (CCW polygon)
            mid = np.array([(p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2])
            if float(n @ (cam - mid)) <= 0:
                continue
            light = 0.62 + 0.38 * max(0.0, float(n @ _SUN))
            out.append((float(np.linalg.norm(mid - cam)), b, p0, p1, _shade(base, light)))
    return out


def _haze_colour(c: RGB, dist: float) -> RGB:
    a = 1.0 - math.exp(-dist / 320.0)
    return tuple(int(round(v * (1 - a) + hz * a)) for v, hz in zip(c, _HORIZON))  # type: ignore[return-value]


def _draw_prims(img: Image.Image, mask: Image.Image, prims: list[_Prim], shifts: tuple[float, ...] = (0.0,)) -> None:
    d, m = ImageDraw.Draw(img), ImageDraw.Draw(mask)
    for p in sorted(prims, key=lambda p: -p.dist):
        for sx in shifts:
            pts = [(u + sx, v) for u, v in p.pts]
            if p.kind == "poly":
                d.polygon(pts, fill=p.fill)
                m.polygon(pts, fill=p.oid)
            else:  # tree: pts = [crown box tl, crown box br, trunk top, trunk bottom]
                (x0, y0), (x1, y1), top, bot = pts
                tw = max(1, int(round((x1 - x0) * 0.15)))
                d.line([top, bot], fill=(86, 66, 48), width=tw)
                m.line([top, bot], fill=ID_TREE, width=tw)
                d.ellipse([x0, y0, x1, y1], fill=p.fill)
                m.ellipse([x0, y0, x1, y1], fill=ID_TREE)


def _finish(img: Image.Image, mask: Image.Image, rng: np.random.Generator,
            cast: float) -> tuple[Image.Image, dict[int, int]]:
    img = _texture(img.reduce(SS), rng, 0.35)
    if cast:
        img = _to_img(np.asarray(img, np.float32) * (1.0 + rng.normal(0.0, cast, 3).astype(np.float32)))
    return img, _counts(mask, SS)


def render_panorama(scene: Scene, size: int, rng: np.random.Generator, difficulty: str = "medium") -> ViewRender:
    """360° cylindrical panorama (2·size × size/2) from the middle of the junction.

    North is at the centre column, east at three quarters; rows span elevations
    +40° (top) to -20° (bottom), so the horizon sits a third of the way up and a
    building's height in pixels falls with distance.
    """
    w, h = 2 * size * SS, (size // 2) * SS
    yaw = float(rng.uniform(-1, 1)) * _PANO_YAW[difficulty]
    cam = np.array(scene.center) + rng.uniform(-4, 4, 2)
    eye = 2.5
    az = ((np.arange(w) + 0.5) / w - 0.5) * 360.0 + yaw
    el = _EL_TOP - (np.arange(h) + 0.5) / h * (_EL_TOP - _EL_BOTTOM)
    k = int(np.sum(el >= -0.2))  # rows above the horizon (elevation falls row by row)
    azr = np.radians(az)[None, :]
    dist = np.broadcast_to(eye / np.tan(np.radians(-el[k:, None])), (h - k, w))
    gx, gy = cam[0] + dist * np.sin(azr), cam[1] + dist * np.cos(azr)
    img, mask = _backdrop(_sky(rng, w, el[:k]), _ground_pixels(_surface(scene), gx, gy, dist))

    def uv(x: float, y: float, z: float, ref: float | None) -> tuple[float, float, float]:
        a = bearing(x - cam[0], y - cam[1]) - yaw
        a = (a + 180.0) % 360.0 - 180.0 if ref is None else ref + ((a - ref + 180.0) % 360.0 - 180.0)
        e = math.degrees(math.atan2(z - eye, math.hypot(x - cam[0], y - cam[1])))
        return (a / 360.0 + 0.5) * w, (_EL_TOP - e) / (_EL_TOP - _EL_BOTTOM) * h, a

    prims: list[_Prim] = []
    for d, b, p0, p1, col in _walls(scene, cam):
        n = max(2, int(math.dist(p0, p1) / 3.0) + 1)
        tops, bots, ref = [], [], None
        for t in np.linspace(0.0, 1.0, n):
            x, y = p0[0] + (p1[0] - p0[0]) * t, p0[1] + (p1[1] - p0[1]) * t
            u, vt, ref = uv(x, y, b.height, ref)
            bots.append((u, uv(x, y, 0.0, ref)[1]))
            tops.append((u, vt))
        prims.append(_Prim(d, "poly", tops + bots[::-1], _haze_colour(col, d), ID_BUILDING + b.idx))
    for t in scene.trees:
        d = math.hypot(t.x - cam[0], t.y - cam[1])
        if d < 3.0:
            continue
        u, vc, _ = uv(t.x, t.y, t.height - t.radius, None)
        _, vb, _ = uv(t.x, t.y, 0.0, None)
        ang = math.degrees(math.atan2(t.radius, d))
        ru, rv = ang / 360.0 * w, ang / (_EL_TOP - _EL_BOTTOM) * h
        prims.append(_Prim(d, "tree", [(u - ru, vc - rv), (u + ru, vc + rv), (u, vc), (u, vb)],
                           _haze_colour((46, 96, 50), d), ID_TREE))
    _draw_prims(img, mask, prims, shifts=(-float(w), 0.0, float(w)))
    out, counts = _finish(img, mask, rng, 0.03 if difficulty != "easy" else 0.0)
    pose = {"x": round(float(cam[0]), 2), "y": round(float(cam[1]), 2), "yaw_error": round(yaw, 2)}
    return ViewRender(out, ViewInfo("panorama", (2 * size, size // 2), counts, pose))


def _clip_near(poly: list[np.ndarray], near: float) -> list[np.ndarray]:
    """Sutherland–Hodgman clip of a camera-space polygon against the plane z = near."""
    out: list[np.ndarray] = []
    for a, b in zip(poly, poly[1:] + poly[:1]):
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            out.append(a + (near - a[2]) / (b[2] - a[2]) * (b - a))
    return out


def _ground_camera(scene: Scene, rng: np.random.Generator, jitter: float) -> tuple[np.ndarray, float, float]:
    """A street point on one arm, looking back towards the junction: (position, heading, arm bearing)."""
    k = int(rng.integers(len(scene.arms)))
    arm, road = scene.arms[k], scene.roads[k]
    dist = float(rng.uniform(max(30.0, scene.ring_radius + 16.0), 50.0))
    along = np.array([math.sin(math.radians(arm)), math.cos(math.radians(arm))])
    side = np.array([along[1], -along[0]]) * float(rng.uniform(-0.25, 0.25)) * road.width
    pos = np.array(scene.center) + dist * along + side
    heading = (arm + 180.0 + float(rng.uniform(-jitter, jitter))) % 360.0
    return pos, heading, arm


def render_ground(scene: Scene, size: int, rng: np.random.Generator, difficulty: str = "medium") -> ViewRender:
    """Perspective street-level photo (size × 3/4·size) looking along a road towards the junction."""
    jitter, hfov = _GROUND[difficulty]
    w, h = size * SS, (size * 3 // 4) * SS
    pos, heading, arm = _ground_camera(scene, rng, jitter)
    eye, pitch = 1.7, math.radians(float(rng.uniform(2.0, 6.0)))
    hr = math.radians(heading)
    fwd = np.array([math.sin(hr) * math.cos(pitch), math.cos(hr) * math.cos(pitch), math.sin(pitch)])
    right = np.array([math.cos(hr), -math.sin(hr), 0.0])
    up = np.cross(right, fwd)
    fpx = (w / 2) / math.tan(math.radians(hfov) / 2)
    cam3 = np.array([pos[0], pos[1], eye])

    us = (np.arange(w) + 0.5 - w / 2) / fpx
    vs = (np.arange(h) + 0.5 - h / 2) / fpx
    # With no roll a ray's height depends on its row only, so the horizon is level.
    rz = fwd[2] - vs * up[2]
    k = int(np.sum(rz >= -1e-4))
    el = np.degrees(np.arctan2(rz[:k], np.hypot(fwd[0] - vs[:k] * up[0], fwd[1] - vs[:k] * up[1])))
    ray = fwd + us[None, :, None] * right - vs[k:, None, None] * up
    t = eye / -ray[..., 2]
    gx, gy = pos[0] + t * ray[..., 0], pos[1] + t * ray[..., 1]
    dist = t * np.hypot(ray[..., 0], ray[..., 1])
    img, mask = _backdrop(_sky(rng, w, el), _ground_pixels(_surface(scene), gx, gy, dist))

    def to_cam(x: float, y: float, z: float) -> np.ndarray:
        q = np.array([x, y, z]) - cam3
        return np.array([q @ right, q @ up, q @ fwd])

    def proj(c: np.ndarray) -> Point:
        zc = max(float(c[2]), 1e-3)
        u, v = w / 2 + fpx * float(c[0]) / zc, h / 2 - fpx * float(c[1]) / zc
        return (min(max(u, -1e5), 1e5), min(max(v, -1e5), 1e5))  # PIL wants finite, bounded vertices

    prims: list[_Prim] = []
    for d, b, p0, p1, col in _walls(scene, pos):
        quad = [to_cam(*p0, 0.0), to_cam(*p1, 0.0), to_cam(*p1, b.height), to_cam(*p0, b.height)]
        clipped = _clip_near(quad, 0.3)
        if len(clipped) >= 3:
            pts = [proj(c) for c in clipped]
            prims.append(_Prim(d, "poly", pts, _haze_colour(col, d), ID_BUILDING + b.idx))
    for tr in scene.trees:
        c = to_cam(tr.x, tr.y, tr.height - tr.radius)
        if c[2] < 1.0:
            continue
        u, vc = proj(c)
        _, vb = proj(to_cam(tr.x, tr.y, 0.0))
        r = fpx * tr.radius / float(c[2])
        prims.append(_Prim(float(c[2]), "tree", [(u - r, vc - r), (u + r, vc + r), (u, vc), (u, vb)],
                           _haze_colour((46, 96, 50), float(c[2])), ID_TREE))
    _draw_prims(img, mask, prims)
    out_size = (size, size * 3 // 4)
    out, counts = _finish(img, mask, rng, {"easy": 0.0, "medium": 0.03, "hard": 0.05}[difficulty])
    rel = (bearing(scene.center[0] - pos[0], scene.center[1] - pos[1]) - heading + 180.0) % 360.0 - 180.0
    pose = {"x": round(float(pos[0]), 2), "y": round(float(pos[1]), 2), "heading": round(heading, 2),
            "hfov": hfov, "arm": round(arm, 2), "junction_bearing": round(rel, 2)}
    return ViewRender(out, ViewInfo("ground", out_size, counts, pose))


RENDERERS: dict[str, Callable[[Scene, int, np.random.Generator, str], ViewRender]] = {
    "uav": render_uav,
    "street_map": render_street_map,
    "panorama": render_panorama,
    "ground": render_ground,
}
"""Query-view renderers by view name."""


def render_view(view: str, scene: Scene, size: int, rng: np.random.Generator, difficulty: str = "medium") -> ViewRender:
    """Render ``view`` ("satellite" or one of the query views)."""
    if view == "satellite":
        return render_satellite(scene, size, rng)
    # toy = easy geometry; its land-cover wash is applied below
    r = RENDERERS[view](scene, size, rng, "easy" if difficulty == "toy" else difficulty)
    return ViewRender(wash(r.image, scene), r.info)


WASH = 0.7
"""How much of the land-cover colour a ``toy`` view carries (the scene's own pixels keep the rest)."""


def wash(img: Image.Image, scene: Scene) -> Image.Image:
    """Blend the scene's land-cover colour over the whole image (``toy`` level); other scenes unchanged.

    70% colour leaves the layout faintly visible and makes the match a global-colour comparison,
    which a tiny random-init model learns in CPU minutes (see ``benchmark/sft_learns.py``).
    """
    if scene.land_cover is None:
        return img
    arr = np.asarray(img.convert("RGB"), np.float32)
    colour = np.asarray(LAND_COVERS[scene.land_cover], np.float32)
    return _to_img((1.0 - WASH) * arr + WASH * colour)


def relative_side(info: ViewInfo, p: Point) -> str:
    """Where ground point ``p`` appears in a ground photo: "left", "ahead" or "right"."""
    rel = (bearing(p[0] - info.camera["x"], p[1] - info.camera["y"]) - info.camera["heading"] + 180.0) % 360.0 - 180.0
    return "ahead" if abs(rel) < 15.0 else ("left" if rel < 0 else "right")


def panorama_direction(info: ViewInfo, p: Point) -> str:
    """Compass direction of ``p`` as seen from the panorama camera."""
    return compass(p[0] - info.camera["x"], p[1] - info.camera["y"])
