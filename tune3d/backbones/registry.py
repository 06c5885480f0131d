"""Short names for the foundation-model backbones tune3d fine-tunes, mapped to timm architectures.

Every entry is a plain timm model (``num_classes=0``, ``dynamic_img_size=True`` where the architecture
takes it); nothing here is a hand-written ViT. Each full-size entry has a ``<name>_tiny`` twin: the same
timm architecture (same block type, prefix tokens, position encoding, patch size, normalisation) with
2 blocks and width 32, for CPU tests.

Families: DINOv2 (/14, learned position embedding, optional 4 registers), DINOv3 (/16, RoPE, 4 storage
tokens), CLIP, MAE, DeiT-III, EVA-02, and SAM's ViT-B image encoder (/16, windowed attention with
relative positions, run on its fixed 1024x1024 canvas; see :mod:`tune3d.backbones.model`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tune3d.errors import Tune3DError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

TINY_WIDTH = 32
TINY_DEPTH = 2
TINY_HEADS = 2
TINY_GRID = 4  # learned position embedding of a tiny model: 4x4 patches (interpolated at run time)


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry.

    ``timm_name`` is ``architecture.pretrained_tag``; ``model_kwargs`` override the architecture (tiny
    variants). ``final_norm`` names the module that acts as the last LayerNorm: ``"norm"`` for ViTs,
    ``"fc_norm"`` for EVA-02 MIM checkpoints, where timm moves the pretrained norm after pooling.
    ``filter_kwargs`` are passed to timm's ``checkpoint_filter_fn`` (DeiT-III remaps ``gamma_1``).
    ``final_norm=None``: the encoder has no final LayerNorm (SAM), so ``norm=True`` changes nothing.
    ``tiny_kwargs``: extra architecture overrides of the tiny twin (SAM: small windows, one global block).
    ``dynamic_img_size``: pass timm's ``dynamic_img_size=True`` (SAM's class resamples without it).
    ``fixed_canvas``: the encoder runs on its pretraining canvas (``patch_embed.img_size``) with the image
    in the top-left corner, as SAM's own preprocessing does; features are cropped back to the image.
    """

    name: str
    timm_name: str
    patch_size: int
    width: int
    depth: int
    num_prefix_tokens: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    family: str
    description: str
    official_file: str | None = None  # name of the upstream release file, if any
    official_url: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    filter_kwargs: dict[str, Any] = field(default_factory=dict)
    final_norm: str | None = "norm"
    tiny_kwargs: dict[str, Any] = field(default_factory=dict)
    dynamic_img_size: bool = True
    fixed_canvas: bool = False
    tiny: bool = False

    @property
    def architecture(self) -> str:
        return self.timm_name.split(".")[0]

    @property
    def hf_hub_id(self) -> str | None:
        if self.tiny:
            return None
        return f"timm/{self.timm_name}"

    @property
    def num_register_tokens(self) -> int:
        return max(0, self.num_prefix_tokens - 1)

    @property
    def weights_source(self) -> str:
        """Human-readable list of places weights can come from."""
        if self.tiny:
            return "none (test model: --allow-random-init or --weights FILE)"
        src = f"hf-hub:{self.hf_hub_id}"
        if self.official_file:
            src += f" | official {self.official_file}"
        return src + " | --weights FILE"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["weights_source"] = self.weights_source
        d["hf_hub_id"] = self.hf_hub_id
        return d


_REGISTRY: dict[str, BackboneSpec] = {}

_DINOV2_SIZES = {  # size letter -> (timm size word, width, depth)
    "s": ("small", 384, 12),
    "b": ("base", 768, 12),
    "l": ("large", 1024, 24),
    "g": ("giant", 1536, 40),
}


def _add(spec: BackboneSpec) -> None:
    _REGISTRY[spec.name] = spec
    tiny_kwargs = {
        "depth": TINY_DEPTH,
        "embed_dim": TINY_WIDTH,
        "num_heads": TINY_HEADS,
        "img_size": spec.patch_size * TINY_GRID,
        **spec.tiny_kwargs,
    }
    _REGISTRY[spec.name + "_tiny"] = dataclasses.replace(
        spec,
        name=spec.name + "_tiny",
        width=TINY_WIDTH,
        depth=TINY_DEPTH,
        description=f"{spec.description}: tiny test variant ({TINY_DEPTH} blocks, width {TINY_WIDTH})",
        official_file=None,
        official_url=None,
        model_kwargs=tiny_kwargs,
        tiny=True,
    )


# What most entries share: a ViT-B/16 with one CLS token on ImageNet-normalised input.
_VIT_B16 = dict(patch_size=16, width=768, depth=12, num_prefix_tokens=1, mean=IMAGENET_MEAN, std=IMAGENET_STD)


def _add_vit(**kw: Any) -> None:
    """Register a :class:`BackboneSpec` (and its tiny twin) whose unnamed fields are those of a ViT-B/16."""
    _add(BackboneSpec(**{**_VIT_B16, **kw}))


