"""CUT3R (CUT3R/CUT3R ``ARCroco3DStereo``): continuous 3D reconstruction with a recurrent state.

All frames are encoded by the CroCo encoder. A set of ``state_size`` state tokens (``register_tokens``
embedded by ``decoder_embed_state``, 2D RoPE positions on a ``ceil_even(sqrt(state_size))``-wide grid) is
carried across frames. For frame ``i``:

1. a pose token is prepended to the frame tokens: the learned ``pose_token`` for the first frame, otherwise
   a query to the ``pose_retriever`` memory with the mean encoder token (position (-1, -1));
2. two decoders run in lockstep: ``dec_blocks_state`` (state <- frame) and ``dec_blocks`` (frame <- state);
3. the normalised last state layer becomes the new state, and the pose memory is written with
   ``(mean encoder token, output pose token)``;
4. the head predicts the self-view and world pointmaps, the image and the camera pose (``cut3r_heads``).

Known cameras (CUT3R's ray-map input): ``forward(images, ray_maps, ray_mask)`` and :meth:`CUT3R.encode_frame`
take per-view 6-channel ray maps (:func:`tune3d.recon.croco.cut3r_rays.cut3r_ray_maps`: origin + direction
relative to the first view, as CUT3R's training data builds them). As the official ``_encode_views``
combines them: a view with a ray map gets ``image tokens + ray-encoder tokens`` (``patch_embed_ray_map``,
``enc_blocks_ray_map``, ``enc_norm_ray_map``); when any view of the batch has a ray map, a view without
one gets ``image tokens + masked_ray_map_token``; when none has, image tokens alone (the official demo).
The streaming path (:mod:`tune3d.recon.streaming`) applies the same rule per frame, with "any view has a
ray map" decided for the stream up front (``with_rays``), so streamed == batched.

Scope (documented simplifications): every view has an image (``img_mask`` all true; ray-only views, the
official novel-view queries that swap in ``masked_img_token`` and skip the state update, are not
supported); there are no per-sample ``reset``/``update`` masks: the state and memory are updated after
every frame. With those defaults the official update rule reduces to exactly this.
The official pure-PyTorch RoPE cannot index the pose token's position -1 (only its CUDA kernel can);
our :class:`RoPE2D` computes the angles from positions directly, which matches the CUDA kernel.
Like CUT3R's vendored CroCo encoder (not the decoders), the image encoder rounds q/k to float16 around RoPE
(``encoder_rope_fp16``). Against the official code (random tiny weights, its RoPE fallback patched to the
CUDA kernel's float32 arithmetic) our per-frame outputs agree to ~1e-6 relative error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tune3d.recon._registry import register_model
from tune3d.recon.croco.base import CroCoConfig, CroCoEncoderModel
from tune3d.recon.croco.cut3r_heads import CUT3RDPTHead, CUT3RLinearHead, pose_encoding_to_c2w
from tune3d.recon.croco.dust3r import TINY_BACKBONE
from tune3d.recon.croco.layers import Block, DecoderBlock, PatchEmbed, init_croco_weights
from tune3d.recon.interface import ReconOutput


@dataclass(frozen=True)
class CUT3RConfig(CroCoConfig):
    state_size: int = 768
    state_dec_num_heads: int = 16
    local_mem_size: int = 256
    ray_enc_depth: int = 2
    ray_enc_num_heads: int = 16
    encoder_rope_fp16: bool = True


class LocalMemory(nn.Module):
    """``pose_retriever``: a learned key/value memory ``mem`` (``1,size,2*dim``) read and written by
    cross-attention ``DecoderBlock``s (no RoPE). Keys are projected image descriptors (``proj_q``), values
    are pose tokens."""

    def __init__(self, size: int, k_dim: int, v_dim: int, num_heads: int, depth: int = 2) -> None:
        super().__init__()
        self.v_dim = v_dim
        self.proj_q = nn.Linear(k_dim, v_dim)
        self.masked_token = nn.Parameter(torch.randn(1, 1, v_dim) * 0.2)
        self.mem = nn.Parameter(torch.randn(1, size, 2 * v_dim) * 0.2)
        self.write_blocks = nn.ModuleList([DecoderBlock(2 * v_dim, num_heads) for _ in range(depth)])
        self.read_blocks = nn.ModuleList([DecoderBlock(2 * v_dim, num_heads) for _ in range(depth)])

    def update_mem(self, mem: Tensor, feat_k: Tensor, feat_v: Tensor) -> Tensor:
        """Write ``(feat_k B,1,k_dim, feat_v B,1,v_dim)`` into ``mem`` ``B,size,2*v_dim``."""
        feat = torch.cat([self.proj_q(feat_k), feat_v], dim=-1)
        for blk in self.write_blocks:
            mem = blk(mem, feat, None, None)
        return mem

    def inquire(self, query: Tensor, mem: Tensor) -> Tensor:
        """Read the value for ``query`` ``B,1,k_dim`` -> ``B,1,v_dim``."""
        x = self.proj_q(query)
        x = torch.cat([x, self.masked_token.expand(x.shape[0], -1, -1)], dim=-1)
        for blk in self.read_blocks:
            x = blk(x, mem, None, None)
        return x[..., -self.v_dim :]


@dataclass
class CUT3RState:
    """Recurrent state between frames: state tokens ``B,state_size,C``, their positions, pose memory."""

    feat: Tensor
    pos: Tensor
    mem: Tensor


def frames_to_output(frames: list[dict[str, Tensor]]) -> ReconOutput:
    """Per-frame CUT3R outputs (each tensor ``B,...``, one dict per frame in order) -> one
    :class:`ReconOutput` with the views on dim 1; the RGB head's ``[-1, 1]`` goes to ``[0, 1]``."""

    def stack(key: str) -> Tensor:
        return torch.stack([f[key] for f in frames], dim=1)

    pose = stack("pose")
    return ReconOutput(
        pts3d=stack("pts3d"),
        pts3d_conf=stack("conf"),
        pts3d_self=stack("pts3d_self"),
        pts3d_self_conf=stack("conf_self"),
        c2w=pose_encoding_to_c2w(pose),
        extras={"pose_encoding": pose, "rgb": (stack("rgb") + 1) / 2},
    )


