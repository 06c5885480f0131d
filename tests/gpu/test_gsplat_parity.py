"""Parity of the torch rasterizer with gsplat's CUDA kernels (skipped without CUDA or a working gsplat)."""

from __future__ import annotations

import pytest
import torch

from tune3d.splatting import rasterize
from tune3d.splatting._gsplat_backend import gsplat_status

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def gsplat_ok():
    ok, why = gsplat_status()
    if not ok:
        pytest.skip(why)


def _scene(n=300, c=2, width=64, height=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * 0.6 + torch.tensor([0.0, 0.0, 3.0])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.08 + 0.01
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    f = 0.9 * width
    Ks = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]]).repeat(c, 1, 1)
    viewmats = torch.eye(4).repeat(c, 1, 1)
    viewmats[1:, 0, 3] = 0.1
    cuda = [t.cuda() for t in (means, quats, scales, opac, viewmats, Ks)]
    return cuda, width, height


@pytest.mark.parametrize(
    "channels,sh_degree,mode",
    [(3, None, "RGB"), (32, None, "RGB+ED"), (67, None, "RGB+D"), (3, 3, "RGB+ED"), (1, None, "D")],
)
def test_forward_and_grad_parity(gsplat_ok, channels, sh_degree, mode):
    (means, quats, scales, opac, viewmats, Ks), width, height = _scene()
    g = torch.Generator(device="cuda").manual_seed(1)
    if sh_degree is None:
        colors = torch.rand(len(means), channels, device="cuda", generator=g)
    else:
        colors = torch.randn(len(means), 16, 3, device="cuda", generator=g) * 0.3
    bg = torch.rand(2, colors.shape[-1] if sh_degree is None else 3, device="cuda", generator=g)
    results = {}
    for backend in ("gsplat", "torch"):
        leaves = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
        out, alpha, info = rasterize(
            *leaves[:4], leaves[4], viewmats, Ks, width, height,
            sh_degree=sh_degree, render_mode=mode, backgrounds=None if mode == "D" else bg, backend=backend,
        )  # fmt: skip
        info["means2d"].retain_grad()
        w = torch.rand(out.shape, device="cuda", generator=torch.Generator(device="cuda").manual_seed(2))
        ((out * w).sum() + alpha.sum()).backward()
        results[backend] = dict(
            out=out.detach(),
            alpha=alpha.detach(),
            radii=info["radii"],
            means2d=info["means2d"].detach(),
            conics=info["conics"].detach(),
            v_means2d=info["means2d"].grad,
            grads=[t.grad for t in leaves],
        )
    a, b = results["gsplat"], results["torch"]
    torch.testing.assert_close(a["radii"], b["radii"], rtol=0, atol=1)  # gsplat's own radii tolerance
    valid = (a["radii"] > 0).all(-1) & (b["radii"] > 0).all(-1)
    torch.testing.assert_close(a["means2d"][valid], b["means2d"][valid], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a["conics"][valid], b["conics"][valid], rtol=1e-4, atol=1e-4)
    # test_rasterization tolerances (forward)
    torch.testing.assert_close(a["out"], b["out"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a["alpha"], b["alpha"], rtol=1e-4, atol=1e-4)
    # gradients: float32 kernels accumulate in different orders; use the looser test_basic tolerances
    torch.testing.assert_close(a["v_means2d"][valid], b["v_means2d"][valid], rtol=5e-3, atol=5e-3)
    for name, ga, gb, tol in zip(
        ("means", "quats", "scales", "opacities", "colors"),
        a["grads"],
        b["grads"],
        ((1e-2, 6e-2), (2e-1, 2e-2), (5e-1, 2e-1), (8e-3, 6e-3), (1e-3, 1e-3)),
    ):
        if ga is None:
            assert gb is None or (gb == 0).all(), name
            continue
        torch.testing.assert_close(ga, gb, rtol=tol[0], atol=tol[1], msg=lambda m, n=name: f"{n}: {m}")


def test_auto_picks_gsplat_on_cuda(gsplat_ok):
    from tune3d.splatting import resolve_backend

    assert resolve_backend("auto", "cuda") == "gsplat"
    assert resolve_backend("auto", "cpu") == "torch"


def test_pixel_grid_on_both_backends(gsplat_ok):
    """gsplat renders the full frame and gathers; the torch backend renders only the grid: same pixels."""
    (means, quats, scales, opac, viewmats, Ks), width, height = _scene()
    colors = torch.rand(
        len(means), 16, device="cuda", generator=torch.Generator(device="cuda").manual_seed(3)
    )
    rows = torch.tensor([0, 1, 2, 3, 17, 18, 19, 20, 47], device="cuda")
    cols = torch.tensor([5, 6, 7, 8, 40, 41, 42, 43, 63], device="cuda")
    outs = {}
    for backend in ("gsplat", "torch"):
        full, full_a, _ = rasterize(
            means, quats, scales, opac, colors, viewmats, Ks, width, height, backend=backend
        )
        out, alpha, _ = rasterize(
            means, quats, scales, opac, colors, viewmats, Ks, width, height, backend=backend,
            pixel_rows=rows, pixel_cols=cols,
        )  # fmt: skip
        assert out.shape == (2, len(rows), len(cols), 16)
        torch.testing.assert_close(out, full[:, rows][:, :, cols], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(alpha, full_a[:, rows][:, :, cols], rtol=1e-5, atol=1e-5)
        outs[backend] = out
    torch.testing.assert_close(outs["gsplat"], outs["torch"], rtol=1e-4, atol=1e-4)
