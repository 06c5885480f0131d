"""DUSt3R (naver/dust3r ``AsymmetricCroCo3DStereo``): two views -> two pointmaps in view 1's frame.

Both images go through the shared CroCo encoder. ``decoder_embed`` maps tokens to the decoder width, then
two decoders run in lockstep: at every depth, view 1's block (``dec_blocks``) attends to itself and
cross-attends to view 2's previous tokens, and view 2's block (``dec_blocks2``) does the reverse. The lists
``[enc_out, dec_1, ..., dec_L]`` (``dec_L`` after ``dec_norm``) feed ``downstream_head1`` (view 1: points in
its own frame) and ``downstream_head2`` (view 2: points in view 1's frame).

Numerics follow the official code with ``landscape_only=False`` and ``PatchEmbedDust3R`` (what its
``load_model`` uses): no portrait transposition. ``mask_token`` is a CroCo pre-training leftover kept only so
released checkpoints load strictly.

Our outputs (:class:`ReconOutput`): ``pts3d`` = both views in view 1's frame (official ``pts3d`` and
``pts3d_in_other_view``) with ``pts3d_conf``; ``pts3d_self`` = **view 1 only** (``B,1,H,W,3``), the only view
whose own-frame pointmap DUSt3R predicts; ``extras["conf"]`` repeats the per-view confidences.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from tune3d.errors import Tune3DError
from tune3d.recon._registry import register_model
from tune3d.recon.croco.base import CroCoConfig, CroCoEncoderModel
from tune3d.recon.croco.heads import DPTPts3d, LinearPts3d
from tune3d.recon.croco.layers import DecoderBlock, init_croco_weights
from tune3d.recon.interface import ReconOutput

DUST3R_512_DPT = CroCoConfig(head_type="dpt")
DUST3R_LINEAR = CroCoConfig(head_type="linear")
# The tiny CroCo backbone of every ``*_tiny`` CroCo-family model (dust3r, mast3r, cut3r).
TINY_BACKBONE = dict(
    enc_embed_dim=96,
    enc_depth=4,
    enc_num_heads=3,
    dec_embed_dim=64,
    dec_depth=3,
    dec_num_heads=2,
    head_type="dpt",
    dpt_layer_dims=(16, 24, 32, 48),
    dpt_feature_dim=32,
    dpt_last_dim=16,
)
TINY = CroCoConfig(**TINY_BACKBONE)


class DUSt3R(CroCoEncoderModel):
    """Pairwise pointmap regression; ``forward`` takes exactly two views."""

    family = "dust3r"
    per_view_head = "pts3d_self"
    metric = False
    num_views = 2

    def __init__(self, cfg: CroCoConfig) -> None:
        super().__init__(cfg)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_embed_dim))
        self.decoder_embed = nn.Linear(cfg.enc_embed_dim, cfg.dec_embed_dim)
        self.dec_blocks = self._make_decoder()
        self.dec_norm = nn.LayerNorm(cfg.dec_embed_dim, eps=1e-6)
        self.dec_blocks2 = self._make_decoder()
        init_croco_weights(self)
        nn.init.normal_(self.mask_token, std=0.02)
        self.downstream_head1 = self._make_head()
        self.downstream_head2 = self._make_head()

    def _make_decoder(self) -> nn.ModuleList:
        c = self.cfg
        return nn.ModuleList(
            [
                DecoderBlock(c.dec_embed_dim, c.dec_num_heads, c.mlp_ratio, rope=self.rope)
                for _ in range(c.dec_depth)
            ]
        )

    def _make_head(self) -> nn.Module:
        c = self.cfg
        if c.head_type == "linear":
            return LinearPts3d(c.dec_embed_dim, c.patch_size)
        if c.head_type == "dpt":
            return DPTPts3d(c.enc_embed_dim, c.dec_embed_dim, c.dec_depth, c.patch_size, **c.dpt_kwargs())
        raise ValueError(f"DUSt3R head_type must be 'linear' or 'dpt', got {c.head_type!r}")

    def decode(self, f1: Tensor, pos1: Tensor, f2: Tensor, pos2: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Encoder tokens of both views -> ``[enc_out, dec_1, ..., norm(dec_L)]`` for each view."""
        out1, out2 = [f1], [f2]
        x1, x2 = self.decoder_embed(f1), self.decoder_embed(f2)
        for blk1, blk2 in zip(self.dec_blocks, self.dec_blocks2):
            x1, x2 = blk1(x1, x2, pos1, pos2), blk2(x2, x1, pos2, pos1)
            out1.append(x1)
            out2.append(x2)
        out1[-1], out2[-1] = self.dec_norm(out1[-1]), self.dec_norm(out2[-1])
        return out1, out2

    def forward_pair(self, images: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Official-style outputs ``(res1, res2)`` for images ``B,2,3,H,W`` in [0, 1].

        ``res1["pts3d"]`` is view 1 in its own frame; ``res2["pts3d"]`` is view 2 in view 1's frame (the
        official ``pts3d_in_other_view``); each has ``conf`` (and MASt3R's ``desc``/``desc_conf``).
        """
        self._check_images(images)
        B, S, _, H, W = images.shape
        if S != 2:
            raise Tune3DError(f"{type(self).__name__} takes exactly 2 views per sample, got {S}")
        feats, pos = self.encode(images.flatten(0, 1))
        feats, pos = feats.unflatten(0, (B, 2)), pos.unflatten(0, (B, 2))
        dec1, dec2 = self.decode(feats[:, 0], pos[:, 0], feats[:, 1], pos[:, 1])
        res1 = self.downstream_head1([t.float() for t in dec1], (H, W))
        res2 = self.downstream_head2([t.float() for t in dec2], (H, W))
        return res1, res2

    def forward(self, images: Tensor) -> ReconOutput:
        res1, res2 = self.forward_pair(images)
        conf = torch.stack([res1["conf"], res2["conf"]], dim=1)
        extras = {"conf": conf}
        for key in ("desc", "desc_conf"):
            if key in res1:
                extras[key] = torch.stack([res1[key], res2[key]], dim=1)
        return ReconOutput(
            pts3d=torch.stack([res1["pts3d"], res2["pts3d"]], dim=1),
            pts3d_conf=conf,
            pts3d_self=res1["pts3d"][:, None],
            pts3d_self_conf=res1["conf"][:, None],
            extras=extras,
        )


def _factory(base: CroCoConfig):
    def make(**overrides) -> DUSt3R:
        return DUSt3R(dataclasses.replace(base, **overrides))

    return make


_HINT = "official file: {}"
register_model(
    "dust3r_vitl_512_dpt",
    "dust3r",
    official=True,
    description="DUSt3R ViT-L/16 encoder, ViT-B decoder, DPT heads, trained at 512",
    weights_hint=_HINT.format("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth"),
)(_factory(DUST3R_512_DPT))
register_model(
    "dust3r_vitl_512_linear",
    "dust3r",
    official=True,
    description="DUSt3R ViT-L/16 encoder, ViT-B decoder, linear heads, trained at 512",
    weights_hint=_HINT.format("DUSt3R_ViTLarge_BaseDecoder_512_linear.pth"),
)(_factory(DUST3R_LINEAR))
register_model(
    "dust3r_vitl_224_linear",
    "dust3r",
    official=True,
    description="DUSt3R ViT-L/16 encoder, ViT-B decoder, linear heads, trained at 224",
    weights_hint=_HINT.format("DUSt3R_ViTLarge_BaseDecoder_224_linear.pth"),
)(_factory(DUST3R_LINEAR))
register_model(
    "dust3r_tiny",
    "dust3r",
    official=False,
    description="tiny random DUSt3R (enc 96/4/3, dec 64/3/2, small DPT) for tests and demos",
)(_factory(TINY))
