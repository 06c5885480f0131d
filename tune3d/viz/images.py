"""Small image helpers shared by every stage: PNG output, depth/label colouring, tiles.

Inputs may be ``H,W,3`` uint8 arrays, ``H,W,3`` / ``3,H,W`` float arrays or tensors in [0, 1]; outputs
are ``H,W,3`` uint8 numpy arrays. No matplotlib: the Turbo colormap uses its published polynomial fit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tune3d.io import atomic_path

# Turbo colormap, polynomial approximation by Ruofei Du of Anton Mikhailov's LUT (Google, Apache-2.0):
# channel(x) = c . (1, x, x^2, x^3, x^4, x^5)
_TURBO = np.array(
    [
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ]
)


def to_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Any RGB/gray image (uint8, or float in [0, 1]; HWC or CHW; numpy or torch) -> ``H,W,3`` uint8."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image if image.dtype == torch.uint8 else image.float()).numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[2] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an image HxW, HxWx3 or 3xHxW, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(a)


def save_png(image: np.ndarray | torch.Tensor, path: str | os.PathLike) -> Path:
    """Write an image (see :func:`to_uint8`) as PNG, atomically. Returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return path


def turbo(x: np.ndarray) -> np.ndarray:
    """Turbo colormap of values in [0, 1] (clipped): ``(...)`` -> ``(..., 3)`` float in [0, 1]."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    powers = np.stack([x**k for k in range(6)], axis=-1)
    return np.clip(powers @ _TURBO.T, 0.0, 1.0)


def colorize(
    values: np.ndarray | torch.Tensor,
    vmin: float | None = None,
    vmax: float | None = None,
    valid: np.ndarray | None = None,
    cmap: str = "turbo",
    invalid_color: tuple[int, int, int] = (0, 0, 0),
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """Scalar map ``H,W`` -> ``H,W,3`` uint8. The range defaults to robust percentiles of valid values;
    ``valid`` defaults to finite values. ``cmap``: ``"turbo"`` or ``"gray"``."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    v = np.asarray(values, dtype=np.float64).squeeze()
    if v.ndim != 2:
        raise ValueError(f"expected a scalar map HxW, got shape {np.shape(values)}")
    ok = np.isfinite(v) if valid is None else (np.asarray(valid, dtype=bool).squeeze() & np.isfinite(v))
    if ok.any() and (vmin is None or vmax is None):
        lo, hi = np.percentile(v[ok], percentiles)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    vmin = 0.0 if vmin is None else float(vmin)
    vmax = 1.0 if vmax is None else float(vmax)
    t = (np.where(ok, v, vmin) - vmin) / max(vmax - vmin, 1e-12)
    if cmap == "turbo":
        rgb = turbo(t)
    elif cmap == "gray":
        rgb = np.repeat(np.clip(t, 0, 1)[..., None], 3, axis=-1)
    else:
        raise ValueError(f"unknown colormap {cmap!r}; use 'turbo' or 'gray'")
    out = to_uint8(rgb)
    out[~ok] = invalid_color
    return out


def colorize_depth(
    depth: np.ndarray | torch.Tensor,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "turbo",
    inverse: bool = False,
) -> np.ndarray:
    """Depth ``H,W`` (or ``1,H,W``) in metres, 0 = invalid -> ``H,W,3`` uint8; invalid pixels black.

    ``inverse=True`` colours disparity (1/depth), which spreads near-range detail.
    """
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().float().cpu().numpy()
    d = np.asarray(depth, dtype=np.float64).squeeze()
    valid = np.isfinite(d) & (d > 0)
    v = np.where(valid, 1.0 / np.where(valid, d, 1.0), 0.0) if inverse else d
    if inverse:
        vmin, vmax = (1.0 / vmax if vmax else None), (1.0 / vmin if vmin else None)
    return colorize(v, vmin=vmin, vmax=vmax, valid=valid, cmap=cmap)


def label_palette(n: int = 256) -> np.ndarray:
    """``n,3`` uint8 palette (PASCAL VOC bit-interleaving), distinct colours for nearby ids; 0 is black."""
    ids = np.arange(n)
    pal = np.zeros((n, 3), dtype=np.int64)
    c = ids.copy()
    for shift in range(7, -1, -1):
        for ch in range(3):
            pal[:, ch] |= ((c >> ch) & 1) << shift
        c >>= 3
    return pal.astype(np.uint8)


def colorize_labels(
    labels: np.ndarray | torch.Tensor,
    palette: np.ndarray | None = None,
    ignore_index: int = 255,
    ignore_color: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """int labels ``H,W`` -> ``H,W,3`` uint8; ``ignore_index`` pixels get ``ignore_color``.

    The default palette skips VOC's black id 0 so that class 0 stays visible.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    lab = np.asarray(labels).astype(np.int64).squeeze()
    pal = label_palette(257)[1:] if palette is None else np.asarray(palette, dtype=np.uint8)
    ignore = (lab == ignore_index) | (lab < 0)
    out = pal[np.where(ignore, 0, lab) % len(pal)]
    out[ignore] = ignore_color
    return out


def upsample_nearest(image: np.ndarray, factor_or_size: int | tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour enlarge ``H,W,C`` by an integer factor or to ``(H, W)`` (e.g. feature maps)."""
    a = np.asarray(image)
    if isinstance(factor_or_size, int):
        return np.repeat(np.repeat(a, factor_or_size, axis=0), factor_or_size, axis=1)
    H, W = factor_or_size
    rows = (np.arange(H) * a.shape[0] // H).clip(0, a.shape[0] - 1)
    cols = (np.arange(W) * a.shape[1] // W).clip(0, a.shape[1] - 1)
    return a[rows][:, cols]


def tile_images(
    images: Sequence[np.ndarray | torch.Tensor],
    ncols: int | None = None,
    pad: int = 4,
    background: int = 255,
) -> np.ndarray:
    """Grid of images (row-major, ``ncols`` per row; default one row). Cells take the largest image size;
    smaller images are centred. Returns ``H,W,3`` uint8."""
    if not images:
        raise ValueError("tile_images needs at least one image")
    ims = [to_uint8(im) for im in images]
    ncols = len(ims) if ncols is None else max(1, ncols)
    nrows = -(-len(ims) // ncols)
    ch = max(im.shape[0] for im in ims)
    cw = max(im.shape[1] for im in ims)
    out = np.full((nrows * ch + (nrows + 1) * pad, ncols * cw + (ncols + 1) * pad, 3), background, np.uint8)
    for i, im in enumerate(ims):
        r, c = divmod(i, ncols)
        y = pad + r * (ch + pad) + (ch - im.shape[0]) // 2
        x = pad + c * (cw + pad) + (cw - im.shape[1]) // 2
        out[y : y + im.shape[0], x : x + im.shape[1]] = im
    return out
