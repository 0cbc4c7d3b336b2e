"""Compiled (numba) parts of the cfc head's training kernel (``heads.cfc.kernels``).

A training step at B=32 T=32 is a few hundred small torch ops: two matrix products per step in
each pass, with five element-wise ops between them in the forward and two in the backward, plus
a dozen ops per Linear to fold the weights and to map the gradients back. Each op pays dispatch
and a pass over memory. Here:

- ``fold_prepare`` / ``unfold``: the fold of one Linear is one call that reads its weight once
  (``kernels.fold`` + ``kernels.prepare`` and ``kernels.unfold_grads`` for one dense sub-cell);
- ``forward_loop`` / ``backward_loop``: the step loops of the default shape of head (one dense
  sub-cell, one backbone Linear, mode default or no_gate, no padding mask) as one call per pass.
  The matrix products are MKL's ``sgemm``, the routine torch's own CPU products call, found in
  torch's library; all between two products is one fused pass, and the backward computes the
  update's local derivatives and the sigmoid slopes on the way instead of in passes of their own.
  The sigmoids are ``heads.cfc.streaming``'s (within about 2e-7 of torch's).

Measured at B=32 T=32 D=64 H=64 on 2 threads (in one process, alternating, median of the
per-round ratios): the fold alone saves about 2 % of the step, fold and loops together about 13 %.

Every fold of one Linear is, per output row o reading raw row r = rows[o]:

    W'[o, :] = w_scale[o] W[r, :]
    b'[o]    = b_scale[o] (b[r] - shift sum_i W[r, i])

(``shift`` is the LeCun 1.7159 where the Linear reads a backbone layer's ``2 a - 1``, else 0), and
its gradient map is

    dW[r, :] = w_scale[o] dW'[o, :] - shift b_scale[o] db'[o]
    db[r]    = b_scale[o] db'[o].

``linear_scales`` derives (rows, w_scale, b_scale, shift) per Linear from the rules of
``kernels.fold_cell``. Results equal the torch ops' to float32 rounding (another summation order);
the tests hold them to the torch ops and to the float64 math. Float32 CPU only, never while
tracing or compiling (a numba call would be missing from the graph); without numba, or where
torch has no MKL (ARM, macOS), the torch ops serve. The first call compiles (about 10 s, then
cached on disk).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from heads.cfc import kernels
from heads.cfc.streaming import _ONE, _TWO, _sigmoids

from heads._numba import jit as _jit, numba  # without numba: the torch ops of heads.cfc.kernels serve


def available() -> bool:
    return numba is not None


@_jit(cache=True, nogil=True, fastmath={"reassoc"})
def _fold_linear(w, b, rows, w_scale, b_scale, shift, w_out, b_out):  # pragma: no cover (numba)
    """w (O, I), b (O,) raw -> w_out (O, I), b_out (O,). The row sums may be summed in any order
    (``reassoc``, so that they are vectorised); everything else is one product per element."""
    n_out, n_in = w.shape
    for o in range(n_out):
        source, dest, scale = w[rows[o]], w_out[o], w_scale[o]
        total = np.float32(0.0)
        for i in range(n_in):
            v = source[i]
            total += v
            dest[i] = scale * v
        b_out[o] = b_scale[o] * (b[rows[o]] - shift * total)


@_jit(cache=True, nogil=True)
def _unfold_linear(dw_f, db_f, rows, w_scale, b_scale, shift, dw, db):  # pragma: no cover (numba)
    """Gradients of the folded (O, I) weight and (O,) bias -> of the raw ones, dw (O, I), db (O,)."""
    n_out, n_in = dw_f.shape
    for o in range(n_out):
        r = rows[o]
        scale = w_scale[o]
        db[r] = b_scale[o] * db_f[o]
        k = shift * db[r]
        for i in range(n_in):
            dw[r, i] = scale * dw_f[o, i] - k


@lru_cache(maxsize=64)
def linear_scales(mode: str, depth: int, n: int, dropout: bool, j: int, out_features: int) -> tuple:
    """(rows (O,) int64, w_scale (O,) float32, b_scale (O,) float32, shift float32) of Linear j of
    one dense sub-cell (the backbone Linears, then the heads): the rules of ``kernels.fold_cell``."""
    w_scale, shift = 1.0, 0.0
    if j:  # reads a backbone layer: LECUN_OUT (2 a - 1), or LECUN_OUT m (2 a - 1) with dropout
        w_scale, shift = (kernels.LECUN_OUT, 0.0) if dropout else (2 * kernels.LECUN_OUT, kernels.LECUN_OUT)
    rows, row_scale = np.arange(out_features), np.ones(out_features)
    if j < depth:    # the next sigmoid reads 2 LECUN_IN u
        row_scale *= 2 * kernels.LECUN_IN
    elif mode != "pure":  # rows f1, f2, a, b -> 2 f1, 2 f2, b, a (``kernels._reorder_heads``)
        rows = np.concatenate([np.arange(2 * n), np.arange(3 * n, 4 * n), np.arange(2 * n, 3 * n)])
        row_scale[: 2 * n] = 2.0
    return (rows, (w_scale * row_scale).astype(np.float32), row_scale.astype(np.float32), np.float32(shift))


def _recording() -> bool:
    """Tracing and torch.compile record torch ops only: a numba call would be lost from the graph."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def applies(plan: kernels.Plan, masks: list, raw) -> bool:
    """Whether the compiled fold serves: numba, one dense sub-cell, float32 CPU weights."""
    return (numba is not None and len(plan.sizes) == 1 and masks[0] is None
            and raw[0].dtype == torch.float32 and raw[0].device.type == "cpu" and not _recording())


