"""The peer implementations the heads benchmark compares against, behind our head interface.

Each adapter has ``forward(x (B, T, D), dt (B, T)) -> (y (B, T, H), state)``, ``init_state(batch)``
and ``step(x (B, D), dt (B, 1), state)``, written the way a user of that library would drive it.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class NcpsCell(nn.Module):
    """An ncps cell driven step by step, the elapsed time shaped (B, 1).

    The ncps ``CfC``/``LTC`` wrappers squeeze batched timespans to (B,), which breaks for B > 1
    (ncps 1.0.1), so the cells are driven directly, as ncps's wrappers would with a fixed time.
    """

    def __init__(self, cell: nn.Module, state_size: int):
        super().__init__()
        self.cell = cell
        self.state_size = state_size

    @classmethod
    def cfc(cls, features: int, hidden: int) -> "NcpsCell":
        from ncps.torch import CfCCell

        return cls(CfCCell(features, hidden), hidden)

    @classmethod
    def ltc(cls, features: int, hidden: int) -> "NcpsCell":
        from ncps.torch import LTCCell
        from ncps.wirings import FullyConnected

        return cls(LTCCell(FullyConnected(hidden), features), hidden)

    def init_state(self, batch: int) -> Tensor:
        return torch.zeros(batch, self.state_size)

    def step(self, x: Tensor, dt: Tensor, state: Tensor):
        return self.cell(x, state, dt)

    def forward(self, x: Tensor, dt: Tensor):
        state = self.init_state(x.shape[0])
        outputs = []
        for t in range(x.shape[1]):
            y, state = self.cell(x[:, t], state, dt[:, t : t + 1])
            outputs.append(y)
        return torch.stack(outputs, dim=1), state


class TorchRNN(nn.Module):
    """torch.nn.GRU / LSTM over the whole sequence in one call (oneDNN kernel); dt is ignored."""

    def __init__(self, kind: str, features: int, hidden: int):
        super().__init__()
        self.kind = kind
        self.hidden = hidden
        self.rnn = (nn.GRU if kind == "gru" else nn.LSTM)(features, hidden, batch_first=True)

    def init_state(self, batch: int):
        h = torch.zeros(1, batch, self.hidden)
        return h if self.kind == "gru" else (h, torch.zeros_like(h))

    def step(self, x: Tensor, dt: Tensor, state):
        y, state = self.rnn(x.unsqueeze(1), state)
        return y[:, 0], state

    def forward(self, x: Tensor, dt: Tensor):
        return self.rnn(x)


class SnntorchLeaky(nn.Module):
    """A Linear layer into an snntorch Leaky neuron, membrane passed explicitly; dt is ignored."""

    def __init__(self, features: int, hidden: int):
        super().__init__()
        import snntorch

        self.fc = nn.Linear(features, hidden)
        self.lif = snntorch.Leaky(beta=0.9)
        self.hidden = hidden

    def init_state(self, batch: int) -> Tensor:
        return torch.zeros(batch, self.hidden)

    def step(self, x: Tensor, dt: Tensor, mem: Tensor):
        spk, mem = self.lif(self.fc(x), mem)
        return spk, mem

    def forward(self, x: Tensor, dt: Tensor):
        mem = self.init_state(x.shape[0])
        current = self.fc(x)  # (B, T, H): the Linear runs once over all steps, as a user would write it
        spikes = []
        for t in range(x.shape[1]):
            spk, mem = self.lif(current[:, t], mem)
            spikes.append(spk)
        return torch.stack(spikes, dim=1), mem
