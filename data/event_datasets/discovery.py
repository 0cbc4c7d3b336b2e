"""Finding a dataset's recordings on disk, labelling them, and the hold-out split of datasets without one.

The root is the folder holding ``<tonic class name>/`` (or that folder itself), from ``root=`` or
$LP_DATA_DIR. When no recordings are found, tonic may download them (``download=True``); tonic's
links are often dead, so a failed download is a DataError saying where to put the files by hand.

Splits: DVSGesture, NMNIST, POKERDVS and NCARS have official train/test folders. NCALTECH101 and
CIFAR10DVS have none, so we make a deterministic stratified one: within each class, files are ranked
by the SHA-256 of ``"<split_seed>:<path relative to the dataset folder>"`` and the first
``round(n * test_fraction)`` of them (at least 1, at most n - 1, when the class has 2 or more) are the
test split. It depends on neither the file system's order nor numpy's generators, and adding files
to a class moves no other file of it except across that class's cut. ``split="all"`` takes everything.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from data.errors import DataError
from data.event_datasets.registry import EventDatasetSource

DATA_DIR_ENV = "LP_DATA_DIR"
Sample = tuple[Path, int]  # (recording file, label)


def dataset_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the datasets: ``root``, else $LP_DATA_DIR."""
    if root is None:
        root = os.environ.get(DATA_DIR_ENV) or None
        if root is None:
            raise DataError(f"dataset root: pass root=... or set {DATA_DIR_ENV} to the folder that holds the datasets")
    return Path(os.fspath(root)).expanduser()


def find_samples(
    source: EventDatasetSource, root: Path, split: str, *, download: bool, test_fraction: float, split_seed: int
) -> tuple[Path, tuple[str, ...], list[Sample]]:
    """The dataset folder, the class names and the (file, label) samples of ``split``, sorted by path.

    Raises:
        DataError: no recordings (after a download when ``download``), a file whose class cannot
            be told, or an empty stratified split.
    """
    folder = _data_folder(source, root)
    dirs = _split_dirs(source, folder, split)
    paths = _recordings(source, dirs)
    if not paths:
        if not download:
            raise DataError(_missing_message(source, root, split, dirs))
        source.download(root, split)
        folder = _data_folder(source, root)
        dirs = _split_dirs(source, folder, split)
        paths = _recordings(source, dirs)
        if not paths:
            raise DataError(_missing_message(source, root, split, dirs) + " (still missing after the download)")
    classes = _class_names(source, paths)
    samples = []
    for path in paths:
        label = source.label(path, classes)
        if label is None:
            raise DataError(f"{path}: cannot tell its class (expected {folder}/{source.layout})")
        samples.append((path, label))
    if source.split_folders is None and split != "all":
        samples = stratified_split(samples, folder, test_fraction, split_seed)[split]
        if not samples:
            raise DataError(f"{source.name}: the {split} split is empty (too few recordings per class)")
    return folder, classes, samples


def _missing_message(source: EventDatasetSource, root: Path, split: str, dirs: list[Path]) -> str:
    where = ", ".join(str(d) for d in dirs)
    how = (
        f"pass download=True to download it with tonic into {root}"
        if source.tonic_class is not None else "download it from its authors' site"
    )
    return (
        f"{source.name} ({split}): no {'/'.join(source.suffixes)} recordings in {where} (expected "
        f"{root / source.folder}/{source.layout}); {how}, or point root= or "
        f"{DATA_DIR_ENV} at the folder that holds {source.folder}/"
    )


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