def fold_prepare(plan: kernels.Plan, raw, dropout: bool, in_features: int) -> tuple[list[Tensor], kernels.Prepared]:
    """``kernels.fold`` (``applies`` must hold), then ``kernels.prepare``: the folded parameters in
    ``kernels.split_cells`` layout and the forward-ready weights."""
    (cell,), lstm = kernels.split_cells(plan, raw)
    params: list[Tensor] = []
    for j in range(plan.depth + 1):
        w, b = cell[2 * j].detach(), cell[2 * j + 1].detach()
        rows, w_scale, b_scale, shift = linear_scales(plan.mode, plan.depth, plan.sizes[0], dropout, j, w.shape[0])
        w_out, b_out = torch.empty_like(w), torch.empty_like(b)
        _fold_linear(w.numpy(), b.numpy(), rows, w_scale, b_scale, shift, w_out.numpy(), b_out.numpy())
        params += [w_out, b_out]
    if plan.mode == "pure":
        params += [torch.abs(cell[-2].detach()), cell[-1].detach()]
    params += [p.detach() for p in lstm]
    return params, kernels.prepare(plan, params, in_features)


def unfold(plan: kernels.Plan, raw, dropout: bool, grads: list[Tensor]) -> list[Tensor]:
    """``kernels.unfold_grads`` (``applies`` must hold)."""
    (cell,), _ = kernels.split_cells(plan, raw)
    (d_cell,), d_lstm = kernels.split_cells(plan, grads)
    out: list[Tensor] = []
    for j in range(plan.depth + 1):
        dw_f, db_f = d_cell[2 * j].contiguous(), d_cell[2 * j + 1].contiguous()
        rows, w_scale, b_scale, shift = linear_scales(plan.mode, plan.depth, plan.sizes[0], dropout, j,
                                                      dw_f.shape[0])
        dw, db = torch.empty_like(dw_f), torch.empty_like(db_f)
        _unfold_linear(dw_f.numpy(), db_f.numpy(), rows, w_scale, b_scale, shift, dw.numpy(), db.numpy())
        out += [dw, db]
    if plan.mode == "pure":
        out += [d_cell[-2] * torch.sign(cell[-2]), d_cell[-1]]
    return out + list(d_lstm)


# ---------------------------------------------------------------------------------------------
# The step loops of one dense sub-cell with one backbone Linear (the default head), each one
# compiled call. In torch a step is a handful of small ops, each paying dispatch and a pass over
# memory; here the matrix products are MKL's sgemm, the same routine torch's CPU matmul calls
# (found in torch's own library, so the products are torch's), and everything between two products
# is one fused pass. Float32 only; where torch has no MKL (ARM, macOS) the torch ops serve.
# ---------------------------------------------------------------------------------------------

_N, _T = 78, 84  # 'N', 'T'
_EMPTY = np.empty((0, 0), np.float32)  # d_t when d dt is not needed


