"""Export a reconstruction as a binary glTF scene (``.glb``) via trimesh: coloured points plus one
camera frustum (a pyramid of triangles, apex at the camera centre) per view.

glTF's axes are y up / -z forward while ours are OpenCV (y down / z forward); the scene is written in
the reconstruction's world frame unchanged, so viewers may show it upside down relative to glTF's
default "up". Frustum depth is ``frustum_scale`` times the median camera-centre spacing (or the
scene's extent for a single camera).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tune3d.io import atomic_path

FRUSTUM_COLORS = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180]])


def frustum_mesh(c2w: np.ndarray, K: np.ndarray, height: int, width: int, depth: float):
    """Vertices ``5,3`` (apex, then the image corners at ``depth``) and faces ``6,3`` of one frustum."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    rays = np.concatenate([(corners - K[:2, 2]) / np.diag(K)[:2], np.ones((4, 1))], axis=1)
    cam = np.concatenate([np.zeros((1, 3)), rays * depth])
    verts = cam @ c2w[:3, :3].T + c2w[:3, 3]
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1], [1, 2, 3], [1, 3, 4]])
    return verts, faces


def export_glb(
    path: str | os.PathLike,
    points: np.ndarray,
    colors: np.ndarray,
    c2w: np.ndarray,
    K: np.ndarray,
    height: int,
    width: int,
    frustum_scale: float = 0.3,
) -> Path:
    """Write ``points`` ``N,3`` (``colors`` ``N,3`` uint8) and the frusta of ``c2w`` ``S,4,4``/``K``
    ``S,3,3`` to ``path``; returns it."""
    import trimesh

    scene = trimesh.Scene()
    if len(points):
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
        scene.add_geometry(
            trimesh.PointCloud(np.asarray(points, np.float64), colors=rgba), geom_name="points"
        )
    centres = c2w[:, :3, 3]
    if len(centres) > 1:
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        spacing = float(np.median(gaps[gaps > 0])) if (gaps > 0).any() else 1.0
    else:
        spacing = float(np.ptp(points, axis=0).max()) if len(points) else 1.0
    depth = frustum_scale * (spacing if spacing > 0 else 1.0)
    for k in range(len(c2w)):
        verts, faces = frustum_mesh(
            np.asarray(c2w[k], np.float64), np.asarray(K[k], np.float64), height, width, depth
        )
        mesh = trimesh.Trimesh(verts, faces, process=False)
        mesh.visual.face_colors = np.append(FRUSTUM_COLORS[k % len(FRUSTUM_COLORS)], 255)
        scene.add_geometry(mesh, geom_name=f"camera_{k:03d}")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(scene.export(file_type="glb"))
    return path
