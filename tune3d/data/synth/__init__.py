"""Synthetic labelled indoor scenes: procedural furnished rooms rendered by ray casting.

``generate_scene(seed, num_views, height, width)`` returns an in-memory :class:`~tune3d.data.Scene`
with RGB, exact metric z-depth, semantic labels (``CLASS_NAMES``), OpenCV ``c2w`` poses, a coloured
surface point cloud and train/test splits (every ``test_every``-th view is "test"). Everything is a
deterministic function of the seed. World frame: z up, floor at z = 0, metres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from tune3d.data.native import write_scene
from tune3d.data.scene import Scene, in_memory_frame
from tune3d.data.synth.render import render_view, sample_points
from tune3d.data.synth.room import CLASS_NAMES, Room, make_room
from tune3d.errors import Tune3DError
from tune3d.geometry import look_at
from tune3d.io import atomic_path, read_json, write_json
from tune3d.viz.images import colorize_depth, colorize_labels

__all__ = [
    "CLASS_NAMES",
    "Room",
    "camera_path",
    "contact_sheet",
    "generate_room",
    "generate_scene",
    "make_K",
    "render_view",
    "synth_dataset",
    "write_scene",
]


def _rng(seed: int | Sequence[int]) -> np.random.Generator:
    return np.random.default_rng(seed)


def generate_room(seed: int | Sequence[int]) -> Room:
    """The furnished room for ``seed`` (same seed -> same room as :func:`generate_scene`)."""
    return make_room(_rng(seed))


def make_K(height: int, width: int, hfov_deg: float) -> np.ndarray:
    """Square-pixel pinhole intrinsics with the principal point at the image centre."""
    f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def _look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    return look_at(torch.from_numpy(eye), torch.from_numpy(target)).numpy()


def camera_path(room: Room, num_views: int, rng: np.random.Generator) -> np.ndarray:
    """(V, 4, 4) OpenCV c2w poses on a smooth loop between the wall furniture and the table.

    Cameras sit at eye height (1.3-1.7 m) on a jittered ellipse around the room centre and look
    across the room at furniture on the far side, with a slowly swinging heading and pitch.
    """
    Lx, Ly, _ = room.size
    centre = np.array([Lx / 2, Ly / 2])
    ax, ay = max(0.35, Lx / 2 - 1.05), max(0.35, Ly / 2 - 1.05)
    theta0 = rng.uniform(0, 2 * np.pi)
    ph = rng.uniform(0, 2 * np.pi, 6)
    arc = rng.uniform(0.6, 1.0) * 2 * np.pi  # not always a full loop
    poses = []
    for k in range(num_views):
        s = k / max(num_views, 1)
        th = theta0 + arc * s + 0.05 * np.sin(6 * np.pi * s + ph[0])
        r = 1.0 + 0.12 * np.sin(4 * np.pi * s + ph[1])
        xy = centre + r * np.array([ax * np.cos(th), ay * np.sin(th)])
        z = 1.5 + 0.15 * np.sin(2 * np.pi * s * 3 + ph[2])
        inward = centre - xy
        inward /= np.linalg.norm(inward) + 1e-9
        swing = 0.75 * np.sin(2 * np.pi * s * 2 + ph[3]) + 0.1 * np.sin(2 * np.pi * s * 7 + ph[4])
        c, sn = np.cos(swing), np.sin(swing)
        look = np.array([c * inward[0] - sn * inward[1], sn * inward[0] + c * inward[1]])
        dist = rng.uniform(2.3, 2.7)
        target_z = 0.75 + 0.25 * np.sin(2 * np.pi * s * 2.5 + ph[5])
        eye = np.array([*xy, z])
        target = np.array([*(xy + dist * look), target_z])
        for p in room.prims:  # never start inside an object (tall items near the walls)
            if p.contains(eye[None], margin=0.15)[0]:
                eye[:2] += 0.5 * (centre - eye[:2]) / (np.linalg.norm(centre - eye[:2]) + 1e-9)
        poses.append(_look_at(eye, target))
    return np.stack(poses)


def generate_scene(
    seed: int | Sequence[int] = 0,
    num_views: int = 24,
    height: int = 240,
    width: int = 320,
    *,
    num_points: int = 50_000,
    test_every: int = 8,
    hfov_deg: float | None = None,
    name: str | None = None,
) -> Scene:
    """Render a procedural room: ``num_views`` frames at ``height x width`` with depth and labels.

    ``hfov_deg`` defaults to a seeded value in [60, 75] degrees. Frames with index ``k % test_every
    == test_every // 2`` form the "test" split, the rest "train" (``test_every <= 0``: all train).
    """
    if num_views <= 0 or height <= 0 or width <= 0:
        raise Tune3DError(
            f"synthetic scene needs positive views/size, got {num_views} views at {height}x{width}"
        )
    rng = _rng(seed)
    room = make_room(rng)
    hfov = float(rng.uniform(60, 75)) if hfov_deg is None else float(hfov_deg)
    K = make_K(height, width, hfov)
    poses = camera_path(room, num_views, rng)
    frames = []
    for k, c2w in enumerate(poses):
        out = render_view(room, c2w, K, height, width)
        frames.append(in_memory_frame(f"view_{k:04d}", c2w, K, out["image"], out["depth"], out["semantics"]))
    pts, cols, _ = sample_points(room, num_points, rng) if num_points > 0 else (None, None, None)
    if test_every > 0:
        test = [k for k in range(num_views) if k % test_every == test_every // 2]
    else:
        test = []
    splits = {"train": [k for k in range(num_views) if k not in set(test)], "test": test}
    if name is None:
        name = f"synth_{seed}" if isinstance(seed, (int, np.integer)) else "synth_" + "_".join(map(str, seed))
    return Scene(
        name=name,
        frames=frames,
        splits=splits,
        class_names=list(CLASS_NAMES),
        points=pts,
        point_colors=cols,
        format="synth",
    )


def synth_dataset(
    out: str | Path,
    scenes: int = 2,
    views: int = 24,
    resolution: tuple[int, int] = (240, 320),
    seed: int = 0,
    *,
    num_points: int = 50_000,
    overwrite: bool = False,
    progress: bool = False,
) -> list[Path]:
    """Write ``scenes`` synthetic scenes as ``out/scene_000``, ... (scene i uses seed ``(seed, i)``).

    Resumable: scenes whose ``scene.json`` exists are kept when ``dataset.json`` records the same
    parameters; different parameters need ``overwrite=True``.
    """
    out = Path(out)
    H, W = int(resolution[0]), int(resolution[1])
    params = {
        "scenes": int(scenes),
        "views": int(views),
        "resolution": [H, W],
        "seed": int(seed),
        "num_points": int(num_points),
    }
    index = out / "dataset.json"
    if index.is_file() and not overwrite:
        old = read_json(index).get("params")
        if old != params:
            raise Tune3DError(
                f"{index}: existing dataset has parameters {old}, not {params} (use --overwrite)"
            )
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise Tune3DError(f"{out}: folder is not empty (pass --overwrite to replace it)")
    paths = []
    iterator = range(scenes)
    if progress:
        iterator = tqdm(iterator, desc="synth scenes", unit="scene")
    for i in iterator:
        path = out / f"scene_{i:03d}"
        paths.append(path)
        if (path / "scene.json").is_file() and not overwrite:
            continue
        scene = generate_scene((seed, i), views, H, W, num_points=num_points, name=f"scene_{i:03d}")
        write_scene(scene, path, overwrite=True)
    write_json(
        index,
        {
            "format": "tune3d-synth-dataset",
            "params": params,
            "scenes": [p.name for p in paths],
            "class_names": CLASS_NAMES,
        },
    )
    return paths


def contact_sheet(
    out: str | Path,
    seeds: Sequence[int] = (0, 1),
    views: int = 4,
    height: int = 120,
    width: int = 160,
    path_views: int = 24,
) -> Path:
    """Save a PNG grid: one row per (seed, view) with RGB | depth | labels | normals tiles."""
    rows = []
    for seed in seeds:
        rng = _rng(seed)
        room = make_room(rng)
        K = make_K(height, width, float(rng.uniform(60, 75)))
        poses = camera_path(room, path_views, rng)
        for k in np.linspace(0, path_views - 1, views).round().astype(int):
            r = render_view(room, poses[k], K, height, width)
            tiles = [
                r["image"],
                colorize_depth(r["depth"], vmin=0.0, vmax=7.0),
                colorize_labels(r["semantics"]),
                ((r["normals"] * 0.5 + 0.5) * 255).astype(np.uint8),
            ]
            rows.append(
                np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], 1)
            )
    sheet = np.concatenate(rows, 0)
    out = Path(out)
    with atomic_path(out) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG", optimize=True)
    return out
