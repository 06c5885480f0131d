"""Export a reconstruction as a COLMAP sparse model next to its images.

Layout (what COLMAP, nerfstudio's ``colmap`` loader and gsplat's trainer look for)::

    OUT/colmap/images/<name>.png          the model-input images (the resolution K refers to)
    OUT/colmap/sparse/0/cameras.{bin,txt}  one PINHOLE camera per view
    OUT/colmap/sparse/0/images.{bin,txt}   world-to-camera qvec/tvec per view, images by name
    OUT/colmap/sparse/0/points3D.{bin,txt} the confident points with colours (no 2D tracks)

COLMAP's camera axes are OpenCV and its pixel centres sit at ``+0.5`` like tune3d's, so ``c2w`` and ``K``
are written as they are in ``cameras.json``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tune3d.data.readers.colmap import ColmapCamera, ColmapImage, rotmat_to_qvec, write_colmap_model
from tune3d.viz.images import save_png


def colmap_model(
    c2w: np.ndarray, K: np.ndarray, names: list[str], height: int, width: int
) -> tuple[dict[int, ColmapCamera], dict[int, ColmapImage]]:
    """COLMAP cameras/images for ``S`` views: ``c2w`` ``S,4,4`` (OpenCV), ``K`` ``S,3,3`` pixels."""
    cams, imgs = {}, {}
    for k, name in enumerate(names):
        Kk = np.asarray(K[k], dtype=np.float64)
        params = np.array([Kk[0, 0], Kk[1, 1], Kk[0, 2], Kk[1, 2]])
        cams[k + 1] = ColmapCamera(k + 1, "PINHOLE", int(width), int(height), params)
        w2c = np.linalg.inv(np.asarray(c2w[k], dtype=np.float64))
        imgs[k + 1] = ColmapImage(k + 1, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3].copy(), k + 1, name)
    return cams, imgs


def export_colmap(
    folder: str | os.PathLike,
    c2w: np.ndarray,
    K: np.ndarray,
    images: np.ndarray,
    names: list[str],
    points: np.ndarray,
    colors: np.ndarray,
    max_points: int = 200_000,
    seed: int = 0,
) -> Path:
    """Write ``folder/images`` and ``folder/sparse/0`` (binary and text); returns ``folder``.

    ``images`` ``S,H,W,3`` uint8 are saved as ``<name>.png``; ``points``/``colors`` ``N,3`` are randomly
    subsampled to ``max_points``.
    """
    folder = Path(folder)
    S, H, W, _ = images.shape
    files = [f"{name}.png" for name in names]
    if len(set(files)) != len(files):  # two inputs with one stem: keep them apart
        files = [f"{k:04d}_{name}.png" for k, name in enumerate(names)]
    for k, fname in enumerate(files):
        save_png(images[k], folder / "images" / fname)
    if len(points) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(points), max_points, replace=False))
        points, colors = points[keep], colors[keep]
    cams, imgs = colmap_model(c2w, K, files, H, W)
    sparse = folder / "sparse" / "0"
    pts = (np.asarray(points, dtype=np.float64), np.asarray(colors, dtype=np.uint8))
    write_colmap_model(sparse, cams, imgs, pts, binary=True)
    write_colmap_model(sparse, cams, imgs, pts, binary=False)
    return folder
