"""Torch rasterizer compositing: the hand-written backward against gradcheck and the autograd oracle."""

from __future__ import annotations

import pytest
import torch

from tune3d.splatting._torch_backend import (
    _Composite,
    _sigma_coefficients,
    _tile_monomials,
    rasterization_torch,
)


def _scene(n: int, seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g, dtype=dtype) * 0.5 + torch.tensor([0.0, 0.0, 3.0], dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype)
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.2 + 0.05
    opac = torch.rand(n, generator=g, dtype=dtype) * 0.95 + 0.04
    opac[: n // 4] = 0.999  # some clamp at 0.999 near their centres and trigger the T <= 1e-4 stop
    colors = torch.rand(n, 6, generator=g, dtype=dtype)
    K = torch.tensor([[30.0, 0, 20.0], [0, 30.0, 15.0], [0, 0, 1]], dtype=dtype)[None].repeat(2, 1, 1)
    viewmats = torch.eye(4, dtype=dtype)[None].repeat(2, 1, 1)
    viewmats[1, 0, 3] = 0.2
    return (means, quats, scales, opac, colors), viewmats, K


def _run(leaves, viewmats, K, compositing, **kw):
    leaves = [t.clone().requires_grad_() for t in leaves]
    out, alpha, info = rasterization_torch(*leaves, viewmats, K, 40, 30, compositing=compositing, **kw)
    info["means2d"].retain_grad()
    w = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)
    loss = (out * w).sum() + (alpha - 0.3).square().sum()
    loss.backward()
    return [out, alpha, info["means2d"].grad, *[t.grad for t in leaves]]


@pytest.mark.parametrize(
    "kw",
    [
        dict(tile_size=8),
        dict(tile_size=16, render_mode="RGB+ED", backgrounds=torch.rand(2, 6, dtype=torch.float64)),
        dict(tile_size=5, geo_channels=torch.tensor([0, 2]), render_mode="RGB+ED"),
        dict(tile_size=8, chunk_elements=64 * 8),  # many small chunks
    ],
)
def test_analytic_backward_matches_autograd(kw):
    leaves, viewmats, K = _scene(40, seed=1)
    ref = _run(leaves, viewmats, K, "autograd", **kw)
    new = _run(leaves, viewmats, K, "analytic", **kw)
    assert ref[1].max() > 0.99  # opaque pixels: the transmittance stop was exercised
    for a, b in zip(new, ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert all(t.abs().sum() > 0 for t in new[2:])


def test_analytic_backward_float32_is_float_noise():
    leaves, viewmats, K = _scene(60, seed=2, dtype=torch.float32)
    ref = _run(leaves, viewmats, K, "autograd", tile_size=16)
    new = _run(leaves, viewmats, K, "analytic", tile_size=8)
    for a, b in zip(new, ref):
        scale = b.abs().max().clamp_min(1.0)
        assert (a - b).abs().max() <= 1e-4 * scale


@pytest.mark.parametrize("geo", [None, torch.tensor([0, 2, 3])])
def test_composite_gradcheck(geo):
    """gradcheck of the autograd.Function itself on two 4x4 tiles with 5 list entries each."""
    g = torch.Generator().manual_seed(3)
    T, Kl, ts, X = 2, 5, 4, 4
    dt = torch.float64
    mu = torch.rand(T, Kl, 2, generator=g, dtype=dt) * 6 - 1  # tile 0 spans [0,4)^2, tile 1 [4,8)x[0,4)
    L = torch.randn(T, Kl, 2, 2, generator=g, dtype=dt) * 0.3 + torch.eye(2, dtype=dt) * 0.9
    prec = L @ L.transpose(-1, -2)
    con = torch.stack([prec[..., 0, 0], prec[..., 0, 1], prec[..., 1, 1]], dim=-1)
    centre = torch.tensor([[2.0, 2.0], [6.0, 2.0]], dtype=dt)
    coef = _sigma_coefficients(mu, con, centre).detach()
    opa = torch.rand(T, Kl, generator=g, dtype=dt) * 0.8 + 0.1
    opa[0, :2] = 0.9995  # clamps at the centre pixel, then the transmittance stop
    opa[1, -1] = 0.0  # a padding slot
    V = torch.rand(T, Kl, X, generator=g, dtype=dt)
    nphi = _tile_monomials(ts, torch.device("cpu"), dt)
    inputs = [t.clone().requires_grad_() for t in (coef, opa, V)]

    def fn(c, o, v):
        return _Composite.apply(c, o, v, nphi, geo)

    y = fn(*inputs)
    assert y[..., -1].max() > 0.5
    if geo is None:
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-7, atol=1e-6, rtol=1e-5)
    else:  # only the geo channels' loss reaches coef/opa; every channel's loss reaches its values
        y.backward(torch.ones_like(y))
        mask = torch.zeros(X, dtype=dt)
        mask[geo] = 1
        ref_geo = [t.clone().requires_grad_() for t in (coef, opa, V)]
        (_Composite.apply(*ref_geo, nphi, None) * mask).sum().backward()
        ref_all = [t.clone().requires_grad_() for t in (coef, opa, V)]
        _Composite.apply(*ref_all, nphi, None).sum().backward()
        torch.testing.assert_close(inputs[0].grad, ref_geo[0].grad)
        torch.testing.assert_close(inputs[1].grad, ref_geo[1].grad)
        torch.testing.assert_close(inputs[2].grad, ref_all[2].grad)
        assert not torch.allclose(inputs[0].grad, ref_all[0].grad)


def test_lists_are_cut_where_the_tile_saturates():
    """After a near-opaque Gaussian covering a whole 4x4 tile, a second one would take every pixel's
    transmittance to <= 1e-4 (gsplat's stop), so only the first entry is ever composited."""
    from tune3d.splatting._torch_backend import _saturated_length

    dt = torch.float64
    mu = torch.zeros(2, 4, 2, dtype=dt)  # at the tile centre
    con = torch.tensor([1e-3, 0.0, 1e-3], dtype=dt).expand(2, 4, 3)  # wide: alpha ~ o at every pixel
    coef = _sigma_coefficients(mu, con, torch.zeros(2, 2, dtype=dt))
    opa = torch.tensor([[0.999, 0.999, 0.5, 0.5], [0.999, 0.5, 0.5, 0.0]], dtype=dt)
    nphi = _tile_monomials(4, torch.device("cpu"), dt)
    assert _saturated_length(coef, opa, nphi).tolist() == [1, 4]
    # and the cut changes nothing: compositing the cut list equals compositing the full one
    V = torch.rand(2, 4, 3, dtype=dt)
    full = _Composite.apply(coef, opa, V, nphi, None)
    cut = _Composite.apply(coef[..., :1], opa[:, :1], V[:, :1], nphi, None)
    torch.testing.assert_close(full[0], cut[0], rtol=0, atol=0)
