"""MoGe's evaluation viewport: every sample is warped to a fixed per-dataset size before inference.

The rule of MoGe's evaluation loader (``moge/test/dataloader.py`` with ``configs/eval/all_benchmarks.json``):

1. The viewport looks along the ray through the image centre (a rotation ``R`` takes it to +z) and has the
   target aspect ``w / h``; its field of view is the largest one, with the principal point at the viewport
   centre, whose window stays inside the original image (the window's diagonals are cut with the four
   image edges on the viewport's image plane).
2. Image, depth and mask are first resized to about the viewport's pixel size (image: Lanczos; depth and
   mask: mask-aware nearest, each target pixel takes the nearest valid source pixel in its footprint).
3. The homography ``K R^-1 K_t^-1`` maps every viewport pixel into the resized frame: bilinear for the
   image, nearest for the mask and for the *ray distance*, which is turned back into z-depth along the
   viewport's own rays (depth is not invariant to the rotation, distance is). Outside the frame: black,
   invalid.

Intrinsics are normalised (``fx / W``, ``cx / W``, ...); pixel centres are at ``(j + 0.5) / W``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# (width, height) of each dataset's viewport in MoGe's evaluation config.
MOGE_VIEWPORTS: dict[str, tuple[int, int]] = {
    "NYUv2": (640, 480),
    "KITTI": (750, 375),
    "ETH3D": (2048, 1365),
    "iBims-1": (640, 480),
    "GSO": (512, 512),
    "Sintel": (872, 436),
    "DDAD": (1400, 700),
    "DIODE": (1024, 768),
    "Spring": (1920, 1080),
    "HAMMER": (1664, 832),
}


def _rotation_to_z(d: np.ndarray) -> np.ndarray:
    """3x3 rotation taking the direction ``d`` to +z (Rodrigues on the cross product)."""
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(d, z), float(d @ z)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1.0 + c)


def _line_cut(d: np.ndarray, p: np.ndarray, e: np.ndarray) -> np.ndarray | None:
    """Point where the line ``t d`` through the origin meets the line ``p + s e`` (None when parallel)."""
    den = d[0] * e[1] - d[1] * e[0]
    if abs(den) < 1e-12:
        return None
    t = (p[0] * e[1] - p[1] * e[0]) / den
    return t * d


def viewport_intrinsics(Kn: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """``(R, Kt)``: rotation from the source camera to the viewport camera and the viewport's normalised
    intrinsics (principal point 0.5, 0.5) for a ``width x height`` viewport of a source with ``Kn``."""
    aspect = width / height
    raw_h, raw_v = abs(1.0 / Kn[0, 0]), abs(1.0 / Kn[1, 1])
    tgt_h = min(raw_h, raw_v * aspect)
    tgt_v = tgt_h / aspect
    R = _rotation_to_z(np.linalg.inv(Kn) @ np.array([0.5, 0.5, 1.0]))
    corners = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 1]], dtype=np.float64) @ (
        np.linalg.inv(Kn).T @ R.T
    )
    corners = corners[:, :2] / corners[:, 2:3]
    warp_h, warp_v = raw_h, raw_v
    for i in range(4):
        p, e = corners[i - 1], corners[i] - corners[i - 1]
        for d in (np.array([aspect, 1.0]), np.array([aspect, -1.0])):
            x = _line_cut(d, p, e)
            if x is not None:
                warp_h, warp_v = min(warp_h, 2 * abs(x[0])), min(warp_v, 2 * abs(x[1]))
    tgt_h, tgt_v = min(tgt_h, warp_h), min(tgt_v, warp_v)
    Kt = np.array([[1.0 / tgt_h, 0.0, 0.5], [0.0, 1.0 / tgt_v, 0.5], [0.0, 0.0, 1.0]])
    return R, Kt


def masked_nearest_resize(
    values: np.ndarray, mask: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``values`` (H,W) to ``size = (h, w)``: each target pixel takes the nearest valid source pixel
    whose centre lies in its footprint (``H/h x W/w`` source pixels); ``(resized, resized_mask)``."""
    H, W = mask.shape
    h, w = size
    fh, fw = np.float32(H / h), np.float32(W / w)
    nh, nw = math.ceil(H / h), math.ceil(W / w)
    cy = ((np.arange(h, dtype=np.float32) + 0.5) / h * H).astype(np.float32)
    cx = ((np.arange(w, dtype=np.float32) + 0.5) / w * W).astype(np.float32)
    y0 = np.round(cy - fh / 2).astype(np.int64)  # the footprint's first row / column (MoGe's rounding)
    x0 = np.round(cx - fw / 2).astype(np.int64)
    eps = np.finfo(np.float32).eps * max(H, W)
    best = np.full((h, w), np.inf, dtype=np.float32)
    iy = np.zeros((h, w), dtype=np.int64)
    ix = np.zeros((h, w), dtype=np.int64)
    for dy in range(nh):  # row-major over the window: the first of equally near pixels wins
        ys = y0 + dy
        ddy = ys.astype(np.float32) + 0.5 - cy
        ok_y = (ys >= 0) & (ys < H) & (-fh / 2 + eps < ddy) & (ddy <= fh / 2 + eps)
        for dx in range(nw):
            xs = x0 + dx
            ddx = xs.astype(np.float32) + 0.5 - cx
            ok_x = (xs >= 0) & (xs < W) & (-fw / 2 + eps < ddx) & (ddx <= fw / 2 + eps)
            Y, X = np.clip(ys, 0, H - 1)[:, None], np.clip(xs, 0, W - 1)[None, :]
            ok = ok_y[:, None] & ok_x[None, :] & mask[Y, X]
            dist = np.where(ok, ddy[:, None] ** 2 + ddx[None, :] ** 2, np.inf)
            better = dist < best
            best = np.where(better, dist, best)
            iy, ix = np.where(better, Y, iy), np.where(better, X, ix)
    return values[iy, ix], np.isfinite(best)


