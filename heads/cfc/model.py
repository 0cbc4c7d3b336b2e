"""The cfc head: closed-form continuous-time cells (Hasani et al., Nature Machine Intelligence 2022).

The math is that of ncps 1.0.1, so its models convert one to one (``heads.from_ncps``). Per step,
with x (B, D) the input, h (B, n) the state and t (B, 1) the normalised elapsed time:

    u  = backbone([x; h])                  Linears with the LeCun tanh 1.7159 tanh(0.666 .) (or
                                           another of ncps's backbone activations)
    f1, f2, a, b = heads(u)                one Linear; its rows are the four heads in that order
    default:  g = sigmoid(a t + b),  h' = tanh(f1) (1 - g) + g tanh(f2)
    no_gate:  h' = tanh(f1) + g tanh(f2)
    pure:     h' = A - A exp(-t (|w_tau| + |f1|)) f1      (heads holds f1 only)

With a wiring, each wiring layer (an NCP's inter, command and motor neurons) is one such sub-cell
with no backbone, fed by the previous layer's new state; its f1/f2 weights are multiplied by the
wiring's 0/1 mask (the time heads and the recurrent inputs stay dense, as in ncps). With mixed
memory an LSTM cell first updates (h, c) from x and the CfC cells then start from that h.

``forward`` runs the whole sequence in a fused kernel (``heads.cfc.kernels``) with a hand-written
backward. ``step`` without autograd (streaming) runs a lean kernel step on folded weights cached
until a parameter changes; with autograd it is ``reference_step``, the plain per-step math that
every fast path is tested against. The kernels fold the LeCun tanh into their weights: a backbone
with another activation (tanh, relu, silu, gelu; there for models converted from ncps) runs
``reference_step`` in every case, slower but the same math.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads._registry import HeadError, register_head
from heads.base import DerivedCache, State, TemporalHead
from heads.cfc import kernels, streaming
from heads.wirings import Wiring, resolve_wiring

_CHUNK = 1024  # steps per kernel call without autograd: bounds the (T, B, .) buffers of long streams


def _default_update(s: Tensor, t: Tensor, extra: tuple) -> Tensor:
    """s (B, 4n) heads output, t (B, 1) -> h (B, n): tanh(f1) (1 - g) + g tanh(f2)."""
    f1, f2, a, b = s.chunk(4, 1)
    g = torch.sigmoid(a * t + b)
    return torch.tanh(f1) * (1.0 - g) + g * torch.tanh(f2)


def _no_gate_update(s: Tensor, t: Tensor, extra: tuple) -> Tensor:
    """s (B, 4n), t (B, 1) -> h (B, n): tanh(f1) + g tanh(f2)."""
    f1, f2, a, b = s.chunk(4, 1)
    return torch.tanh(f1) + torch.sigmoid(a * t + b) * torch.tanh(f2)


def _pure_update(s: Tensor, t: Tensor, extra: tuple) -> Tensor:
    """s (B, n) = f1, t (B, 1) -> h (B, n): A - A exp(-t (|w_tau| + |f1|)) f1."""
    w_abs, amplitude = extra
    return amplitude - amplitude * torch.exp(-t * (w_abs + torch.abs(s))) * s


# mode -> (closed-form update, heads rows per neuron)
_MODES = {"default": (_default_update, 4), "no_gate": (_no_gate_update, 4), "pure": (_pure_update, 1)}


def _lecun_tanh(z: Tensor) -> Tensor:
    return kernels.LECUN_OUT * torch.tanh(kernels.LECUN_IN * z)


# backbone activation name (ncps's names) -> function; the fused kernels know only lecun_tanh
ACTIVATIONS = {"lecun_tanh": _lecun_tanh, "tanh": torch.tanh, "relu": F.relu, "silu": F.silu, "gelu": F.gelu}


class _CfCLayer(nn.Module):
    """One CfC sub-cell over [input (B, I); its own state (B, n)].

    Parameters: ``backbone.j`` (Linears, U units), ``heads`` (rows: f1, f2, time a, time b; f1 only
    in pure mode), and in pure mode ``w_tau`` and ``amplitude`` (A), each (n,).
    Buffer ``synapse_mask`` (heads rows, I + n): the wiring's 0/1 mask, or None when dense.
    """

    def __init__(self, in_size: int, n: int, mode: str, backbone_units: int, backbone_layers: int,
                 dropout: float, synapse_mask: np.ndarray | None = None, activation: str = "lecun_tanh"):
        super().__init__()
        self.mode, self.n, self.dropout = mode, n, dropout
        self.activation = ACTIVATIONS[activation]
        widths = [in_size + n] + [backbone_units] * backbone_layers
        self.backbone = nn.ModuleList(nn.Linear(widths[j], widths[j + 1]) for j in range(backbone_layers))
        rows = _MODES[mode][1]
        self.heads = nn.Linear(widths[-1], rows * n)
        for lin in self.backbone:
            nn.init.xavier_uniform_(lin.weight)
        with torch.no_grad():  # xavier per head, as if the heads were separate Linears (ncps)
            for block in self.heads.weight.split(n):
                nn.init.xavier_uniform_(block)
        if mode == "pure":
            # ncps initialises these (1, n) tensors with xavier too; a zero w_tau would never train
            # (the gradient of |w| at 0 is 0), so keep that.
            bound = math.sqrt(6.0 / (1 + n))
            self.w_tau = nn.Parameter(torch.empty(n).uniform_(-bound, bound))
            self.amplitude = nn.Parameter(torch.empty(n).uniform_(-bound, bound))
        mask = None
        if synapse_mask is not None:
            f_rows = np.ones((rows * n, in_size + n), dtype=np.float32)
            f_rows[: min(rows, 2) * n, :in_size] = np.tile(synapse_mask.T, (min(rows, 2), 1))
            mask = torch.from_numpy(f_rows)
            with torch.no_grad():
                self.heads.weight.mul_(mask)  # left-out synapses start and stay exactly zero
        self.register_buffer("synapse_mask", mask)

    def heads_weight(self) -> Tensor:
        """The heads weight with the wiring applied: (rows * n, width)."""
        w = self.heads.weight
        return w if self.synapse_mask is None else w * self.synapse_mask

    def extra(self) -> tuple[Tensor, ...]:
        """Mode parameters of the update: (|w_tau|, A) in pure mode, else ()."""
        return (torch.abs(self.w_tau), self.amplitude) if self.mode == "pure" else ()

    def raw_params(self) -> list[Tensor]:
        """Parameters in the kernels' order: backbone (W, b)s, heads (W, b), [w_tau, A]."""
        out = [t for lin in self.backbone for t in (lin.weight, lin.bias)] + [self.heads.weight, self.heads.bias]
        return out + ([self.w_tau, self.amplitude] if self.mode == "pure" else [])

    def step(self, inp: Tensor, h: Tensor, dt: Tensor) -> Tensor:
        """inp (B, I), h (B, n), dt (B, 1) -> new h (B, n)."""
        z = torch.cat([inp, h], 1)
        for lin in self.backbone:
            z = self.activation(F.linear(z, lin.weight, lin.bias))
            if self.dropout > 0.0:
                z = F.dropout(z, self.dropout, self.training)
        s = F.linear(z, self.heads_weight(), self.heads.bias)
        return _MODES[self.mode][0](s, dt, self.extra())


