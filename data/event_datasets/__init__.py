"""Event-camera datasets (tonic's layouts) as clips with real time: ``EventClipDataset``.

Datasets register by name (``@register_event_dataset("dvsgesture")``, ``registry``). An entry
(``entries``) knows tonic's class (used only to download), the sensor size, the class names, how the
splits map, and the layout of the files under ``root/<tonic class name>/``, which is where tonic
itself puts them, so a dataset tonic downloaded works as is. We read the files ourselves
(``data.io`` readers, or numpy for tonic's column arrays: ``columns``) and never go through tonic's
loaders. Registered names: ``list_event_datasets()``.

The other modules: ``discovery`` (the root, finding and labelling the files, the hold-out split of
datasets without an official one), ``dataset`` (``EventClipDataset``, what an item is) and
``cache`` (computed clips stored on disk, keyed by everything they depend on).
"""
from data.event_datasets.registry import (
    EventDatasetSource,
    get_event_dataset,
    list_event_datasets,
    register_event_dataset,
)
from data.event_datasets.columns import read_columns
from data.event_datasets.entries import (  # importing the entries registers them
    CIFAR10DVSSource,
    DVSGestureSource,
    NCaltech101Source,
    NCarsSource,
    NMNISTSource,
    PokerDVSSource,
)
from data.event_datasets.discovery import DATA_DIR_ENV, Sample, dataset_root, stratified_split
from data.event_datasets.cache import CACHE_VERSION
from data.event_datasets.dataset import DEFAULT_WINDOW, SPLITS, EventClipDataset, EventTransform

__all__ = [
    "CACHE_VERSION",
    "CIFAR10DVSSource",
    "DATA_DIR_ENV",
    "DEFAULT_WINDOW",
    "DVSGestureSource",
    "EventClipDataset",
    "EventDatasetSource",
    "EventTransform",
    "NCaltech101Source",
    "NCarsSource",
    "NMNISTSource",
    "PokerDVSSource",
    "SPLITS",
    "Sample",
    "dataset_root",
    "get_event_dataset",
    "list_event_datasets",
    "read_columns",
    "register_event_dataset",
    "stratified_split",
]
