"""Compiled (numba) kernels of the ``ltc`` head: the whole sequence in one forward and one backward call.

Why. The LTC step costs T * K * N * N synapse activations (sigmoids); in torch each unfold is a
handful of kernels over a (N, B, N) tensor, and the sigmoid alone is half of the time. Here each
activation is computed in registers and summed at once into the numerator and denominator of its
target neuron, so nothing of size N * N per batch element ever goes to memory, and the activation
itself is cheaper: s = sigmoid(z) is written as 1 / (1 + 2**y) with y = -z * log2(e) folded into the
synapse's slope and offset by the caller, and 2**y = 2**k * 2**f (k = round(y), |f| <= 1/2) is a
degree-6 polynomial in f (Cephes's exp2f coefficients, relative error about 2e-7) times 2**k built
from its exponent bits. That is plain arithmetic, which LLVM turns into SIMD code; a call to exp in
the loop would not be vectorised. The result differs from torch's sigmoid by about 1e-7 absolute.

Used for float32 CPU tensors (``heads.ltc.model.LTC`` decides); ``heads.ltc.torch_path`` serves float64,
CUDA and graph export, and the tests hold the two to each other, values and gradients.

The model, as in ``heads.ltc.model``, per observation (h = dt / K, K unfolds):

    s_ij = 1 / (1 + 2**(ns_ij * v_i + no_ij))                      (ns = -sigma log2 e, no = sigma mu log2 e)
    num_j = leak_num_j + sum_i wnum_ij s_ij (+ the same over the sensory synapses on the input x)
    den_j = leak_den_j + sum_i wden_ij s_ij (+ sensory)             (wnum = w * E, wden = w)
    v_j <- v_j + h (num_j - den_j v_j) / (cm_j + h den_j)

Layouts: x (B, T, D) mapped inputs, h (B, T), v (B, N); synapse arrays (sources, targets): sensory
(D, N), recurrent (N, N), so the innermost loop runs over target neurons, contiguous in memory.
The batch is split into one contiguous block per thread; each block has its own gradient
accumulators, summed afterwards, so the result does not depend on scheduling.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from heads._numba import jit as _jit, numba  # without numba: the ltc head then takes its torch path

LOG2E = 1.0 / math.log(2.0)
_LN2 = np.float32(math.log(2.0))

# 2**f for |f| <= 1/2 as 1 + f * (c0 + f * (c1 + ...)), highest power first (Cephes exp2f).
_EXP2_COEFFS = (
    1.535336188319500e-4,
    1.339887440266574e-3,
    9.618437357674640e-3,
    5.550332471162809e-2,
    2.402264791363012e-1,
    6.931472028550421e-1,
)


def available() -> bool:
    return numba is not None


_C0, _C1, _C2, _C3, _C4, _C5 = (np.float32(c) for c in _EXP2_COEFFS)
Y_MAX = np.float32(64.0)  # beyond, s is within 6e-20 of 0 or 1; and no product of s goes subnormal (slow)
_ONE, _HALF = np.float32(1.0), np.float32(0.5)


@_jit(inline="always")
def exp2_split(y, j, mantissa, bits):  # pragma: no cover (numba)
    """2**y for |y| <= ``Y_MAX`` as 2**k 2**f, k = round(y): ``mantissa[j]`` <- 2**f (the polynomial)
    and ``bits[j]`` (int32) <- the float32 bits of 2**k; a caller multiplies mantissa by the float32
    view of bits in a second loop (one loop writing one view and reading the other would not be
    vectorised). Also serves ``heads.cfc.streaming``'s sigmoid."""
    k = np.floor(y + _HALF)
    f = y - k
    mantissa[j] = _ONE + f * (_C5 + f * (_C4 + f * (_C3 + f * (_C2 + f * (_C1 + f * _C0)))))
    bits[j] = (np.int32(k) + np.int32(127)) << np.int32(23)


