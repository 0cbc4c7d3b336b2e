"""data.timing: one conversion between microseconds and seconds, one first-dt rule, the time scale."""
from __future__ import annotations

import numpy as np
import pytest

from data import DataError
from data.timing import (
    DEFAULT_PERIOD,
    NO_PERIOD,
    check_period,
    clip_dt,
    first_dt,
    nominal_period,
    s_to_us,
    step_dt,
    us_to_s,
)


def test_units_round_trip():
    us = np.array([-1_000_001, 0, 1, 999_999, 58_948, 10**12 + 7], np.int64)
    np.testing.assert_array_equal(s_to_us(us_to_s(us)), us)
    assert all(s_to_us(us_to_s(int(v))) == int(v) for v in us)
    assert us_to_s(1_500_000) == 1.5 and isinstance(s_to_us(0.0589), int) and s_to_us(0.0589) == 58_900
    assert s_to_us(np.array([2.5e-6, 3.5e-6])).tolist() == [2, 4]  # half to even, as np.rint
    assert us_to_s(np.array([1, 2], np.int64)).dtype == np.float64


def test_first_dt_is_the_span_it_covers_or_the_nominal_period():
    assert first_dt(0.25, 0.0, 0.04) == 0.25       # a clip whose first frames were dropped
    assert first_dt(1.05, 1.0, 0.04) == pytest.approx(0.05)  # an event window [1.0, 1.05)
    assert first_dt(0.0, 0.0, 0.04) == 0.04        # a frame at the start of its stream
    assert first_dt(3.0, None, 0.04) == 0.04       # a live frame: nothing says
    assert step_dt(3.0, 2.5, None, 0.04) == 0.5 and step_dt(2.0, 2.5, None, 0.04) == 0.0


@pytest.mark.parametrize("times", [[0.0, 0.1, 0.15, 0.4], [0.07, 0.1, 0.1, 0.9], [0.0], [0.3]])
def test_training_batches_and_streams_give_the_same_dts(times):
    """clip_dt (training batches) and step_dt (the streaming runner, one observation at a time,
    never looking ahead) agree on every step of a clip whose stream starts at 0."""
    t = np.asarray(times)
    streamed, previous = [], None
    for value in t:
        streamed.append(step_dt(float(value), previous, 0.0, 0.05))
        previous = float(value)
    np.testing.assert_allclose(clip_dt(t, 0.05), streamed)


def test_nominal_period_uses_only_known_dts():
    # clip 0 starts at 0 (its first dt is unknown); clip 1's first window covers 0.2 s
    assert nominal_period([np.array([0.0, 0.1, 0.2, 0.3]), np.array([0.2, 0.4])]) == pytest.approx(0.1)
    assert nominal_period([np.array([0.0]), np.array([0.0, 0.0])]) == NO_PERIOD
    assert nominal_period([]) == NO_PERIOD


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "0.1", None])
def test_check_period_refuses(value):
    with pytest.raises(DataError, match="x: expected a finite number of seconds > 0"):
        check_period("x", value)
    assert check_period("x", DEFAULT_PERIOD) == DEFAULT_PERIOD
