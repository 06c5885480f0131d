"""Lift many scenes: one output folder per scene, scenes sharded over the processes of a launch.

Under ``torchrun`` / ``accelerate launch`` every process reads ``RANK`` / ``WORLD_SIZE`` (and ``LOCAL_RANK``
for its GPU) and lifts its own scenes ``scenes[rank::world_size]``; scenes are independent, so no collective
operation (and no process group) is needed. Finished scenes are skipped and interrupted ones resume, so the
same command can simply be run again after a crash or with more processes.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tune3d.data import load_scene
from tune3d.engine.devices import dist_env
from tune3d.splatting.lift import lift_scene

logger = logging.getLogger(__name__)


def shard(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """The items of process ``rank``: round-robin, so the shards are disjoint and cover ``items``."""
    return list(items[rank::world_size])


def scene_out_dirs(scene_paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> list[Path]:
    """Output folder per scene: ``out`` itself for a single scene, else ``out/<scene folder name>``
    (made unique with ``_<i>`` when two scenes share a name)."""
    out = Path(out)
    if len(scene_paths) == 1:
        return [out]
    names: list[str] = []
    for p in scene_paths:
        p = Path(p)
        base = (
            re.sub(r"[^A-Za-z0-9_.-]+", "_", (p.name if p.name not in ("", ".") else p.resolve().name))
            or "scene"
        )
        names.append(base)
    dirs = []
    for i, n in enumerate(names):
        dirs.append(out / (n if names.count(n) == 1 else f"{n}_{i}"))
    return dirs


def lift_scenes(
    scene_paths: Sequence[str | os.PathLike],
    backbone,
    cfg,
    out: str | os.PathLike,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    overwrite: bool = False,
) -> dict[str, dict[str, Any]]:
    """Lift this process's share of ``scene_paths``; returns ``{scene out dir: metrics}`` for them.

    ``rank`` / ``world_size`` default to the launcher environment (:func:`dist_env`).
    """
    env_rank, env_world, _ = dist_env()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    dirs = scene_out_dirs(scene_paths, out)
    mine = shard(list(zip(scene_paths, dirs)), rank, world_size)
    results: dict[str, dict[str, Any]] = {}
    for path, out_dir in mine:
        scene = load_scene(path)
        logger.info("rank %d/%d: lifting %s -> %s", rank, world_size, path, out_dir)
        results[str(out_dir)] = lift_scene(
            scene,
            backbone,
            cfg,
            out_dir,
            overwrite=overwrite,
            progress_position=rank if world_size > 1 else 0,
        )
    return results
