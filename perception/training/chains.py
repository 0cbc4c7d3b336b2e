"""``ChainDataModule``: chains of real recordings whose label needs time (``data.chain``).

Any registered event dataset (``dataset: nmnist``, ``dvsgesture``, ...) or a video folder
(``dataset: video_folder``) is the base; the chain options (task, k, classes, gap range, ...) are
data options, so ``perception train --config nmnist_chain --data.root DIR --data.task interval``
works as for any data module. Splits never share a recording: test chains are made of the dataset's
test split (its official one, or for a video folder the split files or a per-class hold-out), and
validation chains of a per-class hold-out of its train split that training chains never use.

Besides what every ``ClipDataModule`` tells the model (``classes``: the chain labels such as
``"3<then>7"``, ``in_channels``, ``preprocessing``, ``time_scale``), it describes its task for a
comparison: ``tasks()`` (``data.chain.TaskInfo``: needs time, chance, the time-blind ceiling) and
``pair_kinds()`` (every label -> the task's name).
"""
from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from data import (
    EventClipDataset,
    Preprocessing,
    VideoFolderDataset,
    WindowSpec,
    create_representation,
    list_event_datasets,
    s_to_us,
)
from data.chain import ChainConfig, ChainDataset, TaskInfo, chain_classes, label_names, split_by_class, task_info
from data.errors import DataError
from perception.errors import PerceptionError
from perception.training.data import FolderDataModule, InMemory

VIDEO_FOLDER = "video_folder"


class _Dicts(Dataset):
    """The chains' items as the dicts ``InMemory`` keeps (x, t, y)."""

    def __init__(self, chains: ChainDataset) -> None:
        self.chains = chains

    def __len__(self) -> int:
        return len(self.chains)

    def __getitem__(self, index: int) -> dict:
        x, t, y = self.chains[index]
        return {"x": x, "t": t, "y": y}


