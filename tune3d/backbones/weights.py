"""Where backbone weights come from and how they are turned into a plain timm state dict.

Sources, in the order :func:`resolve_weights` tries them:

1. a file the caller names: an official release ``.pth`` (e.g. ``dinov2_vits14_pretrain.pth``), a
   timm/Hugging Face ``model.safetensors``, or a checkpoint this project wrote
   (``backbone.safetensors`` + ``backbone.json``; a folder holding both may be given instead);
2. the Hugging Face hub (``timm/<timm_name>``), from the local cache or with one short online try;
3. random initialisation, only when the caller allows it.

Every file goes through timm's own ``checkpoint_filter_fn`` for the architecture, so official DINOv2
keys are converted exactly as timm converts them (``mask_token`` dropped, ``register_tokens`` ->
``reg_token`` with ``cls_token + pos_embed[:, 0]``, SwiGLU ``w12/w3`` -> ``fc1/fc2``; DINOv3
``storage_tokens`` -> ``reg_token``, ``ls1/ls2.gamma`` -> ``gamma_1/2``; SAM ``image_encoder.*`` kept,
``mlp.lin*`` -> ``mlp.fc*``, prompt encoder and mask decoder dropped). ``.pth`` files are read with
``weights_only=True`` only.

DINOv3 files get two checks first (:func:`check_dinov3_release`), because timm's converter discards
these keys silently: the masked ``qkv.bias`` must be zero (timm's DINOv3 ViTs have no qkv bias) and the
stored RoPE ``periods`` must equal the ones timm computes.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from tune3d.backbones.registry import BackboneSpec
from tune3d.errors import Tune3DError, WeightsUnavailableError
from tune3d.hub import hub_model_available
from tune3d.io import (
    file_digest,
    load_safetensors,
    read_json,
    save_safetensors_atomic,
    torch_load_safe,
    write_json,
)

CONFIG_NAME = "backbone.json"
WEIGHTS_NAME = "backbone.safetensors"
FORMAT = "tune3d.backbone"
HUB_TIMEOUT_S = 10.0

_WRAPPER_KEYS = ("model", "state_dict", "model_ema", "module")


@dataclass(frozen=True)
class WeightsInfo:
    """What was loaded: ``label`` is the file digest, ``"hub"`` or ``"random-init"``; ``cache_id`` is a
    stable identity for feature caching (digest, ``hub:<repo>@<revision>`` or ``random-init:<seed>``)."""

    label: str
    cache_id: str
    source: str  # file path, hub repo id or "random-init"


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``name -> tensor`` dict (unwrapping ``model``/``state_dict``)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        sd = load_safetensors(path)
    else:
        sd = torch_load_safe(path)
    for _ in range(2):  # e.g. {"model": {...}} or {"state_dict": {"module": ...}}
        if isinstance(sd, dict):
            wrapped = [k for k in _WRAPPER_KEYS if isinstance(sd.get(k), dict)]
            if wrapped and not any(isinstance(v, torch.Tensor) for v in sd.values()):
                sd = sd[wrapped[0]]
    if not isinstance(sd, dict) or not sd:
        raise Tune3DError(f"{path}: not a state dict (found {type(sd).__name__})")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise Tune3DError(f"{path}: state dict has non-tensor entries: {', '.join(map(str, bad[:5]))}")
    return dict(sd)


def _filter_fn(spec: BackboneSpec) -> Callable:
    """timm's own checkpoint converter for the spec's architecture (the module's ``checkpoint_filter_fn``)."""
    module = sys.modules[timm.models.model_entrypoint(spec.architecture).__module__]
    fn = getattr(module, "checkpoint_filter_fn", None)
    if fn is None:  # pragma: no cover - every registered family has one
        return lambda sd, model: sd
    return functools.partial(fn, **spec.filter_kwargs) if spec.filter_kwargs else fn


def check_dinov3_release(sd: dict[str, torch.Tensor], model: nn.Module, what: str) -> dict[str, torch.Tensor]:
    """Official DINOv3 layout: verify and drop ``attn.qkv.bias``/``bias_mask`` and ``rope_embed.periods``.

    The release computes ``bias * bias_mask``; the S/B/L files hold zeros in both. A file with a non-zero
    masked bias needs the ``*_qkvb`` architecture, so it is refused rather than silently truncated.
    """
    out = dict(sd)
    if not any(k.endswith("attn.q_bias") for k in model.state_dict()):  # *_qkvb: timm splits the bias
        for k in [k for k in sd if k.endswith("attn.qkv.bias")]:
            bias = out.pop(k)
            mask = out.pop(k + "_mask", None)
            if bias.device.type == "meta":
                continue
            effective = bias.float() * mask.float() if mask is not None else bias.float()
            if not bool(torch.isfinite(effective).all()) or bool(effective.abs().max() > 0):
                raise Tune3DError(
                    f"{what}: {k} is non-zero after its bias_mask; the bias-free timm DINOv3 architecture "
                    "cannot hold it (a *_qkvb variant would be needed)"
                )
    periods = out.pop("rope_embed.periods", None)
    ref = getattr(getattr(model, "rope", None), "periods", None)
    if periods is None or ref is None or "meta" in (periods.device.type, ref.device.type):
        return out
    if periods.shape != ref.shape or not torch.allclose(periods.float().cpu(), ref.float().cpu(), rtol=1e-4):
        raise Tune3DError(
            f"{what}: rope_embed.periods {periods.flatten()[:4].tolist()} differ from the model's "
            f"{ref.flatten()[:4].tolist()} (another RoPE base or head size?)"
        )
    return out


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], model: nn.Module, spec: BackboneSpec, what: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Convert any supported layout (official release, timm, OpenCLIP...) to ``model``'s timm keys."""
    sd = dict(state_dict)  # timm's filters pop keys; keep the caller's dict intact
    if "module." in next(iter(sd)):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if spec.family == "dinov3" and "storage_tokens" in sd:
        sd = check_dinov3_release(sd, model, what)
    return _filter_fn(spec)(sd, model)


