"""A small z-buffered point-cloud renderer for previews (no OpenGL needed on headless machines)."""

from __future__ import annotations

import numpy as np


def render_points(
    xyz: np.ndarray,
    rgb: np.ndarray,
    height: int = 480,
    width: int = 640,
    yaw_deg: float = 25.0,
    pitch_deg: float = 15.0,
    radius: int = 1,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Render points ``N,3`` (OpenCV camera frame of the reference view) coloured ``N,3`` uint8 as seen from
    a virtual camera orbiting the cloud's centre by ``yaw``/``pitch``; returns ``H,W,3`` uint8.

    Nearest point wins per pixel; each point covers a ``(2 radius + 1)^2`` square so sparse clouds read.
    """
    img = np.empty((height, width, 3), np.uint8)
    img[:] = background
    if len(xyz) == 0:
        return img
    xyz = np.asarray(xyz, np.float64)
    centre = np.median(xyz, axis=0)
    p = xyz - centre
    y, x = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    p = p @ (Rx @ Ry).T
    extent = np.percentile(np.linalg.norm(p, axis=1), 95) + 1e-9
    p[:, 2] += 2.5 * extent  # camera behind the cloud, looking at its centre
    keep = p[:, 2] > 1e-6
    p, col = p[keep], np.asarray(rgb)[keep]
    f = 0.9 * min(height, width) * 2.5 / 2.0  # the cloud's 95% radius fills ~90% of the short side
    u = np.round(f * p[:, 0] / p[:, 2] + width / 2 - 0.5).astype(np.int64)
    v = np.round(f * p[:, 1] / p[:, 2] + height / 2 - 0.5).astype(np.int64)
    zbuf = np.full((height, width), np.inf)
    order = np.argsort(-p[:, 2])  # far to near: nearer points overwrite
    for du in range(-radius, radius + 1):
        for dv in range(-radius, radius + 1):
            uu, vv = u[order] + du, v[order] + dv
            ok = (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
            idx = order[ok]
            uu, vv = uu[ok], vv[ok]
            z = p[idx, 2]
            closer = z < zbuf[vv, uu]
            # later (nearer) writes to the same pixel win because numpy assigns in order
            zbuf[vv[closer], uu[closer]] = z[closer]
            img[vv[closer], uu[closer]] = col[idx[closer]]
    return img
