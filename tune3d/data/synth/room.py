"""Procedural room layouts: a box room (z up, floor at z = 0) furnished with composite objects.

Tall furniture (shelves, cabinets, lamps, plants, doors) stands against the walls; a table with
chairs (and a rug) occupies the middle; pictures hang on the walls; a pendant lamp hangs from the
ceiling. Cameras move between the wall furniture and the table at eye height, so they never start
inside an object.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from tune3d.data.synth.primitives import Prim

CLASS_NAMES = [
    "floor",
    "wall",
    "ceiling",
    "table",
    "chair",
    "shelf",
    "sofa",
    "bed",
    "cabinet",
    "lamp",
    "plant",
    "decoration",
    "picture",
    "rug",
    "door",
]
CLS = {name: i for i, name in enumerate(CLASS_NAMES)}


@dataclass
class Room:
    size: np.ndarray  # (Lx, Ly, Hz)
    prims: list[Prim] = field(default_factory=list)
    surfaces: dict[str, Prim] = field(default_factory=dict)  # floor / wall / ceiling materials
    lights: list[tuple[np.ndarray, float]] = field(default_factory=list)  # point lights (pos, power)
    sun: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.5, 0.8]))  # direction towards the sun


def _hsv(
    rng: np.random.Generator, h: float, s: tuple[float, float], v: tuple[float, float], dh: float = 0.04
):
    hh = (h + rng.uniform(-dh, dh)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hh, rng.uniform(*s), rng.uniform(*v)), np.float32)


def _wood_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    light = _hsv(rng, 0.08, (0.45, 0.65), (0.55, 0.8), 0.02)
    return light, light * rng.uniform(0.55, 0.7)


def _pair(c: np.ndarray, k: float = 0.75) -> tuple[np.ndarray, np.ndarray]:
    return c, np.clip(c * k, 0, 1)


class _Builder:
    """Collects primitives of one object; positions are in the object's frame (origin on the floor)."""

    def __init__(self, rng: np.random.Generator, origin: np.ndarray, yaw: float) -> None:
        self.rng, self.origin, self.yaw = rng, np.asarray(origin, np.float64), yaw
        c, s = np.cos(yaw), np.sin(yaw)
        self.R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        self.prims: list[Prim] = []

    def _seed(self) -> int:
        return int(self.rng.integers(0, 2**31 - 1))

    def box(self, center, half, label, texture, c1, c2=None):
        c1, c2 = (c1, c2) if c2 is not None else _pair(c1)
        self.prims.append(
            Prim(
                "box",
                self.origin + self.R @ np.asarray(center, float),
                half,
                label,
                texture,
                c1,
                c2,
                self._seed(),
                self.yaw,
            )
        )

    def cyl(self, center, radius, half_h, label, texture, c1, c2=None):
        c1, c2 = (c1, c2) if c2 is not None else _pair(c1)
        self.prims.append(
            Prim(
                "cyl",
                self.origin + self.R @ np.asarray(center, float),
                (radius, radius, half_h),
                label,
                texture,
                c1,
                c2,
                self._seed(),
                self.yaw,
            )
        )

    def sph(self, center, radius, label, texture, c1, c2=None):
        c1, c2 = (c1, c2) if c2 is not None else _pair(c1)
        self.prims.append(
            Prim(
                "sph",
                self.origin + self.R @ np.asarray(center, float),
                (radius,) * 3,
                label,
                texture,
                c1,
                c2,
                self._seed(),
            )
        )


# Object builders: local frame x along the wall, y into the room (the back touches y = 0).


def table(b: _Builder, w: float, d: float, h: float, round_legs: bool) -> None:
    rng = b.rng
    c1, c2 = _wood_colors(rng)
    top = 0.025
    b.box((0, 0, h - top), (w / 2, d / 2, top), CLS["table"], "wood", c1, c2)
    for sx in (-1, 1):
        for sy in (-1, 1):
            p = (sx * (w / 2 - 0.07), sy * (d / 2 - 0.07), (h - 2 * top) / 2)
            if round_legs:
                b.cyl(p, 0.03, (h - 2 * top) / 2, CLS["table"], "wood", c2, c2 * 0.8)
            else:
                b.box(p, (0.03, 0.03, (h - 2 * top) / 2), CLS["table"], "wood", c2, c2 * 0.8)


