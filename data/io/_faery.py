"""Conversions between faery's event arrays and ours, and faery's file encoder behind our writers.

faery (Rust) decodes AEDAT 4, ES and Prophesee EVT; its packets are structured arrays
``t <u8, x <u2, y <u2, on ?`` (``faery.EVENTS_DTYPE``).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize

FAERY_DTYPE = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
_WRITE_BLOCK = 1 << 20  # events handed to faery's encoder at a time


def from_faery(packet: np.ndarray) -> Events:
    """Canonical events from one faery packet, shape (N,)."""
    events = np.empty(len(packet), dtype=EVENT_DTYPE)
    events["x"] = packet["x"]
    events["y"] = packet["y"]
    events["t"] = packet["t"]  # u8 -> i8: microseconds stay far below 2**63
    events["p"] = packet["on"]
    return events


def from_faery_packets(packets: list[np.ndarray]) -> Events:
    """Canonical events from a list of faery packets, converted straight into one array (N,)."""
    events = np.empty(sum(len(packet) for packet in packets), dtype=EVENT_DTYPE)
    start = 0
    for packet in packets:  # one pass: no concatenated intermediate in faery's layout
        part = events[start : start + len(packet)]
        part["x"], part["y"], part["t"], part["p"] = packet["x"], packet["y"], packet["t"], packet["on"]
        start += len(packet)
    return events


def to_faery(events: Events) -> np.ndarray:
    """faery's packet layout from canonical events (t must be >= 0), shape (N,)."""
    packet = np.empty(len(events), dtype=FAERY_DTYPE)
    packet["t"] = events["t"]
    packet["x"] = events["x"]
    packet["y"] = events["y"]
    packet["on"] = events["p"] > 0
    return packet


def _blocks(events: Events) -> Iterator[np.ndarray]:
    for start in range(0, len(events), _WRITE_BLOCK):
        yield to_faery(events[start : start + _WRITE_BLOCK])


def faery_write(
    path: Path, events: Events, sensor_size: SensorSize, file_type: str, **options: object
) -> None:
    """Write events with faery's encoder to exactly ``path`` (our caller handles the atomic rename)."""
    from faery import file_encoder

    # Guard even when called directly: given a backward step, faery's EVT 2.0 encoder pads time
    # words without end and fills the disk.
    t = events["t"]
    if len(t) and (t[0] < 0 or (len(t) > 1 and bool((t[1:] < t[:-1]).any()))):
        raise DataError(f"{path}: faery's encoders need times >= 0 in non-decreasing order")

    stream: Iterable[np.ndarray] = _blocks(events)
    file_encoder.events_to_file(
        stream=stream,
        path=path,
        dimensions=tuple(sensor_size),
        file_type=file_type,
        use_write_suffix=False,
        **options,
    )
