"""Fin3R losses against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from tune3d.fin3r.losses import avg_dis_normalize, conf_distill_loss

LN2 = math.log(2.0)


def test_distill_depth_unnormalised_hand_value():
    pred = torch.tensor([[[1.0, 3.0]]])
    target = torch.tensor([[[2.0, 2.0]]])
    conf = torch.tensor([[[1.0, 2.0]]])
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    # |1-2| = |3-2| = 1 -> (1*1 - 0.2 ln 1 + 2*1 - 0.2 ln 2) / 2
    loss = conf_distill_loss(pred, conf, target, mask, lam=0.2, normalize=False)
    assert loss.item() == pytest.approx((3.0 - 0.2 * LN2) / 2, abs=1e-6)
    sq = conf_distill_loss(pred * 2, conf, target, mask, lam=0.2, normalize=False, squared=True)
    # |2-2|^2 = 0, |6-2|^2 = 16 -> (0 + 32 - 0.2 ln 2) / 2
    assert sq.item() == pytest.approx((32.0 - 0.2 * LN2) / 2, abs=1e-5)


def test_distill_depth_normalised_hand_value_and_scale_invariance():
    pred = torch.tensor([[[1.0, 3.0]]])  # mean 2 -> [0.5, 1.5]
    target = torch.tensor([[[4.0, 4.0]]])  # mean 4 -> [1, 1]
    conf = torch.tensor([[[1.0, 2.0]]])
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    expected = (0.5 + (2 * 0.5 - 0.2 * LN2)) / 2
    assert conf_distill_loss(pred, conf, target, mask).item() == pytest.approx(expected, abs=1e-6)
    assert conf_distill_loss(7 * pred, conf, 0.1 * target, mask).item() == pytest.approx(expected, abs=1e-5)


def test_distill_pointmap_mask_and_finite_grad():
    pred = torch.tensor([[[[3.0, 4.0, 0.0], [0.0, 0.0, 5.0], [9.0, 9.0, 9.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, 0.0, 10.0], [0.0, 0.0, 10.0], [float("nan"), 0.0, 0.0]]]])
    conf = torch.tensor([[[1.0, 1.0, 0.0]]], requires_grad=True)  # conf 0 only at the masked pixel
    mask = torch.tensor([[[True, True, True]]])  # the NaN target is dropped automatically
    loss = conf_distill_loss(pred, conf, target, mask, lam=0.2)
    # pred mean norm 5 -> (0.6,0.8,0), (0,0,1); target -> (0,0,1), (0,0,1); distances sqrt(2), 0
    assert loss.item() == pytest.approx(math.sqrt(2) / 2, abs=1e-6)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(conf.grad).all()
    assert pred.grad[0, 0, 2].abs().sum() == 0 and conf.grad[0, 0, 2] == 0


def test_avg_dis_normalize_per_sample_and_joint_views():
    pts = torch.zeros(2, 2, 1, 1, 3)
    pts[0, 0, 0, 0, 2], pts[0, 1, 0, 0, 2] = 1.0, 3.0
    pts[1, :, 0, 0, 0] = 10.0
    mask = torch.ones(2, 2, 1, 1, dtype=torch.bool)
    out, factor = avg_dis_normalize(pts, mask)
    torch.testing.assert_close(factor, torch.tensor([2.0, 10.0]))
    torch.testing.assert_close(out[0, :, 0, 0, 2], torch.tensor([0.5, 1.5]))
    empty, f = avg_dis_normalize(pts, torch.zeros_like(mask))
    assert torch.all(empty == 0) and torch.all(f > 0)


def test_shape_errors():
    with pytest.raises(ValueError):
        conf_distill_loss(
            torch.zeros(1, 2, 2), torch.ones(1, 2, 2), torch.zeros(1, 2, 3), torch.ones(1, 2, 2) > 0
        )
