"""Representations against float64 references written from their definitions, on both kernels."""
from __future__ import annotations

import numpy as np
import pytest

import data.representations as reps
from data.representations import kernels
from data.errors import DataError
from data.events import EVENT_DTYPE, make_events
from data.representations import (
    EventHistogram,
    TimeSurface,
    VoxelGrid,
    create_representation,
    list_representations,
    normalize_grid,
    to_event_histogram,
    to_time_surface,
    to_voxel_grid,
)

SENSOR = (17, 11)  # W, H: not square, so a swapped x/y shows


def random_events(n: int, sensor=SENSOR, t_max: int = 100_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), np.sort(rng.integers(0, t_max, n)),
        rng.integers(0, 2, n),
    )


# --- references: one event at a time, float64, straight from the definitions ------------------


def reference_voxel_grid(events, sensor, bins, polarity, t_start=None, t_end=None) -> np.ndarray:
    width, height = sensor
    groups = 2 if polarity == "split" else 1
    grid = np.zeros((groups * bins, height, width))
    t0 = events["t"][0] if t_start is None else t_start
    t1 = events["t"][-1] if t_end is None else t_end
    for x, y, t, p in events.tolist():
        tstar = (bins - 1) * (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        lo = int(np.floor(tstar))
        frac = tstar - lo
        weight = (1.0 if p > 0 else -1.0) if polarity == "signed" else 1.0
        base = bins * (p > 0) if polarity == "split" else 0
        grid[base + lo, y, x] += weight * (1.0 - frac)
        if lo + 1 < bins:
            grid[base + lo + 1, y, x] += weight * frac
        else:
            assert frac == 0.0
    return grid


def reference_histogram(events, sensor, bins, polarity) -> np.ndarray:
    width, height = sensor
    grid = np.zeros(((2 if polarity == "split" else 1) * bins, height, width))
    t0, t1 = events["t"][0], events["t"][-1]
    for x, y, t, p in events.tolist():
        b = min(int(np.floor(bins * (t - t0) / (t1 - t0))), bins - 1) if t1 > t0 else 0
        weight = (1.0 if p > 0 else -1.0) if polarity == "signed" else 1.0
        grid[(bins * (p > 0) if polarity == "split" else 0) + b, y, x] += weight
    return grid


def assert_close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5 * scale)


@pytest.fixture(params=["numba", "numpy"])
def backend(request, monkeypatch):
    """Run a test on the compiled kernels and again on the numpy fallback."""
    if request.param == "numba":
        pytest.importorskip("numba")
    monkeypatch.setattr(kernels, "use_numba", request.param == "numba")
    return request.param


# --- voxel grid ------------------------------------------------------------------------------


@pytest.mark.parametrize("bins", [1, 2, 5, 9])
@pytest.mark.parametrize("polarity", ["signed", "split", "merged"])
@pytest.mark.parametrize("sensor", [SENSOR, (64, 48)], ids=["dense", "sparse"])  # more / fewer events than pixels
def test_voxel_grid_matches_reference(backend, bins, polarity, sensor):
    events = random_events(2_000, sensor=sensor, seed=bins)
    ours = to_voxel_grid(events, sensor, bins, polarity=polarity)
    assert_close(ours, reference_voxel_grid(events, sensor, bins, polarity))


@pytest.mark.parametrize("polarity", ["signed", "split"])
def test_voxel_grid_explicit_range_matches_reference(backend, polarity):
    events = random_events(2_000, t_max=50_000)
    ours = to_voxel_grid(events, SENSOR, 4, polarity=polarity, t_start=-1_000, t_end=60_000)
    assert_close(ours, reference_voxel_grid(events, SENSOR, 4, polarity, -1_000, 60_000))


