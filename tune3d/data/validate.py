"""Load-time validation of cameras, shared by all readers (one clear error per problem)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tune3d.errors import Tune3DError
from tune3d.geometry import is_rigid


def as_matrix(value: Any, shape: tuple[int, int], where: str, what: str) -> np.ndarray:
    """Parse a nested list / array into a float64 matrix of ``shape``; Tune3DError if malformed."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Tune3DError(f"{where}: {what} is not a numeric matrix") from None
    if arr.shape != shape:
        raise Tune3DError(f"{where}: {what} must be {shape[0]}x{shape[1]}, got shape {arr.shape}")
    return arr


def check_pose(c2w: np.ndarray, where: str) -> np.ndarray:
    """Check a 4x4 camera-to-world pose is finite and rigid (orthonormal right-handed R, last row 0001)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape != (4, 4):
        raise Tune3DError(f"{where}: pose must be 4x4, got shape {c2w.shape}")
    if not np.isfinite(c2w).all():
        raise Tune3DError(f"{where}: pose has NaN or inf values")
    if not is_rigid(torch.from_numpy(c2w)):
        det = float(np.linalg.det(c2w[:3, :3]))
        raise Tune3DError(f"{where}: pose is not a rigid transform (rotation det {det:.4g} or bad last row)")
    return c2w


def check_poses(poses: np.ndarray, names: list[str]) -> None:
    """Validate (N, 4, 4) poses at once; on failure report the first bad one by name."""
    if len(poses) and np.isfinite(poses).all() and is_rigid(torch.from_numpy(np.asarray(poses, np.float64))):
        return
    for pose, name in zip(poses, names):
        check_pose(pose, name)


def check_intrinsics(K: np.ndarray, width: int, height: int, where: str) -> np.ndarray:
    """Check a 3x3 pinhole K is finite with positive focal lengths, and the image size is positive."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise Tune3DError(f"{where}: intrinsics must be 3x3, got shape {K.shape}")
    if not np.isfinite(K).all():
        raise Tune3DError(f"{where}: intrinsics have NaN or inf values")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise Tune3DError(f"{where}: focal lengths must be positive (fx={K[0, 0]}, fy={K[1, 1]})")
    if not np.allclose(K[2], [0, 0, 1]) or K[1, 0] != 0:
        raise Tune3DError(f"{where}: intrinsics must have last row [0, 0, 1] and K[1,0] = 0")
    if int(width) <= 0 or int(height) <= 0:
        raise Tune3DError(f"{where}: image size must be positive, got {width}x{height}")
    return K


def positive_int(value: Any, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise Tune3DError(f"{where}: {what} must be a positive integer, got {value!r}")
    return int(value)


def finite_float(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise Tune3DError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def check_scene_files(scene) -> None:
    """Decode every frame's image, depth and labels, and check the point cloud is finite.

    Each load validates what it read (size against the camera, NaN/inf or negative depth, unreadable or
    truncated files), so the first bad file raises :class:`Tune3DError` naming it.
    """
    for frame in scene.frames:
        frame.image()
        frame.depth()
        frame.semantics()
    if scene.points is not None and not np.isfinite(np.asarray(scene.points, dtype=np.float64)).all():
        raise Tune3DError(f"{scene.path or scene.name}: point cloud has NaN or inf coordinates")
