"""The on-disk layout of a lifted scene: what ``tune3d lift`` writes and FiT3D stage II reads.

A lifted scene folder holds ``config.yaml`` (:func:`config_record`: the scene's identity, the backbone and
the :class:`LiftConfig`; written first), ``gaussians.safetensors`` and ``decoder.safetensors``
(:class:`~tune3d.splatting.gaussians.FeatureGaussians`), renders, ``metrics.jsonl`` and ``metrics.json``
(written last: its presence marks the lift finished). The lift's own views are the selected frames minus
every ``holdout_every``-th one (:func:`split_views`). Stage I (``lift``) and stage II (``tune3d.fit3d``)
both import this module; neither imports the other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from tune3d.errors import Tune3DError
from tune3d.splatting.gaussians import DECODER_FILE, GAUSSIANS_FILE

__all__ = [
    "CONFIG_FILE",
    "DECODER_FILE",
    "GAUSSIANS_FILE",
    "METRICS_FILE",
    "REFERENCE_ITERS",
    "LiftConfig",
    "config_record",
    "read_gaussians_header",
    "scene_fingerprint",
    "split_views",
]

REFERENCE_ITERS = 30_000
METRICS_FILE = "metrics.json"
CONFIG_FILE = "config.yaml"
# Fields that do not change the result: a finished or interrupted run with other values still matches.
NON_RESULT_FIELDS = ("checkpoint_every", "device", "feature_cache", "num_render_views", "progress")
NON_RESULT_FIELDS += ("tile_size",)  # the same image up to float rounding


@dataclass
class LiftConfig:
    """Settings of one per-scene lift. Schedules are given for the 30k-iteration reference and scaled by
    ``iters / 30000``; learning rates are the 3DGS / FiT3D ones (means lr times the camera extent).

    ``feature_lr_scale``: the latent features and the decoder start at zero / random and only move through
    Adam steps of size ~lr, so a run much shorter than the reference cannot travel as far; with
    ``"iters"`` their learning rates are multiplied by ``max(1, sqrt(30000 / iters))``, ``"none"`` keeps them.
    """

    iters: int = 1000
    latent_dim: int = 64
    sh_degree: int = 3
    resolution: tuple[int, int] | None = None  # render (H, W); None = the frames' own size
    feature_resolution: tuple[int, int] | None = None  # backbone input (H, W); None = see feature_input_size
    frames: str | None = None  # "A:B[:STEP]" selection before the hold-out split
    holdout_every: int = 8  # every k-th selected frame (index % k == 0) is held out; 0 = none
    seed: int = 0
    backend: str = "auto"
    tile_size: int | None = None  # rasterizer tile edge (pixels); None = the backend's fastest default
    device: str = "auto"
    checkpoint_every: int = 500
    feature_cache: str | None = None  # folder of the backbone feature cache; None = no cache
    num_render_views: int = 4
    max_eval_views: int = 25  # held-out views scored (evenly spaced over the held-out set); 0 = all
    progress: bool = True
    # initialisation
    init_points: int = 20_000
    init_depth_frames: int = 32
    init_depth_stride: int = 4
    init_opacity: float = 0.1
    # loss
    lambda_ssim: float = 0.2
    lambda_feature: float = 1.0
    # learning rates (Adam, eps 1e-15)
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacities: float = 0.05
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    lr_features: float = 2.5e-3 / 40
    lr_decoder: float = 2.5e-3 / 40
    feature_lr_scale: str = "iters"
    # densification (reference iterations; scaled by iters / 30000)
    densify_from: int = 500
    densify_until: int = 15_000
    densify_every: int = 100
    opacity_reset_every: int = 3000
    sh_up_every: int = 1000
    grow_grad2d: float = 2e-4
    grow_scale3d: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    max_gaussians: int = 20_000  # growth cap (0 = none), see CappedDefaultStrategy

    def __post_init__(self) -> None:
        for name in ("resolution", "feature_resolution"):
            v = getattr(self, name)
            if v is not None:
                v = tuple(int(x) for x in v)
                if len(v) != 2 or min(v) <= 0:
                    raise Tune3DError(f"{name} must be two positive sizes (H, W), got {v}")
                setattr(self, name, v)
        if self.iters <= 0:
            raise Tune3DError(f"iters must be positive, got {self.iters}")
        if self.tile_size is not None and int(self.tile_size) <= 0:
            raise Tune3DError(f"tile_size must be positive, got {self.tile_size}")
        if self.holdout_every < 0 or self.holdout_every == 1:
            raise Tune3DError(f"holdout_every must be 0 (none) or >= 2, got {self.holdout_every}")
        if not 0 <= self.sh_degree <= 3:
            raise Tune3DError(f"sh_degree must be in [0, 3], got {self.sh_degree}")
        if self.feature_lr_scale not in ("iters", "none"):
            raise Tune3DError(f"feature_lr_scale must be 'iters' or 'none', got {self.feature_lr_scale!r}")

    def scaled(self, reference_iter: int) -> int:
        """A reference-schedule iteration count scaled to this run (at least 1)."""
        return max(1, round(reference_iter * self.iters / REFERENCE_ITERS))

    @property
    def feature_lr_factor(self) -> float:
        if self.feature_lr_scale == "none":
            return 1.0
        return max(1.0, math.sqrt(REFERENCE_ITERS / self.iters))


def split_views(num_frames: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """``(train, held_out)`` positions: every ``holdout_every``-th one (``i % k == 0``) is held out."""
    if holdout_every <= 0:
        return list(range(num_frames)), []
    held = [i for i in range(num_frames) if i % holdout_every == 0]
    train = [i for i in range(num_frames) if i % holdout_every != 0]
    if not train:
        raise Tune3DError(f"holdout_every={holdout_every} leaves no training views of {num_frames}")
    return train, held


def scene_fingerprint(scene) -> str:
    """Content fingerprint of a scene's frames: names, sizes, intrinsics and poses (rounded to 1e-6).

    Identifies the scene wherever its folder lives; reads no pixels, so it is cheap for large scenes.
    """
    h = hashlib.sha256()
    for f in scene.frames:
        h.update(f.name.encode())
        h.update(np.asarray([f.width, f.height], dtype=np.int64).tobytes())
        for m in (f.K, f.c2w):
            h.update((np.round(np.asarray(m, dtype=np.float64), 6) + 0.0).tobytes())  # + 0.0: no -0.0
    return h.hexdigest()[:16]


def config_record(cfg: LiftConfig, scene, backbone) -> dict[str, Any]:
    """What ``config.yaml`` holds: the lift settings plus the scene and backbone identity.

    The scene path is stored absolute (a lifted scene is usable from any working directory) with a
    content fingerprint (:func:`scene_fingerprint`) so a relocated scene can be checked.
    """
    path = str(Path(scene.path).resolve()) if scene.path else None
    record = {"name": scene.name, "path": path, "frames": len(scene), "fingerprint": scene_fingerprint(scene)}
    if scene.source_indices is not None:  # a subset: which frames of the scene on disk were lifted
        record["source_frames"] = list(scene.source_indices)
    return {
        "scene": record,
        "backbone": {"name": backbone.name, "weights": backbone.weights},
        "lift": dataclasses.asdict(cfg),
    }


def read_gaussians_header(path: str | Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """safetensors metadata and tensor shapes of ``gaussians.safetensors`` without reading the tensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise Tune3DError(f"{path}: not a readable safetensors file ({e})") from None
    return dict(meta), shapes