@_jit(inline="always", fastmath=True)
def _gates(value, ns_row, no_row, bits, mantissa, scale, gates):  # pragma: no cover (numba)
    """gates[j] = 1 / (1 + 2**(ns_row[j] * value + no_row[j])) for every target j.

    ``bits`` (int32) and ``scale`` (float32) are two views of one buffer: the exponent 2**k is
    written as bits and read back as a float; ``mantissa`` holds 2**f. Two loops, because a loop
    that writes one view and reads the other would not be vectorised.
    """
    for j in range(gates.shape[0]):
        exp2_split(min(max(ns_row[j] * value + no_row[j], -Y_MAX), Y_MAX), j, mantissa, bits)
    for j in range(gates.shape[0]):
        gates[j] = _ONE / (_ONE + mantissa[j] * scale[j])


@_jit(inline="always")
def _gate_buffers(units):  # pragma: no cover (numba)
    """The scratch of ``_gates`` for ``units`` targets: bits and scale (one buffer, two views),
    mantissa, gates."""
    bits = np.empty(units, np.int32)
    return bits, bits.view(np.float32), np.empty(units, np.float32), np.empty(units, np.float32)


@_jit(inline="always", fastmath=True)
def _add_synapses(values, synapses, num, den, bits, mantissa, scale, gates):  # pragma: no cover (numba)
    """num[j] += sum_i wnum[i, j] s_ij and den[j] += sum_i wden[i, j] s_ij, s from the source values.

    synapses (4, sources, targets) = [wnum, wden, ns, no]."""
    wnum, wden, ns, no = synapses[0], synapses[1], synapses[2], synapses[3]
    for i in range(values.shape[0]):
        _gates(values[i], ns[i], no[i], bits, mantissa, scale, gates)
        for j in range(num.shape[0]):
            num[j] += wnum[i, j] * gates[j]
            den[j] += wden[i, j] * gates[j]


@_jit(inline="always", fastmath=True)
def _synapses_backward(
    values, synapses, g_num, g_den, g_synapses, g_values, bits, mantissa, scale, gates
):  # pragma: no cover (numba)
    """Back through ``_add_synapses``: adds d/d(synapses) into g_synapses (4, sources, targets) and
    writes d/d(values) into g_values. ds/dy = -ln 2 * s * (1 - s)."""
    wnum, wden, ns, no = synapses[0], synapses[1], synapses[2], synapses[3]
    g_wnum, g_wden, g_ns, g_no = g_synapses[0], g_synapses[1], g_synapses[2], g_synapses[3]
    for i in range(values.shape[0]):
        value = values[i]
        _gates(value, ns[i], no[i], bits, mantissa, scale, gates)
        total = np.float32(0.0)
        for j in range(gates.shape[0]):
            s = gates[j]
            g_wnum[i, j] += g_num[j] * s
            g_wden[i, j] += g_den[j] * s
            g_y = (g_num[j] * wnum[i, j] + g_den[j] * wden[i, j]) * (_LN2 * s * (s - _ONE))
            g_ns[i, j] += g_y * value
            g_no[i, j] += g_y
            total += g_y * ns[i, j]
        g_values[i] = total


@_jit(parallel=True, fastmath=True, cache=True, nogil=True)
def _forward(x, h, v0, neuron, sensory, recurrent, unfolds, bounds, states, trace):  # pragma: no cover (numba)
    """Run every step. Writes states (B, T, N), the potentials after each step. With a trace
    (trace.shape[2] > 0) also, for every unfold, its input potentials and its two sums:
    trace (3, B, T*K, N) = [v, num, den], what the backward pass needs."""
    steps, units = x.shape[1], v0.shape[1]
    leak_num, leak_den, cm = neuron[0], neuron[1], neuron[2]
    keep = trace.shape[2] > 0
    for block in numba.prange(bounds.shape[0] - 1):
        bits, scale, mantissa, gates = _gate_buffers(units)
        s_num, s_den = np.empty(units, np.float32), np.empty(units, np.float32)
        num, den = np.empty(units, np.float32), np.empty(units, np.float32)
        v = np.empty(units, np.float32)
        for b in range(bounds[block], bounds[block + 1]):
            v[:] = v0[b]
            u = 0
            for t in range(steps):
                s_num[:] = leak_num
                s_den[:] = leak_den
                _add_synapses(x[b, t], sensory, s_num, s_den, bits, mantissa, scale, gates)
                ht = h[b, t]
                for _ in range(unfolds):
                    num[:] = s_num
                    den[:] = s_den
                    _add_synapses(v, recurrent, num, den, bits, mantissa, scale, gates)
                    if keep:
                        trace[0, b, u] = v
                        trace[1, b, u] = num
                        trace[2, b, u] = den
                    for j in range(units):
                        # h multiplies before the division: h = 0 leaves v exactly as it was.
                        v[j] = v[j] + (ht * (num[j] - den[j] * v[j])) / (cm[j] + ht * den[j])
                    u += 1
                states[b, t] = v


