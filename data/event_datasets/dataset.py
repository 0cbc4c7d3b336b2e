"""``EventClipDataset``: a registered event dataset as clips with real time.

Each item is a clip ``(x, t, label)``: x (T, C, H, W) float32, one representation (voxel grid by
default) per window of the recording; t (T,) float64 seconds, each window's END time measured from
the recording's first event, so the dt between steps is the real time (count windows give a
variable dt); label int. Finding and splitting the files: ``discovery``; the clip cache: ``cache``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from data.errors import DataError
from data.event_datasets.cache import clip_entry, load_clip, store_clip
from data.event_datasets.discovery import dataset_root, find_samples
from data.event_datasets.registry import get_event_dataset
from data.events import Events, SensorSize, as_events, check_events
from data.geometry import as_size, frame_size, rescale_events
from data.representations import Representation, as_representation
from data.timing import us_to_s
from data.windows import WindowSpec, slice_windows

SPLITS = ("train", "test", "all")
DEFAULT_WINDOW = WindowSpec("duration", 50_000)
# transform(events (N,), sensor_size (W, H), rng) -> events (N',): data.augment's call convention.
EventTransform = Callable[[Events, SensorSize, np.random.Generator], Events]


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
        self.representation = as_representation(representation)
        self.sensor_size = self.source.sensor_size if sensor_size is None else as_size("sensor_size", sensor_size)
        self.downsample = int(downsample)
        self.frame_size = frame_size(self.sensor_size, self.downsample, size)
        self.transform, self.seed, self.epoch = transform, seed, 0
        self.cache_dir = None if cache_dir is None else Path(os.fspath(cache_dir))
        self.root = dataset_root(root)
        stratified = self.source.split_folders is None and split != "all"
        self._split_rule = {"test_fraction": float(test_fraction), "split_seed": split_seed} if stratified else None
        self.folder, self.classes, self.samples = find_samples(
            self.source, self.root, split, download=download, test_fraction=float(test_fraction), split_seed=split_seed
        )

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
        loaded = load_clip(cache[0], cache[1]) if cache is not None else None
        if loaded is None:
            loaded = self._compute(index)
            if cache is not None:
                store_clip(cache[0], cache[1], *loaded)
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
        t = us_to_s(np.asarray(ends, np.int64) - origin)
        return x, t

    def window_times(self, index: int) -> np.ndarray:
        """t (T,) float64 seconds of item ``index`` as ``__getitem__`` gives it without a transform,
        from the events alone: no representation is computed (the median dt of a split needs only
        this)."""
        events = self.events(index)
        origin = int(events["t"][0])
        return us_to_s(np.asarray([w.t_end_us for w in self._windows(events, origin)], np.int64) - origin)

    def _windows(self, events: Events, origin: int):
        """The item's windows (at most ``max_steps``), cut from ``origin`` (us)."""
        return islice(slice_windows(events, self.window, t_start_us=origin), self.max_steps)

    def _cache_path(self, index: int) -> tuple[Path, str]:
        """(cache file, its full key) of item ``index``."""
        path = self.samples[index][0]
        stat = path.stat()
        options = {
            "split_rule": self._split_rule, "file": path.relative_to(self.folder).as_posix(),
            "file_size": stat.st_size, "file_mtime_ns": stat.st_mtime_ns, "window": self.window.to_config(),
            "representation": self.representation.to_config(), "sensor_size": list(self.sensor_size),
            "frame_size": list(self.frame_size), "downsample": self.downsample, "max_steps": self.max_steps,
        }
        return clip_entry(self.cache_dir, self.name, self.split, index, options)