@lru_cache(maxsize=1)
def sgemm():
    """MKL's Fortran ``sgemm_`` from torch's CPU library as a ctypes function, or None. Its integer
    arguments are passed as int64: the LP64 interface reads their low half (little-endian), ILP64
    the whole. A 2 x 3 by 3 x 2 product is checked before it is trusted."""
    import ctypes
    import glob
    import os
    import sys

    if numba is None or sys.byteorder != "little" or not torch.backends.mkl.is_available():
        return None
    for path in sorted(glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.*"))):
        try:
            library = ctypes.CDLL(path)
            function = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(("sgemm_", library))
        except (OSError, AttributeError):
            continue
        a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6, dtype=np.float32).reshape(3, 2) - 2
        c = np.zeros((2, 2), np.float32)
        try:
            _gemm_once(function, a, b, c)
        except Exception:  # noqa: BLE001 - not usable here: the torch ops serve
            return None
        return function if np.array_equal(c, a @ b) else None
    return None


@_jit(inline="always")
def _gemm(f, a, b, c, beta, transposed_b, chars, scalars, ints):  # pragma: no cover (numba)
    """Row-major c (m, n) = a (m, k) @ op(b) + beta c: op(b) = b (k, n), or with ``transposed_b``
    b (n, k) read transposed. Every matrix has unit column stride; its row stride is its leading
    dimension. Column-major sgemm sees the transposes: c^T = op(b)^T a^T."""
    m, k = a.shape
    n = c.shape[1]
    chars[0], chars[1] = (_T if transposed_b else _N), _N
    ints[0], ints[1], ints[2] = n, m, k
    ints[3], ints[4], ints[5] = b.strides[0] // 4, a.strides[0] // 4, c.strides[0] // 4
    scalars[0], scalars[1] = 1.0, beta
    f(chars[0:].ctypes, chars[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes, scalars[0:].ctypes,
      b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes, scalars[1:].ctypes, c.ctypes, ints[5:].ctypes)


@_jit(cache=True, nogil=True)
def _gemm_once(f, a, b, c):  # pragma: no cover (numba)
    _gemm(f, a, b, c, np.float32(0.0), False, np.empty(2, np.uint8), np.empty(2, np.float32), np.empty(6, np.int64))


@_jit(cache=True, nogil=True)
def _forward_loop(f, pre, dt, h0, y, wh, w2, b2, heads, gated):  # pragma: no cover (numba)
    """``kernels._loop_single`` for depth 1 without mask, writing into y (B, T, n).

    pre (T, B, U): the first Linear's input half and bias, completed in place into the backbone
    activations; dt (B, T); h0 (B, n); wh (U, n) and w2 (4n, U): the folded weights (out, in),
    any row stride; b2 (4n,); heads (T or 1, B, 4n) receives the heads' output after the update
    (sig1, sig2, g, a, as ``kernels._update`` leaves it), one buffer per step or one reused.
    """
    steps, batch, units = pre.shape
    n = y.shape[2]
    chars, scalars, ints = np.empty(2, np.uint8), np.empty(2, np.float32), np.empty(6, np.int64)
    bits, mantissa = np.empty(max(units, 3 * n), np.int32), np.empty(max(units, 3 * n), np.float32)
    one = np.float32(1.0)
    for t in range(steps):
        z = pre[t]
        _gemm(f, h0 if t == 0 else y[:, t - 1], wh, z, one, True, chars, scalars, ints)
        for b in range(batch):
            _sigmoids(z[b], bits, mantissa)
        s = heads[t if heads.shape[0] > 1 else 0]
        for b in range(batch):
            s[b] = b2
        _gemm(f, z, w2, s, one, True, chars, scalars, ints)
        for b in range(batch):
            row, out, elapsed = s[b], y[b, t], dt[b, t]
            for j in range(n):
                row[2 * n + j] += row[3 * n + j] * elapsed      # b + a t
            _sigmoids(row[: 3 * n], bits, mantissa)
            for j in range(n):
                sig1, sig2, gate = row[j], row[n + j], row[2 * n + j]
                if gated:  # tanh(f1) (1 - g) + g tanh(f2) = 2 lerp(sig1, sig2, g) - 1
                    out[j] = _TWO * (sig1 + gate * (sig2 - sig1)) - _ONE
                else:      # tanh(f1) + g tanh(f2)
                    out[j] = (_TWO * sig1 - _ONE) + gate * (_TWO * sig2 - _ONE)


@_jit(cache=True, nogil=True)
def _backward_loop(f, heads, acts, dt, start, d_new, d_heads, d_acts, w2, first_h, d_s, d_t, gated,
                   need_dt):  # pragma: no cover (numba)
    """``kernels._backward_single`` for depth 1 without mask, over steps [start, start + L) of a
    block, with the update's local derivatives (``kernels._gate_coefficients``) and the backbone
    sigmoid's slope computed on the way rather than in passes of their own.

    heads (L, B, 4n) and acts (L, B, U): the forward's saved heads output and backbone
    activations; dt (B, T); d_new (L, B, n): d output in, d (new state) of each step out;
    d_heads (L, B, 4n) and d_acts (L, B, U) receive d of the heads' and the backbone's
    pre-activations; w2 (4n, U), first_h (U, n): the folded weights; d_s (B, n): d (state after
    the block) in, d (state before it) out; d_t (T, B): d dt, written when ``need_dt``.
    """
    steps, batch, width = heads.shape
    n, units = width // 4, acts.shape[2]
    chars, scalars, ints = np.empty(2, np.uint8), np.empty(2, np.float32), np.empty(6, np.int64)
    d_new[steps - 1] += d_s
    for r in range(steps):
        t = steps - 1 - r
        for b in range(batch):
            s, dh, ds = heads[t, b], d_new[t, b], d_heads[t, b]
            elapsed, dt_sum = dt[b, start + t], np.float32(0.0)
            for j in range(n):
                sig1, sig2, gate = s[j], s[n + j], s[2 * n + j]
                d1 = _TWO * sig1 * (_ONE - sig1)             # d sigmoid(2 f) / d f, per 2 f
                d2 = _TWO * sig2 * (_ONE - sig2)
                dg = _TWO * gate * (_ONE - gate)
                if gated:   # h = 2 lerp(sig1, sig2, g) - 1
                    c1, c2, cg = d1 * (_ONE - gate), d2 * gate, dg * (sig2 - sig1)
                else:       # h = (2 sig1 - 1) + g (2 sig2 - 1)
                    c1, c2, cg = d1, d2 * gate, np.float32(0.5) * dg * (_TWO * sig2 - _ONE)
                ds[j], ds[n + j] = dh[j] * c1, dh[j] * c2
                ds[2 * n + j] = dh[j] * cg
                ds[3 * n + j] = dh[j] * cg * elapsed
                dt_sum += dh[j] * cg * s[3 * n + j]
            if need_dt:
                d_t[start + t, b] = dt_sum
        _gemm(f, d_heads[t], w2, d_acts[t], np.float32(0.0), False, chars, scalars, ints)
        for b in range(batch):
            a, da = acts[t, b], d_acts[t, b]
            for u in range(units):
                da[u] *= a[u] - a[u] * a[u]
        if t > 0:
            _gemm(f, d_acts[t], first_h, d_new[t - 1], np.float32(1.0), False, chars, scalars, ints)
        else:
            _gemm(f, d_acts[0], first_h, d_s, np.float32(0.0), False, chars, scalars, ints)


def loops_apply(plan: kernels.Plan, like: Tensor) -> bool:
    """Whether the compiled step loops serve a dense head: depth 1, a gated mode, float32 CPU, MKL."""
    return (numba is not None and plan.depth == 1 and plan.mode != "pure" and len(plan.sizes) == 1
            and not plan.mixed and like.dtype == torch.float32 and like.device.type == "cpu" and not _recording()
            and sgemm() is not None)


def forward_loop(pre0: Tensor, dt: Tensor, h0: Tensor, y: Tensor, wh: Tensor, w2: Tensor, b2: Tensor,
                 heads: Tensor, gated: bool) -> None:
    """``_forward_loop`` on tensors (see there); dt is made contiguous."""
    _forward_loop(sgemm(), pre0.numpy(), dt.detach().contiguous().numpy(), h0.detach().contiguous().numpy(), y.numpy(),
                  wh.numpy(), w2.numpy(), b2.numpy(), heads.numpy(), gated)


def backward_loop(heads: Tensor, acts: Tensor, dt: Tensor, start: int, d_new: Tensor, d_heads: Tensor,
                  d_acts: Tensor, w2: Tensor, first_h: Tensor, d_s: Tensor, d_t: Tensor | None, gated: bool) -> Tensor:
    """``_backward_loop`` on tensors (see there); returns d (state before the block) (B, n)."""
    d_s = d_s.detach().clone(memory_format=torch.contiguous_format)
    _backward_loop(sgemm(), heads.numpy(), acts.numpy(), dt.detach().contiguous().numpy(), start, d_new.numpy(),
                   d_heads.numpy(), d_acts.numpy(), w2.numpy(), first_h.numpy(), d_s.numpy(),
                   _EMPTY if d_t is None else d_t.numpy(), gated, d_t is not None)
    return d_s

