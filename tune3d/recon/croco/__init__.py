"""CroCo-family feed-forward reconstruction models (DUSt3R, MASt3R, CUT3R), official-checkpoint compatible."""

from tune3d.recon.croco.base import CroCoConfig, CroCoEncoderModel
from tune3d.recon.croco.cut3r import CUT3R, CUT3RConfig, CUT3RState
from tune3d.recon.croco.dust3r import DUSt3R
from tune3d.recon.croco.mast3r import MASt3R

__all__ = ["CUT3R", "CUT3RConfig", "CUT3RState", "CroCoConfig", "CroCoEncoderModel", "DUSt3R", "MASt3R"]