@pytest.mark.parametrize("polarity", ["signed", "split"])
def test_voxel_grid_with_empty_bins(backend, polarity):
    """Bins without events in the middle and at both ends of an explicit range."""
    early, late = random_events(1_000, t_max=10_000, seed=1), random_events(1_000, t_max=10_000, seed=2)
    late["t"] += 90_000
    events = np.concatenate([early, late])
    for t_start, t_end in ((None, None), (-40_000, 150_000)):
        ours = to_voxel_grid(events, SENSOR, 9, polarity=polarity, t_start=t_start, t_end=t_end)
        assert_close(ours, reference_voxel_grid(events, SENSOR, 9, polarity, t_start, t_end))


@pytest.mark.parametrize("polarity", ["signed", "split"])
def test_voxel_grid_unsorted_input_with_explicit_range(backend, polarity):
    events = random_events(3_000, seed=5)
    shuffled = events[np.random.default_rng(1).permutation(events.size)]
    late_disorder = np.concatenate([events[:2_000], shuffled[:1_000]])  # in order first, then not
    for order in (shuffled, late_disorder):
        ours = to_voxel_grid(order, SENSOR, 5, polarity=polarity, t_start=0, t_end=100_000)
        assert_close(ours, reference_voxel_grid(order, SENSOR, 5, polarity, 0, 100_000))


@pytest.mark.parametrize("polarity", ["signed", "split", "merged"])
def test_voxel_grid_conserves_mass(backend, polarity):
    events = random_events(20_000, seed=3)
    grid = to_voxel_grid(events, SENSOR, 5, polarity=polarity).astype(np.float64)
    signed = np.where(events["p"] > 0, 1, -1).sum()
    expected = signed if polarity == "signed" else events.size
    assert grid.sum() == pytest.approx(expected, abs=1e-3)
    if polarity == "split":  # each polarity's group holds exactly its own events
        assert grid[5:].sum() == pytest.approx((events["p"] > 0).sum(), abs=1e-3)


