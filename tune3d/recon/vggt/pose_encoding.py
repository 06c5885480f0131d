"""VGGT's ``absT_quaR_FoV`` pose encoding <-> OpenCV extrinsics/intrinsics.

Encoding (last dim 9): world-to-camera translation ``t`` (3), rotation quaternion ``x, y, z, w``
(scalar last, 4), vertical and horizontal field of view in radians (2). Extrinsics are OpenCV
world-to-camera ``[R | t]`` (``..., 3, 4``); intrinsics are pixel ``K`` with the principal point at
the image centre ``(W/2, H/2)`` (the centre of the image plane under the pixel-centre convention).
"""

from __future__ import annotations

import torch
from torch import Tensor


def quat_to_mat(quat: Tensor) -> Tensor:
    """Quaternions ``..., 4`` (x, y, z, w; need not be unit) -> rotation matrices ``..., 3, 3``."""
    x, y, z, w = quat.unbind(-1)
    s = 2.0 / (quat * quat).sum(-1)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*quat.shape[:-1], 3, 3)


def mat_to_quat(R: Tensor) -> Tensor:
    """Rotation matrices ``..., 3, 3`` -> unit quaternions ``..., 4`` (x, y, z, w) with ``w >= 0``.

    Uses the best-conditioned of the four closed-form candidates (largest ``|q_i|``), which is
    stable for every rotation, including 180-degree turns.
    """
    m = R.reshape(*R.shape[:-2], 9)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # 4 * q_i^2 for i in (w, x, y, z)
    four_sq = torch.stack(
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
    )
    # sqrt of the positive part with a zero (not infinite) gradient at 0
    pos = four_sq > 0
    q_abs = torch.where(pos, torch.sqrt(torch.where(pos, four_sq, torch.ones_like(four_sq))), 0.0)
    sq = q_abs**2
    # Row i is (w, x, y, z) scaled by 4 * q_i (up to the sign of q_i).
    cands = torch.stack(
        [
            torch.stack([sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, sq[..., 1], m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, sq[..., 2], m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, sq[..., 3]], dim=-1),
        ],
        dim=-2,
    )
    cands = cands / (2.0 * q_abs.clamp(min=0.1))[..., None]
    best = q_abs.argmax(dim=-1)
    wxyz = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:] < 0, -xyzw, xyzw)


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
