"""Every reconstruction model family; defining each one registers its configurations (see ``_registry``)."""

from tune3d.recon.croco import CUT3R, DUSt3R, MASt3R
from tune3d.recon.vggt import VGGT

__all__ = ["CUT3R", "VGGT", "DUSt3R", "MASt3R"]
