"""VGGT aggregator: DINOv2 patch tokens + camera/register tokens -> alternating frame/global attention."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from tune3d.recon.vggt.dinov2 import DinoV2Encoder
from tune3d.recon.vggt.layers import Block, RoPE2D, patch_positions

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def first_and_rest(tokens: Tensor, batch: int, seq: int) -> Tensor:
    """``1, 2, X, C`` special tokens -> ``batch*seq, X, C``: variant 0 for each sequence's first frame,
    variant 1 for the other frames (this is how VGGT marks the reference frame)."""
    first = tokens[:, :1].expand(batch, 1, *tokens.shape[2:])
    rest = tokens[:, 1:].expand(batch, seq - 1, *tokens.shape[2:])
    return torch.cat([first, rest], dim=1).reshape(batch * seq, *tokens.shape[2:])


class Aggregator(nn.Module):
    """Alternating-attention trunk.

    Per frame: ``[camera token, register tokens, DINOv2 patch tokens]``. Each of the ``depth``
    steps runs one frame block (attention within each frame, tokens ``B*S, P, C``) and one global
    block (attention across all frames, ``B, S*P, C``); the step's output is the channel concat of
    the two, ``B, S, P, 2C``. Patch tokens carry 2D RoPE at their grid position + 1; the special
    tokens sit at position (0, 0).
    """

    def __init__(
        self,
        *,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        num_register_tokens: int,
        encoder_depth: int,
        encoder_num_heads: int,
        rope_freq: float = 100.0,
        mlp_ratio: float = 4.0,
        qk_norm: bool = True,
        init_values: float = 0.01,
    ) -> None:
        """Sizes as :class:`~tune3d.recon.vggt.model.VGGTConfig` names them (its defaults are VGGT-1B's)."""
        super().__init__()
        self.patch_size = patch_size
        self.depth = depth
        self.patch_embed = DinoV2Encoder(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=encoder_depth,
            num_heads=encoder_num_heads,
            mlp_ratio=mlp_ratio,
            num_register_tokens=num_register_tokens,
            init_values=1.0,
        )
        self.rope = RoPE2D(rope_freq) if rope_freq > 0 else None

        def make_block() -> Block:
            return Block(
                embed_dim, num_heads, mlp_ratio, init_values=init_values, qk_norm=qk_norm, rope=self.rope
            )

        self.frame_blocks = nn.ModuleList([make_block() for _ in range(depth)])
        self.global_blocks = nn.ModuleList([make_block() for _ in range(depth)])

        # Two variants each: index 0 for the first (reference) frame, index 1 for all other frames.
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_register_tokens, embed_dim))
        nn.init.normal_(self.camera_token, std=1e-6)
        nn.init.normal_(self.register_token, std=1e-6)
        self.patch_start_idx = 1 + num_register_tokens

        self.register_buffer("_resnet_mean", torch.zeros(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("_resnet_std", torch.ones(1, 1, 3, 1, 1), persistent=False)
        self.reset_non_persistent_buffers()
        self.grad_checkpointing = False

    def reset_non_persistent_buffers(self) -> None:
        """(Re)fill the ImageNet normalisation buffers, which no checkpoint holds.

        Needed after ``to_empty()`` or ``load_state_dict(..., assign=True)`` on a meta-built model:
        buffers still on the meta device are recreated on the device of the parameters.
        """
        device = self.camera_token.device
        for name, value in (("_resnet_mean", IMAGENET_MEAN), ("_resnet_std", IMAGENET_STD)):
            buf = getattr(self, name)
            target = device if buf.is_meta else buf.device
            new = torch.tensor(value, dtype=torch.float32, device=target).view(1, 1, 3, 1, 1)
            if buf.is_meta or target.type == "meta":
                setattr(self, name, new)  # re-registers: still a non-persistent buffer
            else:
                with torch.no_grad():
                    buf.copy_(new)

    def normalize(self, images: Tensor) -> Tensor:
        """Images in [0, 1], ``B, S, 3, H, W`` -> ImageNet-normalised."""
        return (images - self._resnet_mean) / self._resnet_std

    def encode(self, images: Tensor) -> Tensor:
        """DINOv2 patch tokens ``B*S, N, C`` of images in [0, 1] (``B, S, 3, H, W``)."""
        B, S, C, H, W = images.shape
        if C != 3:
            raise ValueError(f"expected 3 input channels, got {C}")
        return self.patch_embed(self.normalize(images).reshape(B * S, C, H, W))

    def _run(self, block: Block, tokens: Tensor, pos: Tensor | None) -> Tensor:
        if self.grad_checkpointing and self.training:
            return checkpoint(block, tokens, pos, use_reentrant=False)
        return block(tokens, pos=pos)

    def forward(
        self, images: Tensor, keep_layers: Iterable[int] | None = None
    ) -> tuple[list[Tensor | None], int]:
        """Run the trunk on ``images`` ``B, S, 3, H, W`` in [0, 1].

        Returns ``(layers, patch_start_idx)``: ``layers[i]`` is step ``i``'s ``B, S, P, 2C`` output
        (camera token at index 0, registers, then patch tokens from ``patch_start_idx``). Only the
        indices in ``keep_layers`` are stored (others are ``None``) to save memory; default: all.
        """
        B, S, _, H, W = images.shape
        keep = set(range(self.depth)) if keep_layers is None else {i % self.depth for i in keep_layers}
        patch_tokens = self.encode(images)
        tokens = torch.cat(
            [
                first_and_rest(self.camera_token, B, S).to(patch_tokens.dtype),
                first_and_rest(self.register_token, B, S).to(patch_tokens.dtype),
                patch_tokens,
            ],
            dim=1,
        )
        _, P, C = tokens.shape

        pos = None
        if self.rope is not None:
            grid = (
                patch_positions(B * S, H // self.patch_size, W // self.patch_size, device=images.device) + 1
            )
            special = torch.zeros(B * S, self.patch_start_idx, 2, dtype=grid.dtype, device=images.device)
            pos = torch.cat([special, grid], dim=1)
        pos_global = None if pos is None else pos.reshape(B, S * P, 2)

        layers: list[Tensor | None] = []
        for i in range(self.depth):
            tokens = self._run(self.frame_blocks[i], tokens.reshape(B * S, P, C), pos)
            frame_out = tokens.reshape(B, S, P, C)
            tokens = self._run(self.global_blocks[i], tokens.reshape(B, S * P, C), pos_global)
            global_out = tokens.reshape(B, S, P, C)
            layers.append(torch.cat([frame_out, global_out], dim=-1) if i in keep else None)
        return layers, self.patch_start_idx
