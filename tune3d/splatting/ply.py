"""Standard 3DGS PLY files (the Inria layout read by SuperSplat, gsplat's viewers and most web viewers).

Vertex properties, all float32, in this order: ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity
scale_0..2 rot_0..3``. ``f_rest`` is channel-major (all R coefficients, then G, then B); opacity is a logit,
scales are logs, ``rot`` is wxyz. tune3d optionally appends the latent features as ``feat_0..feat_{D-1}``.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from plyfile import PlyData, PlyElement
from torch import Tensor

from tune3d.errors import Tune3DError
from tune3d.io import atomic_path
from tune3d.splatting.sh import sh_degree_from_bases


def write_gaussians_ply(
    path: str | os.PathLike, params: dict[str, Tensor], with_features: bool = False
) -> None:
    """Write storage-form Gaussian ``params`` (see :mod:`tune3d.splatting.gaussians`) as a binary PLY."""
    n = params["means"].shape[0]
    sh_n = params["shN"].detach().cpu().float()
    f_rest = sh_n.transpose(1, 2).reshape(n, -1)  # [N, 3*(K-1)], channel-major
    cols = {
        "x": params["means"][:, 0],
        "y": params["means"][:, 1],
        "z": params["means"][:, 2],
        "nx": torch.zeros(n),
        "ny": torch.zeros(n),
        "nz": torch.zeros(n),
    }
    for i in range(3):
        cols[f"f_dc_{i}"] = params["sh0"][:, 0, i]
    for i in range(f_rest.shape[1]):
        cols[f"f_rest_{i}"] = f_rest[:, i]
    cols["opacity"] = params["opacities"]
    for i in range(3):
        cols[f"scale_{i}"] = params["scales"][:, i]
    for i in range(4):
        cols[f"rot_{i}"] = params["quats"][:, i]
    if with_features:
        for i in range(params["features"].shape[1]):
            cols[f"feat_{i}"] = params["features"][:, i]
    data = np.empty(n, dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        data[k] = v.detach().cpu().float().numpy()
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp))


def read_gaussians_ply(path: str | os.PathLike) -> tuple[dict[str, Tensor], int]:
    """Read a 3DGS PLY into storage-form params (``features`` None when absent) and its SH degree."""
    try:
        vertex = PlyData.read(str(path))["vertex"]
    except (OSError, KeyError, ValueError) as e:
        raise Tune3DError(f"{path}: not a readable Gaussian PLY ({e})") from None
    names = set(vertex.data.dtype.names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", *[f"scale_{i}" for i in range(3)]]
    required += [f"rot_{i}" for i in range(4)]
    missing = [k for k in required if k not in names]
    if missing:
        raise Tune3DError(f"{path}: not a 3DGS PLY, missing vertex properties {missing}")

    def stack(keys: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=-1))

    n = len(vertex.data)
    n_rest = sum(1 for k in names if k.startswith("f_rest_"))
    try:
        sh_degree = sh_degree_from_bases(n_rest // 3 + 1)
        if n_rest % 3:
            raise ValueError("f_rest count not a multiple of 3")
    except ValueError as e:
        raise Tune3DError(f"{path}: unsupported SH layout ({n_rest} f_rest properties: {e})") from None
    f_rest = stack([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else torch.zeros(n, 0)
    n_feat = sum(1 for k in names if k.startswith("feat_"))
    params = {
        "means": stack(["x", "y", "z"]),
        "quats": stack([f"rot_{i}" for i in range(4)]),
        "scales": stack([f"scale_{i}" for i in range(3)]),
        "opacities": torch.from_numpy(np.asarray(vertex["opacity"], dtype=np.float32)),
        "sh0": stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
        "shN": f_rest.reshape(n, 3, n_rest // 3).transpose(1, 2).contiguous(),
        "features": stack([f"feat_{i}" for i in range(n_feat)]) if n_feat else None,
    }
    return params, sh_degree
