"""Tests for tune3d.geometry.cameras: round trips and conventions (OpenCV axes, pixel centres at +0.5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tune3d.geometry import (
    c2w_to_viewmat,
    crop_K,
    depth_to_pointmap,
    focal_to_fov,
    fov_to_focal,
    invert_rigid,
    is_rigid,
    look_at,
    make_K,
    opencv_to_opengl,
    opengl_to_opencv,
    pixel_grid,
    pixel_rays,
    pointmap_to_depth,
    project,
    project_world,
    scale_K,
    transform_points,
    unproject,
    viewmat_to_c2w,
)


def random_c2w(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.linalg.det(q))[:, None, None]  # proper rotations
    T = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    T[:, :3, :3] = q
    T[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return T


def test_make_K_and_pixel_grid_centres():
    K = make_K(500.0, 400.0, 32.0, 24.0)
    assert K.dtype == torch.float64
    assert K.tolist() == [[500.0, 0.0, 32.0], [0.0, 400.0, 24.0], [0.0, 0.0, 1.0]]
    uv = pixel_grid(2, 3)
    assert uv.shape == (2, 3, 2)
    assert uv[0, 0].tolist() == [0.5, 0.5]
    assert uv[1, 2].tolist() == [2.5, 1.5]  # (u, v) order


def test_project_unproject_round_trip_batched():
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    pts[..., 2] = pts[..., 2].abs() + 0.5
    K = torch.stack([make_K(300, 310, 64, 48), make_K(200, 190, 30, 20)])
    uv, z = project(pts, K)
    assert torch.allclose(z, pts[..., 2])
    # hand check of one point: u = fx x/z + cx
    assert math.isclose(
        uv[0, 0, 0].item(), 300 * pts[0, 0, 0].item() / pts[0, 0, 2].item() + 64, rel_tol=1e-12
    )
    back = unproject(uv, z, K)
    assert torch.allclose(back, pts, atol=1e-12)


def test_depth_pointmap_round_trip_and_pixel_centres():
    H, W = 4, 6
    K = make_K(10.0, 12.0, W / 2, H / 2)
    depth = torch.linspace(1, 3, H * W, dtype=torch.float64).reshape(1, H, W)
    pts = depth_to_pointmap(depth, K)
    assert pts.shape == (1, H, W, 3)
    assert torch.equal(pointmap_to_depth(pts), depth)
    # pixel (v=0, u=0) has centre (0.5, 0.5): x = (0.5 - cx) / fx * z
    assert math.isclose(pts[0, 0, 0, 0].item(), (0.5 - 3.0) / 10.0 * depth[0, 0, 0].item(), rel_tol=1e-12)
    uv, _ = project(pts.reshape(1, -1, 3), K)
    assert torch.allclose(uv.reshape(H, W, 2), pixel_grid(H, W, dtype=torch.float64), atol=1e-12)


def test_depth_to_world_pointmap_projects_back():
    H, W = 5, 7
    K = make_K(8.0, 8.0, 3.5, 2.5)
    c2w = random_c2w(2, seed=3)
    depth = 1 + torch.rand(2, H, W, dtype=torch.float64)
    world = depth_to_pointmap(depth, K, c2w)
    assert torch.allclose(
        world, transform_points(c2w, depth_to_pointmap(depth, K).reshape(2, -1, 3)).reshape(world.shape)
    )
    uv, z = project_world(world.reshape(2, -1, 3), K, c2w_to_viewmat(c2w))
    assert torch.allclose(z.reshape(2, H, W), depth, atol=1e-10)
    assert torch.allclose(
        uv.reshape(2, H, W, 2), pixel_grid(H, W, dtype=torch.float64).expand(2, H, W, 2), atol=1e-10
    )


def test_invert_rigid_matches_inverse():
    T = random_c2w(4)
    inv = invert_rigid(T)
    assert torch.allclose(inv, torch.linalg.inv(T), atol=1e-12)
    assert torch.allclose(T @ inv, torch.eye(4, dtype=torch.float64).expand(4, 4, 4), atol=1e-12)
    assert torch.allclose(viewmat_to_c2w(c2w_to_viewmat(T)), T, atol=1e-12)
    assert is_rigid(T)
    scaled = T.clone()
    scaled[:, :3, :3] *= 2
    assert not is_rigid(scaled)
    reflected = T.clone()
    reflected[:, :3, 0] *= -1
    assert not is_rigid(reflected)


def test_opengl_to_opencv():
    # An OpenGL camera at the origin looks down -z with y up. A world point 5 m in front and 1 m above
    # must be in front (z > 0) and above the image centre (y < 0) in OpenCV camera coordinates.
    c2w_gl = torch.eye(4, dtype=torch.float64)
    c2w_cv = opengl_to_opencv(c2w_gl)
    p = transform_points(invert_rigid(c2w_cv), torch.tensor([[0.0, 1.0, -5.0]], dtype=torch.float64))
    assert p[0].tolist() == [0.0, -1.0, 5.0]
    T = random_c2w(3)
    assert torch.allclose(opencv_to_opengl(opengl_to_opencv(T)), T)
    assert is_rigid(opengl_to_opencv(T))
    assert torch.equal(opengl_to_opencv(T)[:, :3, 3], T[:, :3, 3])  # camera centre unchanged


def test_scale_K_exact_under_pixel_centre_convention():
    # Downsampling 2x: low-res pixel (i, j) covers high-res pixels 2i..2i+1, 2j..2j+1. Its centre ray at any
    # depth must be the mean of the four high-res centre rays (exact, not off by half a pixel).
    K = make_K(50.0, 60.0, 16.3, 11.7)
    Klo = scale_K(K, 0.5)
    assert Klo.tolist() == [[25.0, 0.0, 8.15], [0.0, 30.0, 5.85], [0.0, 0.0, 1.0]]
    d_lo = torch.full((1, 6, 8), 2.0, dtype=torch.float64)
    d_hi = torch.full((1, 12, 16), 2.0, dtype=torch.float64)
    lo = depth_to_pointmap(d_lo, Klo)[0]
    hi = depth_to_pointmap(d_hi, K)[0]
    pooled = hi.reshape(6, 2, 8, 2, 3).mean(dim=(1, 3))
    assert torch.allclose(lo, pooled, atol=1e-12)
    # anisotropic: projection scales coordinate-wise
    p = torch.tensor([[0.3, -0.2, 1.5]], dtype=torch.float64)
    uv, _ = project(p, K)
    uv2, _ = project(p, scale_K(K, 2.0, 0.25))
    assert torch.allclose(uv2, uv * torch.tensor([2.0, 0.25], dtype=torch.float64))


def test_crop_K_shifts_pixels():
    K = make_K(50.0, 50.0, 20.0, 10.0)
    p = torch.tensor([[0.1, 0.2, 1.0]], dtype=torch.float64)
    uv, _ = project(p, K)
    uv_c, _ = project(p, crop_K(K, 4, 3))
    assert torch.allclose(uv_c, uv - torch.tensor([4.0, 3.0], dtype=torch.float64))
    assert K[0, 2] == 20.0  # input not modified


@pytest.mark.parametrize(
    "eye,target",
    [
        ([3.0, 1.0, 2.0], [0.0, 0.0, 0.5]),
        ([0.0, -4.0, 0.0], [0.0, 0.0, 0.0]),
        ([0.0, 0.0, 5.0], [0.0, 0.0, 0.0]),
    ],
)
def test_look_at_orthonormal_and_points_at_target(eye, target):
    c2w = look_at(torch.tensor(eye), torch.tensor(target))
    assert is_rigid(c2w, atol=1e-12)
    assert torch.allclose(c2w[:3, 3], torch.tensor(eye, dtype=torch.float64))
    p = transform_points(invert_rigid(c2w), torch.tensor([target], dtype=torch.float64))[0]
    dist = float(np.linalg.norm(np.subtract(eye, target)))
    assert torch.allclose(p, torch.tensor([0.0, 0.0, dist], dtype=torch.float64), atol=1e-12)


def test_look_at_world_up_is_image_up():
    c2w = look_at(torch.tensor([0.0, -4.0, 0.0]), torch.zeros(3))
    above = transform_points(invert_rigid(c2w), torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))[0]
    assert above[1] < 0  # +z world (up) is towards image top (-y in OpenCV)
    assert abs(above[0]) < 1e-12


def test_look_at_degenerate_up_axis():
    c2w = look_at(torch.tensor([5.0, 0.0, 0.0]), torch.zeros(3), up=torch.tensor([1.0, 0.0, 0.0]))
    assert is_rigid(c2w, atol=1e-12)
    assert torch.allclose(c2w[:3, 2], torch.tensor([-1.0, 0.0, 0.0], dtype=torch.float64))


def test_focal_fov_round_trip():
    assert math.isclose(
        float(focal_to_fov(50.0, 100.0)), math.pi / 2, rel_tol=1e-6
    )  # python floats -> float32
    f = fov_to_focal(torch.tensor(0.7, dtype=torch.float64), 640.0)
    assert math.isclose(float(focal_to_fov(f, 640.0)), 0.7, rel_tol=1e-12)


def _read_frame(root, i: int, stride: int):
    from PIL import Image

    d = np.asarray(Image.open(root / f"frame-{i:06d}.depth.png")).astype(np.float64)
    d[(d == 0) | (d == 65535)] = 0
    depth = torch.from_numpy(d[stride // 2 :: stride, stride // 2 :: stride] / 1000.0)
    c2w = torch.from_numpy(np.loadtxt(root / f"frame-{i:06d}.pose.txt"))
    return depth, c2w


def test_seven_scenes_reprojection_consistency(seven_scenes):
    """Real data: frame 0 lifted to the world and projected into frame 5 agrees with frame 5 depth."""
    stride = 8
    K = scale_K(torch.from_numpy(np.loadtxt(seven_scenes / "camera-intrinsics.txt")), 1 / stride)
    d0, c0 = _read_frame(seven_scenes, 0, stride)
    d5, c5 = _read_frame(seven_scenes, 5, stride)
    assert is_rigid(c0) and is_rigid(c5)
    world = depth_to_pointmap(d0, K, c0)[d0 > 0]
    uv, z = project_world(world, K, c2w_to_viewmat(c5))
    H, W = d5.shape
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = (z > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    ref = d5[v[inside], u[inside]]
    ok = ref > 0
    err = (z[inside][ok] - ref[ok]).abs()
    assert ok.sum() > 1000
    assert err.median() < 0.05  # metres; KinectFusion poses + nearest pixel lookup


def test_pixel_rays_at_pixel_centres():
    K = torch.stack([make_K(20.0, 30.0, 8.0, 6.0), make_K(10.0, 10.0, 2.5, 2.0)])
    ut, vt = pixel_rays(4, 5, K)
    assert ut.shape == vt.shape == (2, 4, 5) and ut.dtype == torch.float64
    assert ut[0, 2, 3] == (3.5 - 8.0) / 20.0 and vt[0, 2, 3] == (2.5 - 6.0) / 30.0
    assert ut[1, 0, 2] == 0.0 and vt[1, 1, 0] == -0.05
