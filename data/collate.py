"""Batching clips of different lengths into the batch contract every model and head relies on.

A clip (one sample) is ``x (T, C, H, W) float32``, ``t (T,) float64`` seconds from the clip's start and
a label; frames have C = 1 or 3, event voxel grids C = time bins (x2 with polarities kept apart).
A batch is ``x (B, T, C, H, W) float32``, ``dt (B, T) float32`` seconds, ``mask (B, T) bool`` (True =
a real step), ``y (B,) int64`` and ``lengths (B,) int64``; shorter clips are padded on the right with
zeros (x, dt) and mask False.

dt is the time since the previous observation. For step 0 there is no previous observation:
- a clip whose first time t[0] is > 0 (its first frames were dropped) gets dt[0] = t[0], the time
  since the clip, i.e. the stream, started;
- a clip starting at t[0] = 0 gets its nominal period: the median of its positive frame intervals,
  or ``default_period`` when it has none (a single frame, or all frames at one time).
Each clip's dt depends on that clip alone, so a sample's result never depends on the rest of its batch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from data.errors import DataError

Batch = dict[str, torch.Tensor]
DEFAULT_PERIOD = 1.0 / 30.0  # seconds; the nominal period of a common video frame rate


def clip_dt(t: np.ndarray, default_period: float = DEFAULT_PERIOD) -> np.ndarray:
    """Per-step dt (T,) float64 of one clip's times t (T,) seconds (module docstring: step 0)."""
    dt = np.empty_like(t, dtype=np.float64)
    if len(t) == 0:
        return dt
    gaps = np.diff(t)
    dt[1:] = gaps
    if t[0] > 0:
        dt[0] = t[0]
    else:
        positive = gaps[gaps > 0]
        dt[0] = float(np.median(positive)) if positive.size else default_period
    return dt


def _unpack(sample: Any, i: int) -> tuple[torch.Tensor, np.ndarray, int]:
    if isinstance(sample, Mapping):
        missing = {"x", "t", "y"} - set(sample)
        if missing:
            raise DataError(f"sample {i}: missing keys {sorted(missing)} (expected x, t, y)")
        x, t, y = sample["x"], sample["t"], sample["y"]
    elif isinstance(sample, Sequence) and len(sample) == 3:
        x, t, y = sample
    else:
        raise DataError(f"sample {i}: expected a tuple (x, t, y) or a dict with keys x, t, y")
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise DataError(f"sample {i}: x must be (T, C, H, W), got shape {tuple(x.shape)}")
    t = (t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)).astype(np.float64)
    if t.shape != (x.shape[0],):
        raise DataError(f"sample {i}: t must be (T,) = ({x.shape[0]},), got shape {t.shape}")
    if x.shape[0] == 0:
        raise DataError(f"sample {i}: empty clip (T = 0)")
    if not np.isfinite(t).all() or t[0] < 0 or (np.diff(t) < 0).any():
        raise DataError(f"sample {i}: t must be finite, >= 0 and non-decreasing seconds")
    y = int(y.item() if isinstance(y, (torch.Tensor, np.ndarray)) else y)
    return x, t, y


def collate_clips(samples: Sequence[Any], *, default_period: float = DEFAULT_PERIOD) -> Batch:
    """Stack clips into a padded batch.

    Args:
        samples: clips as tuples ``(x, t, y)`` or dicts with keys x, t, y: x (T, C, H, W), t (T,)
            seconds from the clip's start, y an integer label. T may differ between clips.
        default_period: dt[0], in seconds, for a clip that starts at 0 and has no positive interval.

    Returns:
        x (B, T, C, H, W) float32, dt (B, T) float32, mask (B, T) bool, y (B,) int64,
        lengths (B,) int64, with T the longest clip's length.
    """
    if len(samples) == 0:
        raise DataError("samples: empty batch")
    if not (np.isfinite(default_period) and default_period > 0):
        raise DataError(f"default_period: expected seconds > 0, got {default_period!r}")
    clips = [_unpack(s, i) for i, s in enumerate(samples)]
    frame_shape = tuple(clips[0][0].shape[1:])
    for i, (x, _, _) in enumerate(clips):
        if tuple(x.shape[1:]) != frame_shape:
            raise DataError(
                f"sample {i}: frame shape (C, H, W) {tuple(x.shape[1:])} differs from sample 0's {frame_shape}"
            )
    lengths = torch.tensor([x.shape[0] for x, _, _ in clips], dtype=torch.int64)
    batch, steps = len(clips), int(lengths.max())
    x_out = torch.zeros((batch, steps, *frame_shape), dtype=torch.float32)
    dt_out = torch.zeros((batch, steps), dtype=torch.float32)
    mask = torch.zeros((batch, steps), dtype=torch.bool)
    for b, (x, t, _) in enumerate(clips):
        n = x.shape[0]
        x_out[b, :n] = x
        dt_out[b, :n] = torch.from_numpy(clip_dt(t, default_period))
        mask[b, :n] = True
    y = torch.tensor([y for _, _, y in clips], dtype=torch.int64)
    return {"x": x_out, "dt": dt_out, "mask": mask, "y": y, "lengths": lengths}