def leaves_of(state: State) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


@register_head("cfc", time_aware=True, description="closed-form continuous-time (CfC) cell, ncps-compatible")
class CfC(TemporalHead):
    """Closed-form continuous-time head (module docstring has the math).

    Args:
        in_features: D.
        hidden_size: state neurons (default 64); with a Wiring object, its unit count.
        mode: "default", "no_gate" or "pure".
        backbone_units: width of the backbone Linears (default 128; dense only).
        backbone_layers: number of backbone Linears, 0 or more (default 1; dense only).
        backbone_dropout: dropout after each backbone layer while training (ncps applies it only
            after the second and later layers).
        backbone_activation: one of ``ACTIVATIONS`` (default "lecun_tanh", ncps's default); any
            other runs the plain step loop (dense only).
        mixed_memory: run an LSTM cell in front of the CfC cells; the state is then (h, c).
        wiring: None (dense), a name from ``heads.list_wirings()`` or a ``heads.Wiring``.
        wiring_kwargs: options for ``create_wiring`` when ``wiring`` is a name (output_size, ...).
        time_gate_bias: (a, b): start the biases of the time gate's rows, g = sigmoid(a t + b), at
            these values instead of Linear's small random ones (not in pure mode, which has no gate).
            a > 0 makes the gate open with the elapsed time from the first step on.
    """

    def __init__(
        self,
        in_features: int,
        hidden_size: int | None = None,
        mode: str = "default",
        backbone_units: int | None = None,
        backbone_layers: int | None = None,
        backbone_dropout: float = 0.0,
        backbone_activation: str = "lecun_tanh",
        mixed_memory: bool = False,
        wiring: str | Wiring | None = None,
        wiring_kwargs: dict | None = None,
        time_gate_bias: tuple[float, float] | list[float] | None = None,
    ):
        super().__init__()
        if mode not in _MODES:
            raise HeadError(f"cfc: unknown mode {mode!r}; choose one of: {', '.join(_MODES)}")
        if hidden_size is not None and (not isinstance(hidden_size, int) or hidden_size < 1):
            raise HeadError(f"cfc: hidden_size must be a positive integer, got {hidden_size!r}")
        if not 0.0 <= backbone_dropout < 1.0:
            raise HeadError(f"cfc: backbone_dropout must be in [0, 1), got {backbone_dropout!r}")
        if backbone_activation not in ACTIVATIONS:
            raise HeadError(f"cfc: unknown backbone_activation {backbone_activation!r}; "
                            f"choose one of: {', '.join(ACTIVATIONS)}")
        self.backbone_activation = backbone_activation
        self.wiring = resolve_wiring("cfc", in_features, hidden_size, wiring, wiring_kwargs)
        self.in_features, self.mode, self.mixed_memory = in_features, mode, bool(mixed_memory)
        self.time_aware = True
        if self.wiring is None:
            units = 128 if backbone_units is None else backbone_units
            depth = 1 if backbone_layers is None else backbone_layers
            if not isinstance(depth, int) or depth < 0:
                raise HeadError(f"cfc: backbone_layers must be an integer >= 0, got {depth!r}")
            if depth and (not isinstance(units, int) or units < 1):
                raise HeadError(f"cfc: backbone_units must be a positive integer, got {units!r}")
            n = 64 if hidden_size is None else hidden_size
            self.layers = nn.ModuleList([_CfCLayer(in_features, n, mode, units, depth, backbone_dropout,
                                                   activation=backbone_activation)])
            sizes, out_size = (n,), n
        else:
            if (backbone_units is not None or backbone_layers not in (None, 0) or backbone_dropout
                    or backbone_activation != "lecun_tanh"):
                raise HeadError("cfc: backbone_units, backbone_layers, backbone_dropout and backbone_activation "
                                "do not apply "
                                "to a wired cfc (its sub-cells have no backbone, as in ncps)")
            w, depth = self.wiring, 0
            sizes = tuple(len(layer) for layer in w.layers)
            out_size = w.output_size
            if tuple(w.layers[-1][:out_size]) != tuple(range(out_size)):
                raise HeadError("cfc: the wiring's outputs (neurons 0 .. output_size - 1) must open its last layer")
            inputs = (in_features,) + sizes[:-1]
            self.layers = nn.ModuleList(
                _CfCLayer(inputs[k], sizes[k], mode, 0, 0, 0.0, w.layer_input_mask(k)) for k in range(len(sizes))
            )
        if time_gate_bias is not None:
            self._init_time_gate(time_gate_bias)
        self.hidden_size = sum(sizes)
        self.out_features = out_size
        self.backbone_dropout = backbone_dropout
        self.plan = kernels.Plan(mode, sizes, depth, self.mixed_memory, out_size)
        if self.mixed_memory:
            n = self.hidden_size
            self.lstm_input = nn.Linear(in_features, 4 * n)       # rows: input, input gate, forget, output
            self.lstm_recurrent = nn.Linear(n, 4 * n, bias=False)
            nn.init.xavier_uniform_(self.lstm_input.weight)
            nn.init.uniform_(self.lstm_input.bias, -0.1, 0.1)
            nn.init.orthogonal_(self.lstm_recurrent.weight)
        self._folded = DerivedCache()  # kernels.Prepared for calls without autograd
        # Modules holding tensors (the tree is fixed after construction); a plain tuple.
        self._holders = tuple(m for m in self.modules() if m._parameters or m._buffers)

    def _init_time_gate(self, bias) -> None:
        if (self.mode == "pure" or not isinstance(bias, (tuple, list)) or len(bias) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bias)):
            raise HeadError(f"cfc: time_gate_bias must be a pair of finite numbers (a, b) and the mode not 'pure', "
                            f"got {bias!r} in mode {self.mode!r}")
        with torch.no_grad():
            for layer in self.layers:  # heads rows: f1, f2, a, b (n each)
                layer.heads.bias[2 * layer.n: 3 * layer.n] = float(bias[0])
                layer.heads.bias[3 * layer.n:] = float(bias[1])

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """Zeros: h (B, N), or (h, c) with mixed memory."""
        dtype = dtype or self.layers[0].heads.weight.dtype
        device = device or self.layers[0].heads.weight.device
        h = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h)) if self.mixed_memory else h

    def step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, D), dt (B, 1) -> y (B, H), new state.

        Without autograd (streaming inference) this runs the lean kernel step on cached folded
        weights: for a dense float32 head on the CPU at batch sizes up to ``streaming.MAX_BATCH``
        the compiled step (``heads.cfc.streaming``, one call), else torch ops. With autograd, the
        plain per-step math (``reference_step``).
        """
        if torch.is_grad_enabled() or self._dropping() or not self._fused:
            return self.reference_step(x, dt, state)
        h, c = state if self.mixed_memory else (state, None)
        if dt.dtype != x.dtype:
            dt = dt.to(x.dtype)
        prep = self._prepared()
        if (prep.compiled is not None and x.shape[0] <= streaming.MAX_BATCH
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling()):  # export needs torch ops
            new = streaming.step(prep.compiled, x, dt, h, c)
            if new is not None:  # one dense sub-cell: y is the whole new state
                return new[0], (new if self.mixed_memory else new[0])
        y, h, c = kernels.run_step(self.plan, prep, x, dt, h, c)
        return y, ((h, c) if self.mixed_memory else h)

    def reference_step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """``step`` written plainly after ncps, differentiable: the definition the fast paths match."""
        if self.mixed_memory:
            h, c = state
            z = F.linear(x, self.lstm_input.weight, self.lstm_input.bias) + F.linear(h, self.lstm_recurrent.weight)
            i, ig, fg, og = z.chunk(4, 1)
            c = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)
            h = torch.tanh(c) * torch.sigmoid(og)
        else:
            h = state
        news, inp = [], x
        for layer, part in zip(self.layers, h.split(self.plan.sizes, 1)):
            inp = layer.step(inp, part, dt)
            news.append(inp)
        h_new = news[0] if len(news) == 1 else torch.cat(news, 1)
        y = inp[:, : self.out_features]
        return y, ((h_new, c) if self.mixed_memory else h_new)

    def sequence(self, x: Tensor, dt: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """x (B, T, D), dt (B, T), mask (B, T) -> y (B, T, H), final state (fused kernel)."""
        B, T = x.shape[:2]
        if T == 0:
            return x.new_zeros(B, 0, self.out_features), state
        if not self._fused:
            return super().sequence(x, dt, state, mask)
        h, c = state if self.mixed_memory else (state, None)
        drops = self._dropout_masks(T, B, x)
        if torch.is_grad_enabled():
            raw = self._raw_params()
            if x.requires_grad or dt.requires_grad or any(t.requires_grad for t in raw + leaves_of(state)):
                y, h, *rest = kernels.CfCSequence.apply(self.plan, drops, self._masks(), x, dt, mask, h, c, *raw)
                return y, ((h, rest[0]) if self.mixed_memory else h)
        with torch.no_grad():
            if drops is None:
                prep = self._prepared()
            else:
                prep = kernels.prepare(self.plan, kernels.fold(self.plan, self._raw_params(), self._masks(), True),
                                       self.in_features)
            ys = []
            for start in range(0, T, _CHUNK):  # bounded buffers, however long the stream
                part = slice(start, start + _CHUNK)
                y, h, c, _ = kernels.run_forward(
                    self.plan, prep, x[:, part], dt[:, part], None if mask is None else mask[:, part], h, c,
                    None if drops is None else [[(s[part], m[part]) for s, m in cell] for cell in drops], save=False,
                )
                ys.append(y)
        y = ys[0] if len(ys) == 1 else torch.cat(ys, 1)
        return y, ((h, c) if self.mixed_memory else h)

    @property
    def _fused(self) -> bool:
        """Whether the fused kernels apply: they fold the LeCun tanh into the weights."""
        return self.backbone_activation == "lecun_tanh" or self.plan.depth == 0

    def _dropping(self) -> bool:
        return self.training and self.backbone_dropout > 0.0 and self.plan.depth > 0

    def _raw_params(self) -> list[Tensor]:
        """Every parameter, in the kernels' flat order (``heads.cfc.kernels.split_cells``)."""
        params = [p for layer in self.layers for p in layer.raw_params()]
        if self.mixed_memory:
            params += [self.lstm_input.weight, self.lstm_input.bias, self.lstm_recurrent.weight]
        return params

    def _masks(self) -> list[Tensor | None]:
        return [layer.synapse_mask for layer in self.layers]

    def _prepared(self) -> kernels.Prepared:
        """Forward-ready folded weights, cached until a parameter or buffer changes (no autograd)."""
        # Read the modules' own dicts: walking self.parameters() costs tens of microseconds.
        return self._folded.get_for_modules(self._holders, self._fold)

    def _fold(self) -> kernels.Prepared:
        with torch.no_grad():
            prep = kernels.prepare(self.plan, kernels.fold(self.plan, self._raw_params(), self._masks(), False),
                                   self.in_features)
            if self._fused:  # the compiled streaming step's arguments (None where it does not apply)
                prep.compiled = streaming.pack(self.plan, prep)
            return prep

    def _dropout_masks(self, T: int, B: int, x: Tensor) -> list | None:
        """Per sub-cell, per backbone layer, (2 m, -m) with m (T, B, U) the dropout multiplier."""
        if not self._dropping():
            return None
        p = self.backbone_dropout
        masks = [[torch.bernoulli(x.new_full((T, B, lin.out_features), 1.0 - p)).div_(1.0 - p)
                  for lin in layer.backbone] for layer in self.layers]
        return [[(2.0 * m, -m) for m in cell] for cell in masks]

    def extra_repr(self) -> str:
        wired = "" if self.wiring is None else f", wiring layers={self.plan.sizes}"
        return (f"{super().extra_repr()}, mode={self.mode}, hidden_size={self.hidden_size}, "
                f"backbone_layers={self.plan.depth}, mixed_memory={self.mixed_memory}{wired}")
