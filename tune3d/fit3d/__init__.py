"""FiT3D: 3D-aware fine-tuning of 2D foundation models (ECCV 2024) and test-time feature assembly.

The training entry point is ``tune3d.fit3d.finetune.finetune`` (not re-exported: it would shadow its module).
"""

from tune3d.fit3d.assembly import ASSEMBLY_MODES, AssembledBackbone, build_assembled
from tune3d.fit3d.export import export_backbone, load_exported_timm
from tune3d.fit3d.finetune import FinetuneConfig, Finetuner
from tune3d.fit3d.lifted import LiftedCache, find_lifted_dirs, open_lifted
from tune3d.fit3d.targets import masked_l1, reduce_to_grid, render_grid_target, render_target

__all__ = [
    "ASSEMBLY_MODES",
    "AssembledBackbone",
    "FinetuneConfig",
    "Finetuner",
    "LiftedCache",
    "build_assembled",
    "export_backbone",
    "find_lifted_dirs",
    "load_exported_timm",
    "masked_l1",
    "open_lifted",
    "reduce_to_grid",
    "render_grid_target",
    "render_target",
]
