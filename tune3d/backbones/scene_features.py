"""Dense features of one scene's frames written to a folder (what ``tune3d features`` produces).

``features.safetensors`` (``name`` -> C,h,w patch map, ``name/layer.K`` for extra blocks), ``cls.safetensors``
(``name`` -> C), ``pca/<name>.png`` (one PCA fitted over the scene so colours compare across views) and
``meta.json``. The command writes its ``config.yaml`` from :class:`FeaturesConfig`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from tune3d.backbones.extract import extract_features, open_cache
from tune3d.backbones.model import RESIZE_MODES, network_input_size
from tune3d.errors import Tune3DError
from tune3d.io import save_safetensors_atomic, write_json
from tune3d.viz import fit_pca, save_png


@dataclass
class FeaturesConfig:
    """Settings of one ``tune3d features`` run. ``resolution``: (H, W) images are resized to first;
    ``layers``: block indices (None = the last); ``pca_frames``: evenly spaced frames fitting the PCA."""

    frames: str | None = None
    resolution: tuple[int, int] | None = None
    resize: str = "resize"
    layers: list[int] | None = None
    norm: bool = True
    batch_size: int = 8
    cache: str | None = None
    dtype: str = "float32"
    device: str | None = None
    pca_frames: int = 64

    def validate(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise Tune3DError(f"--resize {self.resize!r}: choose one of {', '.join(RESIZE_MODES)}")
        if self.dtype not in ("float32", "float16"):
            raise Tune3DError(f"--dtype {self.dtype!r}: choose float32 or float16")
        if self.batch_size < 1:
            raise Tune3DError(f"--batch-size {self.batch_size}: must be at least 1")


def write_scene_features(
    bb: Any,
    scene: Any,
    indices: list[int],
    cfg: FeaturesConfig,
    out: str | os.PathLike,
    source: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Extract ``bb``'s features of ``scene``'s frames ``indices`` and write them with PCA images to ``out``.

    ``source``: how the scene is named in messages and ``meta.json`` (default: its path). Returns the
    ``meta.json`` record (also written).
    """
    source = source or str(scene.path)

    out = Path(out)
    names = [scene[i].name for i in indices]
    if len(set(names)) != len(names):
        raise Tune3DError(f"{source}: frame names are not unique")
    fcache = (
        open_cache(cfg.cache, bb, cfg.resolution, cfg.layers, cfg.norm, cfg.resize) if cfg.cache else None
    )
    images = (scene[i].image() for i in indices)
    store_dtype = torch.float16 if cfg.dtype == "float16" else torch.float32
    tensors: dict[str, torch.Tensor] = {}
    cls_tokens: dict[str, torch.Tensor] = {}
    first_size = None
    stream = extract_features(
        bb, images, cfg.resolution, cfg.layers, cfg.norm, cfg.resize, cfg.batch_size, fcache
    )
    bar = tqdm(
        zip(names, stream), total=len(names), desc="features", unit="img", leave=False, disable=not progress
    )
    for name, feats in bar:
        tensors[name] = feats["patch"].to(store_dtype)
        if "cls" in feats:
            cls_tokens[name] = feats["cls"].to(store_dtype)
        for k, v in feats.items():
            if k.startswith("layer."):
                tensors[f"{name}/{k}"] = v.to(store_dtype)
        if first_size is None:
            first_size = tuple(feats["patch"].shape[-2:])

    out.mkdir(parents=True, exist_ok=True)
    meta_st = {"backbone": bb.name, "weights": bb.weights, "patch_size": str(bb.patch_size)}
    save_safetensors_atomic(tensors, out / "features.safetensors", metadata=meta_st)
    if cls_tokens:
        save_safetensors_atomic(cls_tokens, out / "cls.safetensors", metadata=meta_st)

    # One PCA for the whole scene (fitted on evenly spaced frames) so colours are comparable across views.
    step = max(1, len(names) // max(1, cfg.pca_frames))
    pca = fit_pca([tensors[n].float() for n in names[::step]])
    for n in names:
        save_png(pca.to_images(tensors[n].float()[None], bb.patch_size)[0], out / "pca" / f"{n}.png")

    frame0 = scene[indices[0]]
    image_size = cfg.resolution or (frame0.height, frame0.width)
    meta = {
        "backbone": bb.name,
        "timm_name": bb.spec.timm_name,
        "weights": bb.weights,
        "weights_source": bb.weights_info.source,
        "patch_size": bb.patch_size,
        "width": bb.width,
        "grid_size": list(first_size),
        "input_size": list(network_input_size(*image_size, bb.patch_size, cfg.resize)),
        "image_size": list(image_size),
        "resize": cfg.resize,
        "layers": bb.layer_indices(cfg.layers),
        "norm": cfg.norm,
        "dtype": cfg.dtype,
        "scene": source,
        "num_frames": len(names),
        "frames": names,
        "pca_explained_variance": [round(float(v), 6) for v in pca.explained],
        "cache": None
        if fcache is None
        else {"dir": str(fcache.dir), "hits": fcache.hits, "misses": fcache.misses},
    }
    write_json(out / "meta.json", meta)
    return meta
