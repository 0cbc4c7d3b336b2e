"""Prophesee files: RAW (EVT 2.0, 3.0) and DAT, both starting with ASCII ``%`` header lines.

RAW: the header names the encoding (``% evt 3.0`` or ``% format EVT3;width=..;height=..``) and, in
recent files, the geometry. Older files name only the camera plugin; the sensor size then comes from
the caller, else from the plugin (``PLUGIN_SIZES``). Times count microseconds from the camera's start
(plus ``% t0`` when faery wrote the file). EVT 3.0 is decoded by ``data.io.evt3`` (numpy; faery
0.7.1 loses the 24-bit time wraps), EVT 2.0 by faery; EVT 2.1 is refused (DataError). Repair: the
times are clamped to their running maximum, as the reference decode does; Prophesee RAW is the only
format where backward steps are repaired rather than rejected.

DAT: header lines, then one byte event type and one byte event size (8), then 8-byte records:
``uint32 t`` and ``uint32`` packed ``x`` (14 bits), ``y`` (14 bits), polarity (4 bits) in version 2
(version 1: x 9 bits, y 8 bits, polarity at bit 17). Both the 'cd' (0x0C) and the older '2d' (0x00)
types are read (faery refuses '2d'). uint32 times wrap after 71.6 minutes: a backward step of more
than 2**31 us is taken as a wrap and unwrapped; any other backward step is rejected (DataError).
The sensor size comes from ``% Width`` / ``% Height`` (or ``% geometry``) when present.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize
from data.io._base import EventReader, check_body_length, concat, empty_events, read_head
from data.io.evt3 import Evt3State, decode_evt3
from data.io._faery import faery_write, from_faery, from_faery_packets
from data.io._registry import register_format, register_writer

# Camera plugins named in RAW headers -> sensor (width, height), matched as substrings.
PLUGIN_SIZES: dict[str, SensorSize] = {
    "gen3": (640, 480),  # hal_plugin_gen3_fx3, gen31: VGA
    "gen41": (1280, 720),  # hal_plugin_gen41_evk3: IMX636 HD
    "gen4": (1280, 720),
    "imx636": (1280, 720),
}
# EVT versions: header value -> (faery's name, bytes per word). EVT 2.1 is not among them: faery
# 0.7.1 does not implement it (it panics) and we have no sample to check a decoder of ours against.
EVT_VERSIONS: dict[str, tuple[str, int]] = {
    "2.0": ("evt2", 4), "evt2": ("evt2", 4),
    "3.0": ("evt3", 2), "evt3": ("evt3", 2),
}
# DAT event types that hold change-detection events; others (triggers, IMU) are refused.
DAT_EVENT_TYPES: dict[int, str] = {0x00: "2d", 0x0C: "cd"}
DAT_RECORD = np.dtype([("t", "<u4"), ("w", "<u4")])
# DAT version -> (x mask, y shift, y mask, polarity shift, polarity mask).
DAT_LAYOUTS: dict[int, tuple[int, int, int, int, int]] = {
    1: (0x1FF, 9, 0xFF, 17, 0x1),
    2: (0x3FFF, 14, 0x3FFF, 28, 0xF),
}
_MAX_HEADER = 1 << 20
_SIZE_RE = re.compile(r"(\d+)\s*x\s*(\d+)")


def parse_header(path: Path) -> tuple[dict[str, str], int]:
    """Read the ``%`` header lines of a Prophesee file.

    Returns:
        The lines as {lower-case key: value} (``% key value``) and the byte offset where data starts.
    """
    fields: dict[str, str] = {}
    offset = 0
    with open(path, "rb") as file:
        while offset < _MAX_HEADER:
            line = file.readline(4096)
            if line.startswith(b"%") and not line.endswith(b"\n") and len(line) < 4096:
                raise DataError(f"{path}: the header is cut off at byte {offset + len(line)} (truncated file?)")
            # A data byte may be '%' by chance: a header line also ends in a newline and is text.
            if not line.startswith(b"%") or not line.endswith(b"\n"):
                break
            try:
                text = line.decode("utf-8").strip("% \r\n")
            except UnicodeDecodeError:
                raise DataError(f"{path}: corrupt header line at byte {offset}: {line[:60]!r}") from None
            offset += len(line)
            key, _, value = text.partition(" ")
            fields.setdefault(key.lower(), value.strip())
            if text == "end":
                break
    return fields, offset


def _header_fields(head: bytes) -> dict[str, str]:
    fields = {}
    for line in head.split(b"\n")[:-1]:
        if not line.startswith(b"%"):
            break
        key, _, value = line.decode("latin-1").strip("% \r").partition(" ")
        fields[key.lower()] = value.strip()
    return fields


def _sniff_raw(head: bytes) -> bool:
    fields = _header_fields(head)
    return "evt" in fields or fields.get("format", "").upper().startswith("EVT")


def _sniff_dat(head: bytes) -> bool:
    fields = _header_fields(head)
    return not _sniff_raw(head) and ("data" in fields or "version" in fields)


def _geometry(fields: dict[str, str]) -> SensorSize | None:
    """The sensor size a Prophesee header states, if any."""
    options = dict(part.partition("=")[::2] for part in fields.get("format", "").split(";")[1:])
    geometry = _SIZE_RE.fullmatch(fields.get("geometry", ""))
    for width, height in (
        (options.get("width"), options.get("height")),
        (fields.get("width"), fields.get("height")),
        geometry.groups() if geometry else (None, None),
    ):
        if width and height and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0:
            return int(width), int(height)
    return None


@register_format("raw", suffixes=(".raw",), sniff=_sniff_raw, description="Prophesee RAW (EVT 2.0, 3.0)")
class RawReader(EventReader):
    """Prophesee RAW: EVT 3.0 decoded here (``data.io.evt3``), EVT 2.0 by faery; times clamped."""

    repair_time = True

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        fields, self.data_offset = parse_header(path)
        version = fields.get("evt") or fields.get("format", "").split(";")[0].lower()
        if version not in EVT_VERSIONS:
            raise DataError(
                f"{path}: the RAW header names no supported EVT version (got {version!r}; "
                f"supported: evt 2.0, 3.0)"
            )
        self.version, word = EVT_VERSIONS[version]
        self.body_bytes = path.stat().st_size - self.data_offset
        check_body_length(path, self.body_bytes, word, f"{self.version} stream")
        t0 = fields.get("t0", "0")
        if not t0.isdigit():
            raise DataError(f"{path}: the RAW header has an invalid t0 {t0!r}")
        self.t0 = int(t0)  # faery writes the first time here and stores times relative to it
        self.declared_size = _geometry(fields)
        plugin = fields.get("plugin_name", "")
        for key, size in PLUGIN_SIZES.items():
            if key in plugin:
                self.fallback_size, self.fallback_note = size, f"the camera plugin {plugin}"
                break

    def _faery_packets(self) -> Iterator[np.ndarray]:
        from faery.extension import evt

        # faery rejects coordinates beyond its fallback size; we check against ours afterwards.
        with evt.Decoder(self.path, ((1 << 16) - 1, (1 << 16) - 1), self.version) as decoder:
            for packet in decoder:
                events = packet.get("events")
                if events is not None and len(events):
                    yield events

    def _evt3_chunks(self, words_per_block: int) -> Iterator[Events]:
        state = Evt3State()
        with open(self.path, "rb") as file:
            file.seek(self.data_offset)
            while True:
                words = np.fromfile(file, dtype="<u2", count=words_per_block)
                if not len(words):
                    return
                events = decode_evt3(words, state)
                if self.t0:
                    events["t"] += self.t0
                yield events

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        if self.version == "evt3":
            yield from self._evt3_chunks(max(chunk_size, 1 << 12))
            return
        for packet in self._faery_packets():
            yield from_faery(packet)

    def read_all(self) -> Events:
        if self.version == "evt3":
            return concat(list(self._evt3_chunks(1 << 22)))
        return from_faery_packets(list(self._faery_packets()))


@register_writer("raw")
def write_raw(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """EVT 2.0 through faery, the first time in the header (``% t0``), so times may be absolute.

    EVT 2.0 rather than 3.0: its 28-bit TIME_HIGH spans 4.8 hours, while EVT 3.0's 24-bit time wraps
    every 16.8 s and faery's EVT 3.0 encoder writes no TIME_HIGH words across a gap between events,
    so any decoder loses the wraps in a gap longer than a few seconds.
    """
    if len(events) and events["t"][0] < 0:
        raise DataError(f"{path}: RAW cannot store negative times (first t {events['t'][0]} us)")
    faery_write(path, events, sensor_size, "evt", version="evt2", zero_t0=True)


@register_format("dat", suffixes=(".dat",), sniff=_sniff_dat, description="Prophesee DAT ('cd' or '2d')")
class DatReader(EventReader):
    """Prophesee DAT, decoded with numpy (faery refuses the older '2d' type)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        fields, offset = parse_header(path)
        kind = read_head(path, offset + 2)[offset:]
        if len(kind) < 2:
            raise DataError(f"{path}: truncated DAT file: the header ends before the event type and size")
        event_type, event_size = kind[0], kind[1]
        if event_type not in DAT_EVENT_TYPES:
            raise DataError(
                f"{path}: DAT event type 0x{event_type:02X} holds no camera events "
                f"(readable types: {', '.join(f'0x{k:02X} {v}' for k, v in DAT_EVENT_TYPES.items())})"
            )
        if event_size != DAT_RECORD.itemsize:
            raise DataError(f"{path}: DAT event size {event_size}, expected {DAT_RECORD.itemsize} bytes")
        version_text = fields.get("version", "2")
        if not version_text.isdigit() or int(version_text) < 1:
            raise DataError(f"{path}: DAT header has an invalid version {version_text!r}")
        self.layout = DAT_LAYOUTS[min(int(version_text), 2)]
        self.data_offset = offset + 2
        self.count = (path.stat().st_size - self.data_offset) // DAT_RECORD.itemsize
        check_body_length(path, path.stat().st_size - self.data_offset, DAT_RECORD.itemsize, "DAT event stream")
        t0 = fields.get("t0", "0")
        if not t0.isdigit():
            raise DataError(f"{path}: DAT header has an invalid T0 {t0!r}")
        self.t0 = int(t0)
        self.declared_size = _geometry(fields)

    def _decode(self, records: np.ndarray, state: list[int]) -> Events:
        """Decode (N,) records; ``state`` = [previous raw t, wrap offset] carries across blocks."""
        x_mask, y_shift, y_mask, p_shift, p_mask = self.layout
        raw_t = records["t"].astype(np.int64)
        steps = np.diff(raw_t, prepend=state[0] if state[0] >= 0 else raw_t[:1])
        wraps = np.cumsum(steps < -(1 << 31)) << 32
        events = np.empty(len(records), dtype=EVENT_DTYPE)
        events["t"] = raw_t + wraps + state[1] + self.t0
        word = records["w"]
        events["x"] = word & x_mask
        events["y"] = (word >> y_shift) & y_mask
        events["p"] = ((word >> p_shift) & p_mask) != 0
        state[0] = int(raw_t[-1])
        state[1] += int(wraps[-1])
        return events

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        state = [-1, 0]
        with open(self.path, "rb") as file:
            file.seek(self.data_offset)
            for start in range(0, self.count, chunk_size):
                n = min(chunk_size, self.count - start)
                records = np.fromfile(file, dtype=DAT_RECORD, count=n)
                if len(records) != n:
                    raise DataError(f"{self.path}: the file shrank while being read")
                yield self._decode(records, state)

    def read_all(self) -> Events:
        if self.count == 0:
            return empty_events()
        records = np.fromfile(self.path, dtype=DAT_RECORD, count=self.count, offset=self.data_offset)
        return self._decode(records, [-1, 0])