def check_state_dict(sd: dict[str, torch.Tensor], model: nn.Module, what: str, spec: BackboneSpec) -> None:
    """Raise one clear line when keys or shapes of ``sd`` differ from ``model.state_dict()``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        f"{k} {list(got[k])} vs model {list(expected[k])}"
        for k in expected
        if k in got and got[k] != expected[k]
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        parts.append(
            f"{len(shapes)} shape mismatch(es): "
            + "; ".join(shapes[:3])
            + (" ..." if len(shapes) > 3 else "")
        )
    if missing:
        parts.append(
            f"{len(missing)} missing key(s): " + ", ".join(missing[:4]) + (" ..." if len(missing) > 4 else "")
        )
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected key(s): "
            + ", ".join(unexpected[:4])
            + (" ..." if len(unexpected) > 4 else "")
        )
    hint = ""
    if shapes and any(
        k in ("cls_token", "patch_embed.proj.weight", "norm.weight") for k in got if k in expected
    ):
        widths = {got[k][-1] for k in ("cls_token", "norm.weight") if k in got}
        if widths and spec.width not in widths:
            width = sorted(widths)[0]
            hint = f" (checkpoint width {width}, {spec.name} expects {spec.width}: wrong model size?)"
    raise Tune3DError(f"{what}: does not fit {spec.name} ({spec.timm_name}){hint}: " + "; ".join(parts))


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], spec: BackboneSpec, what: str) -> None:
    """Convert ``state_dict`` with timm's filter, check it and load it strictly into ``model``."""
    try:
        sd = convert_state_dict(state_dict, model, spec, what)
    except Tune3DError:
        raise
    except Exception as e:  # timm's converters raise plain errors on malformed input
        raise Tune3DError(
            f"{what}: cannot convert checkpoint for {spec.name} ({type(e).__name__}: {e})"
        ) from None
    check_state_dict(sd, model, what, spec)
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------------------- project format
def project_config(path: Path) -> dict | None:
    """The ``backbone.json`` that belongs to a project checkpoint ``path``, if there is one."""
    cfg_path = path.with_name(CONFIG_NAME) if path.name == WEIGHTS_NAME else path.with_suffix(".json")
    if not cfg_path.is_file():
        return None
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        return None
    return cfg


