"""Text event files in the ETH layout (the Event Camera Dataset): one event per line, ``t x y p``.

``t`` is in seconds (a decimal number), x and y are integers, p is 1 for ON and 0 (or -1) for OFF.
The first line may hold the sensor size as ``W H``. Lines starting with ``#`` are comments. Times are
converted with rint(t * 1e6), exact to the microsecond for t below about 2**33 seconds. The file is
parsed block by block (numpy's C parser), so it streams.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize
from data.io._base import EventReader, MAX_SIDE
from data.io._registry import register_format, register_writer

_ROW = np.dtype([("t", "f8"), ("x", "i8"), ("y", "i8"), ("p", "i8")])
_BYTES_PER_LINE = 24  # a typical line, to turn a chunk size into a block size


def _size_line(line: bytes) -> SensorSize | None:
    """(W, H) when the line is two positive integers, else None."""
    parts = line.split()
    if len(parts) == 2 and all(part.isdigit() for part in parts):
        width, height = int(parts[0]), int(parts[1])
        if 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE:
            return width, height
    return None


@register_format("text", suffixes=(".txt",), description="text, ETH layout 't x y p' (t in seconds)")
class TextReader(EventReader):
    """ETH text: an optional ``W H`` first line, then ``t x y p`` lines."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with open(path, "rb") as file:
            first = file.readline(4096)
        if b"\0" in first:
            raise DataError(f"{path}: not a text file (binary data in the first line)")
        self.declared_size = _size_line(first)
        self.data_offset = len(first) if self.declared_size is not None else 0

    def _parse(self, block: bytes, line_number: int) -> Events:
        try:
            text = block.decode("ascii")
        except UnicodeDecodeError as error:
            raise DataError(f"{self.path}: not a text event file (non-ASCII byte near line {line_number})") from error
        try:
            rows = np.loadtxt(io.StringIO(text), dtype=_ROW, comments="#", ndmin=1)
        except ValueError as error:
            raise DataError(
                f"{self.path}: cannot parse 't x y p' in the block starting at line {line_number}: {error}"
            ) from None
        for name in ("x", "y"):
            if rows.size and (rows[name].min() < 0 or rows[name].max() > 0xFFFF):
                raise DataError(f"{self.path}: {name} outside 0..65535 in the block starting at line {line_number}")
        if rows.size and not np.isfinite(rows["t"]).all():
            raise DataError(f"{self.path}: a time is not finite in the block starting at line {line_number}")
        events = np.empty(len(rows), dtype=EVENT_DTYPE)
        events["t"] = np.rint(rows["t"] * 1e6)
        events["x"], events["y"] = rows["x"], rows["y"]
        events["p"] = rows["p"] > 0
        return events

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        line_number = 2 if self.data_offset else 1
        block_bytes = max(chunk_size * _BYTES_PER_LINE, 1 << 14)
        rest = b""
        with open(self.path, "rb") as file:
            file.seek(self.data_offset)
            while True:
                block = file.read(block_bytes)
                data = rest + block
                if not block:
                    if data.strip():
                        yield self._parse(data, line_number)
                    return
                cut = data.rfind(b"\n") + 1  # parse whole lines only; carry the rest over
                if cut == 0 and len(data) > 1 << 20:
                    raise DataError(f"{self.path}: a line at line {line_number} is longer than 1 MB")
                whole, rest = data[:cut], data[cut:]
                if whole.strip():
                    yield self._parse(whole, line_number)
                line_number += whole.count(b"\n")


@register_writer("text")
def write_text(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """Write ``W H`` then ``t x y p`` lines with t in seconds, six decimals (exact microseconds)."""
    t = events["t"]
    if len(t) and t[0] < 0:
        raise DataError(f"{path}: the text writer needs times >= 0 (first t {t[0]} us)")
    columns = np.stack([t // 1_000_000, t % 1_000_000, events["x"], events["y"], events["p"]], axis=1)
    with open(path, "w", encoding="ascii") as file:
        file.write(f"{sensor_size[0]} {sensor_size[1]}\n")
        np.savetxt(file, columns, fmt="%d.%06d %d %d %d")
