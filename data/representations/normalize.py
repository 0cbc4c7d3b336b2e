"""Normalising a representation over all its cells, and the last step of every representation."""
from __future__ import annotations

import numpy as np

from data.representations.options import NORMALIZATIONS, check_choice


def normalize_grid(grid: np.ndarray, method: str | None) -> np.ndarray:
    """Normalise a representation over all its cells (a new array; ``grid`` is left alone).

    Args:
        grid: (C, H, W) representation.
        method: None (unchanged); ``"minmax"``: (g - min) / (max - min), into [0, 1];
            ``"abs_max"``: g / max|g|, into [-1, 1], zero stays zero; ``"standard"``: as E2VID,
            the non-zero cells get (g - mean) / std of the non-zero cells and zero cells stay zero.
            A constant grid (no spread) maps to zeros rather than dividing by zero.

    Returns:
        (C, H, W) array of the input's float dtype (float64 for integer input), computed in float64.
    """
    check_choice("normalize_grid", "method", method, NORMALIZATIONS)
    dtype = np.result_type(grid.dtype, np.float32)
    out = np.array(grid, dtype=np.float64, copy=True)
    if method is None or out.size == 0:
        return out.astype(dtype, copy=False)
    if method == "minmax":
        low, high = out.min(), out.max()
        out = (out - low) / (high - low) if high > low else np.zeros_like(out)
    elif method == "abs_max":
        scale = np.abs(out).max()
        out = out / scale if scale > 0 else out
    else:
        nonzero = out != 0
        if nonzero.any():
            values = out[nonzero]
            std = values.std()
            out[nonzero] = (values - values.mean()) / std if std > 0 else 0.0
    return out.astype(dtype, copy=False)


def finish(flat: np.ndarray, channels: int, height: int, width: int, method: str | None) -> np.ndarray:
    """The flat (C * H * W,) sums as a (C, H, W) float32 grid, normalised by ``method`` first."""
    grid = flat.reshape(channels, height, width)
    if method is not None:
        grid = normalize_grid(grid, method)  # computed in float64
    return grid.astype(np.float32, copy=False)
