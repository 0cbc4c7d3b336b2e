"""AEDAT 4 and Event Stream (.es) files, decoded and encoded by faery.

AEDAT 4: a container of streams (events, frames, IMU, triggers); we read the first stream whose type
is events, whatever comes before it, and take the sensor size from that stream's description. Times
are absolute Unix microseconds.

Event Stream: DVS and ATIS event types (ATIS exposure measurements are dropped, change events kept).
ES counts y from the bottom row; like faery we flip it so that y = 0 is the top row, which makes
files written by faery (and by us) round-trip. ES stores times from zero with no offset field, so our
writer keeps absolute times by encoding the gap before the first event (about 8 kB per second of gap)
and refuses a first time later than ``ES_MAX_START_US``.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize
from data.io._base import EventReader
from data.io._faery import faery_write, from_faery, from_faery_packets
from data.io._registry import register_format, register_writer

AEDAT4_MAGIC = b"#!AER-DAT4.0"
ES_MAGIC = b"Event Stream"
ES_MAX_START_US = 600_000_000  # 10 minutes: ~5 MB of time padding in the file
ES_EVENT_TYPES = ("dvs", "atis")


@register_format(
    "aedat4", suffixes=(".aedat4", ".aedat"), sniff=lambda head: head.startswith(AEDAT4_MAGIC),
    description="AEDAT 4.0 (iniVation DV)",
)
class Aedat4Reader(EventReader):
    """AEDAT 4 through faery; the events stream is picked by type."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from faery.extension import aedat

        with aedat.Decoder(path) as decoder:
            tracks = decoder.tracks()
        events_tracks = [track for track in tracks if track.data_type == "events"]
        if not events_tracks:
            kinds = ", ".join(f"{track.id}: {track.data_type}" for track in tracks) or "none"
            raise DataError(f"{path}: the AEDAT 4 file holds no events stream (streams {kinds})")
        self.track_id = events_tracks[0].id
        if events_tracks[0].dimensions is not None:
            self.declared_size = tuple(int(v) for v in events_tracks[0].dimensions)  # type: ignore[assignment]

    def _packets(self) -> Iterator[np.ndarray]:
        from faery.extension import aedat

        with aedat.Decoder(self.path) as decoder:
            for track, packet in decoder:
                if track.id == self.track_id and len(packet):  # type: ignore[arg-type]
                    yield packet  # type: ignore[misc]

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        for packet in self._packets():
            yield from_faery(packet)

    def read_all(self) -> Events:
        return from_faery_packets(list(self._packets()))


@register_writer("aedat4")
def write_aedat4(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """AEDAT 4 with one LZ4-compressed events stream, through faery."""
    if len(events) and events["t"][0] < 0:
        raise DataError(f"{path}: AEDAT 4 cannot store negative times (first t {events['t'][0]} us)")
    faery_write(path, events, sensor_size, "aedat")


@register_format("es", suffixes=(".es",), sniff=lambda head: head.startswith(ES_MAGIC), description="Event Stream")
class EventStreamReader(EventReader):
    """Event Stream (DVS or ATIS) through faery; y flipped to count from the top row."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from faery.extension import es

        with es.Decoder(path, 0) as decoder:
            self.event_type = decoder.event_type
            dimensions = decoder.dimensions
        if self.event_type not in ES_EVENT_TYPES:
            raise DataError(
                f"{path}: Event Stream type {self.event_type!r} is not supported "
                f"(supported: {', '.join(ES_EVENT_TYPES)})"
            )
        if dimensions is None:
            raise DataError(f"{path}: the Event Stream header gives no sensor size")
        self.declared_size = (int(dimensions[0]), int(dimensions[1]))

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        from faery.extension import es

        top = self.declared_size[1] - 1  # type: ignore[index]
        with es.Decoder(self.path, 0) as decoder:
            for packet in decoder:
                if self.event_type == "atis":
                    packet = packet[~packet["exposure"]]
                if not len(packet):
                    continue
                events = np.empty(len(packet), dtype=EVENT_DTYPE)
                events["t"] = packet["t"]
                events["x"] = packet["x"]
                # A y beyond the header's height wraps here; the caller's coordinate check catches it.
                events["y"] = top - packet["y"].astype(np.int64)
                events["p"] = packet["polarity" if self.event_type == "atis" else "on"]
                yield events


@register_writer("es")
def write_es(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """Event Stream 2 (DVS type) through faery, times kept absolute (see the module docstring)."""
    if len(events) and not 0 <= events["t"][0] <= ES_MAX_START_US:
        raise DataError(
            f"{path}: Event Stream stores times from 0 with no offset field; the first event is at "
            f"{events['t'][0]} us, outside 0..{ES_MAX_START_US} us: subtract the start time first"
        )
    faery_write(path, events, sensor_size, "es", zero_t0=False)
