"""VGGT pose encoding: extrinsics/intrinsics <-> 9-d encoding, and camera-convention helpers."""

from __future__ import annotations

import math

import torch

from tune3d.geometry import fov_to_focal, invert_rigid
from tune3d.recon.vggt import c2w_to_extrinsics, decode_pose, encode_pose, extrinsics_to_c2w
from tune3d.recon.vggt.pose_encoding import mat_to_quat, quat_to_mat


def _random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    R = quat_to_mat(q)
    # add the hard cases: identity and 180-degree turns about each axis
    special = torch.stack([torch.diag(torch.tensor(d, dtype=torch.float64)) for d in
                           ([1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1])])  # fmt: skip
    return torch.cat([R, special])


def test_quaternion_round_trip():
    R = _random_rotations(64)
    q = mat_to_quat(R)
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(R), dtype=R.dtype), atol=1e-12)
    assert (q[:, 3] >= 0).all()  # scalar part standardised to be non-negative
    assert torch.allclose(quat_to_mat(q), R, atol=1e-10)


def test_quaternion_convention_is_xyzw():
    angle = 0.3
    Rz = torch.tensor(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]],
        dtype=torch.float64,
    )
    expected = torch.tensor([0, 0, math.sin(angle / 2), math.cos(angle / 2)], dtype=torch.float64)
    assert torch.allclose(mat_to_quat(Rz), expected, atol=1e-12)


def test_pose_encoding_round_trip():
    H, W = 294, 518
    n = 68
    R = _random_rotations(n - 4, seed=1)
    t = torch.randn(n, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    w2c = torch.cat([R, t[..., None]], dim=-1).reshape(2, n // 2, 3, 4)
    fx = torch.linspace(200, 900, n, dtype=torch.float64).reshape(2, n // 2)
    fy = fx * 1.05
    K = torch.zeros(2, n // 2, 3, 3, dtype=torch.float64)
    K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = fx, fy, W / 2, H / 2, 1
    enc = encode_pose(w2c, K, (H, W))
    assert enc.shape == (2, n // 2, 9) and enc.dtype == torch.float32
    assert torch.allclose(enc[..., 7], 2 * torch.atan(H / 2 / fy).float())
    w2c_back, K_back = decode_pose(enc.double(), (H, W))
    assert torch.allclose(w2c_back, w2c, atol=1e-5)
    assert torch.allclose(K_back, K, rtol=1e-5)
    # FoV decoding agrees with the shared geometry helper
    assert torch.allclose(K_back[..., 0, 0], fov_to_focal(enc[..., 8].double(), W), rtol=1e-12)


def test_extrinsics_c2w_helpers():
    R = _random_rotations(8, seed=3)
    t = torch.randn(len(R), 3, 1, dtype=torch.float64)
    w2c = torch.cat([R, t], dim=-1)
    c2w = extrinsics_to_c2w(w2c)
    w2c_4 = torch.cat([w2c, torch.tensor([0, 0, 0, 1.0], dtype=torch.float64).expand(len(R), 1, 4)], dim=1)
    assert torch.allclose(c2w, invert_rigid(w2c_4), atol=1e-12)
    assert torch.allclose(c2w_to_extrinsics(c2w), w2c, atol=1e-12)
    # the camera centre maps to the camera origin
    centre = c2w[:, :3, 3:]
    assert torch.allclose(R @ centre + t, torch.zeros_like(t), atol=1e-12)


def test_scalar_first_order_is_the_same_rotation():
    g = torch.Generator().manual_seed(3)
    R = quat_to_mat(torch.randn(6, 4, generator=g, dtype=torch.float64))
    wxyz = mat_to_quat(R, scalar_first=True)
    torch.testing.assert_close(wxyz, mat_to_quat(R)[:, [3, 0, 1, 2]])
    assert (wxyz[:, 0] >= 0).all()
    torch.testing.assert_close(quat_to_mat(wxyz, scalar_first=True), R)
