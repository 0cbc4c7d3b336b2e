"""The shipped config of every registered event dataset, end to end on a tiny folder in its official layout.

Each builder writes a few crafted recordings (random events over the dataset's sensor and typical
duration) in the dataset's own file format, where the dataset keeps them; then
``perception train --config NAME --data.root DIR --trainer.fast_dev_run true`` must train, validate
and test. A new registered dataset fails ``test_every_event_dataset_has_a_config_and_a_builder``
until it has both.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from data.event_datasets import get_event_dataset, list_event_datasets
from data.events import make_events
from data.io import write_events
from perception.cli import main
from perception.training.cli import CONFIG_DIR, list_configs

# Datasets whose class changes under a left-right flip (digits; left and right hand gestures).
NO_FLIP_X = {"nmnist", "dvsgesture"}


def crafted(rng: np.random.Generator, sensor: tuple[int, int], n: int, duration_us: int):
    """n random events (canonical, sorted) over ``sensor`` (W, H) and [0, duration_us)."""
    return make_events(rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n),
                       np.sort(rng.integers(0, duration_us, n)), rng.integers(0, 2, n))


def _write(path: Path, events, sensor, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, events, sensor, format=fmt)


def _columns(path: Path, events, order: tuple[str, ...], t_scale: float = 1.0) -> None:
    """A tonic-style .npy of columns in ``order`` (t divided by ``t_scale``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {k: events[k].astype(np.int64) for k in ("x", "y", "p")}
    cols["t"] = (events["t"] // int(t_scale)).astype(np.int64)
    np.save(path, np.stack([cols[k] for k in order], axis=1))


def build_nmnist(root: Path, rng) -> None:
    for split, ids in (("Train", range(3)), ("Test", range(2))):
        for digit in (1, 7):
            for i in ids:
                _write(root / "NMNIST" / split / str(digit) / f"{i:05d}.bin",
                       crafted(rng, (34, 34), 1500, 300_000), (34, 34), "atis_bin")


def build_dvsgesture(root: Path, rng) -> None:
    for split, users in (("ibmGestureTrain", ("user01_led", "user02_fluorescent")), ("ibmGestureTest", ("user24_led",))):
        for user in users:
            for label in (0, 2):  # hand clapping, left hand wave
                events = crafted(rng, (128, 128), 4000, 6_000_000)
                _columns(root / "DVSGesture" / split / user / f"{label}.npy", events, ("x", "y", "p", "t"), 1000)


def build_ncaltech101(root: Path, rng) -> None:
    for name in ("BACKGROUND_Google", "accordion"):
        for i in range(3):
            size = (int(rng.integers(150, 240)), int(rng.integers(100, 180)))  # images differ in size
            _write(root / "NCALTECH101" / "Caltech101" / name / f"image_{i + 1:04d}.bin",
                   crafted(rng, size, 3000, 300_000), size, "atis_bin")


def build_cifar10dvs(root: Path, rng) -> None:
    for name in ("airplane", "cat"):
        for i in range(3):
            _write(root / "CIFAR10DVS" / name / f"cifar10_{name}_{i}.aedat4",
                   crafted(rng, (128, 128), 5000, 1_200_000), (128, 128), "aedat4")


def build_pokerdvs(root: Path, rng) -> None:
    for split, n in (("pips_train", 2), ("pips_test", 1)):
        for code in ("cl", "he", "sp"):
            for i in range(n):
                _columns(root / "POKERDVS" / split / code / f"{code}{i}.npy",
                         crafted(rng, (35, 35), 2500, 20_000), ("t", "x", "y", "p"))


def build_ncars(root: Path, rng) -> None:
    for split, ids in (("n-cars_train", range(3)), ("n-cars_test", range(3, 5))):
        for name in ("background", "cars"):
            for i in ids:
                size = (int(rng.integers(60, 121)), int(rng.integers(50, 101)))  # crops differ in size
                _write(root / "NCARS" / split / name / f"obj_{i:06d}_td.dat",
                       crafted(rng, size, 2000, 100_000), size, "dat")


BUILDERS: dict[str, Callable[[Path, np.random.Generator], None]] = {
    "nmnist": build_nmnist,
    "dvsgesture": build_dvsgesture,
    "ncaltech101": build_ncaltech101,
    "cifar10dvs": build_cifar10dvs,
    "pokerdvs": build_pokerdvs,
    "ncars": build_ncars,
}


def shipped(name: str) -> dict:
    return yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())




def test_every_event_dataset_has_a_config_and_a_builder():
    assert set(list_event_datasets()) <= set(list_configs())
    assert set(list_event_datasets()) == set(BUILDERS)


@pytest.mark.parametrize("name", list_event_datasets())
def test_config_is_the_practitioners_recipe(name):
    """The dataset's own module, augmentations on in training, polarity kept, no class-changing flips."""
    config = shipped(name)
    data = config["data"]
    assert data["class_path"] == "perception.training.data.EventDataModule"
    options = data["init_args"]
    assert options["dataset"] == name
    augment = options["augment"]
    assert augment and "flip_polarity" not in augment  # polarity-preserving
    assert "drop_events" in augment and ("translate" in augment or "spatial_jitter" in augment)
    assert "flip_y" not in augment
    if name in NO_FLIP_X:
        assert "flip_x" not in augment
    assert config["model"]["weight_decay"] > 0
    loggers = config["trainer"]["logger"]
    assert {logger["init_args"]["name"] for logger in loggers} == {name}
    # the frames fit the small backbone (total stride 16) with something left to pool
    width, height = get_event_dataset(name).sensor_size
    k = options.get("downsample", 1)
    assert min(width // k, height // k) >= 16


@pytest.mark.slow
@pytest.mark.parametrize("name", list_event_datasets())
def test_config_trains_on_the_official_layout(name, in_tmp, capsys):
    root = in_tmp / "datasets"
    BUILDERS[name](root, np.random.default_rng(0))
    args = ["train", "--config", name, "--data.root", str(root), "--trainer.fast_dev_run", "true",
            "--data.num_workers", "0", "--data.cache_dir", str(in_tmp / "cache"),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "test/acc: " in out
