"""The registered event datasets: where tonic puts each one, its sensor, classes, splits and files."""
from __future__ import annotations

from pathlib import Path

from data.event_datasets.columns import read_columns
from data.event_datasets.registry import EventDatasetSource, register_event_dataset
from data.events import Events


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
