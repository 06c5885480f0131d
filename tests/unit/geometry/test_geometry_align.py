"""Tests for tune3d.geometry alignment, pointmap and pose helpers (hand-computed cases + properties)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tune3d.geometry import (
    align_affine_disparity,
    align_depth,
    align_lstsq_scale,
    align_median_scale,
    align_points_scale,
    align_points_scale_shift,
    align_scale_shift,
    apply_sim3,
    depth_edges,
    depth_to_pointmap,
    estimate_focal_from_pointmap,
    is_rigid,
    make_K,
    normalize_pointmap,
    pointmap_to_normals,
    pose_from_pointmaps,
    relative_pose,
    rotation_angle_deg,
    rotation_error_deg,
    transform_points,
    translation_angle_deg,
    umeyama_sim3,
)

D = torch.float64


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=D)


def rot_z(deg: float) -> torch.Tensor:
    a = math.radians(deg)
    return t([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def random_rotation(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=D))
    return q * torch.sign(torch.linalg.det(q))


# ----------------------------------------------------------------------------- depth alignment


def test_median_scale_hand():
    aligned, s = align_median_scale(t([[1.0, 2.0, 3.0]]), t([[2.0, 4.0, 6.0]]))
    assert s.tolist() == [2.0]
    assert aligned.tolist() == [[2.0, 4.0, 6.0]]
    # even count: numpy-style median averages the middle pair: median(gt)=4, median(pred)=2.5
    _, s = align_median_scale(
        t([[1.0, 2.0, 3.0, 4.0, 99.0]]),
        t([[2.0, 3.0, 5.0, 100.0, 7.0]]),
        torch.tensor([[True, True, True, True, False]]),
    )
    assert s.item() == pytest.approx(4.0 / 2.5)


def test_lstsq_scale_hand_and_mask():
    # s = (1*2 + 2*3) / (1 + 4) = 8/5; the masked outlier must not count
    pred, gt = t([[1.0, 2.0, 50.0]]), t([[2.0, 3.0, -7.0]])
    aligned, s = align_lstsq_scale(pred, gt, torch.tensor([[True, True, False]]))
    assert s.item() == pytest.approx(8 / 5)
    assert aligned[0, :2].tolist() == pytest.approx([8 / 5, 16 / 5])


def test_scale_shift_hand():
    # pred (0,1,2), gt (1,2,4): centred cov = 3, var = 2 -> s = 1.5, t = 7/3 - 1.5 = 5/6
    aligned, s, sh = align_scale_shift(t([[0.0, 1.0, 2.0]]), t([[1.0, 2.0, 4.0]]))
    assert s.item() == pytest.approx(1.5)
    assert sh.item() == pytest.approx(5 / 6)
    assert aligned.tolist()[0] == pytest.approx([5 / 6, 7 / 3, 23 / 6])


def test_affine_disparity_hand_with_clamp():
    # gt depth (1, .5, .25) -> disparity (1, 2, 4); pred disparity (1, 2, 3): s = 1.5, t = -2/3.
    # Aligned disparity (5/6, 7/3, 23/6); the first is clamped at 1/max(gt) = 1 -> depth (1, 3/7, 6/23).
    pred_disp, gt = t([[1.0, 2.0, 3.0]]), t([[1.0, 0.5, 0.25]])
    aligned, s, sh = align_affine_disparity(pred_disp, gt, pred_is_disparity=True)
    assert s.item() == pytest.approx(1.5) and sh.item() == pytest.approx(-2 / 3)
    assert aligned.tolist()[0] == pytest.approx([1.0, 3 / 7, 6 / 23])
    # the same prediction given as depth
    aligned2, _, _ = align_affine_disparity(1 / pred_disp, gt)
    assert torch.allclose(aligned, aligned2)


def test_empty_mask_gives_identity_params():
    pred, gt = t([[1.0, 2.0]]), t([[3.0, 4.0]])
    none = torch.zeros(1, 2, dtype=torch.bool)
    for fn in (align_median_scale, align_lstsq_scale):
        out, s = fn(pred, gt, none)
        assert s.item() == 1.0 and torch.equal(out, pred)
    out, s, sh = align_scale_shift(pred, gt, none)
    assert (s.item(), sh.item()) == (1.0, 0.0) and torch.equal(out, pred)


@settings(max_examples=15, deadline=None)
@given(
    scale=st.floats(0.05, 20.0),
    shift=st.floats(-5.0, 5.0),
    seed=st.integers(0, 10_000),
)
def test_depth_alignment_recovers_known_params(scale, shift, seed):
    g = torch.Generator().manual_seed(seed)
    pred = 0.5 + torch.rand(2, 1, 5, 6, generator=g, dtype=D) * 4
    mask = torch.rand(2, 1, 5, 6, generator=g) > 0.3
    mask[:, :, :2, :2] = True
    gt_scaled = pred * scale
    corrupt = torch.where(mask, gt_scaled, torch.full_like(gt_scaled, 1e3))  # garbage outside the mask
    for mode in ("median", "scale"):
        out, params = align_depth(pred, corrupt, mask, mode)
        assert torch.allclose(params["scale"], torch.full((2,), scale, dtype=D), rtol=1e-9)
        assert torch.allclose(out[mask], gt_scaled[mask], rtol=1e-9)
    gt_affine = torch.where(mask, pred * scale + shift, torch.full_like(pred, 1e3))
    out, params = align_depth(pred, gt_affine, mask, "scale_shift")
    assert torch.allclose(params["scale"], torch.full((2,), scale, dtype=D), rtol=1e-8)
    assert torch.allclose(params["shift"], torch.full((2,), shift, dtype=D), atol=1e-8)
    # disparity affine: gt disparity = s * pred_disp + t (kept positive)
    pdisp = 1 / pred
    gdisp = scale * pdisp + abs(shift)
    out, params = align_depth(
        pred, torch.where(mask, 1 / gdisp, torch.zeros_like(gdisp)), mask, "affine_disparity"
    )
    assert torch.allclose(out[mask], (1 / gdisp)[mask], rtol=1e-8)


def test_align_depth_none_and_unknown_mode():
    pred = t([[1.0, 2.0]])
    out, params = align_depth(pred, pred * 3, mode="none")
    assert out is pred and params["scale"].tolist() == [1.0] and params["shift"].tolist() == [0.0]
    with pytest.raises(ValueError, match="unknown depth alignment"):
        align_depth(pred, pred, mode="bogus")


def test_alignment_float32_keeps_dtype():
    pred = torch.rand(1, 8, 8) + 1
    out, s, sh = align_scale_shift(pred, pred * 2 + 1)
    assert out.dtype == torch.float32 and s.dtype == torch.float32
    assert s.item() == pytest.approx(2.0, rel=1e-5) and sh.item() == pytest.approx(1.0, abs=1e-4)


# ----------------------------------------------------------------------------- point / Sim(3) alignment


def test_umeyama_hand():
    src = t([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    R = rot_z(90)
    dst = 2 * src @ R.T + t([1, 2, 3])
    s, R_hat, t_hat = umeyama_sim3(src, dst)
    assert s.item() == pytest.approx(2.0)
    assert torch.allclose(R_hat, R, atol=1e-12)
    assert t_hat.tolist() == pytest.approx([1, 2, 3])
    s1, R1, _ = umeyama_sim3(src, dst, with_scale=False)
    assert s1.item() == 1.0 and torch.allclose(R1, R, atol=1e-12)


def test_umeyama_reflection_gives_proper_rotation():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(20, 3, generator=g, dtype=D)
    dst = src * t([1, 1, -1])  # mirror: no rotation fits exactly
    _, R, _ = umeyama_sim3(src, dst)
    assert torch.linalg.det(R).item() == pytest.approx(1.0)
    assert torch.allclose(R @ R.T, torch.eye(3, dtype=D), atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.1, 10.0))
def test_umeyama_recovers_random_sim3_batched_with_weights(seed, scale):
    g = torch.Generator().manual_seed(seed)
    R = torch.stack([random_rotation(seed), random_rotation(seed + 1)])
    tr = torch.randn(2, 3, generator=g, dtype=D) * 3
    s = torch.tensor([scale, 1 / scale], dtype=D)
    src = torch.randn(2, 30, 3, generator=g, dtype=D)
    dst = apply_sim3(s, R, tr, src)
    w = (torch.rand(2, 30, generator=g) > 0.3).to(D)
    w[:, :4] = 1
    dst = torch.where(w[..., None] > 0, dst, dst + 100)  # outliers carry zero weight
    s_hat, R_hat, t_hat = umeyama_sim3(src, dst, w)
    assert torch.allclose(s_hat, s, rtol=1e-9)
    assert torch.allclose(R_hat, R, atol=1e-9)
    assert torch.allclose(t_hat, tr, atol=1e-8)


def test_points_scale_and_scale_shift():
    g = torch.Generator().manual_seed(4)
    p = torch.randn(2, 3, 4, 3, generator=g, dtype=D)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 0, 0] = False
    gt = 2.5 * p
    gt[0, 0, 0] = 1e4
    out, s = align_points_scale(p, gt, mask)
    assert torch.allclose(s, torch.full((2,), 2.5, dtype=D)) and torch.allclose(out[mask], gt[mask])
    shift = t([[0.1, -2.0, 3.0], [1.0, 1.0, 1.0]])
    gt2 = 0.7 * p + shift[:, None, None]
    out, s, sh = align_points_scale_shift(p, gt2, mask)
    assert torch.allclose(s, torch.full((2,), 0.7, dtype=D)) and torch.allclose(sh, shift)
    assert torch.allclose(out, gt2)
    # hand: p = (1,0,0),(−1,0,0); g = (3,1,0),(−1,1,0): s = 2, t = (1,1,0)
    _, s, sh = align_points_scale_shift(t([[[1, 0, 0], [-1, 0, 0]]]), t([[[3, 1, 0], [-1, 1, 0]]]))
    assert s.item() == pytest.approx(2.0) and sh[0].tolist() == pytest.approx([1, 1, 0])


# ----------------------------------------------------------------------------- pointmap helpers


def test_normalize_pointmap_hand_and_joint():
    pts = t([[[[3, 4, 0], [0, 0, 1]]]])  # (1, 1, 2, 3): distances 5 and 1 -> avg 3
    out, s = normalize_pointmap(pts)
    assert s.tolist() == [3.0] and torch.allclose(out, pts / 3)
    out, s = normalize_pointmap(pts, torch.tensor([[[True, False]]]))
    assert s.tolist() == [5.0]
    # two views jointly (B=1, S=2): view 1 has distance 5, view 2 has distances 1 and 3 -> (5+1+3)/3
    joint = t([[[[[3, 4, 0], [3, 4, 0]]], [[[0, 0, 1], [0, 3, 0]]]]])
    m = torch.tensor([[[[True, False]], [[True, True]]]])
    _, s = normalize_pointmap(joint, m)
    assert s.tolist() == [3.0]
    _, s = normalize_pointmap(joint, m, mode="median_dis")
    assert s.tolist() == [3.0]
    single, s = normalize_pointmap(pts[0])
    assert s.item() == 3.0 and single.shape == (1, 2, 3)
    with pytest.raises(ValueError):
        normalize_pointmap(pts, mode="nope")


def test_normals_of_planes_face_camera():
    H, W = 6, 8
    K = make_K(10.0, 10.0, W / 2, H / 2)
    n, valid = pointmap_to_normals(depth_to_pointmap(torch.full((1, H, W), 2.0, dtype=D), K))
    assert valid.all()
    assert torch.allclose(n, t([0, 0, -1]).expand_as(n), atol=1e-12)
    # tilted plane n·p = -c (normal towards camera): depth along ray r is -c / (n·r)
    normal = torch.nn.functional.normalize(t([0.3, -0.2, -1.0]), dim=0)
    rays = depth_to_pointmap(torch.ones(1, H, W, dtype=D), K)
    depth = -2.0 / (rays @ normal)
    n, valid = pointmap_to_normals(depth_to_pointmap(depth, K))
    assert valid.all() and torch.allclose(n, normal.expand_as(n), atol=1e-10)


def test_normals_mask():
    pts = depth_to_pointmap(torch.full((1, 3, 3), 1.0, dtype=D), make_K(3.0, 3.0, 1.5, 1.5))
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 1, 1] = True  # an isolated valid pixel has no normal
    _, valid = pointmap_to_normals(pts, mask)
    assert not valid.any()
    mask[0, 1, 2] = mask[0, 2, 1] = True  # now it forms one triangle (right, down)
    n, valid = pointmap_to_normals(pts, mask)
    assert valid[0, 1, 1] and torch.allclose(n[0, 1, 1], t([0, 0, -1]))
    assert not valid[0, 0, 0]


def test_depth_edges_hand():
    d = t([[1, 1, 1, 2, 2, 2]])
    e = depth_edges(d[None])[0]
    assert e.tolist() == [[False, False, True, True, False, False]]
    # a 1% step is not an edge at rtol 3%; invalid pixels are ignored
    assert not depth_edges(t([[[1, 1, 1.01, 1.01]]])).any()
    assert not depth_edges(t([[[1, 1, 0, 1]]])).any()


# ----------------------------------------------------------------------------- pose helpers


def test_rotation_angles():
    assert rotation_angle_deg(rot_z(30)).item() == pytest.approx(30)
    assert rotation_angle_deg(rot_z(180)).item() == pytest.approx(180)
    assert rotation_angle_deg(rot_z(1e-4)).item() == pytest.approx(1e-4, rel=1e-6)  # acos would lose this
    R = random_rotation(3)
    assert rotation_error_deg(R @ rot_z(12), R).item() == pytest.approx(12)


def test_translation_angles_hand():
    a, b = (
        t([[1, 0, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0], [2, 0, 0]]),
        t([[0, 1, 0], [-1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]]),
    )
    err = translation_angle_deg(a, b)
    assert err.tolist() == pytest.approx([90, 180, 45, 90, 0])
    err = translation_angle_deg(a, b, sign_invariant=True)
    assert err.tolist() == pytest.approx([90, 0, 45, 90, 0])


def test_relative_pose_hand():
    ci = torch.eye(4, dtype=D)
    cj = torch.eye(4, dtype=D)
    cj[0, 3] = 1.0  # camera j sits 1 m to the right of camera i
    rel = relative_pose(ci, cj)
    assert rel[:3, 3].tolist() == [-1.0, 0.0, 0.0]  # camera i's centre seen from j


def test_pose_from_pointmaps_recovers_c2w():
    g = torch.Generator().manual_seed(7)
    c2w = torch.eye(4, dtype=D).repeat(2, 1, 1)
    c2w[0, :3, :3], c2w[1, :3, :3] = random_rotation(1), random_rotation(2)
    c2w[:, :3, 3] = torch.randn(2, 3, generator=g, dtype=D)
    depth = 1 + torch.rand(2, 4, 5, generator=g, dtype=D)
    K = make_K(5.0, 5.0, 2.5, 2.0)
    cam = depth_to_pointmap(depth, K)
    ref = depth_to_pointmap(depth, K, c2w)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[:, 0] = False
    ref_bad = torch.where(mask[..., None], ref, ref + 10)
    est = pose_from_pointmaps(ref_bad, cam, mask)
    assert is_rigid(est, atol=1e-10) and torch.allclose(est, c2w, atol=1e-10)
    # with a scale mismatch the Sim(3) variant still recovers R and t
    est = pose_from_pointmaps(
        transform_points(c2w, 0.5 * cam.reshape(2, -1, 3)).reshape(ref.shape), cam, with_scale=True
    )
    assert torch.allclose(est[:, :3, :3], c2w[:, :3, :3], atol=1e-10)


def test_estimate_focal():
    H, W = 12, 16
    K = make_K(20.0, 20.0, W / 2, H / 2)
    g = torch.Generator().manual_seed(0)
    pts = depth_to_pointmap(1 + torch.rand(2, H, W, generator=g, dtype=D), K)
    for method in ("lstsq", "weiszfeld"):
        f = estimate_focal_from_pointmap(pts, method=method)
        assert torch.allclose(f, torch.full((2,), 20.0, dtype=D))
    # hand: one pixel at centre (8.5, 6.5) offset (0.5, 0.5) with x/z = y/z = 0.025 -> f = 20
    one = torch.zeros(1, H, W, dtype=torch.bool)
    one[0, 6, 8] = True
    assert estimate_focal_from_pointmap(pts[:1], one, method="lstsq").item() == pytest.approx(20.0)
    # outliers: Weiszfeld (L1) is much less affected than least squares
    bad = pts.clone()
    bad[:, :2, :, :2] *= 3
    e_ls = (estimate_focal_from_pointmap(bad, method="lstsq") - 20).abs().max()
    e_w = (estimate_focal_from_pointmap(bad, method="weiszfeld", n_iter=30) - 20).abs().max()
    assert e_w < 0.25 * e_ls
    assert torch.isnan(estimate_focal_from_pointmap(pts[:1], torch.zeros_like(one))).all()