def _unit_rays(Kn: np.ndarray, h: int, w: int) -> np.ndarray:
    """``h,w,3`` float32 camera rays ``Kn^-1 [u, v, 1]`` at the pixel centres."""
    Ki = np.linalg.inv(Kn).astype(np.float32)
    u = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :, None]
    v = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None, None]
    return u * Ki[:, 0] + v * Ki[:, 1] + Ki[:, 2]


def _bilinear(image: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H,W,C uint8) at float pixel coordinates (centres at integers), zeros outside."""
    H, W = image.shape[:2]
    grid = np.empty((*px.shape, 2), dtype=np.float32)
    grid[..., 0], grid[..., 1] = (2 * px + 1) / W - 1, (2 * py + 1) / H - 1
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float()
    out = F.grid_sample(
        x, torch.from_numpy(grid)[None], mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return out[0].permute(1, 2, 0).numpy()


def warp_to_viewport(
    image: np.ndarray, depth: np.ndarray, mask: np.ndarray, Kn: np.ndarray, width: int, height: int
) -> dict[str, np.ndarray]:
    """Warp one sample to MoGe's ``width x height`` viewport (see the module docstring).

    ``image`` H,W,3 uint8; ``depth`` H,W (any value where ``mask`` is False); ``Kn`` normalised 3x3.
    Returns ``{"image": height,width,3 uint8, "depth": float32 (0 where invalid), "mask": bool,
    "Kn": normalised 3x3}``; MoGe's depth cut (1000x the 1% quantile) is left to the caller."""
    R, Kt = viewport_intrinsics(Kn, width, height)
    H, W = depth.shape
    raw_h, raw_v = abs(1.0 / Kn[0, 0]), abs(1.0 / Kn[1, 1])
    # the frame resized to the viewport's pixel size (1e-6: no 479.99999 -> 479 from rounding)
    rw = int(raw_h / ((1.0 / Kt[0, 0]) / width) + 1e-6)
    rh = int(raw_v / ((1.0 / Kt[1, 1]) / height) + 1e-6)
    img = np.asarray(Image.fromarray(image).resize((rw, rh), Image.Resampling.LANCZOS))
    d, m = masked_nearest_resize(np.where(mask, depth, 1.0).astype(np.float32), mask, (rh, rw))
    distance = d * np.linalg.norm(_unit_rays(Kn, rh, rw), axis=-1)
    tgt_rays = _unit_rays(Kt, height, width)
    src = tgt_rays @ (Kn @ R.T).T.astype(np.float32)  # R^-1 = R^T
    px = src[..., 0] / (src[..., 2] + 1e-12) * rw - 0.5
    py = src[..., 1] / (src[..., 2] + 1e-12) * rh - 0.5
    out_img = np.clip(np.round(_bilinear(img, px, py)), 0, 255).astype(np.uint8)
    nx, ny = np.rint(px).astype(np.int64), np.rint(py).astype(np.int64)
    inside = (nx >= 0) & (nx < rw) & (ny >= 0) & (ny < rh)
    nx, ny = np.clip(nx, 0, rw - 1), np.clip(ny, 0, rh - 1)
    out_mask = inside & m[ny, nx]
    out_depth = np.where(out_mask, distance[ny, nx] / np.linalg.norm(tgt_rays, axis=-1), 0.0)
    return {"image": out_img, "depth": out_depth.astype(np.float32), "mask": out_mask, "Kn": Kt}
