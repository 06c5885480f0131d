"""Atomic, resumable checkpoints.

Layout: ``<out>/checkpoints/step_<NNNNNNNN>/`` with ``model.safetensors`` (trainable state),
``optimizer.pt`` (optimizer + scheduler state, read back with ``weights_only=True``) and
``state.json`` (step, epoch, anything JSON-able). A step folder is written under a temporary
name and renamed when complete, so an interrupted save never looks like a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from tune3d.io import load_safetensors, save_safetensors_atomic, torch_load_safe


class CheckpointManager:
    """Save/restore training state under ``out_dir/checkpoints``, keeping the newest ``keep`` checkpoints."""

    def __init__(self, out_dir: str | os.PathLike, keep: int = 2) -> None:
        self.root = Path(out_dir) / "checkpoints"
        self.keep = keep

    def _dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        dirs = [p for p in self.root.iterdir() if p.is_dir() and p.name.startswith("step_")]
        return sorted(dirs, key=lambda p: int(p.name.split("_")[1]))

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or None."""
        dirs = [d for d in self._dirs() if (d / "state.json").is_file()]
        return dirs[-1] if dirs else None

    def save(
        self,
        step: int,
        tensors: dict[str, torch.Tensor],
        optim_state: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
    ) -> Path:
        """Write one checkpoint; ``tensors`` is a flat name -> tensor dict (e.g. a state dict)."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step_{step:08d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:08d}.", dir=self.root))
        try:
            save_safetensors_atomic(_dedupe(tensors), tmp / "model.safetensors")
            if optim_state is not None:
                torch.save(optim_state, tmp / "optimizer.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step, **(state or {})}, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        for old in self._dirs()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, path: str | os.PathLike | None = None) -> tuple[dict, dict | None, dict] | None:
        """Return ``(tensors, optim_state, state)`` of ``path`` or of the latest checkpoint; None if none."""
        path = Path(path) if path is not None else self.latest()
        if path is None:
            return None
        tensors = load_safetensors(path / "model.safetensors")
        optim = torch_load_safe(path / "optimizer.pt") if (path / "optimizer.pt").is_file() else None
        state = json.loads((path / "state.json").read_text())
        return tensors, optim, state


def _dedupe(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared storage; clone tensors that alias an earlier one."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr() if v.device.type != "meta" else id(v)
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out
