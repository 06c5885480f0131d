"""Fin3R encoder adapters: LoRA on the encoder's fused ``qkv`` projections, in three forms.

``"renorm"`` (default, what the released Fin3R checkpoints use) — activation re-normalisation::

    y0 = W x + b                        (frozen base output)
    y  = y0 + (alpha / r) · B A x       (LoRA)
    q' = q · ‖q0‖ / (‖q‖ + 1e-6)        per token, same for k and v (norm over the full dim-wide chunk)

The adapter can only rotate each token's q/k/v, never change its length, so the frozen decoder keeps
seeing encoder features of the scale it was trained on. It is non-linear in ``x`` and cannot be merged.

``"renorm-weight"`` — the paper's weight form ``W' = (W + s·BA) · ‖W‖ / ‖W + s·BA‖``. The paper writes
``‖·‖₂``; we use the **Frobenius norm of each of the q, k and v blocks of W separately** (three scalars
per layer): per-chunk mirrors the activation form (which also treats q, k, v independently and never lets
the update trade magnitude between them); Frobenius is differentiable and cheap at every training step,
whereas the spectral norm needs an SVD of a 3072x1024 matrix per block per step. Mergeable.

``"plain"`` — standard peft LoRA, mergeable.

All three are peft LoRA layers (the two renorm forms through peft's custom-module hook), so parameter
names follow peft: ``...qkv.base_layer.weight``, ``...qkv.lora_A.default.weight``,
``...qkv.lora_B.default.weight``. The released ``*_lora.pth`` files, produced by wrapping each encoder
``block.attn`` in ``get_peft_model``, name the same tensors
``...attn.base_model.model.qkv.lora_A.default.weight``; :func:`load_adapters` maps those names.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import Linear as PeftLoraLinear
from peft.tuners.lora import LoraLayer
from safetensors import safe_open
from torch import Tensor, nn

from tune3d.errors import Tune3DError
from tune3d.fin3r.config import FORMS
from tune3d.io import load_safetensors, save_safetensors_atomic, torch_load_safe

logger = logging.getLogger(__name__)

#: qkv of timm ``VisionTransformer`` blocks (and any ``blocks.N.attn.qkv`` stack).
TIMM_VIT_QKV_PATTERN = r"blocks\.\d+\.attn\.qkv"
ADAPTER_NAME = "default"
_FORMAT = "tune3d.fin3r.adapters"
_EPS = 1e-6  # as in the released renorm_lora.py


def _split_qkv(t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    if t.shape[-1] % 3:
        raise ValueError(f"qkv width {t.shape[-1]} is not divisible by 3")
    return t.chunk(3, dim=-1)


def renormalize_qkv(y0: Tensor, y: Tensor, eps: float = _EPS) -> Tensor:
    """Rescale each token's q, k and v chunk of ``y`` to the L2 norm of the same chunk of ``y0``.

    ``y0``, ``y``: ``(..., 3*dim)`` fused qkv outputs (frozen, adapted). The norm is taken over the whole
    ``dim``-wide chunk (all heads together), exactly as the released Fin3R code does.
    """
    out = []
    for c0, c in zip(_split_qkv(y0), _split_qkv(y)):
        out.append(c * (c0.norm(dim=-1, keepdim=True) / (c.norm(dim=-1, keepdim=True) + eps)))
    return torch.cat(out, dim=-1)


class RenormLoraLinear(PeftLoraLinear):
    """Fin3R re-normalisation LoRA, activation form (not mergeable)."""

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        y0 = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters or self.merged:
            return y0
        y = y0
        active = [a for a in self.active_adapters if a in self.lora_A]
        for name in active:
            lora_A, lora_B = self.lora_A[name], self.lora_B[name]
            xa = self._cast_input_dtype(x, lora_A.weight.dtype)
            y = y + lora_B(lora_A(self.lora_dropout[name](xa))).to(y0.dtype) * self.scaling[name]
        if not active:
            return y0
        return renormalize_qkv(y0, y)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise Tune3DError(
            "the 'renorm' (activation re-normalisation) adapter is non-linear and cannot be merged; "
            "use form 'renorm-weight' or 'plain' for a mergeable adapter"
        )

    def __repr__(self) -> str:
        return "renorm_" + super().__repr__()


class RenormWeightLoraLinear(PeftLoraLinear):
    """Fin3R re-normalisation LoRA, weight form: ``W' = (W + s·BA) · ‖W_c‖_F / ‖(W + s·BA)_c‖_F`` per q/k/v
    chunk ``c``. Merging writes ``W'`` into the base weight (through :meth:`get_delta_weight`)."""

    def _renormed_weight(self, adapters: list[str]) -> Tensor:
        W = self.get_base_layer().weight
        W1 = W
        for name in adapters:
            W1 = W1 + self._lora_delta(name).to(W.dtype)
        d_out = W.shape[0] // 3
        W0c = W.reshape(3, d_out, -1)
        W1c = W1.reshape(3, d_out, -1)
        scale = W0c.norm(dim=(1, 2), keepdim=True) / (W1c.norm(dim=(1, 2), keepdim=True) + _EPS)
        return (W1c * scale).reshape_as(W)

    def _lora_delta(self, adapter: str) -> Tensor:
        return self.lora_B[adapter].weight @ self.lora_A[adapter].weight * self.scaling[adapter]

    def get_delta_weight(self, adapter: str) -> Tensor:
        W = self.get_base_layer().weight
        return self._renormed_weight([adapter]) - W

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        base = self.base_layer
        active = [a for a in self.active_adapters if a in self.lora_A]
        if self.disable_adapters or self.merged or not active:
            return base(x, *args, **kwargs)
        return F.linear(x, self._renormed_weight(active).to(x.dtype), base.bias)

    def unmerge(self) -> None:
        # W' depends non-linearly on W, so W cannot be recovered from W' and (A, B) alone.
        raise Tune3DError("a merged 'renorm-weight' adapter cannot be unmerged; reload the base weights")

    def __repr__(self) -> str:
        return "renorm_weight_" + super().__repr__()


