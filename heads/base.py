"""The temporal-head interface (DESIGN.md section 3).

Shapes: B batch, T time, D input features, H output features.
``dt`` is the time since the previous observation, already divided by the model's time_scale.
"""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor, nn

State = Union[Tensor, tuple[Tensor, ...]]  # batch-first tensors


def map_state(fn, *states: State) -> State:
    """Apply ``fn`` leaf by leaf over one or more states of the same structure."""
    if isinstance(states[0], tuple):
        return tuple(fn(*leaves) for leaves in zip(*states))
    return fn(*states)


def keep_where(keep: Tensor, new: State, old: State) -> State:
    """Per sample, take ``new`` where ``keep`` (B,) is True and ``old`` elsewhere."""

    def pick(n: Tensor, o: Tensor) -> Tensor:
        return torch.where(keep.view(-1, *([1] * (n.dim() - 1))), n, o)

    return map_state(pick, new, old)


class TemporalHead(nn.Module):
    """Base class of every temporal head.

    Subclasses set ``in_features`` (D), ``out_features`` (H) and ``time_aware`` and implement
    ``init_state`` and ``step``. ``forward`` here runs ``step`` over time; subclasses may override
    it with a faster path as long as the contract (DESIGN.md section 3) holds. At a masked step
    the state is carried unchanged and the output is zero.
    """

    in_features: int
    out_features: int
    time_aware: bool = True

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """A fresh state for ``batch`` streams."""
        raise NotImplementedError

    def step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """One observation. x (B, D), dt (B, 1) -> y (B, H), new state."""
        raise NotImplementedError

    def forward(
        self,
        x: Tensor,
        dt: Tensor | None = None,
        state: State | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, State]:
        """A sequence. x (B, T, D), dt (B, T), mask (B, T) -> y (B, T, H), final state."""
        x, dt, state = self.prepare(x, dt, state)
        outputs = []
        for t in range(x.shape[1]):
            y, new_state = self.step(x[:, t], dt[:, t : t + 1], state)
            if mask is not None:
                keep = mask[:, t]
                state = keep_where(keep, new_state, state)
                y = y * keep.unsqueeze(1).to(y.dtype)
            else:
                state = new_state
            outputs.append(y)
        return torch.stack(outputs, dim=1), state

    def prepare(self, x: Tensor, dt: Tensor | None, state: State | None) -> tuple[Tensor, Tensor, State]:
        """Fill in the defaults of ``forward``: dt of ones (B, T), a fresh state."""
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__}: expected x of shape (B, T, {self.in_features}), got {tuple(x.shape)}"
            )
        batch, steps = x.shape[:2]
        if dt is None:
            dt = x.new_ones(batch, steps)
        elif dt.shape != (batch, steps):
            raise ValueError(f"{type(self).__name__}: expected dt of shape ({batch}, {steps}), got {tuple(dt.shape)}")
        dt = dt.to(x.dtype)
        if state is None:
            state = self.init_state(batch, device=x.device, dtype=x.dtype)
        return x, dt, state

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, time_aware={self.time_aware}"
