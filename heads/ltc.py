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
heads/_ltc_kernels.py (numba): the whole sequence in one forward and one backward call, each synapse
activation made in registers and summed at once, never stored. Everything else (float64, CUDA, graph
export, or with ``use_compiled = False``) takes the torch path below, which the tests hold the
compiled one to. Torch path: the sensory synapses of all steps are computed before the
step loop, in cache-sized blocks. In the loop, the activations of all synapses form one tensor
(N_dest, B, N_src) (the source innermost, so that every elementwise operand is contiguous there),
and a single ``baddbmm`` against the stacked weights [W * E; W] (N_dest, 2, N_src) gives both sums
of every neuron and adds the leak and sensory terms. The loop and the sensory synapses are autograd
Functions with hand-written backward passes that recompute the activations instead of storing them.
A masked step runs as dt = 0 on a zero input, which leaves the state exactly unchanged.
``_reference_step`` is the same model written plainly (ncps's layout); the tests hold the fast path
to it, values and gradients.

Shapes: B batch, T time, D input features, N neurons, H = out_features (motor neurons).
State: v (B, N).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads import _ltc_kernels
from heads._registry import HeadError, register_head
from heads.base import TemporalHead
from heads.interop import register_ncps_converter
from heads.wirings import Wiring, create_wiring, from_ncps_wiring, list_wirings

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
_POSITIVE = ("gleak", "cm", "w", "sensory_w")

# Smallest value inverse_softplus keeps: 0 maps to log(1e-30) = -69, finite, softplus gives 1e-30.
_SOFTPLUS_FLOOR = 1e-30

# Steps run per call of the unfold loop hold about this many elements of (T, N, 2, B) terms: bounds
# the memory of long streams without grad. The sensory activations are made in blocks of about
# _SENSORY_BLOCK elements (N, rows, D), small enough to stay in cache; larger blocks were slower.
_CHUNK_ELEMENTS = 1 << 22
_SENSORY_BLOCK = 1 << 18

# float32 CPU work runs through the compiled kernels of heads/_ltc_kernels.py when numba is there;
# False sends it through the torch path (the tests compare the two).
use_compiled = True


def inverse_softplus(value: Tensor) -> Tensor:
    """The x with softplus(x) = value; values at or below 0 map to a very negative finite number."""
    y = value.double().clamp_min(_SOFTPLUS_FLOOR)
    # log(expm1(y)) written to stay accurate for large y: y + log(1 - exp(-y)).
    return (y + torch.log(-torch.expm1(-y))).to(value.dtype)


def _check_mapping(option: str, value) -> str | None:
    if value not in _MAPPINGS:
        raise HeadError(f"head 'ltc': {option} must be one of 'affine', 'linear', None; got {value!r}")
    return value


# -- the step loop and its hand-written backward --------------------------------------------------
#
# Names, for one observation t and one unfold: v (B, N) the potentials in, act (Nd, B, Ns) the synapse
# activations sigmoid(slope * v_src + offset), terms = base_t + weights @ act^T (Nd, 2, B) = [num; den],
# r = num - den * v, q = cm + h * den, v' = v + h * r / q. The source neuron is the innermost
# dimension of act so that every operand of its elementwise ops is contiguous there (a broadcast
# innermost dimension makes torch fall back to a scalar loop, ten times slower). The sensory
# synapses have the same form with the mapped input x in place of v.
#
# Eager autograd through this loop costs more in bookkeeping and in badly shaped products than the
# maths, so the loop and the sensory synapses are two autograd Functions with written-out backward
# passes. Both recompute act there instead of keeping it: keeping it (T*K*N*B*N numbers) costs
# more in memory traffic than the sigmoid does, besides the memory.


def _synapse_backward(g_terms, act, inp, weights, slope, grads):
    """Back through terms = base + weights @ act^T, act = sigmoid(slope * inp + offset).

    g_terms (P, 2, R), act (P, R, S), inp (R, S): adds to ``grads`` [weights (P, 2, S), slope (P, S),
    offset (P, S)] and returns d/d(inp) (R, S). P postsynaptic, R rows (batch), S presynaptic.
    """
    grads[0].baddbmm_(g_terms, act)
    g_z = torch.bmm(g_terms.transpose(1, 2), weights)  # d/d(act), (P, R, S)
    torch.ops.aten.sigmoid_backward.grad_input(g_z, act, grad_input=g_z)
    grads[1] += (g_z * inp).sum(1)
    grads[2] += g_z.sum(1)
    return (g_z * slope).sum(0)


def _sensory_terms(x, leak, weights, slope, offset):
    """Leak plus sensory synapses. x (M, D) mapped inputs -> (N, 2, M) [numerator; denominator].

    In blocks of about _SENSORY_BLOCK elements of act (N, rows, D), which stay in cache. Each block
    gets a contiguous result: a strided ``out=`` sends bmm down a slow path.
    """
    rows = max(1, _SENSORY_BLOCK // (weights.shape[0] * weights.shape[2]))
    act_buffer = x.new_empty(weights.shape[0], min(rows, x.shape[0]), weights.shape[2])  # reused
    terms = []
    for first in range(0, x.shape[0], rows):
        block = x[first : first + rows]
        if torch.onnx.is_in_onnx_export():  # ONNX has no out= variants
            act = torch.sigmoid(offset + block * slope)
        else:
            act = torch.addcmul(offset, block, slope, out=act_buffer[:, : block.shape[0]]).sigmoid_()
        terms.append(torch.baddbmm(leak, weights, act.transpose(1, 2)))
    return torch.cat(terms, dim=-1) if len(terms) > 1 else terms[0]


class _Sensory(torch.autograd.Function):
    """``_sensory_terms`` as one autograd node."""

    @staticmethod
    def forward(ctx, x, leak, weights, slope, offset):
        ctx.save_for_backward(x, weights, slope, offset)
        return _sensory_terms(x, leak, weights, slope, offset)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_terms):
        x, weights, slope, offset = ctx.saved_tensors
        rows = max(1, _SENSORY_BLOCK // (weights.shape[0] * weights.shape[2]))
        grads = [torch.zeros_like(weights), torch.zeros_like(slope[:, 0]), torch.zeros_like(offset[:, 0])]
        grad_x = torch.empty_like(x)
        for first in range(0, x.shape[0], rows):
            block = x[first : first + rows]
            act = torch.addcmul(offset, block, slope).sigmoid_()
            g_block = g_terms[:, :, first : first + rows].contiguous()
            grad_x[first : first + rows] = _synapse_backward(g_block, act, block, weights, slope, grads)
        grad_leak = g_terms.sum(-1, keepdim=True)
        return grad_x, grad_leak, grads[0], grads[1].unsqueeze(1), grads[2].unsqueeze(1)


def _unfold_loop(v, base, h, weights, slope, offset, cm, unfolds, keep=None):
    """Run the unfolds of every step. v (B, N), base (T, N, 2, B), h (T, B, 1) -> states.

    Without ``keep`` the states are those after every step, (T+1, B, N) with v first. With ``keep``
    (a dict) they are those after every unfold, (T*K+1, B, N), and ``keep`` receives r and q of
    every unfold, (T*K, B, N): what the backward needs. Buffers and their views are made before the
    loop: at these sizes a view costs as much as a small kernel.
    """
    steps, (batch, units) = base.shape[0], v.shape
    count = steps * unfolds if keep is not None else steps
    states = v.new_empty(count + 1, batch, units)
    states[0] = v
    outs = states.unbind(0)[1:]
    act = v.new_empty(units, batch, units)  # (Nd, B, Ns), reused by every unfold
    act_t = act.transpose(1, 2)
    if keep is None:  # one buffer of each, reused
        rs, qs = [torch.empty_like(v)], [torch.empty_like(v)]
        work = torch.empty_like(v)  # the state between the unfolds of a step
    else:
        keep["r"], keep["q"] = v.new_empty(count, batch, units), v.new_empty(count, batch, units)
        rs, qs = keep["r"].unbind(0), keep["q"].unbind(0)
    terms = v.new_empty(units, 2, batch)  # (Nd, 2, B): [num; den]
    num, den = terms[:, 0].t(), terms[:, 1].t()  # (B, N) views
    scaled = torch.empty_like(v)
    h = h.expand(-1, -1, units).contiguous()  # (T, B, N): a broadcast innermost dim is slow
    u = 0
    for t, (h_t, base_t) in enumerate(zip(h.unbind(0), base.unbind(0))):
        for k in range(unfolds):
            if keep is None:
                b, out = 0, outs[t] if k == unfolds - 1 else work
            else:
                b, out = u, outs[u]
            torch.addcmul(offset, v, slope, out=act).sigmoid_()
            torch.baddbmm(base_t, weights, act_t, out=terms)
            r = torch.addcmul(num, den, v, value=-1.0, out=rs[b])
            q = torch.addcmul(cm, den, h_t, out=qs[b])
            # h multiplies before the division, so h = 0 gives exactly v even if cm hit its floor.
            v = torch.addcdiv(v, torch.mul(r, h_t, out=scaled), q, out=out)
            u += 1
    return states


def _unfold_no_grad(v, base, h, weights, slope, offset, cm, unfolds):
    """States after every step (T, B, N), without keeping anything for a backward pass."""
    return _unfold_loop(v, base, h, weights, slope, offset, cm, unfolds)[1:]


def _unfold_plain(v, base, h, weights, slope, offset, cm, unfolds):
    """``_unfold_no_grad`` in plain out-of-place ops, for graph export (ONNX has no out= variants)."""
    states = []
    h = h.expand(-1, -1, v.shape[1])
    for h_t, base_t in zip(h.unbind(0), base.unbind(0)):
        for _ in range(unfolds):
            act = torch.sigmoid(offset + v * slope)                     # (Nd, B, Ns)
            terms = torch.baddbmm(base_t, weights, act.transpose(1, 2))  # (Nd, 2, B)
            num, den = terms[:, 0].t(), terms[:, 1].t()                  # (B, N)
            v = v + (num - den * v) * h_t / (cm + den * h_t)
        states.append(v)
    return torch.stack(states)


class _Unfold(torch.autograd.Function):
    """``_unfold_loop`` as one autograd node; returns the states after every step (T, B, N)."""

    @staticmethod
    def forward(ctx, v, base, h, weights, slope, offset, cm, unfolds):
        keep = {}
        states = _unfold_loop(v, base, h, weights, slope, offset, cm, unfolds, keep)
        ctx.unfolds = unfolds
        ctx.save_for_backward(states, keep["r"], keep["q"], h, weights, slope, offset, cm)
        return states[unfolds::unfolds].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_states):
        """Back through v' = v + h r / q, r = num - den v, q = cm + h den:
        dv'/dnum = h/q, dv'/dden = -(h/q) v', dv'/dv (direct) = cm/q, dv'/dcm = -(h/q) r/q,
        dv'/dh = (cm/q) r/q; then through terms = base + weights @ act^T and act."""
        states, r_all, q_all, h, weights, slope, offset, cm = ctx.saved_tensors
        unfolds = ctx.unfolds
        steps, batch, units = grad_states.shape
        need_h = ctx.needs_input_grad[2]
        states, rs, qs = states.unbind(0), r_all.unbind(0), q_all.unbind(0)
        h = h.expand(-1, -1, units).contiguous()
        act = grad_states.new_empty(units, batch, units)
        grad_base = grad_states.new_zeros(steps, units, 2, batch)
        grads = [torch.zeros_like(weights), *grad_states.new_zeros(2, units, units)]  # weights, slope, offset
        grad_cm = torch.zeros_like(grad_states[0])
        grad_h = torch.zeros_like(grad_states) if need_h else None
        g_terms = grad_states.new_empty(units, 2, batch)
        g_num, g_den = g_terms[:, 0].t(), g_terms[:, 1].t()  # (B, N) views
        gv = torch.zeros_like(grad_states[0])
        u = steps * unfolds
        for t in reversed(range(steps)):
            gv = gv + grad_states[t]
            h_t, grad_base_t = h[t], grad_base[t]
            for _ in range(unfolds):
                u -= 1
                v_in, r, q = states[u], rs[u], qs[u]
                inv_q = q.reciprocal()
                torch.mul(gv * h_t, inv_q, out=g_num)
                torch.mul(g_num, states[u + 1], out=g_den).neg_()
                r_q = r * inv_q
                grad_cm.addcmul_(g_num, r_q, value=-1.0)
                g_direct = gv * cm * inv_q
                if need_h:
                    grad_h[t].addcmul_(g_direct, r_q)
                grad_base_t += g_terms
                torch.addcmul(offset, v_in, slope, out=act).sigmoid_()
                gv = g_direct.add_(_synapse_backward(g_terms, act, v_in, weights, slope, grads))
        grad_h = grad_h.sum(-1, keepdim=True) if need_h else None
        return (
            gv, grad_base, grad_h, grads[0], grads[1].unsqueeze(1), grads[2].unsqueeze(1), grad_cm.sum(0), None,
        )


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
        wiring = _build_wiring(in_features, hidden_size, wiring, wiring_kwargs)
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
        self._derived_cache: tuple | None = None  # see _derived
        self._allocate(wiring)

    def _allocate(self, wiring: Wiring) -> None:
        units, features = wiring.units, wiring.in_features

        def uniform(shape, key: str) -> Tensor:
            low, high = _INIT_RANGES[key]
            return torch.rand(*shape) * (high - low) + low

        def add(name: str, value: Tensor) -> None:
            if name in _POSITIVE:
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

    def forward(
        self,
        x: Tensor,
        dt: Tensor | None = None,
        state: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """A sequence. x (B, T, D), dt (B, T), state (B, N), mask (B, T) -> y (B, T, H), state (B, N)."""
        if torch.is_autocast_enabled(x.device.type):
            # The ODE runs in the parameters' precision (its out= buffers need one dtype throughout).
            dtype = self.gleak.dtype
            with torch.autocast(x.device.type, enabled=False):
                state = None if state is None else state.to(dtype)
                return self.forward(x.to(dtype), None if dt is None else dt.to(dtype), state, mask)
        x, dt, state = self.prepare(x, dt, state)
        if x.dtype != self.gleak.dtype or state.dtype != x.dtype:
            raise ValueError(
                f"LTC: x and state must have the parameters' dtype {self.gleak.dtype}, "
                f"got {x.dtype} and {state.dtype} (convert the head with .to(dtype))"
            )
        if mask is not None:
            mask = mask.to(torch.bool)
            # A masked step becomes dt = 0 on a zero input: the update is then exactly v + 0, so the
            # state is carried unchanged without a select per step, whatever the padding holds.
            x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
            dt = torch.where(mask, dt, torch.zeros((), dtype=dt.dtype, device=dt.device))
        h = dt.clamp_min(0.0) / self.ode_unfolds  # (B, T): the time of one unfold
        run = self._run_compiled if self._use_compiled(x) else self._run_torch
        potentials, state = run(x, h, state)  # (B, T, H) motor neurons, (B, N)
        y = self._map_outputs(potentials)
        if mask is not None:
            y = y * mask.unsqueeze(-1).to(y.dtype)
        return y, state

    # -- the compiled path (float32 on the CPU) ---------------------------------------------------

    def _use_compiled(self, x: Tensor) -> bool:
        """The numba kernels serve float32 CPU work; graph export and tracing need torch ops."""
        return (
            use_compiled
            and _ltc_kernels.available()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.onnx.is_in_onnx_export()
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
        )

    def _run_compiled(self, x: Tensor, h: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The ODE through heads/_ltc_kernels.py. x (B, T, D), h (B, T), state (B, N) ->
        motor potentials (B, T, H), state (B, N)."""
        p = self._derived(compiled=True)
        xm = self._map_inputs(x).contiguous()  # (B, T, D)
        args = (xm, h.contiguous(), state.contiguous(), p["neuron"], p["sensory"], p["recurrent"], self.ode_unfolds)
        if torch.is_grad_enabled():
            states = _ltc_kernels.FusedLTC.apply(*args)  # (B, T, N)
        else:
            states, _ = _ltc_kernels.fused_states(*args)
        return states[:, :, : self.out_features], states[:, -1]

    # -- the torch path ----------------------------------------------------------------------------

    def _run_torch(self, x: Tensor, h: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The ODE in torch ops, in chunks of steps. Arguments and results as for ``_run_compiled``."""
        p = self._derived()
        steps = x.shape[1]
        h_all = h.t().unsqueeze(-1)  # (T, B, 1)
        chunk = max(1, _CHUNK_ELEMENTS // (2 * x.shape[0] * self.units))
        if torch.onnx.is_in_onnx_export():
            unfold = _unfold_plain
        else:
            unfold = _Unfold.apply if torch.is_grad_enabled() else _unfold_no_grad
        outputs = []
        for start in range(0, steps, chunk):
            base = self._sensory(x[:, start : start + chunk], p)  # (Tc, N, 2, B)
            h_chunk = h_all[start : start + base.shape[0]]
            states = unfold(state, base, h_chunk, p["weights"], p["slope"], p["offset"], p["cm"], self.ode_unfolds)
            outputs.append(states[:, :, : self.out_features])  # (Tc, B, H)
            state = states[-1]
        outputs = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
        return outputs.transpose(0, 1), state  # (T, B, H) -> (B, T, H)

    def _derived(self, compiled: bool = False) -> dict[str, Tensor]:
        """Per-call constants in the layouts the torch path (with ``compiled``: the kernels) wants,
        computed once per call, not per unfold.

        Without grad they are kept until a parameter or buffer changes (in place, which bumps its
        version, or replaced): a streaming step would otherwise spend a third of its time here.
        """
        compute = self._compute_compiled if compiled else self._compute_derived
        if torch.is_grad_enabled():
            return compute()
        try:
            versions = tuple((t.data_ptr(), t._version, t.dtype) for t in self._sources())
        except RuntimeError:  # inference tensors have no version counter: nothing safe to key on
            return compute()
        key = (compiled, torch.is_inference_mode_enabled(), versions)
        if self._derived_cache is None or self._derived_cache[0] != key:
            self._derived_cache = (key, compute())
        return self._derived_cache[1]

    def _sources(self) -> list[Tensor]:
        return [*self.parameters(recurse=False), *self.buffers(recurse=False)]

    def _apply(self, fn, recurse: bool = True):
        self._derived_cache = None  # .to(), .float(), ...: new tensors
        return super()._apply(fn, recurse)

    def _compute_derived(self) -> dict[str, Tensor]:
        w = F.softplus(self.w) * self.sparsity_mask  # (Ns, Nd)
        sw = F.softplus(self.sensory_w) * self.sensory_sparsity_mask  # (D, N)
        gleak = F.softplus(self.gleak)
        return {
            # (Nd, 2, Ns): row 0 gives sum_i a_ij E_ij, row 1 sum_i a_ij, in one batched product.
            "weights": torch.stack([w * self.erev, w]).permute(2, 0, 1).contiguous(),
            # contiguous: the innermost dimension of an elementwise operand must not be strided
            "slope": self.sigma.t().contiguous().unsqueeze(1),  # (Nd, 1, Ns)
            "offset": -(self.sigma * self.mu).t().contiguous().unsqueeze(1),  # (Nd, 1, Ns)
            "sensory_weights": torch.stack([sw * self.sensory_erev, sw]).permute(2, 0, 1).contiguous(),
            "sensory_slope": self.sensory_sigma.t().contiguous().unsqueeze(1),  # (N, 1, D)
            "sensory_offset": -(self.sensory_sigma * self.sensory_mu).t().contiguous().unsqueeze(1),  # (N, 1, D)
            # (N, 2, 1): the leak's share of the numerator and of the denominator (with epsilon).
            "leak": torch.stack([gleak * self.vleak, gleak + self.epsilon], dim=1).unsqueeze(-1),
            # cm > 0 by softplus; the floor only guards an underflow, so dt = 0 never gives 0 / 0.
            "cm": F.softplus(self.cm).clamp_min(torch.finfo(self.cm.dtype).tiny),  # (N,)
        }

    def _compute_compiled(self) -> dict[str, Tensor]:
        """The constants of heads/_ltc_kernels.py: neuron (3, N) = [leak_num, leak_den, cm] and the
        synapses (4, sources, targets) = [wnum, wden, ns, no], the sigmoid's argument rescaled to
        base 2 (s = 1 / (1 + 2**(ns * v + no)))."""
        scale = _ltc_kernels.LOG2E

        def synapses(w, erev, sigma, mu):
            return torch.stack([w * erev, w, sigma * -scale, sigma * mu * scale])

        gleak = F.softplus(self.gleak)
        cm = F.softplus(self.cm).clamp_min(torch.finfo(self.cm.dtype).tiny)
        return {
            "neuron": torch.stack([gleak * self.vleak, gleak + self.epsilon, cm]),
            "sensory": synapses(F.softplus(self.sensory_w) * self.sensory_sparsity_mask, self.sensory_erev,
                                self.sensory_sigma, self.sensory_mu),
            "recurrent": synapses(F.softplus(self.w) * self.sparsity_mask, self.erev, self.sigma, self.mu),
        }

    def _sensory(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Leak plus sensory terms of every step. x (B, Tc, D) -> (Tc, N, 2, B): [numerator, denominator]."""
        batch, steps, _ = x.shape
        xm = self._map_inputs(x).transpose(0, 1).reshape(steps * batch, -1)  # (M, D), rows (t, b)
        sensory = _Sensory.apply if torch.is_grad_enabled() else _sensory_terms
        terms = sensory(xm, p["leak"], p["sensory_weights"], p["sensory_slope"], p["sensory_offset"])
        return terms.view(self.units, 2, steps, batch).permute(2, 0, 1, 3).contiguous()

    def _map_inputs(self, x: Tensor) -> Tensor:
        """Per-feature input map. x (..., D) -> (..., D)."""
        if self.input_mapping == "affine":
            return self.input_b + x * self.input_w
        if self.input_mapping == "linear":
            return x * self.input_w
        return x

    def _map_outputs(self, v: Tensor) -> Tensor:
        """Per-neuron output map. v (..., H) -> (..., H)."""
        if self.output_mapping == "affine":
            return self.output_b + v * self.output_w
        if self.output_mapping == "linear":
            return v * self.output_w
        return v

    # -- the plain model, for the tests ----------------------------------------------------------

    def _reference_step(self, x: Tensor, dt: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """The same step written plainly, in ncps's layout. x (B, D), dt (B, 1), v (B, N) -> y (B, H), v."""
        xm = self._map_inputs(x)
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
        return self._map_outputs(v[:, : self.out_features]), v

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, units={self.units}, ode_unfolds={self.ode_unfolds}, "
            f"input_mapping={self.input_mapping!r}, output_mapping={self.output_mapping!r}"
        )


def _build_wiring(in_features: int, hidden_size, wiring, wiring_kwargs) -> Wiring:
    """The Wiring asked for by the ``hidden_size``/``wiring``/``wiring_kwargs`` options."""
    if hidden_size is not None and (
        isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1
    ):
        raise HeadError(f"head 'ltc': hidden_size must be a positive integer, got {hidden_size!r}")
    if isinstance(wiring, Wiring):
        if wiring_kwargs:
            raise HeadError("head 'ltc': wiring_kwargs apply to a wiring kind, not to a built Wiring")
        if wiring.in_features != in_features:
            raise HeadError(f"head 'ltc': the wiring is built for {wiring.in_features} inputs, not {in_features}")
        if hidden_size is not None and hidden_size != wiring.units:
            raise HeadError(f"head 'ltc': hidden_size={hidden_size} but the wiring has {wiring.units} neurons")
        return wiring
    if not isinstance(wiring, str):
        raise HeadError(
            f"head 'ltc': wiring must be a Wiring or one of: {', '.join(list_wirings())}; got {wiring!r}"
        )
    if wiring_kwargs is not None and not isinstance(wiring_kwargs, dict):
        raise HeadError(f"head 'ltc': wiring_kwargs must be a dict or None, got {wiring_kwargs!r}")
    return create_wiring(wiring, in_features, 64 if hidden_size is None else hidden_size, **(wiring_kwargs or {}))


# -- ncps interop ----------------------------------------------------------------------------------


@register_ncps_converter("LTCCell")
def ltc_from_ncps_cell(cell: nn.Module) -> LTC:
    """Our LTC with the wiring and weights of an ncps ``LTCCell`` (either parameter constraint mode).

    With ``implicit_param_constraints=False`` ncps uses gleak, cm, w and sensory_w as they are; we
    store their inverse softplus, clipping values below zero to zero as ncps's
    ``apply_weight_constraints`` would.
    """
    mapping = {"affine": "affine", "linear": "linear"}
    wiring = from_ncps_wiring(cell._wiring)
    head = LTC(
        wiring.in_features,
        wiring=wiring,
        ode_unfolds=int(cell._ode_unfolds),
        input_mapping=mapping.get(cell._input_mapping),
        output_mapping=mapping.get(cell._output_mapping),
        epsilon=float(cell._epsilon),
    )
    implicit = bool(cell._implicit_param_constraints)
    ours = dict(head.named_parameters())
    with torch.no_grad():
        for name, param in ours.items():
            value = getattr(cell, name).detach().float().cpu()
            if name in _POSITIVE and not implicit:
                value = inverse_softplus(value)
            if value.shape != param.shape:
                raise HeadError(
                    f"from_ncps: LTCCell.{name} has shape {tuple(value.shape)}, expected {tuple(param.shape)}"
                )
            param.copy_(value)
    device = cell.gleak.device
    return head.to(device)


@register_ncps_converter("LTC")
def ltc_from_ncps(module: nn.Module) -> LTC:
    """Our LTC for an ncps ``LTC`` sequence wrapper (its ``rnn_cell``); mixed memory is unsupported.

    Our head always returns every step, batch-first; ``return_sequences``/``batch_first`` are choices
    of the caller there.
    """
    if getattr(module, "use_mixed", False):
        raise HeadError("from_ncps: an ncps LTC with mixed_memory=True is unsupported (its LSTM memory cell)")
    if getattr(module, "proj_size", None) or getattr(module, "fc", None) is not None:
        raise HeadError("from_ncps: an ncps LTC with an output projection is unsupported")
    return ltc_from_ncps_cell(module.rnn_cell)
