"""collate_clips: padding, mask, dt from real times, step-0 rules, validation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data.collate import DEFAULT_PERIOD, clip_dt, collate_clips
from data.errors import DataError


def clip(times, label=0, channels=1, size=(4, 5), fill=None):
    """A clip (x (T, C, H, W), t (T,), label) whose frame k is filled with k + 1 (or `fill`)."""
    t = np.asarray(times, np.float64)
    x = torch.ones((len(t), channels, size[1], size[0]))
    x *= torch.arange(1, len(t) + 1, dtype=torch.float32).view(-1, 1, 1, 1) if fill is None else fill
    return x, torch.from_numpy(t), label


def test_shapes_padding_mask_and_labels():
    batch = collate_clips([clip([0, 0.1, 0.2, 0.3], 2), clip([0, 0.05], 5), clip([0, 0.1, 0.3], 1)])
    assert batch["x"].shape == (3, 4, 1, 5, 4) and batch["x"].dtype == torch.float32
    assert batch["dt"].shape == (3, 4) and batch["dt"].dtype == torch.float32
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].tolist() == [[True] * 4, [True, True, False, False], [True, True, True, False]]
    assert batch["lengths"].tolist() == [4, 2, 3] and batch["lengths"].dtype == torch.int64
    assert batch["y"].tolist() == [2, 5, 1] and batch["y"].dtype == torch.int64
    # Frames stay in place and padding is zero.
    assert batch["x"][1, :, 0, 0, 0].tolist() == [1, 2, 0, 0]
    assert (batch["x"][2, 3] == 0).all() and (batch["dt"][1, 2:] == 0).all()


def test_dt_is_the_time_since_the_previous_frame():
    batch = collate_clips([clip([0, 0.1, 0.2, 0.5]), clip([0.25, 0.3, 0.3, 1.0])], default_period=0.04)
    # Clip 0 starts at 0: nothing says when a frame before it would have been: the nominal period
    # (never its later gaps, which a stream could not know at its first step).
    np.testing.assert_allclose(batch["dt"][0].numpy(), [0.04, 0.1, 0.1, 0.3], atol=1e-7)
    # Clip 1 starts later (its first frames were dropped): dt[0] = t[0]; equal times give dt 0.
    np.testing.assert_allclose(batch["dt"][1].numpy(), [0.25, 0.05, 0.0, 0.7], atol=1e-7)


def test_single_sample_and_single_frame_clips():
    batch = collate_clips([clip([0.0], 3)])
    assert batch["x"].shape == (1, 1, 1, 5, 4) and batch["mask"].tolist() == [[True]]
    assert batch["dt"].item() == pytest.approx(DEFAULT_PERIOD)
    assert collate_clips([clip([0.0])], default_period=0.5)["dt"].item() == 0.5
    assert collate_clips([clip([0.0, 0.0])], default_period=0.5)["dt"].tolist() == [[0.5, 0.0]]
    assert collate_clips([clip([0.2])])["dt"].item() == pytest.approx(0.2)  # known start: not a fallback


def test_a_clips_dt_does_not_depend_on_its_batch():
    alone = collate_clips([clip([0, 0.04, 0.1])])["dt"][0]
    together = collate_clips([clip([0, 0.5, 0.6, 2.0, 3.0]), clip([0, 0.04, 0.1])])["dt"][1, :3]
    assert torch.equal(alone, together)


def test_dict_samples_and_numpy_inputs():
    x = np.zeros((2, 3, 6, 7), np.float32)
    batch = collate_clips([{"x": x, "t": [0.0, 0.02], "y": np.int64(4)}, {"x": x[:1], "t": np.array([0.0]), "y": 1}])
    assert batch["x"].shape == (2, 2, 3, 6, 7) and batch["y"].tolist() == [4, 1]
    np.testing.assert_allclose(batch["dt"].numpy(), [[DEFAULT_PERIOD, 0.02], [DEFAULT_PERIOD, 0.0]], atol=1e-7)


def test_clip_dt():
    np.testing.assert_allclose(clip_dt(np.array([0.0, 1.0, 3.0])), [DEFAULT_PERIOD, 1.0, 2.0])
    np.testing.assert_allclose(clip_dt(np.array([0.0, 1.0, 3.0]), 0.5), [0.5, 1.0, 2.0])
    np.testing.assert_allclose(clip_dt(np.array([0.2, 1.0])), [0.2, 0.8])
    assert clip_dt(np.zeros(0)).shape == (0,)


@pytest.mark.parametrize(
    "samples, message",
    [
        ([], "empty batch"),
        ([clip([0, 0.1]), clip([0, 0.1], size=(5, 5))], "sample 1: frame shape"),
        ([(torch.zeros(2, 1, 3, 3), [0.0], 0)], r"sample 0: t must be \(T,\)"),
        ([(torch.zeros(3, 3, 3), [0.0, 0.1, 0.2], 0)], r"x must be \(T, C, H, W\)"),
        ([clip([0, 0.2, 0.1])], "non-decreasing"),
        ([clip([-0.1, 0.2])], ">= 0"),
        ([clip([0, float("nan")])], "finite"),
        ([{"x": torch.zeros(1, 1, 2, 2), "t": [0.0]}], r"missing keys \['y'\]"),
        ([(torch.zeros(1, 1, 2, 2), [0.0])], "expected a tuple"),
        ([(torch.zeros(0, 1, 2, 2), np.zeros(0), 0)], "empty clip"),
    ],
)
def test_bad_samples(samples, message):
    with pytest.raises(DataError, match=message):
        collate_clips(samples)


def test_bad_default_period():
    with pytest.raises(DataError, match="default_period"):
        collate_clips([clip([0.0])], default_period=0.0)
