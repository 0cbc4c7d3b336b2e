"""Window cutting: by duration and by count, with overlap, and the same whether chunked or whole."""
from __future__ import annotations

import numpy as np
import pytest

from data.errors import DataError
from data.events import EVENT_DTYPE, make_events
from data.windows import Window, WindowCutter, WindowSpec, iter_windows, slice_windows


def stream(times) -> np.ndarray:
    times = np.asarray(times)
    n = times.size
    return make_events(np.arange(n) % 7, np.arange(n) % 5, times, np.arange(n) % 2)


def random_stream(n: int = 3_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.choice([0, 0, 1, 3, 50, 900], size=n)  # repeated times and silent stretches
    return stream(1_000 + np.cumsum(gaps))


def chunked(events: np.ndarray, sizes: list[int]):
    """Split into chunks of the given sizes, cycling, with empty chunks in between."""
    start, i = 0, 0
    while start < events.size:
        size = sizes[i % len(sizes)]
        yield events[start : start + size]
        yield events[:0]
        start, i = start + size, i + 1


def summary(windows) -> list[tuple]:
    return [(w.t_start_us, w.t_end_us, w.events.tobytes()) for w in windows]


def test_duration_windows_without_overlap():
    events = stream([10, 12, 19, 20, 35, 47])
    windows = list(slice_windows(events, WindowSpec.duration(10)))
    assert [(w.t_start_us, w.t_end_us) for w in windows] == [(10, 20), (20, 30), (30, 40), (40, 50)]
    assert [w.events["t"].tolist() for w in windows] == [[10, 12, 19], [20], [35], [47]]
    assert all(isinstance(w, Window) and w.duration_us == 10 for w in windows)


def test_empty_duration_windows_are_yielded_so_time_advances():
    events = stream([0, 1, 45])
    windows = list(slice_windows(events, WindowSpec.duration(10)))
    assert [w.t_end_us for w in windows] == [10, 20, 30, 40, 50]
    assert [len(w) for w in windows] == [2, 0, 0, 0, 1]
    assert windows[1].events.dtype == EVENT_DTYPE and windows[1].events.size == 0


def test_duration_windows_with_overlap_and_explicit_start():
    events = stream([0, 4, 5, 9, 10, 12])
    spec = WindowSpec.duration(10, overlap_us=5)
    assert spec.stride == 5 and WindowSpec.duration(10, stride_us=5) == spec
    windows = list(slice_windows(events, spec))
    # the last window is the first one that holds the last event; [10, 20) would repeat part of it
    assert [(w.t_start_us, w.events["t"].tolist()) for w in windows] == [(0, [0, 4, 5, 9]), (5, [5, 9, 10, 12])]
    shifted = list(slice_windows(events, WindowSpec.duration(10), t_start_us=-5))
    assert [(w.t_start_us, w.events["t"].tolist()) for w in shifted] == [(-5, [0, 4]), (5, [5, 9, 10, 12])]
    with pytest.raises(DataError, match="before the first window's start"):
        list(slice_windows(events, WindowSpec.duration(10), t_start_us=3))


def test_every_event_in_exactly_one_window_without_overlap():
    events = random_stream()
    for spec in (WindowSpec.duration(1_000), WindowSpec.count(97)):
        windows = list(slice_windows(events, spec))
        joined = np.concatenate([w.events for w in windows])
        assert np.array_equal(joined, events)
        for w in windows:
            assert np.all((w.events["t"] >= w.t_start_us) & (w.events["t"] < w.t_end_us))


def test_count_windows_give_real_variable_dt():
    events = stream([0, 1, 2, 10, 30, 31, 100])
    windows = list(slice_windows(events, WindowSpec.count(2)))
    assert [w.events["t"].tolist() for w in windows] == [[0, 1], [2, 10], [30, 31], [100]]
    assert [(w.t_start_us, w.t_end_us) for w in windows] == [(0, 2), (2, 11), (30, 32), (100, 101)]
    assert np.diff([w.t_end_us for w in windows]).tolist() == [9, 21, 69]


def test_count_windows_with_overlap():
    events = stream(np.arange(12))
    windows = list(slice_windows(events, WindowSpec.count(5, overlap=2)))
    starts = [w.events["t"][0] for w in windows]
    assert starts == [0, 3, 6, 9] and [len(w) for w in windows] == [5, 5, 5, 3]
    exact = list(slice_windows(stream(np.arange(11)), WindowSpec.count(5, overlap=2)))
    assert [len(w) for w in exact] == [5, 5, 5]  # the third window ends on the last event: no repeat


def test_drop_last():
    events = stream(np.arange(12))
    assert [len(w) for w in slice_windows(events, WindowSpec.count(5, drop_last=True))] == [5, 5]
    timed = stream([0, 5, 10, 15, 22])
    assert [w.t_start_us for w in slice_windows(timed, WindowSpec.duration(10, drop_last=True))] == [0, 10]
    assert [w.t_start_us for w in slice_windows(timed, WindowSpec.duration(10))] == [0, 10, 20]


@pytest.mark.parametrize(
    "spec",
    [
        WindowSpec.duration(1_000),
        WindowSpec.duration(2_500, overlap_us=1_700),
        WindowSpec.duration(113),
        WindowSpec.count(100),
        WindowSpec.count(64, overlap=50),
        WindowSpec.count(1),
        WindowSpec.count(50, drop_last=True),
        WindowSpec.duration(3_000, overlap_us=1_000, drop_last=True),
    ],
    ids=str,
)
@pytest.mark.parametrize("sizes", [[1], [2, 3], [17], [1_000], [5_000], [1, 400, 7]], ids=str)
def test_chunked_equals_whole(spec, sizes):
    events = random_stream()
    whole = summary(slice_windows(events, spec))
    assert whole
    assert summary(iter_windows(chunked(events, sizes), spec)) == whole
    cutter = WindowCutter(spec)
    pushed = [w for chunk in chunked(events, sizes) for w in cutter.push(chunk)] + cutter.finish()
    assert summary(pushed) == whole


@pytest.mark.parametrize(
    "spec", [WindowSpec.duration(2_000, overlap_us=500), WindowSpec.count(40, overlap=10)], ids=str
)
def test_a_reader_may_reuse_its_chunk_buffer(spec):
    events = random_stream()

    def reused_buffer(size: int):
        buffer = np.empty(size, EVENT_DTYPE)
        for start in range(0, events.size, size):
            part = events[start : start + size]
            buffer[: part.size] = part
            yield buffer[: part.size]

    assert summary(iter_windows(reused_buffer(37), spec)) == summary(slice_windows(events, spec))


def test_windows_do_not_expose_or_change_the_input():
    events = random_stream(500)
    before = events.copy()
    windows = list(slice_windows(events, WindowSpec.duration(2_000)))
    with pytest.raises(ValueError):
        windows[0].events["x"][0] = 99
    assert np.array_equal(events, before) and events.flags.writeable


def test_empty_stream_gives_no_windows():
    empty = np.empty(0, EVENT_DTYPE)
    assert list(slice_windows(empty, WindowSpec.duration(10))) == []
    assert list(iter_windows([empty, empty], WindowSpec.count(3))) == []


def test_bad_streams_are_refused():
    with pytest.raises(DataError, match="backwards between chunks"):
        list(iter_windows([stream([5, 6]), stream([4, 7])], WindowSpec.duration(10)))
    with pytest.raises(DataError, match="timestamps go backwards"):
        list(slice_windows(stream([5, 3]), WindowSpec.count(2)))
    cutter = WindowCutter(WindowSpec.count(2))
    cutter.finish()
    with pytest.raises(DataError, match="after finish"):
        cutter.push(stream([1]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="time", size=10), "mode must be one of 'duration', 'count'"),
        (dict(mode="count", size=0), "size must be at least 1"),
        (dict(mode="duration", size=10, overlap=10), r"overlap must be in \[0, size\)"),
        (dict(mode="duration", size=10, overlap=-1), r"overlap must be in \[0, size\)"),
        (dict(mode="count", size=2.5), "size must be an integer number of events"),
        (dict(mode="count", size=3, drop_last="yes"), "drop_last must be True or False"),
    ],
)
def test_spec_validation(kwargs, match):
    with pytest.raises(DataError, match=match):
        WindowSpec(**kwargs)