@_jit(parallel=True, fastmath=True, cache=True, nogil=True)
def _backward(g_states, x, h, states, neuron, sensory, recurrent, unfolds, bounds, trace,
              g_x, g_h, g_v0, g_neuron, g_sensory, g_recurrent):  # pragma: no cover (numba)
    """Back through ``_forward``. Per-sample gradients (g_x, g_h, g_v0) are written; parameter
    gradients are added into one accumulator per block (g_neuron (blocks, 3, N), g_sensory
    (blocks, 4, D, N), g_recurrent (blocks, 4, N, N)), which the caller sums.

    With r = num - den v, q = cm + h den, v' = v + h r / q:
    dv'/dnum = h/q, dv'/dden = -(h/q) v', dv'/dv (direct) = cm/q, dv'/dcm = -(h/q) r/q,
    dv'/dh = (cm/q) r/q."""
    steps, units = x.shape[1], g_v0.shape[1]
    cm = neuron[2]
    last = steps * unfolds - 1
    for block in numba.prange(bounds.shape[0] - 1):
        bits, scale, mantissa, gates = _gate_buffers(units)
        g_num, g_den = np.empty(units, np.float32), np.empty(units, np.float32)
        g_s_num, g_s_den = np.empty(units, np.float32), np.empty(units, np.float32)
        g_v, g_through = np.empty(units, np.float32), np.empty(units, np.float32)
        g_leak_num, g_leak_den, g_cm = g_neuron[block, 0], g_neuron[block, 1], g_neuron[block, 2]
        for b in range(bounds[block], bounds[block + 1]):
            g_v[:] = 0.0
            u = steps * unfolds
            for t in range(steps - 1, -1, -1):
                for j in range(units):
                    g_v[j] += g_states[b, t, j]
                g_s_num[:] = 0.0
                g_s_den[:] = 0.0
                ht = h[b, t]
                g_ht = np.float32(0.0)
                for _ in range(unfolds):
                    u -= 1
                    v, num, den = trace[0, b, u], trace[1, b, u], trace[2, b, u]
                    v_out = trace[0, b, u + 1] if u < last else states[b, steps - 1]
                    for j in range(units):
                        inv_q = _ONE / (cm[j] + ht * den[j])
                        r_q = (num[j] - den[j] * v[j]) * inv_q
                        g_num[j] = g_v[j] * ht * inv_q
                        g_den[j] = -g_num[j] * v_out[j]
                        direct = g_v[j] * cm[j] * inv_q
                        g_cm[j] -= g_num[j] * r_q
                        g_ht += direct * r_q
                        g_s_num[j] += g_num[j]
                        g_s_den[j] += g_den[j]
                        g_v[j] = direct
                    _synapses_backward(v, recurrent, g_num, g_den, g_recurrent[block], g_through,
                                       bits, mantissa, scale, gates)
                    for j in range(units):
                        g_v[j] += g_through[j]
                g_h[b, t] = g_ht
                for j in range(units):
                    g_leak_num[j] += g_s_num[j]
                    g_leak_den[j] += g_s_den[j]
                _synapses_backward(x[b, t], sensory, g_s_num, g_s_den, g_sensory[block], g_x[b, t],
                                   bits, mantissa, scale, gates)
            g_v0[b] = g_v


# -- the torch side --------------------------------------------------------------------------------