def test_voxel_grid_dense_window_edges(backend):
    """The sorted kernel (more events than pixels): one timestamp, many events at t_end, bins == 1."""
    n = 4 * 17 * 11
    rng = np.random.default_rng(11)
    x, y, p = rng.integers(0, 17, n), rng.integers(0, 11, n), rng.integers(0, 2, n)
    same_time = make_events(x, y, np.full(n, 7), p)  # t_end == t_start: everything in bin 0
    for polarity in ("signed", "split", "merged"):
        grid = to_voxel_grid(same_time, SENSOR, 3, polarity=polarity)
        assert_close(grid, reference_voxel_grid(same_time, SENSOR, 3, polarity))
        assert not grid.reshape(-1, 3, 11, 17)[:, 1:].any()
    at_end = make_events(x, y, np.where(np.arange(n) < n // 2, np.sort(rng.integers(0, 100, n)), 100), p)
    for bins in (1, 2, 4):
        assert_close(to_voxel_grid(at_end, SENSOR, bins, polarity="split"),
                     reference_voxel_grid(at_end, SENSOR, bins, "split"))


@pytest.mark.parametrize("method", ["minmax", "standard", "abs_max"])
@pytest.mark.parametrize("sensor", [SENSOR, (64, 48)], ids=["dense", "sparse"])
def test_voxel_grid_normalised_from_float64_sums(backend, method, sensor):
    events = random_events(2_000, sensor=sensor, seed=6)
    ours = to_voxel_grid(events, sensor, 5, polarity="split", normalize=method)
    expected = normalize_grid(reference_voxel_grid(events, sensor, 5, "split"), method)
    assert_close(ours, expected)


def test_dense_window_names_the_first_bad_event(backend):
    events = random_events(3_000)
    outside = events.copy()
    outside["x"][2_500] = 17
    with pytest.raises(DataError, match=r"event 2500 at \(x=17, y=\d+\) is outside the 17 x 11 sensor"):
        to_voxel_grid(outside, SENSOR, 5)
    late = events.copy()
    late["t"][2_000] = 150_000  # after the window's end, which defaults to the last event
    with pytest.raises(DataError, match=r"event 2000 at t=150000 us is outside the time range"):
        to_voxel_grid(late, SENSOR, 5, polarity="split")
    backwards = events.copy()
    backwards["t"][2_998] = -5  # out of order, and before the window (its first event)
    with pytest.raises(DataError, match=r"event 2998 at t=-5 us .* must be sorted by time"):
        to_voxel_grid(backwards, SENSOR, 5)


def test_voxel_grid_random_windows_match_reference(backend):
    """Short and long spans, far-off times, explicit ranges wider than the events, any bins: the
    bin edges the sorted kernel finds in integer time agree with the definition's t*."""
    rng = np.random.default_rng(12)
    sensor = (7, 5)
    for _ in range(150):
        n = int(rng.integers(36, 300))  # mostly more events than pixels: the sorted kernel
        span = int(rng.choice([0, 1, 3, 7, 100, 10**6, 10**12]))
        t = np.sort(int(rng.choice([0, -(10**6), 10**15])) + rng.integers(0, span + 1, n))
        events = make_events(rng.integers(0, 7, n), rng.integers(0, 5, n), t, rng.integers(0, 2, n))
        bins, polarity = int(rng.integers(1, 10)), str(rng.choice(["signed", "split", "merged"]))
        t_start = t_end = None
        if rng.random() < 0.4:
            t_start, t_end = int(t[0] - rng.integers(0, span + 2)), int(t[-1] + rng.integers(0, span + 2))
        ours = to_voxel_grid(events, sensor, bins, polarity=polarity, t_start=t_start, t_end=t_end)
        assert_close(ours, reference_voxel_grid(events, sensor, bins, polarity, t_start, t_end))


def test_voxel_grid_edge_cases(backend):
    one = make_events([3], [4], [1_000], [0])
    grid = to_voxel_grid(one, SENSOR, 5)
    assert grid[0, 4, 3] == -1.0 and np.count_nonzero(grid) == 1

    same_time = make_events([1, 2, 2], [1, 1, 1], [7, 7, 7], [1, 1, 0])  # t_end == t_start
    grid = to_voxel_grid(same_time, SENSOR, 3, polarity="split")
    assert grid[3, 1, 1] == 1 and grid[3, 1, 2] == 1 and grid[0, 1, 2] == 1 and grid.sum() == 3

    at_end = make_events([0, 5, 6], [0, 5, 6], [0, 100, 100], [1, 1, 1])  # two events exactly at t_end
    grid = to_voxel_grid(at_end, SENSOR, 4)
    assert grid[3, 5, 5] == 1 and grid[3, 6, 6] == 1 and grid[0, 0, 0] == 1 and grid.sum() == 3

    middle = make_events([0, 0, 0], [0, 0, 0], [0, 50, 100], [1, 1, 1])  # t* = 0.5 for the middle one
    assert to_voxel_grid(middle, SENSOR, 2)[:, 0, 0].tolist() == [1.5, 1.5]


def test_empty_input_gives_zeros_or_error(backend):
    empty = np.empty(0, EVENT_DTYPE)
    assert not to_voxel_grid(empty, SENSOR, 3, polarity="split").any()
    assert to_voxel_grid(empty, SENSOR, 3, polarity="split").shape == (6, 11, 17)
    assert to_event_histogram(empty, SENSOR).shape == (2, 11, 17)
    assert to_time_surface(empty, SENSOR).shape == (2, 11, 17)
    for func in (lambda e: to_voxel_grid(e, SENSOR, 3, allow_empty=False),
                 lambda e: to_event_histogram(e, SENSOR, allow_empty=False),
                 lambda e: to_time_surface(e, SENSOR, allow_empty=False)):
        with pytest.raises(DataError, match="empty"):
            func(empty)


def test_does_not_mutate_input(backend):
    events = random_events(5_000)
    before = events.copy()
    to_voxel_grid(events, SENSOR, 5)
    to_voxel_grid(events, SENSOR, 5, polarity="split", normalize="standard")
    to_event_histogram(events, SENSOR, bins=3)
    to_time_surface(events, SENSOR)
    assert np.array_equal(events, before)


def test_read_only_and_strided_input(backend):
    events = random_events(4_000)
    view = events[::3]
    view.flags.writeable = False
    assert_close(to_voxel_grid(view, SENSOR, 3), reference_voxel_grid(view, SENSOR, 3, "signed"))


def test_tonic_style_input_is_converted(backend):
    events = random_events(500)
    tonic_dtype = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "?")])
    as_tonic = np.empty(events.size, tonic_dtype)
    for field in "xytp":
        as_tonic[field] = events[field]
    assert np.array_equal(to_voxel_grid(as_tonic, SENSOR + (2,), 5), to_voxel_grid(events, SENSOR, 5))


