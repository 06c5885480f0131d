"""Feature Gaussians (FiT3D stage I): 3DGS parameters, a latent feature per Gaussian, a per-scene decoder.

Parameters live in one ``nn.ParameterDict`` (``means [N,3]``, ``quats [N,4]`` wxyz, ``scales [N,3]`` log,
``opacities [N]`` logit, ``sh0 [N,1,3]``, ``shN [N,K-1,3]``, ``features [N,D]``) so gsplat's
``DefaultStrategy`` can grow and prune every key together. The decoder is FiT3D's single
``Conv2d(D, width, 3, padding=1, bias=False)`` applied to the rendered ``[D,H,W]`` latent map.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from scipy.spatial import cKDTree
from torch import Tensor, nn

from tune3d.errors import Tune3DError
from tune3d.io import load_safetensors, save_safetensors_atomic
from tune3d.splatting.ply import read_gaussians_ply, write_gaussians_ply
from tune3d.splatting.sh import MAX_SH_DEGREE, num_sh_bases, rgb_to_sh

PARAM_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN", "features")
GAUSSIANS_FILE = "gaussians.safetensors"
DECODER_FILE = "decoder.safetensors"
_FORMAT = "tune3d.feature_gaussians"


def knn_log_scales(xyz: np.ndarray | Tensor, k: int = 3) -> Tensor:
    """3DGS scale init: ``log sqrt(mean squared distance to the k nearest neighbours)``, same on all axes."""
    pts = np.asarray(xyz.detach().cpu() if isinstance(xyz, Tensor) else xyz, dtype=np.float64)
    if len(pts) < 2:
        return torch.full((len(pts), 3), float(np.log(0.01)))
    kk = min(k + 1, len(pts))
    dist, _ = cKDTree(pts).query(pts, k=kk)  # first column is the point itself
    d2 = np.maximum((dist[:, 1:] ** 2).mean(axis=1), 1e-7)  # Inria's simple-knn clamps at 1e-7 too
    return torch.from_numpy(np.log(np.sqrt(d2))).float()[:, None].repeat(1, 3)


class FeatureGaussians(nn.Module):
    """A scene of 3D Gaussians with SH colour (degree <= 3), latent features ``[N,D]`` and a latent decoder.

    Args:
        params: tensors keyed by :data:`PARAM_KEYS` in storage form (log scales, logit opacities).
        sh_degree: maximum SH degree the colour coefficients hold (``shN`` has ``(d+1)^2 - 1`` rows).
        feature_width: output channels of the decoder (384 for ViT-S, 768 for ViT-B); None = no decoder.
    """

    def __init__(self, params: dict[str, Tensor], sh_degree: int = 3, feature_width: int | None = 384):
        super().__init__()
        missing = [k for k in PARAM_KEYS if k not in params]
        if missing:
            raise ValueError(f"missing Gaussian parameters: {missing}")
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be in [0, {MAX_SH_DEGREE}], got {sh_degree}")
        n = params["means"].shape[0]
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
            "sh0": (n, 1, 3),
            "shN": (n, num_sh_bases(sh_degree) - 1, 3),
        }
        for key, shape in expected.items():
            if tuple(params[key].shape) != shape:
                raise ValueError(f"{key}: expected shape {shape}, got {tuple(params[key].shape)}")
        if params["features"].dim() != 2 or params["features"].shape[0] != n:
            raise ValueError(f"features: expected shape ({n}, D), got {tuple(params['features'].shape)}")
        self.params = nn.ParameterDict(
            {k: nn.Parameter(params[k].detach().float().clone().contiguous()) for k in PARAM_KEYS}
        )
        self.sh_degree = sh_degree
        self.feature_width = feature_width
        d = params["features"].shape[1]
        self.decoder = nn.Conv2d(d, feature_width, 3, padding=1, bias=False) if feature_width else None

    @classmethod
    def from_points(
        cls,
        xyz: np.ndarray | Tensor,
        rgb: np.ndarray | Tensor | None = None,
        *,
        sh_degree: int = 3,
        feature_dim: int = 64,
        feature_width: int | None = 384,
        init_opacity: float = 0.1,
    ) -> FeatureGaussians:
        """3DGS initialisation from a point cloud ``xyz [N,3]`` with colours ``rgb [N,3]`` (uint8 or [0,1]).

        SH DC from colour (``(rgb - 0.5) / C0``), higher bands 0, kNN scales, identity rotations, opacity
        ``init_opacity``, zero latent features (as the official FiT3D code).
        """
        means = torch.as_tensor(np.asarray(xyz.detach().cpu() if isinstance(xyz, Tensor) else xyz)).float()
        if means.dim() != 2 or means.shape[1] != 3 or len(means) == 0:
            raise Tune3DError(f"point cloud must be a non-empty (N, 3) array, got shape {tuple(means.shape)}")
        n = len(means)
        if rgb is None:
            colors = torch.full((n, 3), 0.5)
        else:
            colors = torch.as_tensor(np.asarray(rgb.detach().cpu() if isinstance(rgb, Tensor) else rgb))
            colors = colors.float() / 255.0 if not colors.is_floating_point() else colors.float()
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        params = {
            "means": means,
            "quats": quats,
            "scales": knn_log_scales(means),
            "opacities": torch.logit(torch.full((n,), float(init_opacity))),
            "sh0": rgb_to_sh(colors)[:, None, :],
            "shN": torch.zeros(n, num_sh_bases(sh_degree) - 1, 3),
            "features": torch.zeros(n, feature_dim),
        }
        return cls(params, sh_degree=sh_degree, feature_width=feature_width)

    # -- views -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def feature_dim(self) -> int:
        return self.params["features"].shape[1]

    @property
    def means(self) -> Tensor:
        return self.params["means"]

    @property
    def quats(self) -> Tensor:
        """Normalised wxyz quaternions ``[N,4]``."""
        return torch.nn.functional.normalize(self.params["quats"], dim=-1)

    @property
    def scales(self) -> Tensor:
        """Linear scales ``[N,3]``."""
        return torch.exp(self.params["scales"])

    @property
    def opacities(self) -> Tensor:
        """Opacities in (0,1), ``[N]``."""
        return torch.sigmoid(self.params["opacities"])

    @property
    def sh_coeffs(self) -> Tensor:
        """All SH coefficients ``[N,K,3]`` (DC first)."""
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    @property
    def features(self) -> Tensor:
        return self.params["features"]

    def decode(self, latent: Tensor) -> Tensor:
        """Lift a rendered latent map ``[B,D,H,W]`` (or ``[D,H,W]``) to ``[B,width,H,W]`` (3x3 conv)."""
        if self.decoder is None:
            raise Tune3DError("these Gaussians have no decoder (feature_width=None)")
        # Renders come out as permuted [B,H,W,D] views (channels-last strides); oneDNN then takes its
        # channels-last path, which for this conv is ~2x slower forward + backward on AVX2 CPUs.
        return self.decoder(latent.contiguous())

    # -- persistence ---------------------------------------------------------------------------------------
    def _metadata(self) -> dict[str, str]:
        return {
            "format": _FORMAT,
            "version": "1",
            "sh_degree": str(self.sh_degree),
            "feature_dim": str(self.feature_dim),
            "feature_width": str(self.feature_width or 0),
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``gaussians.safetensors`` (+ ``decoder.safetensors``) with sh_degree/dims as metadata."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = self._metadata()
        save_safetensors_atomic({k: v for k, v in self.params.items()}, directory / GAUSSIANS_FILE, meta)
        if self.decoder is not None:
            save_safetensors_atomic({"weight": self.decoder.weight}, directory / DECODER_FILE, meta)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device = "cpu") -> FeatureGaussians:
        """Inverse of :meth:`save`."""
        directory = Path(directory)
        path = directory / GAUSSIANS_FILE
        tensors = load_safetensors(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != _FORMAT:
            raise Tune3DError(
                f"{path}: not a tune3d feature-Gaussians file (metadata format={meta.get('format')})"
            )
        try:
            sh_degree, width = int(meta["sh_degree"]), int(meta["feature_width"]) or None
            out = cls(tensors, sh_degree=sh_degree, feature_width=width)
        except (KeyError, ValueError) as e:
            raise Tune3DError(f"{path}: malformed feature-Gaussians file ({e})") from None
        if out.decoder is not None:
            dec = load_safetensors(directory / DECODER_FILE)
            if "weight" not in dec or dec["weight"].shape != out.decoder.weight.shape:
                raise Tune3DError(f"{directory / DECODER_FILE}: decoder weight missing or of the wrong shape")
            with torch.no_grad():
                out.decoder.weight.copy_(dec["weight"])
        return out.to(device)

    def export_ply(self, path: str | os.PathLike, with_features: bool = False) -> None:
        """Write a standard 3DGS PLY (Inria layout; opens in SuperSplat etc.); optional ``feat_i`` columns."""
        write_gaussians_ply(
            path, {k: v.detach() for k, v in self.params.items()}, with_features=with_features
        )

    @classmethod
    def from_ply(
        cls, path: str | os.PathLike, feature_dim: int = 64, feature_width: int | None = 384
    ) -> FeatureGaussians:
        """Read a 3DGS PLY; ``feat_i`` columns become the latent features, else zeros ``[N, feature_dim]``."""
        params, sh_degree = read_gaussians_ply(path)
        if params.get("features") is None:
            params["features"] = torch.zeros(params["means"].shape[0], feature_dim)
        return cls(params, sh_degree=sh_degree, feature_width=feature_width)
