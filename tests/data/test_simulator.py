"""The event simulator: polarity, counts, timing, refractory period, streaming, noise, errors."""
import numpy as np
import pytest

from data.errors import DataError
from data.events import EVENT_DTYPE, check_events
from data.simulator import EventSimulator, SimulatorConfig, initial_state, log_intensity, simulate_events

EXACT = SimulatorConfig(threshold_sigma=0.0, refractory_us=0)  # thresholds exactly 0.2, no refractory


def _ramp(values, shape=(1, 1)) -> np.ndarray:
    """Float frames (T, H, W), every pixel at the given intensities."""
    return np.asarray(values, dtype=np.float32)[:, None, None] * np.ones(shape, np.float32)


def _moving_video(steps=12, shape=(24, 32), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A textured pattern drifting right over a gradient, uint8 (T, H, W), with irregular times (T,)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    frames = [128 + 90 * np.sin((xx + 1.7 * k) / 3.0) * np.cos(yy / 4.0 + 0.3 * k) for k in range(steps)]
    times = np.cumsum(rng.uniform(0.01, 0.05, steps))
    return np.clip(frames, 0, 255).astype(np.uint8), times


def test_brightening_gives_on_darkening_gives_off():
    rng = np.random.default_rng(0)
    up, _ = simulate_events(_ramp([0.1, 0.8]), [0.0, 0.1], config=EXACT, rng=rng)
    down, _ = simulate_events(_ramp([0.8, 0.1]), [0.0, 0.1], config=EXACT, rng=rng)
    assert up.size > 0 and (up["p"] == 1).all()
    assert down.size > 0 and (down["p"] == 0).all()
    assert up.dtype == EVENT_DTYPE and down.dtype == EVENT_DTYPE


@pytest.mark.parametrize("threshold", [0.1, 0.2, 0.35])
def test_event_count_is_log_change_over_threshold(threshold):
    config = SimulatorConfig(threshold_on=threshold, threshold_off=threshold, threshold_sigma=0, refractory_us=0)
    low, high = 0.05, 0.9
    change = np.log(high + config.eps) - np.log(low + config.eps)
    for values in ([low, high], [high, low]):
        events, _ = simulate_events(_ramp(values, (3, 4)), [0.0, 0.05], config=config, rng=np.random.default_rng(0))
        per_pixel = np.bincount(events["y"].astype(int) * 4 + events["x"], minlength=12)
        assert (per_pixel == int(np.floor(change / threshold))).all()


def test_timestamps_are_interpolated_between_the_frames():
    events, _ = simulate_events(_ramp([0.1, 0.8]), [1.0, 1.1], config=EXACT, rng=np.random.default_rng(0))
    change = np.log(0.81) - np.log(0.11)
    k = np.arange(1, events.size + 1)
    expected = 1_000_000 + np.rint(k * 0.2 / change * 100_000)   # crossing k of a linear log ramp
    assert np.abs(events["t"] - expected).max() <= 1
    assert events["t"].min() > 1_000_000 and events["t"].max() <= 1_100_000


def test_timestamps_in_microseconds_sorted_and_inside_each_interval():
    frames, times = _moving_video()
    events, _ = simulate_events(frames, times, rng=np.random.default_rng(1))
    check_events(events, sensor_size=(32, 24))
    times_us = np.rint(times * 1e6)
    assert events["t"].min() > times_us[0] and events["t"].max() <= times_us[-1]


def test_refractory_period_is_respected():
    frames = _ramp([0.02, 1.0, 0.02], (2, 2))   # ~4 events per pixel and direction, ~1.2 ms apart
    free, _ = simulate_events(frames, [0.0, 0.005, 0.01], config=EXACT, rng=np.random.default_rng(0))
    config = SimulatorConfig(threshold_sigma=0.0, refractory_us=2000)
    held, _ = simulate_events(frames, [0.0, 0.005, 0.01], config=config, rng=np.random.default_rng(0))
    assert 0 < held.size < free.size
    for pixel in range(4):
        t = held["t"][(held["y"].astype(int) * 2 + held["x"]) == pixel]
        assert t.size > 1 and (np.diff(t) >= 2000).all()


def test_references_keep_tracking_through_the_refractory_period():
    """Lost crossings still move the reference: a later return to the start level gives no spurious burst."""
    config = SimulatorConfig(threshold_sigma=0.0, refractory_us=10**9)
    events, state = simulate_events(_ramp([0.1, 0.8]), [0.0, 0.1], config=config, rng=np.random.default_rng(0))
    assert events.size == 1
    assert abs(float(state.reference[0, 0]) - np.log(0.81)) < 0.2


@pytest.mark.parametrize("noise", [0.0, 5.0])
@pytest.mark.parametrize("cut", [1, 5, 11])
def test_chunks_give_the_same_events_as_one_call(noise, cut):
    frames, times = _moving_video()
    config = SimulatorConfig(noise_rate_hz=noise)
    whole, end = simulate_events(frames, times, config=config, rng=np.random.default_rng(3))
    rng = np.random.default_rng(3)
    first, state = simulate_events(frames[:cut], times[:cut], config=config, rng=rng)
    second, state2 = simulate_events(frames[cut:], times[cut:], config=config, rng=rng, state=state)
    assert whole.size > 0
    np.testing.assert_array_equal(np.concatenate([first, second]), whole)
    np.testing.assert_array_equal(state2.reference, end.reference)
    np.testing.assert_array_equal(state2.last_event_us, end.last_event_us)


def test_feeding_frames_one_at_a_time_equals_one_call():
    frames, times = _moving_video()
    config = SimulatorConfig(noise_rate_hz=2.0)
    whole, _ = simulate_events(frames, times, config=config, rng=np.random.default_rng(4))
    simulator = EventSimulator(config, np.random.default_rng(4))
    fed = [simulator.feed(frame, t) for frame, t in zip(frames, times)]
    assert fed[0].size == 0
    np.testing.assert_array_equal(np.concatenate(fed), whole)


def test_the_given_state_is_not_modified():
    frames, times = _moving_video()
    _, state = simulate_events(frames[:3], times[:3], rng=np.random.default_rng(0))
    before = state.copy()
    simulate_events(frames[3:], times[3:], rng=np.random.default_rng(0), state=state)
    for name in ("reference", "log_frame", "last_event_us", "threshold_on"):
        np.testing.assert_array_equal(getattr(state, name), getattr(before, name))


def test_constant_frames_give_no_events_even_after_changes():
    frames, times = _moving_video(steps=6)
    _, state = simulate_events(frames, times, rng=np.random.default_rng(0))
    still = np.repeat(frames[-1:], 5, axis=0)
    events, _ = simulate_events(still, times[-1] + 0.03 * np.arange(1, 6), rng=np.random.default_rng(0), state=state)
    assert events.size == 0
    events, _ = simulate_events(np.full((4, 8, 8), 77, np.uint8), np.arange(4) * 0.1, rng=np.random.default_rng(0))
    assert events.size == 0


def test_seeded_runs_are_deterministic_and_seeds_matter():
    frames, times = _moving_video()
    config = SimulatorConfig(noise_rate_hz=3.0)
    a, _ = simulate_events(frames, times, config=config, rng=np.random.default_rng(7))
    b, _ = simulate_events(frames, times, config=config, rng=np.random.default_rng(7))
    c, _ = simulate_events(frames, times, config=config, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_per_pixel_thresholds_spread_as_configured():
    config = SimulatorConfig(threshold_on=0.3, threshold_off=0.25, threshold_sigma=0.05)
    state = initial_state(np.zeros((200, 100), np.uint8), 0.0, config=config, rng=np.random.default_rng(0))
    assert abs(state.threshold_on.mean() - 0.3) < 0.005 and abs(state.threshold_on.std() - 0.05) < 0.005
    assert abs(state.threshold_off.mean() - 0.25) < 0.005
    assert not np.array_equal(state.threshold_on, state.threshold_off)


def test_background_noise_rate_and_polarity():
    config = SimulatorConfig(noise_rate_hz=10.0, noise_on_fraction=0.25)
    frames = np.full((11, 20, 30), 100, np.uint8)
    events, _ = simulate_events(frames, np.arange(11) * 0.1, config=config, rng=np.random.default_rng(0))
    expected = 10.0 * 600 * 1.0                                        # rate x pixels x seconds
    assert abs(events.size - expected) < 5 * np.sqrt(expected)
    assert abs(events["p"].mean() - 0.25) < 0.03
    check_events(events, sensor_size=(30, 20))


def test_colour_frames_use_luminance():
    frames, times = _moving_video(steps=4)
    rng = np.random.default_rng(0)
    colour = np.stack([frames, np.roll(frames, 3, axis=2), frames // 2], axis=-1)          # (T, H, W, 3)
    grey = colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    np.testing.assert_allclose(log_intensity(colour), log_intensity(grey), atol=1e-5)
    bgr = SimulatorConfig(color_order="bgr")
    np.testing.assert_allclose(log_intensity(colour[..., ::-1], bgr), log_intensity(colour), atol=1e-6)
    events, _ = simulate_events(colour, times, rng=rng)
    assert events.size > 0


def _reference_simulator(frames, times, thr_on, thr_off, refractory_us):
    """A per-pixel loop written for clarity, not speed: the vectorised simulator must agree with it."""
    logs = log_intensity(frames).astype(np.float64)
    times_us = np.rint(np.asarray(times) * 1e6).astype(np.int64)
    out = []
    for y in range(logs.shape[1]):
        for x in range(logs.shape[2]):
            ref, last = logs[0, y, x], None
            for i in range(1, len(logs)):
                l0, l1 = logs[i - 1, y, x], logs[i, y, x]
                while l1 - ref >= thr_on or ref - l1 >= thr_off:
                    up = l1 > ref
                    ref = ref + thr_on if up else ref - thr_off
                    t = times_us[i - 1] + np.rint((ref - l0) / (l1 - l0) * (times_us[i] - times_us[i - 1]))
                    if last is None or t - last >= refractory_us:
                        out.append((x, y, int(t), int(up)))
                        last = t
    return sorted(out, key=lambda e: (e[2], e[1], e[0], e[3]))


@pytest.mark.parametrize("refractory_us", [0, 3000])
def test_agrees_with_a_per_pixel_loop(refractory_us):
    frames, times = _moving_video(steps=8, shape=(6, 7))
    config = SimulatorConfig(threshold_sigma=0, refractory_us=refractory_us)
    events, _ = simulate_events(frames, times, config=config, rng=np.random.default_rng(0))
    expected = _reference_simulator(frames, times, 0.2, 0.2, refractory_us)
    got = [tuple(int(v) for v in e) for e in events]
    assert len(got) == len(expected) > 20
    assert [(x, y, p) for x, y, _, p in got] == [(x, y, p) for x, y, _, p in expected]
    assert max(abs(a[2] - b[2]) for a, b in zip(got, expected)) <= 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: simulate_events(np.zeros((3, 4)), [0, 1, 2], rng=np.random.default_rng()), "expected \\(T, H, W\\)"),
        (lambda: simulate_events(np.zeros((3, 4, 4)), [0, 1], rng=np.random.default_rng()), "times: expected shape"),
        (lambda: simulate_events(np.zeros((3, 4, 4)), [0, 2, 1], rng=np.random.default_rng()), "backwards"),
        (lambda: simulate_events(-np.ones((2, 4, 4)), [0, 1], rng=np.random.default_rng()), ">= 0"),
        (lambda: simulate_events(np.zeros((2, 4, 4), np.int32), [0, 1], rng=np.random.default_rng()), "dtype"),
        (lambda: SimulatorConfig(threshold_on=0), "threshold_on"),
        (lambda: SimulatorConfig(color_order="rgba"), "\\['bgr', 'rgb'\\]"),
        (lambda: EventSimulator(SimulatorConfig(), rng=None), "Generator"),
    ],
)
def test_bad_input_raises_a_data_error(call, match):
    with pytest.raises(DataError, match=match):
        call()


def test_a_chunk_of_another_size_or_earlier_time_is_refused():
    _, state = simulate_events(np.zeros((2, 4, 4)), [0, 1], rng=np.random.default_rng())
    with pytest.raises(DataError, match="differs"):
        simulate_events(np.zeros((1, 5, 4)), [2], rng=np.random.default_rng(), state=state)
    with pytest.raises(DataError, match="before the previous frame"):
        simulate_events(np.zeros((1, 4, 4)), [0.5], rng=np.random.default_rng(), state=state)
