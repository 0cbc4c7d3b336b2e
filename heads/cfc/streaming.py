"""The cfc head's streaming step as one compiled call (numba), for small batches.

``CfC.step`` without autograd runs a dozen matrix products and element-wise ops on tiny tensors:
at batch 1 each torch op costs 1-4 us of dispatch for well under a microsecond of arithmetic, so
that step is almost all overhead. Here the whole step of one dense sub-cell, and of the LSTM cell
in front of it with mixed memory, is a single numba call on the folded weights of
``heads.cfc.kernels.Prepared`` (the LeCun tanh and the heads' tanh are already sigmoids there,
see ``kernels.fold_cell``; the LSTM's tanh is written ``2 sigmoid(2 u) - 1`` the same way):

- every Linear adds 8 weight rows at a time into contiguous output columns (vectorised by LLVM;
  one load and store of the output per 8 products);
- every sigmoid is ``1 / (1 + 2**y)`` with 2**y from a polynomial and exponent bits (vectorised;
  a call to exp is not), as in ``heads.ltc.kernels``: within about 2e-7 of torch's sigmoid, and
  saturating at 5e-20 instead of 0 below -44;
- the weights travel as one flat array and a layout (each argument costs time in numba's
  dispatch), the result as one array whose views become the returned tensors.

The arithmetic is the torch path's in another summation order, so the two agree to float32
rounding (the tests hold both to the plain float64 math over many steps). The returned tensors
share memory allocated by numba: like any tensor made by ``torch.from_numpy``, they cannot be
resized in place.

Used for float32 CPU heads with one dense sub-cell and the LeCun backbone at batch sizes up to
``MAX_BATCH`` (``CfC.step`` decides; tracing and torch.compile keep torch ops, so that export
records them). Without numba, or where compiling fails (a warning, once), the torch path serves.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from heads.cfc import kernels
from heads.ltc.kernels import Y_MAX, exp2_split

from heads._numba import jit as _jit, numba  # without numba: CfC.step then runs the torch path

# The compiled step up to this batch size. At 1 thread it beats torch's path up to about 32-48
# (B=1: 12 vs 26 us, B=16: 57 vs 69 us); beyond 16 torch's matrix products may also use several
# threads, so the bound stays there.
MAX_BATCH = 16


def available() -> bool:
    return numba is not None


# sigmoid(u) = 1 / (1 + 2**y), y = -u log2(e) clamped to [-64, 64] (beyond, sigmoid is within 6e-20 of
# 0 or 1); 2**y = 2**k 2**f, k = round(y), with 2**f for |f| <= 1/2 a polynomial (Cephes's exp2f,
# relative error about 2e-7) and 2**k built from its exponent bits: heads.ltc.kernels.exp2_split.
# Plain arithmetic, so LLVM vectorises it (a call to exp would not be); NaN stays NaN.
_NEG_LOG2E = np.float32(-1.0 / math.log(2.0))
_ONE, _TWO = np.float32(1.0), np.float32(2.0)


@_jit(inline="always")
def _sigmoids(z, bits, mantissa):  # pragma: no cover (numba)
    """z (m,) <- sigmoid(z), in place. ``bits`` (int32) and its float32 view hold 2**k, ``mantissa``
    2**f (scratch of at least m): two loops, as a loop writing one view and reading the other would
    not be vectorised."""
    scale = bits.view(np.float32)
    for j in range(z.shape[0]):
        exp2_split(min(max(z[j] * _NEG_LOG2E, -Y_MAX), Y_MAX), j, mantissa, bits)
    for j in range(z.shape[0]):
        z[j] = _ONE / (_ONE + mantissa[j] * scale[j])


@_jit(inline="always")
def _linear(inp, w, out):  # pragma: no cover (numba)
    """out (B, O) += inp (B, I) @ w (I, O). The inner loop runs over contiguous output columns and
    adds 8 weight rows at once (one load and store of ``out`` per 8 products rather than per
    product); the 8 rows stay in L1 for every batch row."""
    fan_in, batch = w.shape[0], inp.shape[0]
    i = 0
    while i + 8 <= fan_in:
        for b in range(batch):
            v0, v1, v2, v3 = inp[b, i], inp[b, i + 1], inp[b, i + 2], inp[b, i + 3]
            v4, v5, v6, v7 = inp[b, i + 4], inp[b, i + 5], inp[b, i + 6], inp[b, i + 7]
            for o in range(w.shape[1]):
                out[b, o] += ((v0 * w[i, o] + v1 * w[i + 1, o]) + (v2 * w[i + 2, o] + v3 * w[i + 3, o])
                              + ((v4 * w[i + 4, o] + v5 * w[i + 5, o]) + (v6 * w[i + 6, o] + v7 * w[i + 7, o])))
        i += 8
    while i < fan_in:
        for b in range(batch):
            v = inp[b, i]
            for o in range(w.shape[1]):
                out[b, o] += v * w[i, o]
        i += 1


@_jit(inline="always")
def _biases(bias, batch):  # pragma: no cover (numba)
    """(batch, O): ``bias`` in every row, where a Linear then adds its products."""
    out = np.empty((batch, bias.shape[0]), np.float32)
    for b in range(batch):
        for o in range(bias.shape[0]):
            out[b, o] = bias[o]
    return out


@_jit(inline="always")
def _cell(x, t, h, c, wx, wh, b0, later_w, later_b, widths, extra, lstm_in, lstm_b, lstm_rec, mode,
          out):  # pragma: no cover (numba)
    """One step into ``out`` (1 or 2, B, n) = [h'] or [h', c'] (mixed memory). x (B, D), t (B, 1) or
    (1, 1), h (B, n), c (B, n) with mixed memory.

    wx (D, O), wh (n, O), b0 (O,): the first Linear, split into its input and state parts;
    later_w, later_b: the later Linears' W^T (I_j, O_j) and biases, flattened one after the other,
    widths (depth + 1,) = [O, O_1, ..., O_depth]; extra (2, n) = [|w_tau|, A] in pure mode;
    lstm_in (D, 4n), lstm_b (4n,), lstm_rec (n, 4n): the LSTM, its first n columns (the tanh
    input) doubled. mode: 0 default, 1 no_gate, 2 pure.
    """
    batch, n = h.shape
    one_t = t.shape[0] == 1  # one elapsed time for the whole batch (broadcast, as torch would)
    widest = 4 * n
    for j in range(widths.shape[0]):
        widest = max(widest, widths[j])
    bits, mantissa = np.empty(widest, np.int32), np.empty(widest, np.float32)
    state = h
    if out.shape[0] == 2:  # gates: input (doubled), input gate, forget gate (+1 in lstm_b), output gate
        g = _biases(lstm_b, batch)
        _linear(x, lstm_in, g)
        _linear(h, lstm_rec, g)
        state = np.empty((batch, n), np.float32)
        c_new = out[1]
        for b in range(batch):
            _sigmoids(g[b], bits, mantissa)
            for j in range(n):  # tanh(u) = 2 sigmoid(2 u) - 1
                c_new[b, j] = c[b, j] * g[b, 2 * n + j] + (_TWO * g[b, j] - _ONE) * g[b, n + j]
                state[b, j] = _TWO * c_new[b, j]
            _sigmoids(state[b], bits, mantissa)
            for j in range(n):
                state[b, j] = (_TWO * state[b, j] - _ONE) * g[b, 3 * n + j]
    z = _biases(b0, batch)
    _linear(x, wx, z)
    _linear(state, wh, z)
    start_w = start_b = 0
    for j in range(widths.shape[0] - 1):  # the backbone's sigmoid, then the next Linear
        fan_in, fan_out = widths[j], widths[j + 1]
        for b in range(batch):
            _sigmoids(z[b], bits, mantissa)
        nxt = _biases(later_b[start_b : start_b + fan_out], batch)
        _linear(z, later_w[start_w : start_w + fan_in * fan_out].reshape((fan_in, fan_out)), nxt)
        z = nxt
        start_w += fan_in * fan_out
        start_b += fan_out
    h_new = out[0]
    for b in range(batch):
        tb = t[0, 0] if one_t else t[b, 0]
        if mode == 2:  # A - A exp(-t (|w_tau| + |f1|)) f1
            for j in range(n):
                s = z[b, j]
                h_new[b, j] = extra[1, j] - extra[1, j] * np.exp(-tb * (extra[0, j] + abs(s))) * s
            continue
        # heads rows 2 f1, 2 f2, b, a: tanh(f) = 2 sigmoid(2 f) - 1, gate = sigmoid(b + a t)
        for j in range(n):
            z[b, 2 * n + j] += z[b, 3 * n + j] * tb
        _sigmoids(z[b, : 3 * n], bits, mantissa)
        for j in range(n):
            sig1, sig2, gate = z[b, j], z[b, n + j], z[b, 2 * n + j]
            if mode == 0:  # tanh(f1) (1 - g) + g tanh(f2)
                h_new[b, j] = _TWO * (sig1 + gate * (sig2 - sig1)) - _ONE
            else:          # tanh(f1) + g tanh(f2)
                h_new[b, j] = (_TWO * sig1 - _ONE) + gate * (_TWO * sig2 - _ONE)


# layout (int64): mode, mixed (0/1), depth, D, n, then widths [O, O_1, ..., O_depth]
_MODE, _MIXED, _DEPTH, _IN, _UNITS, _WIDTHS = range(6)


@_jit(cache=True, nogil=True)
def _step(x, t, h, c, weights, layout):  # pragma: no cover (numba)
    """One step: x (B, D), t (B, 1) or (1, 1), h (B, n), c (B, n) with mixed memory (else any
    (0, 0)) -> (1, B, n) = [h'] or (2, B, n) = [h', c'] with mixed memory.

    weights (flat) and layout: from ``pack``. Raises ValueError when the shapes do not fit (the
    torch path then raises its own error). One flat array of weights rather than a dozen arrays:
    every argument costs time in numba's dispatch.
    """
    mode, mixed, depth, d, n = layout[_MODE], layout[_MIXED] == 1, layout[_DEPTH], layout[_IN], layout[_UNITS]
    widths = layout[_WIDTHS : _WIDTHS + depth + 1]
    batch = h.shape[0]
    if (h.shape[1] != n or x.shape[0] != batch or x.shape[1] != d or t.shape[1] != 1
            or (t.shape[0] != batch and t.shape[0] != 1) or (mixed and (c.shape[0] != batch or c.shape[1] != n))):
        raise ValueError("shapes do not match")
    width = widths[0]
    i = 0
    wx = weights[i : i + d * width].reshape((d, width))
    i += d * width
    wh = weights[i : i + n * width].reshape((n, width))
    i += n * width
    b0 = weights[i : i + width]
    i += width
    size_w = size_b = 0
    for j in range(depth):
        size_w += widths[j] * widths[j + 1]
        size_b += widths[j + 1]
    later_w = weights[i : i + size_w]
    i += size_w
    later_b = weights[i : i + size_b]
    i += size_b
    extra = weights[i : i + 2 * n].reshape((2, n))
    i += 2 * n
    rows = 4 * n if mixed else 0
    lstm_in = weights[i : i + d * rows].reshape((d, rows))
    i += d * rows
    lstm_b = weights[i : i + rows]
    i += rows
    lstm_rec = weights[i : i + n * rows].reshape((n, rows))
    out = np.empty((2 if mixed else 1, batch, n), np.float32)
    _cell(x, t, h, c, wx, wh, b0, later_w, later_b, widths, extra, lstm_in, lstm_b, lstm_rec, mode, out)
    return out


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


def pack(plan: kernels.Plan, prep: kernels.Prepared) -> tuple[np.ndarray, np.ndarray] | None:
    """The compiled step's (weights, layout) from ``prep``, or None where it does not apply (no
    numba, several sub-cells, not float32 on the CPU)."""
    wx, wh, b0 = prep.first[0]
    if numba is None or len(plan.sizes) != 1 or wx.dtype != torch.float32 or wx.device.type != "cpu":
        return None
    n = plan.units
    ws_t, bs = prep.ws_t[0], prep.bs[0]
    parts = [wx, wh, b0, *ws_t, *bs, torch.stack(prep.extra[0]) if plan.mode == "pure" else wx.new_zeros(2, n)]
    if plan.mixed:  # the tanh input's columns doubled: tanh(u) = 2 sigmoid(2 u) - 1
        double = torch.ones(4 * n, dtype=wx.dtype)
        double[:n] = 2.0
        parts += [w * double for w in prep.lstm]
    weights = torch.cat([p.reshape(-1) for p in parts])
    layout = [plan.mode_id, int(plan.mixed), len(ws_t), wx.shape[0], n, b0.shape[0]] + [w.shape[1] for w in ws_t]
    return _numpy(weights), np.array(layout, dtype=np.int64)


_EMPTY_C = np.empty((0, 0), np.float32)
# The one signature compiled: float32 C-contiguous arrays (x, t, h, c, weights), int64 layout.
_SIGNATURE = "float32[:, :, ::1](float32[:, ::1], float32[:, ::1], float32[:, ::1], float32[:, ::1], float32[::1], int64[::1])"
_compiled = {"step": None}  # the dispatcher once compiled, False where that failed


def _compile():
    """``_step`` compiled for ``_SIGNATURE`` only (from numba's cache when there): then a call with
    other argument types (float64, a strided array) raises TypeError instead of compiling anew."""
    if _compiled["step"] is None:
        try:
            _step.compile(_SIGNATURE)
            _step.disable_compile()
            _compiled["step"] = _step
        except Exception as error:  # noqa: BLE001 - any failure: the torch path serves
            _compiled["step"] = False
            warnings.warn(f"cfc: the compiled streaming step is unavailable ({error}); using torch ops",
                          stacklevel=3)
    return _compiled["step"]


def step(packed: tuple, x: torch.Tensor, t: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
    """The compiled step: x (B, D), t (B, 1), h (B, n), c (B, n) or None, and ``packed`` from
    ``pack`` -> (h', c' or None), or None where it cannot run and the caller takes the torch
    path: an argument not float32 on the CPU, shapes that do not fit, or compiling failed."""
    kernel = _compiled["step"] or _compile()
    if not kernel:
        return None
    try:  # the common case: contiguous float32 CPU tensors that do not require grad
        out = kernel(x.numpy(), t.numpy(), h.numpy(), _EMPTY_C if c is None else c.numpy(), *packed)
    except (TypeError, RuntimeError, ValueError):  # another device or dtype, strided, requiring grad, shapes
        tensors = (x, t, h) if c is None else (x, t, h, c)
        if any(a.dtype != torch.float32 or a.device.type != "cpu" for a in tensors):
            return None
        try:
            out = kernel(*(_numpy(a) for a in tensors), *(() if c is not None else (_EMPTY_C,)), *packed)
        except (TypeError, ValueError):  # not (B, D), (B, 1), (B, n) arrays that fit: torch says why
            return None
    if c is None:
        return torch.from_numpy(out[0]), None
    return torch.from_numpy(out[0]), torch.from_numpy(out[1])
