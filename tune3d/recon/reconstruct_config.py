"""Settings of one ``tune3d reconstruct`` run (what ``--config`` reads and ``config.yaml`` records)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class ReconstructConfig:
    """``size``: long side (CroCo) or width (VGGT), None = the model's training size; ``mode``: VGGT
    preprocessing (crop | pad); ``conf_threshold``: None = the family's default; ``align``: global | none
    (pairwise models); ``graph``: pair graph spec; ``export``: comma-separated extra exports."""

    size: int | None = None
    mode: str = "crop"
    conf_threshold: float | None = None
    previews: bool = True
    device: str = "auto"
    align: str = "global"
    graph: str = "complete"
    niter: int = 300
    export: str = ""


# What a run's config.yaml records beside the ReconstructConfig fields (inputs, what was run).
RECORD_KEYS = (
    *("model", "weights", "adapter", "images", "camera_source", "pairs", "alignment", "poses", "intrinsics"),
)


def run_record(cfg: ReconstructConfig, conf_threshold: float, **record: Any) -> dict[str, Any]:
    """``config.yaml`` of a run: ``record`` (the :data:`RECORD_KEYS`) then ``cfg``'s fields, with the
    confidence threshold that was applied in place of ``cfg.conf_threshold`` (None = a family default)."""
    unknown = set(record) - set(RECORD_KEYS)
    if unknown:
        raise ValueError(f"not a reconstruct record key: {', '.join(sorted(unknown))}")
    return {**record, **dataclasses.asdict(dataclasses.replace(cfg, conf_threshold=conf_threshold))}