def test_events_outside_sensor_or_range_are_refused(backend):
    events = make_events([1, 17], [1, 2], [0, 10], [1, 1])  # x = 17 on a 17-wide sensor
    for func in (lambda: to_voxel_grid(events, SENSOR, 2), lambda: to_event_histogram(events, SENSOR),
                 lambda: to_time_surface(events, SENSOR)):
        with pytest.raises(DataError, match=r"event 1 at \(x=17, y=2\) is outside the 17 x 11 sensor"):
            func()
    inside = make_events([1, 2], [1, 2], [0, 10], [1, 1])
    with pytest.raises(DataError, match=r"t=10 us is outside the time range \[0, 5\]"):
        to_voxel_grid(inside, SENSOR, 2, t_end=5)
    with pytest.raises(DataError, match="t_end .* is before t_start"):
        to_voxel_grid(inside, SENSOR, 2, t_start=10, t_end=0)
    unsorted = make_events([1, 2, 3], [1, 1, 1], [5, 0, 10], [1, 1, 1])
    with pytest.raises(DataError, match="sorted by time"):
        to_voxel_grid(unsorted, SENSOR, 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: to_voxel_grid(e, SENSOR, 0), "bins must be a positive integer"),
        (lambda e: to_voxel_grid(e, SENSOR, 2, polarity="both"), "polarity must be one of 'signed', 'split'"),
        (lambda e: to_voxel_grid(e, SENSOR, 2, normalize="l2"), "normalize must be one of None, 'minmax'"),
        (lambda e: to_voxel_grid(e, (0, 5), 2), "sensor_size must be"),
        (lambda e: to_time_surface(e, SENSOR, tau=0), "tau must be a positive"),
        (lambda e: to_time_surface(e, SENSOR, polarity="signed"), "polarity must be one of 'split', 'merged'"),
        (lambda e: to_voxel_grid(np.zeros(3), SENSOR, 2), "structured array"),
    ],
)
def test_bad_options_name_the_allowed_values(call, match):
    with pytest.raises(DataError, match=match):
        call(random_events(10))


def test_numba_and_numpy_kernels_agree(monkeypatch):
    pytest.importorskip("numba")
    events = random_events(50_000, sensor=(64, 48), seed=9)
    results = {}
    for flag in (True, False):
        monkeypatch.setattr(kernels, "use_numba", flag)
        results[flag] = [
            to_voxel_grid(events, (64, 48), 5, polarity="split"),
            to_event_histogram(events, (64, 48), bins=4),
            to_time_surface(events, (64, 48), tau=5_000.0),
        ]
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


# --- histogram and time surface --------------------------------------------------------------


@pytest.mark.parametrize("bins", [1, 3, 7])
@pytest.mark.parametrize("polarity", ["split", "signed", "merged"])
def test_histogram_matches_reference(backend, bins, polarity):
    events = random_events(3_000, seed=bins)
    ours = to_event_histogram(events, SENSOR, bins=bins, polarity=polarity)
    assert np.array_equal(ours, reference_histogram(events, SENSOR, bins, polarity).astype(np.float32))


