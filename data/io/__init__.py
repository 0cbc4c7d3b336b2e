"""Event-file readers and writers.

Formats (name: suffixes):
    aedat4: .aedat4 .aedat   (faery)          raw: .raw (Prophesee EVT 2.0 faery, 3.0 ours)
    dat: .dat (Prophesee, 'cd' and '2d')      es: .es (Event Stream, faery)
    atis_bin: .bin (N-MNIST, N-Caltech101)    hdf5: .h5 .hdf5 (DSEC layout, h5py)
    text: .txt (ETH 't x y p')                npy: .npy, npz: .npz (structured arrays)

All of them can be written too (``writable_formats()``; RAW is written as EVT 2.0). Importing this
package registers the formats; a new format is one module that calls ``register_format`` (and
``register_writer``).
"""
from __future__ import annotations

# Importing the format modules registers them (order = sniffing order).
from data.io import atis_bin, faery_formats, hdf5, numpy_files, prophesee, text  # noqa: F401
from data.io._registry import FormatSpec, available_formats, register_format, register_writer, writable_formats
from data.io._base import EventReader
from data.io.recording import (
    DEFAULT_CHUNK_SIZE,
    EventFileInfo,
    Recording,
    iter_events,
    probe_events,
    read_events,
    stated_sensor_size,
    write_events,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EventFileInfo",
    "EventReader",
    "FormatSpec",
    "Recording",
    "available_formats",
    "iter_events",
    "probe_events",
    "read_events",
    "register_format",
    "register_writer",
    "stated_sensor_size",
    "writable_formats",
    "write_events",
]
