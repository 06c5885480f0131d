"""Feature Gaussian splatting: the rasterizer (gsplat or pure torch), feature Gaussians, and rendering."""

from tune3d.splatting.gaussians import PARAM_KEYS, FeatureGaussians, knn_log_scales
from tune3d.splatting.rasterize import rasterize, resolve_backend
from tune3d.splatting.render import FeatureRender, render_rgb_and_features

__all__ = [
    "PARAM_KEYS",
    "FeatureGaussians",
    "FeatureRender",
    "knn_log_scales",
    "rasterize",
    "render_rgb_and_features",
    "resolve_backend",
]
