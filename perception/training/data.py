"""Lightning data modules, one per data source: the built-in dataset, tonic event datasets, video folders.

Each yields the batches of ``data.collate_clips`` and tells the model what it
needs to be built and to be fed later (``classes``, ``in_channels``, ``preprocessing``,
``time_scale``). The preprocessing (a ``data.Preprocessing``) goes into every checkpoint, so that
streaming inference turns frames or events into tensors exactly as training did; the time scale
(``data.timing.nominal_period`` of the training clips) is its nominal period, and the dt of a
clip's first step when nothing else gives one.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from data import (
    EventClipDataset,
    Preprocessing,
    TimingAugment,
    VideoFolderDataset,
    WindowSpec,
    collate_clips,
    create_representation,
    list_event_datasets,
    nominal_period,
    s_to_us,
)
from data.augment import create_augmentation
from data.errors import DataError
from data.synthetic import (
    DEFAULT_SIZES,
    SyntheticConfig,
    SyntheticMotionDataset,
    class_names,
    pair_kinds,
    window_spec,
)
from perception.errors import PerceptionError
from perception.training.resume import ResumableLoader


class InMemory(Dataset):
    """Computes each item (a dict with ``x``) of ``dataset`` once and keeps it, ``x`` as float16.

    The built-in dataset's voxel grids are 2.75 GB in float32 for the default splits; float16 halves
    that, and its rounding (a relative 5e-4 on normalised grids) is far below the sensor noise.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.items: list[Any] = [None] * len(dataset)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        if self.items[index] is None:
            item = dict(self.dataset[index])
            item["x"] = item["x"].half()
            self.items[index] = item
        item = self.items[index]
        return {**item, "x": item["x"].float()}


