"""The clip cache: one .npz per item, holding x, t and the full key they were computed under.

The first access of an item computes x and stores it, with t, in
``cache_dir/<dataset>/<split>/<index>-<key>.npz``, written atomically (``data.files``). The key
hashes a version number, the dataset, split and split rule, the index, the file's path, size and
modification time, the window spec, the representation's config, the sizes and ``max_steps``, so a
changed option never returns a stale clip. An unreadable cache file is recomputed and overwritten.
Items drawn with a ``transform`` (augmentation) are random, so they are never cached.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from data.files import AtomicFile

CACHE_VERSION = 2  # 2: a long silence is one window (data.windows.LONG_GAP_WINDOWS), not many empty ones
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)


def clip_entry(cache_dir: Path, dataset: str, split: str, index: int, options: Mapping) -> tuple[Path, str]:
    """(cache file, its full key) of item ``index``; ``options``: the rest the clip depends on."""
    key = json.dumps(
        {"version": CACHE_VERSION, "dataset": dataset, "split": split, "index": index, **options}, sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir / dataset / split / f"{index:06d}-{digest}.npz", key


def load_clip(file: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
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


def store_clip(file: Path, key: str, x: np.ndarray, t: np.ndarray) -> None:
    """Write (x, t) with its key, atomically (``data.files.AtomicFile``)."""
    # a file object: np.savez_compressed would append '.npz' to the temporary file's name
    with AtomicFile(file, parents=True) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, key=np.array(key), x=x, t=t)
