"""Per-view stage II target cache: the reduced target and mask of a (scene, view), rendered once.

In stage II the lifted Gaussians and their decoder are frozen, so a view's target ``[C,h,w]`` and mask
``[1,h,w]`` (on the token grid, before the random flip) never change within a run or between runs on the
same lifted scenes. :class:`TargetCache` keeps them in memory up to a byte budget (LRU; reused across
epochs and by the before/after validation passes) and, given a directory, as one safetensors file per view
(reused across runs). Its key (:func:`target_key`) covers everything that defines a target: the lifted
files (:func:`scene_fingerprint`), the camera, render size, token grid, mask mode/threshold, raster backend
and :data:`TARGET_FORMAT`; anything else changed means another key, never a stale target.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from tune3d.errors import Tune3DError
from tune3d.io import save_safetensors_atomic
from tune3d.splatting.gaussians import DECODER_FILE, GAUSSIANS_FILE

log = logging.getLogger(__name__)

TARGET_FORMAT = 1  # bump when the way targets are computed changes (invalidates every cached file)


def scene_fingerprint(lifted_dir: str | os.PathLike) -> str:
    """Identity of a lifted scene's frozen state: the decoder file's bytes (small), and the Gaussians file's
    size, modification time and safetensors header (hashing every Gaussian of 230 scenes would cost more
    than rendering them). Re-lifting rewrites the file, so its fingerprint changes."""
    d = Path(lifted_dir)
    h = hashlib.sha256()
    g = d / GAUSSIANS_FILE
    st = g.stat()
    with open(g, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        h.update(f.read(min(n, 100_000_000)))
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    h.update((d / DECODER_FILE).read_bytes())
    return h.hexdigest()[:32]


def target_key(
    fingerprint: str,
    view: int,
    viewmat: Tensor,
    K: Tensor,
    size: tuple[int, int],
    grid: tuple[int, int],
    mask: str,
    threshold: float,
    backend: str,
) -> str:
    """Hex key of one view's target (see the module doc for what it covers)."""
    h = hashlib.sha256()
    fields = {
        "format": TARGET_FORMAT,
        "scene": fingerprint,
        "view": int(view),
        "size": [int(v) for v in size],
        "grid": [int(v) for v in grid],
        "mask": mask,
        "threshold": float(threshold) if mask == "binary" else None,
        "backend": backend,
    }
    h.update(json.dumps(fields, sort_keys=True).encode())
    h.update(viewmat.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(K.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:40]


class TargetCache:
    """Targets and masks by key: an in-memory LRU bounded by ``budget_bytes`` (0: none) over an optional
    on-disk store ``directory`` (``<key>.safetensors``, written atomically). Tensors are kept on the CPU."""

    def __init__(self, budget_bytes: int, directory: str | os.PathLike | None = None) -> None:
        self.budget_bytes = int(budget_bytes)
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise Tune3DError(f"{self.directory}: cannot create the target cache folder ({e})") from None
        self._items: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()
        self.nbytes = 0
        self.hits = self.disk_hits = self.misses = self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.safetensors"

    def get(self, key: str) -> tuple[Tensor, Tensor] | None:
        """``(target [C,h,w], mask [1,h,w])`` or None. A corrupt file on disk counts as a miss."""
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        path = self.path(key)
        if path is not None and path.is_file():
            try:
                data = load_file(str(path))
                item = (data["target"], data["mask"])
            except (SafetensorError, OSError, KeyError, ValueError) as e:
                log.warning("%s: unreadable cached target (%s); rendering it again", path, e)
            else:
                self.disk_hits += 1
                self._remember(key, item)
                return item
        self.misses += 1
        return None

    def put(self, key: str, target: Tensor, mask: Tensor) -> None:
        item = (target.detach().to("cpu").contiguous(), mask.detach().to("cpu").contiguous())
        path = self.path(key)
        if path is not None:
            save_safetensors_atomic(
                {"target": item[0], "mask": item[1]}, path, {"format": str(TARGET_FORMAT)}
            )
        self._remember(key, item)

    def _remember(self, key: str, item: tuple[Tensor, Tensor]) -> None:
        n = sum(t.numel() * t.element_size() for t in item)
        if n > self.budget_bytes or key in self._items:
            return
        self._items[key] = item
        self.nbytes += n
        while self.nbytes > self.budget_bytes:
            _, old = self._items.popitem(last=False)
            self.nbytes -= sum(t.numel() * t.element_size() for t in old)
            self.evictions += 1

    def stats(self) -> dict[str, int | str | None]:
        return {
            "hits": self.hits,
            "disk_hits": self.disk_hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "resident": len(self),
            "resident_bytes": self.nbytes,
            "budget_bytes": self.budget_bytes,
            "directory": None if self.directory is None else str(self.directory),
        }
