"""Lifted scenes (``tune3d lift`` outputs) as fine-tuning data, with a byte-budgeted LRU cache.

A lifted scene folder holds ``gaussians.safetensors``, ``decoder.safetensors``, ``metrics.json`` and the
lift's ``config.yaml`` (source scene path, frames, holdout, render resolution, backbone). Opening one
(:func:`open_lifted`) reads only the config, the safetensors headers and the source scene's poses; the
Gaussians themselves are loaded on demand through :class:`LiftedCache`, which keeps the most recently
used scenes in memory up to a byte budget. FiT3D pre-loads all 230 training scenes (~100 GB of CPU RAM);
the cache makes that a choice instead of a requirement.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import yaml

from tune3d.data import load_scene, parse_frame_range, scene_point_cloud
from tune3d.errors import Tune3DError
from tune3d.io import read_json, write_json, write_yaml
from tune3d.splatting.gaussians import FeatureGaussians
from tune3d.splatting.lift_format import (
    CONFIG_FILE,
    DECODER_FILE,
    GAUSSIANS_FILE,
    METRICS_FILE,
    LiftConfig,
    config_record,
    read_gaussians_header,
    scene_fingerprint,
    split_views,
)

log = logging.getLogger(__name__)

LIFT_CONFIG = CONFIG_FILE
VIEW_SETS = ("train", "all")


@dataclass
class LiftedScene:
    """One lifted scene: where its Gaussians are, which source views it was fitted to, at what size.

    ``train_views``/``holdout_views`` index the *source* scene's frames; ``resolution`` is the lift's
    render size ``(H, W)``; ``width`` is the decoder's output channels.
    """

    path: Path
    scene_path: Path
    train_views: list[int]
    holdout_views: list[int]
    resolution: tuple[int, int] | None
    backbone: str | None
    width: int
    feature_dim: int
    num_gaussians: int
    file_bytes: int
    _scene: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    def views(self, which: str = "train") -> list[int]:
        """Source-frame indices of ``"train"`` (the lift's training views) or ``"all"`` (+ held-out)."""
        if which == "train":
            return list(self.train_views)
        if which == "all":
            return sorted(set(self.train_views) | set(self.holdout_views))
        raise Tune3DError(f"unknown view set {which!r}; choose one of {', '.join(VIEW_SETS)}")

    @property
    def scene(self):
        """The source :class:`tune3d.data.Scene` (poses eagerly, pixels lazily), opened on first use."""
        if self._scene is None:
            self._scene = load_scene(self.scene_path)
        return self._scene

    def view(
        self, index: int, resolution: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source frame ``index`` at ``resolution`` (default: the lift's): image ``[3,H,W]`` float in [0,1],
        world-to-camera ``viewmat [4,4]`` and pixel ``K [3,3]`` (float32, scaled to that size)."""
        frame = self.scene[index]
        size = resolution or self.resolution
        if size is not None:
            frame = frame.resized(*size)
        image = (
            torch.from_numpy(np.array(frame.image(), dtype=np.uint8, copy=True)).permute(2, 0, 1).float()
            / 255.0
        )
        viewmat = torch.from_numpy(frame.viewmat).float()
        K = torch.from_numpy(np.asarray(frame.K)).float()
        return image, viewmat, K


def _frame_positions(frames: Any, n: int, where: str) -> list[int]:
    """Source-frame indices the lift selected (``lift.frames``: ``"A:B[:STEP]"`` or None = all)."""
    if frames is None:
        return list(range(n))
    if not isinstance(frames, str):
        raise Tune3DError(f"{where}: lift.frames must be a range string 'A:B[:STEP]', got {frames!r}")
    return parse_frame_range(frames, n)


def _source_frames(value: Any, n: int, where: str) -> list[int]:
    """Frames of the source scene the lift was given (``scene.source_frames``; None = all ``n``)."""
    if value is None:
        return list(range(n))
    if not isinstance(value, list) or not all(isinstance(i, int) and 0 <= i < n for i in value):
        raise Tune3DError(f"{where}: scene.source_frames must list frame indices below {n}, got {value!r}")
    return value


def _resolution(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise Tune3DError(f"{where}: resolution must be [H, W], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise Tune3DError(f"{where}: resolution must be positive, got {value!r}")
    return h, w


def is_lifted_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / GAUSSIANS_FILE).is_file() and (p / LIFT_CONFIG).is_file()


def find_lifted_dirs(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand each path: a lifted scene folder itself, or a folder whose sub-folders are lifted scenes."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise Tune3DError(f"{p}: lifted scene folder not found")
        if is_lifted_dir(p):
            out.append(p)
            continue
        subs = sorted(d for d in p.iterdir() if d.is_dir() and is_lifted_dir(d)) if p.is_dir() else []
        if not subs:
            raise Tune3DError(
                f"{p}: not a lifted scene (needs {GAUSSIANS_FILE} and {LIFT_CONFIG}; run `tune3d lift` first)"
            )
        out.extend(subs)
    return out


def _source_scene(
    scene_rec: dict, where: str, scene_path: str | os.PathLike | None, scene_root: str | os.PathLike | None
) -> Path:
    """Where the lift's source scene is now: ``scene_path``, else ``scene_root/<recorded folder name>``
    (or ``scene_root`` itself when it is that folder), else the recorded path."""
    recorded = scene_rec.get("path")
    if scene_path is not None:
        return Path(scene_path)
    if scene_root is not None:
        name = Path(recorded).name if recorded else str(scene_rec.get("name") or "")
        root = Path(scene_root)
        if not name:
            raise Tune3DError(f"{where}: no scene path or name recorded to look up under --scene-root")
        if not (root / name).exists() and root.name == name:
            return root
        return root / name
    if recorded is None:
        raise Tune3DError(
            f"{where}: the lifted scene was not read from disk (no scene.path); pass --scene-root"
        )
    return Path(recorded)


def open_lifted(
    path: str | os.PathLike,
    scene_path: str | os.PathLike | None = None,
    scene_root: str | os.PathLike | None = None,
) -> LiftedScene:
    """Read a finished lift's ``config.yaml``/``metrics.json`` and headers (no Gaussians are loaded).

    The views are the lift's own: ``lift.frames`` selects source frames, then every ``lift.holdout_every``-th
    selected frame is held out (:func:`tune3d.splatting.lift_format.split_views`). ``scene_path`` overrides
    the source scene recorded by the lift (e.g. when the data moved); ``scene_root`` looks it up by folder
    name under a new root. Where the lift recorded a content fingerprint, the scene found must match it.
    """
    path = Path(path)
    if not is_lifted_dir(path):
        raise Tune3DError(f"{path}: not a lifted scene (needs {GAUSSIANS_FILE} and {LIFT_CONFIG})")
    where = str(path / LIFT_CONFIG)
    if not (path / METRICS_FILE).is_file():
        raise Tune3DError(
            f"{path}: lift did not finish (no {METRICS_FILE}); rerun `tune3d lift` to complete it"
        )
    try:
        cfg = yaml.safe_load((path / LIFT_CONFIG).read_text()) or {}
    except yaml.YAMLError as e:
        raise Tune3DError(f"{where}: malformed YAML ({e})") from None
    scene_rec, lift = cfg.get("scene"), cfg.get("lift")
    if not isinstance(scene_rec, dict) or not isinstance(lift, dict):
        raise Tune3DError(f"{where}: not a tune3d lift config (needs 'scene' and 'lift' sections)")
    meta, shapes = read_gaussians_header(path / GAUSSIANS_FILE)
    width = int(meta.get("feature_width", 0) or 0)
    if width <= 0 or not (path / DECODER_FILE).is_file():
        raise Tune3DError(f"{path}: lifted scene has no feature decoder ({DECODER_FILE})")
    src = _source_scene(scene_rec, where, scene_path, scene_root)
    if not src.exists():
        hint = "check --scene-root" if scene_root is not None else "pass --scene-root FOLDER holding it"
        raise Tune3DError(f"{where}: source scene {src} not found (moved? {hint})")
    resolution = _resolution(lift.get("resolution"), where)
    if resolution is None:  # the lift rendered at the frames' own size and recorded it in metrics.json
        resolution = _resolution(read_json(path / METRICS_FILE).get("resolution"), str(path / METRICS_FILE))
    backbone = cfg.get("backbone")
    lifted = LiftedScene(
        path=path,
        scene_path=src,
        train_views=[],
        holdout_views=[],
        resolution=resolution,
        backbone=backbone.get("name") if isinstance(backbone, dict) else backbone,
        width=width,
        feature_dim=int(shapes["features"][1]),
        num_gaussians=int(shapes["means"][0]),
        file_bytes=(path / GAUSSIANS_FILE).stat().st_size + (path / DECODER_FILE).stat().st_size,
    )
    base = _source_frames(scene_rec.get("source_frames"), len(lifted.scene), where)
    selected = [base[i] for i in _frame_positions(lift.get("frames"), len(base), where)]
    expected = scene_rec.get("fingerprint")
    if expected is not None and scene_fingerprint(lifted.scene.subset(base)) != expected:
        raise Tune3DError(
            f"{where}: source scene {src} is not the scene that was lifted (its frames, cameras or poses "
            "differ; content fingerprint mismatch)"
        )
    train, held = split_views(len(selected), int(lift.get("holdout_every", 0) or 0))
    lifted.train_views = [selected[i] for i in train]
    lifted.holdout_views = [selected[i] for i in held]
    return lifted


def module_nbytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers."""
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


class LiftedCache:
    """Least-recently-used cache of loaded :class:`FeatureGaussians`, bounded by total bytes.

    ``get`` loads a scene on a miss, then evicts the least recently used scenes until the total fits
    ``budget_bytes`` (the scene just asked for always stays, even if it alone exceeds the budget).
    Loaded scenes are frozen (``requires_grad=False``) and live on ``device``.
    """

    def __init__(self, budget_bytes: int, device: str | torch.device = "cpu") -> None:
        self.budget_bytes = int(budget_bytes)
        self.device = torch.device(device)
        self._items: OrderedDict[Path, tuple[FeatureGaussians, int]] = OrderedDict()
        self.hits = self.misses = self.evictions = 0

    @property
    def nbytes(self) -> int:
        return sum(n for _, n in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, lifted: LiftedScene | Path) -> bool:
        return Path(getattr(lifted, "path", lifted)) in self._items

    def get(self, lifted: LiftedScene | str | os.PathLike) -> FeatureGaussians:
        key = Path(getattr(lifted, "path", lifted))
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key][0]
        self.misses += 1
        gs = FeatureGaussians.load(key, device=self.device).requires_grad_(False).eval()
        self._items[key] = (gs, module_nbytes(gs))
        while len(self._items) > 1 and self.nbytes > self.budget_bytes:
            old, _ = self._items.popitem(last=False)
            self.evictions += 1
            log.debug("lifted cache: evicted %s", old)
        return gs

    def stats(self) -> dict[str, int]:
        return {
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "resident": len(self),
            "resident_bytes": self.nbytes,
            "budget_bytes": self.budget_bytes,
        }


def write_random_lifted(
    scene_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    width: int,
    *,
    backbone: str = "random",
    latent_dim: int = 8,
    num_gaussians: int = 400,
    holdout_every: int = 0,
    resolution: tuple[int, int] | None = None,
    seed: int = 0,
) -> Path:
    """A lifted scene folder with *random* latent features and decoder on the scene's point cloud.

    It has exactly the layout ``tune3d lift`` writes, so stage II runs on it; use it for tests and
    benchmarks of fine-tuning mechanics (the targets carry no information of any backbone).
    """

    scene = load_scene(scene_dir)
    g = torch.Generator().manual_seed(seed)
    pts, cols = scene_point_cloud(scene)
    pick = torch.randperm(len(pts), generator=g)[:num_gaussians].numpy()
    gs = FeatureGaussians.from_points(
        pts[pick],
        None if cols is None else cols[pick],
        sh_degree=0,
        feature_dim=latent_dim,
        feature_width=width,
    )
    with torch.no_grad():
        gs.params["features"].copy_(torch.randn(gs.params["features"].shape, generator=g))
        gs.params["opacities"].fill_(2.0)  # sigmoid ~0.88: mostly opaque, so most pixels have a target
        gs.decoder.weight.copy_(torch.randn(gs.decoder.weight.shape, generator=g) / (3 * latent_dim**0.5))
    out = Path(out_dir)
    gs.save(out)
    lift = LiftConfig(
        iters=1, latent_dim=latent_dim, sh_degree=0, holdout_every=holdout_every, resolution=resolution
    )
    size = resolution or (scene[0].height, scene[0].width)
    record = config_record(lift, scene, SimpleNamespace(name=backbone, weights="random"))
    write_yaml(out / LIFT_CONFIG, record)
    write_json(out / "metrics.json", {"resolution": list(size), "num_gaussians": len(gs), "random": True})
    return out
