"""FiT3D: 3D-aware fine-tuning of 2D foundation models (ECCV 2024) and test-time feature assembly."""

from tune3d.fit3d.assembly import ASSEMBLY_MODES, AssembledBackbone, build_assembled

__all__ = ["ASSEMBLY_MODES", "AssembledBackbone", "build_assembled"]
