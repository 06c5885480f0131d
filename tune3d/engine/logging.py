"""Run logging: TensorBoard scalars plus an append-only ``metrics.jsonl``, main process only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class RunLogger:
    """Log scalars to ``<out>/tb`` (TensorBoard) and ``<out>/metrics.jsonl``.

    ``enabled=False`` (non-main ranks) makes every call a no-op. On resume, jsonl rows with
    ``step >= resume_step`` are dropped first so the log matches an uninterrupted run.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        enabled: bool = True,
        tensorboard: bool = True,
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            rows = [r for r in self.path.read_text().splitlines() if r.strip()]
            keep = [r for r in rows if json.loads(r).get("step", -1) < resume_step]
            self.path.write_text("".join(r + "\n" for r in keep))
        elif resume_step is None and self.path.is_file():
            self.path.unlink()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"))
            except ImportError:  # tensorboard not installed: jsonl only
                self._tb = None

    def log(self, step: int, **scalars: float) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time(), 3), **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None
