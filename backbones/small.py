"""``small``: a plain, fast CNN for CPU work on inputs of about 64x64 to 128x128.

Four stages; each halves the resolution with a stride-2 3x3 conv-BN-ReLU, optionally followed by
more stride-1 ones. Plain 3x3 convs with channel counts in multiples of 8 are what CPU conv kernels
run fastest, and most of the work happens at low resolution, so a whole batch of B*T frames is cheap.
"""
from __future__ import annotations

import numbers

from torch import Tensor, nn

from backbones._registry import register_backbone
from backbones.base import Backbone, BackboneError

_BASE_CHANNELS = (16, 32, 64, 128)


def _conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),  # BN supplies the bias
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _round8(x: float) -> int:
    """Nearest multiple of 8, at least 8: vectorised conv kernels like those best."""
    return max(8, int(round(x / 8)) * 8)


@register_backbone("small", description="fast 4-stage CNN for CPU (16-32-64-128 channels, stride 16)")
class SmallCNN(Backbone):
    """A fast 4-stage conv-BN-ReLU network, total stride 16.

    Args:
        in_channels: C, input channels.
        width: multiplier of the stage widths 16-32-64-128 (rounded to multiples of 8).
        depth: convs per stage, >= 1; the first of each stage has stride 2.
        num_features: D, channels of the last stage; default ``128 * width``.
    """

    stem_name = "stages.0.0.0"

    def __init__(
        self,
        in_channels: int,
        width: float = 1.0,
        depth: int = 1,
        num_features: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(width, numbers.Real) or isinstance(width, bool) or not width > 0:
            raise BackboneError(f"backbone 'small': width must be a positive number, got {width!r}")
        if not _positive_int(depth):
            raise BackboneError(f"backbone 'small': depth must be an integer >= 1, got {depth!r}")
        if num_features is not None and not _positive_int(num_features):
            raise BackboneError(
                f"backbone 'small': num_features must be a positive integer or None, got {num_features!r}"
            )
        widths = [_round8(c * width) for c in _BASE_CHANNELS]
        if num_features is not None:
            widths[-1] = int(num_features)

        stages = []
        c_in = in_channels
        for c_out in widths:
            convs = [_conv_bn_relu(c_in, c_out, stride=2)]
            convs += [_conv_bn_relu(c_out, c_out, stride=1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*convs))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.in_channels = in_channels
        self.num_features = widths[-1]

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _features(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) -> (N, D, ceil(H/16), ceil(W/16))."""
        return self.stages(x)


def _positive_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1
