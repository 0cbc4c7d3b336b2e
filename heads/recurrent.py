"""GRU and LSTM temporal heads, blind to time (``gru``, ``lstm``) or given it (``gru_dt``, ``lstm_dt``).

The weights are those of ``torch.nn.GRU`` / ``torch.nn.LSTM``, so a whole sequence runs in one fused
kernel (oneDNN on the CPU, cuDNN on the GPU), which is several times faster than a Python step loop.
``step`` computes the same cells with torch's functional ``gru_cell`` / ``lstm_cell`` on those weights.

Masks. A step the mask marks False must leave the state unchanged and output zero. Since a masked
step has no effect at all, a clip with holes is the same as the clip of its valid steps alone, moved
to the front: ``forward`` moves them there (a stable sort of each row), runs the packed sequence
(``pack_padded_sequence``) so each sample stops at its last valid step, and puts the outputs back in
their places. Every mask therefore takes the fused path; ``step`` gives the same results one at a
time (tests/heads/test_recurrent.py compares them).

Time. ``gru_dt`` and ``lstm_dt`` append ``log1p(dt)`` to the input features, ``dt`` being the
normalised time since the previous observation. The logarithm keeps the extra feature in the range
of the others: a regular stream gives log1p(1) = 0.69, a five-minute gap at 30 fps (dt = 9000) gives
9.1 where the raw dt would saturate every gate it touches; dt = 0 gives 0.

Shapes: B batch, T time, D input features, L layers, H hidden size.
State (batch-first): GRU ``h (B, L, H)``; LSTM ``(h, c)``, each ``(B, L, H)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from heads._registry import HeadError, register_head
from heads.base import State, TemporalHead, keep_where

_RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


def _check_options(name: str, hidden_size: int, num_layers: int, dropout: float) -> None:
    """Raise HeadError for options nn.GRU/nn.LSTM would reject (or take silently and misbehave)."""
    for key, value in (("hidden_size", hidden_size), ("num_layers", num_layers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HeadError(f"head {name!r}: {key} must be a positive integer, got {value!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise HeadError(f"head {name!r}: dropout must be a number in [0, 1), got {dropout!r}")


def dt_feature(dt: Tensor) -> Tensor:
    """The time input of the ``*_dt`` heads: log1p of the normalised dt (negative dt read as 0)."""
    return torch.log1p(dt.clamp_min(0.0))


class RecurrentHead(TemporalHead):
    """A GRU or LSTM head; ``use_dt`` appends ``log1p(dt)`` to the input (see the module docstring).

    Args:
        in_features: D, the size of each input vector.
        cell: ``"gru"`` or ``"lstm"``.
        hidden_size: H, also the output size.
        num_layers: stacked recurrent layers.
        dropout: dropout between stacked layers while training (torch's meaning: none after the last).
        use_dt: feed the elapsed time as an extra input feature.
    """

    def __init__(
        self,
        in_features: int,
        cell: str = "gru",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        use_dt: bool = False,
    ) -> None:
        super().__init__()
        name = cell + ("_dt" if use_dt else "")
        if cell not in _RNNS:
            raise HeadError(f"recurrent head: unknown cell {cell!r}; choose one of: {', '.join(_RNNS)}")
        _check_options(name, hidden_size, num_layers, dropout)
        if dropout > 0 and num_layers == 1:
            # torch only warns; dropout between layers cannot act on a single layer.
            raise HeadError(f"head {name!r}: dropout acts between layers and needs num_layers >= 2")
        self.in_features = in_features
        self.out_features = hidden_size
        self.time_aware = use_dt
        self.cell = cell
        self.use_dt = use_dt
        self.num_layers = num_layers
        self.dropout = float(dropout)
        self.rnn = _RNNS[cell](in_features + int(use_dt), hidden_size, num_layers, batch_first=True,
                               dropout=self.dropout)
        self._cell_fn = torch.lstm_cell if cell == "lstm" else torch.gru_cell
        self._weight_names = [
            (f"weight_ih_l{k}", f"weight_hh_l{k}", f"bias_ih_l{k}", f"bias_hh_l{k}")
            for k in range(num_layers)
        ]

    # -- state -------------------------------------------------------------------------------

    def init_state(self, batch: int, device=None, dtype=None) -> State:
        """Zeros: h (B, L, H) for a GRU, (h, c) for an LSTM."""
        h = torch.zeros(batch, self.num_layers, self.out_features, device=device, dtype=dtype)
        return (h, h.clone()) if self.cell == "lstm" else h

    def _to_torch(self, state: State):
        """Batch-first state -> torch's layer-first (L, B, H) hidden state."""
        if self.cell == "lstm":
            return tuple(s.transpose(0, 1).contiguous() for s in state)
        return state.transpose(0, 1).contiguous()

    def _from_torch(self, hx) -> State:
        """torch's (L, B, H) hidden state -> batch-first (B, L, H)."""
        if self.cell == "lstm":
            return tuple(s.transpose(0, 1) for s in hx)
        return hx.transpose(0, 1)

    def _inputs(self, x: Tensor, dt: Tensor) -> Tensor:
        """x (..., D), dt (...) -> the recurrent input (..., D) or (..., D + 1) with the time feature."""
        if not self.use_dt:
            return x
        return torch.cat([x, dt_feature(dt).unsqueeze(-1).to(x.dtype)], dim=-1)

    # -- one step ----------------------------------------------------------------------------

    def step(self, x: Tensor, dt: Tensor, state: State) -> tuple[Tensor, State]:
        """One observation. x (B, D), dt (B, 1) -> y (B, H), new state."""
        inp = self._inputs(x, dt.reshape(-1))
        lstm = self.cell == "lstm"
        hs, cs = [], []
        for k, names in enumerate(self._weight_names):
            weights = [getattr(self.rnn, n) for n in names]
            if lstm:
                h, c = self._cell_fn(inp, (state[0][:, k], state[1][:, k]), *weights)
                cs.append(c)
            else:
                h = self._cell_fn(inp, state[:, k], *weights)
            hs.append(h)
            inp = h
            if self.dropout and k < self.num_layers - 1:
                inp = F.dropout(inp, self.dropout, self.training)
        h_all = torch.stack(hs, dim=1)
        return h, ((h_all, torch.stack(cs, dim=1)) if lstm else h_all)

    # -- a sequence --------------------------------------------------------------------------

    def sequence(self, x: Tensor, dt: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """A sequence in one fused call. x (B, T, D), dt (B, T), mask (B, T) -> y (B, T, H), final state."""
        inp = self._inputs(x, dt)
        if mask is None:
            y, hx = self.rnn(inp, self._to_torch(state))
            return y, self._from_torch(hx)
        return self._forward_masked(inp, mask, state)

    def _forward_masked(self, inp: Tensor, mask: Tensor, state: State) -> tuple[Tensor, State]:
        """inp (B, T, D'), mask (B, T) with some False -> y (B, T, H), state after each last valid step."""
        steps = inp.shape[1]
        lengths = mask.sum(dim=1)
        prefix = torch.arange(steps, device=mask.device) < lengths.unsqueeze(1)
        order = None
        if not bool((mask == prefix).all()):
            # Holes: bring each row's valid steps to the front, keeping their order.
            order = torch.sort((~mask).to(torch.uint8), dim=1, stable=True).indices
            inp = inp.gather(1, order.unsqueeze(-1).expand_as(inp))
        # pack_padded_sequence refuses length 0; such rows are run on one step and restored below.
        packed = pack_padded_sequence(inp, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
        out, hx = self.rnn(packed, self._to_torch(state))
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)  # zeros past each length
        if order is not None:
            y = torch.zeros_like(y).scatter(1, order.unsqueeze(-1).expand_as(y), y)
        new_state = self._from_torch(hx)
        empty = lengths == 0
        if bool(empty.any()):
            new_state = keep_where(~empty, new_state, state)
            y = y * (~empty).to(y.dtype).view(-1, 1, 1)
        return y, new_state

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, cell={self.cell}, num_layers={self.num_layers}, "
                f"dropout={self.dropout}")


@register_head("gru", time_aware=False, description="torch GRU (one fused kernel per sequence); ignores dt")
def gru(in_features: int, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0) -> RecurrentHead:
    """A GRU head that takes dt and ignores it: hidden_size H (= out_features), num_layers, dropout."""
    return RecurrentHead(in_features, "gru", hidden_size, num_layers, dropout, use_dt=False)


@register_head("lstm", time_aware=False, description="torch LSTM (one fused kernel per sequence); ignores dt")
def lstm(in_features: int, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0) -> RecurrentHead:
    """An LSTM head that takes dt and ignores it: hidden_size H (= out_features), num_layers, dropout."""
    return RecurrentHead(in_features, "lstm", hidden_size, num_layers, dropout, use_dt=False)


@register_head("gru_dt", time_aware=True, description="torch GRU with log1p(dt) appended to its input")
def gru_dt(
    in_features: int, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0
) -> RecurrentHead:
    """A GRU head given log1p(dt) as one extra input feature: the baseline for irregular timing."""
    return RecurrentHead(in_features, "gru", hidden_size, num_layers, dropout, use_dt=True)


@register_head("lstm_dt", time_aware=True, description="torch LSTM with log1p(dt) appended to its input")
def lstm_dt(
    in_features: int, hidden_size: int = 64, num_layers: int = 1, dropout: float = 0.0
) -> RecurrentHead:
    """An LSTM head given log1p(dt) as one extra input feature: the baseline for irregular timing."""
    return RecurrentHead(in_features, "lstm", hidden_size, num_layers, dropout, use_dt=True)
