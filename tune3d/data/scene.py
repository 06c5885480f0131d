"""Scene and Frame containers shared by every reader.

A :class:`Scene` is an ordered list of :class:`Frame` objects plus scene-level data (splits, class
names, an optional coloured point cloud). Frames carry their camera (``c2w`` 4x4 float64, OpenCV
axes, metres; ``K`` 3x3 float64 pixel intrinsics with pixel centres at ``u + 0.5``) eagerly, and their
pixels lazily: ``image()``, ``depth()`` and ``semantics()`` read from disk on every call, so a
1000-frame scene costs only its poses in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from tune3d.data.sources import ArraySource, ResizedSource, Source
from tune3d.errors import Tune3DError
from tune3d.geometry import scale_K

IGNORE_LABEL = 255


@dataclass(frozen=True, eq=False)
class Frame:
    """One posed view. Pixels load lazily through ``Source`` objects (see :mod:`tune3d.data.sources`).

    ``camera_model``/``distortion`` record the source camera model (COLMAP/nerfstudio names and
    parameters, e.g. ``{"k1": .., "k2": ..}``); images are NOT undistorted by tune3d.
    """

    name: str
    c2w: np.ndarray
    K: np.ndarray
    width: int
    height: int
    image_source: Source
    depth_source: Source | None = None
    semantics_source: Source | None = None
    camera_model: str = "PINHOLE"
    distortion: dict[str, float] = field(default_factory=dict)

    def image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return self.image_source.load()

    def depth(self) -> np.ndarray | None:
        """(H, W) float32 z-depth in metres, 0 = invalid; None when the scene has no depth."""
        return None if self.depth_source is None else self.depth_source.load()

    def semantics(self) -> np.ndarray | None:
        """(H, W) int64 class ids, 255 = ignore; None when the scene has no labels."""
        return None if self.semantics_source is None else self.semantics_source.load()

    @property
    def has_depth(self) -> bool:
        return self.depth_source is not None

    @property
    def has_semantics(self) -> bool:
        return self.semantics_source is not None

    @property
    def viewmat(self) -> np.ndarray:
        """World-to-camera 4x4 float64."""
        R, t = self.c2w[:3, :3], self.c2w[:3, 3]
        out = np.eye(4)
        out[:3, :3] = R.T
        out[:3, 3] = -R.T @ t
        return out

    def resized(self, height: int, width: int) -> Frame:
        """The same view at ``height x width``: image area/bilinear, depth and labels nearest, K scaled.

        ``K`` is scaled by ``(width / self.width, height / self.height)`` which is exact under the
        pixel-centre convention (aspect changes are allowed; the two focal lengths scale separately).
        """
        height, width = int(height), int(width)
        if height <= 0 or width <= 0:
            raise Tune3DError(f"{self.name}: cannot resize to {height}x{width}")
        if (height, width) == (self.height, self.width):
            return self

        K = scale_K(torch.from_numpy(self.K), width / self.width, height / self.height).numpy()

        def wrap(src: Source | None, kind: str) -> Source | None:
            return None if src is None else ResizedSource(src, height, width, kind)

        return dataclasses.replace(
            self,
            K=K,
            width=width,
            height=height,
            image_source=wrap(self.image_source, "image"),
            depth_source=wrap(self.depth_source, "depth"),
            semantics_source=wrap(self.semantics_source, "semantics"),
        )

    def __repr__(self) -> str:
        extras = "".join(
            s for s, ok in ((" +depth", self.has_depth), (" +semantics", self.has_semantics)) if ok
        )
        return f"Frame({self.name!r}, {self.width}x{self.height}{extras})"


@dataclass(eq=False)
class Scene:
    """An ordered set of frames of one static scene.

    ``splits`` maps a split name ("train", "test", ...) to frame indices; a scene without declared
    splits has ``{}`` and :meth:`split_indices` treats ``None``/``"all"`` as every frame.
    ``points``/``point_colors`` are an optional (N, 3) float32 / (N, 3) uint8 world-space point cloud.
    """

    name: str
    frames: list[Frame]
    splits: dict[str, list[int]] = field(default_factory=dict)
    class_names: list[str] | None = None
    points: np.ndarray | None = None
    point_colors: np.ndarray | None = None
    format: str = "memory"
    path: str | None = None
    depth_scale: float | None = None  # metres per stored depth unit when the source depth is integer
    # Positions of these frames in the scene as read from ``path`` (set by :meth:`subset`; None = all).
    source_indices: list[int] | None = None

    def __post_init__(self) -> None:
        n = len(self.frames)
        for split, idx in self.splits.items():
            bad = [i for i in idx if not 0 <= int(i) < n]
            if bad:
                raise Tune3DError(
                    f"{self.name}: split {split!r} refers to missing frames {bad[:5]} (scene has {n})"
                )
        if self.points is not None:
            self.points = np.asarray(self.points, dtype=np.float32).reshape(-1, 3)
            if self.point_colors is not None:
                self.point_colors = np.asarray(self.point_colors, dtype=np.uint8).reshape(-1, 3)
                if len(self.point_colors) != len(self.points):
                    raise Tune3DError(
                        f"{self.name}: {len(self.points)} points but {len(self.point_colors)} colours"
                    )

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Frame:
        return self.frames[i]

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __repr__(self) -> str:
        return f"Scene({self.name!r}, {len(self)} frames, format={self.format!r})"

    @property
    def has_depth(self) -> bool:
        return bool(self.frames) and all(f.has_depth for f in self.frames)

    @property
    def has_semantics(self) -> bool:
        return bool(self.frames) and all(f.has_semantics for f in self.frames)

    @property
    def c2w(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-world poses of all frames."""
        return np.stack([f.c2w for f in self.frames]) if self.frames else np.zeros((0, 4, 4))

    @property
    def intrinsics(self) -> np.ndarray:
        """(N, 3, 3) float64 intrinsics of all frames."""
        return np.stack([f.K for f in self.frames]) if self.frames else np.zeros((0, 3, 3))

    def split_indices(self, split: str | None = None) -> list[int]:
        """Frame indices of ``split``; ``None`` or ``"all"`` (unless declared) means every frame."""
        if split is None or (split == "all" and "all" not in self.splits):
            return list(range(len(self)))
        if split not in self.splits:
            known = ", ".join(sorted(self.splits)) or "none"
            raise Tune3DError(f"{self.path or self.name}: no split {split!r} (splits: {known})")
        return list(self.splits[split])

    def subset(self, indices: Sequence[int] | str | slice) -> Scene:
        """A scene with the selected frames (indices, a slice, or an ``"A:B[:STEP]"`` string).

        Splits are re-indexed and keep only the selected frames; the point cloud is shared.
        ``source_indices`` records where the frames sit in the scene on disk, so records of work done on a
        subset (a lift, say) can be traced back to the files.
        """
        if isinstance(indices, str):
            indices = parse_frame_range(indices, len(self))
        elif isinstance(indices, slice):
            indices = list(range(len(self)))[indices]
        idx = [int(i) for i in indices]
        for i in idx:
            if not -len(self) <= i < len(self):
                raise Tune3DError(f"{self.name}: frame index {i} out of range (scene has {len(self)} frames)")
        idx = [i % len(self) for i in idx]
        remap = {old: new for new, old in enumerate(idx)}
        splits = {k: [remap[i] for i in v if i in remap] for k, v in self.splits.items()}
        source = [self.source_indices[i] for i in idx] if self.source_indices is not None else idx
        return dataclasses.replace(
            self, frames=[self.frames[i] for i in idx], splits=splits, source_indices=source
        )

    def resized(self, height: int, width: int) -> Scene:
        """Every frame at ``height x width`` (see :meth:`Frame.resized`)."""
        return dataclasses.replace(self, frames=[f.resized(height, width) for f in self.frames])


