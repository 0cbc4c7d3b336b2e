"""A dataset of video clips laid out as ``root/<class name>/<video files>`` (UCF101, HMDB51).

Each item is a clip ``(x, t, label)``: x (T, C, H, W) float32 in [0, 1], t (T,) float64 seconds from
the clip's start (taken from the container's frame timestamps), label int. Clips shorter than
``frames_per_clip`` (short videos, dropped frames) are returned short; ``collate_clips`` pads them.

``TimingAugment`` makes training see irregular timing on purpose: frames dropped at random, jittered
timestamps, and a randomly lowered frame rate. Its randomness comes from a generator seeded with
``(seed, epoch, index)``, so an item is reproducible, differs between epochs (``set_epoch``), and does
not depend on which DataLoader worker loads it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from data.errors import DataError
from data.files import AtomicFile
from data.video import Size, check_size, iter_video, video_times

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv")
_MATCH_TOL = 1e-6  # seconds; indexed and decoded times come from the same pts arithmetic
_CACHE_VERSION = 1


@dataclass(frozen=True)
class TimingAugment:
    """Random changes to a clip's timing, for training.

    Attributes:
        drop_prob: each frame is dropped independently with this probability (at least one is kept).
        jitter_std: standard deviation, in seconds, of Gaussian noise added to each timestamp. Times
            are then clamped to stay >= 0 and non-decreasing; the clip's first frame stays at 0.
        rate_factors: the clip's frame stride is multiplied by one of these, chosen uniformly per
            item, so the clip spans more time at a lower frame rate. (1,) disables it.
    """

    drop_prob: float = 0.0
    jitter_std: float = 0.0
    rate_factors: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_prob < 1.0:
            raise DataError(f"TimingAugment.drop_prob: expected a probability in [0, 1), got {self.drop_prob!r}")
        if not (np.isfinite(self.jitter_std) and self.jitter_std >= 0):
            raise DataError(f"TimingAugment.jitter_std: expected seconds >= 0, got {self.jitter_std!r}")
        factors = tuple(self.rate_factors)
        if not factors or any(int(f) != f or f < 1 for f in factors):
            raise DataError(f"TimingAugment.rate_factors: expected integers >= 1, got {self.rate_factors!r}")
        object.__setattr__(self, "rate_factors", tuple(int(f) for f in factors))

    def rate_factor(self, rng: np.random.Generator) -> int:
        """Draw the stride multiplier for one clip."""
        if len(self.rate_factors) == 1:
            return self.rate_factors[0]
        return int(self.rate_factors[rng.integers(len(self.rate_factors))])

    def __call__(self, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Drop and jitter a clip's times.

        Args:
            t: (T,) seconds from the clip's start, non-decreasing, t[0] = 0.
            rng: the item's generator.

        Returns:
            keep (T',) indices into t of the frames kept, and their new times (T',).
        """
        keep = np.arange(len(t))
        if self.drop_prob > 0 and len(t) > 1:
            kept = rng.random(len(t)) >= self.drop_prob
            if not kept.any():
                kept[rng.integers(len(t))] = True
            keep = keep[kept]
        times = t[keep].astype(np.float64, copy=True)
        if self.jitter_std > 0:
            times += rng.normal(0.0, self.jitter_std, len(times))
            if keep[0] == 0:
                times[0] = 0.0  # the clip's start stays its time origin
            times = np.maximum.accumulate(np.maximum(times, 0.0))
        return keep, times


def find_videos(
    root: Path, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> tuple[list[str], list[tuple[Path, int]]]:
    """List ``root/<class>/<video>``: sorted class names and (path, label) pairs sorted by path.

    Hidden entries (a leading dot) are ignored; so are files directly under ``root``. A class folder
    without videos keeps its label, so labels agree between splits.
    """
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected root/<class name>/<video files>)")
    suffixes = {e.lower() for e in extensions}
    samples = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith("."):
                samples.append((path, label))
    if not samples:
        raise DataError(f"{root}: no videos with extensions {sorted(suffixes)} in its class folders")
    return classes, samples


