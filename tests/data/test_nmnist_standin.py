"""The N-MNIST stand-in: disjoint, balanced, deterministic splits; saccades; N-MNIST's files and layout."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from data import EventClipDataset
from data.errors import DataError
from data.events import check_events
from data.io import read_events
from data.nmnist_standin import (
    MANIFEST,
    SENSOR,
    StandinConfig,
    load_digit_images,
    make_nmnist_standin,
    render,
    saccade_path,
    simulate_recording,
    split_images,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_nmnist_standin.py"


@pytest.fixture(scope="module")
def digits():
    return load_digit_images()


def test_splits_share_no_image_are_balanced_and_follow_the_seed(digits):
    _, labels = digits
    plan = split_images(labels, 1000, 100, seed=0)
    assert len(plan["train"]) == 1000 and len(plan["test"]) == 100
    assert set(plan["train"]).isdisjoint(plan["test"])
    assert len(set(plan["train"])) == 1000  # enough images: none is used twice
    assert np.bincount(labels[plan["train"]]).tolist() == [100] * 10
    assert np.bincount(labels[plan["test"]]).tolist() == [10] * 10
    again = split_images(labels, 1000, 100, seed=0)
    assert all(np.array_equal(plan[k], again[k]) for k in plan)
    assert not np.array_equal(split_images(labels, 1000, 100, seed=1)["test"], plan["test"])


def test_a_split_larger_than_its_images_reuses_its_own_images_only(digits):
    _, labels = digits
    plan = split_images(labels, 3000, 300, seed=0)
    assert len(plan["train"]) == 3000 and set(plan["train"]).isdisjoint(plan["test"])
    assert len(set(plan["train"])) < 3000
    small = split_images(labels, 7, 3, seed=0)
    assert len(small["train"]) == 7 and len(small["test"]) == 3 and set(small["train"]).isdisjoint(small["test"])


def test_saccades_make_a_closed_triangle_of_about_300_ms():
    config = StandinConfig()
    times, offsets = saccade_path(np.random.default_rng(0), config)
    assert times[0] == 0 and 0.27 <= times[-1] <= 0.33 and np.all(np.diff(times) > 0)
    assert np.allclose(offsets[0], offsets[-1])  # back where it started
    assert np.abs(offsets).max() <= 3.0  # the 28-pixel digit stays on the 34-pixel sensor
    speed = np.linalg.norm(np.diff(offsets, axis=0), axis=1)
    assert (speed < 1e-3).sum() >= 3  # the motion rests between saccades (minimum jerk)


def test_render_centres_the_upsampled_digit(digits):
    images, _ = digits
    frame = render(images[0], np.zeros((1, 2)), StandinConfig())[0]
    assert frame.shape == (34, 34) and frame.min() >= 0 and frame.max() <= 1
    ink = frame - frame.min()
    ys, xs = np.nonzero(ink > 0.2)
    assert 3 <= xs.min() and xs.max() <= 30 and 3 <= ys.min() and ys.max() <= 30
    moved = render(images[0], np.array([[2.0, -1.0]]), StandinConfig())[0] - frame.min()
    centre = lambda im: np.array([(im * np.arange(34)).sum() / im.sum(), (im.T * np.arange(34)).sum() / im.sum()])  # noqa: E731
    assert np.allclose(centre(moved) - centre(ink), [2.0, -1.0], atol=0.3)


def test_a_recording_looks_like_n_mnist(digits):
    images, _ = digits
    events = simulate_recording(images[5], np.random.default_rng(3), StandinConfig())
    check_events(events, SENSOR)
    assert 1500 < events.size < 15_000  # N-MNIST: a few thousand events per recording
    assert 250_000 < events["t"][-1] - events["t"][0] < 350_000
    assert 0.3 < events["p"].mean() < 0.7
    again = simulate_recording(images[5], np.random.default_rng(3), StandinConfig())
    assert np.array_equal(events, again)


def test_make_writes_n_mnist_files_in_its_layout(tmp_path, digits):
    config = StandinConfig(train=20, test=10, seed=4)
    folder = make_nmnist_standin(tmp_path, config)
    assert folder == tmp_path / "NMNIST" and sorted(p.name for p in tmp_path.iterdir()) == ["NMNIST"]
    manifest = json.loads((folder / MANIFEST).read_text())
    files = manifest["files"]
    assert "not N-MNIST" in manifest["what"]
    train = [f for f in files if f["file"].startswith("Train/")]
    test = [f for f in files if f["file"].startswith("Test/")]
    assert len(train) == 20 and len(test) == 10
    assert {f["image"] for f in train}.isdisjoint(f["image"] for f in test)
    _, labels = digits
    for entry in files:
        path = folder / entry["file"]
        assert path.parent.name == str(entry["label"]) == str(labels[entry["image"]]) and path.suffix == ".bin"
    # the files read back (ATIS binary, the format's own reader) as the simulator made them
    images, _ = digits
    k = int(test[0]["file"].split("/")[-1][:5])
    expected = simulate_recording(images[test[0]["image"]], np.random.default_rng((4, 2, 1, k)), config)
    recording = read_events(folder / test[0]["file"])
    assert recording.sensor_size == SENSOR and np.array_equal(recording.events, expected)
    # what training reads: the registered dataset finds every recording with its label
    dataset = EventClipDataset("nmnist", tmp_path, split="train")
    assert len(dataset) == 20 and sorted(dataset.targets) == sorted(f["label"] for f in train)
    assert len(EventClipDataset("nmnist", tmp_path, split="test")) == 10
    # deterministic: the same seed writes the same bytes
    again = make_nmnist_standin(tmp_path / "again", config)
    assert all((again / f["file"]).read_bytes() == (folder / f["file"]).read_bytes() for f in files)


def test_make_refuses_an_existing_dataset_and_leaves_nothing_when_interrupted(tmp_path):
    (tmp_path / "NMNIST").mkdir()
    with pytest.raises(DataError, match="NMNIST: already exists"):
        make_nmnist_standin(tmp_path, StandinConfig(train=2, test=1))

    def stop(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_nmnist_standin(tmp_path / "other", StandinConfig(train=4, test=2), progress=stop)
    assert list((tmp_path / "other").iterdir()) == []


@pytest.mark.parametrize("options, match", [({"train": 0}, "train"), ({"seed": -1}, "seed"),
                                            ({"digit_side": 40}, "digit_side")])
def test_bad_options_are_data_errors(options, match):
    with pytest.raises(DataError, match=match):
        StandinConfig(**options)


@pytest.mark.slow
def test_the_script_makes_a_stand_in_and_measures_the_floor(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_nmnist_standin", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path), "--train", "40", "--test", "20"]) == 0
    assert f"--data.root {tmp_path}" in capsys.readouterr().out
    assert script.main([str(tmp_path), "--train", "40", "--test", "20"]) == 2  # exists already
    assert "already exists" in capsys.readouterr().err
    assert script.main([str(tmp_path), "--floor"]) == 0
    out = capsys.readouterr().out
    assert "test_acc: " in out and "train: 36 val: 4 test: 20" in out