def resolve_weights_path(weights: str | os.PathLike) -> Path:
    """A folder holding ``backbone.safetensors`` resolves to that file; missing paths raise."""
    path = Path(weights).expanduser()
    if path.is_dir():
        if (path / WEIGHTS_NAME).is_file():
            return path / WEIGHTS_NAME
        raise Tune3DError(f"{path}: folder has no {WEIGHTS_NAME}")
    if not path.is_file():
        raise Tune3DError(f"{path}: weights file not found")
    return path


def save_backbone(timm_model: nn.Module, spec: BackboneSpec, out_dir: str | os.PathLike, **extra) -> Path:
    """Write ``backbone.safetensors`` (the plain timm state dict) and ``backbone.json`` into ``out_dir``.

    ``timm.create_model(spec.timm_name, pretrained=True, pretrained_cfg_overlay=dict(file=...))`` loads the
    safetensors file without tune3d; :func:`tune3d.backbones.create_backbone` reads both files.
    Returns the weights path. ``extra`` entries (e.g. ``parent_weights``) are stored in the JSON.
    """
    out_dir = Path(out_dir)
    path = out_dir / WEIGHTS_NAME
    sd = {
        k: v.detach().float() if v.is_floating_point() else v.detach()
        for k, v in timm_model.state_dict().items()
    }
    save_safetensors_atomic(sd, path, metadata={"format": "pt", "tune3d": FORMAT, "backbone": spec.name})
    cfg = {
        "format": FORMAT,
        "version": 1,
        "name": spec.name,
        "timm_name": spec.timm_name,
        "model_kwargs": dict(spec.model_kwargs),
        "patch_size": spec.patch_size,
        "width": spec.width,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "weights_digest": file_digest(path),
        **extra,
    }
    write_json(out_dir / CONFIG_NAME, cfg)
    return path


# --------------------------------------------------------------------------------------- hub
def fetch_hub_weights(spec: BackboneSpec, timeout: float = HUB_TIMEOUT_S) -> tuple[Path, str]:
    """Path of the spec's hub ``model.safetensors`` and its revision: from the local Hugging Face cache,
    else one download try with a short timeout. Raises :class:`WeightsUnavailableError` (one line)."""
    fix = "pass --weights FILE or --allow-random-init"
    msg = f"could not fetch pretrained weights for {spec.name} (offline?); {fix}"
    if spec.hf_hub_id is None:
        raise WeightsUnavailableError(f"{spec.name} is a test model without pretrained weights; {fix}")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        raise WeightsUnavailableError(msg) from None

    filename = "model.safetensors"
    try:
        local = hf_hub_download(spec.hf_hub_id, filename, local_files_only=True)
    except Exception:
        # One short reachability probe first: hf_hub_download itself retries with back-off for ~30 s.
        if not hub_model_available(spec.hf_hub_id, timeout)[0]:
            raise WeightsUnavailableError(msg) from None
        try:
            local = hf_hub_download(spec.hf_hub_id, filename, etag_timeout=timeout)
        except Exception:  # network, DNS, HTTP, auth: all mean "not available now"
            raise WeightsUnavailableError(msg) from None
    local = Path(local)
    revision = local.parent.name if local.parent.parent.name == "snapshots" else "unknown"
    return local, revision


# --------------------------------------------------------------------------------------- entry point
def resolve_weights(
    model: nn.Module,
    spec: BackboneSpec,
    weights: str | os.PathLike | None,
    allow_random_init: bool,
    seed: int = 0,
) -> WeightsInfo:
    """Load weights into ``model`` (a freshly built timm model) and say what was loaded."""
    if weights is not None:
        path = resolve_weights_path(weights)
        cfg = project_config(path)
        if cfg is not None and cfg.get("name") not in (None, spec.name):
            raise Tune3DError(f"{path}: checkpoint was saved for backbone {cfg['name']!r}, not {spec.name!r}")
        load_into(model, read_state_dict(path), spec, str(path))
        return WeightsInfo(label=file_digest(path), cache_id=file_digest(path), source=str(path))
    try:
        path, revision = fetch_hub_weights(spec)
    except WeightsUnavailableError:
        if not allow_random_init:
            raise
        return WeightsInfo(label="random-init", cache_id=f"random-init-s{seed}", source="random-init")
    load_into(model, read_state_dict(path), spec, str(path))
    return WeightsInfo(label="hub", cache_id=f"hub-{revision}", source=f"hf-hub:{spec.hf_hub_id}@{revision}")
