"""VGGT's ``absT_quaR_FoV`` pose encoding <-> OpenCV extrinsics/intrinsics.

Encoding (last dim 9): world-to-camera translation ``t`` (3), rotation quaternion ``x, y, z, w``
(scalar last, 4), vertical and horizontal field of view in radians (2). Extrinsics are OpenCV
world-to-camera ``[R | t]`` (``..., 3, 4``); intrinsics are pixel ``K`` with the principal point at
the image centre ``(W/2, H/2)`` (the centre of the image plane under the pixel-centre convention).
"""

from __future__ import annotations

import torch
from torch import Tensor

from tune3d.geometry.pose import mat_to_quat, quat_to_mat


def encode_pose(extrinsics: Tensor, intrinsics: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """OpenCV world-to-camera ``..., 3, 4`` (or ``4, 4``) and ``K ..., 3, 3`` -> float32 ``..., 9``."""
    H, W = image_hw
    t = extrinsics[..., :3, 3]
    quat = mat_to_quat(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([t, quat, fov_h[..., None], fov_w[..., None]], dim=-1).float()


def decode_pose(encoding: Tensor, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Encoding ``..., 9`` -> (world-to-camera ``[R | t]`` ``..., 3, 4``, intrinsics ``K ..., 3, 3``)."""
    H, W = image_hw
    R = quat_to_mat(encoding[..., 3:7])
    extrinsics = torch.cat([R, encoding[..., :3, None]], dim=-1)
    fy = (H / 2.0) / torch.tan(encoding[..., 7] / 2.0)
    fx = (W / 2.0) / torch.tan(encoding[..., 8] / 2.0)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    K = torch.stack([fx, zero, zero + W / 2, zero, fy, zero + H / 2, zero, zero, one], dim=-1).reshape(
        *encoding.shape[:-1], 3, 3
    )
    return extrinsics, K


def extrinsics_to_c2w(extrinsics: Tensor) -> Tensor:
    """World-to-camera ``[R | t]`` ``..., 3, 4`` -> camera-to-world ``..., 4, 4``."""
    R, t = extrinsics[..., :3, :3], extrinsics[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    top = torch.cat([Rt, -Rt @ t], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], dim=-2)


def c2w_to_extrinsics(c2w: Tensor) -> Tensor:
    """Camera-to-world ``..., 4, 4`` -> world-to-camera ``[R | t]`` ``..., 3, 4``."""
    R, t = c2w[..., :3, :3], c2w[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    return torch.cat([Rt, -Rt @ t], dim=-1)