def chair(b: _Builder, color: np.ndarray, wood: tuple) -> None:
    s, hs = 0.22, 0.45
    b.box((0, 0, hs), (s, s, 0.03), CLS["chair"], "fabric", *_pair(color))
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.box(
                (sx * (s - 0.03), sy * (s - 0.03), (hs - 0.03) / 2),
                (0.02, 0.02, (hs - 0.03) / 2),
                CLS["chair"],
                "wood",
                *wood,
            )
    b.box((0, -s + 0.02, hs + 0.25), (s, 0.02, 0.22), CLS["chair"], "wood", *wood)


def shelf(b: _Builder, w: float, d: float, h: float) -> None:
    rng = b.rng
    c1, c2 = (
        _wood_colors(rng)
        if rng.random() < 0.6
        else _pair(_hsv(rng, rng.random(), (0.0, 0.15), (0.75, 0.95)), 0.9)
    )
    tex = "wood" if c1[0] != c1[2] else "plain"
    t = 0.02
    for sx in (-1, 1):
        b.box((sx * (w / 2 - t), d / 2, h / 2), (t, d / 2, h / 2), CLS["shelf"], tex, c1, c2)
    b.box((0, t / 2, h / 2), (w / 2, t / 2, h / 2), CLS["shelf"], tex, c2, c2 * 0.9)
    n = int(rng.integers(3, 6))
    levels = np.linspace(0.05, h - t, n)
    for z in levels:
        b.box((0, d / 2, z), (w / 2 - 2 * t, d / 2, t), CLS["shelf"], tex, c1, c2)
    for z0, z1 in zip(levels[:-1], levels[1:]):  # books and ornaments
        x = -w / 2 + 3 * t
        while x < w / 2 - 0.1:
            if rng.random() < 0.75:
                bw = rng.uniform(0.02, 0.05)
                bh = min(rng.uniform(0.15, 0.3), (z1 - z0) * 0.85)
                col = _hsv(rng, rng.random(), (0.3, 0.8), (0.3, 0.85), 0.5)
                b.box(
                    (x + bw, d * 0.45, z0 + t + bh / 2),
                    (bw, d * 0.35, bh / 2),
                    CLS["decoration"],
                    "plain",
                    *_pair(col),
                )
                x += 2 * bw + 0.004
            else:
                if rng.random() < 0.5 and z1 - z0 > 0.2:
                    r = min(0.07, (z1 - z0) / 3)
                    col = _hsv(rng, rng.random(), (0.4, 0.9), (0.5, 0.95), 0.5)
                    b.sph((x + r + 0.01, d / 2, z0 + t + r), r, CLS["decoration"], "plain", *_pair(col))
                    x += 2 * r + 0.03
                else:
                    x += rng.uniform(0.05, 0.2)


def cabinet(b: _Builder, w: float, d: float, h: float) -> None:
    rng = b.rng
    col = _hsv(rng, rng.random(), (0.05, 0.35), (0.55, 0.9), 0.5)
    tex = "wood" if rng.random() < 0.5 else "plain"
    c1, c2 = _wood_colors(rng) if tex == "wood" else _pair(col, 0.9)
    b.box((0, d / 2, h / 2 + 0.04), (w / 2, d / 2, h / 2 - 0.04), CLS["cabinet"], tex, c1, c2)
    b.box((0, d / 2, 0.02), (w / 2 - 0.03, d / 2 - 0.03, 0.02), CLS["cabinet"], "plain", *_pair(c2 * 0.5))
    n = max(1, int(round(w / 0.45)))
    for k in range(n):  # doors as slightly raised panels with knobs
        x = -w / 2 + (k + 0.5) * w / n
        b.box(
            (x, d + 0.005, h / 2 + 0.04),
            (w / n / 2 - 0.012, 0.006, h / 2 - 0.07),
            CLS["cabinet"],
            tex,
            c2,
            c1,
        )
        b.sph(
            (x + (w / n / 2 - 0.06) * (1 if k % 2 else -1), d + 0.02, h * 0.6),
            0.015,
            CLS["cabinet"],
            "plain",
            *_pair(np.float32([0.8, 0.75, 0.6])),
        )
    if h < 1.0 and rng.random() < 0.8:  # something on top
        if rng.random() < 0.5:
            r = rng.uniform(0.05, 0.09)
            b.cyl(
                (rng.uniform(-w / 3, w / 3), d / 2, h + 0.12),
                r,
                0.12,
                CLS["decoration"],
                "plain",
                *_pair(_hsv(rng, rng.random(), (0.5, 0.9), (0.5, 0.9), 0.5)),
            )
        else:
            lamp_table(b, (rng.uniform(-w / 3, w / 3), d / 2, h))


