"""Loading official reconstruction checkpoints (all families) into our models, strictly.

Accepted inputs:

- naver-style ``.pth``/``.pt`` files (DUSt3R, MASt3R, CUT3R): a dict with ``model`` (the state dict) and
  ``args`` (an ``argparse.Namespace`` whose ``model`` is the constructor string), maybe ``epoch``, ...
  Read with ``torch.load(weights_only=True)``; ``argparse.Namespace`` is the one extra allow-listed class,
  anything else in the pickle is refused;
- plain state-dict ``.pth``/``.pt``/``.bin`` files (e.g. VGGT's ``model.pt``), also ``{"state_dict": ...}``;
- ``.safetensors`` files, sharded ones through their ``*.safetensors.index.json``;
- Hugging Face model folders (``model.safetensors`` (+ index), ``pytorch_model.bin``, ``model.pt``).

``module.`` prefixes (DDP) are stripped. Tied weights (e.g. DPT's ``scratch.layer_rn.{0..3}`` aliases of
``scratch.layer{1..4}_rn``) are completed from whichever name the file holds, since
``safetensors.torch.save_model`` keeps only one name per tensor. Loading is then ``strict``: any missing,
unexpected or wrongly shaped key raises a one-line :class:`Tune3DError` naming the file.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tune3d.errors import Tune3DError
from tune3d.io import load_safetensors, read_json, torch_load_safe

_FOLDER_CANDIDATES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "model.pt",
    "model.pth",
)


def _resolve(path: Path) -> Path:
    if not path.is_dir():
        return path
    for name in _FOLDER_CANDIDATES:
        if (path / name).is_file():
            return path / name
    raise Tune3DError(f"{path}: folder has no model weights (looked for {', '.join(_FOLDER_CANDIDATES)})")


def _load_sharded(index: Path) -> dict[str, Tensor]:
    weight_map = read_json(index).get("weight_map")
    if not isinstance(weight_map, dict):
        raise Tune3DError(f"{index}: not a safetensors index (no 'weight_map')")
    sd: dict[str, Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        sd.update(load_safetensors(index.parent / shard))
    return sd


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint file or folder -> (state dict with ``module.`` stripped, metadata).

    ``metadata`` holds ``file`` (the resolved path) and, for naver-style files, ``constructor`` (the
    ``args.model`` string) and ``epoch`` when present.
    """
    file = _resolve(Path(path))
    meta: dict[str, Any] = {"file": str(file)}
    if file.name.endswith(".index.json"):
        sd = _load_sharded(file)
    elif file.suffix == ".safetensors":
        sd = load_safetensors(file)
    else:
        obj = torch_load_safe(file, extra_safe_globals=[argparse.Namespace])
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            args = obj.get("args")
            if isinstance(args, argparse.Namespace) and isinstance(getattr(args, "model", None), str):
                meta["constructor"] = args.model
            if "epoch" in obj:
                meta["epoch"] = obj["epoch"]
            sd = obj["model"]
        elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            sd = obj["state_dict"]
        else:
            sd = obj
    if not isinstance(sd, dict) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()
    ):
        raise Tune3DError(f"{file}: no state dict of named tensors found")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd, meta


def alias_groups(model: nn.Module) -> list[list[str]]:
    """Groups of state-dict names that refer to the same parameter or buffer (tied weights)."""
    by_tensor: dict[int, list[str]] = defaultdict(list)
    for name, p in model.named_parameters(remove_duplicate=False):
        by_tensor[id(p)].append(name)
    for name, b in model.named_buffers(remove_duplicate=False):
        by_tensor[id(b)].append(name)
    return [names for names in by_tensor.values() if len(names) > 1]


def _fill_aliases(model: nn.Module, sd: dict[str, Tensor], file: str) -> dict[str, Tensor]:
    sd = dict(sd)
    for group in alias_groups(model):
        present = [n for n in group if n in sd]
        if not present:
            continue
        ref = sd[present[0]]
        for n in present[1:]:
            if sd[n].shape != ref.shape or not torch.equal(sd[n], ref):
                raise Tune3DError(f"{file}: tied weights {present[0]} and {n} differ")
        for n in group:
            sd.setdefault(n, ref)
    return sd


def _describe(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def check_state_dict(
    model: nn.Module, sd: dict[str, Tensor], file: str, name: str, constructor: str = ""
) -> None:
    """Raise a one-line :class:`Tune3DError` unless ``sd`` has exactly the model's keys and shapes."""
    expected = {k: v.shape for k, v in model.state_dict(keep_vars=True).items()}
    missing = sorted(k for k in expected if k not in sd)
    unexpected = sorted(k for k in sd if k not in expected)
    mismatched = sorted(k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k]))
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_describe(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_describe(unexpected)})")
    if mismatched:
        shown = [f"{k}: file {list(sd[k].shape)} vs model {list(expected[k])}" for k in mismatched[:2]]
        more = ", ..." if len(mismatched) > 2 else ""
        parts.append(f"{len(mismatched)} shape mismatches ({'; '.join(shown)}{more})")
    saved = f"; the file was saved for {constructor[:120]}" if constructor else ""
    raise Tune3DError(f"{file}: checkpoint does not match model {name!r}: {', '.join(parts)}{saved}")


def load_weights(model: nn.Module, path: str | os.PathLike, name: str = "", assign: bool = False) -> dict:
    """Load an official checkpoint into ``model`` strictly; returns the checkpoint metadata.

    With ``assign=True`` (for a model built on the meta device) the file's tensors become the parameters,
    cast to the model's floating dtype.
    """
    sd, meta = read_checkpoint(path)
    file = meta["file"]
    sd = _fill_aliases(model, sd, file)
    check_state_dict(model, sd, file, name or type(model).__name__, meta.get("constructor", ""))
    if assign:
        current = model.state_dict(keep_vars=True)
        sd = {k: v.to(current[k].dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=assign)
    return meta
