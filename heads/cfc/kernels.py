"""Fast paths of the cfc head: a whole-sequence kernel with a hand-written backward, and a lean step.

Running a CfC step by step under autograd records about a dozen small nodes per step; on a CPU
the bookkeeping costs more than the arithmetic. ``CfCSequence`` is one autograd node for the
whole sequence instead:

- the input half of the first Linear is one matrix product over all T steps;
- the step loop runs plain in-place tensor ops (TorchScript-compiled when available), writing
  what the backward needs into (T, B, .) buffers; for the default shape of head (one dense
  sub-cell, one backbone Linear, a gated mode, float32 on the CPU) the loops of both passes and
  the fold are compiled code instead (``heads.cfc.compiled``: the same products, fewer passes);
- the backward walks the steps in reverse in blocks: the local derivatives of a block are a few
  ops over its buffers, the walk itself only the recurrent chain (per step one multiply and one
  matrix product per Linear), the weight gradients one product per Linear per block;
- large scratch buffers are pooled across calls (fresh memory costs a page fault per 4 KiB).

Every tanh is evaluated as ``2 sigmoid(2 u) - 1`` (sigmoid is 2-3x cheaper than tanh on CPUs),
with the 2s, the LeCun constants (1.7159 tanh(0.666 u)) and the -1s folded into the weights by
``fold_cell`` (``unfold_cell_grads`` maps the gradients back): the backbone costs one sigmoid per
layer, the heads one sigmoid over [f1, f2, gate] (rows reordered to f1, f2, b, a so that the
gate's ``b + a t`` is formed in place).

Shapes: B batch, T time, D input features, N state size, n neurons of one sub-cell, O outputs of
a Linear. Parameters travel flat (``autograd.Function`` only tracks top-level tensors): per
sub-cell ``depth + 1`` (weight, bias) pairs (backbone Linears, then the heads) and in pure mode
``(w_tau, A)`` (folded: ``(|w_tau|, A)``); then with mixed memory the LSTM's (input weight, input
bias, recurrent weight). Dense heads have one sub-cell; wired heads one per wiring layer.
"""
from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

LECUN_IN = 0.666  # LeCun tanh: 1.7159 * tanh(0.666 u)
LECUN_OUT = 1.7159


