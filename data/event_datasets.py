"""Event-camera datasets (tonic's layouts) as clips with real time: ``EventClipDataset``.

Each item is a clip ``(x, t, label)``: x (T, C, H, W) float32, one representation (voxel grid by
default) per window of the recording; t (T,) float64 seconds, each window's END time measured from
the recording's first event, so the dt between steps is the real time (count windows give a
variable dt); label int.

Datasets register by name (``@register_event_dataset("dvsgesture")``). An entry knows tonic's class
(used only to download), the sensor size, the class names, how the splits map, and the layout of the
files under ``root/<tonic class name>/``, which is where tonic itself puts them, so a dataset tonic
downloaded works as is. We read the files ourselves (``data.io`` readers, or numpy for tonic's
column arrays) and never go through tonic's loaders. Registered names: ``list_event_datasets()``.

Splits: DVSGesture, NMNIST, POKERDVS and NCARS have official train/test folders. NCALTECH101 and
CIFAR10DVS have none, so we make a deterministic stratified one: within each class, files are ranked
by the SHA-256 of ``"<split_seed>:<path relative to the dataset folder>"`` and the first
``round(n * test_fraction)`` of them (at least 1, at most n - 1, when the class has 2 or more) are the
test split. It depends on neither the file system's order nor numpy's generators, and adding files
to a class moves no other file of it except across that class's cut. ``split="all"`` takes everything.

The cache (``cache_dir``): the first access computes x and stores it, with t, in
``cache_dir/<dataset>/<split>/<index>-<key>.npz`` (written atomically: ``data.files``). The key
hashes a version number, the dataset, split and split rule, the index, the file's path, size and
modification time, the window spec, the representation's config, the sizes and ``max_steps``, so a
changed option never returns a stale clip. An unreadable cache file is recomputed and overwritten.
Items drawn with a ``transform`` (augmentation) are random, so they are never cached.

Downloads go through tonic (``download=True``) and only when our own check finds no files; tonic's
links are often dead, so a failed download is a DataError saying where to put the files by hand.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib
from collections.abc import Callable, Mapping
from itertools import islice
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from data.errors import DataError
from data.events import EVENT_DTYPE, Events, SensorSize, as_events, check_events
from data.files import AtomicFile
from data.io import read_events
from data.representations import Representation, create_representation
from data.windows import WindowSpec, slice_windows

DATA_DIR_ENV = "LP_DATA_DIR"
CACHE_VERSION = 1
SPLITS = ("train", "test", "all")
DEFAULT_WINDOW = WindowSpec("duration", 50_000)
# transform(events (N,), sensor_size (W, H), rng) -> events (N',): data.augment's call convention.
EventTransform = Callable[[Events, SensorSize, np.random.Generator], Events]
Sample = tuple[Path, int]  # (recording file, label)


# --------------------------------------------------------------------------------------------
# The registry.


class EventDatasetSource:
    """What we know about one dataset; subclasses register with ``register_event_dataset``.

    Class attributes:
        name: the registry name (set by the decorator).
        folder: the dataset's folder under the root: tonic's class name, where tonic extracts it.
        tonic_class: the class in ``tonic.datasets`` that downloads it, or None (no tonic support).
        tonic_has_train: tonic's class takes ``train=True/False``.
        sensor_size: (W, H) of the recordings.
        classes: class names, label = index; None: the sorted class folders found on disk.
        subfolder: where the recordings sit inside ``folder`` ("" for ``folder`` itself).
        split_folders: split -> sub-folder of that (official splits); None: stratified split.
        suffixes: recording file endings.
        format: the ``data.io`` format of the files (None: ``read`` is overridden).
        crop: drop events outside ``sensor_size`` (recordings of varying size) instead of refusing.
        layout: the expected layout, for error messages.
    """

    name: ClassVar[str]
    folder: ClassVar[str]
    tonic_class: ClassVar[str | None] = None
    tonic_has_train: ClassVar[bool] = False
    sensor_size: ClassVar[SensorSize]
    classes: ClassVar[tuple[str, ...] | None] = None
    subfolder: ClassVar[str] = ""
    split_folders: ClassVar[Mapping[str, str] | None] = None
    suffixes: ClassVar[tuple[str, ...]]
    format: ClassVar[str | None] = None
    crop: ClassVar[bool] = False
    layout: ClassVar[str]

    def label(self, path: Path, classes: tuple[str, ...]) -> int | None:
        """The label of a recording; default: its folder's index in ``classes`` (None: unknown)."""
        return classes.index(path.parent.name) if path.parent.name in classes else None

    def read(self, path: Path) -> Events:
        """The recording's events (N,), canonical, sorted by t."""
        return read_events(path, format=self.format).events

    def download(self, root: Path, split: str) -> None:
        """Download (and extract) the split into ``root/<folder>`` with tonic."""
        if self.tonic_class is None:
            raise DataError(
                f"{self.name}: tonic cannot download this dataset; download it yourself and unpack it "
                f"as {root / self.folder}/{self.layout}"
            )
        import tonic.datasets  # noqa: PLC0415 - slow import, needed only here

        cls = getattr(tonic.datasets, self.tonic_class)
        trains = [split == "train"] if split != "all" else [True, False]
        for train in trains if self.tonic_has_train else [None]:
            kwargs = {} if train is None else {"train": train}
            try:
                cls(save_to=str(root), **kwargs)
            except Exception as error:  # noqa: BLE001 - tonic and its downloads raise anything
                raise DataError(
                    f"{self.name}: tonic's download into {root} failed ({type(error).__name__}: {error}); "
                    f"download it by hand and unpack it as {root / self.folder}/{self.layout}"
                ) from error


