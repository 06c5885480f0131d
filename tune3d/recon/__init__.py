"""Feed-forward 3D reconstruction models (DUSt3R, MASt3R, CUT3R, VGGT) behind one interface.

>>> model = create_model("dust3r_vitl_512_dpt", weights="DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")
>>> out = model(images)  # images B,S,3,H,W in [0, 1] -> ReconOutput

Layout (as timm's): ``_registry`` holds the name -> factory table and imports no model file; each
family module registers its configurations; ``models`` imports every family; ``_factory`` builds one.
"""

from __future__ import annotations

from tune3d.recon._factory import create_model
from tune3d.recon._registry import ModelEntry, get_entry, list_models, register_model
from tune3d.recon.global_alignment import GlobalAlignment, global_alignment
from tune3d.recon.interface import ReconModel, ReconOutput
from tune3d.recon.models import CUT3R, VGGT, DUSt3R, MASt3R

__all__ = [
    "CUT3R",
    "VGGT",
    "DUSt3R",
    "GlobalAlignment",
    "MASt3R",
    "ModelEntry",
    "ReconModel",
    "ReconOutput",
    "create_model",
    "get_entry",
    "global_alignment",
    "list_models",
    "register_model",
]