def read_split(split: Path, root: Path, samples: list[tuple[Path, int]]) -> list[tuple[Path, int]]:
    """Keep the samples a split file lists.

    Each non-empty line starts with a video's path relative to ``root`` (UCF101's trainlist/testlist
    format; anything after the path is ignored, labels come from the folders). Lines starting with
    ``#`` are comments. Matching falls back to ignoring case (UCF101's lists and folders disagree on
    the case of one class).
    """
    if not split.is_file():
        raise DataError(f"{split}: no such split file")
    by_rel = {p.relative_to(root).as_posix(): (p, y) for p, y in samples}
    by_lower = {rel.lower(): item for rel, item in by_rel.items()}
    chosen: dict[Path, int] = {}
    for lineno, line in enumerate(split.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rel = line.split()[0].replace("\\", "/")
        item = by_rel.get(rel) or by_lower.get(rel.lower())
        if item is None:
            raise DataError(f"{split}:{lineno}: {rel} is not a video under {root}")
        chosen[item[0]] = item[1]
    if not chosen:
        raise DataError(f"{split}: lists no videos")
    return sorted(chosen.items())


def index_videos(paths: Sequence[Path], cache: Path | None = None) -> list[np.ndarray]:
    """Frame times (T,) float64 of each video, reusing and updating an index cache file if given.

    The cache (.npz, no pickle) is keyed by absolute path, size and modification time, so an edited
    video is indexed again; it is rewritten atomically (``data.files.AtomicFile``).
    """
    cached: dict[str, tuple[int, int, np.ndarray]] = {}
    if cache is not None and cache.is_file():
        cached = _load_cache(cache)
    times, changed = [], False
    for path in paths:
        stat = path.stat()
        key = str(path.resolve())
        hit = cached.get(key)
        if hit is not None and hit[0] == stat.st_size and hit[1] == stat.st_mtime_ns:
            t = hit[2]
        else:
            t, changed = video_times(path), True
            cached[key] = (stat.st_size, stat.st_mtime_ns, t)  # other entries stay: splits share a cache
        times.append(t)
    if cache is not None and changed:
        _save_cache(cache, cached)
    return times


def _load_cache(cache: Path) -> dict[str, tuple[int, int, np.ndarray]]:
    try:
        with np.load(cache, allow_pickle=False) as z:
            if int(z["version"]) != _CACHE_VERSION:
                return {}
            offsets, flat = z["offsets"], z["times"]
            return {
                str(p): (int(s), int(m), flat[offsets[i] : offsets[i + 1]].copy())
                for i, (p, s, m) in enumerate(zip(z["paths"], z["sizes"], z["mtimes"]))
            }
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{cache}: unreadable video index cache ({error}); delete it to rebuild") from None


def _save_cache(cache: Path, entries: dict[str, tuple[int, int, np.ndarray]]) -> None:
    keys = list(entries)
    times = [entries[k][2] for k in keys]
    offsets = np.cumsum([0] + [len(t) for t in times])
    # a file object: np.savez would append '.npz' to the temporary file's name
    with AtomicFile(cache, parents=True) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            version=np.array(_CACHE_VERSION),
            paths=np.array(keys, dtype=str),
            sizes=np.array([entries[k][0] for k in keys], np.int64),
            mtimes=np.array([entries[k][1] for k in keys], np.int64),
            offsets=offsets.astype(np.int64),
            times=np.concatenate(times) if times else np.zeros(0),
        )


