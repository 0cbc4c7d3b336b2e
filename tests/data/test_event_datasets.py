"""EventClipDataset over tiny copies of each registered dataset's layout, filled with real recordings.

Every registered dataset needs a builder below (a test fails otherwise), so a new dataset is checked
by the contract tests for free. No test touches the network: tonic's download functions and urllib
are replaced by ones that raise.
"""
from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tonic.dataset
import tonic.download_utils
import torch

from data.augment import DropEvents
from data.collate import collate_clips
from data.errors import DataError
from data.event_datasets import (
    DATA_DIR_ENV,
    EventClipDataset,
    EventDatasetSource,
    get_event_dataset,
    list_event_datasets,
    register_event_dataset,
)
from data.io import read_events, write_events
from data.representations import VoxelGrid, create_representation, to_voxel_grid
from data.windows import WindowSpec, slice_windows

NMNIST_BIN = "events/tonic_sample_nmnist.bin"
NCARS_DAT = "events/tonic_sample_ncars.dat"
AEDAT4 = "events/tonic_sample.aedat4"


@pytest.fixture(autouse=True)
def no_network(monkeypatch) -> list:
    """Every download path raises (and is recorded): a test that reaches the network fails."""
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("a test tried to download")

    for module, name in (
        (tonic.dataset, "download_and_extract_archive"),
        (tonic.download_utils, "download_and_extract_archive"),
        (tonic.download_utils, "download_url"),
        (tonic.download_utils, "download_file_from_google_drive"),
        (tonic.download_utils, "_urlretrieve"),
        (urllib.request, "urlopen"),
        (urllib.request, "urlretrieve"),
    ):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    return calls


# --------------------------------------------------------------------------------------------
# Builders: a tiny dataset in tonic's layout under root; return {relative path: expected label}.


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _columns(rng: np.random.Generator, n: int, size: int, duration: int) -> dict[str, np.ndarray]:
    return {
        "x": rng.integers(0, size, n), "y": rng.integers(0, size, n),
        "t": np.sort(rng.integers(0, duration, n)), "p": rng.integers(0, 2, n),
    }


def build_nmnist(root: Path, data: Path) -> dict[str, int]:
    files = {"Train/3/00001.bin": 3, "Train/3/00002.bin": 3, "Train/7/00001.bin": 7, "Test/1/00001.bin": 1}
    for rel in files:
        _copy(data / NMNIST_BIN, root / "NMNIST" / rel)
    return {k: v for k, v in files.items() if k.startswith("Train")}


def build_dvsgesture(root: Path, data: Path) -> dict[str, int]:
    rng = np.random.default_rng(0)
    files = {"ibmGestureTrain/user01_fluorescent/0.npy": 0, "ibmGestureTrain/user02_led/10.npy": 10}
    for i, rel in enumerate(files):
        c = _columns(rng, 3000, 128, 400 + 300 * i)  # milliseconds
        path = root / "DVSGesture" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.stack([c["x"], c["y"], c["p"], c["t"]], axis=1).astype(np.int64))
    return files


def build_pokerdvs(root: Path, data: Path) -> dict[str, int]:
    rng = np.random.default_rng(1)
    files = {"pips_train/cl/0001.npy": 0, "pips_train/pip_sp/0002.npy": 3, "pips_train/he/0003.npy": 1}
    for rel in files:
        c = _columns(rng, 2000, 35, 200_000)  # microseconds
        path = root / "POKERDVS" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.stack([c["t"], c["x"], c["y"], c["p"]], axis=1).astype(np.float64))
    return files


def build_ncaltech101(root: Path, data: Path) -> dict[str, int]:
    classes = ["BACKGROUND_Google", "accordion", "airplanes"]  # sorted as the dataset sorts them
    files = {}
    for label, name in enumerate(classes):
        for k in range(5):
            rel = f"Caltech101/{name}/image_{k:04d}.bin"
            _copy(data / NMNIST_BIN, root / "NCALTECH101" / rel)
            files[rel] = label
    return files


