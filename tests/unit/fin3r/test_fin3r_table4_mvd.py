"""Table 4's ETH3D / T&T key-view metrics on hand-computed cases, and Table 1's ``avg`` paper value."""

from __future__ import annotations

import math

import pytest
import torch

from tune3d.fin3r.evaluation.mvd_depth import key_view_metrics
from tune3d.fin3r.evaluation.suites import FIN3R_SUITES, PAPER_TABLE1_DATASETS, Cell, _rows


def _blocky_gt() -> torch.Tensor:
    """6x8 depth made of 2x2 constant blocks (so a 3x4 prediction upsampled nearest matches exactly)."""
    small = 1.0 + torch.arange(12, dtype=torch.float64).reshape(3, 4) / 4
    gt = small.repeat_interleave(2, 0).repeat_interleave(2, 1)
    gt[0, 0] = 0.0  # invalid pixel
    return gt


def test_scaled_low_res_prediction_scores_perfectly_after_alignment():
    gt = _blocky_gt()
    small = gt[1::2, 1::2].clone()  # the blocks' values, without the invalid pixel
    m = key_view_metrics(2.0 * small, gt)
    assert m["rel"] == pytest.approx(0.0, abs=1e-9) and m["delta1"] == pytest.approx(100.0)
    assert m["rel_ss"] == pytest.approx(0.0, abs=1e-9) and m["delta1_ss"] == pytest.approx(100.0)
    assert m["rel_metric"] == pytest.approx(1.0) and m["delta1_metric"] == pytest.approx(0.0)


def test_metric_alignment_counts_inliers_by_hand():
    gt = torch.full((2, 2), 2.0, dtype=torch.float64)
    pred = torch.tensor([[2.0, 2.2], [3.0, 2.0]], dtype=torch.float64)  # ratios 1, 1.1, 1.5, 1
    m = key_view_metrics(pred, gt)
    assert m["rel_metric"] == pytest.approx((0 + 0.1 + 0.5 + 0) / 4)
    assert m["delta1_metric"] == pytest.approx(75.0)


def test_no_valid_pixel_gives_nan():
    m = key_view_metrics(torch.ones(2, 2), torch.zeros(4, 4))
    assert math.isnan(m["rel"]) and math.isnan(m["delta1_ss"])


def _table1_rows(datasets, family="vggt"):
    suite = FIN3R_SUITES["fin3r-table1"]
    cells = [Cell(d, "moge", "/x", "base") for d in datasets]
    results = {c: {"status": "done", "metrics": {"rel": 4.0, "delta1": 95.0}} for c in cells}
    return {(r["dataset"], r["metric"]): r for r in _rows(suite, family, cells, results)}


def test_table1_avg_paper_value_only_for_the_papers_datasets():
    rows = _table1_rows(PAPER_TABLE1_DATASETS)
    assert rows[("avg", "rel")]["paper"] == 5.77 and rows[("avg", "delta1")]["paper"] == 94.0
    assert rows[("avg", "rel")]["value"] == pytest.approx(4.0)
    for subset in (("NYUv2", "iBims-1"), PAPER_TABLE1_DATASETS[:-1], PAPER_TABLE1_DATASETS + ("GSO",)):
        rows = _table1_rows(subset)
        assert rows[("avg", "rel")]["paper"] is None and rows[("avg", "delta1")]["paper"] is None
        assert rows[("avg", "rel")]["value"] == pytest.approx(4.0)
        assert rows[("NYUv2", "rel")]["paper"] == 3.14  # per-dataset paper values are unaffected
