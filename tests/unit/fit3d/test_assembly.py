"""FiT3D feature assembly: modes, widths, CLS provenance, freezing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from tune3d.errors import Tune3DError
from tune3d.fit3d import ASSEMBLY_MODES, AssembledBackbone


@dataclass
class Feats:
    patch: torch.Tensor
    cls: torch.Tensor | None
    layers: dict


class TinyViT(nn.Module):
    """Stand-in with the ``Backbone.forward_features`` interface around a 2-block timm ViT."""

    def __init__(self, seed: int, width: int = 16, patch_size: int = 14) -> None:
        super().__init__()
        torch.manual_seed(seed)
        kw = dict(img_size=28, embed_dim=width, depth=2, num_heads=2, num_classes=0, dynamic_img_size=True)
        self.timm_model = VisionTransformer(patch_size=patch_size, **kw)
        self.width, self.patch_size, self.name, self.weights = width, patch_size, "tiny", f"seed{seed}"

    def forward_features(self, images, layers=None, norm=True, resize="resize"):
        h, w = (max(1, round(s / self.patch_size)) * self.patch_size for s in images.shape[-2:])
        x = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
        kw = dict(indices=1, norm=norm, output_fmt="NCHW", return_prefix_tokens=True, intermediates_only=True)
        patch, prefix = self.timm_model.forward_intermediates(x, **kw)[0]
        return Feats(patch=patch, cls=prefix[:, 0], layers={1: patch})


@pytest.fixture(scope="module")
def models():
    return TinyViT(0), TinyViT(1)


def test_widths_and_concat(models):
    orig, tuned = models
    x = torch.rand(2, 3, 28, 42)
    with torch.no_grad():
        f0, f1 = orig.forward_features(x), tuned.forward_features(x)
    for mode, width, expected in [
        ("original", 16, f0.patch),
        ("finetuned", 16, f1.patch),
        ("assembled", 32, torch.cat([f0.patch, f1.patch], 1)),
        ("duplicated", 32, torch.cat([f0.patch, f0.patch], 1)),
    ]:
        ab = AssembledBackbone(orig, tuned, mode=mode)
        out = ab.forward_features(x)
        assert ab.width == width and out.patch.shape == (2, width, 2, 3)
        torch.testing.assert_close(out.patch, expected)
        assert not out.patch.requires_grad
    assert set(ASSEMBLY_MODES) == {"original", "finetuned", "assembled", "duplicated"}


def test_assembled_layers_concatenated(models):
    out = AssembledBackbone(*models, mode="assembled").forward_features(torch.rand(1, 3, 28, 28))
    assert out.layers[1].shape[1] == 32
    torch.testing.assert_close(out.layers[1], out.patch)


def test_depth_features_unnormed_and_cls_from_original(models):
    orig, tuned = models
    x = torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        f0 = orig.forward_features(x, norm=False)
        f1 = tuned.forward_features(x, norm=False)
        f0n = orig.forward_features(x, norm=True)
    for mode in ("assembled", "duplicated", "original"):
        out = AssembledBackbone(orig, tuned, mode=mode).forward_features(x, norm=False)
        torch.testing.assert_close(out.cls, f0.cls)
        torch.testing.assert_close(out.patch[:, :16], f0.patch)
        assert not torch.allclose(out.patch[:, :16], f0n.patch)  # the final LayerNorm really is skipped
    assembled = AssembledBackbone(orig, tuned, mode="assembled").forward_features(x, norm=False)
    torch.testing.assert_close(assembled.patch[:, 16:], f1.patch)
    assert not torch.allclose(assembled.cls, f1.cls)
    # the single fine-tuned model reports its own CLS token
    alone = AssembledBackbone(orig, tuned, mode="finetuned").forward_features(x)
    torch.testing.assert_close(alone.cls, tuned.forward_features(x).cls)


def test_frozen_and_stays_eval(models):
    ab = AssembledBackbone(*models, mode="assembled")
    ab.train()
    assert not ab.training and not ab.original.training and not ab.finetuned.training
    assert not any(p.requires_grad for p in ab.parameters())
    # duplicated/original do not keep (or run) the fine-tuned model
    assert AssembledBackbone(*models, mode="duplicated").finetuned is None


def test_errors(models):
    orig, _ = models
    with pytest.raises(Tune3DError, match="needs fine-tuned"):
        AssembledBackbone(orig, None, mode="assembled")
    with pytest.raises(Tune3DError, match="unknown assembly mode"):
        AssembledBackbone(orig, None, mode="add")
    with pytest.raises(Tune3DError, match="does not match"):
        AssembledBackbone(orig, TinyViT(2, width=32), mode="assembled")
    assert AssembledBackbone(orig, None, mode="duplicated").width == 32
