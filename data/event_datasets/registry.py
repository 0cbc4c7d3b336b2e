"""The registry of event datasets: what we know about each one (``EventDatasetSource``), by name."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import ClassVar

from data.errors import DataError
from data.events import Events, SensorSize
from data.io import read_events


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
