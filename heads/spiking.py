"""The spiking head: leaky integrate-and-fire layers whose leak follows the real elapsed time.

Layers: ``Linear(D->H) -> LIF -> [Linear(H->H) -> LIF] * (num_layers - 1) -> Linear(H->H) -> readout``.
The readout is a leaky membrane that never fires; its value is the output ``y``, so the task layer
reads a continuous signal rather than spikes.

Membrane update, per neuron with time constant ``tau`` and elapsed (normalised) time ``dt``::

    beta = exp(-dt / tau)
    mem  = beta * mem + (1 - beta) * I          # I: the input current of this step
    spk  = Heaviside(mem - threshold)           # surrogate gradient in the backward pass
    mem  = mem - spk * threshold                # reset by subtraction

Scaling the current by ``(1 - beta)`` makes the membrane an exponential moving average of its input
rather than a sum. That choice gives three properties the plain ``beta * mem + I`` lacks:

- Bounded: a membrane stays within the range of its inputs, whatever the dt sequence; a long run
  of tiny dt (beta near 1) cannot pile current up without end.
- dt = 0 is an exact no-op: no time passes, so nothing decays, nothing is integrated and no neuron
  fires (the threshold is infinite at dt = 0); the state is unchanged and ``y`` repeats its previous
  value. ``forward`` uses this to implement the padding mask (a masked step gets dt = 0).
- Consistent in dt: as dt -> 0 the effect of an observation vanishes smoothly; a very long gap
  (beta = 0) sets the membrane to the new current, forgetting the past.

``tau = tau_min + softplus(raw)`` per neuron and per layer, learnable and always positive; it starts
log-uniformly spread over ``[tau_init / 2, 2 * tau_init]`` so that neurons cover several time scales.
The LIF weights start at N(0, (gain * threshold)^2 / fan_in) (see ``__init__``) so that layers fire
from the start. Spikes use one of snntorch's surrogate-gradient functions, called functionally (no
snntorch neuron module, hence no hidden ``self.mem`` and no global reset list). The reset term is
detached, as snntorch does by default: the gradient flows through the membranes, not the reset.

Shapes: B batch, T time, D input features, H hidden size (= out_features), L spiking layers.
State: ``L + 1`` membranes (one per LIF layer, then the readout), each ``(B, H)``.
"""
from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from snntorch import surrogate
from torch import Tensor, nn

from heads._registry import HeadError, register_head
from heads.base import State, TemporalHead

# name -> (snntorch autograd Function, snntorch's default sharpness: its factory's slope / alpha).
# The Function class is kept rather than the factory's closure so that the head pickles.
def _default(factory, arg: str) -> float:
    return inspect.signature(factory).parameters[arg].default


_SURROGATES = {
    "fast_sigmoid": (surrogate.FastSigmoid, _default(surrogate.fast_sigmoid, "slope")),
    "atan": (surrogate.ATan, _default(surrogate.atan, "alpha")),
}
# Not snntorch's ``sigmoid``: its backward computes exp(-slope * u) / (exp(-slope * u) + 1) ** 2,
# which is inf / inf = NaN once a membrane is a few units below the threshold.

_INPUT_GAIN = 2.0  # weight std of the first layer, in thresholds per sqrt(fan_in)
_SPIKE_GAIN = 4.0  # same for the layers fed with spikes
_CHUNK = 64  # steps whose decays forward computes at once


