"""The liquid time-constant head (``ltc``): the LTC network of Hasani et al., wired by a Wiring.

Each neuron n has a potential v_n. Per observation the input first passes a per-feature map
(``x * input_w + input_b``), then the ODE of the LTC cell is unfolded K = ``ode_unfolds`` times with
the semi-implicit Euler step of ncps's ``LTCCell``; with h = dt / K,

    a_ij = W_ij * sigmoid(sigma_ij * (v_i - mu_ij))          synapse i -> j (sensory ones alike, on x)
    N_j  = gleak_j * vleak_j + sum_i a_ij * E_ij + S_num_j     S_* = the sensory synapses, once a step
    D_j  = gleak_j + sum_i a_ij + S_den_j + epsilon
    v_j <- v_j + h * (N_j - D_j * v_j) / (cm_j + h * D_j)

which is ncps's ``(cm/h * v + N) / (cm/h + D)`` multiplied through by h and written as an increment:
the same number for dt > 0 (to float rounding), but dt = 0 leaves the state exactly unchanged where
ncps divides by zero, and since v' is a convex combination of v and N / D (a weighted mean of vleak
and the reversal potentials E), any dt, however large, keeps |v| within max(|v|, |vleak|, |E|). A
negative dt is read as 0. The outputs are the first ``out_features`` neurons (an NCP's motor
neurons) through ``v * output_w + output_b``.

Parameters. gleak, cm, w and sensory_w must be positive: they are stored before a softplus (ncps's
``implicit_param_constraints=True``) and initialised so that the softplus lands in ncps's ranges.
Every synapse the wiring leaves out is multiplied by a 0/1 buffer, so it stays exactly zero and its
weight, sigma, mu and E get zero gradient. E starts at the wiring's polarity signs.

Speed (``forward``; ``step`` calls it). float32 work on the CPU runs through the compiled kernels of
``heads.ltc.kernels`` (numba): the whole sequence in one forward and one backward call, each synapse
activation made in registers and summed at once, never stored. Everything else (float64, CUDA, graph
export and tracing, or a head with ``compiled = False``) takes ``heads.ltc.torch_path``. A masked
step runs as dt = 0 on a zero input, which leaves the state exactly unchanged. ``reference_step``
here is the same model written plainly (ncps's layout); the tests hold both fast paths to it, values
and gradients.

Shapes: B batch, T time, D input features, N neurons, H = out_features (motor neurons).
State: v (B, N).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads._registry import HeadError, register_head
from heads.base import DerivedCache, TemporalHead
from heads.ltc import kernels, torch_path
from heads.wirings import Wiring, resolve_wiring

_MAPPINGS = ("affine", "linear", None)

# ncps's initial ranges (uniform); for the positive parameters these are the values after softplus.
_INIT_RANGES = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3.0, 8.0),
    "mu": (0.3, 0.8),
}
# stored before a softplus (ncps's implicit constraints)
POSITIVE_PARAMETERS = ("gleak", "cm", "w", "sensory_w")

# Smallest value inverse_softplus keeps: 0 maps to log(1e-30) = -69, finite, softplus gives 1e-30.
_SOFTPLUS_FLOOR = 1e-30


def inverse_softplus(value: Tensor) -> Tensor:
    """The x with softplus(x) = value; values at or below 0 map to a very negative finite number."""
    y = value.double().clamp_min(_SOFTPLUS_FLOOR)
    # log(expm1(y)) written to stay accurate for large y: y + log(1 - exp(-y)).
    return (y + torch.log(-torch.expm1(-y))).to(value.dtype)


def _check_mapping(option: str, value) -> str | None:
    if value not in _MAPPINGS:
        raise HeadError(f"head 'ltc': {option} must be one of 'affine', 'linear', None; got {value!r}")
    return value


@register_head("ltc", time_aware=True, description="Liquid time-constant network (LTC), optionally NCP-wired")
class LTC(TemporalHead):
    """Liquid time-constant head (see the module docstring for the model).

    Args:
        in_features: D, the size of each input vector.
        hidden_size: N, the number of neurons (default 64; taken from ``wiring`` when it is a Wiring;
            for ``wiring="ncp"`` it must equal inter + command + motor neurons).
        wiring: a kind of ``heads.wirings.list_wirings()`` or a built ``Wiring`` for ``in_features``.
        wiring_kwargs: options of ``create_wiring`` for a kind (``output_size``, ``sparsity``, ``seed``).
        ode_unfolds: K, the semi-implicit Euler steps per observation.
        input_mapping: per-feature map of the input: ``"affine"``, ``"linear"`` or None.
        output_mapping: per-neuron map of the motor neurons: ``"affine"``, ``"linear"`` or None.
        epsilon: added to the conductance sum D, as ncps does.

    Attribute ``compiled`` (default True): float32 CPU work may use the numba kernels; False sends
    everything through the torch path (the tests compare the two).
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int | None = None,
        wiring: str | Wiring = "fully_connected",
        wiring_kwargs: dict | None = None,
        ode_unfolds: int = 6,
        input_mapping: str | None = "affine",
        output_mapping: str | None = "affine",
        epsilon: float = 1e-8,
    ) -> None:
        super().__init__()
        wiring = resolve_wiring("ltc", in_features, hidden_size, "fully_connected" if wiring is None else wiring,
                                wiring_kwargs)
        if isinstance(ode_unfolds, bool) or not isinstance(ode_unfolds, int) or ode_unfolds < 1:
            raise HeadError(f"head 'ltc': ode_unfolds must be a positive integer, got {ode_unfolds!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon >= 0:
            raise HeadError(f"head 'ltc': epsilon must be a number >= 0, got {epsilon!r}")
        self.in_features = in_features
        self.out_features = wiring.output_size
        self.units = wiring.units
        self.wiring = wiring
        self.ode_unfolds = ode_unfolds
        self.input_mapping = _check_mapping("input_mapping", input_mapping)
        self.output_mapping = _check_mapping("output_mapping", output_mapping)
        self.epsilon = float(epsilon)
        self.compiled = True
        self._derived = DerivedCache()  # the fast paths' constants, without autograd
        self._allocate(wiring)

    def _allocate(self, wiring: Wiring) -> None:
        units, features = wiring.units, wiring.in_features

        def uniform(shape, key: str) -> Tensor:
            low, high = _INIT_RANGES[key]
            return torch.rand(*shape) * (high - low) + low

        def add(name: str, value: Tensor) -> None:
            if name in POSITIVE_PARAMETERS:
                value = inverse_softplus(value)
            self.register_parameter(name, nn.Parameter(value.float()))

        add("gleak", uniform((units,), "gleak"))
        add("vleak", uniform((units,), "vleak"))
        add("cm", uniform((units,), "cm"))
        add("sigma", uniform((units, units), "sigma"))
        add("mu", uniform((units, units), "mu"))
        add("w", uniform((units, units), "w"))
        add("erev", torch.from_numpy(wiring.adjacency.astype("float32")))
        add("sensory_sigma", uniform((features, units), "sigma"))
        add("sensory_mu", uniform((features, units), "mu"))
        add("sensory_w", uniform((features, units), "w"))
        add("sensory_erev", torch.from_numpy(wiring.sensory_adjacency.astype("float32")))
        self.register_buffer("sparsity_mask", torch.from_numpy((wiring.adjacency != 0).astype("float32")))
        self.register_buffer(
            "sensory_sparsity_mask", torch.from_numpy((wiring.sensory_adjacency != 0).astype("float32"))
        )
        if self.input_mapping is not None:
            add("input_w", torch.ones(features))
        if self.input_mapping == "affine":
            add("input_b", torch.zeros(features))
        if self.output_mapping is not None:
            add("output_w", torch.ones(self.out_features))
        if self.output_mapping == "affine":
            add("output_b", torch.zeros(self.out_features))

    # -- the interface ---------------------------------------------------------------------------

    def init_state(self, batch: int, device=None, dtype=None) -> Tensor:
        """Zero potentials, (B, N)."""
        return torch.zeros(batch, self.units, device=device, dtype=dtype or self.gleak.dtype)

    def step(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One observation. x (B, D), dt (B, 1), state (B, N) -> y (B, H), state (B, N)."""
        y, state = self.forward(x.unsqueeze(1), dt.reshape(dt.shape[0], -1), state)
        return y[:, 0], state

    def sequence(self, x: Tensor, dt: Tensor, state: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """A sequence. x (B, T, D), dt (B, T), state (B, N), mask (B, T) -> y (B, T, H), state (B, N)."""
        if torch.is_autocast_enabled(x.device.type):
            # The ODE runs in the parameters' precision (its out= buffers need one dtype throughout).
            dtype = self.gleak.dtype
            with torch.autocast(x.device.type, enabled=False):
                return self.sequence(x.to(dtype), dt.to(dtype), state.to(dtype), mask)
        if x.dtype != self.gleak.dtype or state.dtype != x.dtype:
            raise ValueError(
                f"LTC: x and state must have the parameters' dtype {self.gleak.dtype}, "
                f"got {x.dtype} and {state.dtype} (convert the head with .to(dtype))"
            )
        if mask is not None:
            # A masked step becomes dt = 0 on a zero input: the update is then exactly v + 0, so the
            # state is carried unchanged without a select per step, whatever the padding holds.
            x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
            dt = torch.where(mask, dt, torch.zeros((), dtype=dt.dtype, device=dt.device))
        h = dt.clamp_min(0.0) / self.ode_unfolds  # (B, T): the time of one unfold
        path = kernels if self._use_compiled(x) else torch_path
        potentials, state = path.run(self, x, h, state, self._constants(path))  # (B, T, H), (B, N)
        y = self.map_outputs(potentials)
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y, state

    def _use_compiled(self, x: Tensor) -> bool:
        """The numba kernels serve float32 CPU work; graph export and tracing need torch ops."""
        return (
            self.compiled
            and kernels.available()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.onnx.is_in_onnx_export()
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
        )

    def _constants(self, path) -> dict[str, Tensor]:
        """``path.constants(self)``: with grad, computed per call (not per unfold); without, kept until a
        parameter or buffer changes (a streaming step would otherwise spend a third of its time here)."""
        if torch.is_grad_enabled():
            return path.constants(self)
        tensors = [*self.parameters(recurse=False), *self.buffers(recurse=False)]
        return self._derived.get(tensors, lambda: path.constants(self),
                                 tag=(path.__name__, torch.is_inference_mode_enabled()))

    def map_inputs(self, x: Tensor) -> Tensor:
        """Per-feature input map. x (..., D) -> (..., D)."""
        return self._map(x, "input")

    def map_outputs(self, v: Tensor) -> Tensor:
        """Per-neuron output map. v (..., H) -> (..., H)."""
        return self._map(v, "output")

    def _map(self, value: Tensor, side: str) -> Tensor:
        """``value * {side}_w + {side}_b`` as far as the side's mapping has them."""
        mapping = getattr(self, f"{side}_mapping")
        if mapping is None:
            return value
        value = value * getattr(self, f"{side}_w")
        return getattr(self, f"{side}_b") + value if mapping == "affine" else value

    # -- the plain model, which the fast paths match -----------------------------------------

    def reference_step(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The same step written plainly, in ncps's layout. x (B, D), dt (B, 1), v (B, N) -> y (B, H), v."""
        xm = self.map_inputs(x)
        sensory = (
            F.softplus(self.sensory_w)
            * torch.sigmoid(self.sensory_sigma * (xm.unsqueeze(-1) - self.sensory_mu))
            * self.sensory_sparsity_mask
        )  # (B, D, N)
        s_num = (sensory * self.sensory_erev).sum(1)
        s_den = sensory.sum(1)
        gleak, cm, w = F.softplus(self.gleak), F.softplus(self.cm), F.softplus(self.w)
        h = dt.clamp_min(0.0) / self.ode_unfolds  # (B, 1)
        v = state
        for _ in range(self.ode_unfolds):
            act = w * torch.sigmoid(self.sigma * (v.unsqueeze(-1) - self.mu)) * self.sparsity_mask  # (B, N, N)
            num = gleak * self.vleak + (act * self.erev).sum(1) + s_num
            den = gleak + act.sum(1) + s_den + self.epsilon
            v = v + h * (num - den * v) / (cm + h * den)
        return self.map_outputs(v[:, : self.out_features]), v

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, units={self.units}, ode_unfolds={self.ode_unfolds}, "
            f"input_mapping={self.input_mapping!r}, output_mapping={self.output_mapping!r}"
        )
