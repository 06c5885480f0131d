"""Product-grid renders (``pixel_rows`` x ``pixel_cols``) equal the full render gathered at those pixels."""

from __future__ import annotations

import pytest
import torch

from tune3d.splatting import rasterize
from tune3d.splatting._torch_backend import PixelGrid, rasterization_torch


def _scene(n: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.2 + 0.03
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.94 + 0.05
    colors = torch.rand(n, 5, generator=g, dtype=dtype)
    return means, quats, scales, opac, colors


def _cameras(width: int, height: int, dtype: torch.dtype):
    K = torch.tensor([[40.0, 0, width / 2], [0, 40.0, height / 2], [0, 0, 1]], dtype=dtype).repeat(2, 1, 1)
    viewmats = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    viewmats[1, 0, 3] = 0.15
    return viewmats, K


# irregular gaps, image borders, and groups that straddle gaps
ROWS = [0, 1, 2, 3, 7, 8, 9, 20, 21, 30, 41]
COLS = [0, 5, 6, 7, 8, 19, 20, 21, 22, 40, 56, 57]


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("tile_size", [1, 3, 4, 8])
def test_grid_equals_full_render_gathered(dtype, tol, tile_size):
    W, H = 58, 42
    means, quats, scales, opac, colors = _scene(300, dtype, seed=1)
    viewmats, K = _cameras(W, H, dtype)
    bg = torch.rand(2, 5, dtype=dtype)
    kw = dict(render_mode="RGB+ED", backgrounds=bg)
    full, full_a, _ = rasterization_torch(means, quats, scales, opac, colors, viewmats, K, W, H, **kw)
    rows, cols = torch.tensor(ROWS), torch.tensor(COLS)
    out, alpha, info = rasterization_torch(
        means, quats, scales, opac, colors, viewmats, K, W, H, pixel_rows=rows, pixel_cols=cols,
        tile_size=tile_size, **kw,
    )  # fmt: skip
    assert out.shape == (2, len(ROWS), len(COLS), 6) and alpha.shape == (2, len(ROWS), len(COLS), 1)
    assert (out - full[:, rows][:, :, cols]).abs().max().item() < tol  # depth (~3) and alpha channels
    assert (alpha - full_a[:, rows][:, :, cols]).abs().max().item() < tol
    assert info["tile_size"] == tile_size
    assert alpha.max() > 0.5  # the scene really covers the grid


def test_grid_gradients_equal_full_render_gradients():
    W, H = 30, 26
    dtype = torch.float64
    params = [t.requires_grad_() for t in _scene(120, dtype, seed=2)]
    viewmats, K = _cameras(W, H, dtype)
    rows, cols = torch.tensor([2, 3, 4, 5, 15, 16, 25]), torch.tensor([0, 1, 9, 10, 11, 12, 28])
    w = torch.rand(2, len(rows), len(cols), 5, dtype=dtype, generator=torch.Generator().manual_seed(3))
    out, _, _ = rasterization_torch(*params, viewmats, K, W, H, pixel_rows=rows, pixel_cols=cols)
    grads = torch.autograd.grad((out * w).sum(), params)
    full, _, _ = rasterization_torch(*params, viewmats, K, W, H)
    ref = torch.autograd.grad((full[:, rows][:, :, cols] * w).sum(), params)
    for g, r in zip(grads, ref):
        assert torch.allclose(g, r, atol=1e-10, rtol=1e-8)
    assert any(g.abs().max() > 0 for g in grads)


def test_grid_tiles_and_dispatch():
    grid = PixelGrid(torch.tensor([1, 2, 9]), torch.tensor([0, 4, 5, 6, 7]), 2, torch.float32)
    assert (grid.tile_height, grid.tile_width, grid.height, grid.width) == (2, 3, 3, 5)
    assert grid.bounds[0].tolist() == [[0, 4], [5, 6], [7, 7]] and grid.bounds[1].tolist() == [[1, 2], [9, 9]]
    assert grid.pix.shape == (6, 4, 2) and grid.nphi.shape == (6, 4, 6)
    assert grid.pix[5].tolist() == [[7.5, 9.5]] * 4  # the last tile: its one pixel, repeated
    means, quats, scales, opac, colors = _scene(50, torch.float32)
    viewmats, K = _cameras(20, 16, torch.float32)
    rows, cols = torch.tensor([3, 4]), torch.tensor([0, 19])
    out, _, _ = rasterize(
        means, quats, scales, opac, colors, viewmats, K, 20, 16, backend="torch", pixel_rows=rows,
        pixel_cols=cols,
    )  # fmt: skip
    assert out.shape == (2, 2, 2, 5)
    for bad_rows, bad_cols in [
        (rows, None),
        (torch.tensor([4, 3]), cols),
        (torch.tensor([3, 3]), cols),
        (rows, torch.tensor([0, 20])),
        (torch.tensor([-1, 2]), cols),
        (rows.float(), cols),
        (torch.tensor([], dtype=torch.long), cols),
    ]:
        with pytest.raises(ValueError):
            rasterize(
                means, quats, scales, opac, colors, viewmats, K, 20, 16, backend="torch",
                pixel_rows=bad_rows, pixel_cols=bad_cols,
            )  # fmt: skip