def lamp_table(b: _Builder, base: tuple) -> None:
    x, y, z = base
    metal = _pair(np.float32([0.75, 0.7, 0.6]))
    b.cyl((x, y, z + 0.015), 0.07, 0.015, CLS["lamp"], "plain", *metal)
    b.cyl((x, y, z + 0.2), 0.012, 0.18, CLS["lamp"], "plain", *metal)
    shade = _hsv(b.rng, 0.12, (0.1, 0.3), (0.85, 1.0))
    b.cyl((x, y, z + 0.4), 0.13, 0.1, CLS["lamp"], "fabric", *_pair(shade, 0.9))


def floor_lamp(b: _Builder) -> None:
    metal = _pair(np.float32([0.25, 0.25, 0.27]), 0.8)
    b.cyl((0, 0.3, 0.02), 0.16, 0.02, CLS["lamp"], "plain", *metal)
    b.cyl((0, 0.3, 0.8), 0.015, 0.78, CLS["lamp"], "plain", *metal)
    shade = _hsv(b.rng, 0.1, (0.1, 0.4), (0.8, 1.0))
    b.cyl((0, 0.3, 1.62), 0.2, 0.14, CLS["lamp"], "fabric", *_pair(shade, 0.9))


def plant(b: _Builder) -> None:
    rng = b.rng
    pot = _hsv(rng, rng.choice([0.05, 0.6, 0.0]), (0.2, 0.7), (0.4, 0.85), 0.05)
    r, h = rng.uniform(0.14, 0.22), rng.uniform(0.3, 0.45)
    b.cyl((0, 0.35, h / 2), r, h / 2, CLS["plant"], "plain", *_pair(pot))
    green = _hsv(rng, 0.3, (0.5, 0.8), (0.35, 0.6), 0.06)
    dark = green * 0.45
    for _ in range(int(rng.integers(2, 5))):
        rr = rng.uniform(0.18, 0.3)
        b.sph(
            (rng.uniform(-0.1, 0.1), 0.35 + rng.uniform(-0.1, 0.1), h + rr * rng.uniform(0.6, 1.8)),
            rr,
            CLS["plant"],
            "foliage",
            green,
            dark,
        )


def sofa(b: _Builder, w: float) -> None:
    rng = b.rng
    col = _hsv(rng, rng.random(), (0.2, 0.6), (0.3, 0.75), 0.5)
    d = 0.9
    b.box((0, d / 2, 0.22), (w / 2, d / 2, 0.18), CLS["sofa"], "fabric", *_pair(col))
    b.box((0, 0.1, 0.6), (w / 2, 0.1, 0.25), CLS["sofa"], "fabric", *_pair(col))
    for sx in (-1, 1):
        b.box((sx * (w / 2 - 0.1), d / 2, 0.5), (0.1, d / 2, 0.12), CLS["sofa"], "fabric", *_pair(col * 0.95))
    n = max(2, int(round((w - 0.4) / 0.65)))
    cw = (w - 0.4) / n
    for k in range(n):
        b.box(
            (-w / 2 + 0.2 + (k + 0.5) * cw, d / 2 + 0.05, 0.45),
            (cw / 2 - 0.01, d / 2 - 0.2, 0.06),
            CLS["sofa"],
            "fabric",
            *_pair(col * 1.08),
        )
    if rng.random() < 0.7:  # a pillow
        pc = _hsv(rng, rng.random(), (0.4, 0.9), (0.6, 0.95), 0.5)
        b.box((-w / 2 + 0.4, 0.3, 0.62), (0.18, 0.06, 0.16), CLS["decoration"], "stripes", pc, pc * 0.6)
    for sx in (-1, 1):
        for sy in (0.08, d - 0.08):
            b.box(
                (sx * (w / 2 - 0.08), sy, 0.02),
                (0.03, 0.03, 0.02),
                CLS["sofa"],
                "plain",
                *_pair(np.float32([0.2, 0.15, 0.1])),
            )