@register_writer("dat")
def write_dat(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """DAT version 2, type 'cd'. uint32 times wrap (the reader unwraps them); absolute times beyond
    32 bits get a ``% T0`` offset line (faery's convention)."""
    width, height = sensor_size
    if width > 1 << 14 or height > 1 << 14:
        raise DataError(f"{path}: DAT holds sensors up to 16384 x 16384, not {width} x {height}")
    t = events["t"]
    t0 = 0
    if len(t):
        if t[0] < 0:
            raise DataError(f"{path}: DAT cannot store negative times (first t {t[0]} us)")
        if t[-1] >= 1 << 32:
            t0 = int(t[0])
        if len(t) > 1 and np.diff(t).max() >= 1 << 31:
            raise DataError(f"{path}: DAT cannot store a gap of 2**31 us or more between two events")
    header = f"% Version 2\n% Width {width}\n% Height {height}\n"
    if t0:
        header += f"% T0 {t0}\n"
    records = np.empty(len(events), dtype=DAT_RECORD)
    records["t"] = (t - t0) & 0xFFFFFFFF
    records["w"] = (
        events["x"].astype(np.uint32)
        | (events["y"].astype(np.uint32) << 14)
        | ((events["p"] > 0).astype(np.uint32) << 28)
    )
    with open(path, "wb") as file:
        file.write(header.encode("ascii") + bytes([0x0C, DAT_RECORD.itemsize]))
        records.tofile(file)
