"""The temporal-head interface: the slot that liquid, spiking, GRU, LSTM and no-head variants fill.

Shapes: B batch, T time, D input features (``in_features``), H outputs (``out_features``, what the
task layer reads). ``dt`` is the time since the previous observation, already divided by the
model's time_scale, so a regular stream gives steps of about 1. State is batch-first and explicit:
passed in and returned, never only kept on the module.

    init_state(batch) -> state
    step(x (B, D), dt (B, 1), state) -> y (B, H), state
    forward(x (B, T, D), dt (B, T) = ones, state = fresh, mask (B, T) = all real) -> y (B, T, H), state

The contract, tested for every registered head (tests/heads/test_contract.py):
1. Streaming: a sequence run in two chunks, carrying the state, equals one pass.
2. Batch independence: a sample's output does not depend on the rest of the batch.
3. Padding: a masked step (mask False) leaves the state unchanged and outputs zero, so a padded clip
   gives the result of the same clip unpadded.
4. Every parameter receives a gradient.
5. The state stays finite over very long streams (a million steps, dt from 0 to minutes).
6. ``step`` and ``forward`` agree.

A head may run ``forward`` faster than the step loop (fused kernels, cuDNN): it overrides
``sequence``, and ``step_loop`` keeps the plain loop to test it against. Heads that ignore dt still
take it and are registered with ``time_aware=False``.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar, Union

import torch
from torch import Tensor, nn

State = Union[Tensor, tuple[Tensor, ...]]  # batch-first tensors
Derived = TypeVar("Derived")


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


class DerivedCache:
    """Values derived from a module's tensors (folded weights, kernel layouts), kept until one of
    those tensors changes: a streaming step would otherwise spend much of its time re-deriving them.

    The key is each tensor's storage, version counter and dtype, so an in-place update (an optimizer
    step bumps the version) and a replacement (``.to()``, ``load_state_dict`` into new tensors) both
    invalidate it. Inference tensors have no version counter: nothing safe to key on, so their values
    are computed anew each time. Callers use it without autograd only (with grad the values must be
    part of the graph).
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: object = None

    def get(self, tensors: Iterable[Tensor], compute: Callable[[], Derived], tag: Hashable = None) -> Derived:
        """The cached value for ``tensors`` and ``tag``, or ``compute()`` when either changed."""
        try:
            key = (tag, tuple((t.data_ptr(), t._version, t.dtype) for t in tensors))
        except RuntimeError:  # an inference tensor
            return compute()
        if self._key != key:
            self._value, self._key = compute(), key
        return self._value  # type: ignore[return-value]

    def get_for_modules(self, modules: Iterable[nn.Module], compute: Callable[[], Derived],
                        tag: Hashable = None) -> Derived:
        """``get`` for the modules' own parameters and buffers (not their children's), the key built
        in one flat pass: a streaming step checks it on every call."""
        key: list = [tag]
        try:
            for module in modules:
                for t in module._parameters.values():
                    if t is not None:
                        key += (t.data_ptr(), t._version, t.dtype)
                for t in module._buffers.values():
                    if t is not None:
                        key += (t.data_ptr(), t._version, t.dtype)
        except RuntimeError:  # an inference tensor
            return compute()
        if self._key != key:
            self._value, self._key = compute(), key
        return self._value  # type: ignore[return-value]

    def clear(self) -> None:
        self._key = self._value = None


class TemporalHead(nn.Module):
    """Base class of every temporal head.

    Subclasses set ``in_features`` (D), ``out_features`` (H) and ``time_aware`` and implement
    ``init_state`` and ``step``; ``forward`` runs ``sequence``, a loop over ``step`` unless the
    subclass overrides it with a faster path that keeps the contract above. At a masked step the
    state is carried unchanged and the output is zero.
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
        """A sequence. x (B, T, D), dt (B, T), mask (B, T) -> y (B, T, H), final state.

        Checks the arguments and fills in their defaults (``prepare``), then runs ``sequence``.
        """
        return self.sequence(*self.prepare(x, dt, state, mask))

    def sequence(self, x: Tensor, dt: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """``forward`` on prepared arguments: here a loop over ``step``; heads override it with a
        faster path that must give the same results (``step_loop`` runs this loop on any head).

        x (B, T, D), dt (B, T) in x's dtype, state, mask None or bool (B, T) with at least one False.
        """
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

    def step_loop(self, *args: object, **kwargs: object) -> tuple[Tensor, State]:
        """``forward`` (the same arguments) as the plain loop over ``step``, whatever the head's own
        ``sequence``: the definition every faster path is tested against."""
        return TemporalHead.sequence(self, *self.prepare(*args, **kwargs))

    def prepare(
        self, x: Tensor, dt: Tensor | None = None, state: State | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, State, Tensor | None]:
        """Check ``forward``'s arguments and fill in their defaults: dt of ones (B, T) in x's dtype,
        a fresh state, and the mask as bool (B, T) on x's device, or None when every step is real."""
        name = type(self).__name__
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"{name}: expected x of shape (B, T, {self.in_features}), got {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        if dt is None:
            dt = x.new_ones(batch, steps)
        elif dt.shape != (batch, steps):
            raise ValueError(f"{name}: expected dt of shape ({batch}, {steps}), got {tuple(dt.shape)}")
        dt = dt.to(x.dtype)
        if state is None:
            state = self.init_state(batch, device=x.device, dtype=x.dtype)
        if mask is not None:
            if mask.shape != (batch, steps):
                raise ValueError(f"{name}: expected mask of shape ({batch}, {steps}), got {tuple(mask.shape)}")
            mask = mask.to(device=x.device, dtype=torch.bool)
            if bool(mask.all()):
                mask = None
        return x, dt, state, mask

    def _apply(self, fn, recurse: bool = True):
        # .to(), .float(), .cuda(): new tensors, whose storage may reuse a freed one's address.
        for value in vars(self).values():
            if isinstance(value, DerivedCache):
                value.clear()
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, time_aware={self.time_aware}"
