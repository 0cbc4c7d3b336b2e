"""The interface every backbone implements, and the package's error type."""
from __future__ import annotations

from torch import Tensor, nn


class BackboneError(ValueError):
    """A backbone was asked for with a bad name, bad options or a bad weights file.

    The message is one line that names the input and the problem.
    """


class Backbone(nn.Module):
    """A spatial feature extractor: one frame (or voxel grid) in, one feature vector out.

    Subclasses build their layers, set the attributes below and implement ``_features``; the
    base class checks the input and does the pooling, so every backbone behaves the same.

    Attributes:
        in_channels: C, channels the input must have.
        num_features: D, size of the pooled feature vector (channels of the unpooled map).
        stem_name: dotted name of the first ``nn.Conv2d`` (the only layer that depends on C);
            weights loading adapts a 3-channel stem through it.
        ignored_weight_prefixes: key prefixes a weights file may hold that this backbone drops on
            purpose (the classifier of the original torchvision model).
    """

    in_channels: int
    num_features: int
    stem_name: str
    ignored_weight_prefixes: tuple[str, ...] = ()

    def _features(self, x: Tensor) -> Tensor:
        """The unpooled map, without input checks: x (N, C, H, W) -> (N, D, h, w)."""
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> Tensor:
        """The unpooled feature map.

        Args:
            x: (N, C, H, W), any H, W >= 32.

        Returns:
            (N, D, h, w), h and w being H and W divided by the backbone's stride (rounded up).
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise BackboneError(
                f"{type(self).__name__} expects input of shape (N, {self.in_channels}, H, W), "
                f"got {tuple(x.shape)}"
            )
        return self._features(x)

    def forward(self, x: Tensor) -> Tensor:
        """Global-average-pooled features: x (N, C, H, W) -> (N, D)."""
        return self.forward_features(x).mean(dim=(2, 3))
