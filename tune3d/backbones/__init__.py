"""Foundation-model backbones on timm: registry, weight loading, dense features, feature cache.

>>> from tune3d.backbones import create_backbone
>>> bb = create_backbone("dinov2_vits14", weights="dinov2_vits14_pretrain.pth")  # doctest: +SKIP
>>> feats = bb.forward_features(images)  # images B,3,H,W in [0, 1]            # doctest: +SKIP
>>> feats.patch.shape  # B,384,round(H/14),round(W/14)                         # doctest: +SKIP
"""

from tune3d.backbones.cache import FeatureCache, image_digest, path_digest
from tune3d.backbones.extract import extract_features, image_to_tensor, open_cache, resize_images
from tune3d.backbones.model import (
    RESIZE_MODES,
    Backbone,
    DenseFeatures,
    build_timm_model,
    create_backbone,
    network_input_size,
)
from tune3d.backbones.registry import BackboneSpec, get_spec, list_backbones, register_backbone
from tune3d.backbones.weights import (
    WeightsInfo,
    convert_state_dict,
    read_state_dict,
    save_backbone,
)

__all__ = [
    "RESIZE_MODES",
    "Backbone",
    "BackboneSpec",
    "DenseFeatures",
    "FeatureCache",
    "WeightsInfo",
    "build_timm_model",
    "convert_state_dict",
    "create_backbone",
    "extract_features",
    "get_spec",
    "image_digest",
    "image_to_tensor",
    "list_backbones",
    "network_input_size",
    "open_cache",
    "path_digest",
    "read_state_dict",
    "register_backbone",
    "resize_images",
    "save_backbone",
]