def test_spec_round_trips_through_plain_config():
    spec = WindowSpec.count(64, stride=16, drop_last=True)
    assert spec == WindowSpec("count", 64, 48, True)
    assert WindowSpec.from_config(spec.to_config()) == spec
    with pytest.raises(DataError, match="unknown keys"):
        WindowSpec.from_config({"mode": "count", "size": 3, "step": 1})
    with pytest.raises(DataError, match="either an overlap or a stride"):
        WindowSpec.duration(10, overlap_us=2, stride_us=5)
    with pytest.raises(DataError, match=r"stride must be an integer in \[1, size\]"):
        WindowSpec.duration(10, stride_us=20)


@pytest.mark.real_data
def test_real_recording_windows(shared_data):
    """A real EVT2 recording (539,481 events, 50 ms): 1 ms windows, whole vs read in odd chunks."""
    from data.events import as_events

    events = as_events(np.load(shared_data / "events" / "expelliarmus_evt2_sample.raw.reference.npy"))
    for spec in (WindowSpec.duration(1_000), WindowSpec.duration(5_000, overlap_us=2_500), WindowSpec.count(20_000)):
        whole = list(slice_windows(events, spec))
        assert summary(iter_windows(chunked(events, [65_536, 12_345]), spec)) == summary(whole)
        if spec.overlap == 0:
            assert sum(len(w) for w in whole) == events.size
    windows = list(slice_windows(events, WindowSpec.duration(1_000)))
    assert len(windows) == 51  # the last events sit exactly 50,000 us after the first
    assert set(windows[-1].events["t"].tolist()) == {int(events["t"][0]) + 50_000}