def build_cifar10dvs(root: Path, data: Path) -> dict[str, int]:
    events = read_events(data / AEDAT4).events
    events = events[(events["x"] < 128) & (events["y"] < 128)][:4000]  # a 128 x 128 DVS, like CIFAR10-DVS
    files = {f"{name}/cifar10_{name}_{k}.aedat4": y for y, name in ((0, "airplane"), (9, "truck")) for k in range(3)}
    first = root / "CIFAR10DVS" / next(iter(files))
    first.parent.mkdir(parents=True)
    write_events(first, events, (128, 128))
    for rel in list(files)[1:]:
        _copy(first, root / "CIFAR10DVS" / rel)
    return files


def build_ncars(root: Path, data: Path) -> dict[str, int]:
    files = {"n-cars_train/cars/obj_000001_td.dat": 1, "n-cars_train/background/obj_000002_td.dat": 0}
    for rel in files:
        _copy(data / NCARS_DAT, root / "NCARS" / rel)
    return files


BUILDERS: dict[str, Callable[[Path, Path], dict[str, int]]] = {
    "nmnist": build_nmnist,
    "dvsgesture": build_dvsgesture,
    "pokerdvs": build_pokerdvs,
    "ncaltech101": build_ncaltech101,
    "cifar10dvs": build_cifar10dvs,
    "ncars": build_ncars,
}


@pytest.fixture
def nmnist_root(tmp_path, shared_data) -> Path:
    build_nmnist(tmp_path, shared_data)
    return tmp_path


def test_every_registered_dataset_has_a_builder():
    assert set(list_event_datasets()) == set(BUILDERS)


# --------------------------------------------------------------------------------------------
# The contract, for every registered dataset.


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_items_follow_the_clip_contract(name, tmp_path, shared_data):
    expected = BUILDERS[name](tmp_path, shared_data)
    window = WindowSpec.duration(50_000)
    ds = EventClipDataset(name, tmp_path, window=window, representation=create_representation("voxel_grid", bins=3))
    source = get_event_dataset(name)
    folder = tmp_path / source.folder
    found = {p.relative_to(folder).as_posix(): y for p, y in ds.samples}
    if source.split_folders is None:  # stratified: the train split is part of the files
        assert found.items() < expected.items()
    else:
        assert found == expected
    assert len(ds) > 0
    width, height = ds.frame_size
    for i in range(len(ds)):
        x, t, y = ds[i]
        assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[1:] == (3, height, width)
        assert t.dtype == torch.float64 and t.shape == (x.shape[0],)
        assert y == expected[ds.samples[i][0].relative_to(folder).as_posix()]
        assert 0 <= y < len(ds.classes)
        # Window ends from the recording's first event: k * 50 ms, covering its last event.
        events = ds.events(i)
        span = int(events["t"][-1] - events["t"][0])
        assert x.shape[0] == span // 50_000 + 1
        np.testing.assert_allclose(t.numpy(), 0.05 * np.arange(1, x.shape[0] + 1), rtol=0, atol=1e-12)
        assert (np.diff(t.numpy()) > 0).all()
        assert torch.isfinite(x).all() and x.abs().sum() > 0


def test_nmnist_item_equals_the_voxel_grids_of_its_windows(nmnist_root, shared_data):
    ds = EventClipDataset("nmnist", nmnist_root, window=WindowSpec.duration(30_000, 10_000))
    x, t, y = ds[0]
    events = read_events(shared_data / NMNIST_BIN).events
    windows = list(slice_windows(events, WindowSpec.duration(30_000, 10_000)))
    expected = np.stack([to_voxel_grid(w.events, (34, 34), 5, t_start=w.t_start_us, t_end=w.t_end_us) for w in windows])
    np.testing.assert_array_equal(x.numpy(), expected)
    t0 = events["t"][0]
    np.testing.assert_array_equal(t.numpy(), (np.array([w.t_end_us for w in windows]) - t0) / 1e6)
    assert y == 3 and ds.classes[y] == "3"
    test = EventClipDataset("nmnist", nmnist_root, split="test")
    assert [label for _, label in test.samples] == [1]
    assert len(EventClipDataset("nmnist", nmnist_root, split="all")) == 4