_LAYER_CLS = {"renorm": RenormLoraLinear, "renorm-weight": RenormWeightLoraLinear, "plain": PeftLoraLinear}
_FORM_OF = {cls: form for form, cls in _LAYER_CLS.items()}


def default_pattern(model: nn.Module) -> str:
    """The encoder-qkv regex for ``model``: its ``encoder_qkv_pattern`` attribute, else timm's ViT pattern."""
    pattern = getattr(model, "encoder_qkv_pattern", "") or ""
    if pattern:
        return pattern
    if any(re.fullmatch(TIMM_VIT_QKV_PATTERN, n) for n, _ in model.named_modules()):
        return TIMM_VIT_QKV_PATTERN
    raise Tune3DError(
        f"{type(model).__name__}: no encoder qkv pattern (set `encoder_qkv_pattern` or pass pattern=...)"
    )


def lora_layers(model: nn.Module) -> dict[str, LoraLayer]:
    """Module name -> peft LoRA layer, for every adapted layer in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoraLayer)}


def adapter_form(model: nn.Module) -> str | None:
    """The form of the adapters in ``model`` (``None`` if it has none)."""
    forms = {_FORM_OF.get(type(m), type(m).__name__) for m in lora_layers(model).values()}
    if len(forms) > 1:
        raise Tune3DError(f"model has mixed adapter kinds {sorted(forms)}")
    return forms.pop() if forms else None


def add_adapters(
    model: nn.Module,
    form: str = "renorm",
    rank: int = 8,
    alpha: float = 8,
    pattern: str | None = None,
    dropout: float = 0.0,
) -> int:
    """Add LoRA adapters on the encoder's qkv projections of ``model`` in place and freeze everything else.

    ``pattern`` is a regex fully matching the qkv module names (default: :func:`default_pattern`).
    Init is peft's (A Kaiming-uniform, B zero), so the adapted model starts exactly at the base model.
    The released Fin3R config sets ``lora_dropout=0.1`` but its forward never applies it; 0 matches that.
    Returns the number of trainable parameters (786,432 for a ViT-L encoder at rank 8).
    """
    if form not in FORMS:
        raise Tune3DError(f"unknown adapter form {form!r}; choose one of {', '.join(FORMS)}")
    if rank < 1:
        raise Tune3DError(f"adapter rank must be >= 1, got {rank}")
    if lora_layers(model):
        raise Tune3DError(f"{type(model).__name__} already has adapters")
    pattern = pattern or default_pattern(model)
    targets = [n for n, m in model.named_modules() if re.fullmatch(pattern, n)]
    if not targets:
        raise Tune3DError(f"adapter pattern {pattern!r} matches no module of {type(model).__name__}")
    for n in targets:
        m = model.get_submodule(n)
        if not isinstance(m, nn.Linear) or m.out_features % 3:
            raise Tune3DError(f"adapter target {n} is not a fused qkv nn.Linear (got {type(m).__name__})")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=pattern, lora_dropout=dropout, bias="none")
    if form != "plain":
        config._register_custom_module({nn.Linear: _LAYER_CLS[form]})
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    model._tune3d_adapters = {"form": form, "rank": int(rank), "alpha": float(alpha), "pattern": pattern}
    n_train = 0
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name)
        n_train += p.numel() if p.requires_grad else 0
    logger.info("trainable parameters: %s", f"{n_train:,}")
    return n_train


def merge_adapters(model: nn.Module) -> nn.Module:
    """Merge mergeable adapters (plain, renorm-weight) into the base weights, in place, and remove the
    LoRA layers so the model has its original module classes and key names (``qkv.weight``)."""
    layers = lora_layers(model)
    if not layers:
        raise Tune3DError(f"{type(model).__name__} has no adapters to merge")
    if any(isinstance(m, RenormLoraLinear) for m in layers.values()):
        raise Tune3DError(
            "the 'renorm' (activation re-normalisation) adapter is non-linear and cannot be merged; "
            "use form 'renorm-weight' or 'plain' for a mergeable adapter"
        )
    with torch.no_grad():
        for name, layer in layers.items():
            layer.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer.get_base_layer())
    if hasattr(model, "_tune3d_adapters"):
        del model._tune3d_adapters
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The LoRA tensors of ``model`` (``...qkv.lora_A.default.weight``, ``...qkv.lora_B.default.weight``)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def save_adapters(
    model: nn.Module,
    path: str | Path,
    form: str | None = None,
    rank: int | None = None,
    alpha: float | None = None,
) -> None:
    """Save the adapters as safetensors with their form/rank/alpha/pattern in the metadata (atomic)."""
    info = dict(getattr(model, "_tune3d_adapters", {}))
    form = form or info.get("form") or adapter_form(model)
    rank = rank if rank is not None else info.get("rank")
    alpha = alpha if alpha is not None else info.get("alpha")
    sd = adapter_state_dict(model)
    if not sd:
        raise Tune3DError(f"{path}: model has no adapters to save")
    if rank is None:
        rank = next(v.shape[0] for k, v in sd.items() if ".lora_A." in k)
    meta = {
        "format": _FORMAT,
        "form": str(form),
        "rank": str(int(rank)),
        "alpha": str(float(alpha if alpha is not None else rank)),
        "pattern": info.get("pattern", ""),
    }
    save_safetensors_atomic(sd, path, metadata=meta)


def _read_adapter_file(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if path.suffix == ".safetensors":
        sd = load_safetensors(path)
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        return sd, meta
    obj = torch_load_safe(path)
    # Unwrap the usual checkpoint containers ({"model": sd}, {"state_dict": sd}).
    while isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = next(
            (obj[k] for k in ("state_dict", "model", "lora", "module") if isinstance(obj.get(k), dict)), None
        )
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise Tune3DError(f"{path}: not an adapter state dict (got {type(obj).__name__})")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}, {}


def canonical_adapter_key(key: str) -> str:
    """Map a released/peft-wrapped adapter key onto our naming.

    ``aggregator.patch_embed.blocks.3.attn.base_model.model.qkv.lora_A.default.weight`` ->
    ``aggregator.patch_embed.blocks.3.attn.qkv.lora_A.default.weight``; a DDP ``module.`` prefix is dropped.
    """
    key = key.replace(".base_model.model.", ".")
    if key.startswith("base_model.model."):
        key = key[len("base_model.model.") :]
    if key.startswith("module."):
        key = key[len("module.") :]
    return key


def load_adapters(model: nn.Module, path: str | Path, form: str | None = None) -> dict[str, Any]:
    """Load adapters from ``path`` into ``model`` (adding them first if the model has none).

    Accepts our safetensors files and the released Fin3R ``.pth`` files (peft names on the official encoder
    paths; any ``base_layer`` / non-LoRA tensors in them are the frozen base weights and are ignored).
    Files without metadata are taken to be the released renorm adapters with ``alpha = rank`` unless
    ``form`` is given. Returns ``{"form", "rank", "alpha", "n_tensors"}``.
    """
    path = Path(path)
    raw, meta = _read_adapter_file(path)
    sd = {canonical_adapter_key(k): v for k, v in raw.items() if ".lora_A." in k or ".lora_B." in k}
    if not sd:
        raise Tune3DError(f"{path}: no LoRA tensors (lora_A / lora_B) found")
    rank = int(meta.get("rank") or next(v.shape[0] for k, v in sd.items() if ".lora_A." in k))
    alpha = float(meta.get("alpha") or rank)
    file_form = form or meta.get("form") or "renorm"
    if file_form not in FORMS:
        raise Tune3DError(f"{path}: unknown adapter form {file_form!r}")
    if not lora_layers(model):
        add_adapters(model, form=file_form, rank=rank, alpha=alpha, pattern=meta.get("pattern") or None)
    else:
        have = adapter_form(model)
        if have != file_form:
            raise Tune3DError(f"{path}: adapters are {file_form!r} but the model has {have!r} adapters")
    own = {k: v for k, v in model.state_dict().items() if ".lora_" in k}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise Tune3DError(f"{path}: adapter keys do not match the model: {'; '.join(detail)}")
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise Tune3DError(f"{path}: {k} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in sd.items():
            params[k].copy_(v.to(params[k].dtype))
    return {"form": file_form, "rank": rank, "alpha": alpha, "n_tensors": len(sd)}