for _letter, (_word, _width, _depth) in _DINOV2_SIZES.items():
    for _reg in (False, True):
        _base = f"dinov2_vit{_letter}14"
        _file = f"{_base}{'_reg4' if _reg else ''}_pretrain.pth"
        _add_vit(
            name=_base + ("_reg" if _reg else ""),
            timm_name=f"vit_{_word}_patch14{'_reg4' if _reg else ''}_dinov2.lvd142m",
            patch_size=14,
            width=_width,
            depth=_depth,
            num_prefix_tokens=5 if _reg else 1,
            family="dinov2",
            description=f"DINOv2 ViT-{_letter.upper()}/14{' with 4 registers' if _reg else ''}",
            official_file=_file,
            official_url=f"https://dl.fbaipublicfiles.com/dinov2/{_base}/{_file}",
        )

_add_vit(
    name="clip_vitb16",
    timm_name="vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
    mean=CLIP_MEAN,
    std=CLIP_STD,
    family="clip",
    description="CLIP ViT-B/16 (LAION-2B, fine-tuned IN-12k/1k, 384 px)",
)
_add_vit(
    name="mae_vitb16",
    timm_name="vit_base_patch16_224.mae",
    family="mae",
    description="MAE ViT-B/16 (self-supervised IN-1k)",
    official_file="mae_pretrain_vit_base.pth",
    official_url="https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
)
_add_vit(
    name="deit3_vitb16",
    timm_name="deit3_base_patch16_224.fb_in1k",
    family="deit3",
    description="DeiT-III ViT-B/16 (supervised IN-1k)",
    official_file="deit_3_base_224_1k.pth",
    official_url="https://dl.fbaipublicfiles.com/deit/deit_3_base_224_1k.pth",
    filter_kwargs={"adapt_layer_scale": True},
)
_add_vit(
    name="eva02_vitb14",
    timm_name="eva02_base_patch14_224.mim_in22k",
    patch_size=14,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    family="eva02",
    description="EVA-02 ViT-B/14 (MIM pretrained IN-22k)",
    final_norm="fc_norm",
)


# DINOv3 (Meta's release names; the files are distributed on request under the DINOv3 license). The
# released ViT-S/B/L files carry ``qkv.bias`` with an all-zero ``qkv.bias_mask`` (the bias is
# multiplied by the mask), so timm's bias-free ``vit_*_patch16_dinov3`` is the exact architecture;
# weights.py refuses a file whose masked bias is not zero instead of dropping it.
_DINOV3 = {  # size letter -> (timm size word, width, depth, release hash)
    "s": ("small", 384, 12, "08c60483"),
    "b": ("base", 768, 12, "73cec8be"),
    "l": ("large", 1024, 24, "8aa4cbdd"),
}
for _letter, (_word, _width, _depth, _hash) in _DINOV3.items():
    _add_vit(
        name=f"dinov3_vit{_letter}16",
        timm_name=f"vit_{_word}_patch16_dinov3.lvd1689m",
        width=_width,
        depth=_depth,
        num_prefix_tokens=5,  # CLS + 4 storage tokens
        family="dinov3",
        description=f"DINOv3 ViT-{_letter.upper()}/16 (LVD-1689M, RoPE, 4 storage tokens)",
        official_file=f"dinov3_vit{_letter}16_pretrain_lvd1689m-{_hash}.pth",
    )

_add_vit(
    name="sam_vitb16",
    timm_name="samvit_base_patch16.sa1b",
    width=768,  # dense features are the last block's tokens, before the 256-d neck
    num_prefix_tokens=0,
    family="sam",
    description="SAM ViT-B/16 image encoder (SA-1B, 1024x1024 canvas, windowed attention)",
    official_file="sam_vit_b_01ec64.pth",
    official_url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    final_norm=None,
    # tiny twin: 8x8-patch canvas, 4x4 windows, block 1 global, 16-d neck
    tiny_kwargs={"img_size": 128, "window_size": 4, "global_attn_indexes": (1,), "neck_chans": 16},
    dynamic_img_size=False,
    fixed_canvas=True,
)


def list_backbones(include_tiny: bool = True) -> list[BackboneSpec]:
    """All registry entries, full-size first, in registration order."""
    specs = list(_REGISTRY.values())
    full = [s for s in specs if not s.tiny]
    return full + [s for s in specs if s.tiny] if include_tiny else full


def get_spec(name: str) -> BackboneSpec:
    """Registry entry for ``name``; an unknown name raises :class:`Tune3DError` listing the options."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(s.name for s in list_backbones(include_tiny=False))
        raise Tune3DError(f"unknown backbone {name!r}; known: {known} (and <name>_tiny for tests)") from None


def register_backbone(spec: BackboneSpec, with_tiny: bool = True) -> None:
    """Add a user entry (e.g. another timm ViT). Re-registering a name replaces it."""
    if with_tiny:
        _add(spec)
    else:
        _REGISTRY[spec.name] = spec
