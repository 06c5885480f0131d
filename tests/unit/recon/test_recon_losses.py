"""Reconstruction losses against hand-computed cases; one-batch overfitting decreases the family losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tune3d.recon.losses import (
    camera_loss,
    conf_regression,
    cut3r_pose_loss,
    gradient_loss_multiscale,
    info_nce,
    mast3r_matching_loss,
    normal_loss_multiscale,
    normalize_vggt_gt,
    pointmaps_in_first_frame,
    quantile_filter,
    regr3d_conf_loss,
    sample_correspondences,
    vggt_regression_loss,
)


def _two_points(a, b):
    """A 1x2 pointmap ``B=1, S=1, H=1, W=2``."""
    return torch.tensor([[[[a, b]]]], dtype=torch.float32)


def test_regr3d_avg_dis_and_conf_term_by_hand():
    gt = _two_points([1.0, 0, 0], [0, 3.0, 0])  # mean distance 2 -> (0.5,0,0), (0,1.5,0)
    pred = _two_points([1.0, 0, 0], [0, 1.0, 0])  # mean distance 1 -> itself
    conf = torch.tensor([[[[1.0, 2.0]]]])
    valid = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    out = regr3d_conf_loss(pred, conf, gt, valid, alpha=0.2)
    # errors: |(1,0,0)-(0.5,0,0)| = 0.5 and |(0,1,0)-(0,1.5,0)| = 0.5
    expected = (0.5 * 1 - 0.2 * math.log(1.0) + 0.5 * 2 - 0.2 * math.log(2.0)) / 2
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["regr"].item() == pytest.approx(0.5, rel=1e-6)


def test_regr3d_scale_invariant_joint_normalisation_and_views_summed():
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 2, 3, 4, 3, generator=g)
    conf = torch.full((2, 2, 3, 4), math.e)
    valid = torch.ones(2, 2, 3, 4, dtype=torch.bool)
    out = regr3d_conf_loss(gt * 3.7, conf, gt, valid)
    # perfect up to scale: only -alpha*log(c) = -0.2 per view, summed over 2 views
    assert out["loss"].item() == pytest.approx(-0.4, abs=1e-5)
    # scaling only one view breaks the joint normalisation
    bad = gt.clone()
    bad[:, 1] *= 2
    assert regr3d_conf_loss(bad, conf, gt, valid)["regr"].item() > 0.05


def test_regr3d_metric_uses_gt_scale_and_ignores_invalid():
    gt = _two_points([1.0, 0, 0], [0, 3.0, 0])
    conf = torch.ones(1, 1, 1, 2)
    valid = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    # metric: a prediction that is right up to scale is penalised
    half = regr3d_conf_loss(gt * 0.5, conf, gt, valid, metric=True)["regr"].item()
    # gt scale 2: pred/2 = gt/4 against gt/2 -> errors |gt|/4 = 0.25 and 0.75
    assert half == pytest.approx(0.5, rel=1e-6)
    assert regr3d_conf_loss(gt, conf, gt, valid, metric=True)["regr"].item() == pytest.approx(0.0, abs=1e-7)
    # an invalid pixel with a huge error changes nothing
    pred = gt.clone()
    pred[0, 0, 0, 1] = torch.tensor([1e3, 1e3, 1e3])
    valid[0, 0, 0, 1] = False
    gt2 = gt.clone()
    gt2[0, 0, 0, 1] = float("nan")
    assert regr3d_conf_loss(pred, conf, gt2, valid)["regr"].item() == pytest.approx(0.0, abs=1e-6)


def test_conf_regression_empty_is_zero_with_grad():
    err = torch.ones(3, requires_grad=True)
    out = conf_regression(err, torch.ones(3), torch.zeros(3, dtype=torch.bool))
    out.backward()
    assert out.item() == 0.0


def test_camera_loss_iteration_decay_by_hand():
    gt = torch.zeros(1, 1, 9)
    it0 = torch.zeros(1, 1, 9)
    it0[..., :3] = 1.0  # translation error 1 at the first iteration
    it1 = torch.zeros(1, 1, 9)
    it1[..., 7:] = 2.0  # fov error 2 at the last iteration
    out = camera_loss(torch.stack([it0, it1]), gt, gamma=0.6)
    # (0.6 * T=1 + 1.0 * 0.5 * fov=2) / 2 iterations
    assert out["loss"].item() == pytest.approx((0.6 * 1.0 + 0.5 * 2.0) / 2)


def test_gradient_and_normal_losses_invariances():
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(2, 16, 16, 1, generator=g) + 1
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    assert gradient_loss_multiscale(gt + 0.3, gt, valid).item() == pytest.approx(0.0, abs=1e-6)
    assert gradient_loss_multiscale(gt * 1.5, gt, valid).item() > 1e-3
    pts = torch.randn(2, 16, 16, 3, generator=g)
    assert normal_loss_multiscale(pts * 2.0, pts, valid).item() == pytest.approx(0.0, abs=1e-5)
    assert normal_loss_multiscale(pts + 0.3 * torch.randn_like(pts), pts, valid).item() > 1e-2


def test_quantile_filter_drops_the_top_values_and_passes_small_inputs():
    small = torch.arange(10.0)
    assert torch.equal(quantile_filter(small, 0.5), small)
    vals = torch.arange(2000.0) / 100
    vals[-1] = 1e6  # clamped to 100, then above the quantile
    kept = quantile_filter(vals, 0.98)
    # nearest rank round(0.98 * 1999) + 1 = 1960 -> threshold 19.59, strictly below it are 1959 values
    assert kept.numel() == 1959 and kept.max().item() == pytest.approx(19.58)
    few_left = torch.cat([torch.zeros(1500), torch.ones(600)])  # only 1500 < 1 -> more than 1000: kept
    assert quantile_filter(few_left, 0.5).numel() == 2100


def test_gradient_loss_by_hand():
    pred = torch.tensor([0.0, 1.0, 5.0]).reshape(1, 1, 3, 1)
    gt = torch.zeros(1, 1, 3, 1)
    valid = torch.tensor([[[True, True, False]]])
    # residual zeroed where invalid -> [0, 1, 0]; only the first difference has both pixels valid,
    # |1 - 0| = 1, divided by 2 valid entries; one scale
    assert gradient_loss_multiscale(pred, gt, valid, scales=1).item() == pytest.approx(0.5)
    # with two scales the second sees pixels 0 and 2 only (no valid difference) and the mean halves it
    assert gradient_loss_multiscale(pred, gt, valid, scales=2).item() == pytest.approx(0.25)


def test_normal_loss_of_a_tilted_plane_is_one_minus_cos():
    def planes(h, w, a):
        v, u = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
        gt = torch.stack([u, v, torch.ones_like(u)], -1)[None]  # plane z = 1, normal (0, 0, 1)
        pred = torch.stack([u, v, 1 + a * u], -1)[None]  # normal ~ (-a, 0, 1)
        return pred, gt, torch.ones(1, h, w, dtype=torch.bool)

    a = 0.5
    expected = 1 - 1 / math.sqrt(1 + a * a)
    pred, gt, valid = planes(24, 32, a)
    assert normal_loss_multiscale(pred, gt, valid, scales=3).item() == pytest.approx(expected, rel=1e-5)
    assert normal_loss_multiscale(gt * 3 + 1, gt, valid).item() == pytest.approx(0.0, abs=1e-6)
    # at 8x10 the coarsest scale (2x3 pixels) has fewer than 10 valid normals: it adds 0, still counted
    pred, gt, valid = planes(8, 10, a)
    assert normal_loss_multiscale(pred, gt, valid, scales=3).item() == pytest.approx(
        2 / 3 * expected, rel=1e-5
    )


def test_vggt_regression_loss_is_conf_plus_reg_plus_grad():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(1, 2, 6, 7, 3, generator=g) + 1
    pred = gt + 0.1 * torch.randn(gt.shape, generator=g)
    conf = 1 + torch.rand(1, 2, 6, 7, generator=g)
    valid = torch.rand(1, 2, 6, 7, generator=g) > 0.2
    out = vggt_regression_loss(pred, conf, gt, valid, alpha=0.2, gradient="normal", valid_range=None)
    err = (pred - gt).norm(dim=-1)[valid]
    c = conf[valid]
    assert out["reg"].item() == pytest.approx(err.mean().item(), rel=1e-6)
    assert out["conf"].item() == pytest.approx((err * c - 0.2 * torch.log(c)).mean().item(), rel=1e-6)
    grad = normal_loss_multiscale(pred.flatten(0, 1), gt.flatten(0, 1), valid.flatten(0, 1), scales=3)
    assert out["grad"].item() == pytest.approx(grad.item(), rel=1e-6)
    assert out["loss"].item() == pytest.approx((out["conf"] + out["reg"] + out["grad"]).item(), rel=1e-6)
    with pytest.raises(ValueError, match="unknown gradient loss"):
        vggt_regression_loss(pred, conf, gt, valid, gradient="sobel")


def test_info_nce_by_hand_and_padding():
    eye = torch.eye(2)[None]
    valid = torch.ones(1, 2, dtype=torch.bool)
    # matched descriptors equal, others orthogonal; temperature 1: -2 log(e / (e + 1)) per match
    expected = 2 * math.log1p(math.exp(-1))
    torch.testing.assert_close(info_nce(eye, eye, valid, temperature=1.0), torch.full((2,), expected))
    # swapped: each log-ratio is about -20, clamped at log(1e-8)
    swapped = eye.flip(1)
    torch.testing.assert_close(info_nce(eye, swapped, valid), torch.full((2,), -2 * math.log(1e-8)))
    # a padded entry that would be a perfect impostor changes nothing
    d0 = torch.cat([eye, eye[:, :1]], 1)
    d1 = torch.cat([eye, eye[:, :1]], 1)
    pad = torch.tensor([[True, True, False]])
    torch.testing.assert_close(info_nce(d0, d1, pad), info_nce(eye, eye, valid))


def test_mast3r_matching_loss_gathers_pixels_and_weights_by_confidence():
    g = torch.Generator().manual_seed(0)
    desc = F.normalize(torch.randn(1, 2, 4, 5, 3, generator=g), dim=-1).requires_grad_(True)
    conf = torch.full((1, 2, 4, 5), 2.0)
    xy0 = torch.tensor([[[0, 0], [4, 3], [2, 1]]])
    xy1 = torch.tensor([[[1, 2], [3, 0], [0, 0]]])
    valid = torch.tensor([[True, True, False]])
    out = mast3r_matching_loss(desc, conf, xy0, xy1, valid, alpha=10.0)
    d0 = desc[0, 0, xy0[0, :, 1], xy0[0, :, 0]][None]
    d1 = desc[0, 1, xy1[0, :, 1], xy1[0, :, 0]][None]
    nce = info_nce(d0, d1, valid)
    assert out["loss"].item() == pytest.approx((nce * 2.0 - 10.0 * math.log(2.0)).mean().item(), rel=1e-6)
    out["loss"].backward()
    assert torch.isfinite(desc.grad).all() and desc.grad.abs().sum() > 0
    none = mast3r_matching_loss(desc, conf, xy0, xy1, torch.zeros_like(valid))
    assert none["loss"].item() == 0.0


def test_sampled_correspondences_are_the_same_surface_point():
    from tune3d.data.synth import generate_scene
    from tune3d.geometry.cameras import depth_to_pointmap

    scene = generate_scene(5, num_views=2, height=48, width=64, num_points=0)
    depth = torch.stack([torch.from_numpy(f.depth()) for f in scene])[None]
    K, c2w = torch.from_numpy(scene.intrinsics)[None], torch.from_numpy(scene.c2w)[None]
    xy0, xy1, valid = sample_correspondences(depth, K, c2w, 300, torch.Generator().manual_seed(0))
    assert xy0.shape == (1, 300, 2) and valid.sum() > 50
    world = depth_to_pointmap(depth.double(), K.double(), c2w.double())[0]  # S,H,W,3
    p0 = world[0, xy0[0, valid[0], 1], xy0[0, valid[0], 0]]
    p1 = world[1, xy1[0, valid[0], 1], xy1[0, valid[0], 0]]
    # one pixel apart at most on the surface: small against the depth
    rel = (p0 - p1).norm(dim=-1) / depth[0, 0][xy0[0, valid[0], 1], xy0[0, valid[0], 0]]
    assert rel.median() < 0.05
    _, _, v = sample_correspondences(depth, K, c2w, 100_000)
    assert not v[0].all() and v[0, : int(v.sum())].all()  # padded after the real matches


def test_cut3r_pose_loss_by_hand():
    from tune3d.geometry import mat_to_quat
    from tune3d.geometry.cameras import look_at

    eyes = torch.tensor([[1.0, 0, 0], [1.5, 0.2, 0], [2.0, 0, 0.3]])
    c2w = torch.stack([look_at(e, torch.tensor([0.0, 2, 0])) for e in eyes]).double()[None]  # 1,3,4,4
    rel = torch.linalg.inv(c2w[0, 0]) @ c2w[0]
    q = mat_to_quat(rel[:, :3, :3], scalar_first=True)
    scale = torch.tensor([2.0])
    enc = torch.cat([rel[:, :3, 3] / 2.0 * 3.0, q], -1).float()[None]  # predicted in a 3x larger frame
    out = cut3r_pose_loss(enc, c2w, pred_scale=torch.tensor([3.0]), gt_scale=scale)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-6)  # each side divided by its own factor
    shifted = enc.clone()
    shifted[0, 1, 0] += 0.6  # 0.2 after dividing by 3, on one of three views
    flipped = shifted.clone()
    flipped[0, 2, 3:] = -flipped[0, 2, 3:]  # the same rotation, but not the standardised (w >= 0) sign
    out = cut3r_pose_loss(flipped, c2w, torch.tensor([3.0]), scale)
    assert out["trans"].item() == pytest.approx(0.2 / 3, rel=1e-5)
    assert out["rot"].item() == pytest.approx(2.0 / 3, rel=1e-5)


def test_gt_frames_and_vggt_normalisation():
    from tune3d.geometry.cameras import depth_to_pointmap, look_at

    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 6], [0, 0, 1]], dtype=torch.float64)
    eyes, targets = torch.tensor([[0.0, 0, 0], [0.5, 0, 0]]), torch.tensor([[0.0, 1, 0], [0.0, 2, 0]])
    c2w = torch.stack([look_at(e, t) for e, t in zip(eyes, targets)]).double()[None]
    depth = torch.full((1, 2, 12, 16), 2.0, dtype=torch.float64)
    world = depth_to_pointmap(depth, K.expand(1, 2, 3, 3), c2w)
    first = pointmaps_in_first_frame(world, c2w)
    own0 = depth_to_pointmap(depth[:, 0], K.expand(1, 3, 3))
    torch.testing.assert_close(first[:, 0], own0)
    valid = torch.ones(1, 2, 12, 16, dtype=torch.bool)
    d, p, w2c, scale = normalize_vggt_gt(depth, first, c2w, valid)
    torch.testing.assert_close(w2c[:, 0], torch.eye(4, dtype=torch.float64)[None])
    assert p.norm(dim=-1).mean().item() == pytest.approx(1.0, rel=1e-6)
    torch.testing.assert_close(d * scale.reshape(-1, 1, 1, 1), depth)


@pytest.mark.parametrize("name", ["dust3r_tiny", "mast3r_tiny", "cut3r_tiny", "vggt_tiny"])
def test_family_loss_decreases_when_overfitting_one_batch(name):
    from tune3d.data.synth import generate_scene
    from tune3d.recon import create_model
    from tune3d.recon.losses import recon_loss

    torch.manual_seed(0)
    scene = generate_scene(
        3,
        num_views=2,
        height=28 if name == "vggt_tiny" else 32,
        width=42 if name == "vggt_tiny" else 48,
        num_points=0,
    )
    batch = {
        "images": torch.stack([torch.from_numpy(f.image()).permute(2, 0, 1).float() / 255 for f in scene])[
            None
        ],
        "depth": torch.stack([torch.from_numpy(f.depth()) for f in scene])[None],
        "K": torch.from_numpy(scene.intrinsics)[None],
        "c2w": torch.from_numpy(scene.c2w)[None],
    }
    model = create_model(name, allow_random_init=True).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        logs = recon_loss(model, model(batch["images"]), batch)
        loss = logs["loss"]
        assert ("matching" in logs) == (name == "mast3r_tiny")  # MASt3R also trains its descriptors
        assert ("pose_loss" in logs) == ("rgb" in logs) == (name == "cut3r_tiny")  # CUT3R: pose and RGB heads
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
