"""On-disk cache of dense features (one safetensors file per image).

An entry's path encodes everything that changes the features: the backbone name, the weights identity
(file digest, hub revision or random-init seed), a hash of the preprocessing (input size, resize mode,
layers, norm, precision) and the image's identity (a content hash of its pixels, or path+mtime+size).
Layout: ``ROOT/<backbone>/<weights>/<preprocessing-hash>/<id[:2]>/<id>.safetensors``; each
preprocessing folder also holds a readable ``preprocessing.json``.

Several processes may share one cache: entries are written to a unique temporary file and renamed
into place (``tune3d.io``), so a reader sees either nothing or a complete file; an unreadable entry
(truncated by a crash, foreign file) is a miss and is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from tune3d.io import save_safetensors_atomic, write_json

_SAFE = re.compile(r"[^A-Za-z0-9_.@-]+")


def image_digest(image: np.ndarray | torch.Tensor) -> str:
    """Content hash of an image array (shape, dtype and bytes): the identity of an image in the cache."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}|{arr.dtype}|".encode())
    h.update(arr.data)
    return h.hexdigest()


def path_digest(path: str | os.PathLike) -> str:
    """Cheap identity of an image file: absolute path, modification time and size (no reading)."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.blake2b(f"{p}|{st.st_mtime_ns}|{st.st_size}".encode(), digest_size=16).hexdigest()


def preprocessing_digest(prep: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(prep, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FeatureCache:
    """Feature cache for one (backbone, weights, preprocessing) triple under ``root``.

    ``get(image_id)`` returns the stored ``name -> tensor`` dict or ``None``; ``put(image_id, tensors)``
    stores one. ``hits``/``misses`` count lookups.
    """

    def __init__(
        self, root: str | os.PathLike, backbone: str, weights_id: str, preprocessing: dict[str, Any]
    ):
        self.preprocessing = dict(preprocessing)
        self.key = preprocessing_digest(self.preprocessing)
        self.dir = Path(root) / _SAFE.sub("_", backbone) / _SAFE.sub("_", weights_id) / self.key
        self.hits = 0
        self.misses = 0
        self._meta = {"backbone": backbone, "weights": weights_id, "preprocessing": self.key}
        if not (self.dir / "preprocessing.json").is_file():
            write_json(self.dir / "preprocessing.json", {**self._meta, **self.preprocessing})

    def path(self, image_id: str) -> Path:
        return self.dir / image_id[:2] / f"{image_id}.safetensors"

    def get(self, image_id: str) -> dict[str, torch.Tensor] | None:
        path = self.path(image_id)
        try:
            with safe_open(str(path), framework="pt") as f:
                if (f.metadata() or {}).get("preprocessing") != self.key:
                    raise ValueError("foreign entry")
                out = {k: f.get_tensor(k) for k in f.keys()}
        except Exception:  # missing, truncated or foreign: recompute
            self.misses += 1
            return None
        self.hits += 1
        return out

    def put(self, image_id: str, tensors: dict[str, torch.Tensor]) -> None:
        save_safetensors_atomic(tensors, self.path(image_id), metadata={**self._meta, "image": image_id})
