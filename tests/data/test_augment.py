"""Augmentations: deterministic for a seed, never mutate, keep events canonical, sorted, on the sensor."""
from __future__ import annotations

import numpy as np
import pytest

from data import augment as aug
from data.errors import DataError
from data.events import EVENT_DTYPE, check_events, make_events

SENSOR = (20, 12)


def random_events(n: int = 2_000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, SENSOR[0], n), rng.integers(0, SENSOR[1], n), np.sort(rng.integers(0, 100_000, n)),
        rng.integers(0, 2, n),
    )


WRAPPERS = [
    aug.FlipX(p=1.0),
    aug.FlipY(p=1.0),
    aug.FlipPolarity(p=0.3),
    aug.DropEvents(fraction=0.25),
    aug.DropTimeSpan(fraction=0.2),
    aug.DropArea(fraction=0.5),
    aug.SpatialJitter(sigma=2.0),
    aug.TemporalJitter(sigma_us=500.0),
    aug.BackgroundNoise(rate_hz=20.0),
    aug.HotPixels(count=3, rate_hz=2_000.0),
    aug.RandomTranslate(max_shift=3),
    aug.TimeStretch(max_factor=1.5),
    aug.Compose([aug.FlipX(p=0.5), aug.SpatialJitter(sigma=1.0), aug.BackgroundNoise(rate_hz=5.0)]),
]


@pytest.mark.parametrize("transform", WRAPPERS, ids=lambda t: type(t).__name__)
def test_contract(transform):
    events = random_events()
    before = events.copy()
    a = transform(events, SENSOR, np.random.default_rng(7))
    b = transform(events, SENSOR, np.random.default_rng(7))
    assert np.array_equal(events, before)  # input untouched
    assert np.array_equal(a, b)  # same seed, same output
    assert a is not events and not np.shares_memory(a, events)
    check_events(a, SENSOR)  # canonical dtype, sorted by time, inside the sensor
    assert set(np.unique(a["p"])) <= {0, 1}
    empty = transform(np.empty(0, EVENT_DTYPE), SENSOR, np.random.default_rng(0))
    assert empty.dtype == EVENT_DTYPE and empty.size == 0


def test_different_seeds_differ():
    events = random_events()
    a = aug.SpatialJitter(sigma=2.0)(events, SENSOR, np.random.default_rng(1))
    b = aug.SpatialJitter(sigma=2.0)(events, SENSOR, np.random.default_rng(2))
    assert not np.array_equal(a, b)


def test_flips():
    events = make_events([0, 19, 5], [0, 11, 3], [1, 2, 3], [1, 0, 1])
    fx = aug.flip_x(events, SENSOR)
    assert fx["x"].tolist() == [19, 0, 14] and np.array_equal(fx["y"], events["y"])
    fy = aug.flip_y(events, SENSOR)
    assert fy["y"].tolist() == [11, 0, 8] and np.array_equal(fy["x"], events["x"])
    assert np.array_equal(aug.flip_x(fx, SENSOR), events)
    assert np.array_equal(aug.FlipX(p=0.0)(events, SENSOR, np.random.default_rng(0)), events)


def test_flip_polarity_probability():
    events = random_events(20_000)
    rng = np.random.default_rng(0)
    assert np.array_equal(aug.flip_polarity(events, rng, p=1.0)["p"], 1 - events["p"])
    assert np.array_equal(aug.flip_polarity(events, rng, p=0.0), events)
    flipped = (aug.flip_polarity(events, rng, p=0.3)["p"] != events["p"]).mean()
    assert flipped == pytest.approx(0.3, abs=0.02)


