"""Batching clips of different lengths into the batch contract every model and head relies on.

A clip (one sample) is ``x (T, C, H, W) float32``, ``t (T,) float64`` seconds from the clip's start and
a label; frames have C = 1 or 3, event voxel grids C = time bins (x2 with polarities kept apart).
A batch is ``x (B, T, C, H, W) float32``, ``dt (B, T) float32`` seconds, ``mask (B, T) bool`` (True =
a real step), ``y (B,) int64`` and ``lengths (B,) int64``; shorter clips are padded on the right with
zeros (x, dt) and mask False.

dt is the time since the previous observation; step 0 follows ``data.timing``'s rule, the same as a
stream's first step in ``perception infer``: a clip whose first time t[0] is > 0 (its first frames
were dropped, or its first event window starts at 0) gets dt[0] = t[0], the time since the clip,
i.e. the stream, started; a clip starting at t[0] = 0 gets the nominal period ``default_period``
(the data modules pass their time scale). Each clip's dt depends on that clip alone, so a sample's
result never depends on the rest of its batch.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from data.errors import DataError
from data.timing import DEFAULT_PERIOD, check_period, clip_dt

Batch = dict[str, torch.Tensor]


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
        default_period: the nominal period: dt[0], in seconds, of a clip that starts at 0.

    Returns:
        x (B, T, C, H, W) float32, dt (B, T) float32, mask (B, T) bool, y (B,) int64,
        lengths (B,) int64, with T the longest clip's length.
    """
    if len(samples) == 0:
        raise DataError("samples: empty batch")
    default_period = check_period("default_period", default_period)
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
