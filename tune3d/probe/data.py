"""Probe samples from ``tune3d.data`` scenes: lazy ``(image, target)`` pairs for :class:`FeatureBank`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tune3d.errors import Tune3DError


class SceneSamples(Sequence):
    """``(image HxWx3 uint8, target HxW)`` for the frames ``indices`` (default all) of ``scene``.

    ``task="semseg"`` gives ``frame.semantics()`` (int64, 255 ignore); ``task="depth"`` gives
    ``frame.depth()`` (float32 metres, 0 invalid). Frames are read lazily, one at a time.
    """

    def __init__(self, scene: Any, task: str, indices: Sequence[int] | None = None) -> None:
        if task not in ("semseg", "depth"):
            raise Tune3DError(f"unknown probe task {task!r}; choose semseg or depth")
        self.scene = scene
        self.task = task
        self.indices = list(range(len(scene))) if indices is None else [int(i) for i in indices]
        have = scene.has_semantics if task == "semseg" else scene.has_depth
        if not have:
            what = "semantic labels" if task == "semseg" else "depth"
            raise Tune3DError(
                f"{getattr(scene, 'path', None) or scene.name}: scene has no {what} for a {task} probe"
            )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        if isinstance(i, slice):
            raise TypeError("SceneSamples does not support slicing; pass indices instead")
        frame = self.scene[self.indices[i]]
        target = frame.semantics() if self.task == "semseg" else frame.depth()
        if target is None:
            raise Tune3DError(f"{frame.name}: frame has no {'labels' if self.task == 'semseg' else 'depth'}")
        return frame.image(), target
