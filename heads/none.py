"""The ``none`` head: no temporal model, the CNN alone.

``y`` at a step is the mean of the inputs over the valid steps so far, so the last valid ``y`` of a
clip is the clip's average feature (the usual "CNN + temporal average pooling" baseline), streaming
gives the average since the stream started, and masked steps are skipped. It has no parameters and
ignores ``dt``.

The state is the running mean and the count, not the running sum: over a stream of millions of
steps a float32 sum grows until each new input is lost in its rounding, while the mean stays at the
scale of the inputs. (Past 2**24 steps the float32 count stops growing and the mean becomes an
exponential average with a very long memory, which is still finite and still sensible.)

Shapes: B batch, T time, D features (= out_features). State: ``(mean (B, D), count (B, 1))``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from heads._registry import register_head
from heads.base import State, TemporalHead


@register_head("none", time_aware=False, description="no temporal model: running mean of the CNN features")
class NoneHead(TemporalHead):
    """Running mean of the inputs over the valid steps; ``out_features = in_features``.

    Args:
        in_features: D, the size of each input vector.
    """

    time_aware = False

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = in_features

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """No steps seen: mean (B, D) and count (B, 1), both zero."""
        return (
            torch.zeros(batch, self.in_features, device=device, dtype=dtype),
            torch.zeros(batch, 1, device=device, dtype=dtype),
        )

    def step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """One observation. x (B, D), dt (B, 1) ignored -> y (B, D) the updated mean, new state."""
        mean, count = state
        count = count + 1
        mean = mean + (x - mean) / count
        return mean, (mean, count)

    def sequence(self, x: Tensor, dt: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """A sequence with cumulative sums. x (B, T, D), mask (B, T) -> y (B, T, D), final state.

        Within one call the sums run over at most T steps, so they stay accurate; the carried state
        is still the mean.
        """
        mean0, count0 = state
        valid = torch.ones_like(x[..., :1]) if mask is None else mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        counts = count0.unsqueeze(1) + valid.cumsum(dim=1)  # (B, T, 1)
        sums = (x * valid).cumsum(dim=1)  # (B, T, D)
        # mean after t steps = (count0 * mean0 + sum of the new inputs) / count; written as an update
        # of mean0 so that a huge count0 does not multiply mean0 up into rounding.
        means = mean0.unsqueeze(1) + (sums - valid.cumsum(dim=1) * mean0.unsqueeze(1)) / counts.clamp_min(1)
        final = (means[:, -1], counts[:, -1])
        return means * valid, final
