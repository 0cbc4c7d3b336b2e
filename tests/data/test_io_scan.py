"""The readers' one-pass chunk checks (data.io._scan): compiled and numpy versions give the same index."""
import numpy as np
import pytest

import data.io._scan as scan
from data.events import make_events


def _events(t, x=None, y=None):
    n = len(t)
    return make_events(np.zeros(n) if x is None else x, np.zeros(n) if y is None else y, t, np.ones(n))


CASES = [  # (times, last, first backward index)
    ([1, 2, 2, 5], None, -1), ([1, 2, 2, 5], 1, -1), ([1, 2, 2, 5], 2, 0), ([3, 4, 1, 9, 0], None, 2), ([], 7, -1),
]


@pytest.mark.parametrize(("times", "last", "expected"), CASES)
def test_first_backward(monkeypatch, times, last, expected):
    events = _events(times)
    assert scan.first_backward(events, last) == expected
    monkeypatch.setattr(scan, "numba", None)
    assert scan.first_backward(events, last) == expected


@pytest.mark.parametrize(("x", "y", "expected"), [([0, 9, 3], [0, 4, 5], -1), ([0, 10, 3], [0, 4, 5], 1),
                                                  ([0, 9, 3], [0, 4, 6], 2), ([], [], -1)])
def test_first_outside(monkeypatch, x, y, expected):
    events = _events(list(range(len(x))), x, y)
    assert scan.first_outside(events, 10, 6) == expected
    monkeypatch.setattr(scan, "numba", None)
    assert scan.first_outside(events, 10, 6) == expected