def _blocks(batch: int) -> np.ndarray:
    """Bounds (blocks + 1,) of one contiguous block of the batch per thread. numba runs as many
    threads as torch is given (torch.set_num_threads, the benchmarks' --threads), but one for a
    single block: starting numba's pool of waiting threads beside torch's cost milliseconds."""
    blocks = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, batch))
    if numba.get_num_threads() != blocks:
        numba.set_num_threads(blocks)
    return np.array([batch * k // blocks for k in range(blocks + 1)], dtype=np.int64)


def _arrays(*tensors: torch.Tensor) -> list[np.ndarray]:
    """numpy views (no copy) of contiguous CPU tensors; others are made contiguous first."""
    return [t.numpy() if t.is_contiguous() and not t.requires_grad else t.detach().contiguous().numpy()
            for t in tensors]


def fused_states(x, h, v0, neuron, sensory, recurrent, unfolds: int, keep: bool = False):
    """The potentials after every step (B, T, N), and the trace the backward pass needs
    (3, B, T*K, N), empty without ``keep``. Arguments as for ``FusedLTC``."""
    batch, steps = x.shape[:2]
    states = x.new_empty(batch, steps, v0.shape[1])
    trace = x.new_empty(3, batch, steps * unfolds if keep else 0, v0.shape[1])
    _forward(*_arrays(x, h, v0, neuron, sensory, recurrent), int(unfolds), _blocks(batch), states.numpy(),
             trace.numpy())
    return states, trace


class FusedLTC(torch.autograd.Function):
    """The ltc head's sequence as one autograd node.

    x (B, T, D) mapped inputs, h (B, T) = dt / K, v0 (B, N), neuron (3, N) = [leak_num, leak_den, cm],
    sensory (4, D, N) and recurrent (4, N, N) = [wnum, wden, ns, no], K -> the potentials after every
    step (B, T, N). float32 CPU tensors only."""

    @staticmethod
    def forward(ctx, x, h, v0, neuron, sensory, recurrent, unfolds):
        states, trace = fused_states(x, h, v0, neuron, sensory, recurrent, unfolds, keep=True)
        ctx.unfolds = int(unfolds)
        ctx.save_for_backward(x, h, states, neuron, sensory, recurrent, trace)
        return states

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_states):
        x, h, states, neuron, sensory, recurrent, trace = ctx.saved_tensors
        bounds = _blocks(x.shape[0])
        blocks = len(bounds) - 1
        g_x, g_h, g_v0 = torch.empty_like(x), torch.empty_like(h), torch.empty_like(states[:, 0])
        g_params = [x.new_zeros(blocks, *p.shape) for p in (neuron, sensory, recurrent)]
        _backward(*_arrays(g_states, x, h, states, neuron, sensory, recurrent), ctx.unfolds, bounds, trace.numpy(),
                  g_x.numpy(), g_h.numpy(), g_v0.numpy(), *(g.numpy() for g in g_params))
        return (g_x, g_h, g_v0, *(g.sum(0) for g in g_params), None)


def constants(head) -> dict[str, torch.Tensor]:
    """The head's parameters as the kernels take them: neuron (3, N) = [leak_num, leak_den, cm] and
    the synapses (4, sources, targets) = [wnum, wden, ns, no], the sigmoid's argument rescaled to
    base 2 (s = 1 / (1 + 2**(ns * v + no)))."""
    softplus = torch.nn.functional.softplus

    def synapses(w, erev, sigma, mu):
        return torch.stack([w * erev, w, sigma * -LOG2E, sigma * mu * LOG2E])

    gleak = softplus(head.gleak)
    cm = softplus(head.cm).clamp_min(torch.finfo(head.cm.dtype).tiny)
    return {
        "neuron": torch.stack([gleak * head.vleak, gleak + head.epsilon, cm]),
        "sensory": synapses(softplus(head.sensory_w) * head.sensory_sparsity_mask, head.sensory_erev,
                            head.sensory_sigma, head.sensory_mu),
        "recurrent": synapses(softplus(head.w) * head.sparsity_mask, head.erev, head.sigma, head.mu),
    }


def run(head, x: torch.Tensor, h: torch.Tensor, state: torch.Tensor,
        p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The ODE through the kernels. x (B, T, D) raw inputs, h (B, T) = dt / K, state (B, N),
    p = ``constants(head)`` -> motor potentials (B, T, H), state (B, N)."""
    xm = head.map_inputs(x).contiguous()  # (B, T, D)
    args = (xm, h.contiguous(), state.contiguous(), p["neuron"], p["sensory"], p["recurrent"], head.ode_unfolds)
    if torch.is_grad_enabled():
        states = FusedLTC.apply(*args)  # (B, T, N)
    else:
        states, _ = fused_states(*args)
    return states[:, :, : head.out_features], states[:, -1]
