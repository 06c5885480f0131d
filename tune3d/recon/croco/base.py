"""The CroCo ViT image encoder shared by DUSt3R, MASt3R and CUT3R.

Patch embedding (``patch_embed.proj``, 16x16), ``enc_depth`` pre-norm blocks with 2D RoPE (``RoPE100``; no
learned position embedding, so any image size that is a multiple of the patch size works), ``enc_norm``.
Input images in [0, 1] are normalised to [-1, 1] (``(x - 0.5) / 0.5``, dust3r's ``ImgNorm``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from tune3d.errors import Tune3DError
from tune3d.recon.croco.layers import Block, PatchEmbed, RoPE2D
from tune3d.recon.interface import ReconModel


@dataclass(frozen=True)
class CroCoConfig:
    """Architecture of a CroCo-family model. Defaults are the released ViT-L encoder / ViT-B decoder."""

    patch_size: int = 16
    enc_embed_dim: int = 1024
    enc_depth: int = 24
    enc_num_heads: int = 16
    dec_embed_dim: int = 768
    dec_depth: int = 12
    dec_num_heads: int = 12
    mlp_ratio: float = 4.0
    rope_freq: float = 100.0  # pos_embed='RoPE100'
    head_type: str = "dpt"  # "linear" | "dpt" | "catmlp+dpt"
    # DPT head widths (official values; the tiny test configs shrink them)
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)
    dpt_feature_dim: int = 256
    dpt_last_dim: int = 128
    # CUT3R's vendored CroCo encoder rounds q/k to float16 around RoPE; DUSt3R/MASt3R do not.
    encoder_rope_fp16: bool = False

    def dpt_kwargs(self) -> dict:
        return {
            "layer_dims": self.dpt_layer_dims,
            "feature_dim": self.dpt_feature_dim,
            "last_dim": self.dpt_last_dim,
        }


class CroCoEncoderModel(ReconModel):
    """Base class holding the CroCo image encoder; subclasses add decoders and heads."""

    encoder_qkv_pattern = r"enc_blocks\.\d+\.attn\.qkv"
    # Trailing dots so that CUT3R's ``patch_embed_ray_map`` / ``enc_blocks_ray_map`` / ``enc_norm_ray_map``
    # (the ray-map encoder, unused for image-only inference) are not counted as the image encoder.
    encoder_prefixes = ("patch_embed.", "enc_blocks.", "enc_norm.")

    def __init__(self, cfg: CroCoConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_size = cfg.patch_size
        self.rope = RoPE2D(cfg.rope_freq)
        self.patch_embed = PatchEmbed(cfg.patch_size, 3, cfg.enc_embed_dim)
        self.enc_blocks = nn.ModuleList(
            [
                Block(
                    cfg.enc_embed_dim,
                    cfg.enc_num_heads,
                    cfg.mlp_ratio,
                    rope=self.rope,
                    rope_fp16=cfg.encoder_rope_fp16,
                )
                for _ in range(cfg.enc_depth)
            ]
        )
        self.enc_norm = nn.LayerNorm(cfg.enc_embed_dim, eps=1e-6)

    def _check_images(self, images: Tensor) -> None:
        if images.ndim != 5 or images.shape[2] != 3:
            raise Tune3DError(
                f"{type(self).__name__} expects images B,S,3,H,W, got shape {tuple(images.shape)}"
            )
        H, W = images.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise Tune3DError(f"image size {H}x{W} must be a multiple of the patch size {self.patch_size}")

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Images ``N,3,H,W`` in [0, 1] -> tokens ``N,h*w,C`` (after ``enc_norm``), positions ``N,h*w,2``."""
        x, pos = self.patch_embed((images - 0.5) / 0.5)
        for blk in self.enc_blocks:
            x = blk(x, pos)
        return self.enc_norm(x), pos

    def encoder_tokens(self, images: Tensor) -> Tensor:
        """Encoder output patch tokens ``B*S,N,C`` for images ``B,S,3,H,W`` (or ``B,3,H,W``)."""
        if images.ndim == 4:
            images = images[:, None]
        self._check_images(images)
        return self.encode(images.flatten(0, 1))[0]
