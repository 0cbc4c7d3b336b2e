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

import struct
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


def _check_aedat4_layout(path: Path) -> None:
    """Check the lengths faery will trust before it allocates from them; DataError when one lies.

    faery 0.7.1 allocates (and zero-fills) buffers of the sizes the file states, the header's and
    every packet's (up to 4 GiB each), before reading them, and parses the IOHeader flatbuffer
    without verifying it. So a corrupt length or header offset costs gigabytes or aborts the
    process. This walks the same path faery does: the header, then packet headers (track id, byte
    length) up to the header's file_data_position (or the end of the file).
    """
    size = path.stat().st_size
    with open(path, "rb") as file:
        start = file.read(18)  # "#!AER-DAT4.0\r\n" and the header length
        if len(start) < 18:
            raise DataError(f"{path}: truncated AEDAT 4 file: {size} bytes, no complete header")
        (length,) = struct.unpack_from("<I", start, 14)
        if 18 + length > size:
            raise DataError(f"{path}: corrupt AEDAT 4 header: it states {length} bytes, the file has {size - 18}")
        header = file.read(length)
        data_position = _ioheader_data_position(path, header)
        position = 18 + length
        while not (data_position > -1 and position == data_position) and position + 8 <= size:
            file.seek(position)
            _, packet = struct.unpack("<II", file.read(8))
            if position + 8 + packet > size:
                raise DataError(
                    f"{path}: truncated or corrupt AEDAT 4 file: the packet at byte {position} states "
                    f"{packet} bytes, past the end of the file ({size} bytes)"
                )
            position += 8 + packet


def _ioheader_data_position(path: Path, buffer: bytes) -> int:
    """file_data_position from the IOHeader flatbuffer, every offset checked (faery checks none)."""

    def read(fmt: str, at: int) -> int:
        if at < 0 or at + struct.calcsize(fmt) > len(buffer):
            raise DataError(f"{path}: corrupt AEDAT 4 header: an offset points outside it")
        return struct.unpack_from(fmt, buffer, at)[0]

    table = read("<I", 0)
    vtable = table - read("<i", table)
    vtable_size = read("<H", vtable)
    read("<B", vtable + vtable_size - 1) if vtable_size else None

    def field(index: int) -> int:  # the field's offset in the table, 0 when absent
        return read("<H", vtable + 4 + 2 * index) if 4 + 2 * index + 2 <= vtable_size else 0

    if field(0):
        read("<i", table + field(0))  # compression
    position = read("<q", table + field(1)) if field(1) else -1
    if field(2):  # description: an offset to a length-prefixed string, which must be UTF-8
        text = table + field(2) + read("<I", table + field(2))
        length = read("<I", text)
        read("<B", text + 4 + length - 1) if length else None
        try:  # faery 0.7.1 aborts the process (a panic during cleanup) on invalid UTF-8 here
            buffer[text + 4 : text + 4 + length].decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataError(f"{path}: corrupt AEDAT 4 header: the description is not UTF-8 ({error})") from None
    return position


@register_format(
    "aedat4", suffixes=(".aedat4", ".aedat"), sniff=lambda head: head.startswith(AEDAT4_MAGIC),
    description="AEDAT 4.0 (iniVation DV)",
)
class Aedat4Reader(EventReader):
    """AEDAT 4 through faery; the events stream is picked by type."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        from faery.extension import aedat

        _check_aedat4_layout(path)
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
