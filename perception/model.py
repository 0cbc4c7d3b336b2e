"""The model: a CNN backbone, a temporal head and a task layer.

``forward(x, dt, mask, state) -> (logits (B, T, K), state)`` runs clips: the backbone sees all frames of
a batch at once, (B*T, C, H, W); ``step(frame (B, C, H, W), dt (B, 1), state)`` runs streams.

Shapes: B batch, T time, C channels, H, W frame size, D backbone features, K classes.
dt is in seconds; the model divides it by ``time_scale`` (seconds) before the head sees it, so a
stream at the training data's typical rate gives the head steps of about 1. ``dt_transform`` then
says what the head gets from that ratio r = dt / time_scale (``DT_TRANSFORMS``):

    "scale":   r                       (the default)
    "log1p":   log(1 + r)              (compresses long gaps and unseen slow rates)
    "learned": r * exp(g)              g a learned scalar (``dt_gain``), 0 at the start
"""
from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn

from backbones import create_backbone
from heads import State, create_head, head_entry
from perception.errors import PerceptionError

DEFAULT_HIDDEN = 64
DT_TRANSFORMS = ("scale", "log1p", "learned")


class PerceptionModel(nn.Module):
    """backbone -> head -> linear classifier, per step.

    Args:
        in_channels: C of the input (1 or 3 for frames, the representation's channels for events).
        num_classes: K.
        backbone: a registered backbone name; ``backbone_kwargs`` its options.
        head: a registered head name; ``head_kwargs`` its options. ``hidden_size`` defaults to 64
            for heads that take one, so heads compare at equal width unless told otherwise.
        time_scale: seconds that make one unit of head time.
        dropout: dropout on the head's output before the classifier.
        feature_norm: LayerNorm on the backbone's features before the head. Pooled CNN features
            have no fixed scale; the recurrent heads' saturating gates train far more slowly on
            them without it.
        dt_transform: what the head gets from dt / time_scale (module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        backbone: str = "small",
        head: str = "cfc",
        backbone_kwargs: dict[str, Any] | None = None,
        head_kwargs: dict[str, Any] | None = None,
        time_scale: float = 1.0,
        dropout: float = 0.0,
        feature_norm: bool = True,
        dt_transform: str = "scale",
    ) -> None:
        super().__init__()
        if not (isinstance(num_classes, int) and num_classes >= 2):
            raise PerceptionError(f"num_classes: expected an integer >= 2, got {num_classes!r}")
        if not (isinstance(time_scale, (int, float)) and math.isfinite(time_scale) and time_scale > 0):
            raise PerceptionError(f"time_scale: expected seconds > 0, got {time_scale!r}")
        if not (isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0):
            raise PerceptionError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if dt_transform not in DT_TRANSFORMS:
            raise PerceptionError(f"dt_transform: expected one of {', '.join(DT_TRANSFORMS)}, got {dt_transform!r}")
        self.dt_transform = dt_transform
        self.backbone_name, self.head_name = backbone, head
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.head_kwargs = with_default_hidden(head, head_kwargs)
        self.in_channels, self.num_classes, self.dropout_p = int(in_channels), int(num_classes), float(dropout)
        self.backbone = create_backbone(backbone, int(in_channels), **self.backbone_kwargs)
        self.feature_norm = nn.LayerNorm(self.backbone.num_features) if feature_norm else nn.Identity()
        self.head = create_head(head, self.backbone.num_features, **self.head_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.head.out_features, self.num_classes)
        # A buffer, so that the state dict carries it and it follows the model's device.
        self.register_buffer("time_scale", torch.tensor(float(time_scale), dtype=torch.float64))
        # log of the learned dt gain ("learned" only: other models keep their state dicts as they were)
        self.dt_gain = nn.Parameter(torch.zeros(())) if dt_transform == "learned" else None

    def config(self) -> dict[str, Any]:
        """Plain values that rebuild this model with ``PerceptionModel(**config)``."""
        return {
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "backbone": self.backbone_name,
            "head": self.head_name,
            "backbone_kwargs": dict(self.backbone_kwargs),
            "head_kwargs": dict(self.head_kwargs),
            "time_scale": float(self.time_scale),
            "dropout": self.dropout_p,
            "feature_norm": isinstance(self.feature_norm, nn.LayerNorm),
            "dt_transform": self.dt_transform,
        }

    def set_time_scale(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds > 0):
            raise PerceptionError(f"time_scale: expected seconds > 0, got {seconds!r}")
        self.time_scale.fill_(float(seconds))

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """A fresh head state for ``batch`` streams."""
        return self.head.init_state(batch, device=device, dtype=dtype)

    def features(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, T, C, H, W) -> backbone features (B, T, D); padded steps (mask False) are skipped, left 0."""
        batch, steps = x.shape[:2]
        if mask is None:
            return self.feature_norm(self.backbone(x.flatten(0, 1))).view(batch, steps, -1)
        out = x.new_zeros(batch, steps, self.backbone.num_features)
        out[mask] = self.feature_norm(self.backbone(x[mask])).to(out.dtype)
        return out

    def forward(
        self, x: Tensor, dt: Tensor, mask: Tensor | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """A batch of clips. x (B, T, C, H, W), dt (B, T) seconds, mask (B, T) -> logits (B, T, K), state."""
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            raise PerceptionError(f"x: expected shape (B, T, {self.in_channels}, H, W), got {tuple(x.shape)}")
        feats = self.features(x, mask)
        out, state = self.head(feats, self.scale_dt(dt, feats.dtype), state, mask)
        return self.classifier(self.dropout(out)), state

    def step(self, frame: Tensor, dt: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One observation per stream. frame (B, C, H, W), dt (B, 1) seconds -> logits (B, K), state."""
        feats = self.feature_norm(self.backbone(frame))
        if state is None:
            state = self.init_state(frame.shape[0], device=frame.device, dtype=feats.dtype)
        out, state = self.head.step(feats, self.scale_dt(dt, feats.dtype), state)
        return self.classifier(out), state

    def scale_dt(self, dt: Tensor, dtype: torch.dtype) -> Tensor:
        """dt (..., ) seconds -> the head's time input (``dt_transform`` of dt / time_scale), in ``dtype``."""
        ratio = (dt.double() / self.time_scale).to(dtype)
        if self.dt_transform == "log1p":
            return torch.log1p(ratio)
        if self.dt_transform == "learned":
            return ratio * torch.exp(self.dt_gain).to(dtype)
        return ratio


def with_default_hidden(head: str, head_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``head_kwargs`` with ``hidden_size`` = 64 added when the head takes one and none was given."""
    kwargs = dict(head_kwargs or {})
    if "hidden_size" not in kwargs and "hidden_size" in inspect.signature(head_entry(head).factory).parameters:
        kwargs["hidden_size"] = DEFAULT_HIDDEN
    return kwargs


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
