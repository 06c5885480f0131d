"""Scenes: posed RGB(-D) frames with optional labels and point clouds, readers, synthetic rooms, datasets.

``load_scene(path)`` auto-detects the tune3d format, 7-Scenes, nerfstudio ``transforms.json``, COLMAP
sparse models and ScanNet++ DSLR captures and returns one :class:`Scene` abstraction.
"""

from tune3d.data.native import write_scene
from tune3d.data.points import scene_point_cloud
from tune3d.data.readers import detect_format, find_scene_dirs, load_scene, load_scenes
from tune3d.data.scene import IGNORE_LABEL, Frame, Scene, in_memory_frame, parse_frame_range

__all__ = [
    "IGNORE_LABEL",
    "Frame",
    "Scene",
    "detect_format",
    "find_scene_dirs",
    "in_memory_frame",
    "load_scene",
    "load_scenes",
    "parse_frame_range",
    "scene_point_cloud",
    "write_scene",
]