def parse_frame_range(spec: str, num_frames: int) -> list[int]:
    """Parse ``"A:B[:STEP]"`` (Python slice semantics, parts optional) or ``"A"`` into frame indices.

    Also accepts a comma-separated list of such items, e.g. ``"0:10,20,30:40:2"``.
    """
    out: list[int] = []
    for item in str(spec).split(","):
        item = item.strip()
        if not item:
            continue
        parts = item.split(":")
        try:
            if len(parts) == 1:
                i = int(parts[0])
                if not -num_frames <= i < num_frames:
                    raise Tune3DError(f"frame range {spec!r}: index {i} out of range ({num_frames} frames)")
                out.append(i % num_frames)
                continue
            if len(parts) > 3:
                raise ValueError
            nums = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise Tune3DError(f"frame range {spec!r}: expected 'A:B[:STEP]' with integers") from None
        if len(nums) == 3 and nums[2] == 0:
            raise Tune3DError(f"frame range {spec!r}: step must not be 0")
        out.extend(range(num_frames)[slice(*nums)])
    if not out:
        raise Tune3DError(f"frame range {spec!r} selects no frames (scene has {num_frames})")
    return out


def in_memory_frame(
    name: str,
    c2w: np.ndarray,
    K: np.ndarray,
    image: np.ndarray,
    depth: np.ndarray | None = None,
    semantics: np.ndarray | None = None,
) -> Frame:
    """A frame backed by arrays (used by the synthetic generator and tests)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    H, W = image.shape[:2]
    return Frame(
        name=name,
        c2w=np.asarray(c2w, dtype=np.float64),
        K=np.asarray(K, dtype=np.float64),
        width=W,
        height=H,
        image_source=ArraySource(image, name),
        depth_source=None if depth is None else ArraySource(np.asarray(depth, dtype=np.float32), name),
        semantics_source=None
        if semantics is None
        else ArraySource(np.asarray(semantics, dtype=np.int64), name),
    )
