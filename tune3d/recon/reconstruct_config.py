"""Settings of one ``tune3d reconstruct`` run (what ``--config`` reads and ``config.yaml`` records)."""

from __future__ import annotations

from dataclasses import dataclass


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
