"""The ``ltc`` head's torch path: float64, CUDA, graph export, and float32 when numba is missing.

The same model as ``heads.ltc.model`` (its docstring has the math), arranged for speed in torch ops.
The sensory synapses of all steps are computed before the step loop, in cache-sized blocks. In the
loop, the activations of all synapses form one tensor (N_dest, B, N_src) (the source innermost, so
that every elementwise operand is contiguous there), and a single ``baddbmm`` against the stacked
weights [W * E; W] (N_dest, 2, N_src) gives both sums of every neuron and adds the leak and sensory
terms. The loop and the sensory synapses are autograd Functions with hand-written backward passes
that recompute the activations instead of storing them; ONNX export takes the plain loop, which
traces to ordinary operators. The tests hold this path to the head's ``reference_step``.

Shapes: B batch, T time (Tc a chunk of it), D input features, N neurons, H motor neurons.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# Steps run per call of the unfold loop hold about this many elements of (T, N, 2, B) terms: bounds
# the memory of long streams without grad. The sensory activations are made in blocks of about
# SENSORY_BLOCK elements (N, rows, D), small enough to stay in cache; larger blocks were slower.
CHUNK_ELEMENTS = 1 << 22
SENSORY_BLOCK = 1 << 18


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

    In blocks of about SENSORY_BLOCK elements of act (N, rows, D), which stay in cache. Each block
    gets a contiguous result: a strided ``out=`` sends bmm down a slow path.
    """
    rows = max(1, SENSORY_BLOCK // (weights.shape[0] * weights.shape[2]))
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
        rows = max(1, SENSORY_BLOCK // (weights.shape[0] * weights.shape[2]))
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


def constants(head) -> dict[str, Tensor]:
    """The head's parameters in the layouts this path wants, derived once per call (not per unfold)."""
    w = F.softplus(head.w) * head.sparsity_mask  # (Ns, Nd)
    sw = F.softplus(head.sensory_w) * head.sensory_sparsity_mask  # (D, N)
    gleak = F.softplus(head.gleak)
    return {
        # (Nd, 2, Ns): row 0 gives sum_i a_ij E_ij, row 1 sum_i a_ij, in one batched product.
        "weights": torch.stack([w * head.erev, w]).permute(2, 0, 1).contiguous(),
        # contiguous: the innermost dimension of an elementwise operand must not be strided
        "slope": head.sigma.t().contiguous().unsqueeze(1),  # (Nd, 1, Ns)
        "offset": -(head.sigma * head.mu).t().contiguous().unsqueeze(1),  # (Nd, 1, Ns)
        "sensory_weights": torch.stack([sw * head.sensory_erev, sw]).permute(2, 0, 1).contiguous(),
        "sensory_slope": head.sensory_sigma.t().contiguous().unsqueeze(1),  # (N, 1, D)
        "sensory_offset": -(head.sensory_sigma * head.sensory_mu).t().contiguous().unsqueeze(1),  # (N, 1, D)
        # (N, 2, 1): the leak's share of the numerator and of the denominator (with epsilon).
        "leak": torch.stack([gleak * head.vleak, gleak + head.epsilon], dim=1).unsqueeze(-1),
        # cm > 0 by softplus; the floor only guards an underflow, so dt = 0 never gives 0 / 0.
        "cm": F.softplus(head.cm).clamp_min(torch.finfo(head.cm.dtype).tiny),  # (N,)
    }


def _sensory(head, x: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Leak plus sensory terms of every step. x (B, Tc, D) -> (Tc, N, 2, B): [numerator, denominator]."""
    batch, steps, _ = x.shape
    xm = head.map_inputs(x).transpose(0, 1).reshape(steps * batch, -1)  # (M, D), rows (t, b)
    sensory = _Sensory.apply if torch.is_grad_enabled() else _sensory_terms
    terms = sensory(xm, p["leak"], p["sensory_weights"], p["sensory_slope"], p["sensory_offset"])
    return terms.view(head.units, 2, steps, batch).permute(2, 0, 1, 3).contiguous()


def run(head, x: Tensor, h: Tensor, state: Tensor, p: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The ODE in torch ops, in chunks of steps. x (B, T, D) raw inputs, h (B, T) = dt / K,
    state (B, N), p = ``constants(head)`` -> motor potentials (B, T, H), state (B, N)."""
    steps = x.shape[1]
    h_all = h.t().unsqueeze(-1)  # (T, B, 1)
    chunk = max(1, CHUNK_ELEMENTS // (2 * x.shape[0] * head.units))
    if torch.onnx.is_in_onnx_export():
        unfold = _unfold_plain
    else:
        unfold = _Unfold.apply if torch.is_grad_enabled() else _unfold_no_grad
    outputs = []
    for start in range(0, steps, chunk):
        base = _sensory(head, x[:, start : start + chunk], p)  # (Tc, N, 2, B)
        h_chunk = h_all[start : start + base.shape[0]]
        states = unfold(state, base, h_chunk, p["weights"], p["slope"], p["offset"], p["cm"], head.ode_unfolds)
        outputs.append(states[:, :, : head.out_features])  # (Tc, B, H)
        state = states[-1]
    outputs = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    return outputs.transpose(0, 1), state  # (T, B, H) -> (B, T, H)
