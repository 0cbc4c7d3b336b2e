"""torchvision's ``resnet18`` and ``mobilenet_v3_small`` as backbones of any channel count.

Both are built with ``weights=None`` (never downloaded) and keep torchvision's module names, so a
torchvision state dict loads with ``weights=PATH``; the first conv is rebuilt for ``in_channels``
and the classifier is dropped.
"""
from __future__ import annotations

from torch import Tensor, nn
from torchvision import models

from backbones._registry import register_backbone
from backbones.base import Backbone


def _new_stem(old: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A conv like ``old`` but taking ``in_channels`` inputs, initialised as torchvision does."""
    conv = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


@register_backbone("resnet18", description="torchvision ResNet-18, 512 features, stride 32")
class ResNet18(Backbone):
    """torchvision's ResNet-18 without its classifier: D = 512, total stride 32.

    Args:
        in_channels: C, input channels.
    """

    stem_name = "conv1"
    ignored_weight_prefixes = ("fc.",)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        net = models.resnet18(weights=None)
        # Same attribute names as torchvision, so its state dicts load unchanged.
        self.conv1 = _new_stem(net.conv1, in_channels)
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.in_channels = in_channels
        self.num_features = net.fc.in_features

    def _features(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) -> (N, 512, ceil(H/32), ceil(W/32))."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@register_backbone("mobilenet_v3_small", description="torchvision MobileNetV3-Small, 576 features, stride 32")
class MobileNetV3Small(Backbone):
    """torchvision's MobileNetV3-Small without its classifier: D = 576, total stride 32.

    Args:
        in_channels: C, input channels.
    """

    stem_name = "features.0.0"
    ignored_weight_prefixes = ("classifier.",)

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        net = models.mobilenet_v3_small(weights=None)
        net.features[0][0] = _new_stem(net.features[0][0], in_channels)
        self.features = net.features
        self.in_channels = in_channels
        self.num_features = net.classifier[0].in_features

    def _features(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) -> (N, 576, ceil(H/32), ceil(W/32))."""
        return self.features(x)
