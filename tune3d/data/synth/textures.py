"""Procedural solid textures evaluated at 3D points (so every view sees the same surface colour).

All functions take (N, 3) float32 points in the object's local frame (metres) and return (N, 3)
float32 RGB albedo in [0, 1]. Hand-written because no installed library offers vectorised 3D noise.
"""

from __future__ import annotations

import numpy as np


def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice hash -> float in [0, 1) (xorshift-multiply on uint32, deterministic)."""
    h = (ix.astype(np.uint32) * np.uint32(73856093)) ^ (iy.astype(np.uint32) * np.uint32(19349663))
    h ^= iz.astype(np.uint32) * np.uint32(83492791)
    h ^= np.uint32(seed * 2654435761 % 2**32)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(0x1000000)


def value_noise(p: np.ndarray, seed: int = 0) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] at (N, 3) points (unit lattice spacing)."""
    with np.errstate(over="ignore"):
        fl = np.floor(p)
        f = p - fl
        i = fl.astype(np.int64)
        u = f * f * (3 - 2 * f)
        out = np.zeros(len(p), np.float32)
        for dx in (0, 1):
            wx = u[:, 0] if dx else 1 - u[:, 0]
            for dy in (0, 1):
                wy = u[:, 1] if dy else 1 - u[:, 1]
                for dz in (0, 1):
                    wz = u[:, 2] if dz else 1 - u[:, 2]
                    out += wx * wy * wz * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def fbm(p: np.ndarray, seed: int = 0, octaves: int = 3) -> np.ndarray:
    """Fractal sum of value noise, normalised to about [0, 1]."""
    total, amp, norm = np.zeros(len(p), np.float32), 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(p * (2.0**o), seed + 17 * o)
        norm += amp
        amp *= 0.5
    return total / norm


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * t[:, None]


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def plain(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int) -> np.ndarray:
    """Nearly uniform colour with faint mottling (paint, plaster)."""
    n = fbm(p * 3.0, seed, 2)
    return _mix(c1, c2, 0.25 * n)


def fabric(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int) -> np.ndarray:
    """Woven look: fine cross-hatch over soft noise."""
    weave = 0.5 + 0.25 * (np.sin(p[:, 0] * 160) + np.sin((p[:, 1] + p[:, 2]) * 160))
    n = fbm(p * 6.0, seed, 2)
    return _mix(c1, c2, np.clip(0.6 * n + 0.25 * weave, 0, 1))


def wood(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int) -> np.ndarray:
    """Growth rings around the local x axis, warped by noise (grain runs along x)."""
    warp = fbm(p * np.float32([0.6, 3.0, 3.0]), seed, 2)
    r = np.sqrt((p[:, 1] + 3.1) ** 2 + (p[:, 2] + 1.7) ** 2) * 18.0 + 4.0 * warp
    rings = _smoothstep(0.2, 0.8, np.abs(np.mod(r, 1.0) * 2 - 1))
    fine = value_noise(p * np.float32([2.0, 90.0, 90.0]), seed + 5)
    return _mix(c1, c2, np.clip(0.7 * rings + 0.3 * fine, 0, 1))


def planks(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int, width: float = 0.18) -> np.ndarray:
    """Floorboards along x with per-plank tint, staggered joints and dark seams (p in world, z up)."""
    row = np.floor(p[:, 1] / width)
    offset = (
        _hash(row.astype(np.int64), np.zeros_like(row, np.int64), np.zeros_like(row, np.int64), seed) * 1.7
    )
    board = np.floor((p[:, 0] + offset) / 1.2)
    tint = _hash(row.astype(np.int64), board.astype(np.int64), np.ones_like(row, np.int64), seed + 1)
    q = np.stack([p[:, 0] + offset, p[:, 1] * 4 + row * 3.7, p[:, 2] + board * 1.3], 1).astype(np.float32)
    grain = wood(q, c1, c2, seed)
    grain *= (0.85 + 0.3 * tint)[:, None]
    seam_y = np.abs(np.mod(p[:, 1], width) - width / 2) > width / 2 - 0.004
    seam_x = np.abs(np.mod(p[:, 0] + offset, 1.2) - 0.6) > 0.6 - 0.004
    grain[seam_y | seam_x] *= 0.55
    return grain


def checker(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int, size: float = 0.4) -> np.ndarray:
    """Tiles on the two largest local axes with grout lines and per-tile noise."""
    i = np.floor(p / size).astype(np.int64)
    t = ((i[:, 0] + i[:, 1]) & 1).astype(np.float32)
    col = _mix(c1, c2, t)
    col *= (0.92 + 0.16 * fbm(p * 4.0, seed, 2))[:, None]
    f = np.mod(p[:, :2], size)
    grout = (np.minimum(f, size - f) < 0.006).any(axis=1)
    col[grout] = col[grout] * 0.6 + 0.35
    return col


def stripes(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int, period: float = 0.25) -> np.ndarray:
    """Stripes across the local x + y coordinate (vertical stripes on walls, bands on rugs)."""
    s = np.mod((p[:, 0] + p[:, 1]) / period, 1.0)
    t = _smoothstep(0.45, 0.55, s) * (1 - _smoothstep(0.9, 0.98, s))
    col = _mix(c1, c2, t)
    return col * (0.93 + 0.1 * fbm(p * 5.0, seed, 2))[:, None]


def painting(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int) -> np.ndarray:
    """Abstract art: smooth colour fields from a seeded palette (painting canvases)."""
    rng = np.random.default_rng(seed)
    palette = rng.uniform(0.1, 0.95, (4, 3)).astype(np.float32)
    n1 = fbm(p * 2.5, seed, 3)
    n2 = fbm(p * 4.0 + 7.0, seed + 3, 2)
    col = _mix(palette[0], palette[1], _smoothstep(0.35, 0.65, n1))
    col = _mix(col, palette[2], _smoothstep(0.55, 0.7, n2))
    return _mix(col, palette[3], _smoothstep(0.7, 0.75, n1) * 0.8)


def foliage(p: np.ndarray, c1: np.ndarray, c2: np.ndarray, seed: int) -> np.ndarray:
    """Leafy clumps: high-frequency noise with dark gaps."""
    n = fbm(p * 14.0, seed, 3)
    col = _mix(c1, c2, n)
    return col * (0.55 + 0.6 * _smoothstep(0.3, 0.6, n))[:, None]


TEXTURES = {
    "plain": plain,
    "fabric": fabric,
    "wood": wood,
    "planks": planks,
    "checker": checker,
    "stripes": stripes,
    "painting": painting,
    "foliage": foliage,
}
