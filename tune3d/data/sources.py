"""Lazy pixel sources: where a frame's image, depth or labels come from, and how they are decoded.

Every ``load()`` validates what it read (size against the frame's intrinsics, NaN/inf/negative depth)
and raises :class:`Tune3DError` naming the file, so corrupt data never reaches a model silently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tune3d.errors import Tune3DError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # RGB files we read


class Source:
    """Produces one array on demand. ``path`` is the backing file (None when in memory)."""

    path: Path | None = None

    def load(self) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class ArraySource(Source):
    """An array held in memory (synthetic scenes). ``load`` returns a copy so callers may mutate it."""

    def __init__(self, array: np.ndarray, name: str = "array") -> None:
        self.array = array
        self.name = name

    def load(self) -> np.ndarray:
        return self.array.copy()


def _check_size(arr: np.ndarray, shape: tuple[int, int] | None, path: Path, what: str) -> None:
    if shape is not None and tuple(arr.shape[:2]) != tuple(shape):
        raise Tune3DError(
            f"{path}: {what} is {arr.shape[1]}x{arr.shape[0]} but the camera says {shape[1]}x{shape[0]}"
        )


def _open_pil(path: Path):
    try:
        im = Image.open(path)
        im.load()
        return im
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise Tune3DError(f"{path}: unreadable image ({e})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, reading only its header."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except FileNotFoundError:
        raise Tune3DError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise Tune3DError(f"{path}: unreadable image ({e})") from None


class ImageFileSource(Source):
    """An RGB image file (PNG/JPEG/...), decoded to (H, W, 3) uint8."""

    def __init__(self, path: str | Path, shape: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.shape = shape

    def load(self) -> np.ndarray:
        im = _open_pil(self.path)
        if im.mode in ("I;16", "I;16B", "I", "F"):
            raise Tune3DError(f"{self.path}: expected an 8-bit colour image, got mode {im.mode}")
        arr = np.array(im.convert("RGB"), dtype=np.uint8)  # writable copy (torch.from_numpy needs it)
        _check_size(arr, self.shape, self.path, "image")
        return arr


def _load_npy(path: Path, what: str) -> np.ndarray:
    """A ``.npy`` array without unpickling; a missing or unreadable file is a user error naming ``what``."""
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise Tune3DError(f"{path}: unreadable .npy {what} ({e})") from None


def _check_depth(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise Tune3DError(f"{path}: depth must be a single-channel HxW map, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise Tune3DError(f"{path}: depth has NaN or inf values")
    if (arr < 0).any():
        raise Tune3DError(f"{path}: depth has negative values")
    return arr


class DepthFileSource(Source):
    """Depth from a file: 16-bit PNG (``value * scale`` metres) or ``.npy`` (float, times ``scale``).

    Stored values listed in ``invalid`` (e.g. 65535 in 7-Scenes) become 0 = invalid.
    """

    def __init__(
        self,
        path: str | Path,
        scale: float = 1.0,
        shape: tuple[int, int] | None = None,
        invalid: tuple[int, ...] = (),
    ) -> None:
        self.path = Path(path)
        self.scale = float(scale)
        self.shape = shape
        self.invalid = tuple(invalid)

    @property
    def encoding(self) -> str:
        return "npy" if self.path.suffix.lower() == ".npy" else "png16"

    def load_raw(self) -> np.ndarray:
        """Stored values before scaling (uint16/float), invalid markers untouched."""
        if self.path.suffix.lower() == ".npy":
            arr = _load_npy(self.path, "depth")
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise Tune3DError(f"{self.path}: depth dtype {arr.dtype} is not numeric")
        else:
            im = _open_pil(self.path)
            if im.mode not in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                raise Tune3DError(f"{self.path}: expected a 16-bit depth PNG, got mode {im.mode}")
            arr = np.asarray(im)
        _check_size(arr, self.shape, self.path, "depth")
        return arr

    def load(self) -> np.ndarray:
        raw = self.load_raw()
        if np.issubdtype(raw.dtype, np.floating):
            raw = _check_depth(raw.astype(np.float32, copy=False), self.path)
        mask = np.zeros(raw.shape, dtype=bool)
        for v in self.invalid:
            mask |= raw == v
        depth = (
            raw.astype(np.float32) if self.scale == 1.0 else raw.astype(np.float32) * np.float32(self.scale)
        )
        depth[mask] = 0
        return _check_depth(depth, self.path)


class LabelFileSource(Source):
    """Semantic labels from a single-channel 8/16-bit PNG (255 = ignore) or ``.npy``, as (H, W) int64."""

    def __init__(self, path: str | Path, shape: tuple[int, int] | None = None) -> None:
        self.path = Path(path)
        self.shape = shape

    def load(self) -> np.ndarray:
        if self.path.suffix.lower() == ".npy":
            arr = _load_npy(self.path, "labels")
            if not np.issubdtype(arr.dtype, np.integer):
                raise Tune3DError(f"{self.path}: labels must be integers, got {arr.dtype}")
        else:
            im = _open_pil(self.path)
            if im.mode not in ("L", "P", "I;16", "I;16B", "I;16L", "I"):
                raise Tune3DError(f"{self.path}: expected a single-channel label PNG, got mode {im.mode}")
            arr = np.asarray(im)
        if arr.ndim != 2:
            raise Tune3DError(f"{self.path}: labels must be HxW, got shape {arr.shape}")
        if (arr < 0).any():
            raise Tune3DError(f"{self.path}: labels have negative values")
        _check_size(arr, self.shape, self.path, "labels")
        return arr.astype(np.int64)


def nearest_indices(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel centre for nearest-neighbour resampling."""
    return np.minimum(((np.arange(dst) + 0.5) * (src / dst)).astype(np.int64), src - 1)


def resize_array(arr: np.ndarray, height: int, width: int, kind: str) -> np.ndarray:
    """Resize an image (area when shrinking, bilinear when enlarging) or depth/labels (nearest)."""
    h, w = arr.shape[:2]
    if (h, w) == (height, width):
        return arr
    if kind == "image":
        resample = Image.Resampling.BOX if (height <= h and width <= w) else Image.Resampling.BILINEAR
        return np.array(Image.fromarray(arr).resize((width, height), resample=resample), dtype=np.uint8)
    # Nearest keeps depth metric and labels discrete (no blending across object boundaries).
    return arr[nearest_indices(h, height)[:, None], nearest_indices(w, width)[None, :]]


class ResizedSource(Source):
    """Another source resampled to ``height x width`` (``kind`` = image | depth | semantics)."""

    def __init__(self, inner: Source, height: int, width: int, kind: str) -> None:
        self.inner = inner
        self.height, self.width, self.kind = height, width, kind
        self.path = None  # the resized pixels are not the file's pixels

    def load(self) -> np.ndarray:
        return np.ascontiguousarray(resize_array(self.inner.load(), self.height, self.width, self.kind))
