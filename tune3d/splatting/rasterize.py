"""``rasterize()``: one 3DGS rasterizer API with a gsplat (CUDA) and a pure-torch (any device) backend.

Both backends take gsplat's arguments and return gsplat's outputs (``packed=False``), so losses and gsplat's
``DefaultStrategy`` run unchanged on either.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch
from torch import Tensor

from tune3d.errors import Tune3DError
from tune3d.splatting._gsplat_backend import gsplat_status, rasterization_gsplat
from tune3d.splatting._torch_backend import check_pixel_grid, rasterization_torch

logger = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "gsplat"]
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
_announced: set[str] = set()


def resolve_backend(backend: str = "auto", device: torch.device | str | None = None) -> str:
    """Return the concrete backend (``"torch"`` or ``"gsplat"``) for tensors on ``device``.

    ``"auto"`` picks gsplat when ``device`` is CUDA (default: CUDA if available) and gsplat's CUDA extension
    loads, else torch; the choice is logged once. Asking for ``"gsplat"`` where it cannot run raises
    :class:`Tune3DError`.
    """
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if backend == "torch":
        return "torch"
    if backend == "gsplat":
        if device.type != "cuda":
            raise Tune3DError(
                f"rasterize backend 'gsplat' needs CUDA tensors (got {device.type}); "
                "use backend='torch' or 'auto'"
            )
        ok, why = gsplat_status()
        if not ok:
            raise Tune3DError(
                f"rasterize backend 'gsplat' is unavailable: {why}; use backend='torch' or 'auto'"
            )
        return "gsplat"
    if backend != "auto":
        raise Tune3DError(f"unknown rasterize backend {backend!r}; choose 'auto', 'torch' or 'gsplat'")
    if device.type == "cuda":
        ok, why = gsplat_status()
        name = "gsplat" if ok else "torch"
        reason = why if ok else f"gsplat unusable: {why}"
    else:
        name, reason = "torch", f"{device.type} tensors"
    if name not in _announced:
        _announced.add(name)
        logger.info("rasterize: using the %s backend (%s)", name, reason)
    return name


def _check_inputs(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    sh_degree: int | None,
    backgrounds: Tensor | None,
    render_mode: str,
    rasterize_mode: str,
) -> None:
    N = means.shape[0]
    if means.shape != (N, 3) or quats.shape != (N, 4) or scales.shape != (N, 3) or opacities.shape != (N,):
        raise ValueError(
            "expected means [N,3], quats [N,4], scales [N,3], opacities [N]; got "
            f"{tuple(means.shape)}, {tuple(quats.shape)}, {tuple(scales.shape)}, {tuple(opacities.shape)}"
        )
    C = viewmats.shape[0]
    if viewmats.shape != (C, 4, 4) or Ks.shape != (C, 3, 3):
        raise ValueError(
            f"expected viewmats [C,4,4], Ks [C,3,3]; got {tuple(viewmats.shape)}, {tuple(Ks.shape)}"
        )
    if sh_degree is None:
        if not (colors.dim() == 2 and colors.shape[0] == N) and not (
            colors.dim() == 3 and colors.shape[:2] == (C, N)
        ):
            raise ValueError(f"expected colors [N,D] or [C,N,D], got {tuple(colors.shape)}")
    else:
        ok = (colors.dim() == 3 and colors.shape[0] == N) or (
            colors.dim() == 4 and colors.shape[:2] == (C, N)
        )
        if not ok or colors.shape[-1] != 3 or colors.shape[-2] < (sh_degree + 1) ** 2:
            raise ValueError(
                f"with sh_degree={sh_degree} expected colors [N,K,3] or [C,N,K,3] with K >= "
                f"{(sh_degree + 1) ** 2}, got {tuple(colors.shape)}"
            )
    if render_mode not in RENDER_MODES:
        raise ValueError(f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"rasterize_mode must be 'classic' or 'antialiased', got {rasterize_mode!r}")
    if backgrounds is not None and backgrounds.shape[0] != C:
        raise ValueError(f"expected backgrounds [C,D], got {tuple(backgrounds.shape)}")


def rasterize(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    tile_size: int | None = None,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    rasterize_mode: str = "classic",
    absgrad: bool = False,
    backend: Backend = "auto",
    pixel_rows: Tensor | None = None,
    pixel_cols: Tensor | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Rasterize ``N`` 3D Gaussians into ``C`` pinhole images (gsplat ``rasterization``, ``packed=False``).

    Args:
        means: ``[N,3]`` world positions. quats: ``[N,4]`` wxyz (normalised internally).
        scales: ``[N,3]`` *linear* scales (``exp`` of the stored log-scales). opacities: ``[N]`` in (0,1).
        colors: post-activation values ``[N,D]`` / ``[C,N,D]`` when ``sh_degree`` is None, else SH
            coefficients ``[N,K,3]`` / ``[C,N,K,3]`` (output ``clamp_min(sh + 0.5, 0)``).
        viewmats: ``[C,4,4]`` world-to-camera, OpenCV axes. Ks: ``[C,3,3]`` pixel intrinsics.
        width, height: image size; pixel centres at ``(u+0.5, v+0.5)``.
        backgrounds: ``[C,D]`` composited as ``render + bg * (1 - alpha)``.
        tile_size: tile edge in pixels; None = the backend's default (gsplat 16; torch
            :data:`~tune3d.splatting._torch_backend.DEFAULT_TILE_SIZE`, the fastest measured on CPU). Any
            size gives the same image up to float rounding.
        render_mode: "RGB", "D" (accumulated z), "ED" (expected z = D / alpha), "RGB+D" or "RGB+ED"
            (depth last).
        rasterize_mode: "classic" or "antialiased" (opacity times the eps2d compensation).
        absgrad: gsplat only (``info['means2d'].absgrad``).
        backend: "auto" (gsplat on CUDA when its extension works, else torch), "torch" or "gsplat".
        pixel_rows, pixel_cols: ``[R]``, ``[S]`` strictly increasing pixel indices: render only the product
            grid ``rows x cols`` of the ``height x width`` image, outputs ``[C,R,S,...]`` equal (to float
            rounding) to the full render gathered there. The torch backend evaluates just those pixels
            (tiles of ``tile_size`` consecutive selected rows/columns, default 4); the gsplat backend
            renders the full image and gathers (no cheaper there).

    Returns:
        ``render_colors [C,H,W,X]``, ``render_alphas [C,H,W,1]`` and gsplat's ``info`` dict (``means2d
        [C,N,2]`` in the autograd graph, ``radii [C,N,2]`` int32, ``depths``, ``conics``, ``opacities``,
        ``width``, ``height``, ``n_cameras``, ``gaussian_ids=None``, ``tile_size``, ...).
    """
    _check_inputs(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        sh_degree,
        backgrounds,
        render_mode,
        rasterize_mode,
    )
    check_pixel_grid(pixel_rows, pixel_cols, width, height)
    name = resolve_backend(backend, means.device)
    if tile_size is None and name == "gsplat":
        tile_size = 16
    kwargs = dict(
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        eps2d=eps2d,
        sh_degree=sh_degree,
        tile_size=tile_size,
        backgrounds=backgrounds,
        render_mode=render_mode,
        rasterize_mode=rasterize_mode,
    )
    if name == "gsplat":
        colors_out, alphas, info = rasterization_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, absgrad=absgrad, **kwargs
        )
        if pixel_rows is not None and pixel_cols is not None:
            rows, cols = pixel_rows.to(alphas.device), pixel_cols.to(alphas.device)
            colors_out = colors_out.index_select(1, rows).index_select(2, cols)
            alphas = alphas.index_select(1, rows).index_select(2, cols)
        return colors_out, alphas, info
    if absgrad:
        raise Tune3DError("absgrad=True is only supported by the gsplat backend")
    return rasterization_torch(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        pixel_rows=pixel_rows,
        pixel_cols=pixel_cols,
        **kwargs,
    )
