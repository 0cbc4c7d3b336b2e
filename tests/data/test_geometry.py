"""Coordinate mapping (data.geometry) and the byte-wise event copies (data.events): the fast paths
against the plain numpy ones."""
import numpy as np
import pytest

import data.geometry as geometry
from data.events import EVENT_DTYPE, concat_events, copy_events, make_events


def _events(n: int, width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), np.sort(rng.integers(0, 10**6, n)),
                       rng.integers(0, 2, n))


@pytest.mark.parametrize(("native", "frame", "downsample"), [
    ((1280, 720), (64, 64), 1), ((346, 260), (64, 48), 1), ((128, 128), (64, 64), 2), ((100, 100), (34, 34), 3),
])
def test_compiled_mapping_equals_numpy(monkeypatch, native, frame, downsample):
    events = _events(5000, *native)
    fast = geometry.rescale_events(events, native, frame, downsample)
    monkeypatch.setattr(geometry, "numba", None)
    plain = geometry.rescale_events(events, native, frame, downsample)
    assert fast.dtype == EVENT_DTYPE and np.array_equal(fast, plain)
    assert fast["x"].max() < frame[0] and fast["y"].max() < frame[1]


def test_events_outside_the_sensor_are_mapped_as_numpy_maps_them(monkeypatch):
    events = _events(100, 64, 48)
    events["x"][50] = 900  # outside: the representation names it later; the mapping must not hide it
    fast = geometry.rescale_events(events, (64, 48), (32, 24))
    monkeypatch.setattr(geometry, "numba", None)
    assert np.array_equal(fast, geometry.rescale_events(events, (64, 48), (32, 24)))
    assert fast["x"][50] == 450


def test_byte_copies_equal_numpy_copies():
    parts = [_events(n, 64, 48, seed=n) for n in (0, 1, 7, 1000)]
    joined = concat_events(parts)
    assert joined.dtype == EVENT_DTYPE and np.array_equal(joined, np.concatenate(parts))
    assert concat_events([parts[2]]) is parts[2] and len(concat_events([])) == 0
    copied = copy_events(parts[3])
    assert np.array_equal(copied, parts[3]) and not np.shares_memory(copied, parts[3])
