"""Fin3R targets: teacher outputs normalised into the pointmap target (z-shift removal, avg_dis)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from tune3d.fin3r.losses import avg_dis_normalize
from tune3d.fin3r.targets import normalize_teacher_target
from tune3d.geometry import depth_to_pointmap, make_K, recover_z_shift


def _scene(H: int = 24, W: int = 32) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    v, u = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    depth = (2.0 + u + 0.5 * torch.sin(3 * v) + 0.05 * torch.rand(H, W, generator=g)).unsqueeze(0)
    K = make_K(30.0, 30.0, W / 2, H / 2, dtype=torch.float32)
    return depth, K, depth_to_pointmap(depth, K.unsqueeze(0))


def test_normalize_metric_depth_and_disparity():
    depth, K, pts = _scene()
    mask = torch.ones_like(depth, dtype=torch.bool)
    ref, _ = avg_dis_normalize(pts, mask)
    out, m = normalize_teacher_target(depth * 3.0, mask, "metric", K)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    out_d, m_d = normalize_teacher_target(0.7 / depth, mask, "affine_invariant", K, is_disparity=True)
    assert m_d.all()
    torch.testing.assert_close(out_d, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="needs intrinsics"):
        normalize_teacher_target(depth, mask, "metric", None)


@pytest.mark.parametrize("with_K", [True, False])
def test_affine_pointmap_z_shift_removed(with_K):
    depth, K, pts = _scene()
    mask = torch.ones_like(depth, dtype=torch.bool)
    affine = 2.5 * pts + torch.tensor([0.0, 0.0, -1.3])
    shift = recover_z_shift(affine, mask, K.unsqueeze(0) if with_K else None)
    torch.testing.assert_close(shift, torch.tensor([2.5 * 0 + 1.3]), atol=1e-3, rtol=0)
    out, m = normalize_teacher_target(affine, mask, "affine_invariant", K if with_K else None)
    ref, _ = avg_dis_normalize(pts, mask)
    assert m.all()
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    # scale-invariant points are only normalised, never shifted
    si, _ = normalize_teacher_target(affine, mask, "scale_invariant", K)
    assert not torch.allclose(si, ref, atol=1e-2)


def test_per_view_prediction_points_or_depth():
    from tune3d.errors import Tune3DError
    from tune3d.fin3r.targets import per_view_prediction
    from tune3d.recon.interface import ReconOutput

    class Student:
        per_view_head = "pts3d_self"

    g = torch.Generator().manual_seed(0)
    pts, conf = torch.rand(1, 2, 4, 5, 3, generator=g), 1 + torch.rand(1, 2, 4, 5, generator=g)
    out = ReconOutput(pts3d=pts, pts3d_conf=conf, pts3d_self=pts, pts3d_self_conf=conf)
    p, c, is_points = per_view_prediction(Student(), out)
    assert is_points and p is pts and c is conf
    z, c, is_points = per_view_prediction(Student(), out, points=False)
    assert not is_points and torch.equal(z, pts[..., 2]) and c is conf
    Student.per_view_head = "depth"
    with pytest.raises(Tune3DError, match="'depth' produced no output"):
        per_view_prediction(Student(), out)


@pytest.mark.parametrize("name", ["dust3r_tiny", "vggt_tiny"])
def test_replay_term_is_the_model_familys_released_criterion(name):
    """One definition of the replay loss: Fin3R's replay term is recon.losses.recon_loss itself, which for
    DUSt3R is ConfLoss(Regr3D) per view, summed (not one mean over all views)."""
    from tune3d.data.synth import generate_scene
    from tune3d.fin3r.data import ReplayTuples
    from tune3d.fin3r.targets import replay_loss
    from tune3d.recon import create_model
    from tune3d.recon.losses import ground_truth, recon_loss, regr3d_conf_loss

    torch.manual_seed(0)
    model = create_model(name, allow_random_init=True)
    size = (56, 56) if name == "vggt_tiny" else (48, 64)
    item = ReplayTuples([generate_scene(1, 3, *size, num_points=200)], 2, size)[0]
    multi = {k: v[None] for k, v in item.items()}
    out = model(multi["images"])
    got = replay_loss(model, out, multi, alpha=0.2)
    batch = {k: multi[k] for k in ("images", "depth", "K", "c2w")}
    torch.testing.assert_close(got, recon_loss(model, out, batch, alpha=0.2)["loss"])
    if name == "dust3r_tiny":
        gt = ground_truth(batch)
        ref = regr3d_conf_loss(out.pts3d, out.pts3d_conf, gt["pts_first"], gt["valid"], alpha=0.2)
        torch.testing.assert_close(got, ref["loss"])
        torch.testing.assert_close(got, ref["view1"] + ref["view2"])
