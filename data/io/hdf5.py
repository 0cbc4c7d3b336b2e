"""HDF5 event files in the DSEC layout, through h5py.

Layout: datasets ``events/x``, ``events/y``, ``events/t``, ``events/p`` (equal lengths, integers),
an optional scalar ``t_offset`` (microseconds added to ``events/t``) and ``ms_to_idx`` (index of the
first event at or after each millisecond, relative to ``t_offset``). DSEC itself does not store the
sensor size (its cameras are 640 x 480); we write it as root attributes ``width`` and ``height`` and
read it from there when present. Reading streams by slices, never the whole file. A dataset that
declares more values than the file stores (HDF5 would read its fill value) is refused when opened.
DSEC's published files are Blosc-compressed: reading them needs the ``hdf5plugin`` package,
imported when installed.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize
from data.io._base import EventReader
from data.io._registry import register_format, register_writer

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
FIELDS = ("x", "y", "t", "p")

with contextlib.suppress(ImportError):  # registers Blosc and other filters used by DSEC
    import hdf5plugin  # noqa: F401


def _h5py():
    import h5py

    return h5py


@register_format(
    "hdf5", suffixes=(".h5", ".hdf5"), sniff=lambda head: head.startswith(HDF5_MAGIC),
    description="HDF5 in the DSEC layout",
)
class Hdf5Reader(EventReader):
    """DSEC-layout HDF5; ``events/t`` + ``t_offset`` gives microseconds."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        with _h5py().File(path, "r") as file:
            group = file.get("events")
            missing = [f for f in FIELDS if group is None or not isinstance(group.get(f), _h5py().Dataset)]
            if missing:
                raise DataError(
                    f"{path}: not the DSEC layout: missing datasets {', '.join('events/' + f for f in missing)}"
                )
            lengths = set()
            for name in FIELDS:
                dataset = group[name]
                if dataset.ndim != 1 or dataset.dtype.kind not in "iub":
                    raise DataError(
                        f"{path}: events/{name} must be a 1-D integer dataset, got {dataset.shape} {dataset.dtype}"
                    )
                lengths.add(dataset.shape[0])
                _check_stored(path, f"events/{name}", dataset)
            if len(lengths) != 1:
                raise DataError(f"{path}: events/x, y, t, p have different lengths {sorted(lengths)}")
            self.count = lengths.pop()
            self.t_offset = 0
            if "t_offset" in file:
                offset = np.asarray(file["t_offset"][()])
                if offset.size != 1 or offset.dtype.kind not in "iu":
                    raise DataError(f"{path}: t_offset must be one integer, got {offset.dtype} {offset.shape}")
                self.t_offset = int(offset.reshape(()))
            if "width" in file.attrs and "height" in file.attrs:
                self.declared_size = int(file.attrs["width"]), int(file.attrs["height"])

    def chunks(self, chunk_size: int) -> Iterator[Events]:
        with _h5py().File(self.path, "r") as file:
            group = file["events"]
            for start in range(0, self.count, chunk_size):
                stop = min(start + chunk_size, self.count)
                events = np.empty(stop - start, dtype=EVENT_DTYPE)
                for name in ("x", "y", "p"):
                    column = group[name][start:stop]
                    if name != "p" and column.size and (column.min() < 0 or column.max() > 0xFFFF):
                        raise DataError(f"{self.path}: events/{name} has values outside 0..65535 near event {start}")
                    events[name] = column if name != "p" else column > 0
                events["t"] = group["t"][start:stop]
                if self.t_offset:
                    events["t"] += self.t_offset
                yield events

    def read_all(self) -> Events:
        return next(self.chunks(max(self.count, 1)), np.empty(0, dtype=EVENT_DTYPE))


def _check_stored(path: Path, name: str, dataset) -> None:
    """Refuse a dataset that declares more values than the file stores: HDF5 reads what was never
    written as its fill value, so a 3 KB file can declare 2e9 events that would stream forever.
    Contiguous: its bytes must lie inside the file. Chunked (compressed): every chunk must exist."""
    count = dataset.shape[0]
    if count == 0 or dataset.id.get_create_plist().get_layout() == _h5py().h5d.COMPACT:
        return  # compact: the values are in the header itself
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        if offset is None or dataset.id.get_storage_size() < dataset.nbytes \
                or offset + dataset.nbytes > path.stat().st_size:
            raise DataError(f"{path}: {name} declares {count:,} values ({dataset.nbytes:,} bytes) but the "
                            f"{path.stat().st_size:,}-byte file does not hold them")
        return
    expected = -(-count // dataset.chunks[0])
    stored = dataset.id.get_num_chunks()
    if stored < expected:
        raise DataError(f"{path}: {name} declares {count:,} values in {expected:,} chunks but the file stores "
                        f"only {stored:,} of them")


@register_writer("hdf5")
def write_hdf5(path: Path, events: Events, sensor_size: SensorSize) -> None:
    """Write the DSEC layout; ``events/t`` is uint32 relative to ``t_offset`` when it fits, else int64."""
    t = events["t"]
    t_offset = int(t[0]) if len(t) else 0
    relative = t - t_offset
    span = int(relative[-1]) if len(t) else 0
    t_dtype = np.uint32 if span < 1 << 32 else np.int64
    # ms_to_idx[k]: first event at or after k milliseconds from t_offset (DSEC's convention).
    ms_to_idx = np.searchsorted(relative, np.arange(0, span // 1000 + 1) * 1000, side="left").astype(np.uint64)
    with _h5py().File(path, "w") as file:
        group = file.create_group("events")
        group.create_dataset("x", data=events["x"])
        group.create_dataset("y", data=events["y"])
        group.create_dataset("t", data=relative.astype(t_dtype))
        group.create_dataset("p", data=(events["p"] > 0).astype(np.uint8))
        file.create_dataset("t_offset", data=np.int64(t_offset))
        file.create_dataset("ms_to_idx", data=ms_to_idx)
        file.attrs["width"], file.attrs["height"] = int(sensor_size[0]), int(sensor_size[1])
