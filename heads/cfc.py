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

``forward`` runs the whole sequence in a fused kernel (``heads._cfc_kernels``) with a hand-written
backward. ``step`` without autograd (streaming) runs a lean kernel step on folded weights cached
until a parameter changes; with autograd it is ``reference_step``, the plain per-step math that
every fast path is tested against. The kernels fold the LeCun tanh into their weights: a backbone
with another activation (tanh, relu, silu, gelu; there for models converted from ncps) runs
``reference_step`` in every case, slower but the same math.
"""
from __future__ import annotations

import math
from itertools import chain

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from heads import _cfc_kernels as kernels
from heads._registry import HeadError, register_head
from heads.base import State, TemporalHead
from heads.interop import register_ncps_converter
from heads.wirings import Wiring, create_wiring, from_ncps_wiring, list_wirings

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


def _resolve_wiring(in_features: int, hidden_size: int | None, wiring, wiring_kwargs: dict | None) -> Wiring | None:
    if wiring is None:
        if wiring_kwargs:
            raise HeadError("cfc: wiring_kwargs needs wiring= (one of: " + ", ".join(list_wirings()) + ")")
        return None
    if isinstance(wiring, str):
        if wiring not in list_wirings():
            raise HeadError(f"cfc: unknown wiring {wiring!r}; choose one of: {', '.join(list_wirings())}")
        return create_wiring(wiring, in_features, 64 if hidden_size is None else hidden_size, **(wiring_kwargs or {}))
    if isinstance(wiring, Wiring):
        if wiring_kwargs:
            raise HeadError("cfc: wiring_kwargs only applies when wiring is a kind name")
        if hidden_size is not None and hidden_size != wiring.units:
            raise HeadError(f"cfc: hidden_size={hidden_size} but the wiring has {wiring.units} units")
        if wiring.in_features != in_features:
            raise HeadError(f"cfc: the wiring takes {wiring.in_features} inputs but in_features={in_features}")
        return wiring
    raise HeadError(f"cfc: wiring must be None, a Wiring or one of: {', '.join(list_wirings())}; got {wiring!r}")


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
        self.wiring = _resolve_wiring(in_features, hidden_size, wiring, wiring_kwargs)
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
        self._cache: tuple | None = None  # (parameter versions, kernels.Prepared) for no-grad calls
        # Modules holding tensors (the tree is fixed after construction); a plain tuple.
        self._holders = tuple(m for m in self.modules() if m._parameters or m._buffers)

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """Zeros: h (B, N), or (h, c) with mixed memory."""
        dtype = dtype or self.layers[0].heads.weight.dtype
        device = device or self.layers[0].heads.weight.device
        h = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return (h, torch.zeros_like(h)) if self.mixed_memory else h

    def step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """x (B, D), dt (B, 1) -> y (B, H), new state.

        Without autograd (streaming inference) this runs the lean kernel step on cached folded
        weights; with autograd, the plain per-step math (``reference_step``).
        """
        if torch.is_grad_enabled() or self._dropping() or not self._fused:
            return self.reference_step(x, dt, state)
        h, c = state if self.mixed_memory else (state, None)
        if dt.dtype != x.dtype:
            dt = dt.to(x.dtype)
        y, h, c = kernels.run_step(self.plan, self._prepared(), x, dt, h, c)
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

    def forward(self, x: Tensor, dt: Tensor | None = None, state: State | None = None,
                mask: Tensor | None = None) -> tuple[Tensor, State]:
        """x (B, T, D), dt (B, T), mask (B, T) -> y (B, T, H), final state (fused kernel)."""
        if not self._fused:
            return super().forward(x, dt, state, mask)
        x, dt, state = self.prepare(x, dt, state)
        B, T = x.shape[:2]
        if mask is not None:
            if mask.shape != (B, T):
                raise ValueError(f"cfc: expected mask of shape ({B}, {T}), got {tuple(mask.shape)}")
            mask = mask.to(device=x.device, dtype=torch.bool)
            if bool(mask.all()):
                mask = None
        h, c = state if self.mixed_memory else (state, None)
        if T == 0:
            return x.new_zeros(B, 0, self.out_features), state
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
        """Every parameter, in the kernels' flat order (``heads._cfc_kernels.split_cells``)."""
        params = [p for layer in self.layers for p in layer.raw_params()]
        if self.mixed_memory:
            params += [self.lstm_input.weight, self.lstm_input.bias, self.lstm_recurrent.weight]
        return params

    def _masks(self) -> list[Tensor | None]:
        return [layer.synapse_mask for layer in self.layers]

    def _prepared(self) -> kernels.Prepared:
        """Forward-ready folded weights, cached until a parameter or buffer changes (no autograd)."""
        # Read the modules' own dicts: walking self.parameters() costs tens of microseconds.
        key = [(t.data_ptr(), t._version) for m in self._holders
               for t in chain(m._parameters.values(), m._buffers.values()) if t is not None]
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                prep = kernels.prepare(self.plan, kernels.fold(self.plan, self._raw_params(), self._masks(), False),
                                       self.in_features)
            self._cache = (key, prep)
        return self._cache[1]

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


# ---------------------------------------------------------------------------------------------
# ncps converters (modules are read through their attributes; ncps is never imported here).
# ---------------------------------------------------------------------------------------------