def test_copy_false_gives_the_same_windows_without_copying():
    rng = np.random.default_rng(3)
    events = make_events(rng.integers(0, 10, 5000), rng.integers(0, 10, 5000),
                         np.sort(rng.integers(0, 1_000_000, 5000)), rng.integers(0, 2, 5000))
    spec = WindowSpec("duration", 30_000, 10_000)
    chunks = [events[i : i + 777] for i in range(0, len(events), 777)]
    copied = list(iter_windows(chunks, spec))
    cutter = WindowCutter(spec, copy=False)
    shared = [w for c in chunks for w in cutter.push(c)] + cutter.finish()
    assert [(w.t_start_us, w.t_end_us) for w in shared] == [(w.t_start_us, w.t_end_us) for w in copied]
    for a, b in zip(shared, copied):
        np.testing.assert_array_equal(a.events, b.events)
    assert any(np.shares_memory(w.events, events) for w in shared)  # views, not copies


# --------------------------------------------------------------------------------------------
# frames: windows between the frames of a frame clock


def framed(events: np.ndarray, frames_us, sizes: list[int], spec: WindowSpec) -> list[Window]:
    """Cut ``events`` with a frame clock: the events pushed in chunks of ``sizes`` (cycling), each
    frame ticked once every event before it has been pushed (and some at it, or after it, too)."""
    cutter = WindowCutter(spec, frame_clock=True)
    out, start, i = [], 0, 0
    for frame in frames_us:
        before = int(np.searchsorted(events["t"], frame, side="right"))  # may include events at the frame
        while start < before:
            size = sizes[i % len(sizes)]
            out += cutter.push(events[start : min(start + size, before)])
            start, i = min(start + size, before), i + 1
        out += cutter.tick(frame)
    out += cutter.push(events[start:])
    return out + cutter.finish()


def test_frames_windows_lie_between_frames():
    events = stream([10, 12, 19, 20, 35, 47])
    windows = framed(events, [10, 20, 20, 31, 47], [1], WindowSpec.frames(10))
    # the first frame starts the clock; a frame at the time of the one before ends no window; an
    # event at a frame's time belongs to the window that frame starts
    assert [(w.t_start_us, w.t_end_us) for w in windows] == [(10, 20), (20, 31), (31, 47), (47, 48)]
    assert [w.events["t"].tolist() for w in windows] == [[10, 12, 19], [20], [35], [47]]
    dropped = framed(events, [10, 20, 31, 47], [2], WindowSpec.frames(10, drop_last=True))
    assert [(w.t_start_us, w.t_end_us) for w in dropped] == [(10, 20), (20, 31), (31, 47)]


@pytest.mark.parametrize("sizes", [[1], [7, 3], [10_000]])
def test_frames_windows_do_not_depend_on_the_chunks(sizes):
    events = random_stream(2_000, seed=4)
    rng = np.random.default_rng(1)
    frames = np.unique(np.concatenate([[events["t"][0] - 5], rng.choice(events["t"], 40), [events["t"][-1] + 1]]))
    whole = framed(events, frames, [events.size], WindowSpec.frames(100))
    assert summary(framed(events, frames, sizes, WindowSpec.frames(100))) == summary(whole)
    assert len(whole) == frames.size - 1 and sum(len(w) for w in whole) == events.size
    for window, (start, end) in zip(whole, zip(frames[:-1], frames[1:])):
        assert (window.t_start_us, window.t_end_us) == (start, end)
        assert ((window.events["t"] >= start) & (window.events["t"] < end)).all()


