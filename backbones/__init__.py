"""Backbones: spatial feature extractors for frames and event voxel grids, behind one registry.

>>> from backbones import create_backbone, list_backbones
>>> net = create_backbone("small", in_channels=10)
>>> f = net(x)                        # x (N, 10, H, W) -> f (N, net.num_features)
>>> m = net.forward_features(x)       # -> (N, net.num_features, h, w), the unpooled map

No weights are ever downloaded: ``weights=PATH`` loads a local state dict.
"""
from backbones.base import Backbone, BackboneError
from backbones.weights import adapt_stem_weight, load_backbone_weights
from backbones._registry import (
    DEFAULT_BACKBONE,
    BackboneEntry,
    backbone_entry,
    create_backbone,
    list_backbones,
    register_backbone,
)

# Importing the variant modules registers them.
from backbones import small, torchvision_models  # noqa: E402,F401  (registration side effects)

__all__ = [
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneEntry",
    "BackboneError",
    "adapt_stem_weight",
    "backbone_entry",
    "create_backbone",
    "list_backbones",
    "load_backbone_weights",
    "register_backbone",
]