def test_histogram_counts_per_polarity(backend):
    events = make_events([2, 2, 2, 5], [3, 3, 3, 1], [0, 1, 2, 3], [1, 1, 0, 0])
    hist = to_event_histogram(events, SENSOR)
    assert hist.shape == (2, 11, 17)
    assert hist[1, 3, 2] == 2 and hist[0, 3, 2] == 1 and hist[0, 1, 5] == 1 and hist.sum() == 4


def test_time_surface_matches_definition(backend):
    events = random_events(2_000, seed=4)
    tau, t_ref = 20_000.0, 80_000
    ours = to_time_surface(events, SENSOR, tau=tau, t_ref=t_ref)
    ref = np.zeros((2, 11, 17))
    for x, y, t, p in events.tolist():
        if t <= t_ref:  # later events have not happened yet
            ref[int(p > 0), y, x] = max(ref[int(p > 0), y, x], np.exp(-(t_ref - t) / tau))
    assert_close(ours, ref)
    merged = to_time_surface(events, SENSOR, tau=tau, t_ref=t_ref, polarity="merged")
    assert_close(merged, ref.max(axis=0, keepdims=True))


def test_time_surface_latest_pixel_is_one_and_silent_pixels_zero(backend):
    events = make_events([1, 1, 4], [1, 1, 2], [0, 1_000, 500], [1, 1, 0])
    surface = to_time_surface(events, SENSOR, tau=1_000.0)
    assert surface[1, 1, 1] == 1.0  # latest event of the window, default t_ref
    assert surface[0, 2, 4] == pytest.approx(np.exp(-0.5))
    assert np.count_nonzero(surface) == 2


# --- normalisation, configured objects, registry ---------------------------------------------


def test_normalisations():
    grid = np.array([[[0.0, 2.0], [-1.0, 3.0]]])
    np.testing.assert_allclose(normalize_grid(grid, "minmax"), [[[0.25, 0.75], [0.0, 1.0]]])
    np.testing.assert_allclose(normalize_grid(grid, "abs_max"), grid / 3)
    standard = normalize_grid(grid, "standard")
    values = standard[grid != 0]
    assert standard[0, 0, 0] == 0 and values.mean() == pytest.approx(0) and values.std() == pytest.approx(1)
    assert not normalize_grid(np.ones((1, 2, 2)), "minmax").any()  # constant: no division by zero
    assert np.array_equal(normalize_grid(grid, None), grid)
    before = grid.copy()
    normalize_grid(grid, "standard")
    assert np.array_equal(grid, before)


def test_normalize_option_is_applied(backend):
    events = random_events(1_000)
    grid = to_voxel_grid(events, SENSOR, 3, normalize="abs_max")
    assert np.abs(grid).max() == pytest.approx(1.0)
    raw = to_voxel_grid(events, SENSOR, 3)
    np.testing.assert_allclose(grid, raw / np.abs(raw).max(), rtol=1e-6)


@pytest.mark.parametrize("name", list_representations())
def test_registered_representations_contract(name):
    rep = create_representation(name)
    events = random_events(1_000)
    out = rep(events, SENSOR)
    assert out.shape == (rep.channels, 11, 17) and out.dtype == np.float32
    assert create_representation(**rep.to_config()) == rep
    with pytest.raises(Exception):
        rep.polarity = "merged"  # frozen