def test_frames_spec_without_a_frame_clock_cuts_its_nominal_period():
    events = random_stream(1_000, seed=2)
    spec = WindowSpec.frames(700, drop_last=True)
    assert spec.without_frame_clock() == WindowSpec.duration(700, drop_last=True)
    assert WindowSpec.count(5).without_frame_clock() == WindowSpec.count(5)
    duration = WindowSpec.duration(700, drop_last=True)
    assert summary(slice_windows(events, spec)) == summary(slice_windows(events, duration))
    cutter = WindowCutter(WindowSpec.duration(10), frame_clock=True)  # other modes ignore the frames
    assert len(cutter.push(stream([0, 5, 12]))) == 1 and cutter.tick(11) == [] and len(cutter.finish()) == 1


def test_frames_bad_streams_are_refused():
    early = WindowCutter(WindowSpec.frames(10), frame_clock=True)
    early.push(stream([5]))
    with pytest.raises(DataError, match="before the stream's first frame at 6 us"):
        early.tick(6)
    cutter = WindowCutter(WindowSpec.frames(10), t_start_us=0, frame_clock=True)
    cutter.push(stream([1, 2]))
    assert len(cutter.tick(5)) == 1
    with pytest.raises(DataError, match="earlier than the frame at 5 us that started"):
        cutter.push(stream([4]))
    with pytest.raises(DataError, match="frame times go backwards"):
        cutter.tick(3)
    with pytest.raises(DataError, match="overlap 0"):
        WindowSpec("frames", 10, 2)
    assert WindowSpec.from_config(WindowSpec.frames(10).to_config()) == WindowSpec("frames", 10)


# --- Long gaps and crowded windows: bounded steps and memory whatever the timestamps say.


def test_a_short_silence_still_yields_empty_windows():
    from data.windows import LONG_GAP_WINDOWS

    windows = list(slice_windows(stream([0, 10 * LONG_GAP_WINDOWS]), WindowSpec.duration(10)))
    assert len(windows) == LONG_GAP_WINDOWS + 1
    assert [len(w) for w in windows] == [1] + [0] * (LONG_GAP_WINDOWS - 1) + [1]


@pytest.mark.parametrize("overlap", [0, 4])
def test_a_long_silence_is_one_step_with_a_long_dt(overlap):
    """Two events 5.8 days apart: two windows, the second's end minus the first's is the silence,
    and chunking does not change it (the windows are cut lazily, never all at once)."""
    gap = 500_000 * 1_000_000  # 5.8 days in us
    events = stream([0, 3, gap, gap + 2])
    spec = WindowSpec.duration(10, overlap)
    whole = list(slice_windows(events, spec))
    assert 2 <= len(whole) <= 4 and all(len(w) for w in whole)
    assert whole[-1].t_end_us - whole[0].t_end_us >= gap - 10
    assert summary(iter_windows(chunked(events, [1]), spec)) == summary(whole)


def test_feed_is_lazy_over_a_chunk_spanning_many_windows():
    cutter = WindowCutter(WindowSpec.duration(1))
    windows = cutter.feed(stream(np.arange(0, 10**7, 10)))  # 10 M windows, mostly short silences
    first = [next(windows) for _ in range(3)]
    assert [w.t_start_us for w in first] == [0, 1, 2]


def test_a_window_crowded_past_the_cap_is_refused(monkeypatch):
    """Every event at t = 0 (a file of zeros) is one ever-growing window: refused, not buffered."""
    import data.windows as windows

    monkeypatch.setattr(windows, "MAX_WINDOW_EVENTS", 1000)
    chunks = (stream(np.zeros(300, np.int64)) for _ in range(10))
    with pytest.raises(DataError, match=r"more than 1,000 events in the window from t=0 us"):
        list(iter_windows(chunks, WindowSpec.duration(10)))
    with pytest.raises(DataError, match=r"1,500 events in the 10 us window from t=0 us"):
        list(slice_windows(stream(np.r_[np.zeros(1500, np.int64), 50]), WindowSpec.duration(10)))
    cutter = WindowCutter(WindowSpec.frames(10), frame_clock=True)
    cutter.tick(0)
    with pytest.raises(DataError, match="more than 1,000 events"):
        for _ in range(10):
            cutter.push(stream(np.ones(300, np.int64)))
    with pytest.raises(DataError, match="at most 1,000 events"):
        WindowSpec.count(1001)