def test_count_windows_give_the_real_variable_dt(nmnist_root, shared_data):
    ds = EventClipDataset("nmnist", nmnist_root, window=WindowSpec.count(500))
    x, t, _ = ds[0]
    times = read_events(shared_data / NMNIST_BIN).events["t"]
    assert x.shape[0] == -(-len(times) // 500)  # the last, partial window is kept
    last = np.minimum(np.arange(1, x.shape[0] + 1) * 500, len(times)) - 1  # each window's last event
    np.testing.assert_array_equal(t.numpy(), (times[last] + 1 - times[0]) / 1e6)
    dt = np.diff(t.numpy())
    assert (dt > 0).all() and dt.max() > 1.5 * dt.min()


def test_max_steps_keeps_the_first_windows(nmnist_root):
    full = EventClipDataset("nmnist", nmnist_root)[0]
    short = EventClipDataset("nmnist", nmnist_root, max_steps=3)[0]
    assert short[0].shape[0] == 3
    torch.testing.assert_close(short[0], full[0][:3])
    torch.testing.assert_close(short[1], full[1][:3])


def test_dvsgesture_times_are_milliseconds_and_labels_come_from_file_names(tmp_path, shared_data):
    build_dvsgesture(tmp_path, shared_data)
    ds = EventClipDataset("dvsgesture", tmp_path)
    assert [y for _, y in ds.samples] == [0, 10] and len(ds.classes) == 11
    stored = np.load(ds.samples[1][0])
    events = ds.events(1)
    np.testing.assert_array_equal(events["t"], stored[:, 3] * 1000)
    np.testing.assert_array_equal(events["x"], stored[:, 0])
    np.testing.assert_array_equal(events["p"], stored[:, 2])
    assert ds.frame_size == (128, 128)


def test_stratified_split_is_disjoint_deterministic_and_seeded(tmp_path, shared_data):
    files = build_ncaltech101(tmp_path, shared_data)
    make = lambda split, seed=0: EventClipDataset("ncaltech101", tmp_path, split=split, split_seed=seed)  # noqa: E731
    train, test = make("train"), make("test")
    assert train.classes == ("BACKGROUND_Google", "accordion", "airplanes")
    train_files, test_files = {p for p, _ in train.samples}, {p for p, _ in test.samples}
    assert not train_files & test_files
    assert {p.relative_to(tmp_path / "NCALTECH101").as_posix() for p in train_files | test_files} == set(files)
    assert sorted(y for _, y in test.samples) == [0, 1, 2]  # round(5 * 0.2) = 1 per class
    assert make("test").samples == test.samples
    others = [make("test", seed).samples for seed in range(1, 6)]
    assert any(s != test.samples for s in others)
    assert len(EventClipDataset("ncaltech101", tmp_path, split="test", test_fraction=0.4)) == 6


def test_downsample_and_size_keep_every_event(tmp_path, shared_data):
    build_ncaltech101(tmp_path, shared_data)
    histogram = {"name": "histogram", "bins": 1, "polarity": "merged"}
    full = EventClipDataset("ncaltech101", tmp_path, representation=histogram)
    n_events = len(full.events(0))
    for options, frame in (({"downsample": 4}, (60, 45)), ({"size": (48, 36)}, (48, 36)), ({}, (240, 180))):
        ds = EventClipDataset("ncaltech101", tmp_path, representation=histogram, **options)
        x, _, _ = ds[0]
        assert ds.frame_size == frame and x.shape[2:] == (frame[1], frame[0])
        assert float(x.sum()) == n_events
    with pytest.raises(DataError, match="not both"):
        EventClipDataset("ncaltech101", tmp_path, downsample=2, size=(60, 45))
    with pytest.raises(DataError, match="larger than"):
        EventClipDataset("ncaltech101", tmp_path, size=(480, 360))


def test_collate_batches_items_of_different_lengths(tmp_path, shared_data):
    build_dvsgesture(tmp_path, shared_data)
    ds = EventClipDataset("dvsgesture", tmp_path, window=WindowSpec.duration(100_000), downsample=4)
    items = [ds[0], ds[1]]
    lengths = [x.shape[0] for x, _, _ in items]
    assert lengths[0] != lengths[1]
    batch = collate_clips(items)
    assert batch["x"].shape == (2, max(lengths), 5, 32, 32)
    assert batch["mask"].sum(1).tolist() == lengths
    assert batch["y"].tolist() == [0, 10]
    np.testing.assert_allclose(batch["dt"][0, : lengths[0]].numpy(), 0.1, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# The cache.


@pytest.fixture
def counted(monkeypatch) -> list:
    """Count the voxel-grid computations (one per window)."""
    calls: list = []
    original = VoxelGrid.__call__

    def counting(self, events, sensor_size, **kwargs):
        calls.append(1)
        return original(self, events, sensor_size, **kwargs)

    monkeypatch.setattr(VoxelGrid, "__call__", counting)
    return calls


def test_cache_is_written_then_reused(nmnist_root, tmp_path, counted):
    cache = tmp_path / "cache"
    ds = EventClipDataset("nmnist", nmnist_root, cache_dir=cache)
    x, t, y = ds[0]
    assert len(counted) == x.shape[0]
    files = list(cache.rglob("*.npz"))
    assert len(files) == 1 and not list(cache.rglob("*.tmp"))
    again = EventClipDataset("nmnist", nmnist_root, cache_dir=cache)[0]  # a new object, same config
    assert len(counted) == x.shape[0]
    torch.testing.assert_close(again[0], x)
    torch.testing.assert_close(again[1], t)
    assert again[2] == y


@pytest.mark.parametrize(
    "change",
    [
        {"window": WindowSpec.duration(20_000)},
        {"window": WindowSpec.count(1000)},
        {"representation": {"name": "voxel_grid", "bins": 4}},
        {"downsample": 2},
        {"max_steps": 2},
    ],
)
def test_changing_the_config_does_not_reuse_the_cache(nmnist_root, tmp_path, counted, change):
    cache = tmp_path / "cache"
    EventClipDataset("nmnist", nmnist_root, cache_dir=cache)[0]
    before = len(counted)
    changed = EventClipDataset("nmnist", nmnist_root, cache_dir=cache, **change)
    x, t, _ = changed[0]
    assert len(counted) - before == x.shape[0]
    uncached = EventClipDataset("nmnist", nmnist_root, **change)[0]
    torch.testing.assert_close(x, uncached[0])
    torch.testing.assert_close(t, uncached[1])
    assert len(list(cache.rglob("*.npz"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_cache_file_is_recomputed(nmnist_root, tmp_path, counted, damage):
    cache = tmp_path / "cache"
    ds = EventClipDataset("nmnist", nmnist_root, cache_dir=cache)
    x, t, _ = ds[0]
    (file,) = cache.rglob("*.npz")
    content = file.read_bytes()
    damaged = {"garbage": b"not a zip file" * 10, "truncated": content[: len(content) // 2], "empty": b""}
    file.write_bytes(damaged[damage])
    before = len(counted)
    x2, t2, _ = ds[0]
    assert len(counted) - before == x.shape[0]
    torch.testing.assert_close(x2, x)
    torch.testing.assert_close(t2, t)
    ds[0]  # the rewritten file is good again
    assert len(counted) - before == x.shape[0]


def test_transform_gets_an_item_generator_and_bypasses_the_cache(nmnist_root, tmp_path, counted):
    seen = []

    def transform(events, sensor_size, rng):
        seen.append(sensor_size)
        return DropEvents(0.5)(events, sensor_size, rng)

    cache = tmp_path / "cache"
    ds = EventClipDataset("nmnist", nmnist_root, cache_dir=cache, transform=transform, seed=3)
    a, b = ds[0][0], ds[0][0]
    torch.testing.assert_close(a, b)  # same (seed, epoch, index), same draw
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], a)
    assert seen[0] == (34, 34)
    assert not cache.exists()
    assert float(a.abs().sum()) < float(EventClipDataset("nmnist", nmnist_root)[0][0].abs().sum())


# --------------------------------------------------------------------------------------------
# Missing data, downloads, roots.


def test_missing_data_says_how_to_download(tmp_path, no_network):
    with pytest.raises(DataError, match="download=True") as info:
        EventClipDataset("dvsgesture", tmp_path)
    assert "ibmGestureTrain" in str(info.value) and DATA_DIR_ENV in str(info.value)
    assert not no_network


def test_download_goes_through_tonic_and_its_failure_is_a_data_error(tmp_path, no_network):
    with pytest.raises(DataError, match="tonic's download"):
        EventClipDataset("nmnist", tmp_path, download=True)
    assert no_network  # tonic's own download function was called (and refused)


def test_download_is_skipped_when_the_files_are_there(nmnist_root, no_network):
    assert len(EventClipDataset("nmnist", nmnist_root, download=True)) == 3
    assert not no_network


def test_dataset_without_tonic_support_explains_the_manual_download(tmp_path, no_network):
    with pytest.raises(DataError, match="tonic cannot download"):
        EventClipDataset("ncars", tmp_path, download=True)
    assert not no_network


def test_root_defaults_to_lp_data_dir(nmnist_root, monkeypatch):
    with pytest.raises(DataError, match=DATA_DIR_ENV):
        EventClipDataset("nmnist")
    monkeypatch.setenv(DATA_DIR_ENV, str(nmnist_root))
    assert len(EventClipDataset("nmnist")) == 3
    assert len(EventClipDataset("nmnist", nmnist_root / "NMNIST")) == 3  # the dataset's own folder


# --------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "options, match",
    [
        ({"name": "mnist"}, "unknown name 'mnist'"),
        ({"split": "val"}, "split"),
        ({"downsample": 0}, "downsample"),
        ({"max_steps": 0}, "max_steps"),
        ({"representation": "voxel"}, "unknown name 'voxel'"),
        ({"representation": 5}, "representation"),
        ({"sensor_size": (34,)}, "sensor_size"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"window": (50_000,)}, "WindowSpec"),
    ],
)
def test_bad_options_are_data_errors(nmnist_root, options, match):
    options = {"name": "nmnist", **options}
    with pytest.raises(DataError, match=match):
        EventClipDataset(options.pop("name"), nmnist_root, **options)


def test_bad_recordings_are_data_errors_naming_the_file(tmp_path, shared_data):
    build_nmnist(tmp_path, shared_data)
    bad = tmp_path / "NMNIST" / "Train" / "3" / "00002.bin"
    bad.write_bytes(bad.read_bytes()[:-2])  # not a whole number of 5-byte records
    ds = EventClipDataset("nmnist", tmp_path)
    with pytest.raises(DataError, match="00002.bin"):
        ds[1]
    small = EventClipDataset("nmnist", tmp_path, sensor_size=(20, 20))
    with pytest.raises(DataError, match="outside the 20 x 20 sensor"):
        small[0]
    too_long = EventClipDataset("nmnist", tmp_path, window=WindowSpec.duration(1_000_000, drop_last=True))
    with pytest.raises(DataError, match="shorter than one duration window"):
        too_long[0]
    (tmp_path / "NMNIST" / "Train" / "x").mkdir()
    shutil.copyfile(shared_data / NMNIST_BIN, tmp_path / "NMNIST" / "Train" / "x" / "1.bin")
    with pytest.raises(DataError, match="cannot tell its class"):
        EventClipDataset("nmnist", tmp_path)


def test_registry_refuses_duplicate_names():
    with pytest.raises(ValueError, match="already registered"):
        register_event_dataset("nmnist")(type("Other", (EventDatasetSource,), {}))


def test_rescale_events_into_a_reused_buffer():
    from data.geometry import rescale_events
    from data.events import make_events

    rng = np.random.default_rng(5)
    events = make_events(rng.integers(0, 346, 300), rng.integers(0, 260, 300), np.sort(rng.integers(0, 10**6, 300)),
                         rng.integers(0, 2, 300))
    fresh = rescale_events(events, (346, 260), (64, 48))
    buffer = np.empty(1000, dtype=events.dtype)
    reused = rescale_events(events, (346, 260), (64, 48), out=buffer)
    np.testing.assert_array_equal(reused, fresh)
    assert np.shares_memory(reused, buffer) and len(reused) == 300
    np.testing.assert_array_equal(fresh["x"], events["x"].astype(np.int64) * 64 // 346)
    assert rescale_events(events, (346, 260), (346, 260)) is events