def test_registry_and_objects():
    assert list_representations() == ["histogram", "time_surface", "voxel_grid"]
    assert create_representation("voxel_grid", bins=3, polarity="split").channels == 6
    assert EventHistogram(bins=2, polarity="merged").channels == 2 and TimeSurface().channels == 2
    with pytest.raises(DataError, match="unknown name 'voxel'; choose one of histogram, time_surface"):
        create_representation("voxel")
    with pytest.raises(DataError, match="unknown options \\['n_bins'\\]; allowed: bins, polarity, normalize"):
        create_representation("voxel_grid", n_bins=3)
    with pytest.raises(DataError, match="polarity must be one of"):
        VoxelGrid(polarity="on")
    with pytest.raises(ValueError, match="already registered"):
        reps.register_representation("voxel_grid")(VoxelGrid)


def test_objects_use_window_bounds():
    events = make_events([0, 1], [0, 0], [100, 200], [1, 1])
    grid = VoxelGrid(bins=3)(events, SENSOR, t_start=0, t_end=400)  # t* = 0.5 and 1.0
    assert grid[:, 0, 0].tolist() == [0.5, 0.5, 0.0] and grid[:, 0, 1].tolist() == [0.0, 1.0, 0.0]
    surface = TimeSurface(tau=100.0)(events, SENSOR, t_end=300)
    assert surface[1, 0, 1] == pytest.approx(np.exp(-1.0))


# --- tonic ------------------------------------------------------------------------------------


def test_tonic_voxel_grid_loses_mass_where_ours_keeps_it():
    """tonic 1.7.0 scales time by B instead of B - 1: about 1/(2B) of the mass falls off the end."""
    tonic_functional = pytest.importorskip("tonic.functional")
    bins, n = 5, 10_000
    events = make_events(np.arange(n) % 17, np.arange(n) % 11, np.arange(n) * 10, np.ones(n))  # all ON, even
    ours = to_voxel_grid(events, SENSOR, bins)
    assert float(ours.sum(dtype=np.float64)) == pytest.approx(n, rel=1e-6)
    tonic_input = events.copy()
    theirs = tonic_functional.to_voxel_grid_numpy(tonic_input, SENSOR + (2,), bins)
    lost = 1 - theirs.sum() / n
    import tonic

    if tonic.__version__ != "1.7.0":
        pytest.skip(f"the loss is documented for tonic 1.7.0, this is {tonic.__version__}")
    assert lost == pytest.approx(1 / (2 * bins), rel=0.01)


# --- real recordings ---------------------------------------------------------------------------

REAL = [("tonic_sample.aedat4", (320, 240)), ("expelliarmus_evt2_sample.raw", (640, 480)),
        ("expelliarmus_evt3_sample.raw", (1280, 720))]


@pytest.mark.real_data
@pytest.mark.parametrize("name, sensor", REAL, ids=[name for name, _ in REAL])
def test_real_recordings(shared_data, monkeypatch, name, sensor):
    """Decoded reference events of real files (p stored as uint8): both kernels agree and keep the mass."""
    from data.events import as_events

    events = as_events(np.load(shared_data / "events" / f"{name}.reference.npy"))
    signed = float(np.where(events["p"] > 0, 1, -1).sum())
    grids = []
    for flag in ([True, False] if kernels.numba is not None else [False]):
        monkeypatch.setattr(kernels, "use_numba", flag)
        grids.append(to_voxel_grid(events, sensor, 5, polarity="split"))
        signed_grid = to_voxel_grid(events, sensor, 5)
        assert float(signed_grid.sum(dtype=np.float64)) == pytest.approx(signed, abs=1e-2)
    for grid in grids:
        assert grid.shape == (10, sensor[1], sensor[0])
        assert float(grid.sum(dtype=np.float64)) == pytest.approx(events.size, rel=1e-6)
        assert float(grid[5:].sum(dtype=np.float64)) == pytest.approx((events["p"] > 0).sum(), rel=1e-6)
        np.testing.assert_allclose(grid, grids[0], rtol=0, atol=1e-5 * np.abs(grids[0]).max())
    if events.size < 150_000:  # the event-by-event reference takes about a second per 100 k events
        assert_close(grids[0], reference_voxel_grid(events, sensor, 5, "split"))