def bed(b: _Builder, w: float) -> None:
    rng = b.rng
    c1, c2 = _wood_colors(rng)
    L = 2.0
    b.box((0, L / 2, 0.17), (w / 2, L / 2, 0.15), CLS["bed"], "wood", c1, c2)
    sheet = _hsv(rng, rng.random(), (0.05, 0.3), (0.75, 0.95), 0.5)
    b.box(
        (0, L / 2 + 0.02, 0.4), (w / 2 - 0.03, L / 2 - 0.05, 0.1), CLS["bed"], "fabric", *_pair(sheet, 0.85)
    )
    blanket = _hsv(rng, rng.random(), (0.3, 0.7), (0.4, 0.8), 0.5)
    b.box(
        (0, L * 0.65, 0.45),
        (w / 2 + 0.01, L * 0.35, 0.07),
        CLS["bed"],
        "stripes" if rng.random() < 0.5 else "fabric",
        blanket,
        blanket * 0.7,
    )
    b.box((0, 0.04, 0.55), (w / 2, 0.04, 0.45), CLS["bed"], "wood", c1, c2)
    for sx in (-1, 1) if w > 1.2 else (0,):
        px = sx * w / 4
        b.box(
            (px, 0.3, 0.56),
            (min(0.3, w / 4 - 0.03) if w > 1.2 else 0.3, 0.16, 0.07),
            CLS["bed"],
            "fabric",
            *_pair(sheet * 1.05, 0.9),
        )


def door(b: _Builder) -> None:
    c1, c2 = _wood_colors(b.rng)
    b.box((0, 0.02, 1.03), (0.46, 0.03, 1.03), CLS["door"], "wood", c1 * 1.1, c2)
    b.box(
        (0, 0.01, 1.03), (0.52, 0.02, 1.08), CLS["door"], "plain", *_pair(np.float32([0.9, 0.9, 0.88]), 0.95)
    )
    b.sph((0.36, 0.07, 1.0), 0.03, CLS["door"], "plain", *_pair(np.float32([0.8, 0.7, 0.4])))


def picture(b: _Builder, w: float, h: float, z: float) -> None:
    frame = _hsv(b.rng, b.rng.random(), (0.0, 0.5), (0.1, 0.9), 0.5)
    b.box((0, 0.015, z), (w / 2, 0.015, h / 2), CLS["picture"], "plain", *_pair(frame))
    b.box((0, 0.02, z), (w / 2 - 0.04, 0.015, h / 2 - 0.04), CLS["picture"], "painting", frame, frame)


def _wall_frame(size: np.ndarray, wall: int, s: float, inset: float = 0.0) -> tuple[np.ndarray, float, float]:
    """Floor origin and yaw at position ``s`` along wall ``wall`` (0..3), facing into the room."""
    Lx, Ly, _ = size
    if wall == 0:  # y = 0, facing +y
        return np.array([s, inset, 0.0]), 0.0, Lx
    if wall == 1:  # x = Lx, facing -x
        return np.array([Lx - inset, s, 0.0]), np.pi / 2, Ly
    if wall == 2:  # y = Ly, facing -y
        return np.array([Lx - s, Ly - inset, 0.0]), np.pi, Lx
    return np.array([inset, Ly - s, 0.0]), -np.pi / 2, Ly  # x = 0, facing +x


