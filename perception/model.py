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

With ``output_integrator`` a leaky integrator sits between a time-aware head and the classifier: per
output feature k, with t the head's time input and tau_k a learned time constant (head time units),

    y_t = a y_{t-1} + (1 - a) o_t,     a = exp(-t / tau_k)

so the classifier reads a memory of the head's outputs that fades in real time, whatever the
sampling rate (a masked step leaves y unchanged). Its state is the head's state with y (B, H) added
last: (h, y), or (h, c, y) for a head whose own state is a tuple.
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
        output_integrator: a leaky integrator with learned time constants on the head's outputs
            (module docstring); time-aware heads only.
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
        output_integrator: bool = False,
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
        if output_integrator and not head_entry(head).time_aware:
            raise PerceptionError(f"output_integrator: the head {head!r} ignores dt; the integrator is for "
                                  "time-aware heads (it would give a time-blind head, a control, the time)")
        self.integrator = OutputIntegrator(self.head.out_features) if output_integrator else None
        self._tuple_head_state = isinstance(self.head.init_state(1), tuple)  # the model state's layout
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
            "output_integrator": self.integrator is not None,
        }

    def set_time_scale(self, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds > 0):
            raise PerceptionError(f"time_scale: expected seconds > 0, got {seconds!r}")
        self.time_scale.fill_(float(seconds))

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """A fresh state for ``batch`` streams: the head's, with the integrator's y (B, H) added last."""
        state = self.head.init_state(batch, device=device, dtype=dtype)
        if self.integrator is None:
            return state
        leaves = state if isinstance(state, tuple) else (state,)
        return (*leaves, leaves[0].new_zeros(batch, self.head.out_features))

    def _split_state(self, state: State | None) -> tuple[State | None, Tensor | None]:
        """(the head's state, the integrator's y) of a model state."""
        if self.integrator is None or state is None:
            return state, None
        head_state = state[:-1]
        return (head_state if self._tuple_head_state else head_state[0]), state[-1]

    def _join_state(self, head_state: State, y: Tensor | None) -> State:
        if self.integrator is None:
            return head_state
        return (*(head_state if isinstance(head_state, tuple) else (head_state,)), y)

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
        head_state, y = self._split_state(state)
        t = self.scale_dt(dt, feats.dtype)
        out, head_state = self.head(feats, t, head_state, mask)
        if self.integrator is not None:
            out, y = self.integrator(out, t, y, mask)
        return self.classifier(self.dropout(out)), self._join_state(head_state, y)

    def step(self, frame: Tensor, dt: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One observation per stream. frame (B, C, H, W), dt (B, 1) seconds -> logits (B, K), state."""
        feats = self.feature_norm(self.backbone(frame))
        if state is None:
            state = self.init_state(frame.shape[0], device=frame.device, dtype=feats.dtype)
        head_state, y = self._split_state(state)
        t = self.scale_dt(dt, feats.dtype)
        out, head_state = self.head.step(feats, t, head_state)
        if self.integrator is not None:
            out, y = self.integrator(out.unsqueeze(1), t.reshape(-1, 1), y)
            out = out[:, 0]
        return self.classifier(out), self._join_state(head_state, y)

    def scale_dt(self, dt: Tensor, dtype: torch.dtype) -> Tensor:
        """dt (..., ) seconds -> the head's time input (``dt_transform`` of dt / time_scale), in ``dtype``."""
        ratio = (dt.double() / self.time_scale).to(dtype)
        if self.dt_transform == "log1p":
            return torch.log1p(ratio)
        if self.dt_transform == "learned":
            return ratio * torch.exp(self.dt_gain).to(dtype)
        return ratio


class OutputIntegrator(nn.Module):
    """y_t = a y_{t-1} + (1 - a) o_t with a = exp(-t / tau) per feature (module docstring).

    ``log_tau`` (H,) starts log-uniform over [0.3, 30] head time units: from a few steps to far more
    than a clip, so both short and long memories are there to learn from.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.log_tau = nn.Parameter(torch.linspace(math.log(0.3), math.log(30.0), features))

    def forward(self, o: Tensor, t: Tensor, y: Tensor | None, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """o (B, T, H), t (B, T), y (B, H) or None (zeros), mask (B, T) -> outputs (B, T, H), last y (B, H)."""
        decay = torch.exp(-t.clamp_min(0).unsqueeze(-1) / torch.exp(self.log_tau))  # (B, T, H)
        if mask is not None:  # a masked step keeps y: decay 1, nothing added
            decay = torch.where(mask.unsqueeze(-1), decay, torch.ones_like(decay))
        y = o.new_zeros(o.shape[0], o.shape[2]) if y is None else y
        outs = []
        for k in range(o.shape[1]):
            y = decay[:, k] * y + (1.0 - decay[:, k]) * o[:, k]
            outs.append(y)
        return torch.stack(outs, 1), y


def with_default_hidden(head: str, head_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """``head_kwargs`` with ``hidden_size`` = 64 added when the head takes one and none was given."""
    kwargs = dict(head_kwargs or {})
    if "hidden_size" not in kwargs and "hidden_size" in inspect.signature(head_entry(head).factory).parameters:
        kwargs["hidden_size"] = DEFAULT_HIDDEN
    return kwargs


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
