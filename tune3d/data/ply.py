"""Coloured point clouds as binary PLY (x, y, z float32 + red, green, blue uint8) via plyfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from tune3d.errors import Tune3DError
from tune3d.io import atomic_path


def write_points_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write (N, 3) points (and (N, 3) uint8 colours) atomically as binary little-endian PLY."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(points), dtype=fields)
    data["x"], data["y"], data["z"] = points.T
    if colors is not None:
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        data["red"], data["green"], data["blue"] = colors.T
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(data, "vertex")], text=False).write(str(tmp))


def read_points_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the ``vertex`` element of a PLY: (N, 3) float32 points and (N, 3) uint8 colours or None.

    Works for point clouds and meshes (faces are ignored). Colours stored as float in [0, 1] are scaled.
    """
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found")
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"].data
        pts = np.stack([np.asarray(v[k], dtype=np.float32) for k in ("x", "y", "z")], axis=1)
    except (KeyError, ValueError, OSError, EOFError, IndexError, TypeError) as e:
        raise Tune3DError(f"{path}: unreadable PLY point cloud ({e})") from None
    except Exception as e:  # plyfile raises its own PlyParseError / PlyHeaderParseError
        if type(e).__module__.startswith("plyfile"):
            raise Tune3DError(f"{path}: unreadable PLY point cloud ({e})") from None
        raise
    if not np.isfinite(pts).all():
        raise Tune3DError(f"{path}: point cloud has NaN or inf coordinates")
    names = v.dtype.names or ()
    colors = None
    if all(k in names for k in ("red", "green", "blue")):
        c = np.stack([np.asarray(v[k]) for k in ("red", "green", "blue")], axis=1)
        if np.issubdtype(c.dtype, np.floating):
            c = np.clip(np.round(c * 255), 0, 255)
        colors = c.astype(np.uint8)
    return pts, colors