class EpochShuffle(Sampler[int]):
    """A shuffle drawn from (seed, epoch) alone, so a resumed run sees the same order an
    uninterrupted one would have (Lightning calls ``set_epoch`` before every epoch).

    ``set_epoch`` also reaches the dataset when it has one (``VideoFolderDataset``,
    ``EventClipDataset``): its augmentation draws come from ``(seed, epoch, index)``.
    """

    def __init__(self, size: int, seed: int, dataset: Dataset | None = None) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.epoch_follower = epoch_follower(dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.epoch_follower is not None:
            self.epoch_follower.set_epoch(self.epoch)

    def __iter__(self):
        return iter(np.random.default_rng((self.seed, self.epoch)).permutation(self.size).tolist())

    def __len__(self) -> int:
        return self.size


def epoch_follower(dataset: Dataset | None):
    """The dataset (or the dataset under a ``Subset``) whose ``set_epoch`` changes its draws, or None."""
    base = dataset.dataset if isinstance(dataset, Subset) else dataset
    return base if callable(getattr(base, "set_epoch", None)) else None


class ClipDataModule(L.LightningDataModule):
    """Shared machinery: splits built in ``setup``, loaders with ``collate_clips``, the time scale.

    Subclasses implement ``make_split(split)`` and the properties ``classes``, ``in_channels`` and
    ``preprocessing``; ``in_channels`` and ``classes`` must not need the data to be loaded (the CLI
    reads them before training to build the model).
    """

    def __init__(self, batch_size: int = 32, num_workers: int = 0) -> None:
        super().__init__()
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise PerceptionError(f"data.batch_size: expected an integer >= 1, got {batch_size!r}")
        if not (isinstance(num_workers, int) and num_workers >= 0):
            raise PerceptionError(f"data.num_workers: expected an integer >= 0, got {num_workers!r}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.shuffle_seed = 0  # the training order's seed; the CLI's seed_everything sets it
        self.splits: dict[str, Dataset] = {}
        self._time_scale: float | None = None

    # -- for subclasses
    def make_split(self, split: str) -> Dataset:
        raise NotImplementedError

    def clip_times(self, dataset: Dataset) -> list[np.ndarray]:
        """Times t (T,) seconds of the clips of ``dataset`` (default: read every item)."""
        return [np.asarray(item["t"] if isinstance(item, dict) else item[1], dtype=np.float64) for item in
                (dataset[i] for i in range(len(dataset)))]

    @property
    def classes(self) -> list[str]:
        raise NotImplementedError

    @property
    def in_channels(self) -> int:
        raise NotImplementedError

    @property
    def preprocessing(self) -> Preprocessing:
        raise NotImplementedError

    # -- shared
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def time_scale(self) -> float:
        """The median known dt (seconds) of the training clips (``data.timing.nominal_period``): the
        nominal period, and one unit of head time."""
        if self._time_scale is None:
            self._time_scale = nominal_period(self.clip_times(self.split("train")))
        return self._time_scale

    def split(self, name: str) -> Dataset:
        if name not in self.splits:
            self.splits[name] = self.make_split(name)
        return self.splits[name]

    def setup(self, stage: str) -> None:
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}[stage]
        for name in needed:
            self.split(name)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        dataset = self.split(name)
        # Workers copy the dataset when they start: a dataset with per-epoch draws needs fresh ones
        # every epoch to see its epoch.
        persistent = self.num_workers > 0 and not (shuffle and epoch_follower(dataset) is not None)
        # A clip starting at 0 gets the nominal period as its first dt, as a stream's first frame does.
        collate = partial(collate_clips, default_period=self.time_scale)
        options = {"batch_size": self.batch_size, "num_workers": self.num_workers, "collate_fn": collate,
                   "persistent_workers": persistent,
                   # worker seeds from the loader's own generator: loading never draws from the global one
                   "generator": torch.Generator().manual_seed(self.shuffle_seed)}
        if shuffle:  # training: a pass resumes where a checkpoint left it (see perception.training.resume)
            return ResumableLoader(dataset, sampler=EpochShuffle(len(dataset), self.shuffle_seed, dataset), **options)
        return DataLoader(dataset, **options)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class SyntheticDataModule(ClipDataModule):
    """The built-in dataset of moving objects (``data.synthetic``), as frames or as events.

    Args:
        modality: "events" (a voxel grid per observation interval, from the event simulator) or
            "frames" (grey frames in [0, 1]).
        train_size, val_size, test_size: clips per split.
        seed: the dataset's seed (the splits never share clips).
        size: frame side H = W in pixels.
        steps: observations per clip T.
        fps_range: per-clip frame rates are drawn log-uniformly from this range.
        jitter: per-frame timing jitter, in periods.
        classes: class names to keep, or None for all eight.
        bins: voxel grid time bins (events only).
        normalize: voxel grid normalisation (``data.normalize_grid``: None, "standard", "abs_max", ...);
            "standard" (E2VID's) keeps windows of very different event counts on one scale.
    """

    def __init__(
        self,
        modality: str = "events",
        train_size: int = DEFAULT_SIZES["train"],
        val_size: int = DEFAULT_SIZES["val"],
        test_size: int = DEFAULT_SIZES["test"],
        seed: int = 0,
        size: int = 64,
        steps: int = 12,
        fps_range: tuple[float, float] = (5.0, 60.0),
        jitter: float = 0.3,
        classes: list[str] | None = None,
        bins: int = 5,
        normalize: str | None = "standard",
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        if modality not in ("events", "frames"):
            raise PerceptionError(f"data.modality: must be 'events' or 'frames', got {modality!r}")
        options = {"size": size, "steps": steps, "fps_range": tuple(fps_range), "jitter": jitter,
                   "representation": {"name": "voxel_grid", "bins": bins, "polarity": "signed",
                                      "normalize": normalize}}
        if classes is not None:
            options["classes"] = tuple(classes)
        self.config = SyntheticConfig(**options)
        self.modality, self.seed = modality, seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}

    def make_split(self, split: str) -> Dataset:
        dataset = SyntheticMotionDataset(split, self.sizes[split], self.modality, self.seed, self.config)
        return InMemory(dataset) if self.modality == "events" else dataset

    def clip_times(self, dataset: Dataset) -> list[np.ndarray]:
        base = dataset.dataset if isinstance(dataset, InMemory) else dataset
        if not isinstance(base, SyntheticMotionDataset):  # a split put in place by hand
            return super().clip_times(dataset)
        return [base.times(i) for i in range(len(base))]

    def pair_kinds(self) -> dict[str, str]:
        """class name -> the kind of pair it belongs to (appearance, order, speed)."""
        return pair_kinds(self.config)

    @property
    def classes(self) -> list[str]:
        return list(class_names(self.config))

    @property
    def in_channels(self) -> int:
        return self.config.make_representation().channels if self.modality == "events" else 1

    @property
    def preprocessing(self) -> Preprocessing:
        side = (self.config.size, self.config.size)
        if self.modality == "frames":
            return Preprocessing.frames(side, 1, self.time_scale)
        # The windows the clips were cut with: between frames (a stream without frames: the nominal period).
        return Preprocessing.events(side, side, self.config.representation, window_spec(s_to_us(self.time_scale)),
                                    self.time_scale)


def hold_out(indices: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    """Split ``indices`` (already shuffled) into (kept, held out): the first ``fraction`` is held out."""
    n = max(1, int(round(len(indices) * fraction)))
    return indices[n:].tolist(), indices[:n].tolist()


class FolderDataModule(ClipDataModule):
    """A data module over a dataset folder: classes come from a probe dataset read once."""

    def __init__(self, batch_size: int, num_workers: int) -> None:
        super().__init__(batch_size, num_workers)
        self._probe = None

    def make_probe(self) -> Dataset:
        raise NotImplementedError

    @property
    def probe(self):
        if self._probe is None:
            self._probe = self.make_probe()
        return self._probe

    @property
    def classes(self) -> list[str]:
        return list(self.probe.classes)


class EventDataModule(FolderDataModule):
    """A registered event dataset (DVSGesture, NMNIST, ...) through ``data.EventClipDataset``.

    Args:
        dataset: a name from ``data.list_event_datasets()``.
        root: the datasets folder (default $LP_DATA_DIR).
        window_mode, window_size, window_overlap: how recordings are cut into steps (duration in
            microseconds, or count in events).
        representation: ``data.create_representation`` options (default a 5-bin signed voxel grid).
        max_steps: keep at most this many windows per recording.
        downsample: integer factor dividing the sensor's sides.
        cache_dir: where computed clips are cached (None: no cache; training clips are never cached
            when ``augment`` is set, since they change every epoch).
        download: download through tonic when the files are missing.
        val_fraction: part of the training split held out for validation.
        augment: event augmentations of the training split only, applied to each whole recording at
            full resolution before windowing: name -> options, in order (``data.augment``'s registry,
            e.g. ``{translate: {max_shift: 2}, drop_events: {fraction: 0.1}}``); None: none. Their
            draws come from ``(seed, epoch, index)``, so a run (and a resumed one) is reproducible;
            validation and test clips are never augmented.
        seed: the validation hold-out's seed and the augmentations' base seed.
    """

    def __init__(
        self,
        dataset: str = "dvsgesture",
        root: str | None = None,
        window_mode: str = "duration",
        window_size: int = 50_000,
        window_overlap: int = 0,
        representation: dict[str, Any] | None = None,
        max_steps: int | None = 32,
        downsample: int = 1,
        cache_dir: str | None = None,
        download: bool = False,
        val_fraction: float = 0.1,
        augment: dict[str, dict[str, Any] | None] | None = None,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        try:
            self.augment = create_augmentation(augment) if augment else None
        except DataError as error:
            raise PerceptionError(f"data.augment: {error}") from None
        if dataset not in list_event_datasets():
            raise PerceptionError(f"data.dataset: unknown {dataset!r}; choose one of: {', '.join(list_event_datasets())}")
        if not 0 < val_fraction < 1:
            raise PerceptionError(f"data.val_fraction: expected a number in (0, 1), got {val_fraction!r}")
        if window_mode == "frames":
            raise PerceptionError("data.window_mode: 'frames' windows need a frame clock, and recordings have none; "
                                  "use 'duration' or 'count'")
        self.window = WindowSpec(window_mode, window_size, window_overlap)
        self.representation = create_representation(**(representation or {"name": "voxel_grid", "bins": 5}))
        self.options = {"root": root, "window": self.window, "representation": self.representation,
                        "max_steps": max_steps, "downsample": downsample, "cache_dir": cache_dir, "seed": seed}
        self.download, self.val_fraction, self.seed = download, val_fraction, seed

    def prepare_data(self) -> None:
        if self.download:  # downloads happen once, on one process (Lightning calls this on rank 0)
            for split in ("train", "test"):
                EventClipDataset(self.hparams.dataset, split=split, download=True, **self.options)

    def _full(self, split: str, augmented: bool = False) -> EventClipDataset:
        transform = self.augment if augmented else None
        return EventClipDataset(self.hparams.dataset, split=split, transform=transform, **self.options)

    def make_split(self, split: str) -> Dataset:
        if split == "test":
            return self._full("test")
        # The training split's recordings with the augmentations, the held-out ones without.
        full = self._full("train", augmented=split == "train")
        train, val = hold_out(np.random.default_rng(self.seed).permutation(len(full)), self.val_fraction)
        return Subset(full, val if split == "val" else train)

    def make_probe(self) -> EventClipDataset:
        return self._full("train")

    def clip_times(self, dataset: Dataset) -> list[np.ndarray]:
        """Window ends from the events alone: the voxel grids of the whole split are not needed."""
        base, indices = (dataset.dataset, dataset.indices) if isinstance(dataset, Subset) else (dataset, None)
        return [base.window_times(i) for i in (indices if indices is not None else range(len(base)))]

    @property
    def in_channels(self) -> int:
        return self.representation.channels

    @property
    def preprocessing(self) -> Preprocessing:
        probe = self.probe
        return Preprocessing.events(probe.sensor_size, probe.frame_size, self.representation, self.window,
                                    self.time_scale, probe.downsample)


class VideoFolderDataModule(FolderDataModule):
    """Videos in ``root/<class>/<file>`` (UCF101 / HMDB51 layout) through ``data.VideoFolderDataset``.

    Training clips start at random places and get the timing augmentation (dropped frames,
    jittered times, lower rates) so the heads see irregular timing on purpose; validation and test
    clips are the centre clip of each video with its true timing.

    Args:
        root: the dataset folder.
        train_split, test_split: split files listing the videos (UCF101 ``trainlist01.txt`` style);
            without them the videos are split at random by ``test_fraction``.
        frames_per_clip, stride: T and the frame step.
        size: (width, height) of the frames.
        grey: one channel instead of RGB.
        drop_prob, jitter_std, rate_factors: the training timing augmentation.
        val_fraction, test_fraction: held-out parts when there are no split files.
    """

    def __init__(
        self,
        root: str = "videos",
        train_split: str | None = None,
        test_split: str | None = None,
        frames_per_clip: int = 16,
        stride: int = 1,
        size: tuple[int, int] = (112, 112),
        grey: bool = False,
        drop_prob: float = 0.1,
        jitter_std: float = 0.005,
        rate_factors: tuple[int, ...] = (1, 2),
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.timing = TimingAugment(drop_prob, jitter_std, tuple(rate_factors))
        self.common = {"frames_per_clip": frames_per_clip, "stride": stride, "size": tuple(size), "grey": grey,
                       "seed": seed}

    def _dataset(self, split_file: str | None, train: bool) -> VideoFolderDataset:
        extra = {"random_clip": True, "timing": self.timing} if train else {}
        return VideoFolderDataset(self.hparams.root, split=split_file, **self.common, **extra)

    def make_split(self, split: str) -> Dataset:
        hp = self.hparams
        if hp.train_split is not None and hp.test_split is not None:
            if split == "test":
                return self._dataset(hp.test_split, train=False)
            dataset = self._dataset(hp.train_split, train=split == "train")
            order = np.random.default_rng(hp.seed).permutation(len(dataset))
        else:
            dataset = self._dataset(None, train=split == "train")
            order, test = hold_out(np.random.default_rng(hp.seed).permutation(len(dataset)), hp.test_fraction)
            if split == "test":
                return Subset(dataset, test)
            order = np.asarray(order)
        train, val = hold_out(order, hp.val_fraction)
        return Subset(dataset, val if split == "val" else train)

    def clip_times(self, dataset: Dataset) -> list[np.ndarray]:
        base, indices = (dataset.dataset, dataset.indices) if isinstance(dataset, Subset) else (dataset, None)
        times = [base.times[i] for i in (indices if indices is not None else range(len(base.times)))]
        step = self.common["stride"]
        return [t[::step] for t in times]

    def make_probe(self) -> VideoFolderDataset:
        return self._dataset(None, train=False)

    @property
    def in_channels(self) -> int:
        return 1 if self.common["grey"] else 3

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.frames(self.common["size"], self.in_channels, self.time_scale)

