"""MASt3R (naver/mast3r ``AsymmetricMASt3R``): DUSt3R with metric pointmaps and local descriptors.

Same backbone and decoders as :class:`~tune3d.recon.croco.dust3r.DUSt3R`; each ``downstream_head{1,2}`` is a
``catmlp+dpt`` head (``output_mode='pts3d+desc24'``, ``two_confs=True``, ``desc_mode='norm'``,
``desc_conf_mode=('exp', 0, inf)``). Pointmaps are metric (trained with ``'?avg_dis'``).

``extras["desc"]`` ``B,2,H,W,24`` (unit-norm) and ``extras["desc_conf"]`` ``B,2,H,W`` hold the descriptors.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from tune3d.recon._registry import register_model
from tune3d.recon.croco.base import CroCoConfig
from tune3d.recon.croco.dust3r import TINY, DUSt3R
from tune3d.recon.croco.heads import CatMLPDPTPts3d

MAST3R_512 = CroCoConfig(head_type="catmlp+dpt")


class MASt3R(DUSt3R):
    family = "mast3r"
    metric = True
    desc_dim = 24

    def _make_head(self) -> nn.Module:
        c = self.cfg
        if c.head_type != "catmlp+dpt":
            raise ValueError(f"MASt3R head_type must be 'catmlp+dpt', got {c.head_type!r}")
        return CatMLPDPTPts3d(
            c.enc_embed_dim,
            c.dec_embed_dim,
            c.dec_depth,
            c.patch_size,
            desc_dim=self.desc_dim,
            **c.dpt_kwargs(),
        )


def _factory(base: CroCoConfig):
    def make(**overrides) -> MASt3R:
        return MASt3R(dataclasses.replace(base, **overrides))

    return make


register_model(
    "mast3r_vitl_512_catmlpdpt_metric",
    "mast3r",
    official=True,
    description="MASt3R ViT-L/16 encoder, ViT-B decoder, catmlp+dpt heads (metric points + 24-d descriptors)",
    weights_hint="official file: MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth",
)(_factory(MAST3R_512))
register_model(
    "mast3r_tiny",
    "mast3r",
    official=False,
    description="tiny random MASt3R (enc 96/4/3, dec 64/3/2, small catmlp+dpt) for tests and demos",
)(_factory(dataclasses.replace(TINY, head_type="catmlp+dpt")))
