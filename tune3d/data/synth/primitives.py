"""Analytic primitives (yawed boxes, vertical cylinders, spheres) and their ray intersections.

Rays share one origin (the camera centre) and have directions with camera-space z = 1, so the ray
parameter ``t`` of a hit is its z-depth. Hand-written: no installed library ray-casts analytic
primitives on the CPU, and numpy keeps it vectorised over pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-6


@dataclass
class Prim:
    """One primitive. ``size``: box half extents; cylinder (radius, radius, half height); sphere (r, r, r)."""

    kind: str  # "box" | "cyl" | "sph"
    center: np.ndarray
    size: np.ndarray
    label: int
    texture: str
    c1: np.ndarray
    c2: np.ndarray
    seed: int
    yaw: float = 0.0

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, np.float64)
        self.size = np.asarray(self.size, np.float64)
        self.c1 = np.asarray(self.c1, np.float32)
        self.c2 = np.asarray(self.c2, np.float32)
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        self.R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # local -> world

    def to_local(self, p: np.ndarray) -> np.ndarray:
        return (p - self.center) @ self.R

    def corners(self) -> np.ndarray:
        """(8, 3) world corners of the bounding box (for screen-space culling)."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
        return (signs * self.size) @ self.R.T + self.center

    def footprint(self) -> tuple[float, float, float, float]:
        c = self.corners()
        return c[:, 0].min(), c[:, 0].max(), c[:, 1].min(), c[:, 1].max()

    def contains(self, p: np.ndarray, margin: float = 1e-4) -> np.ndarray:
        """Points strictly inside (or within ``margin`` of) the primitive."""
        q = self.to_local(p)
        if self.kind == "box":
            return (np.abs(q) < self.size + margin).all(axis=1)
        if self.kind == "cyl":
            return (q[:, 0] ** 2 + q[:, 1] ** 2 < (self.size[0] + margin) ** 2) & (
                np.abs(q[:, 2]) < self.size[2] + margin
            )
        return (q**2).sum(axis=1) < (self.size[0] + margin) ** 2

    def area(self) -> float:
        a, b, c = self.size
        if self.kind == "box":
            return 8 * (a * b + b * c + a * c)
        if self.kind == "cyl":
            return 2 * np.pi * a * 2 * c + 2 * np.pi * a * a
        return 4 * np.pi * a * a

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Nearest positive hit ``t`` (inf if none) of rays ``o + t d`` (d: (M, 3)); the camera is outside."""
        ol = ((o - self.center) @ self.R).astype(d.dtype)
        dl = d @ self.R.astype(d.dtype)
        size = self.size.astype(d.dtype)
        if self.kind == "box":
            return _box(ol, dl, size)
        if self.kind == "cyl":
            return _cylinder(ol, dl, size[0], size[2])
        return _sphere(ol, dl, size[0])

    def normals_at(self, p: np.ndarray) -> np.ndarray:
        """Outward world normals at surface points ``p`` (N, 3)."""
        q = self.to_local(p)
        n = np.zeros_like(q)
        if self.kind == "box":
            axis = np.argmax(np.abs(q) / self.size, axis=1)
            n[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
        elif self.kind == "cyl":
            r = np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2)
            cap = (self.size[2] - np.abs(q[:, 2])) < (self.size[0] - r)
            n[:, :2] = q[:, :2] / np.maximum(r, 1e-12)[:, None]
            n[cap] = 0
            n[cap, 2] = np.sign(q[cap, 2])
        else:
            n = q / self.size[0]
        return n @ self.R.T

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` area-uniform surface points and outward normals, world frame."""
        a, b, c = self.size
        if self.kind == "box":
            areas = np.array([b * c, b * c, a * c, a * c, a * b, a * b])
            face = rng.choice(6, n, p=areas / areas.sum())
            q = rng.uniform(-1, 1, (n, 3)) * self.size
            axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
            q[np.arange(n), axis] = sign * self.size[axis]
            nl = np.zeros((n, 3))
            nl[np.arange(n), axis] = sign
        elif self.kind == "cyl":
            side, cap = 2 * np.pi * a * 2 * c, np.pi * a * a
            part = rng.choice(3, n, p=np.array([side, cap, cap]) / (side + 2 * cap))
            phi = rng.uniform(0, 2 * np.pi, n)
            rad = np.where(part == 0, a, a * np.sqrt(rng.uniform(0, 1, n)))
            z = np.where(part == 0, rng.uniform(-c, c, n), np.where(part == 1, -c, c))
            q = np.stack([rad * np.cos(phi), rad * np.sin(phi), z], 1)
            nl = np.where(
                (part == 0)[:, None],
                np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], 1),
                np.stack([np.zeros(n), np.zeros(n), np.where(part == 1, -1.0, 1.0)], 1),
            )
        else:
            v = rng.normal(size=(n, 3))
            nl = v / np.linalg.norm(v, axis=1, keepdims=True)
            q = nl * a
        return q @ self.R.T + self.center, nl @ self.R.T


def _box(o: np.ndarray, d: np.ndarray, h: np.ndarray) -> np.ndarray:
    # Slab test, one axis at a time on contiguous columns (reductions over a length-3 axis are slow).
    t_near = t_far = None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in range(3):
            inv = 1.0 / np.ascontiguousarray(d[:, i])
            t1 = (-h[i] - o[i]) * inv
            t2 = (h[i] - o[i]) * inv
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            t_near = lo if t_near is None else np.maximum(t_near, lo)
            t_far = hi if t_far is None else np.minimum(t_far, hi)
    hit = (t_near <= t_far) & (t_near > EPS)  # NaN (ray parallel to a slab it lies on) compares False
    return np.where(hit, t_near, np.inf)


def _cylinder(o: np.ndarray, d: np.ndarray, r: float, hh: float) -> np.ndarray:
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (o[0] * d[:, 0] + o[1] * d[:, 1])
    c = o[0] ** 2 + o[1] ** 2 - r * r
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
        z_side = o[2] + t_side * d[:, 2]
        side_ok = (disc >= 0) & (a > 1e-12) & (t_side > EPS) & (np.abs(z_side) <= hh)
        # Caps: a ray from outside enters through the cap facing the origin.
        zc = hh if o[2] > 0 else -hh
        t_cap = (zc - o[2]) / d[:, 2]
        x = o[0] + t_cap * d[:, 0]
        y = o[1] + t_cap * d[:, 1]
        cap_ok = (abs(o[2]) > hh) & (t_cap > EPS) & (x * x + y * y <= r * r)
    t_side = np.where(side_ok, t_side, np.inf)
    t_cap = np.where(cap_ok, t_cap, np.inf)
    return np.minimum(t_side, t_cap)


def _sphere(o: np.ndarray, d: np.ndarray, r: float) -> np.ndarray:
    a = (d * d).sum(1)
    b = 2 * (d @ o.astype(d.dtype))
    c = o @ o - r * r
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    return np.where((disc >= 0) & (t > EPS), t, np.inf)


def room_hit(o: np.ndarray, d: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exit hit of rays from inside the room box [0, size]: t, inward normals, axis (2 = floor/ceiling)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(d > 0, size, 0.0)
        t_axis = np.where(np.abs(d) > 1e-12, (bound - o) / d, np.inf)
    axis = np.argmin(t_axis, axis=1)
    t = np.take_along_axis(t_axis, axis[:, None], 1)[:, 0]
    n = np.zeros_like(d)
    n[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return t, n, axis
