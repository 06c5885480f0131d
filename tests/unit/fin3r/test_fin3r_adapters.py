"""Fin3R encoder adapters: counts, freezing, merging, renorm invariants, save/load, released keys."""

from __future__ import annotations

import logging

import pytest
import torch
from peft import LoraConfig, get_peft_model
from timm.models.vision_transformer import Block
from torch import nn

from tune3d.errors import Tune3DError
from tune3d.fin3r.adapters import (
    FORMS,
    TIMM_VIT_QKV_PATTERN,
    adapter_form,
    adapter_state_dict,
    add_adapters,
    load_adapters,
    merge_adapters,
    save_adapters,
)


class Stack(nn.Module):
    """A timm ViT block stack under ``blocks`` (module names ``blocks.N.attn.qkv``)."""

    def __init__(self, dim: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[Block(dim, heads, qkv_bias=True) for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class CroCoLike(nn.Module):
    """Encoder and decoder both with ``attn.qkv``; only the encoder may be adapted."""

    encoder_qkv_pattern = r"enc_blocks\.\d+\.attn\.qkv"

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.enc_blocks = nn.ModuleList([Block(dim, 4, qkv_bias=True) for _ in range(2)])
        self.dec_blocks = nn.ModuleList([Block(dim, 4, qkv_bias=True) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in [*self.enc_blocks, *self.dec_blocks]:
            x = b(x)
        return x


class VGGTLike(nn.Module):
    encoder_qkv_pattern = r"aggregator\.patch_embed\.blocks\.\d+\.attn\.qkv"

    def __init__(self, dim: int = 32, depth: int = 3) -> None:
        super().__init__()
        self.aggregator = nn.Module()
        self.aggregator.patch_embed = Stack(dim, depth)
        self.aggregator.frame_blocks = nn.ModuleList([Block(dim, 4, qkv_bias=True)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregator.frame_blocks[0](self.aggregator.patch_embed(x))


def _randomise_lora(model: nn.Module, seed: int = 0, std: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)


def _model(seed: int = 0, cls=Stack) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


X = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("form", FORMS)
def test_vit_large_trainable_count(form, caplog):
    with torch.device("meta"):
        model = Stack(dim=1024, depth=24, heads=16)
    with caplog.at_level(logging.INFO, logger="tune3d.fin3r.adapters"):
        n = add_adapters(model, form=form, rank=8, alpha=8)
    assert n == 786_432 == 24 * (8 * 1024 + 3 * 1024 * 8)
    assert "trainable parameters: 786,432" in caplog.text


@pytest.mark.parametrize("form", FORMS)
def test_only_adapters_trainable_and_start_at_base(form):
    model = _model()
    y0 = model(X)
    n = add_adapters(model, form=form, rank=4, alpha=4)
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in k or ".lora_B." in k for k in trainable)
    assert n == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert adapter_form(model) == form
    torch.testing.assert_close(model(X), y0, atol=1e-6, rtol=0)  # B = 0 at init
    _randomise_lora(model)
    model(X).square().mean().backward()
    for k, p in model.named_parameters():
        assert (p.grad is not None) == (".lora_" in k), k


def test_pattern_only_hits_encoder():
    model = _model(cls=CroCoLike)
    add_adapters(model)
    adapted = {k.rsplit(".lora_", 1)[0] for k in adapter_state_dict(model)}
    assert adapted == {"enc_blocks.0.attn.qkv", "enc_blocks.1.attn.qkv"}
    assert type(model.dec_blocks[0].attn.qkv) is nn.Linear


def test_bad_pattern_and_double_add():
    with pytest.raises(Tune3DError, match="matches no module"):
        add_adapters(_model(), pattern=r"nothing\.here")
    with pytest.raises(Tune3DError, match="unknown adapter form"):
        add_adapters(_model(), form="dora")
    model = _model()
    add_adapters(model)
    with pytest.raises(Tune3DError, match="already has adapters"):
        add_adapters(model)
    with pytest.raises(Tune3DError, match="no encoder qkv pattern"):
        add_adapters(nn.Sequential(nn.Linear(4, 12)))


@pytest.mark.parametrize("form", ["plain", "renorm-weight"])
def test_merge_reproduces_unmerged(form):
    model = _model()
    y_base = model(X)
    add_adapters(model, form=form, rank=4, alpha=8)
    _randomise_lora(model)
    with torch.no_grad():
        y = model(X)
    assert (y - y_base).abs().max() > 1e-2  # the adapter does something
    merge_adapters(model)
    assert all(type(b.attn.qkv) is nn.Linear for b in model.blocks)
    assert not any(".lora_" in k for k in model.state_dict())
    assert "blocks.0.attn.qkv.weight" in model.state_dict()
    with torch.no_grad():
        torch.testing.assert_close(model(X), y, atol=1e-5, rtol=0)


def test_renorm_cannot_merge():
    model = _model()
    add_adapters(model, form="renorm")
    with pytest.raises(Tune3DError, match="cannot be merged"):
        merge_adapters(model)
    with pytest.raises(Tune3DError, match="cannot be merged"):
        model.blocks[0].attn.qkv.merge()


def test_renorm_keeps_qkv_token_norms():
    base = _model()
    model = _model()
    add_adapters(model, form="renorm", rank=4, alpha=4)
    _randomise_lora(model, std=1.0)
    # Hook every adapted qkv in a full forward; compare each token's q/k/v norms with the frozen layer's
    # output on the same input.
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(mod, inp, out):
        pairs.append((mod.base_layer(inp[0]), out))

    handles = [b.attn.qkv.register_forward_hook(hook) for b in model.blocks]
    with torch.no_grad():
        y = model(X)
    for h in handles:
        h.remove()
    assert len(pairs) == len(model.blocks)
    for y0, y1 in pairs:
        for c0, c in zip(y0.chunk(3, -1), y1.chunk(3, -1)):
            torch.testing.assert_close(c.norm(dim=-1), c0.norm(dim=-1), atol=1e-4, rtol=1e-4)
            assert torch.nn.functional.cosine_similarity(c, c0, dim=-1).min() < 0.99  # directions changed
    # First block sees the same input as the frozen model's first block: frozen norms directly.
    h0 = base.blocks[0].norm1(X)
    for c0, c in zip(base.blocks[0].attn.qkv(h0).chunk(3, -1), pairs[0][1].chunk(3, -1)):
        torch.testing.assert_close(c.norm(dim=-1), c0.norm(dim=-1), atol=1e-4, rtol=1e-4)
    assert (y - base(X)).abs().max() > 1e-3


def test_renorm_weight_keeps_chunk_frobenius_norm():
    model = _model()
    w0 = model.blocks[0].attn.qkv.weight.detach().clone()
    add_adapters(model, form="renorm-weight", rank=4, alpha=4)
    _randomise_lora(model, std=1.0)
    merge_adapters(model)
    w1 = model.blocks[0].attn.qkv.weight.detach()
    assert not torch.allclose(w0, w1)
    for c0, c1 in zip(w0.chunk(3, 0), w1.chunk(3, 0)):
        torch.testing.assert_close(c1.norm(), c0.norm(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", FORMS)
def test_save_load_round_trip(tmp_path, form):
    model = _model()
    add_adapters(model, form=form, rank=4, alpha=2)
    _randomise_lora(model)
    with torch.no_grad():
        y = model(X)
    path = tmp_path / "adapters.safetensors"
    save_adapters(model, path)
    fresh = _model()  # same base weights (same seed)
    info = load_adapters(fresh, path)
    assert info == {"form": form, "rank": 4, "alpha": 2.0, "n_tensors": 4}
    assert adapter_form(fresh) == form
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), y, atol=0, rtol=0)
    for k, v in adapter_state_dict(model).items():
        assert torch.equal(adapter_state_dict(fresh)[k], v)


def test_load_form_mismatch_and_wrong_model(tmp_path):
    model = _model()
    add_adapters(model, form="plain", rank=4)
    path = tmp_path / "a.safetensors"
    save_adapters(model, path)
    other = _model()
    add_adapters(other, form="renorm", rank=4)
    with pytest.raises(Tune3DError, match="a.safetensors.*'plain'"):
        load_adapters(other, path)
    deeper = Stack(depth=3)
    with pytest.raises(Tune3DError, match=r"a\.safetensors: adapter keys do not match.*missing"):
        load_adapters(deeper, path)


def _released_style_pth(path, seed: int = 3) -> dict[str, torch.Tensor]:
    """Build a checkpoint exactly as the released Fin3R code does: wrap each encoder ``block.attn`` in
    ``get_peft_model(LoraConfig(r=8, lora_alpha=8, target_modules=["qkv"], lora_dropout=0.1))``."""
    src = _model(seed=0, cls=VGGTLike)
    for blk in src.aggregator.patch_embed.blocks:
        cfg = LoraConfig(r=8, lora_alpha=8, target_modules=["qkv"], lora_dropout=0.1)
        blk.attn = get_peft_model(blk.attn, cfg)
    _randomise_lora(src, seed=seed)
    sd = src.state_dict()
    assert "aggregator.patch_embed.blocks.0.attn.base_model.model.qkv.lora_A.default.weight" in sd
    assert "aggregator.patch_embed.blocks.0.attn.base_model.model.qkv.base_layer.weight" in sd
    torch.save(sd, path)
    return {k: v for k, v in sd.items() if ".lora_" in k}


def test_load_released_key_names(tmp_path):
    path = tmp_path / "vggt_lora.pth"
    released = _released_style_pth(path)
    model = _model(seed=0, cls=VGGTLike)
    info = load_adapters(model, path)  # no adapters yet: added as renorm, r = alpha = 8
    assert info["form"] == "renorm" and info["rank"] == 8 and info["alpha"] == 8.0
    ours = adapter_state_dict(model)
    assert len(ours) == len(released) == 6
    for k, v in released.items():
        assert torch.equal(ours[k.replace(".base_model.model.", ".")], v)
    # The released forward: y0 + scale*BAx, then per-chunk renorm (dropout configured but never applied).
    qkv = model.aggregator.patch_embed.blocks[1].attn.qkv
    h = torch.randn(4, 32)
    A = released["aggregator.patch_embed.blocks.1.attn.base_model.model.qkv.lora_A.default.weight"]
    Bm = released["aggregator.patch_embed.blocks.1.attn.base_model.model.qkv.lora_B.default.weight"]
    y0 = qkv.base_layer(h)
    y = y0 + h @ A.T @ Bm.T
    ref = torch.cat(
        [
            c * c0.norm(dim=-1, keepdim=True) / (c.norm(dim=-1, keepdim=True) + 1e-6)
            for c0, c in zip(y0.chunk(3, -1), y.chunk(3, -1))
        ],
        -1,
    )
    with torch.no_grad():
        torch.testing.assert_close(qkv(h), ref, atol=1e-6, rtol=1e-5)


def test_load_released_mismatch_names_file(tmp_path):
    path = tmp_path / "mast3r_lora.pth"
    _released_style_pth(path)
    wrong = _model(seed=0, cls=CroCoLike)  # different encoder paths
    add_adapters(wrong, form="renorm", rank=8, alpha=8)
    with pytest.raises(Tune3DError, match="mast3r_lora.pth: adapter keys do not match"):
        load_adapters(wrong, path)
    empty = tmp_path / "empty.pth"
    torch.save({"x": torch.zeros(1)}, empty)
    with pytest.raises(Tune3DError, match="empty.pth: no LoRA tensors"):
        load_adapters(_model(), empty)


def test_timm_vit_default_pattern():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=0).eval()
    n = add_adapters(model, form="renorm", rank=2, alpha=2)
    assert n == 12 * (2 * 192 + 3 * 192 * 2)
    assert len(adapter_state_dict(model)) == 24
    assert TIMM_VIT_QKV_PATTERN == r"blocks\.\d+\.attn\.qkv"