def test_drops():
    events = random_events(20_000)
    events["t"] = np.arange(events.size) * 5  # unique times identify the events
    rng = np.random.default_rng(0)
    kept = aug.drop_events(events, rng, 0.25)
    assert kept.size / events.size == pytest.approx(0.75, abs=0.02)
    assert np.array_equal(kept, events[np.searchsorted(events["t"], kept["t"])])  # a subset, untouched
    assert aug.drop_events(events, rng, 1.0).size == 0 and aug.drop_events(events, rng, 0.0).size == events.size

    span = aug.drop_time_span(events, rng, 0.3)
    gaps = np.diff(span["t"])
    assert gaps.max() >= 0.3 * (events["t"][-1] - events["t"][0]) - 1_000  # a hole about that long
    assert aug.drop_time_span(events, rng, 1.0).size == 0

    area = aug.drop_area(events, SENSOR, rng, 0.5)
    missing = np.zeros((SENSOR[1], SENSOR[0]), bool)
    missing[events["y"], events["x"]] = True
    missing[area["y"], area["x"]] = False
    ys, xs = np.nonzero(missing)
    assert xs.max() - xs.min() + 1 <= 10 and ys.max() - ys.min() + 1 <= 6  # one 10 x 6 box
    assert aug.drop_area(events, SENSOR, rng, 1.0).size == 0


def test_jitters():
    events = random_events(20_000)
    rng = np.random.default_rng(0)
    moved = aug.spatial_jitter(events, SENSOR, rng, sigma=1.0)
    dx = moved["x"].astype(int) - events["x"]
    assert np.abs(dx).max() > 0 and np.abs(dx).mean() < 1.5
    assert np.array_equal(moved["t"], events["t"]) and np.array_equal(moved["p"], events["p"])
    assert np.array_equal(aug.spatial_jitter(events, SENSOR, rng, sigma=0.0), events)

    shifted = aug.temporal_jitter(events, rng, sigma_us=1_000.0)
    assert shifted.size == events.size and not np.array_equal(shifted["t"], events["t"])
    assert shifted["t"].min() >= events["t"][0] and shifted["t"].max() <= events["t"][-1]
    assert np.array_equal(np.sort(shifted["x"]), np.sort(events["x"]))  # the same events, moved in time


def test_background_noise_rate():
    events = random_events(1_000)  # spans ~0.1 s
    rng = np.random.default_rng(0)
    noisy = aug.add_background_noise(events, SENSOR, rng, rate_hz=50.0, t_start=0, t_end=1_000_000)
    added = noisy.size - events.size
    assert added == pytest.approx(50.0 * 20 * 12 * 1.0, rel=0.05)  # Poisson mean 12,000
    assert noisy["t"].min() >= 0 and noisy["t"].max() <= 1_000_000
    # the original events are all still there, in order
    original = np.isin(noisy, events)
    assert np.array_equal(noisy[original], events)
    with pytest.raises(DataError, match="at most"):
        aug.add_background_noise(events, SENSOR, rng, rate_hz=1e12)


