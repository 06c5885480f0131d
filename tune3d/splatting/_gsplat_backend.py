"""Thin wrapper over ``gsplat.rasterization`` (CUDA only), pinned to ``packed=False``."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor


@functools.cache
def gsplat_status() -> tuple[bool, str]:
    """``(usable, reason)``: whether gsplat imports and its CUDA extension loads on this machine.

    Loading the extension may JIT-compile it the first time (gsplat's own behaviour); the answer is cached.
    """
    if not torch.cuda.is_available():
        return False, "CUDA is not available"
    try:
        import gsplat  # noqa: F401
        from gsplat.cuda import _backend
    except Exception as e:  # ImportError, or a failed JIT build
        return False, f"gsplat could not be imported ({type(e).__name__}: {e})"
    if getattr(_backend, "_C", None) is None:
        return False, "gsplat's CUDA extension is not built (no CUDA toolkit for its JIT build)"
    return True, f"gsplat {gsplat.__version__}"


def rasterization_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    **kwargs: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Call ``gsplat.rasterization`` with ``packed=False`` so ``info['radii']`` is ``[C,N,2]``."""
    from gsplat import rasterization

    return rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=False, **kwargs
    )