class ChainDataModule(FolderDataModule):
    """Chains of recordings of a dataset (``data.chain``; module docstring).

    Args:
        dataset: a registered event dataset (``data.list_event_datasets()``) or "video_folder".
        root: the datasets folder (events; default $LP_DATA_DIR) or the video folder.
        task: "order", "count" or "interval".
        k: recordings per chain, 2..4.
        classes: the class names chains are made of (None: all); numbers are read as names (N-MNIST's
            digits: ``[3, 7]``).
        count_class: the class the count task counts (None: the first of ``classes``).
        gap_range: (min, max) seconds of a gap (interval: its lower and upper thirds, log scale).
        gap_steps: (min, max) observations covering a gap.
        window_range: (min, max) seconds of an event chain's windows, drawn per chain.
        item_duration: events: keep at most this many seconds of each recording (None: all).
        representation: ``data.create_representation`` options (default a 5-bin signed voxel grid
            normalised "standard").
        downsample: integer factor dividing the event sensor's sides.
        frames_per_item, stride_range, size, grey: video: frames per item, the per-chain frame step
            range, (width, height), one channel.
        train_split, test_split: video: split files (UCF101 style); without them ``test_fraction``
            of each class's videos is held out for testing.
        train_size, val_size, test_size: chains per split.
        val_fraction: part of each class's training recordings held out for validation chains.
        seed: the chains' and the hold-outs' seed.
        in_memory: keep computed chains in memory (float16) from the first epoch on.
    """

    def __init__(
        self,
        dataset: str = "nmnist",
        root: str | None = None,
        task: str = "order",
        k: int = 2,
        classes: list[str | int] | None = None,
        count_class: str | int | None = None,
        gap_range: tuple[float, float] = (0.1, 1.0),
        gap_steps: tuple[int, int] = (1, 3),
        window_range: tuple[float, float] = (0.03, 0.08),
        item_duration: float | None = None,
        representation: dict[str, Any] | None = None,
        downsample: int = 1,
        frames_per_item: int = 8,
        stride_range: tuple[int, int] = (1, 2),
        size: tuple[int, int] = (64, 64),
        grey: bool = False,
        train_split: str | None = None,
        test_split: str | None = None,
        test_fraction: float = 0.2,
        train_size: int = 2000,
        val_size: int = 400,
        test_size: int = 400,
        val_fraction: float = 0.1,
        seed: int = 0,
        in_memory: bool = False,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        if dataset != VIDEO_FOLDER and dataset not in list_event_datasets():
            raise PerceptionError(f"data.dataset: unknown {dataset!r}; choose one of: "
                                  f"{', '.join([*list_event_datasets(), VIDEO_FOLDER])}")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not (isinstance(value, (int, float)) and 0 < value < 1):
                raise PerceptionError(f"data.{name}: expected a number in (0, 1), got {value!r}")
        for name, value in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PerceptionError(f"data.{name}: expected an integer >= 1, got {value!r}")
        try:
            self.config = ChainConfig(task, k, None if classes is None else tuple(str(c) for c in classes),
                                      None if count_class is None else str(count_class),
                                      tuple(gap_range), tuple(gap_steps), tuple(window_range), tuple(stride_range),
                                      item_duration)
        except (DataError, TypeError) as error:  # TypeError: a range that is not a pair
            raise PerceptionError(f"data.{str(error).removeprefix('chain ')}") from None
        self.video = dataset == VIDEO_FOLDER
        self.representation = create_representation(
            **(representation or {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": "standard"}))
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed

    # -- the base dataset and the pools
    def _base(self, split: str) -> Dataset:
        """The base dataset holding ``split``'s recordings ("train" or "test")."""
        hp = self.hparams
        if self.video:
            split_file = {"train": hp.train_split, "test": hp.test_split}[split]
            files = hp.train_split is not None and hp.test_split is not None
            return VideoFolderDataset(hp.root or "videos", frames_per_clip=hp.frames_per_item, size=tuple(hp.size),
                                      grey=hp.grey, split=split_file if files else None, seed=hp.seed)
        return EventClipDataset(hp.dataset, hp.root, split=split, representation=self.representation,
                                downsample=hp.downsample, seed=hp.seed)

    def _labels(self, base: Dataset) -> list[int]:
        return [label for _, label in base.videos] if self.video else base.targets

    def _pool(self, split: str) -> tuple[Dataset, list[int]]:
        """(base, the base indices ``split``'s chains may use)."""
        hp = self.hparams
        has_test_files = not self.video or (hp.train_split is not None and hp.test_split is not None)
        base = self._base("test" if split == "test" and has_test_files else "train")
        wanted = {base.classes.index(c) for c in chain_classes(self.config, base.classes)}
        labels = self._labels(base)
        indices = [i for i, y in enumerate(labels) if y in wanted]
        if not has_test_files:  # a video folder without split files: hold out test videos per class
            kept, test = split_by_class([labels[i] for i in indices], hp.test_fraction, hp.seed)
            if split == "test":
                return base, [indices[i] for i in test]
            indices = [indices[i] for i in kept]
        if split == "test":
            return base, indices
        train, val = split_by_class([labels[i] for i in indices], hp.val_fraction, hp.seed)
        return base, [indices[i] for i in (val if split == "val" else train)]

    def make_split(self, split: str) -> Dataset:
        base, pool = self._pool(split)
        chains = ChainDataset(base, pool, self.sizes[split], split, self.config, self.seed)
        return InMemory(_Dicts(chains)) if self.hparams.in_memory else chains

    def make_probe(self) -> Dataset:
        return self._base("train")

    def clip_times(self, dataset: Dataset):
        base = dataset.dataset.chains if isinstance(dataset, InMemory) else dataset
        if not isinstance(base, ChainDataset):  # a split put in place by hand
            return super().clip_times(dataset)
        return [base.times(i) for i in range(len(base))]

    # -- what the model and a comparison read
    @property
    def chain_classes(self) -> list[str]:
        """The dataset's class names chains are made of."""
        return chain_classes(self.config, self.probe.classes)

    @property
    def classes(self) -> list[str]:
        return label_names(self.config, self.chain_classes)

    def tasks(self) -> list[TaskInfo]:
        """The task of the labels: its name, whether it needs time, chance, the time-blind ceiling."""
        return [task_info(self.config, self.chain_classes)]

    def pair_kinds(self) -> dict[str, str]:
        """label name -> the kind of task it belongs to (one task per chain data module)."""
        return {name: self.config.task for name in self.classes}

    @property
    def in_channels(self) -> int:
        if self.video:
            return 1 if self.hparams.grey else 3
        return self.representation.channels

    @property
    def preprocessing(self) -> Preprocessing:
        if self.video:
            return Preprocessing.frames(tuple(self.hparams.size), self.in_channels, self.time_scale)
        probe = self.probe
        # A chain's windows end at its own frame clock (data.chain); a stream without one is cut
        # into windows of the nominal period.
        return Preprocessing.events(probe.sensor_size, probe.frame_size, self.representation,
                                    WindowSpec.frames(s_to_us(self.time_scale)), self.time_scale, probe.downsample)