class CUT3R(CroCoEncoderModel):
    """Sequential multi-view reconstruction; ``forward`` takes any number of views."""

    family = "cut3r"
    per_view_head = "pts3d_self"
    metric = False
    num_views = 0

    def __init__(self, cfg: CUT3RConfig) -> None:
        super().__init__(cfg)
        c = cfg
        self.patch_embed_ray_map = PatchEmbed(c.patch_size, 6, c.enc_embed_dim)
        self.decoder_embed = nn.Linear(c.enc_embed_dim, c.dec_embed_dim)
        self.dec_blocks = nn.ModuleList(
            [
                DecoderBlock(c.dec_embed_dim, c.dec_num_heads, c.mlp_ratio, rope=self.rope)
                for _ in range(c.dec_depth)
            ]
        )
        self.dec_norm = nn.LayerNorm(c.dec_embed_dim, eps=1e-6)
        init_croco_weights(self)  # CroCoNet init covers the modules built so far
        self.enc_blocks_ray_map = nn.ModuleList(
            [Block(c.enc_embed_dim, c.ray_enc_num_heads, 4.0, rope=self.rope) for _ in range(c.ray_enc_depth)]
        )
        self.enc_norm_ray_map = nn.LayerNorm(c.enc_embed_dim, eps=1e-6)
        self.pose_token = nn.Parameter(torch.randn(1, 1, c.dec_embed_dim) * 0.02)
        self.pose_retriever = LocalMemory(c.local_mem_size, c.enc_embed_dim, c.dec_embed_dim, c.dec_num_heads)
        self.register_tokens = nn.Embedding(c.state_size, c.enc_embed_dim)
        self.masked_img_token = nn.Parameter(torch.randn(1, c.enc_embed_dim) * 0.02)
        self.masked_ray_map_token = nn.Parameter(torch.randn(1, c.enc_embed_dim) * 0.02)
        self.decoder_embed_state = nn.Linear(c.enc_embed_dim, c.dec_embed_dim)
        self.dec_blocks_state = nn.ModuleList(
            [
                DecoderBlock(c.dec_embed_dim, c.state_dec_num_heads, c.mlp_ratio, rope=self.rope)
                for _ in range(c.dec_depth)
            ]
        )
        self.dec_norm_state = nn.LayerNorm(c.dec_embed_dim, eps=1e-6)
        if c.head_type == "dpt":
            self.downstream_head = CUT3RDPTHead(
                c.enc_embed_dim, c.dec_embed_dim, c.dec_num_heads, self.rope, c.patch_size, **c.dpt_kwargs()
            )
        elif c.head_type == "linear":
            self.downstream_head = CUT3RLinearHead(c.dec_embed_dim, c.dec_num_heads, self.rope, c.patch_size)
        else:
            raise ValueError(f"CUT3R head_type must be 'dpt' or 'linear', got {c.head_type!r}")

    # -- state --------------------------------------------------------------------------------------------
    def state_positions(self, batch: int, device: torch.device) -> Tensor:
        """2D positions ``batch,state_size,2`` of the state tokens (official ``state_pe='2d'``)."""
        n = self.cfg.state_size
        width = int(n**0.5)
        width += width % 2  # the official code bumps an odd width to the next even number
        idx = torch.arange(n, device=device)
        return torch.stack([idx // width, idx % width], dim=-1)[None].expand(batch, -1, -1)

    def init_state(self, batch: int, device: torch.device | None = None) -> CUT3RState:
        device = device if device is not None else self.pose_token.device
        tokens = self.register_tokens(torch.arange(self.cfg.state_size, device=device))
        feat = self.decoder_embed_state(tokens)[None].expand(batch, -1, -1)
        mem = self.pose_retriever.mem.expand(batch, -1, -1)
        return CUT3RState(feat, self.state_positions(batch, device), mem)

    def encode_ray_map(self, ray_map: Tensor) -> tuple[Tensor, Tensor]:
        """Ray maps ``N,6,H,W`` (raw, not normalised) -> tokens ``N,h*w,C`` and positions ``N,h*w,2``."""
        x, pos = self.patch_embed_ray_map(ray_map)
        for blk in self.enc_blocks_ray_map:
            x = blk(x, pos)
        return self.enc_norm_ray_map(x), pos

    def encode_frame(
        self, images: Tensor, ray_maps: Tensor | None = None, ray_mask: Tensor | None = None, with_rays=None
    ) -> tuple[Tensor, Tensor]:
        """Frame tokens ``N,h*w,C`` and positions for images ``N,3,H,W`` in [0, 1] and optional ray maps
        ``N,6,H,W`` (``ray_mask`` ``N`` bool says which are given; default: all when ``ray_maps`` is given).

        ``with_rays`` (default: whether any ray map is given here) is the official "some view of the batch
        has a ray map" switch: when true, views without a ray map get ``masked_ray_map_token`` added."""
        feat, pos = self.encode(images)
        N = images.shape[0]
        if ray_mask is None:
            ray_mask = torch.full((N,), ray_maps is not None, dtype=torch.bool, device=images.device)
        ray_mask = ray_mask.to(device=images.device, dtype=torch.bool).reshape(N)
        if with_rays is None:
            with_rays = bool(ray_mask.any())
        if not with_rays:
            return feat, pos
        extra = self.masked_ray_map_token.to(feat.dtype).expand(N, feat.shape[1], -1)
        if ray_mask.any():
            if ray_maps is None or ray_maps.shape != (N, 6, *images.shape[-2:]):
                got = None if ray_maps is None else tuple(ray_maps.shape)
                raise ValueError(f"ray maps must be N,6,H,W like the images {tuple(images.shape)}, got {got}")
            ray_tok, _ = self.encode_ray_map(ray_maps[ray_mask].to(feat.dtype))  # only given maps (NaN-safe)
            full = feat.new_zeros(feat.shape)
            full[ray_mask] = ray_tok
            extra = torch.where(ray_mask[:, None, None], full, extra)
        return feat + extra, pos

    # -- one frame ---------------------------------------------------------------------------------------
    def decode(self, state: Tensor, state_pos: Tensor, feat: Tensor, pos: Tensor, pose_feat: Tensor):
        """-> (new state ``B,M,C`` (normalised), frame token list ``[enc_out, dec_1, ..., norm(dec_L)]``)."""
        pose_pos = torch.full((feat.shape[0], 1, 2), -1, dtype=pos.dtype, device=pos.device)
        out = [feat]
        x = torch.cat([pose_feat, self.decoder_embed(feat)], dim=1)
        xpos = torch.cat([pose_pos, pos], dim=1)
        s = state
        for blk_s, blk_x in zip(self.dec_blocks_state, self.dec_blocks):
            s, x = blk_s(s, x, state_pos, xpos), blk_x(x, s, xpos, state_pos)
            out.append(x)
        out[-1] = self.dec_norm(out[-1])
        return self.dec_norm_state(s), out

    def step(self, feat: Tensor, pos: Tensor, state: CUT3RState, first: bool, image_size: tuple[int, int]):
        """Process one frame's encoder tokens ``B,N,C``; returns (head outputs, updated state)."""
        global_feat = feat.mean(dim=1, keepdim=True)
        if first:
            pose_feat = self.pose_token.expand(feat.shape[0], -1, -1)
        else:
            pose_feat = self.pose_retriever.inquire(global_feat, state.mem)
        new_state, dec = self.decode(state.feat, state.pos, feat, pos, pose_feat)
        new_mem = self.pose_retriever.update_mem(state.mem, global_feat, dec[-1][:, :1])
        L = self.cfg.dec_depth
        head_in = [dec[0], dec[L * 2 // 4][:, 1:], dec[L * 3 // 4][:, 1:], dec[L]]
        res = self.downstream_head([t.float() for t in head_in], image_size, pos)
        return res, CUT3RState(new_state, state.pos, new_mem)

    def forward_frames(
        self, images: Tensor, ray_maps: Tensor | None = None, ray_mask: Tensor | None = None
    ) -> list[dict[str, Tensor]]:
        """Official-style per-frame output dicts for images ``B,S,3,H,W`` in [0, 1], processed in order;
        optional known cameras as ray maps ``B,S,6,H,W`` with ``ray_mask`` ``B,S`` (see the module doc)."""
        self._check_images(images)
        B, S, _, H, W = images.shape
        flat_rays = None if ray_maps is None else ray_maps.flatten(0, 1)
        flat_mask = None if ray_mask is None else ray_mask.flatten(0, 1)
        feats, pos = self.encode_frame(images.flatten(0, 1), flat_rays, flat_mask)
        feats, pos = feats.unflatten(0, (B, S)), pos.unflatten(0, (B, S))
        state = self.init_state(B, images.device)
        results = []
        for i in range(S):
            res, state = self.step(feats[:, i], pos[:, i], state, first=i == 0, image_size=(H, W))
            results.append(res)
        return results

    def forward(
        self, images: Tensor, ray_maps: Tensor | None = None, ray_mask: Tensor | None = None
    ) -> ReconOutput:
        return frames_to_output(self.forward_frames(images, ray_maps, ray_mask))


def _factory(base: CUT3RConfig):
    def make(**overrides) -> CUT3R:
        return CUT3R(dataclasses.replace(base, **overrides))

    return make


TINY = CUT3RConfig(
    **TINY_BACKBONE,
    state_size=16,
    state_dec_num_heads=2,
    local_mem_size=8,
    ray_enc_depth=1,
    ray_enc_num_heads=3,
)

register_model(
    "cut3r_512_dpt",
    "cut3r",
    official=True,
    description="CUT3R ViT-L/16 encoder, ViT-B state/frame decoders, DPT heads, pose head, 512",
    weights_hint="official file: cut3r_512_dpt_4_64.pth",
)(_factory(CUT3RConfig(head_type="dpt")))
register_model(
    "cut3r_224_linear",
    "cut3r",
    official=True,
    description="CUT3R ViT-L/16 encoder, ViT-B state/frame decoders, linear heads, pose head, 224",
    weights_hint="official file: cut3r_224_linear_4.pth",
)(_factory(CUT3RConfig(head_type="linear")))
register_model(
    "cut3r_tiny",
    "cut3r",
    official=False,
    description="tiny random CUT3R (enc 96/4/3, dec 64/3/2, 16 state tokens) for tests and demos",
)(_factory(TINY))
