"""tonic's column arrays: (N, 4) numeric .npy files of x, y, t, p in a dataset's own column order."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events


def read_columns(path: Path, order: tuple[str, str, str, str], us_per_unit: int = 1) -> Events:
    """Read an (N, 4) numeric .npy array whose columns are x, y, t, p in ``order``.

    Times are multiplied by ``us_per_unit`` (DVSGesture stores milliseconds) and the events sorted
    stably by time when the file is not (these files are derived data, not a sensor's own stream).
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: expected an (N, 4) numeric array of {', '.join(order)}; got {array.shape} {array.dtype}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    columns = dict(zip(order, array.T))
    if array.dtype.kind == "f":
        t = np.rint(columns["t"].astype(np.float64) * us_per_unit).astype(np.int64)
    else:
        t = columns["t"].astype(np.int64) * us_per_unit
    for axis in ("x", "y"):
        values = columns[axis]
        if values.size and (values.min() < 0 or values.max() >= 1 << 16):
            raise DataError(f"{path}: {axis} has values outside 0..65535")
    events = np.empty(len(array), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"] = columns["x"], columns["y"], t
    events["p"] = columns["p"] > 0
    if events.size > 1 and (np.diff(t) < 0).any():
        events = events[np.argsort(t, kind="stable")]
    return events
