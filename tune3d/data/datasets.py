"""torch datasets over scenes: single views, co-visible multi-view tuples, unlabeled image folders.

Co-visibility between frames: :mod:`tune3d.data.overlap`.

View items are dicts: ``image`` (3, H, W) float32 in [0, 1]; ``depth`` (1, H, W) float32 metres
(0 = invalid; all zeros plus ``has_depth = False`` when the scene has none); ``semantics`` (H, W)
int64 (255 = ignore; all 255 when absent); ``K`` (3, 3) and ``c2w`` (4, 4) float32; ``scene_index``
and ``frame_index`` ints. Frames load lazily, so workers only hold what they are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from tune3d.data.overlap import overlap_matrix
from tune3d.data.readers import load_scenes
from tune3d.data.scene import IGNORE_LABEL, Frame, Scene
from tune3d.data.sources import IMAGE_EXTENSIONS, ImageFileSource, resize_array
from tune3d.errors import Tune3DError


def _as_scenes(scenes: Scene | Sequence[Scene] | str | Path) -> list[Scene]:
    if isinstance(scenes, (str, Path)):
        return load_scenes(scenes)
    if isinstance(scenes, Scene):
        return [scenes]
    return list(scenes)


def view_item(frame: Frame, resolution: tuple[int, int] | None = None) -> dict:
    """Load one frame as a tensor dict at ``resolution`` (H, W) (native size when None)."""
    if resolution is not None:
        frame = frame.resized(*resolution)
    H, W = frame.height, frame.width
    img = torch.from_numpy(frame.image()).permute(2, 0, 1).float().div_(255.0)
    depth = frame.depth()
    sem = frame.semantics()
    return {
        "image": img,
        "depth": torch.zeros(1, H, W) if depth is None else torch.from_numpy(depth)[None],
        "has_depth": depth is not None,
        "semantics": torch.full((H, W), IGNORE_LABEL, dtype=torch.int64)
        if sem is None
        else torch.from_numpy(sem),
        "has_semantics": sem is not None,
        "K": torch.from_numpy(frame.K).float(),
        "c2w": torch.from_numpy(frame.c2w).float(),
    }


class ViewDataset(Dataset):
    """Every frame of ``split`` (None = all) of each scene, resized to ``resolution`` (H, W)."""

    def __init__(
        self,
        scenes: Scene | Sequence[Scene] | str | Path,
        resolution: tuple[int, int] | None = None,
        split: str | None = None,
    ) -> None:
        self.scenes = _as_scenes(scenes)
        self.resolution = None if resolution is None else (int(resolution[0]), int(resolution[1]))
        self.index = [(s, i) for s, sc in enumerate(self.scenes) for i in sc.split_indices(split)]
        if not self.index:
            raise Tune3DError(f"ViewDataset: no frames in split {split!r} of {len(self.scenes)} scene(s)")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> dict:
        s, i = self.index[idx]
        item = view_item(self.scenes[s][i], self.resolution)
        item["scene_index"], item["frame_index"] = s, i
        return item


class MultiViewDataset(Dataset):
    """Tuples of ``num_views`` co-visible views (a reference view plus partners) from one scene.

    For each scene, a subsample of at most ``max_frames`` frames of ``split`` is taken (evenly
    spaced); the pairwise overlap table over it is computed lazily on first use of that scene.
    Item ``idx`` is reference frame ``idx`` of the concatenated subsamples; partners are drawn
    (seeded by ``seed`` and ``idx``, so items are reproducible) among frames whose overlap with the
    reference is within ``[min_overlap, max_overlap]``. References with too few partners are
    dropped when the table is built; ``__len__`` therefore reflects only usable references once
    every scene's table exists (call :meth:`build` to force it up front).
    Returns a list of view dicts (see module docstring), the reference first.
    """

    def __init__(
        self,
        scenes: Scene | Sequence[Scene] | str | Path,
        num_views: int = 2,
        resolution: tuple[int, int] | None = None,
        min_overlap: float = 0.3,
        split: str | None = None,
        seed: int = 0,
        max_overlap: float = 1.0,
        max_frames: int = 128,
        grid: int = 24,
    ) -> None:
        if num_views < 1:
            raise Tune3DError(f"MultiViewDataset: num_views must be >= 1, got {num_views}")
        self.scenes = _as_scenes(scenes)
        self.num_views = int(num_views)
        self.resolution = None if resolution is None else (int(resolution[0]), int(resolution[1]))
        self.min_overlap, self.max_overlap = float(min_overlap), float(max_overlap)
        self.seed = int(seed)
        self.grid = grid
        self.subsets: list[list[int]] = []
        for sc in self.scenes:
            idx = sc.split_indices(split)
            if len(idx) > max_frames:
                idx = [idx[int(round(k))] for k in np.linspace(0, len(idx) - 1, max_frames)]
            self.subsets.append(idx)
        self._tables: dict[int, np.ndarray] = {}
        self._refs: list[tuple[int, int]] | None = None

    def overlap(self, scene_index: int) -> np.ndarray:
        """Overlap table of one scene's subsample (computed once)."""
        if scene_index not in self._tables:
            self._tables[scene_index] = overlap_matrix(
                self.scenes[scene_index], self.subsets[scene_index], self.grid
            )
        return self._tables[scene_index]

    def _partners(self, s: int, a: int) -> np.ndarray:
        row = self.overlap(s)[a]
        ok = (row >= self.min_overlap) & (row <= self.max_overlap)
        ok[a] = False
        return np.flatnonzero(ok)

    def build(self) -> MultiViewDataset:
        """Compute every overlap table and keep only references with enough partners."""
        refs = []
        for s, sub in enumerate(self.subsets):
            for a in range(len(sub)):
                if len(self._partners(s, a)) >= self.num_views - 1:
                    refs.append((s, a))
        if not refs:
            raise Tune3DError(
                f"MultiViewDataset: no frame has {self.num_views - 1} partners with overlap "
                f">= {self.min_overlap}"
            )
        self._refs = refs
        return self

    def __len__(self) -> int:
        if self._refs is None:
            self.build()
        return len(self._refs)

    def __getitem__(self, idx: int) -> list[dict]:
        if self._refs is None:
            self.build()
        s, a = self._refs[idx]
        rng = np.random.default_rng([self.seed, idx])
        partners = rng.choice(self._partners(s, a), self.num_views - 1, replace=False)
        out = []
        for k in [a, *partners.tolist()]:
            i = self.subsets[s][k]
            item = view_item(self.scenes[s][i], self.resolution)
            item["scene_index"], item["frame_index"] = s, i
            out.append(item)
        return out


class ImageFolderDataset(Dataset):
    """Unlabeled RGB images (files or folders searched recursively) resized to ``resolution`` (H, W).

    Items: ``{"image": (3, H, W) float32 [0, 1], "path": str}``.
    """

    def __init__(
        self, paths: str | Path | Sequence[str | Path], resolution: tuple[int, int] | None = None
    ) -> None:
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files: list[Path] = []
        for p in map(Path, paths):
            if p.is_dir():
                files += sorted(
                    f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()
                )
            elif p.is_file():
                files.append(p)
            else:
                raise Tune3DError(f"{p}: no such file or folder")
        if not files:
            exts = ", ".join(IMAGE_EXTENSIONS)
            raise Tune3DError(f"ImageFolderDataset: no images ({exts}) under {[str(p) for p in paths]}")
        self.files = files
        self.resolution = None if resolution is None else (int(resolution[0]), int(resolution[1]))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, idx: int) -> dict:
        img = ImageFileSource(self.files[idx]).load()
        if self.resolution is not None:
            img = resize_array(img, *self.resolution, "image")
        return {
            "image": torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0),
            "path": str(self.files[idx]),
        }
