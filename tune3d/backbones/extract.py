"""Batched dense-feature extraction over a stream of images, with the optional on-disk cache."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tune3d.backbones.cache import FeatureCache, image_digest
from tune3d.backbones.model import Backbone


def image_to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """HxWx3 uint8 array or 3,H,W float tensor in [0, 1] -> 3,H,W float32 in [0, 1]."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
        arr = image if image.flags.writeable and image.flags.c_contiguous else np.array(image)
        t = torch.from_numpy(arr).permute(2, 0, 1)
        return t.float() / 255.0 if image.dtype == np.uint8 else t.float()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a 3,H,W image tensor, got shape {tuple(image.shape)}")
    return image.float()


def resize_images(images: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of ``B,3,H,W`` to ``size``; ``None`` keeps it."""
    if size is None or tuple(images.shape[-2:]) == tuple(size):
        return images
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)


def preprocessing_config(
    backbone: Backbone,
    resolution: tuple[int, int] | None,
    layers: list[int] | None,
    norm: bool,
    resize: str,
    device: torch.device | str,
) -> dict[str, Any]:
    """Everything besides the image and the weights that changes the features (the cache key)."""
    precision = "fp32" if torch.device(device).type != "cuda" else backbone.precision
    return {
        "resolution": list(resolution) if resolution else None,
        "layers": backbone.layer_indices(layers),
        "norm": norm,
        "resize": resize,
        "precision": precision,
        "timm_name": backbone.spec.timm_name,
        "model_kwargs": backbone.spec.model_kwargs,
    }


def _unbatch(feats, i: int, layers: list[int] | None) -> dict[str, torch.Tensor]:
    out = {"patch": feats.patch[i].cpu()}
    if feats.cls is not None:
        out["cls"] = feats.cls[i].cpu()
    if layers is not None:
        for j, f in feats.layers.items():
            out[f"layer.{j}"] = f[i].cpu()
    return out


def extract_features(
    backbone: Backbone,
    images: Iterable[np.ndarray | torch.Tensor],
    resolution: tuple[int, int] | None = None,
    layers: list[int] | None = None,
    norm: bool = True,
    resize: str = "resize",
    batch_size: int = 8,
    cache: FeatureCache | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield, per input image and in order, ``{"patch": C,h,w, "cls": C, "layer.<i>": C,h,w}`` (CPU).

    ``images`` are HxWx3 uint8 arrays or 3,H,W float tensors; each is first resized to ``resolution``
    (``(H, W)``) when given. Images of equal size are batched. With a ``cache`` (from :func:`open_cache`
    with the same settings) cached images are not recomputed and new ones are stored.
    ``layer.<i>`` entries appear only when ``layers`` is given.
    """
    device = backbone.mean.device

    pending: list[tuple[int, str | None, torch.Tensor]] = []
    ready: dict[int, dict[str, torch.Tensor]] = {}
    next_out = 0

    def flush() -> None:
        if not pending:
            return
        batch = torch.stack([t for _, _, t in pending]).to(device)
        feats = backbone.forward_features(
            resize_images(batch, resolution), layers=layers, norm=norm, resize=resize
        )
        for b, (idx, key, _) in enumerate(pending):
            ready[idx] = _unbatch(feats, b, layers)
            if cache is not None:
                cache.put(key, ready[idx])
        pending.clear()

    for idx, image in enumerate(images):
        key = image_digest(image) if cache is not None else None
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            ready[idx] = hit
        else:
            t = image_to_tensor(image)
            if pending and pending[0][2].shape != t.shape:
                flush()
            pending.append((idx, key, t))
            if len(pending) >= batch_size:
                flush()
        while next_out in ready:
            yield ready.pop(next_out)
            next_out += 1
    flush()
    while next_out in ready:
        yield ready.pop(next_out)
        next_out += 1


def open_cache(
    cache_dir: str | os.PathLike,
    backbone: Backbone,
    resolution: tuple[int, int] | None = None,
    layers: list[int] | None = None,
    norm: bool = True,
    resize: str = "resize",
) -> FeatureCache:
    """The :class:`FeatureCache` for ``backbone`` and these extraction settings."""
    prep = preprocessing_config(backbone, resolution, layers, norm, resize, backbone.mean.device)
    return FeatureCache(cache_dir, backbone.name, backbone.weights_info.cache_id, prep)
