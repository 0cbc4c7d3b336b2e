"""The built-in synthetic dataset: contracts, determinism, splits, and the tasks of its pairs."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from data.collate import collate_clips
from data.errors import DataError
from data.events import check_events
from data.synthetic import (
    ALL_CLASSES,
    DEFAULT_CLASSES,
    FLASH_STEPS,
    TASKS,
    FALL_TRAVEL,
    SyntheticConfig,
    SyntheticMotionDataset,
    _BY_NAME,
    _draw_scene,
    _render,
    class_names,
    make_clip,
    make_clips,
    pair_kinds,
    partners,
)

# A flat background: the object is easy to locate. The moving classes, in the order their statistical
# checks were set with; FLASHES for the default set.
CLEAN = SyntheticConfig(frame_noise=0.0, texture=0.0, classes=("square", "circle", "swipe_left", "swipe_right",
                                                               "rotate_cw", "rotate_ccw", "fall_slow", "fall_fast"))
FLASHES = replace(CLEAN, classes=DEFAULT_CLASSES)


def _centroids(frames: np.ndarray) -> np.ndarray:
    """(T, 2) x, y of the object in uint8 frames (T, H, W) over a flat background."""
    frames = frames.astype(np.float64)
    weight = np.abs(frames - np.median(frames, axis=(1, 2), keepdims=True))
    ys, xs = np.mgrid[0:frames.shape[1], 0:frames.shape[2]] + 0.5
    total = weight.sum(axis=(1, 2))
    return np.stack([(weight * xs).sum(axis=(1, 2)) / total, (weight * ys).sum(axis=(1, 2)) / total], axis=1)


def _clips_of(name: str, count: int, config=CLEAN, split="train"):
    k = config.classes.index(name)
    return make_clips([k + i * len(config.classes) for i in range(count)], split=split, config=config)


def test_class_tables_are_consistent():
    names = class_names()
    assert names == DEFAULT_CLASSES and len(names) == 8
    kinds, mates = pair_kinds(), partners()
    assert set(kinds.values()) == {"appearance", "order", "duration", "speed"}
    assert [task for task in dict.fromkeys(kinds.values()) if TASKS[task]] == ["order", "duration", "speed"]
    everything = pair_kinds(SyntheticConfig(classes=ALL_CLASSES))
    for name in ALL_CLASSES:
        assert mates[mates[name]] == name and mates[name] != name if name in mates else True
        assert everything[partners(SyntheticConfig(classes=ALL_CLASSES))[name]] == everything[name]


@pytest.mark.parametrize("modality", ["frames", "events"])
def test_items_follow_the_clip_contract(modality):
    ds = SyntheticMotionDataset("train", size=10, modality=modality)
    assert len(ds) == 10
    channels = 1 if modality == "frames" else 5
    for i in range(len(ds)):
        item = ds[i]
        assert item["x"].shape == (12, channels, 64, 64) and item["x"].dtype == torch.float32
        assert item["t"].shape == (12,) and item["t"].dtype == torch.float64
        assert (item["t"].diff() > 0).all()
        if modality == "frames":  # frame times from the first frame
            assert item["t"][0] == 0
        else:  # window ends from the first window's start, one period before the first frame
            clip = ds.clips[i]
            np.testing.assert_allclose(item["t"].numpy(), clip.t + clip.period, atol=1e-6)
        assert item["y"] == i % 8 and isinstance(item["y"], int)
        assert torch.isfinite(item["x"]).all()
    if modality == "frames":
        assert 0 <= float(item["x"].min()) and float(item["x"].max()) <= 1
    batch = collate_clips([ds[i] for i in range(4)])
    assert batch["x"].shape == (4, 12, channels, 64, 64) and batch["dt"].shape == (4, 12)


@pytest.mark.parametrize("size, steps", [(32, 8), (48, 16)])
def test_other_sizes_and_lengths(size, steps):
    config = SyntheticConfig(size=size, steps=steps)
    for modality in ("frames", "events"):
        x = SyntheticMotionDataset("val", size=8, modality=modality, config=config)[5]["x"]
        assert x.shape[0] == steps and x.shape[2:] == (size, size)


def test_events_modality_windows_and_representation():
    config = SyntheticConfig(representation={"name": "voxel_grid", "bins": 3, "polarity": "split"})
    ds = SyntheticMotionDataset("train", size=8, modality="events", config=config)
    assert ds.channels == 6
    for i in range(8):
        clip = ds.clips[i]
        check_events(clip.events, sensor_size=(64, 64))
        assert clip.events["t"][0] > -clip.period * 1e6 and clip.events["t"][-1] <= clip.t[-1] * 1e6 + 1
        x = ds[i]["x"]
        assert x.shape == (12, 6, 64, 64)
        if ds.info(i)["class"] in ("square", "circle", "fall_slow", "fall_fast"):  # moving: events in every window
            assert (x.sum(dim=(1, 2, 3)) > 0).all()
        else:                                                        # flashes: only at onsets and offsets
            assert 2 <= int((x.sum(dim=(1, 2, 3)) > 0).sum()) <= 4
        assert x.sum() == pytest.approx(clip.events.size, rel=1e-4)  # split channels count every event once


def test_a_clip_does_not_depend_on_its_batch_or_the_dataset_size():
    ds = SyntheticMotionDataset("train", size=40, modality="events")
    for i in (0, 35):                                              # in the first and second batch of 32
        alone = make_clip(i, modality="events")
        np.testing.assert_array_equal(alone.events, ds.clips[i].events)
    frames = SyntheticMotionDataset("train", size=5)
    np.testing.assert_array_equal(frames.clips[3].frames, make_clip(3).frames)


def test_frames_and_events_of_a_clip_show_the_same_scene():
    frames, events = make_clip(6), make_clip(6, modality="events")
    np.testing.assert_array_equal(frames.t, events.t)
    assert frames.info == events.info and frames.label == events.label


def test_deterministic_and_seeded():
    a = SyntheticMotionDataset("train", size=16, seed=3)
    b = SyntheticMotionDataset("train", size=16, seed=3)
    c = SyntheticMotionDataset("train", size=16, seed=4)
    for i in range(16):
        assert torch.equal(a[i]["x"], b[i]["x"]) and torch.equal(a[i]["t"], b[i]["t"])
    assert not any(torch.equal(a[i]["x"], c[i]["x"]) for i in range(16))


def test_splits_never_share_a_clip():
    seen = {}
    for split in ("train", "val", "test"):
        ds = SyntheticMotionDataset(split, size=48, seed=0)
        for i, clip in enumerate(ds.clips):
            for key in (clip.frames.tobytes(), clip.t.tobytes(), repr(sorted(clip.info.items()))):
                assert key not in seen, f"{split}[{i}] repeats {seen.get(key)}"
                seen[key] = (split, i)


def test_frame_rates_and_jitter():
    config = SyntheticConfig(jitter=0.4)
    clips = make_clips(range(160), config=config)
    fps = np.array([c.info["fps"] for c in clips])
    low, high = config.fps_range
    assert fps.min() >= low * 0.999 and fps.max() <= high * 1.001
    assert fps.max() / fps.min() > 6                                # a wide range across clips
    for clip in clips:
        nominal = np.arange(len(clip.t)) * clip.period
        assert np.abs(clip.t - nominal).max() <= 0.2 * clip.period + 1e-12
    gaps = np.diff(clips[0].t)
    assert gaps.std() > 0.01 * gaps.mean()                          # dt varies within a clip too


def test_appearance_pair_differs_only_in_shape():
    for seed in range(20):
        square = _draw_scene(np.random.default_rng(seed), _BY_NAME["square"], CLEAN)
        circle = _draw_scene(np.random.default_rng(seed), _BY_NAME["circle"], CLEAN)
        for key in square:
            np.testing.assert_array_equal(square[key], circle[key])
    a, b = _clips_of("square", 1)[0], make_clip(1, config=CLEAN)
    assert a.frames.shape == b.frames.shape and not np.array_equal(a.frames, b.frames)


@pytest.mark.parametrize("name, partner", [("swipe_left", "swipe_right"), ("rotate_cw", "rotate_ccw")])
def test_order_pair_scenes_differ_only_in_direction(name, partner):
    for seed in range(20):
        one = _draw_scene(np.random.default_rng(seed), _BY_NAME[name], CLEAN)
        other = _draw_scene(np.random.default_rng(seed), _BY_NAME[partner], CLEAN)
        for key in one:
            if key in ("velocity", "spin"):
                np.testing.assert_allclose(one[key], -np.asarray(other[key]))
            else:
                np.testing.assert_array_equal(one[key], other[key])


def test_a_swipe_played_backwards_is_a_swipe_the_other_way():
    left = np.stack([_centroids(c.frames) for c in _clips_of("swipe_left", 40)])       # (N, T, 2)
    right = np.stack([_centroids(c.frames) for c in _clips_of("swipe_right", 40)])
    assert (np.diff(left[..., 0], axis=1) < 0).all() and (np.diff(right[..., 0], axis=1) > 0).all()
    # Where reversed left swipes start and end matches where right swipes start and end, and frame
    # by frame the positions of the two classes cover the same region (up to sampling noise).
    backwards = left[:, ::-1]
    for step in (0, -1):
        assert abs(backwards[:, step, 0].mean() - right[:, step, 0].mean()) < 3.0
    for axis in (0, 1):
        spread = right[..., axis].std()
        assert abs(np.median(left[..., axis]) - np.median(right[..., axis])) < 0.5 * spread
        assert abs(left[..., axis].std() - spread) < 0.25 * spread
    # Exactly: a left swipe played backwards is the right-swipe scene drawn from the same generator
    # at the mirrored times t[-1] - t.
    for seed in range(3):
        one = _draw_scene(np.random.default_rng(seed), _BY_NAME["swipe_left"], CLEAN)
        other = _draw_scene(np.random.default_rng(seed), _BY_NAME["swipe_right"], CLEAN)
        forward = _render(one, _BY_NAME["swipe_left"], one["t"], 64)
        mirrored = _render(other, _BY_NAME["swipe_right"], one["t"][-1] - one["t"], 64)
        np.testing.assert_allclose(forward, mirrored, atol=1e-4)


def test_rotation_direction_is_only_in_the_order_of_frames():
    cw, ccw = _clips_of("rotate_cw", 3), _clips_of("rotate_ccw", 3)
    assert all(c.info["spin_rad_s"] > 0 for c in cw) and all(c.info["spin_rad_s"] < 0 for c in ccw)
    for clip in cw + ccw:
        x, y = _centroids(clip.frames).T                            # the hand's mass: mostly its tip
        pivot = clip.info["mid"]
        turn = np.diff(np.unwrap(np.arctan2(y - pivot[1], x - pivot[0])))
        assert (np.sign(turn) == np.sign(clip.info["spin_rad_s"])).all()  # clockwise on screen: angle grows
    # Played backwards, a cw clip is the ccw scene (same draws, opposite spin) at mirrored times
    # t[-1] - t, which is itself a valid clip's time axis once put in increasing order.
    cw_scene = _draw_scene(np.random.default_rng(0), _BY_NAME["rotate_cw"], CLEAN)
    ccw_scene = _draw_scene(np.random.default_rng(0), _BY_NAME["rotate_ccw"], CLEAN)
    times = cw_scene["t"]
    forward = _render(cw_scene, _BY_NAME["rotate_cw"], times, 64)
    mirrored = _render(ccw_scene, _BY_NAME["rotate_ccw"], times[-1] - times, 64)
    np.testing.assert_allclose(forward, mirrored, atol=1e-5)
    assert not np.allclose(forward, forward[::-1], atol=0.1)       # and the order is what tells them apart


def _speed_measurements(count=40):
    """Per clip: median pixel displacement per step, measured speed px/s, and the frame rate."""
    out = {}
    for name in ("fall_slow", "fall_fast"):
        rows = []
        for clip in _clips_of(name, count):
            moves = np.diff(_centroids(clip.frames)[:, 1])
            rows.append((np.median(moves), np.median(moves / np.diff(clip.t)), clip.info["fps"]))
        out[name] = np.array(rows)
    return out["fall_slow"], out["fall_fast"]


def _best_threshold_accuracy(a: np.ndarray, b: np.ndarray) -> float:
    """The best accuracy of any one-threshold rule on a scalar feature separating a from b."""
    values = np.concatenate([a, b])
    labels = np.concatenate([np.zeros(a.size), np.ones(b.size)])
    best = 0.5
    for cut in values:
        acc = ((values > cut) == labels).mean()
        best = max(best, acc, 1 - acc)
    return best


def test_speed_pair_same_pixels_per_step_different_speed():
    slow, fast = _speed_measurements()
    # The drawn displacement per step has the same range, and the measured one overlaps heavily.
    d0 = FALL_TRAVEL[0] * CLEAN.size / (CLEAN.steps - 1)
    for clips in (_clips_of("fall_slow", 40), _clips_of("fall_fast", 40)):
        steps = np.array([c.info["px_per_step"] for c in clips])
        assert steps.min() >= d0 * 0.999 and steps.max() <= 4 * d0 * 1.001
    assert _best_threshold_accuracy(slow[:, 0], fast[:, 0]) < 0.75   # displacement alone: close to chance
    assert _best_threshold_accuracy(slow[:, 2], fast[:, 2]) < 0.9    # frame rate alone: not enough
    assert slow[:, 1].max() < fast[:, 1].min()                      # displacement / real dt: separable
    assert fast[:, 1].min() / slow[:, 1].max() > 1.2


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SyntheticMotionDataset("training"), "split must be one of"),
        (lambda: SyntheticMotionDataset("train", modality="video"), "modality must be one of"),
        (lambda: SyntheticMotionDataset("train", size=0), "size"),
        (lambda: SyntheticMotionDataset("train", seed=-1), "seed"),
        (lambda: SyntheticConfig(classes=("square", "triangle")), "triangle"),
        (lambda: SyntheticConfig(fps_range=(10, 60)), "speed and duration pairs"),
        (lambda: SyntheticConfig(rate=0), "rate"),
        (lambda: SyntheticConfig(jitter=1.0), "jitter"),
        (lambda: SyntheticConfig(representation={"name": "voxels"}), "voxel_grid"),
    ],
)
def test_bad_options_raise_a_data_error(make, match):
    with pytest.raises(DataError, match=match):
        make()


def test_a_subset_of_classes():
    config = SyntheticConfig(classes=("swipe_left", "swipe_right"), fps_range=(10, 30))
    ds = SyntheticMotionDataset("train", size=6, config=config)
    assert ds.classes == ("swipe_left", "swipe_right") and sorted(set(ds.labels)) == [0, 1]
    assert [ds.info(i)["class"] for i in range(3)] == ["swipe_left", "swipe_right", "swipe_left"]
    assert pair_kinds(config) == {"swipe_left": "direction", "swipe_right": "direction"}
    assert replace(config, size=32).size == 32


def test_event_windows_lie_between_observations_and_merge_when_dropped():
    """The clips are cut by the frames WindowSpec the data module declares, ticking at the
    observation times; dropping observations merges their windows and loses no event."""
    from data.synthetic import window_spec
    from data.timing import s_to_us
    from data.windows import WindowSpec

    ds = SyntheticMotionDataset("train", size=4, modality="events")
    clip = ds.clips[1]
    windows = ds.windows(1)
    edges = s_to_us(np.concatenate([[-clip.period], clip.t]))
    assert [(w.t_start_us, w.t_end_us) for w in windows] == list(zip(edges[:-1].tolist(), edges[1:].tolist()))
    assert sum(len(w) for w in windows) == int((clip.events["t"] < edges[-1]).sum())
    keep = np.ones(len(clip.t), bool)
    keep[[3, 4, 7]] = False
    merged = ds.windows(1, keep)
    assert len(merged) == keep.sum() and sum(len(w) for w in merged) == sum(len(w) for w in windows)
    np.testing.assert_allclose(ds.times(1, keep), ds.times(1)[keep])
    assert ds.perturbed(1, np.random.default_rng(0))["t"].numpy().tolist() == ds.times(1).tolist()
    assert window_spec(58_900) == WindowSpec.frames(58_900, drop_last=True)


def _shown(clip, frames=None) -> np.ndarray:
    """(T,) bool: the frames where some shape is visible (over a flat background)."""
    frames = (clip.frames if frames is None else frames).astype(np.float64)
    return np.abs(frames - np.median(frames, axis=(1, 2), keepdims=True)).max(axis=(1, 2)) > 20


def test_order_pair_shows_one_shape_at_a_time_and_differs_only_in_order():
    for seed in range(20):
        one = _draw_scene(np.random.default_rng(seed), _BY_NAME["square_then_ring"], CLEAN)
        other = _draw_scene(np.random.default_rng(seed), _BY_NAME["ring_then_square"], CLEAN)
        assert [f[0] for f in one["flashes"]] == ["square", "ring"] and [f[0] for f in other["flashes"]] == ["ring", "square"]
        assert [f[1:] for f in one["flashes"]] == [f[1:] for f in other["flashes"]]   # same places and times
        (_, _, on0, off0), (_, _, on1, off1) = one["flashes"]
        # the gap is longer than any observation interval (at most 1 + jitter periods): no event window
        # holds the end of one shape and the start of the other
        assert on1 - off0 > (1 + 0.9) * one["period"] and off0 > on0 and off1 > on1
    for clip in _clips_of("square_then_ring", 10, FLASHES) + _clips_of("ring_then_square", 10, FLASHES):
        shown = _shown(clip)
        assert 1 <= shown.sum() <= 8
        (_, on0, off0), (_, on1, off1) = clip.info["flashes"]
        assert not _shown(clip)[(clip.t >= off0) & (clip.t < on1)].any()          # blank between the two


def test_order_pair_event_windows_hold_one_transition_each():
    config = replace(FLASHES, size=32)
    for name in ("square_then_ring", "ring_then_square"):
        for clip_index in range(4):
            index = config.classes.index(name) + clip_index * len(config.classes)
            ds = SyntheticMotionDataset("train", index + 1, "events", 0, config)
            changes = [t for _, on, off in ds.info(index)["flashes"] for t in (on, off)]
            for window in ds.windows(index):
                inside = [c for c in changes if window.t_start_us / 1e6 <= c < window.t_end_us / 1e6 + 1e-3]
                assert len(inside) <= 1 or window.events.size == 0


def test_duration_pair_same_frames_shown_different_seconds():
    counts, seconds = {}, {}
    for name in ("flash_short", "flash_long"):
        clips = _clips_of(name, 40, FLASHES)
        counts[name] = np.array([_shown(c).sum() for c in clips])
        seconds[name] = np.array([c.info["flashes"][0][2] - c.info["flashes"][0][1] for c in clips])
        visible = np.array([(c.info["flashes"][0][2] - c.info["flashes"][0][1]) * c.info["fps"] for c in clips])
        assert visible.min() >= FLASH_STEPS[0] * 0.999 and visible.max() <= FLASH_STEPS[1] * 1.001
    # how many frames see the cross: about the same law in both classes; the seconds: separable
    assert _best_threshold_accuracy(counts["flash_short"], counts["flash_long"]) < 0.7
    assert seconds["flash_short"].max() < seconds["flash_long"].min()


def test_event_counts_per_window_do_not_give_the_time_away():
    """The leak the built-in sensor once had: background noise made a window's event count grow with
    its duration. Without it, the mean count per window separates neither time pair."""
    config = SyntheticConfig(size=32)
    ds = SyntheticMotionDataset("train", 8 * 40, "events", 0, config)
    per_window = {name: [] for name in config.classes}
    for i in range(len(ds)):
        per_window[ds.info(i)["class"]].append(np.mean([w.events.size for w in ds.windows(i)]))
    for a, b in (("fall_slow", "fall_fast"), ("flash_short", "flash_long")):
        assert _best_threshold_accuracy(np.array(per_window[a]), np.array(per_window[b])) < 0.75, (a, b)


def test_rate_observes_the_same_scene_more_or_less_often():
    for rate in (0.25, 4.0):
        for name in ("fall_fast", "flash_long", "square_then_ring"):
            base = _draw_scene(np.random.default_rng(3), _BY_NAME[name], FLASHES)
            other = _draw_scene(np.random.default_rng(3), _BY_NAME[name], replace(FLASHES, rate=rate))
            for key in base:
                if key not in ("t", "period"):
                    np.testing.assert_array_equal(np.asarray(base[key], dtype=object), np.asarray(other[key], dtype=object))
            assert other["period"] == pytest.approx(base["period"] / rate)
            assert len(other["t"]) == int(np.ceil((CLEAN.steps - 1) * rate - 1e-9)) + 1
            assert other["t"][-1] >= base["t"][-1] - 0.5 * base["period"]             # the same span, or more
    ds = SyntheticMotionDataset("test", 8, "events", 0, SyntheticConfig(size=32, rate=4.0))
    assert ds[0]["x"].shape[0] == 45
