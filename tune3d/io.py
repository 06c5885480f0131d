"""Small I/O helpers shared by every stage: atomic writes, digests, safe checkpoint loading."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save, save_file

from tune3d.errors import Tune3DError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    Readers never see a partially written file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the final file normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, yaml.safe_dump(_plain(obj), sort_keys=False))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Tune3DError(f"{path}: malformed JSON ({e})") from None


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _plain(obj: Any) -> Any:
    """Convert dataclasses / paths / tuples into YAML-safe builtins."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def file_digest(path: str | os.PathLike, algo: str = "sha256", length: int = 16) -> str:
    """Hex digest of a file's bytes (truncated to ``length`` characters)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]


def save_safetensors_atomic(
    tensors: dict, path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Save a flat ``name -> tensor`` dict as safetensors, atomically. Tensors are made contiguous."""
    flat = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        if metadata and len(metadata) > 1:
            # safetensors keeps metadata in a hash map: its order (so the bytes) changes per process.
            tmp.write_bytes(_sorted_metadata(save(flat, metadata=metadata)))
        else:
            save_file(flat, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~_UMASK)  # save_file recreates the file as 0600


def _sorted_metadata(blob: bytes) -> bytes:
    """Re-emit a safetensors blob with its ``__metadata__`` keys sorted (offsets are header-relative)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def load_safetensors(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Load a safetensors file; a missing or truncated file raises :class:`Tune3DError`."""
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found")
    try:
        return load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise Tune3DError(f"{path}: not a readable safetensors file ({e})") from None


def torch_load_safe(path: str | os.PathLike, extra_safe_globals: list | None = None) -> Any:
    """``torch.load(weights_only=True)`` with a clear error; never unpickles arbitrary objects.

    ``extra_safe_globals`` allow-lists specific classes (e.g. ``argparse.Namespace`` for naver checkpoints).
    """
    path = Path(path)
    if not path.is_file():
        raise Tune3DError(f"{path}: file not found")
    try:
        if extra_safe_globals:
            with torch.serialization.safe_globals(extra_safe_globals):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise Tune3DError(
            f"{path}: refusing to unpickle untrusted content ({str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise Tune3DError(f"{path}: not a readable PyTorch checkpoint ({str(e).splitlines()[0]})") from None