def _positive(name: str, key: str, value, integer: bool = False) -> None:
    """Raise HeadError unless ``value`` is a positive number (an integer when ``integer``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0 or not math.isfinite(value):
        kind = "integer" if integer else "number"
        raise HeadError(f"head {name!r}: {key} must be a positive {kind}, got {value!r}")


@register_head("spiking", time_aware=True, description="LIF layers (snntorch surrogate), leak exp(-dt/tau)")
class SpikingHead(TemporalHead):
    """Leaky integrate-and-fire layers with a dt-dependent leak and a non-spiking readout.

    Args:
        in_features: D, the size of each input vector.
        hidden_size: H, neurons per layer and the output size.
        num_layers: spiking (LIF) layers before the readout.
        threshold: firing threshold of the LIF neurons.
        tau_init: centre of the initial time constants, in normalised time units (steps).
        tau_min: lower bound of every time constant.
        surrogate: surrogate gradient of the spike: ``fast_sigmoid`` or ``atan``.
        slope: its sharpness (``slope`` or ``alpha`` in snntorch); None keeps snntorch's default.
    """

    time_aware = True

    def __init__(
        self,
        in_features: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        threshold: float = 1.0,
        tau_init: float = 2.0,
        tau_min: float = 0.05,
        surrogate: str = "fast_sigmoid",
        slope: float | None = None,
    ) -> None:
        super().__init__()
        _positive("spiking", "hidden_size", hidden_size, integer=True)
        _positive("spiking", "num_layers", num_layers, integer=True)
        _positive("spiking", "threshold", threshold)
        _positive("spiking", "tau_min", tau_min)
        _positive("spiking", "tau_init", tau_init)
        if not tau_init / 2 > tau_min:
            raise HeadError(
                f"head 'spiking': tau_init / 2 must exceed tau_min, got {tau_init!r} and {tau_min!r}"
            )
        if surrogate not in _SURROGATES:
            raise HeadError(f"head 'spiking': unknown surrogate {surrogate!r}; "
                            f"choose one of: {', '.join(_SURROGATES)}")
        if slope is not None:
            _positive("spiking", "slope", slope)
        self.in_features = in_features
        self.out_features = hidden_size
        self.num_layers = num_layers
        self.threshold = float(threshold)
        self.tau_min = float(tau_min)
        self.surrogate = surrogate
        self._spike_function, default_slope = _SURROGATES[surrogate]
        self.slope = default_slope if slope is None else float(slope)
        sizes = [in_features] + [hidden_size] * num_layers
        self.layers = nn.ModuleList(nn.Linear(a, hidden_size) for a in sizes[:-1])
        self.readout = nn.Linear(hidden_size, hidden_size)
        # torch's default init leaves LIF layers nearly silent (currents rarely reach the threshold):
        # scale the weights to the threshold so that unit-variance inputs make roughly 10-20 % of the
        # neurons of each layer fire. Spike inputs (sparse 0/1) need a larger gain than dense ones.
        with torch.no_grad():
            for k, layer in enumerate(self.layers):
                gain = _INPUT_GAIN if k == 0 else _SPIKE_GAIN
                layer.weight.normal_(0.0, gain * self.threshold / math.sqrt(layer.in_features))
                layer.bias.zero_()
        # One row of time constants per LIF layer, the last row for the readout.
        log_tau = torch.empty(num_layers + 1, hidden_size)
        tau = log_tau.uniform_(math.log(tau_init / 2), math.log(tau_init * 2)).exp()
        self.raw_tau = nn.Parameter(tau - tau_min + torch.log(-torch.expm1(tau_min - tau)))  # softplus^-1

    def tau(self) -> Tensor:
        """The time constants (L + 1, H), each above ``tau_min``."""
        return self.tau_min + F.softplus(self.raw_tau)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """Resting membranes: L + 1 zeros, each (B, H)."""
        return tuple(torch.zeros(batch, self.out_features, device=device, dtype=dtype)
                     for _ in range(self.num_layers + 1))

    def _time_terms(self, dt: Tensor) -> tuple[Tensor, Tensor]:
        """dt (..., 1) -> the decays beta (..., L + 1, H) and the firing threshold (..., 1).

        At dt = 0 the threshold is infinite: no time passes, so no neuron fires (and the surrogate
        gradient of an infinitely distant threshold is zero). A negative dt is read as 0.
        """
        dt = dt.clamp_min(0.0)
        beta = torch.exp(-dt.unsqueeze(-1) / self.tau())
        threshold = torch.where(dt > 0, self.threshold, math.inf).to(dt.dtype)
        return beta, threshold

    def _advance(
        self, current: Tensor, beta: Tensor, threshold: Tensor, state: State, record: list | None = None
    ) -> tuple[Tensor, State]:
        """One step from the first layer's current.

        Args:
            current: the first layer's input current, (B, H).
            beta: decays of this step, (B, L + 1, H); 1 leaves a membrane unchanged.
            threshold: firing threshold of this step, (B, 1).
            state: L + 1 membranes, each (B, H).
            record: when given, the spikes of each LIF layer, (B, L, H), are appended to it.

        Returns:
            y (B, H) and the new state.
        """
        new, fired = [], []
        for k in range(self.num_layers):
            if k:
                current = self.layers[k](spikes)
            # lerp(I, mem, beta) = beta * mem + (1 - beta) * I, exactly mem at beta = 1.
            mem = torch.lerp(current, state[k], beta[:, k])
            # snntorch's Heaviside gives float32 whatever the input: cast back.
            if torch.is_grad_enabled():
                spikes = self._spike_function.apply(mem - threshold, self.slope).to(mem.dtype)
            else:  # the surrogate's forward is this step function; plain ops also trace and export
                spikes = (mem - threshold > 0).to(mem.dtype)
            new.append(torch.sub(mem, spikes.detach(), alpha=self.threshold))
            fired.append(spikes)
        y = torch.lerp(self.readout(spikes), state[-1], beta[:, -1])
        new.append(y)
        if record is not None:
            record.append(torch.stack(fired, dim=1).detach())
        return y, tuple(new)

    def step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """One observation. x (B, D), dt (B, 1) -> y (B, H), new state."""
        beta, threshold = self._time_terms(dt)
        return self._advance(self.layers[0](x), beta, threshold, state)

    def sequence(self, x: Tensor, dt: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """A sequence. x (B, T, D), dt (B, T), mask (B, T) -> y (B, T, H), final state.

        The first layer's currents are computed for all steps in one matrix product; a masked step
        is run as dt = 0, an exact no-op, and its output set to zero.
        """
        return self._run(x, dt, state, mask, record=None)

    @torch.no_grad()
    def spike_rates(self, x: Tensor, dt: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Mean firing rate of each LIF layer over the valid steps, from a fresh state.

        x (B, T, D), dt (B, T), mask (B, T) -> rates (L,), spikes per neuron per step in [0, 1].
        """
        record: list[Tensor] = []
        self._run(*self.prepare(x, dt, None, mask), record=record)
        spikes = torch.stack(record, dim=1)  # (B, T, L, H)
        if mask is None:
            valid = torch.ones_like(spikes[:, :, :1, :1])
        else:
            valid = mask.to(spikes.dtype)[..., None, None]
        return (spikes * valid).sum(dim=(0, 1, 3)) / (valid.sum() * self.out_features).clamp_min(1)

    def _run(self, x: Tensor, dt: Tensor, state: State, mask: Tensor | None,
             record: list | None) -> tuple[Tensor, State]:
        """``sequence`` on prepared arguments, optionally recording spikes (see ``_advance``)."""
        if mask is not None:
            dt = torch.where(mask, dt, torch.zeros_like(dt))
        currents = self.layers[0](x)  # (B, T, H)
        outputs = []
        for start in range(0, x.shape[1], _CHUNK):  # time terms by chunks: bounded memory on long clips
            # beta (B, c, L + 1, H), threshold (B, c, 1) for the c steps of this chunk
            beta, threshold = self._time_terms(dt[:, start : start + _CHUNK, None])
            for i in range(beta.shape[1]):
                y, state = self._advance(currents[:, start + i], beta[:, i], threshold[:, i], state, record)
                outputs.append(y)
        y = torch.stack(outputs, dim=1)
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y, state

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_layers={self.num_layers}, threshold={self.threshold}, "
                f"surrogate={self.surrogate}, slope={self.slope}")