def _copy(dst: Tensor, src: Tensor, what: str) -> None:
    if dst.shape != src.shape:
        raise HeadError(f"from_ncps: {what} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(src.detach().to(dst.dtype))


def _copy_heads(layer: _CfCLayer, cell: nn.Module, mask: Tensor | None) -> None:
    """ff1, ff2, time_a, time_b (or ff1 alone in pure mode) of an ncps CfCCell into ``layer.heads``."""
    names = ["ff1"] if layer.mode == "pure" else ["ff1", "ff2", "time_a", "time_b"]
    weights = [getattr(cell, name).weight for name in names]
    if mask is not None:  # ncps masks f1 and f2 only
        weights = [w * mask if name in ("ff1", "ff2") else w for w, name in zip(weights, names)]
    _copy(layer.heads.weight, torch.cat(weights, 0), "the heads weight")
    _copy(layer.heads.bias, torch.cat([getattr(cell, name).bias for name in names], 0), "the heads bias")
    if layer.mode == "pure":
        _copy(layer.w_tau, cell.w_tau.reshape(-1), "w_tau")
        _copy(layer.amplitude, cell.A.reshape(-1), "A")


# the classes ncps's CfCCell builds for its backbone_activation names
_NCPS_ACTIVATIONS = {"LeCun": "lecun_tanh", "Tanh": "tanh", "ReLU": "relu", "SiLU": "silu", "GELU": "gelu"}


def _cfc_from_cell(cell: nn.Module, mixed: bool) -> CfC:
    """Our head for an ncps CfCCell (dense)."""
    if getattr(cell, "sparsity_mask", None) is not None:
        raise HeadError("from_ncps: a CfCCell with a sparsity_mask is not supported; convert the WiredCfCCell")
    depth = int(cell.backbone_layers)
    modules = list(cell.backbone) if depth else []
    linears = [m for m in modules if isinstance(m, nn.Linear)]
    activations = {type(m).__name__ for m in modules if not isinstance(m, (nn.Linear, nn.Dropout))}
    unknown = activations - set(_NCPS_ACTIVATIONS)
    if unknown or len(activations) > 1:
        raise HeadError(f"from_ncps: backbone activation {', '.join(sorted(activations))} is not supported; "
                        f"supported: {', '.join(_NCPS_ACTIVATIONS.values())}")
    activation = _NCPS_ACTIVATIONS[activations.pop()] if activations else "lecun_tanh"
    dropout = max((m.p for m in modules if isinstance(m, nn.Dropout)), default=0.0)
    head = CfC(int(cell.input_size), int(cell.hidden_size), mode=cell.mode,
               backbone_units=linears[0].out_features if depth else None, backbone_layers=depth,
               backbone_dropout=dropout, backbone_activation=activation, mixed_memory=mixed)
    ours = head.layers[0]
    for j, (dst, src) in enumerate(zip(ours.backbone, linears)):
        _copy(dst.weight, src.weight, f"backbone Linear {j} weight")
        _copy(dst.bias, src.bias, f"backbone Linear {j} bias")
    _copy_heads(ours, cell, None)
    return head


def _cfc_from_wired_cell(cell: nn.Module, mixed: bool) -> CfC:
    """Our head for an ncps WiredCfCCell: one sub-cell per wiring layer."""
    wiring = from_ncps_wiring(cell._wiring)
    head = CfC(wiring.in_features, mode=cell._layers[0].mode, mixed_memory=mixed, wiring=wiring)
    for k, (ours, theirs) in enumerate(zip(head.layers, cell._layers)):
        mask = theirs.sparsity_mask.detach()
        rows = mask.shape[0]
        if not torch.equal(mask.to(ours.synapse_mask.dtype), ours.synapse_mask[:rows]):
            raise HeadError(f"from_ncps: the sparsity mask of wiring layer {k} does not match the wiring")
        _copy_heads(ours, theirs, mask)
    return head


@register_ncps_converter("CfCCell")
def from_ncps_cfc_cell(cell: nn.Module) -> CfC:
    """An ncps ``CfCCell`` (its ``forward(x, h, t)`` with t (B, 1) equals our ``step``)."""
    return _cfc_from_cell(cell, mixed=False)


@register_ncps_converter("WiredCfCCell")
def from_ncps_wired_cfc_cell(cell: nn.Module) -> CfC:
    """An ncps ``WiredCfCCell`` (state in wiring-layer order, as ncps keeps it)."""
    return _cfc_from_wired_cell(cell, mixed=False)


@register_ncps_converter("CfC")
def from_ncps_cfc(module: nn.Module) -> CfC:
    """An ncps ``CfC`` wrapper: its cell, and its LSTM with mixed memory; a projection is refused."""
    if isinstance(getattr(module, "fc", None), nn.Linear) or getattr(module, "proj_size", None) is not None:
        raise HeadError("from_ncps: a CfC with proj_size is not supported; convert it without the projection "
                        "and put the Linear in the task layer")
    mixed = bool(getattr(module, "use_mixed", False))
    cell = module.rnn_cell
    convert = _cfc_from_wired_cell if type(cell).__name__ == "WiredCfCCell" else _cfc_from_cell
    head = convert(cell, mixed)
    if mixed:
        _copy(head.lstm_input.weight, module.lstm.input_map.weight, "the LSTM input weight")
        _copy(head.lstm_input.bias, module.lstm.input_map.bias, "the LSTM input bias")
        _copy(head.lstm_recurrent.weight, module.lstm.recurrent_map.weight, "the LSTM recurrent weight")
    return head
