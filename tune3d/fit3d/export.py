"""Export a fine-tuned backbone as a plain timm checkpoint and rebuild it without tune3d.

``backbone.safetensors`` is the timm model's own ``state_dict`` (no wrapper, no prefixes), so
``timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay=dict(file=path), **model_kwargs)``
or ``model.load_state_dict(load_file(path), strict=True)`` reads it; ``backbone.json`` beside it
(written by :func:`tune3d.backbones.save_backbone`) records the registry name, timm name and kwargs,
patch size, width, normalisation and digests, so ``tune3d features --backbone NAME --weights FILE`` and
:func:`tune3d.backbones.create_backbone` read it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import timm
from torch import nn

from tune3d.backbones import save_backbone
from tune3d.errors import Tune3DError
from tune3d.io import read_json


def export_backbone(backbone, out_dir: str | os.PathLike, **extra: Any) -> Path:
    """Write ``backbone.safetensors`` + ``backbone.json`` for a :class:`tune3d.backbones.Backbone`.

    ``extra`` is stored in the JSON (``base_weights``, ``method``, ...). Returns the weights path.
    """
    return save_backbone(backbone.timm_model, backbone.spec, out_dir, **extra)


def load_exported_timm(path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """Rebuild an exported backbone with timm alone (the way a user without tune3d would).

    ``path`` is ``backbone.safetensors`` or its folder. Loads through timm's pretrained machinery (strict),
    with ``dynamic_img_size=True`` so any patch-multiple input size works.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "backbone.safetensors"
    cfg_path = path.with_name("backbone.json")
    if not path.is_file() or not cfg_path.is_file():
        raise Tune3DError(f"{path}: exported backbone needs backbone.safetensors and backbone.json")
    cfg = read_json(cfg_path)
    model = timm.create_model(
        cfg["timm_name"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
        num_classes=0,
        dynamic_img_size=True,
        **cfg.get("model_kwargs", {}),
    )
    return model.to(device).eval()
