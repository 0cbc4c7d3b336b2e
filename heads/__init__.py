"""Temporal heads: liquid (CfC, LTC), spiking, GRU, LSTM and none, behind one registry.

>>> from heads import create_head, list_heads
>>> head = create_head("cfc", in_features=64, hidden_size=64)
>>> y, state = head(x, dt)            # x (B, T, 64), dt (B, T) -> y (B, T, head.out_features)
"""
from heads._registry import HeadEntry, HeadError, create_head, head_entry, list_heads, register_head
from heads.base import State, TemporalHead

# Importing the variant modules registers them.
from heads import cfc, ltc, recurrent, spiking, none  # noqa: E402,F401  (registration side effects)
from heads.interop import from_ncps  # noqa: E402
from heads.wirings import Wiring, create_wiring, list_wirings  # noqa: E402

__all__ = [
    "HeadEntry",
    "HeadError",
    "State",
    "TemporalHead",
    "Wiring",
    "create_head",
    "create_wiring",
    "from_ncps",
    "head_entry",
    "list_heads",
    "list_wirings",
    "register_head",
]