def make_room(rng: np.random.Generator) -> Room:
    """A furnished room from ``rng`` (all randomness flows from it)."""
    Lx, Ly, Hz = rng.uniform(5.0, 7.5), rng.uniform(4.5, 6.5), rng.uniform(2.6, 3.0)
    size = np.array([Lx, Ly, Hz])
    room = Room(size=size)

    def seed() -> int:
        return int(rng.integers(0, 2**31 - 1))

    zero = np.zeros(3)
    if rng.random() < 0.6:
        f1, f2 = _wood_colors(rng)
        room.surfaces["floor"] = Prim("box", zero, zero, CLS["floor"], "planks", f1, f2, seed())
    else:
        t = _hsv(rng, rng.random(), (0.0, 0.25), (0.55, 0.9), 0.5)
        room.surfaces["floor"] = Prim(
            "box", zero, zero, CLS["floor"], "checker", t, t * rng.uniform(0.6, 0.85), seed()
        )
    wall = _hsv(rng, rng.random(), (0.05, 0.3), (0.7, 0.95), 0.5)
    wall_tex = "stripes" if rng.random() < 0.4 else "plain"
    room.surfaces["wall"] = Prim(
        "box", zero, zero, CLS["wall"], wall_tex, wall, wall * rng.uniform(0.8, 0.92), seed()
    )
    ceil = np.float32([0.93, 0.93, 0.9])
    room.surfaces["ceiling"] = Prim("box", zero, zero, CLS["ceiling"], "plain", ceil, ceil * 0.95, seed())

    # Wall furniture: pack items along each wall, leaving the corners and a door free.
    door_wall = int(rng.integers(0, 4))
    for w in range(4):
        length = _wall_frame(size, w, 0)[2]
        s = rng.uniform(0.15, 0.5)
        door_at = rng.uniform(0.8, length - 1.6) if w == door_wall else None
        while s < length - 0.4:
            if door_at is not None and s + 1.0 > door_at:
                o, yaw, _ = _wall_frame(size, w, door_at + 0.55)
                b = _Builder(rng, o, yaw)
                door(b)
                room.prims += b.prims
                s, door_at = door_at + 1.3, None
                continue
            kind = rng.choice(
                ["shelf", "cabinet", "sideboard", "sofa", "bed", "plant", "floor_lamp", "gap"],
                p=[0.18, 0.13, 0.15, 0.12, 0.08, 0.13, 0.09, 0.12],
            )
            width = {
                "shelf": rng.uniform(0.7, 1.2),
                "cabinet": rng.uniform(0.6, 1.0),
                "sideboard": rng.uniform(1.0, 1.8),
                "sofa": rng.uniform(1.6, 2.3),
                "bed": rng.choice([1.0, 1.4, 1.6]),
                "plant": 0.6,
                "floor_lamp": 0.5,
                "gap": rng.uniform(0.3, 0.8),
            }[kind]
            if s + width > length - 0.1 or (door_at is not None and s + width > door_at - 0.1):
                if door_at is None:
                    break
                s = door_at - 1.0 + 0.001  # fill up to the door
                continue
            o, yaw, _ = _wall_frame(size, w, s + width / 2)
            b = _Builder(rng, o, yaw)
            if kind == "shelf":
                shelf(b, width, rng.uniform(0.3, 0.4), rng.uniform(1.5, 2.1))
            elif kind == "cabinet":
                cabinet(b, width, rng.uniform(0.4, 0.55), rng.uniform(1.4, 1.9))
            elif kind == "sideboard":
                cabinet(b, width, rng.uniform(0.4, 0.5), rng.uniform(0.6, 0.9))
            elif kind == "sofa":
                sofa(b, width)
            elif kind == "bed":
                bed(b, width)
            elif kind == "plant":
                plant(b)
            elif kind == "floor_lamp":
                floor_lamp(b)
            room.prims += b.prims
            if kind in ("sofa", "bed", "sideboard", "gap") and rng.random() < 0.8 and width > 0.5:
                pw = min(width * 0.6, rng.uniform(0.5, 1.1))
                ph = rng.uniform(0.4, 0.8)
                o, yaw, _ = _wall_frame(size, w, s + width / 2)
                b = _Builder(rng, o, yaw)
                picture(b, pw, ph, rng.uniform(1.45, 1.75))
                room.prims += b.prims
            s += width + rng.uniform(0.05, 0.3)

    # Centre: rug, table and chairs (kept out of a 1.3 m band along the walls where cameras move).
    cx, cy = Lx / 2 + rng.uniform(-0.3, 0.3), Ly / 2 + rng.uniform(-0.3, 0.3)
    b = _Builder(rng, np.array([cx, cy, 0.0]), float(rng.choice([0.0, np.pi / 2])) + rng.uniform(-0.15, 0.15))
    rug = _hsv(rng, rng.random(), (0.3, 0.7), (0.35, 0.75), 0.5)
    b.box(
        (0, 0, 0.006),
        (rng.uniform(1.1, 1.5), rng.uniform(0.8, 1.1), 0.006),
        CLS["rug"],
        rng.choice(["stripes", "checker", "fabric"]),
        rug,
        rug * 0.55,
    )
    tw, td = rng.uniform(1.1, 1.6), rng.uniform(0.7, 0.9)
    table(b, tw, td, rng.uniform(0.72, 0.78), bool(rng.random() < 0.4))
    chair_col = _hsv(rng, rng.random(), (0.2, 0.6), (0.3, 0.8), 0.5)
    chair_wood = _wood_colors(rng)
    room.prims += b.prims
    for k, (dx, dy, yaw) in enumerate([(0, -1, 0.0), (0, 1, np.pi), (-1, 0, -np.pi / 2), (1, 0, np.pi / 2)]):
        if k >= 2 and rng.random() < 0.5:
            continue
        for off in [-tw / 4, tw / 4] if (dx == 0 and tw > 1.3) else [0.0]:
            local = np.array([dx * (tw / 2 + 0.15) + (off if dx == 0 else 0), dy * (td / 2 + 0.15), 0.0])
            o = b.origin + b.R @ local
            cb = _Builder(rng, o, b.yaw + yaw + rng.uniform(-0.2, 0.2))
            chair(cb, chair_col, chair_wood)
            room.prims += cb.prims
    tb = _Builder(rng, np.array([cx, cy, 0.0]), b.yaw)
    h_top = b.prims[1].center[2] + b.prims[1].size[2]
    for _ in range(int(rng.integers(1, 4))):
        p = (rng.uniform(-tw / 3, tw / 3), rng.uniform(-td / 4, td / 4))
        col = _hsv(rng, rng.random(), (0.4, 0.9), (0.5, 0.95), 0.5)
        if rng.random() < 0.5:
            r = rng.uniform(0.05, 0.1)
            tb.sph((*p, h_top + r), r, CLS["decoration"], "plain", *_pair(col))
        else:
            r, hh = rng.uniform(0.04, 0.08), rng.uniform(0.06, 0.15)
            tb.cyl((*p, h_top + hh), r, hh, CLS["decoration"], "plain", *_pair(col))
    room.prims += tb.prims

    # Pendant lamp above the table; it is also the main light.
    lb = _Builder(rng, np.array([cx, cy, 0.0]), 0.0)
    shade = _hsv(rng, rng.random(), (0.0, 0.4), (0.7, 1.0), 0.5)
    drop = rng.uniform(0.6, 0.8)
    lb.cyl((0, 0, Hz - drop / 2), 0.008, drop / 2, CLS["lamp"], "plain", *_pair(np.float32([0.1, 0.1, 0.1])))
    lb.cyl((0, 0, Hz - drop - 0.1), rng.uniform(0.18, 0.28), 0.1, CLS["lamp"], "plain", *_pair(shade))
    room.prims += lb.prims
    room.lights = [
        (np.array([cx, cy, Hz - drop - 0.3]), 1.4),
        (np.array([Lx * rng.uniform(0.2, 0.8), Ly * 0.25, Hz - 0.1]), 1.0),
    ]
    sun = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.6, 1.2)])
    room.sun = sun / np.linalg.norm(sun)
    return room