_REGISTRY: dict[str, EventDatasetSource] = {}


def register_event_dataset(name: str) -> Callable[[type[EventDatasetSource]], type[EventDatasetSource]]:
    """Class decorator adding an EventDatasetSource to the registry under ``name`` (no duplicates)."""

    def decorate(cls: type[EventDatasetSource]) -> type[EventDatasetSource]:
        if name in _REGISTRY:
            raise ValueError(f"event dataset {name!r} is already registered ({type(_REGISTRY[name]).__name__})")
        cls.name = name
        _REGISTRY[name] = cls()
        return cls

    return decorate


def list_event_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def get_event_dataset(name: str) -> EventDatasetSource:
    """The registry entry of ``name``; DataError naming the registered ones when unknown."""
    if name not in _REGISTRY:
        raise DataError(f"event dataset: unknown name {name!r}; choose one of {', '.join(list_event_datasets())}")
    return _REGISTRY[name]


# --------------------------------------------------------------------------------------------
# Readers for tonic's column arrays and the registered datasets.


def read_columns(path: Path, order: tuple[str, str, str, str], us_per_unit: int = 1) -> Events:
    """Read an (N, 4) numeric .npy array whose columns are x, y, t, p in ``order``.

    Times are multiplied by ``us_per_unit`` (DVSGesture stores milliseconds) and the events sorted
    stably by time when the file is not (these files are derived data, not a sensor's own stream).
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: not a readable .npy array ({error})") from None
    if array.ndim != 2 or array.shape[1] != 4 or array.dtype.kind not in "biuf":
        raise DataError(
            f"{path}: expected an (N, 4) numeric array of {', '.join(order)}; got {array.shape} {array.dtype}"
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    columns = dict(zip(order, array.T))
    if array.dtype.kind == "f":
        t = np.rint(columns["t"].astype(np.float64) * us_per_unit).astype(np.int64)
    else:
        t = columns["t"].astype(np.int64) * us_per_unit
    for axis in ("x", "y"):
        values = columns[axis]
        if values.size and (values.min() < 0 or values.max() >= 1 << 16):
            raise DataError(f"{path}: {axis} has values outside 0..65535")
    events = np.empty(len(array), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"] = columns["x"], columns["y"], t
    events["p"] = columns["p"] > 0
    if events.size > 1 and (np.diff(t) < 0).any():
        events = events[np.argsort(t, kind="stable")]
    return events


@register_event_dataset("dvsgesture")
class DVSGestureSource(EventDatasetSource):
    """IBM DVS Gesture as tonic preprocesses it: ``<user>_<lighting>/<label>.npy``, columns x, y, p, t (ms)."""

    folder, tonic_class, tonic_has_train = "DVSGesture", "DVSGesture", True
    sensor_size = (128, 128)
    classes = (
        "hand clapping", "right hand wave", "left hand wave", "right arm cw", "right arm ccw",
        "left arm cw", "left arm ccw", "arm roll", "air drums", "air guitar", "other gestures",
    )
    split_folders = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
    suffixes = (".npy",)
    layout = "{ibmGestureTrain,ibmGestureTest}/user01_fluorescent/<label>.npy"

    def label(self, path: Path, classes: tuple[str, ...]) -> int | None:
        return int(path.stem) if path.stem.isdigit() and int(path.stem) < len(classes) else None

    def read(self, path: Path) -> Events:
        return read_columns(path, ("x", "y", "p", "t"), us_per_unit=1000)


@register_event_dataset("nmnist")
class NMNISTSource(EventDatasetSource):
    """N-MNIST: ``{Train,Test}/<digit>/<id>.bin`` (ATIS binary)."""

    folder, tonic_class, tonic_has_train = "NMNIST", "NMNIST", True
    sensor_size = (34, 34)
    classes = tuple(str(d) for d in range(10))
    split_folders = {"train": "Train", "test": "Test"}
    suffixes, format = (".bin",), "atis_bin"
    layout = "{Train,Test}/<digit 0-9>/<id>.bin"


@register_event_dataset("ncaltech101")
class NCaltech101Source(EventDatasetSource):
    """N-Caltech101: ``Caltech101/<class>/image_<id>.bin`` (ATIS binary); no official split.

    Recordings differ in size; they fit the 240 x 180 area the images were shown in, and events
    outside it (if any) are dropped. Classes are the sorted folder names.
    """

    folder, tonic_class = "NCALTECH101", "NCALTECH101"
    sensor_size = (240, 180)
    subfolder, split_folders = "Caltech101", None
    suffixes, format, crop = (".bin",), "atis_bin", True
    layout = "Caltech101/<class>/image_<id>.bin"


@register_event_dataset("cifar10dvs")
class CIFAR10DVSSource(EventDatasetSource):
    """CIFAR10-DVS as tonic downloads it: ``<class>/<id>.aedat4``; no official split.

    (The original AEDAT 2.0 ``.aedat`` release is not read; tonic's download converts it to AEDAT4.)
    """

    folder, tonic_class = "CIFAR10DVS", "CIFAR10DVS"
    sensor_size = (128, 128)
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    suffixes, format = (".aedat4",), "aedat4"
    layout = "<class>/<id>.aedat4"


@register_event_dataset("pokerdvs")
class PokerDVSSource(EventDatasetSource):
    """POKER-DVS: ``{pips_train,pips_test}/<folder ending in the suit code>/<id>.npy``, columns t, x, y, p."""

    folder, tonic_class, tonic_has_train = "POKERDVS", "POKERDVS", True
    sensor_size = (35, 35)
    classes = ("clubs", "hearts", "diamonds", "spades")
    codes = ("cl", "he", "di", "sp")  # tonic labels a file by the last two letters of its folder
    split_folders = {"train": "pips_train", "test": "pips_test"}
    suffixes = (".npy",)
    layout = "{pips_train,pips_test}/<..cl|he|di|sp>/<id>.npy"

    def label(self, path: Path, classes: tuple[str, ...]) -> int | None:
        code = path.parent.name[-2:]
        return self.codes.index(code) if code in self.codes else None

    def read(self, path: Path) -> Events:
        return read_columns(path, ("t", "x", "y", "p"))


@register_event_dataset("ncars")
class NCarsSource(EventDatasetSource):
    """N-CARS (Prophesee; not in tonic): ``{n-cars_train,n-cars_test}/{background,cars}/obj_<id>_td.dat``.

    Samples are crops of at most 120 x 100 pixels; events outside (if any) are dropped.
    """

    folder = "NCARS"
    sensor_size = (120, 100)
    classes = ("background", "cars")
    split_folders = {"train": "n-cars_train", "test": "n-cars_test"}
    suffixes, format, crop = (".dat",), "dat", True
    layout = "{n-cars_train,n-cars_test}/{background,cars}/obj_<id>_td.dat"


# --------------------------------------------------------------------------------------------
# Finding the files and splitting them.


def dataset_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the datasets: ``root``, else $LP_DATA_DIR."""
    if root is None:
        root = os.environ.get(DATA_DIR_ENV) or None
        if root is None:
            raise DataError(f"dataset root: pass root=... or set {DATA_DIR_ENV} to the folder that holds the datasets")
    return Path(os.fspath(root)).expanduser()


def _data_folder(source: EventDatasetSource, root: Path) -> Path:
    """``root/<folder>``, or ``root`` itself when it is that folder."""
    folder = root / source.folder
    return root if not folder.is_dir() and root.name == source.folder else folder


def _split_dirs(source: EventDatasetSource, folder: Path, split: str) -> list[Path]:
    base = folder / source.subfolder
    if source.split_folders is None:
        return [base]
    names = list(source.split_folders.values()) if split == "all" else [source.split_folders[split]]
    return [base / name for name in names]


def _recordings(source: EventDatasetSource, dirs: list[Path]) -> list[Path]:
    found = [p for d in dirs if d.is_dir() for p in d.rglob("*") if p.suffix.lower() in source.suffixes]
    return sorted(p for p in found if p.is_file() and not p.name.startswith("."))


def _class_names(source: EventDatasetSource, paths: list[Path]) -> tuple[str, ...]:
    """The registered class names, else the sorted names of the folders holding recordings."""
    return source.classes if source.classes is not None else tuple(sorted({p.parent.name for p in paths}))


def _rank(seed: int, relative: Path) -> bytes:
    return hashlib.sha256(f"{seed}:{relative.as_posix()}".encode()).digest()


def stratified_split(
    samples: list[Sample], folder: Path, test_fraction: float, seed: int
) -> dict[str, list[Sample]]:
    """Split samples per class by hash rank (module docstring); returns {"train": ..., "test": ...}."""
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    test: set[Path] = set()
    for members in by_class.values():
        n = len(members)
        if n < 2:
            continue
        n_test = min(n - 1, max(1, round(n * test_fraction)))
        ranked = sorted(members, key=lambda s: _rank(seed, s[0].relative_to(folder)))
        test.update(path for path, _ in ranked[:n_test])
    return {
        "train": [s for s in samples if s[0] not in test],
        "test": [s for s in samples if s[0] in test],
    }


# --------------------------------------------------------------------------------------------
# Options.


def _as_representation(representation: Representation | str | Mapping) -> Representation:
    if isinstance(representation, Representation):
        return representation
    if isinstance(representation, str):
        return create_representation(representation)
    if isinstance(representation, Mapping) and isinstance(representation.get("name"), str):
        options = {k: v for k, v in representation.items() if k != "name"}
        return create_representation(representation["name"], **options)
    raise DataError(
        "representation: expected a Representation, a registered name, or a config dict with 'name'; "
        f"got {representation!r}"
    )


def _as_size(option: str, value) -> SensorSize:
    try:
        width, height = (int(v) for v in value)
        ok = (width, height) == tuple(value) and width >= 1 and height >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise DataError(f"{option}: expected (width, height) with positive integers; got {value!r}")
    return width, height


def _frame_size(native: SensorSize, downsample: int, size) -> SensorSize:
    if isinstance(downsample, bool) or not isinstance(downsample, (int, np.integer)) or downsample < 1:
        raise DataError(f"downsample: expected an integer >= 1; got {downsample!r}")
    if size is not None:
        if downsample != 1:
            raise DataError("size, downsample: give one of them, not both")
        width, height = _as_size("size", size)
        if width > native[0] or height > native[1]:
            raise DataError(f"size: {width} x {height} is larger than the {native[0]} x {native[1]} sensor")
        return width, height
    return math.ceil(native[0] / downsample), math.ceil(native[1] / downsample)


def rescale_events(events: Events, native: SensorSize, frame: SensorSize, downsample: int = 1,
                   out: Events | None = None) -> Events:
    """Map coordinates from the sensor to the (smaller) frame: x // k, or x * W' // W for a size.

    Training (``EventClipDataset``) and streaming both call this, so a model sees the same pixels in
    both. ``out``: an event array of at least N events to write into (a buffer reused from window to
    window spares a fresh allocation per dense window); default a new array. ``events`` is returned
    unchanged when the frame is the sensor.
    """
    if tuple(frame) == tuple(native):
        return events
    out = np.empty_like(events) if out is None else out[: len(events)]
    if downsample > 1:
        np.floor_divide(events["x"], downsample, out=out["x"])
        np.floor_divide(events["y"], downsample, out=out["y"])
    else:  # uint32 holds 65535 * 65535
        np.floor_divide(events["x"].astype(np.uint32) * frame[0], native[0], out=out["x"], casting="unsafe")
        np.floor_divide(events["y"].astype(np.uint32) * frame[1], native[1], out=out["y"], casting="unsafe")
    out["t"], out["p"] = events["t"], events["p"]
    return out


# --------------------------------------------------------------------------------------------
# The dataset.


class EventClipDataset(Dataset):
    """Clips from a registered event dataset, one representation per window (module docstring).

    Args:
        name: a registered dataset (``list_event_datasets()``).
        root: the folder holding ``<tonic class name>/`` (or that folder itself); default $LP_DATA_DIR.
        split: "train", "test" or "all".
        window: how each recording is cut into steps.
        representation: a Representation, a registered name, or a config dict with "name".
        max_steps: keep at most this many windows (the first ones), or None for all.
        sensor_size: (W, H) override of the registered sensor size.
        downsample: integer factor dividing both sides (coordinates x // k).
        size: (W, H) of the frames instead of ``downsample`` (coordinates x * W' // W).
        cache_dir: where computed clips are cached, or None for no cache.
        download: download through tonic when no files are found.
        transform: augmentation ``transform(events, sensor_size, rng) -> events`` at full
            resolution, before windowing (``data.augment``); disables the cache.
        seed: base seed of each item's generator, ``default_rng((seed, epoch, index))``.
        test_fraction, split_seed: the stratified split of datasets without an official one.

    Attributes:
        classes: class names (label = index). samples: (file, label) of each item, sorted by path.
        sensor_size, frame_size: (W, H) of the recordings and of x. channels: C.
    """

    def __init__(
        self,
        name: str,
        root: str | os.PathLike | None = None,
        *,
        split: str = "train",
        window: WindowSpec = DEFAULT_WINDOW,
        representation: Representation | str | Mapping = "voxel_grid",
        max_steps: int | None = None,
        sensor_size: SensorSize | None = None,
        downsample: int = 1,
        size: SensorSize | None = None,
        cache_dir: str | os.PathLike | None = None,
        download: bool = False,
        transform: EventTransform | None = None,
        seed: int = 0,
        test_fraction: float = 0.2,
        split_seed: int = 0,
    ) -> None:
        self.source = get_event_dataset(name)
        if split not in SPLITS:
            raise DataError(f"split: must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
        if not isinstance(window, WindowSpec):
            raise DataError(f"window: expected a WindowSpec, got {type(window).__name__}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise DataError(f"max_steps: expected an integer >= 1 or None; got {max_steps!r}")
        if transform is not None and not callable(transform):
            raise DataError(f"transform: expected a callable(events, sensor_size, rng) or None; got {transform!r}")
        if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
            raise DataError(f"test_fraction: expected a number in (0, 1); got {test_fraction!r}")
        for option, value in (("seed", seed), ("split_seed", split_seed)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise DataError(f"{option}: expected an integer >= 0; got {value!r}")
        self.name, self.split, self.window, self.max_steps = name, split, window, max_steps
        self.representation = _as_representation(representation)
        self.sensor_size = self.source.sensor_size if sensor_size is None else _as_size("sensor_size", sensor_size)
        self.downsample = int(downsample)
        self.frame_size = _frame_size(self.sensor_size, self.downsample, size)
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.cache_dir = None if cache_dir is None else Path(os.fspath(cache_dir))
        self.root = dataset_root(root)
        self.folder = _data_folder(self.source, self.root)
        stratified = self.source.split_folders is None and split != "all"
        self._split_rule = {"test_fraction": float(test_fraction), "split_seed": split_seed} if stratified else None
        dirs = _split_dirs(self.source, self.folder, split)
        paths = _recordings(self.source, dirs)
        if not paths:
            if not download:
                raise DataError(self._missing_message(dirs))
            self.source.download(self.root, split)
            self.folder = _data_folder(self.source, self.root)
            dirs = _split_dirs(self.source, self.folder, split)
            paths = _recordings(self.source, dirs)
            if not paths:
                raise DataError(self._missing_message(dirs) + " (still missing after the download)")
        self.classes = _class_names(self.source, paths)
        self.samples = self._find(paths, float(test_fraction), split_seed)

    def _missing_message(self, dirs: list[Path]) -> str:
        where = ", ".join(str(d) for d in dirs)
        how = (
            f"pass download=True to download it with tonic into {self.root}"
            if self.source.tonic_class is not None else "download it from its authors' site"
        )
        return (
            f"{self.name} ({self.split}): no {'/'.join(self.source.suffixes)} recordings in {where} (expected "
            f"{self.root / self.source.folder}/{self.source.layout}); {how}, or point root= or "
            f"{DATA_DIR_ENV} at the folder that holds {self.source.folder}/"
        )

    def _find(self, paths: list[Path], test_fraction: float, split_seed: int) -> list[Sample]:
        samples = []
        for path in paths:
            label = self.source.label(path, self.classes)
            if label is None:
                raise DataError(f"{path}: cannot tell its class (expected {self.folder}/{self.source.layout})")
            samples.append((path, label))
        if self.source.split_folders is None and self.split != "all":
            samples = stratified_split(samples, self.folder, test_fraction, split_seed)[self.split]
            if not samples:
                raise DataError(f"{self.name}: the {self.split} split is empty (too few recordings per class)")
        return samples

    @property
    def channels(self) -> int:
        """C, the channels of each step."""
        return self.representation.channels

    @property
    def targets(self) -> list[int]:
        """The label of each item."""
        return [label for _, label in self.samples]

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (call before each epoch; workers copy the dataset then)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"EventClipDataset({self.name!r}, split={self.split!r}, {len(self)} recordings, root={str(self.root)!r})"

    def events(self, index: int) -> Events:
        """The recording of item ``index``: (N,) canonical events inside ``sensor_size``."""
        path = self.samples[index][0]
        events = as_events(self.source.read(path), name=str(path))
        width, height = self.sensor_size
        outside = (events["x"] >= width) | (events["y"] >= height)
        if outside.any():
            if not self.source.crop:
                i = int(np.flatnonzero(outside)[0])
                raise DataError(
                    f"{path}: event {i} at x={events['x'][i]}, y={events['y'][i]} lies outside the {width} x "
                    f"{height} sensor of {self.name} (pass sensor_size=(W, H) for other recordings)"
                )
            events = events[~outside]
        if events.size == 0:
            raise DataError(f"{path}: the recording holds no events")
        return events

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Item ``index``: x (T, C, H, W) float32, t (T,) float64 seconds (window ends), label."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} recordings")
        index %= len(self)
        cache = self._cache_path(index) if self.cache_dir is not None and self.transform is None else None
        loaded = _load_clip(cache[0], cache[1]) if cache is not None else None
        if loaded is None:
            loaded = self._compute(index)
            if cache is not None:
                _store_clip(cache[0], cache[1], *loaded)
        x, t = loaded
        return torch.from_numpy(x), torch.from_numpy(t), self.samples[index][1]

    def _compute(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """x (T, C, H, W) float32 and t (T,) float64 seconds of item ``index``."""
        path = self.samples[index][0]
        events = self.events(index)
        origin = int(events["t"][0])
        if self.transform is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            events = check_events(
                as_events(self.transform(events, self.sensor_size, rng), name=f"{path}: transformed"),
                self.sensor_size, name=f"{path}: transformed",
            )
            if events.size == 0:
                raise DataError(f"{path}: no events left after the transform")
            origin = min(origin, int(events["t"][0]))  # time jitter may move events before the start
        events = rescale_events(events, self.sensor_size, self.frame_size, self.downsample)
        frames, ends = [], []
        for w in self._windows(events, origin):
            frames.append(self.representation(w.events, self.frame_size, t_start=w.t_start_us, t_end=w.t_end_us))
            ends.append(w.t_end_us)
        if not frames:  # drop_last and a recording shorter than one window
            spec = self.window
            raise DataError(f"{path}: shorter than one {spec.mode} window of {spec.size} (drop_last=True)")
        x = np.stack(frames).astype(np.float32, copy=False)
        t = (np.asarray(ends, np.int64) - origin) / 1e6
        return x, t

    def window_times(self, index: int) -> np.ndarray:
        """t (T,) float64 seconds of item ``index`` as ``__getitem__`` gives it without a transform,
        from the events alone: no representation is computed (the median dt of a split needs only
        this)."""
        events = self.events(index)
        origin = int(events["t"][0])
        return (np.asarray([w.t_end_us for w in self._windows(events, origin)], np.int64) - origin) / 1e6

    def _windows(self, events: Events, origin: int):
        """The item's windows (at most ``max_steps``), cut from ``origin`` (us)."""
        return islice(slice_windows(events, self.window, t_start_us=origin), self.max_steps)

    def _cache_path(self, index: int) -> tuple[Path, str]:
        """(cache file, its full key) of item ``index``."""
        path = self.samples[index][0]
        stat = path.stat()
        key = json.dumps(
            {
                "version": CACHE_VERSION, "dataset": self.name, "split": self.split, "split_rule": self._split_rule,
                "index": index, "file": path.relative_to(self.folder).as_posix(), "file_size": stat.st_size,
                "file_mtime_ns": stat.st_mtime_ns, "window": self.window.to_config(),
                "representation": self.representation.to_config(), "sensor_size": list(self.sensor_size),
                "frame_size": list(self.frame_size), "downsample": self.downsample, "max_steps": self.max_steps,
            },
            sort_keys=True,
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self.cache_dir / self.name / self.split / f"{index:06d}-{digest}.npz", key


# --------------------------------------------------------------------------------------------
# Cache files.

_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def _load_clip(file: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (x, t), or None when missing, unreadable, or made with another key."""
    if not file.is_file():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            x, t = z["x"], z["t"]
    except _UNREADABLE:
        return None  # a corrupt or truncated cache file: the caller recomputes and overwrites it
    ok = x.dtype == np.float32 and x.ndim == 4 and t.dtype == np.float64 and t.shape == (x.shape[0],)
    return (x, t) if ok else None


def _store_clip(file: Path, key: str, x: np.ndarray, t: np.ndarray) -> None:
    """Write (x, t) with its key, atomically (``data.files.AtomicFile``)."""
    # a file object: np.savez_compressed would append '.npz' to the temporary file's name
    with AtomicFile(file, parents=True) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, key=np.array(key), x=x, t=t)