def test_hot_pixels():
    events = random_events(100)
    rng = np.random.default_rng(0)
    hot = aug.add_hot_pixels(events, SENSOR, rng, count=2, rate_hz=10_000.0, t_start=0, t_end=100_000)
    extra = hot.size - events.size
    assert extra == pytest.approx(2 * 1_000, rel=0.15)
    counts = np.bincount(hot["y"].astype(int) * SENSOR[0] + hot["x"], minlength=240)
    assert np.sort(counts)[-2:].min() > 800  # two pixels carry the added events
    with pytest.raises(DataError, match=r"count must be an integer in \[0, 240\]"):
        aug.add_hot_pixels(events, SENSOR, rng, count=241, rate_hz=1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: aug.flip_polarity(e, np.random.default_rng(0), p=1.5), r"p must be a number \[0.0, 1.0\]"),
        (lambda e: aug.drop_events(e, 0, 0.1), "rng must be a numpy.random.Generator"),
        (lambda e: aug.spatial_jitter(e, SENSOR, np.random.default_rng(0), sigma=-1), "sigma must be a number >= 0"),
        (lambda e: aug.flip_x(e, (10, 12)), "outside the 10 x 12 sensor"),
        (lambda e: aug.flip_x(e[::-1], SENSOR), "timestamps go backwards"),
        (lambda e: aug.DropEvents(fraction=2), r"fraction must be a number \[0.0, 1.0\]"),
        (lambda e: aug.HotPixels(count=-1), "count must be a non-negative integer"),
        (lambda e: aug.Compose([3]), "not callable"),
        (lambda e: aug.translate(e, SENSOR, 1.5, 0), "dx must be an integer number of pixels"),
        (lambda e: aug.time_stretch(e, 0.0), "factor must be a positive number"),
        (lambda e: aug.RandomTranslate(max_shift=-1), "max_shift must be a non-negative integer"),
        (lambda e: aug.TimeStretch(max_factor=0.5), r"max_factor must be a number >= 1.0"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(DataError, match=match):
        call(random_events(50))


def test_translate_moves_every_event_and_drops_those_that_leave():
    events = random_events(5_000)
    moved = aug.translate(events, SENSOR, 3, -2)
    kept = (events["x"] + 3 < SENSOR[0]) & (events["y"].astype(int) - 2 >= 0)
    assert moved.size == kept.sum() < events.size
    assert np.array_equal(moved["x"], events["x"][kept] + 3) and np.array_equal(moved["y"], events["y"][kept] - 2)
    assert np.array_equal(moved["t"], events["t"][kept]) and np.array_equal(moved["p"], events["p"][kept])
    assert np.array_equal(aug.translate(events, SENSOR, 0, 0), events)
    seen = set()
    for seed in range(40):  # RandomTranslate: one shift per window, each in [-2, 2]
        out = aug.RandomTranslate(2)(make_events([10, 11], [6, 6], [0, 1], [1, 1]), SENSOR, np.random.default_rng(seed))
        dx, dy = int(out["x"][0]) - 10, int(out["y"][0]) - 6
        assert out["x"][1] - out["x"][0] == 1 and abs(dx) <= 2 and abs(dy) <= 2
        seen.add((dx, dy))
    assert len(seen) > 10


def test_time_stretch_scales_time_from_the_first_event_and_keeps_the_order():
    events = make_events([1, 2, 3, 4], [0, 0, 0, 0], [1_000, 1_000, 2_000, 11_000], [1, 0, 1, 0])
    slow = aug.time_stretch(events, 2.0)
    assert slow["t"].tolist() == [1_000, 1_000, 3_000, 21_000]
    assert np.array_equal(slow[["x", "y", "p"]], events[["x", "y", "p"]])
    assert aug.time_stretch(events, 0.5)["t"].tolist() == [1_000, 1_000, 1_500, 6_000]
    factors = []
    for seed in range(50):
        out = aug.TimeStretch(1.25)(events, SENSOR, np.random.default_rng(seed))
        factors.append((out["t"][-1] - 1_000) / 10_000)
    assert 0.8 - 1e-3 <= min(factors) < 0.9 and 1.1 < max(factors) <= 1.25 + 1e-3


def test_create_augmentation_builds_the_named_chain_in_order():
    chain = aug.create_augmentation({"translate": {"max_shift": 2}, "drop_events": {"fraction": 0.1},
                                     "time_stretch": None})
    assert chain == aug.Compose((aug.RandomTranslate(2), aug.DropEvents(0.1), aug.TimeStretch()))
    assert aug.create_augmentation({}) == aug.Compose(())
    assert {"translate", "time_stretch", "drop_events", "flip_x", "spatial_jitter"} <= set(aug.list_augmentations())


@pytest.mark.parametrize(
    "config, match",
    [
        ({"flip_z": {}}, "unknown 'flip_z'; choose from background_noise, drop_area"),
        ({"drop_events": {"fraction": 0.1, "p": 1}}, "keys from fraction"),
        ({"drop_events": 0.1}, "options must be a mapping"),
        ({"drop_events": {"fraction": 3}}, "fraction must be a number"),
        ([("drop_events", {})], "expected a mapping of name -> options"),
    ],
)
def test_create_augmentation_refuses_bad_configs(config, match):
    with pytest.raises(DataError, match=match):
        aug.create_augmentation(config)


def test_registry_refuses_duplicate_names():
    with pytest.raises(ValueError, match="already registered"):
        aug.register_augmentation("flip_x")(aug.FlipY)