class VideoFolderDataset(Dataset):
    """Clips from ``root/<class name>/<video files>``.

    Args:
        root: the dataset folder; class names are its sub-folders, sorted.
        frames_per_clip: T, frames per clip (fewer when the video is shorter).
        stride: take every k-th frame.
        clips_per_video: n clips per video, evenly spaced (n = 1: the centre clip), or "all": every
            window, sliding by ``step`` frames.
        step: for "all", frames between window starts; default one window span (no overlap).
        random_clip: place each clip at a random start instead (training).
        size: (width, height) of the frames, or None to keep each video's size.
        grey: one channel (luminance) instead of RGB.
        timing: irregular-timing augmentation, or None.
        split: a split file listing the videos to use (``read_split``), or None for all.
        extensions: file name endings counted as videos.
        index_cache: an .npz file caching the frame-time index between runs, or None.
        seed: base seed of each item's generator.

    Attributes:
        classes: class names; ``label`` indexes this list.
        videos: (path, label) of each video used.
        times: frame times (T,) float64 of each video, from the index.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        frames_per_clip: int = 16,
        stride: int = 1,
        clips_per_video: int | Literal["all"] = 1,
        step: int | None = None,
        random_clip: bool = False,
        size: Size | None = (112, 112),
        grey: bool = False,
        timing: TimingAugment | None = None,
        split: str | Path | None = None,
        extensions: Sequence[str] = VIDEO_EXTENSIONS,
        index_cache: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        for name, value in (("frames_per_clip", frames_per_clip), ("stride", stride)):
            if not (isinstance(value, int) and value >= 1):
                raise DataError(f"{name}: expected an integer >= 1, got {value!r}")
        if clips_per_video != "all" and not (isinstance(clips_per_video, int) and clips_per_video >= 1):
            raise DataError(f"clips_per_video: expected an integer >= 1 or 'all', got {clips_per_video!r}")
        if step is not None and not (isinstance(step, int) and step >= 1):
            raise DataError(f"step: expected an integer >= 1 or None, got {step!r}")
        if not (isinstance(seed, int) and seed >= 0):
            raise DataError(f"seed: expected an integer >= 0, got {seed!r}")
        if timing is not None and not isinstance(timing, TimingAugment):
            raise DataError(f"timing: expected a TimingAugment or None, got {type(timing).__name__}")
        self.root = Path(root)
        self.frames_per_clip, self.stride = frames_per_clip, stride
        self.clips_per_video, self.random_clip = clips_per_video, random_clip
        self.span = (frames_per_clip - 1) * stride + 1
        self.step = step or self.span
        self.size, self.grey, self.timing = check_size(size), grey, timing
        self.seed, self.epoch = int(seed), 0

        self.classes, self.videos = find_videos(self.root, extensions)
        if split is not None:
            self.videos = read_split(Path(split), self.root, self.videos)
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.times = index_videos([p for p, _ in self.videos], None if index_cache is None else Path(index_cache))
        self._items = np.array(
            [(v, j) for v, t in enumerate(self.times) for j in range(self._clip_count(len(t)))], np.int64
        ).reshape(-1, 2)

    def _clip_count(self, n: int) -> int:
        if self.clips_per_video == "all":
            return (n - self.span) // self.step + 1 if n >= self.span else 1
        return self.clips_per_video

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws (call before each epoch; workers copy the dataset then)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._items)

    def clip_frames(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Frame indices (into ``times[video]``) of item ``index`` before dropping frames."""
        video, j = (int(v) for v in self._items[index])
        n = len(self.times[video])
        rng = rng if rng is not None else self._rng(index)
        factor = self.timing.rate_factor(rng) if self.timing is not None else 1
        stride = self.stride * factor
        max_start = max(n - ((self.frames_per_clip - 1) * stride + 1), 0)
        if self.random_clip:
            start = int(rng.integers(max_start + 1))
        elif self.clips_per_video == "all":
            start = min(j * self.step, max_start)
        elif self.clips_per_video == 1:
            start = max_start // 2
        else:
            start = round(j * max_start / (self.clips_per_video - 1))
        return np.arange(start, n, stride)[: self.frames_per_clip]

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Item ``index``: x (T, C, H, W) float32 in [0, 1], t (T,) float64 seconds, label."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        rng = self._rng(index)
        frames = self.clip_frames(index, rng)
        video = int(self._items[index, 0])
        times = self.times[video]
        t = times[frames] - times[frames[0]]
        if self.timing is not None:
            keep, t = self.timing(t, rng)
            frames = frames[keep]
        path, label = self.videos[video]
        pixels = self._decode(path, times[frames])  # (T, H, W[, 3]) uint8
        x = torch.from_numpy(pixels).to(torch.float32).div_(255.0)
        x = x.unsqueeze(1) if self.grey else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.from_numpy(np.ascontiguousarray(t, np.float64)), label

    def _decode(self, path: Path, wanted: np.ndarray) -> np.ndarray:
        """Decode the frames at the indexed times ``wanted`` (sorted), one pass over their window."""
        out: list[np.ndarray] = []
        start, end = max(wanted[0] - _MATCH_TOL, 0.0), wanted[-1] + _MATCH_TOL
        # One decoder thread: DataLoader workers are the parallelism, and frame threads would delay
        # the first frame of a short clip by one frame per thread.
        frames = iter_video(path, size=self.size, grey=self.grey, start=start, end=end, threads=1)
        try:
            for t, frame in frames:
                if len(out) == len(wanted):
                    break
                if t < wanted[len(out)] - _MATCH_TOL:  # a frame between the chosen ones
                    continue
                if t > wanted[len(out)] + _MATCH_TOL:
                    break
                out.append(frame)
        finally:
            frames.close()
        if len(out) != len(wanted):
            missing = wanted[len(out)]
            raise DataError(f"{path}: no frame at t = {missing:.6f} s as indexed (did the file change?)")
        return np.stack(out)
