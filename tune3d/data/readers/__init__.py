"""Readers for on-disk scene layouts and the auto-detection behind :func:`tune3d.data.load_scene`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tune3d.data.native import is_native, read_native
from tune3d.data.readers.colmap import find_model_dir, read_colmap
from tune3d.data.readers.nerfstudio import read_transforms
from tune3d.data.readers.scannetpp import dslr_dir, read_scannetpp
from tune3d.data.readers.sevenscenes import is_seven_scenes, read_seven_scenes
from tune3d.data.scene import Scene
from tune3d.errors import Tune3DError

# (format name, detector, reader, what the detector looks for) -- tried in this order.
FORMATS: list[tuple[str, Callable[[Path], bool], Callable[[Path], Scene], str]] = [
    ("tune3d", is_native, read_native, "scene.json"),
    ("scannetpp", lambda p: dslr_dir(p) is not None, read_scannetpp, "dslr/nerfstudio/transforms*.json"),
    (
        "nerfstudio",
        lambda p: (p / "transforms.json").is_file(),
        lambda p: read_transforms(p / "transforms.json"),
        "transforms.json",
    ),
    ("7scenes", is_seven_scenes, read_seven_scenes, "camera-intrinsics.txt or frame-XXXXXX.pose.txt"),
    (
        "colmap",
        lambda p: find_model_dir(p) is not None,
        read_colmap,
        "cameras.{bin,txt} in ., sparse/0, sparse, colmap",
    ),
]


def detect_format(path: str | Path) -> str:
    """Name of the layout found at ``path`` (see ``FORMATS``); Tune3DError listing what was looked for."""
    p = Path(path)
    if not p.exists():
        raise Tune3DError(f"{p}: no such file or folder")
    if p.is_file():
        if p.name == "scene.json":
            return "tune3d"
        if p.suffix == ".json":
            return "nerfstudio"
        raise Tune3DError(f"{p}: expected a scene folder, scene.json or a transforms.json file")
    for name, detect, _, _ in FORMATS:
        if detect(p):
            return name
    looked = "; ".join(f"{n}: {what}" for n, _, _, what in FORMATS)
    raise Tune3DError(f"{p}: unknown scene layout (looked for {looked})")


def load_scene(path: str | Path, format: str | None = None) -> Scene:
    """Load any supported layout; ``format`` forces one (tune3d, scannetpp, nerfstudio, 7scenes, colmap)."""
    p = Path(path)
    fmt = format or detect_format(p)
    if p.is_file():
        return read_native(p.parent) if fmt == "tune3d" else read_transforms(p)
    readers = {name: reader for name, _, reader, _ in FORMATS}
    if fmt not in readers:
        raise Tune3DError(f"unknown scene format {fmt!r} (choose from {', '.join(readers)})")
    scene = readers[fmt](p)
    if len(scene) == 0:
        raise Tune3DError(f"{p}: scene has no frames")
    return scene


def find_scene_dirs(path: str | Path) -> list[Path]:
    """``[path]`` if it is a scene, else its immediate sub-folders that are scenes (sorted)."""
    p = Path(path)
    try:
        detect_format(p)
        return [p]
    except Tune3DError:
        if not p.is_dir():
            raise
    subs = []
    for d in sorted(q for q in p.iterdir() if q.is_dir()):
        try:
            detect_format(d)
            subs.append(d)
        except Tune3DError:
            continue
    if not subs:
        detect_format(p)  # re-raise the informative error
    return subs


def load_scenes(path: str | Path) -> list[Scene]:
    """Load one scene, or every scene in the sub-folders of a dataset folder (``synth_dataset`` output)."""
    return [load_scene(d) for d in find_scene_dirs(path)]
