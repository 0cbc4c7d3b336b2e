"""Tiny crafted recordings that used to cost unbounded memory or time: each is read and cut into
windows with bounded memory, or refused with one DataError line naming the file.

Every file is made here (sparse where it is large: no disk is used for its zeros).
"""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from data import WindowSpec, iter_events, iter_windows, read_events
from data.errors import DataError
from data.io.atis_bin import AtisBinReader, decode_numpy

H5 = pytest.importorskip("h5py")


def _peak_mb(run) -> float:
    """Peak Python-allocated memory of ``run()`` (numpy arrays included), MB."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_two_events_days_apart_are_two_windows(tmp_path):
    """41 bytes of text, two events 5.8 days apart: two steps, the second's dt the silence."""
    path = tmp_path / "gap.txt"
    path.write_text("32 32\n0.0 1 1 1\n500000.0 2 2 0\n")
    windows = []
    peak = _peak_mb(lambda: windows.extend(iter_windows(iter_events(path), WindowSpec.duration(50_000))))
    assert [len(w) for w in windows] == [1, 1]
    assert windows[1].t_end_us - windows[0].t_end_us == 500_000 * 1_000_000
    assert peak < 50


def test_evt3_alternating_time_high_streams_with_bounded_memory(tmp_path):
    """TIME_HIGH alternating 0xFFF and 0: a 24-bit wrap every other word, 16.8 s apart, days of
    span in a small file; each long silence is one step, so the windows stay few and small."""
    n = 20_000
    high = np.where(np.arange(n) % 2 == 0, 0x8FFF, 0x8000).astype("<u2")
    words = np.stack([high, np.full(n, 0x0001, "<u2"), np.full(n, 0x2001, "<u2")], 1).ravel()
    path = tmp_path / "alternating.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;width=32;height=32\n% end\n" + words.tobytes())
    count = [0, 0]

    def run():
        for window in iter_windows(iter_events(path), WindowSpec.duration(50_000)):
            count[0] += 1
            count[1] += len(window)

    peak = _peak_mb(run)
    assert count[1] == n and count[0] <= n  # every event, never more windows than events
    assert peak < 100


def test_a_file_of_zeros_is_refused_not_buffered(tmp_path, monkeypatch):
    """Zeros as ATIS binary: every event at t = 0, one window that would grow with the file."""
    import data.windows as windows

    monkeypatch.setattr(windows, "MAX_WINDOW_EVENTS", 100_000)
    path = tmp_path / "zeros.bin"
    with open(path, "wb") as file:
        file.truncate(50_000_000)  # sparse: 10 M events at t = 0
    chunks = iter_events(path, chunk_size=50_000)
    with pytest.raises(DataError, match="more than 100,000 events in the window from t=0 us"):
        for _ in iter_windows(chunks, WindowSpec.duration(50_000)):
            pass


def test_atis_compiled_decoder_matches_numpy():
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (50_000, 5)).astype(np.uint8)
    raw[rng.random(len(raw)) < 0.02, 1] = 240  # overflow markers
    compiled, overflows = AtisBinReader._decode(raw, 7)
    reference, expected = decode_numpy(raw, 7)
    assert overflows == expected and compiled.tobytes() == reference.tobytes()


@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
def test_hdf5_declaring_more_events_than_it_stores_is_refused(tmp_path, layout):
    """A few KB declaring 2e9 events: HDF5 would read the fill value for ever; refused on opening."""
    path = tmp_path / f"{layout}.h5"
    with H5.File(path, "w") as file:
        group = file.create_group("events")
        for name in "xytp":
            options = {"chunks": (1000,), "compression": "gzip"} if layout == "chunked" else {}
            dataset = group.create_dataset(name, shape=(2_000_000_000,), dtype="u2" if name != "t" else "i8",
                                           **options)
            if layout == "chunked":
                dataset[:10] = 1  # one chunk of two million stored
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"events/x declares 2,000,000,000 values") as info:
        read_events(path, sensor_size=(32, 32))
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="declares"):
        iter_events(path)


def test_hdf5_that_stores_what_it_declares_still_reads(tmp_path):
    from data import write_events
    from data.events import make_events

    events = make_events([1, 2, 3], [1, 2, 3], [10, 20, 30], [1, 0, 1])
    path = write_events(tmp_path / "ok.h5", events, (8, 8))
    assert read_events(path).events.tobytes() == events.tobytes()


@pytest.mark.parametrize("path", [b"/tmp/events.txt", None, 3, ""])
def test_a_path_of_the_wrong_type_is_one_data_error(path):
    with pytest.raises(DataError, match="expected a file path"):
        read_events(path)
