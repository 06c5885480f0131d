"""Visualisation: PNG output, depth/label colouring, image tiles and PCA of dense features."""

from tune3d.viz.images import (
    colorize,
    colorize_depth,
    colorize_labels,
    label_palette,
    save_png,
    tile_images,
    to_uint8,
    turbo,
    upsample_nearest,
)
from tune3d.viz.pca import PCA, fit_pca, pca_images

__all__ = [
    "PCA",
    "colorize",
    "colorize_depth",
    "colorize_labels",
    "fit_pca",
    "label_palette",
    "pca_images",
    "save_png",
    "tile_images",
    "to_uint8",
    "turbo",
    "upsample_nearest",
]