@dataclass(frozen=True)
class Plan:
    """The static structure of a cfc head, all the kernels need besides tensors.

    Attributes:
        mode: "default", "no_gate" or "pure".
        sizes: neurons per sub-cell (one sub-cell when dense, one per wiring layer when wired).
        depth: backbone Linears per sub-cell (0 when wired).
        mixed: an LSTM cell runs in front of the CfC cells.
        out_size: the output is the first ``out_size`` neurons of the last sub-cell.
    """

    mode: str
    sizes: tuple[int, ...]
    depth: int
    mixed: bool
    out_size: int

    @property
    def units(self) -> int:
        return sum(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(sum(self.sizes[:k]) for k in range(len(self.sizes)))

    @property
    def mode_id(self) -> int:
        return MODE_IDS[self.mode]

    @property
    def per_cell(self) -> int:
        return 2 * (self.depth + 1) + (2 if self.mode == "pure" else 0)


def fold_cell(mode: str, raw: list[Tensor], mask: Tensor | None, dropout: bool) -> list[Tensor]:
    """Effective weights of one sub-cell from its parameters (no autograd; ``unfold_cell_grads``
    is the backward).

    raw: [W_0, b_0, ..., W_heads, b_heads] (+ [w_tau, A] in pure mode); mask: the wiring's 0/1
    mask of the heads weight, or None. Backbone layer j outputs ``a = sigmoid(1.332 u)``, so that
    ``tanh(0.666 u) = 2 a - 1``; the next Linear reads ``1.7159 (2 a - 1)``, folded into its weight
    and bias. With dropout the kernel feeds it ``mask (2 a - 1)`` instead (the -1 cannot be folded
    through a random mask).
    """
    depth = (len(raw) - (2 if mode == "pure" else 0)) // 2 - 1
    out: list[Tensor] = []
    for j in range(depth + 1):
        w, b = raw[2 * j], raw[2 * j + 1]
        if j == depth and mask is not None:
            w = w * mask
        if j:  # reads a backbone layer
            w, b = (w * LECUN_OUT, b) if dropout else (w * (2 * LECUN_OUT), b - LECUN_OUT * w.sum(1))
        if j < depth:
            w, b = w * (2 * LECUN_IN), b * (2 * LECUN_IN)
        elif mode != "pure":
            w, b = _reorder_heads(w), _reorder_heads(b)
        out += [w, b]
    if mode == "pure":
        out += [torch.abs(raw[-2]), raw[-1]]
    return out


def unfold_cell_grads(mode: str, raw: list[Tensor], mask: Tensor | None, dropout: bool,
                      grads: list[Tensor]) -> list[Tensor]:
    """Gradients for ``raw`` from the gradients of ``fold_cell``'s outputs (its backward)."""
    depth = (len(raw) - (2 if mode == "pure" else 0)) // 2 - 1
    out: list[Tensor] = []
    for j in range(depth + 1):
        dw, db = grads[2 * j], grads[2 * j + 1]
        if j < depth:
            dw, db = dw * (2 * LECUN_IN), db * (2 * LECUN_IN)
        elif mode != "pure":
            dw, db = _reorder_heads(dw), _reorder_heads(db)
        if j:
            dw = dw * LECUN_OUT if dropout else torch.sub(dw * (2 * LECUN_OUT), db.unsqueeze(1), alpha=LECUN_OUT)
        if j == depth and mask is not None:
            dw = dw * mask
        out += [dw, db]
    if mode == "pure":
        out += [grads[-2] * torch.sign(raw[-2]), grads[-1]]
    return out


def _reorder_heads(w: Tensor) -> Tensor:
    """Rows f1, f2, a, b -> 2 f1, 2 f2, b, a: tanh via sigmoid, the gate's b + a t formed in place.
    Its own transpose, so it also maps gradients back."""
    n = w.shape[0] // 4
    return torch.cat([w[: 2 * n] * 2.0, w[3 * n :], w[2 * n : 3 * n]])


def split_cells(plan: Plan, params) -> tuple[list, list]:
    """Flat parameters -> per sub-cell lists, and the LSTM's (possibly empty)."""
    k = plan.per_cell
    return [list(params[i * k : (i + 1) * k]) for i in range(len(plan.sizes))], list(params[len(plan.sizes) * k :])


def fold(plan: Plan, raw, masks: list, dropout: bool) -> list[Tensor]:
    """``fold_cell`` of every sub-cell; the LSTM's weights pass unchanged."""
    cells, lstm = split_cells(plan, raw)
    return [p for cell, mask in zip(cells, masks) for p in fold_cell(plan.mode, cell, mask, dropout)] + lstm


def unfold_grads(plan: Plan, raw, masks: list, dropout: bool, grads: list[Tensor]) -> list[Tensor]:
    cells, _ = split_cells(plan, raw)
    d_cells, d_lstm = split_cells(plan, grads)
    return [g for cell, mask, d in zip(cells, masks, d_cells)
            for g in unfold_cell_grads(plan.mode, cell, mask, dropout, d)] + d_lstm


def _consts(like: Tensor) -> tuple[Tensor, Tensor]:
    """0-dim -1 and 2 (tensor operands are cheaper than Python scalars in a tight loop)."""
    return like.new_tensor(-1.0), like.new_tensor(2.0)


# ---------------------------------------------------------------------------------------------
# The step loops. Written in the TorchScript subset and compiled on first use: the interpreter
# runs a loop of small ops about a quarter faster than Python. Without TorchScript (it is
# deprecated; PYTORCH_JIT=0) the same functions run as plain Python.
# mode: 0 default, 1 no_gate, 2 pure (``MODE_IDS``). ``extra``: [|w_tau|, A] in pure mode.
# ---------------------------------------------------------------------------------------------

MODE_IDS = {"default": 0, "no_gate": 1, "pure": 2}


def _update(mode: int, s: Tensor, t: Tensor, extra: List[Tensor], neg1: Tensor, two: Tensor,
            out: Optional[Tensor], s3: Optional[Tensor] = None) -> Tensor:
    """The closed-form update, in place on the effective heads output s (B, rows * n), t (B, 1)
    -> h (B, n), written into ``out`` when given. Leaves sig1, sig2, g, a in s (gated modes).
    s3, if given, is the view of the first 3n columns of s (one sigmoid call instead of three)."""
    if mode == 2:  # A - A exp(-t (|w_tau| + |s|)) s: the exponent is <= 0 for t >= 0, never inf
        es = torch.abs(s).add_(extra[0]).mul_(t).neg_().exp_().mul_(s)
        if out is None:
            return torch.addcmul(extra[1], extra[1], es, value=-1.0)
        return torch.addcmul(extra[1], extra[1], es, value=-1.0, out=out)
    # unsafe_chunk: views without view tracking (cheaper; no autograd here)
    sig1, sig2, gate, a = s.unsafe_chunk(4, 1)
    gate.addcmul_(a, t)                                  # b + a t
    if s3 is None:                                       # tanh(f) = 2 sigmoid(2 f) - 1
        sig1.sigmoid_()
        sig2.sigmoid_()
        gate.sigmoid_()
    else:
        s3.sigmoid_()
    if mode == 0:  # tanh(f1) (1 - g) + g tanh(f2) = 2 lerp(sig1, sig2, g) - 1
        lerp = torch.lerp(sig1, sig2, gate)
        if out is None:
            return torch.addcmul(neg1, lerp, two)
        return torch.addcmul(neg1, lerp, two, out=out)
    f1 = torch.addcmul(neg1, sig1, two)                  # no_gate: tanh(f1) + g tanh(f2)
    f2 = torch.addcmul(neg1, sig2, two)
    if out is None:
        return torch.addcmul(f1, gate, f2)
    return torch.addcmul(f1, gate, f2, out=out)


def _loop_single(pre0: Tensor, t_tm: Tensor, m_tm: Optional[Tensor], h0: Tensor, hs: Tensor, new: Tensor,
                 wh_t: Tensor, ws_t: List[Tensor], bs: List[Tensor], outs: List[Tensor], save: bool, mode: int,
                 extra: List[Tensor], neg1: Tensor, two: Tensor) -> None:
    """Forward steps of one dense sub-cell without LSTM or dropout (the common case).

    pre0 (T, B, O): input half of the first Linear, completed in place into its output (then
    activated); outs: the later Linears' outputs, (T, B, O) when ``save`` else one reused (1, B, O).
    new (T, B, n) receives each step's new state. With a mask, hs (T + 1, B, n) carries the state
    (hs[0] = h0); without, the state before step t is new[t - 1] (h0 at t = 0) and hs is unused.
    """
    # Per-step views made up front: one unbind is cheaper than an indexing op per step.
    pre = pre0.unbind(0)
    times = t_tm.unbind(0)
    news = new.unbind(0)
    carried = hs.unbind(0) if m_tm is not None else news
    masks = m_tm.unbind(0) if m_tm is not None else times
    later = [o.unbind(0) for o in outs]
    heads = outs[-1] if len(outs) > 0 else pre0
    n3 = 3 * (heads.shape[2] // 4)
    firsts = heads[:, :, :n3].unbind(0)                 # sig1, sig2, gate columns (gated modes)
    if save:  # the biases written once for all steps: then each step adds its product in place
        for j in range(len(outs)):
            outs[j].copy_(bs[j].expand_as(outs[j]))
    for t in range(pre0.shape[0]):
        i = t if save else 0
        if m_tm is not None:
            prev = carried[t]
        elif t == 0:
            prev = h0
        else:
            prev = news[t - 1]
        z = pre[t].addmm_(prev, wh_t)
        for j in range(len(ws_t)):
            if save:
                z = later[j][i].addmm_(z.sigmoid_(), ws_t[j])
            else:
                z = torch.addmm(bs[j], z.sigmoid_(), ws_t[j], out=later[j][i])
        s3: Optional[Tensor] = None
        if mode != 2:
            s3 = firsts[i] if len(outs) > 0 else firsts[t]
        _update(mode, z, times[t], extra, neg1, two, news[t], s3)
        if m_tm is not None:
            torch.where(masks[t], news[t], carried[t], out=carried[t + 1])


def _backward_single(d_new_all: Tensor, coef: Tensor, ds: Tensor, d_acts: List[Tensor], slopes: List[Tensor],
                     ws: List[Tensor], first_h: Tensor, m_f: Optional[Tensor], gh: Tensor) -> Tensor:
    """Reverse walk of ``_loop_single``: only the recurrent chain. Returns d h0 (B, n).

    d_new_all (T, B, n): output gradient in, d (new state) of every step out. coef (T, B, rows, n):
    local derivatives of the update, ds = dh * coef; ds (T, B, rows, n) receives d heads
    pre-activation; d_acts[j] (T, B, O) d backbone pre-activation j, slopes[j] its activation's
    derivative; ws[j] the weight of Linear j + 1 (O_out, O_in).
    """
    d_s = gh
    T = d_new_all.shape[0]
    d_news, coefs, dss = d_new_all.unbind(0), coef.unbind(0), ds.unbind(0)
    d_acts_l = [d.unbind(0) for d in d_acts]
    slopes_l = [sl.unbind(0) for sl in slopes]
    if m_f is None:  # each step adds its d (previous state) straight into the previous step's d
        d_new_all[T - 1].add_(gh)
        d_news_b = d_new_all.unsqueeze(2).unbind(0)     # (B, 1, n): broadcast over the rows
        dss_flat = ds.flatten(2).unbind(0)
        for r in range(T):
            t = T - 1 - r
            torch.mul(coefs[t], d_news_b[t], out=dss[t])
            dz = dss_flat[t]
            for jj in range(len(ws)):
                j = len(ws) - 1 - jj
                dz = torch.mm(dz, ws[j], out=d_acts_l[j][t]).mul_(slopes_l[j][t])
            if t > 0:
                d_news[t - 1].addmm_(dz, first_h)
            else:
                d_s = torch.mm(dz, first_h)
        return d_s
    masks = m_f.unbind(0)
    for r in range(T):
        t = T - 1 - r
        d_new = d_news[t]
        d_new.addcmul_(d_s, masks[t])
        dz = torch.mul(coefs[t], d_new.unsqueeze(1), out=dss[t]).flatten(1)
        for jj in range(len(ws)):
            j = len(ws) - 1 - jj
            dz = torch.mul(torch.mm(dz, ws[j]), slopes_l[j][t], out=d_acts_l[j][t])
        d_s = torch.addcmul(torch.mm(dz, first_h), d_s, 1.0 - masks[t])  # masked step: straight through
    return d_s


def _step_single(x: Tensor, t: Tensor, h: Tensor, wx_t: Tensor, wh_t: Tensor, b0: Tensor, ws_t: List[Tensor],
                 bs: List[Tensor], mode: int, extra: List[Tensor], neg1: Tensor, two: Tensor) -> Tensor:
    """One step of one sub-cell: x (B, I), t (B, 1), h (B, n) -> new h (B, n)."""
    z = torch.addmm(b0, x, wx_t).addmm_(h, wh_t)
    for j in range(len(ws_t)):
        z = torch.addmm(bs[j], z.sigmoid_(), ws_t[j])
    return _update(mode, z, t, extra, neg1, two, None)


class _Compiled:
    """``fn`` compiled with TorchScript on first call, or ``fn`` itself where that fails."""

    def __init__(self, fn):
        self.python, self._fn = fn, None

    def __call__(self, *args):
        if self._fn is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.jit.script is deprecated
                    self._fn = torch.jit.script(self.python)
            except Exception:  # noqa: BLE001 - any failure: run as Python, same results
                self._fn = self.python
        return self._fn(*args)


loop_single = _Compiled(_loop_single)
backward_single = _Compiled(_backward_single)
# Called from Python loops, a few ops each: entering TorchScript costs more than it saves there.
step_single, update = _step_single, _update


# ---------------------------------------------------------------------------------------------
# Local derivatives of the update, for all steps at once (backward): from the saved heads output
# S (T, B, rows * n) and t (T, B, 1): C (T, B, rows, n) with ds = dh * C, ct (T, B, n) with
# d t = sum(dh * ct), and per mode parameter a term (T, B, n): d param = sum_T,B (dh * term).
# ---------------------------------------------------------------------------------------------


def _gate_coefficients(S: Tensor, t: Tensor, extra: tuple, gated: bool, need_dt: bool, out: Tensor | None = None):
    n = S.shape[-1] // 4
    sig1, sig2, g, a = S.unflatten(-1, (4, -1)).unbind(2)
    C = torch.empty_like(S) if out is None else out
    sg, q = S[..., : 3 * n], C[..., : 3 * n]
    torch.addcmul(sg, sg, sg, value=-1.0, out=q).mul_(2.0)  # 2 sigmoid'(.) of sig1, sig2, g
    C = C.unflatten(-1, (4, -1))
    if gated:  # h = 2 lerp(sig1, sig2, g) - 1
        C[:, :, 0].addcmul_(C[:, :, 0], g, value=-1.0)
        C[:, :, 1].mul_(g)
        C[:, :, 2].mul_(sig2 - sig1)
    else:      # h = (2 sig1 - 1) + g (2 sig2 - 1)
        C[:, :, 1].mul_(g)
        C[:, :, 2].addcmul_(C[:, :, 2], sig2, value=-2.0).mul_(-0.5)
    torch.mul(C[:, :, 2], t, out=C[:, :, 3])                # pre-activation of g is b + a t
    return C, (C[:, :, 2] * a if need_dt else None), []


def _pure_coefficients(S: Tensor, t: Tensor, extra: tuple, need_dt: bool, out: Tensor | None = None):
    w_abs, amplitude = extra
    k = torch.abs(S) + w_abs
    e = torch.exp(-(t * k))
    es = e * S
    C = torch.mul(amplitude * e, t * torch.abs(S) - 1.0, out=out)  # dh/ds = -A e (1 - t |s|)
    a_es = amplitude * es
    # dt: A k e s;  |w_tau|: A t e s;  A: 1 - e s
    return C.unsqueeze(2), (a_es * k if need_dt else None), [a_es * t, 1.0 - es]


_COEFFICIENTS = {
    "default": lambda S, t, extra, need_dt, out=None: _gate_coefficients(S, t, extra, True, need_dt, out),
    "no_gate": lambda S, t, extra, need_dt, out=None: _gate_coefficients(S, t, extra, False, need_dt, out),
    "pure": _pure_coefficients,
}


class _BufferPool(threading.local):
    """Large scratch buffers kept for the next call (one pool per thread).

    Fresh memory from the OS costs a page fault per 4 KiB on first touch; the buffers of one
    training step (a few MiB) would otherwise be faulted in again on every call. Buffers return
    to the pool when their call is done with them: at the end of a call without autograd, and
    when the autograd graph that saved them is freed. At most ``limit`` bytes are kept.
    """

    limit = 64 << 20

    def __init__(self):
        self.free: dict[tuple, list[Tensor]] = {}
        self.size = 0

    def take(self, like: Tensor, *shape: int) -> Tensor:
        """An uninitialised tensor of ``shape`` with ``like``'s dtype and device."""
        stack = self.free.get((shape, like.dtype, like.device, torch.is_inference_mode_enabled()))
        if stack:
            buf = stack.pop()
            self.size -= buf.nbytes
            return buf
        return like.new_empty(shape)

    def give(self, *buffers: Tensor) -> None:
        for buf in buffers:
            if self.size + buf.nbytes <= self.limit:
                key = (tuple(buf.shape), buf.dtype, buf.device, buf.is_inference())
                self.free.setdefault(key, []).append(buf)
                self.size += buf.nbytes


POOL = _BufferPool()


# ---------------------------------------------------------------------------------------------
# Forward-ready weights: transposed views (in, out) of the folded weights. A copy to contiguous
# (in, out) costs more than it saves: MKL reads a transposed operand as fast in these products.
# ---------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Per sub-cell: the first Linear as input part (I, O), state part (n, O) and bias; the later
    Linears as lists of W^T and b; the mode extras. The LSTM as (W_in^T, b_in + forget 1, W_rec^T).
    The constants -1 and 2."""

    first: list[tuple[Tensor, Tensor, Tensor]]
    ws_t: list[list[Tensor]]
    bs: list[list[Tensor]]
    extra: list[list[Tensor]]
    lstm: tuple[Tensor, Tensor, Tensor] | None
    consts: tuple[Tensor, Tensor]
    compiled: tuple | None = None  # heads.cfc.streaming's arguments, set by CfC where it applies


def prepare(plan: Plan, params, in_features: int) -> Prepared:
    """Split the effective weights into transposed views (no autograd)."""
    first, ws_t, bs, extra, i = [], [], [], [], 0
    ins = (in_features,) + plan.sizes[:-1]
    for k in range(len(plan.sizes)):
        w, b = params[i], params[i + 1]
        first.append((w[:, : ins[k]].t(), w[:, ins[k] :].t(), b))
        ws_t.append([params[i + 2 * j].t() for j in range(1, plan.depth + 1)])
        bs.append([params[i + 2 * j + 1] for j in range(1, plan.depth + 1)])
        extra.append(list(params[i + 2 * (plan.depth + 1) : i + plan.per_cell]))
        i += plan.per_cell
    lstm = None
    if plan.mixed:
        w_in, b_in, w_rec = params[i : i + 3]
        n = plan.units
        b_in = b_in.clone()
        b_in[2 * n : 3 * n] += 1.0                             # ncps adds 1 to the forget gate
        lstm = (w_in.t().contiguous(), b_in, w_rec.t().contiguous())
    return Prepared(first, ws_t, bs, extra, lstm, _consts(params[0]))


def _lstm_step(z: Tensor, c_prev: Tensor, n: int) -> tuple[Tensor, Tensor, tuple]:
    """z (B, 4n) = gates pre-activation (input, input gate, forget gate, output gate)."""
    ti = torch.tanh(z[:, :n])
    sg = torch.sigmoid(z[:, n:])
    c = torch.addcmul(c_prev * sg[:, n : 2 * n], ti, sg[:, :n])
    tc = torch.tanh(c)
    return tc * sg[:, 2 * n :], c, (ti, sg, tc)


def run_step(plan: Plan, prep: Prepared, x: Tensor, t: Tensor, h: Tensor, c: Tensor | None):
    """One step without autograd: x (B, D), t (B, 1), h (B, N), c (B, N) or None -> y, h, c."""
    neg1, two = prep.consts
    if plan.mixed:
        w_in_t, b_in, w_rec_t = prep.lstm
        h, c, _ = _lstm_step(torch.addmm(b_in, x, w_in_t).addmm_(h, w_rec_t), c, plan.units)
    if len(plan.sizes) == 1:
        wx_t, wh_t, b0 = prep.first[0]
        h_new = step_single(x, t, h, wx_t, wh_t, b0, prep.ws_t[0], prep.bs[0], plan.mode_id, prep.extra[0], neg1, two)
        return (h_new if plan.out_size == plan.units else h_new[:, : plan.out_size]), h_new, c
    inp, news = x, []
    for k, hk in enumerate(h.unsafe_split_with_sizes(plan.sizes, 1)):
        wx_t, wh_t, b0 = prep.first[k]
        inp = step_single(inp, t, hk, wx_t, wh_t, b0, prep.ws_t[k], prep.bs[k], plan.mode_id, prep.extra[k], neg1, two)
        news.append(inp)
    return inp[:, : plan.out_size], torch.cat(news, 1), c


def run_forward(plan: Plan, prep: Prepared, x: Tensor, dt: Tensor, mask: Tensor | None, h0: Tensor,
                c0: Tensor | None, drops, save: bool):
    """The step loop without autograd.

    Args:
        x: (B, T, D) inputs; dt: (B, T) normalised elapsed times; mask: (B, T) bool or None.
        h0: (B, N) state; c0: (B, N) LSTM cell or None.
        drops: per sub-cell, per backbone layer, (2 m, -m) with m the (T, B, O) dropout multiplier
            (0 or 1 / (1 - p)), or None.
        save: keep what ``run_backward`` needs.

    Returns:
        y (B, T, out_size), h (B, N), c (B, N) or None, cache (dict, empty unless ``save``).
    """
    B, T, D = x.shape
    N, sizes, offsets = plan.units, plan.sizes, plan.offsets
    take = POOL.take
    x_tm = take(x, T, B, D)
    x_tm.copy_(x.transpose(0, 1))
    x_tm = x_tm.view(T * B, D)                            # (T*B, D), time-major rows
    t_tm = dt.t().unsqueeze(-1)                           # (T, B, 1)
    m_tm = None if mask is None else mask.t().unsqueeze(-1)
    lean = len(sizes) == 1 and not plan.mixed and drops is None
    direct = lean and m_tm is None and plan.out_size == N
    if direct:  # the steps write straight into the returned y (B, T, N): no copy, no state history
        y = x.new_empty(B, T, N)
        hs, new = None, y.transpose(0, 1)
    else:
        hs = take(x, T + 1, B, N)                         # state before each step, and the last
        hs[0] = h0
        new = hs[1:] if m_tm is None else take(x, T, B, N)   # unmasked new state of each step
    wx_t, wh_t, b0 = prep.first[0]
    pre0 = take(x, T, B, wx_t.shape[1])                   # (T, B, O): input half of all steps
    torch.addmm(b0, x_tm, wx_t, out=pre0.view(T * B, -1))
    # Every Linear's output after its activation (the heads': sig1, sig2, g, a after the update,
    # or the raw f1 in pure mode), per sub-cell: (T, B, O) when saving, else one reused (1, B, O).
    steps = T if save else 1
    outs = [[pre0 if k == 0 else take(x, steps, B, prep.first[k][1].shape[1])]
            + [take(x, steps, B, w_t.shape[1]) for w_t in prep.ws_t[k]] for k in range(len(sizes))]
    if direct and compiled.loops_apply(plan, x):  # the same steps as one compiled call
        compiled.forward_loop(pre0, dt, h0, y, wh_t.t(), prep.ws_t[0][0].t(), prep.bs[0][0], outs[0][1],
                              plan.mode == "default")
        cache = dict(lstm=[], cs=None, h_in=None)
    elif lean:
        loop_single(pre0, t_tm, m_tm, h0, h0 if hs is None else hs, new, wh_t, prep.ws_t[0], prep.bs[0],
                    outs[0][1:], save, plan.mode_id, prep.extra[0], *prep.consts)
        cache = dict(lstm=[], cs=None, h_in=None)
    else:
        cache = _loop_general(plan, prep, x_tm, t_tm, m_tm, hs, new, outs, c0, drops, save)
    if direct:
        h = new[T - 1].clone()
    else:
        last = offsets[-1]
        y = new[:, :, last : last + plan.out_size]
        y = (y * m_tm if m_tm is not None else y).transpose(0, 1).contiguous()
        h = hs[T].clone()
    c = cache["cs"][T].clone() if plan.mixed else None
    pooled = [x_tm, *[o for cell in outs for o in cell]] + ([] if hs is None else [hs])
    pooled += [new] if m_tm is not None else []
    if not save:
        POOL.give(*pooled)
        return y, h, c, {}
    cache.update(x_tm=x_tm, t_tm=t_tm, m_tm=m_tm, hs=hs, h0=h0, new=new, outs=outs, pooled=pooled, direct=direct)
    return y, h, c, cache


def _loop_general(plan, prep, x_tm, t_tm, m_tm, hs, new, outs, c0, drops, save) -> dict:
    """Any number of sub-cells, LSTM, dropout: the same steps, with Python bookkeeping."""
    T, B, N = hs.shape[0] - 1, hs.shape[1], plan.units
    sizes, offsets, single = plan.sizes, plan.offsets, len(plan.sizes) == 1
    neg1, two = prep.consts
    wh_t = prep.first[0][1]
    if plan.mixed:
        w_in_t, b_in, w_rec_t = prep.lstm
        pre_lstm = torch.addmm(b_in, x_tm, w_in_t).view(T, B, 4 * N)
        cs = hs.new_empty(T + 1, B, N)
        cs[0] = c0
        h_in_buf = hs.new_empty(T, B, N) if save else None
    saved_lstm = []
    for t in range(T):
        i = t if save else 0
        if plan.mixed:
            h_in, c, lstm_saved = _lstm_step(torch.addmm(pre_lstm[t], hs[t], w_rec_t), cs[t], N)
            if save:
                h_in_buf[t] = h_in
                saved_lstm.append(lstm_saved)
            cs[t + 1] = c if m_tm is None else torch.where(m_tm[t], c, cs[t])
        else:
            h_in = hs[t]
        parts = (h_in,) if single else h_in.unsafe_split_with_sizes(sizes, 1)
        inp = None
        for k, hk in enumerate(parts):
            if k == 0:
                z = outs[0][0][t].addmm_(hk, wh_t)
            else:
                kx_t, kh_t, kb = prep.first[k]
                z = torch.addmm(kb, inp, kx_t, out=outs[k][0][i]).addmm_(hk, kh_t)
            for j, (w_t, b) in enumerate(zip(prep.ws_t[k], prep.bs[k])):
                a = z.sigmoid_()
                if drops is not None:
                    scale, shift = drops[k][j]
                    a = torch.addcmul(shift[t], scale[t], a)  # mask * (2 a - 1)
                z = torch.addmm(b, a, w_t, out=outs[k][j + 1][i])
            dest = new[t] if single else new[t, :, offsets[k] : offsets[k] + sizes[k]]
            inp = update(plan.mode_id, z, t_tm[t], prep.extra[k], neg1, two, dest)
        if m_tm is not None:
            torch.where(m_tm[t], new[t], hs[t], out=hs[t + 1])
    return dict(lstm=saved_lstm, cs=cs if plan.mixed else None, h_in=h_in_buf if plan.mixed else None)


def run_backward(plan: Plan, cache: dict, params, drops, gy: Tensor, gh: Tensor, gc: Tensor | None,
                 need_dt: bool, need_x: bool):
    """Gradients of ``run_forward``: gy (B, T, out), gh (B, N), gc (B, N) or None.

    Returns:
        dx (B, T, D) or None, ddt (B, T) or None, dh0 (B, N), dc0 (B, N) or None, d params.
    """
    if len(plan.sizes) == 1 and not plan.mixed and drops is None:
        return _backward_dense(plan, cache, params, gy, gh, need_dt, need_x)
    t_tm, m_tm, outs = cache["t_tm"], cache["m_tm"], cache["outs"]
    T, B = t_tm.shape[:2]
    D = cache["x_tm"].shape[1]
    N, sizes, offsets, depth = plan.units, plan.sizes, plan.offsets, plan.depth
    single = len(sizes) == 1
    cells, i = [], 0
    for _ in sizes:
        cells.append((params[i : i + 2 * (depth + 1) : 2], params[i + 2 * (depth + 1) : i + plan.per_cell]))
        i += plan.per_cell
    ins = (D,) + sizes[:-1]
    first_h = [ws[0][:, ins[k] :].contiguous() for k, (ws, _) in enumerate(cells)]  # (O, n)
    first_x = [ws[0][:, : ins[k]].contiguous() for k, (ws, _) in enumerate(cells)]  # (O, I)
    # Local derivatives of all steps at once.
    coefficients = [_COEFFICIENTS[plan.mode](outs[k][-1], t_tm, extra, need_dt)
                    for k, (_, extra) in enumerate(cells)]
    slopes = []                                          # d backbone output / d its pre-activation
    for k in range(len(sizes)):
        per_layer = []
        for j in range(depth):
            a = outs[k][j]
            slope = torch.addcmul(a, a, a, value=-1.0)   # sigmoid'
            if drops is not None:
                slope *= drops[k][j][0]
            per_layer.append(slope)
        slopes.append(per_layer)
    # d_new_all[t]: d (unmasked new state of step t); seeded with the output gradient.
    last = offsets[-1]
    g_tm = gy.transpose(0, 1)
    m_f = None if m_tm is None else m_tm.to(gy.dtype)
    if plan.out_size == N:
        d_new_all = g_tm.clone(memory_format=torch.contiguous_format) if m_f is None else g_tm * m_f
    else:
        d_new_all = gy.new_zeros(T, B, N)
        d_new_all[:, :, last : last + plan.out_size] = g_tm if m_f is None else g_tm * m_f
    d_out = [[torch.empty_like(o) for o in outs[k]] for k in range(len(sizes))]  # d pre-activations
    keep_f = None if m_f is None else 1.0 - m_f
    if plan.mixed:
        w_rec = params[i + 2]
        d_lstm = gy.new_empty(T, B, 4 * N)
        d_c = gc.clone()
    d_s = gh                                               # d state after step t
    for t in range(T - 1, -1, -1):
        d_new = d_new_all[t]
        if m_f is None:
            d_new += d_s
        else:
            d_new.addcmul_(d_s, m_f[t])
        d_in = None if single else gy.new_empty(B, N)      # d (state fed to the cells)
        for k in range(len(sizes) - 1, -1, -1):
            ws, n, off = cells[k][0], sizes[k], offsets[k]
            dh = d_new if single else d_new[:, off : off + n]
            C = coefficients[k][0][t]                      # (B, rows, n)
            dz = d_out[k][-1][t]
            torch.mul(C, dh.unsqueeze(1), out=dz.view(C.shape))
            for j in range(depth - 1, -1, -1):
                dz = torch.mul(torch.mm(dz, ws[j + 1]), slopes[k][j][t], out=d_out[k][j][t])
            d_hk = torch.mm(dz, first_h[k])
            if k:
                prev = offsets[k - 1]
                d_new[:, prev : prev + sizes[k - 1]] += torch.mm(dz, first_x[k])
            if single:
                d_in = d_hk
            else:
                d_in[:, off : off + n] = d_hk
        if plan.mixed:
            d_in, d_c = _lstm_backward(cache, t, d_in, d_c, None if m_f is None else m_f[t], d_lstm[t], N)
            d_prev = torch.mm(d_lstm[t], w_rec)
        else:
            d_prev = d_in
        d_s = d_prev if keep_f is None else torch.addcmul(d_prev, d_s, keep_f[t])
    return _finish(plan, cache, cells, first_x, drops, d_out, d_new_all, coefficients, d_s,
                   d_lstm if plan.mixed else None, d_c if plan.mixed else None, params[i : i + 3], need_dt, need_x)


_BLOCK_ROWS = 1024  # steps * batch rows per backward block: big enough for efficient matrix products


def _backward_dense(plan: Plan, cache: dict, params, gy: Tensor, gh: Tensor, need_dt: bool, need_x: bool):
    """``run_backward`` for one dense sub-cell without LSTM or dropout, in blocks of steps.

    Walking the steps backwards block by block, with the local derivatives, the per-step
    gradients and the weight-gradient products of one block at a time, keeps the working set in
    cache and the buffers small and reused (fresh memory costs page faults on every call).
    """
    t_tm, m_tm, hs, outs, x_tm = cache["t_tm"], cache["m_tm"], cache["hs"], cache["outs"], cache["x_tm"]
    T, B = t_tm.shape[:2]
    D, n, depth = x_tm.shape[1], plan.units, plan.depth
    x_rows = x_tm.view(T, B, D)
    (cell, extra), = [(params[: 2 * (depth + 1)], params[2 * (depth + 1) : plan.per_cell])]
    ws = cell[0::2]
    first_h = ws[0][:, D:].contiguous()                  # (O, n)
    grads = [torch.zeros_like(p) for p in params[: plan.per_cell]]
    d_w0 = grads[0]
    d_x = x_tm.new_empty(T, B, D) if need_x else None
    d_t = t_tm.new_empty(T, B) if need_dt else None
    m_f = None if m_tm is None else m_tm.to(gy.dtype)
    g_tm = gy.transpose(0, 1) if m_f is None else gy.transpose(0, 1) * m_f
    d_new_all = POOL.take(gy, T, B, n)                   # (T, B, n), seeded with d y
    if plan.out_size == n:
        d_new_all.copy_(g_tm)
    else:
        d_new_all.zero_()[:, :, : plan.out_size] = g_tm
    steps = max(1, _BLOCK_ROWS // B)
    # Per-block buffers, reused: d of every Linear's output, the activations' slopes.
    d_out = [POOL.take(gy, steps, B, o.shape[2]) for o in outs[0]]
    # The compiled walk computes the local derivatives and slopes on the way (and d dt).
    walk = m_f is None and compiled.loops_apply(plan, gy)
    slope_bufs = [] if walk else [POOL.take(gy, steps, B, o.shape[2]) for o in outs[0][:-1]]
    coef_buf = None if walk else POOL.take(gy, steps, B, outs[0][-1].shape[2])
    d_s = gh
    for stop in range(T, 0, -steps):
        blk = slice(max(0, stop - steps), stop)
        L = stop - blk.start
        outs_b = [o[blk] for o in outs[0]]
        d_b = [d[:L] for d in d_out]
        dh = d_new_all[blk]
        if walk:
            terms = []
            d_s = compiled.backward_loop(outs_b[-1], outs_b[0], t_tm[:, :, 0].t(), blk.start, dh, d_b[-1], d_b[0], ws[1],
                                         first_h, d_s, d_t, plan.mode == "default")
        else:
            C, ct, terms = _COEFFICIENTS[plan.mode](outs_b[-1], t_tm[blk], extra, need_dt, coef_buf[:L])
            slopes = [torch.addcmul(a, a, a, value=-1.0, out=buf[:L]) for a, buf in zip(outs_b[:-1], slope_bufs)]
            d_s = backward_single(dh, C, d_b[-1].view(C.shape), d_b[:-1], slopes, list(ws[1:]), first_h,
                                  None if m_f is None else m_f[blk], d_s)
        rows = L * B
        first = d_b[0].view(rows, -1)
        first_t = first.t()
        d_w0[:, :D].addmm_(first_t, x_rows[blk].reshape(rows, D))
        if hs is not None:
            prev = hs[blk]
        elif blk.start:
            prev = cache["new"][blk.start - 1 : stop - 1]
        else:
            prev = torch.cat([cache["h0"].unsqueeze(0), cache["new"][: stop - 1]])
        d_w0[:, D:].addmm_(first_t, prev.reshape(rows, n))
        grads[1] += first.sum(0)
        for j in range(depth):
            d = d_b[j + 1].view(rows, -1)
            grads[2 * j + 2].addmm_(d.t(), outs_b[j].reshape(rows, -1))
            grads[2 * j + 3] += d.sum(0)
        for g, term in zip(grads[2 * (depth + 1) :], terms):
            g += (dh * term).sum((0, 1))
        if need_x:
            torch.mm(first, ws[0][:, :D], out=d_x[blk].view(rows, D))
        if need_dt and not walk:
            torch.sum(dh * ct, -1, out=d_t[blk])
    POOL.give(d_new_all, *d_out, *slope_bufs, *([] if walk else [coef_buf]))
    return (None if d_x is None else d_x.transpose(0, 1)), (None if d_t is None else d_t.t()), d_s, None, grads


def _lstm_backward(cache, t, d_h, d_c, m, dz, N):
    """One LSTM step back: writes d gates pre-activation into dz (B, 4N); returns (0, d c_prev)."""
    ti, sg, tc = cache["lstm"][t]
    s_i, s_f, s_o = sg[:, :N], sg[:, N : 2 * N], sg[:, 2 * N :]
    d_c_new = d_c if m is None else d_c * m
    u = d_h * s_o
    dc = torch.addcmul(u, u * tc, tc, value=-1.0).add_(d_c_new)   # through tanh(c)
    u = dc * s_i
    torch.addcmul(u, u * ti, ti, value=-1.0, out=dz[:, :N])
    torch.mul(dc, ti, out=dz[:, N : 2 * N])
    torch.mul(dc, cache["cs"][t], out=dz[:, 2 * N : 3 * N])
    torch.mul(d_h, tc, out=dz[:, 3 * N :])
    dz[:, N:].mul_(torch.addcmul(sg, sg, sg, value=-1.0))        # through the sigmoids
    d_c = dc * s_f if m is None else torch.addcmul(d_c - d_c_new, dc, s_f)
    return None, d_c


def _finish(plan, cache, cells, first_x, drops, d_out, d_new_all, coefficients, d_s, d_lstm, d_c, lstm,
            need_dt, need_x):
    """Weight gradients (one product over all T * B rows each), the mode and input gradients."""
    x_tm, hs, new, outs = cache["x_tm"], cache["hs"], cache["new"], cache["outs"]
    T, B = cache["t_tm"].shape[:2]
    h_in_all = cache["h_in"] if plan.mixed else hs[:T]

    def rows(tensor: Tensor) -> Tensor:
        return tensor.reshape(T * B, tensor.shape[-1])

    grads: list[Tensor] = []
    dx, ddt = None, None
    for k, (n, off) in enumerate(zip(plan.sizes, plan.offsets)):
        first = rows(d_out[k][0])                                       # (T*B, O)
        if k == 0:
            inputs = x_tm
        else:
            prev_off, prev = plan.offsets[k - 1], plan.sizes[k - 1]
            inputs = rows(new[:, :, prev_off : prev_off + prev])
        first_t = first.t()
        grads += [torch.cat([first_t @ inputs, first_t @ rows(h_in_all[:, :, off : off + n])], 1), first.sum(0)]
        if k == 0 and need_x:
            dx = first @ first_x[0]
        for j in range(plan.depth):
            a = outs[k][j]
            if drops is not None:
                scale, shift = drops[k][j]
                a = torch.addcmul(shift, scale, a)
            d = rows(d_out[k][j + 1])
            grads += [d.t() @ rows(a), d.sum(0)]
        dh = d_new_all[:, :, off : off + n]                             # (T, B, n)
        _, ct, terms = coefficients[k]
        grads += [(dh * term).sum((0, 1)) for term in terms]
        if need_dt:
            part = (dh * ct).sum(-1)
            ddt = part if ddt is None else ddt + part
    if d_lstm is not None:
        d_l = rows(d_lstm)
        grads += [d_l.t() @ x_tm, d_l.sum(0), d_l.t() @ rows(hs[:T])]
        if need_x:
            dx = dx + d_l @ lstm[0]
    if dx is not None:
        dx = dx.view(T, B, -1).transpose(0, 1)
    return dx, (ddt.t() if ddt is not None else None), d_s, d_c, grads


class CfCSequence(torch.autograd.Function):
    """Autograd wrapper: ``apply(plan, drops, masks, x, dt, mask, h0, c0, *raw) -> (y, h[, c])``.

    raw: the module's parameters (``split_cells`` layout); masks: per sub-cell, the wiring mask of
    its heads weight or None. Folding happens inside, so autograd records one node in all.
    """

    @staticmethod
    def forward(ctx, plan, drops, masks, x, dt, mask, h0, c0, *raw):
        ctx.compiled_fold = compiled.applies(plan, masks, raw)  # one compiled pass per Linear, both ways
        if ctx.compiled_fold:
            params, prep = compiled.fold_prepare(plan, raw, drops is not None, x.shape[-1])
        else:
            params = fold(plan, raw, masks, drops is not None)
            prep = prepare(plan, params, x.shape[-1])
        y, h, c, cache = run_forward(plan, prep, x, dt, mask, h0, c0, drops, save=True)
        ctx.plan, ctx.drops, ctx.masks, ctx.cache, ctx.params = plan, drops, masks, cache, params
        # y doubles as the state history on the direct path: save it, so that autograd refuses
        # a backward after y was modified in place (and never keep a view of an output on ctx:
        # the output -> graph -> ctx -> output cycle would never be freed).
        if cache["direct"]:
            cache["new"] = None
        ctx.save_for_backward(*raw, *([y] if cache["direct"] else []))
        weakref.finalize(ctx, POOL.give, *cache.pop("pooled"))  # when the graph is freed
        return (y, h, c) if plan.mixed else (y, h)

    @staticmethod
    def backward(ctx, gy, gh, gc=None):
        raw, cache = ctx.saved_tensors, ctx.cache
        if cache["direct"]:
            *raw, y = raw
            cache = dict(cache, new=y.transpose(0, 1))  # a local view: ctx must not hold one
        dx, ddt, dh0, dc0, grads = run_backward(ctx.plan, cache, ctx.params, ctx.drops, gy, gh, gc,
                                                need_dt=ctx.needs_input_grad[4], need_x=ctx.needs_input_grad[3])
        if ctx.compiled_fold:
            grads = compiled.unfold(ctx.plan, raw, ctx.drops is not None, grads)
        else:
            grads = unfold_grads(ctx.plan, raw, ctx.masks, ctx.drops is not None, grads)
        return (None, None, None, dx, ddt, None, dh0, dc0, *grads)


# The compiled fold reads this module's rules and types: imported once both exist.
from heads.cfc import compiled  # noqa: E402
