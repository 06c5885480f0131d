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
