"""Chains: clips of k real recordings in sequence, whose label needs time (``ChainDataset``).

A chain is k recordings (2 by default, at most ``MAX_K``) of a chosen subset of classes, placed one
after another on one clock with a silent gap between consecutive ones, as in DVS-Gesture-Chain
(Vicente-Sola et al., arXiv 2209.14915). The base is any dataset the project reads: a registered
event dataset (``EventClipDataset``) or a video folder (``VideoFolderDataset``). Each chain has one
task, which names its labels:

- ``order``: the classes of the k items, in order; k distinct classes, every ordering its own label
  (``"3<then>7"`` and ``"7<then>3"``). Label i of a split cycles through the k-permutations of the
  classes, so a split is balanced.
- ``count``: how many of the k items are of ``count_class`` (``"3<count>2"``), 0..k; the others are
  drawn from the remaining classes. Every item is seen, so an average over steps keeps the
  proportion of the count class: this task does not need order, only integration.
- ``interval``: whether the gap between the first two items is short or long (``"short gap"``,
  ``"long gap"``); the items' classes are drawn freely. Short gaps come from the lower third of
  ``gap_range`` in log scale, long ones from the upper third; with k > 2 the other gaps are short or
  long at random and say nothing.

Timeline (``ChainPlan``; one clock, microseconds for events, seconds for frames). Item j is
followed by gap j of length G_j (log-uniform over ``gap_range`` for ``order`` and ``count``),
covered by m_j observations, m_j uniform over ``gap_steps`` and drawn the same way whatever the
label: short and long gaps differ only in real time, so only the dt of the gap's steps tells them
apart (a head that ignores dt cannot). No observation shows both the end of one item and the start
of the next, and the gap adds nothing that depends on its length:

- events: each item is cut into windows of W microseconds from its start (W log-uniform over
  ``window_range``, drawn per chain: the chain's sampling rate), up to the first window end after
  its last event; the gap is m_j empty windows of G_j / m_j each (no events and no noise are added:
  the sensor saw nothing move), and the next item's first window starts where the gap ends. The
  whole chain is one event array on one clock, cut by ``data.windows.WindowCutter`` at these
  window ends (the frames mode: the ends are the chain's frame clock) and turned into the base
  dataset's representation at its frame size, as ``EventClipDataset`` does for one recording.
  ``item_duration`` (seconds) keeps a random span of that length of longer recordings.
  t is each window's end from the chain's start, so dt[0] = W.
- frames: each item is ``frames_per_clip`` frames of its video taken every s frames (s uniform
  over ``stride_range``, per chain) from a random start, with the container's times; the gap is
  m_j blank (all-zero) frames evenly spaced inside G_j, the time from the item's last frame to the
  next item's first. Blank, not held: repeating an item's last frame would give the earlier items
  more weight in an average over steps, which tells the order without time.

Determinism and splits: chain i of a split depends only on (seed, split, i, the options, the pool)
through its own generator ``numpy.random.default_rng([seed, split code, i])``. A chain draws its
recordings from its pool (the base indices it may use), and the data module gives each split a
pool of its own: test chains come from the dataset's test split, train and validation chains from
disjoint parts of its train split (``split_by_class``), so no two splits share a recording; inside
a chain the recordings differ while its pool allows.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import permutations

import numpy as np
import torch
from torch.utils.data import Dataset

from data.errors import DataError
from data.event_datasets import EventClipDataset
from data.events import concat_events
from data.geometry import rescale_events
from data.timing import s_to_us, us_to_s
from data.video_folder import VideoFolderDataset
from data.windows import WindowCutter, WindowSpec

TASKS = ("order", "count", "interval")
MAX_K = 4
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
MIN_GAP = 0.001  # seconds: a gap step is never shorter than a microsecond
THEN, COUNT, GAPS = "<then>", "<count>", ("short gap", "long gap")


@dataclass(frozen=True)
class ChainConfig:
    """The options of a chain (module docstring); times in seconds.

    Attributes:
        task: "order", "count" or "interval".
        k: items per chain, 2..MAX_K.
        classes: names of the base classes chains are made of (None: all of them).
        count_class: the class ``count`` counts (None: the first of ``classes``).
        gap_range: (min, max) of a gap, seconds.
        gap_steps: (min, max) observations covering a gap.
        window_range: (min, max) of an event chain's window duration, seconds.
        stride_range: (min, max) frame step of a video chain.
        item_duration: events: keep at most this many seconds of each recording (None: all).
    """

    task: str = "order"
    k: int = 2
    classes: tuple[str, ...] | None = None
    count_class: str | None = None
    gap_range: tuple[float, float] = (0.1, 1.0)
    gap_steps: tuple[int, int] = (1, 3)
    window_range: tuple[float, float] = (0.03, 0.08)
    stride_range: tuple[int, int] = (1, 2)
    item_duration: float | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"chain task: must be one of {', '.join(map(repr, TASKS))}; got {self.task!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 2 <= self.k <= MAX_K:
            raise DataError(f"chain k: expected an integer in 2..{MAX_K}; got {self.k!r}")
        if self.classes is not None:
            classes = tuple(str(c) for c in self.classes)
            if len(set(classes)) != len(classes):
                raise DataError(f"chain classes: names repeat in {list(classes)}")
            object.__setattr__(self, "classes", classes)
        _check_range("gap_range", self.gap_range, float, MIN_GAP)
        _check_range("gap_steps", self.gap_steps, int, 1)
        _check_range("window_range", self.window_range, float, 1e-6)
        _check_range("stride_range", self.stride_range, int, 1)
        for name in ("gap_range", "gap_steps", "window_range", "stride_range"):
            kind = int if name in ("gap_steps", "stride_range") else float
            object.__setattr__(self, name, tuple(kind(v) for v in getattr(self, name)))
        if self.item_duration is not None and not (_is_number(self.item_duration) and self.item_duration > 0):
            raise DataError(f"chain item_duration: expected seconds > 0 or None; got {self.item_duration!r}")

    def to_dict(self) -> dict:
        """Plain values (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_range(name: str, value, kind: type, low: float) -> None:
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)
    if ok and kind is int:
        ok = all(float(v) == int(v) for v in value)
    if not ok or not low <= value[0] <= value[1] or not math.isfinite(value[1]):
        unit = "integers" if kind is int else "seconds"
        raise DataError(f"chain {name}: expected (min, max) {unit} with {low:g} <= min <= max; got {value!r}")


@dataclass(frozen=True)
class TaskInfo:
    """What a comparison needs to know about a chain task.

    Attributes:
        name: the task ("order", "count", "interval").
        needs_time: a model that sees every item but not their order or the time between them
            cannot solve it (``blind_ceiling`` < 1).
        chance: 1 / the number of labels (labels are balanced).
        blind_ceiling: the best accuracy of such a time-blind model that recognises every item
            perfectly: the control a CNN with an average over steps should stay under.
    """

    name: str
    needs_time: bool
    chance: float
    blind_ceiling: float

    def to_dict(self) -> dict:
        return asdict(self)


def label_names(config: ChainConfig, classes: Sequence[str]) -> list[str]:
    """The chain labels (label = index) for the chain classes ``classes``, in order."""
    if config.task == "order":
        return [THEN.join(p) for p in permutations(classes, config.k)]
    if config.task == "count":
        return [f"{count_class(config, classes)}{COUNT}{n}" for n in range(config.k + 1)]
    return list(GAPS)


def count_class(config: ChainConfig, classes: Sequence[str]) -> str:
    return config.count_class if config.count_class is not None else classes[0]


def task_info(config: ChainConfig, classes: Sequence[str]) -> TaskInfo:
    """The ``TaskInfo`` of chains of ``classes``."""
    n = len(label_names(config, classes))
    blind = {"order": 1 / math.factorial(config.k), "count": 1.0, "interval": 0.5}[config.task]
    return TaskInfo(config.task, blind < 1.0, 1.0 / n, blind)


def split_by_class(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of ``labels`` split into (kept, held out), per class: ``round(n * fraction)`` of each
    class's n indices (at least 1, at most n - 1) are held out, chosen by ``default_rng(seed)``.

    Raises:
        DataError: a class with fewer than 2 indices (it cannot be on both sides).
    """
    labels = np.asarray(labels)
    kept, held = [], []
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < 2:
            raise DataError(f"class {int(label)}: {len(members)} recording(s), need 2 to hold one out")
        n = min(len(members) - 1, max(1, round(len(members) * fraction)))
        held += members[:n].tolist()
        kept += members[n:].tolist()
    return sorted(kept), sorted(held)


@dataclass(frozen=True)
class ChainPlan:
    """Everything chain i is made of, drawn from its generator.

    Attributes:
        label: the chain's label.
        items: base indices of the k recordings, in order. classes: their chain-class indices.
        gaps: the k - 1 gaps, seconds. gap_steps: observations covering each gap.
        period: events: the window duration W, seconds (video: 0).
        stride: video: the frame step (events: 1).
        starts: k numbers in [0, 1): where each item's span starts in its recording.
    """

    label: int
    items: tuple[int, ...]
    classes: tuple[int, ...]
    gaps: tuple[float, ...]
    gap_steps: tuple[int, ...]
    period: float
    stride: int
    starts: tuple[float, ...]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


class ChainDataset(Dataset):
    """Chains of recordings of ``base`` (module docstring). Items are ``(x, t, label)`` like the
    base's: x (T, C, H, W) float32, t (T,) float64 seconds from the chain's start, label int.

    Args:
        base: an ``EventClipDataset`` or a ``VideoFolderDataset`` (with a fixed frame ``size``).
        pool: the base indices this split may use.
        size: chains in the split.
        split: "train", "val" or "test" (its code seeds the chains).
        config: the chain options.
        seed: the chains' seed.

    Attributes:
        classes: the chain labels' names. chain_classes: the base class names chains use.
    """

    def __init__(self, base: Dataset, pool: Sequence[int], size: int, split: str, config: ChainConfig,
                 seed: int = 0) -> None:
        if isinstance(base, EventClipDataset):
            self.kind, labels = "events", base.targets
        elif isinstance(base, VideoFolderDataset):
            if base.size is None:
                raise DataError("chain: a video folder needs a fixed frame size (size=(W, H)) to chain its videos")
            self.kind, labels = "frames", [label for _, label in base.videos]
        else:
            raise DataError(f"chain base: expected an EventClipDataset or a VideoFolderDataset; got {type(base).__name__}")
        if split not in SPLIT_CODES:
            raise DataError(f"chain split: must be one of {', '.join(map(repr, SPLIT_CODES))}; got {split!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DataError(f"chain size: expected an integer >= 1; got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise DataError(f"chain seed: expected an integer >= 0; got {seed!r}")
        self.base, self.size, self.split, self.config, self.seed = base, size, split, config, seed
        self.chain_classes = chain_classes(config, base.classes)
        self.classes = label_names(config, self.chain_classes)
        base_label = {name: i for i, name in enumerate(base.classes)}
        self.pools = [np.array(sorted(int(i) for i in pool if labels[i] == base_label[c]), np.int64)
                      for c in self.chain_classes]
        empty = [c for c, p in zip(self.chain_classes, self.pools) if p.size == 0]
        if empty:
            raise DataError(f"chain {split} split: no recordings of class {empty[0]!r} to chain")
        self._spans: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ChainDataset({self.config.task!r}, k={self.config.k}, split={self.split!r}, {self.size} chains of {self.base!r})"

    def task(self) -> TaskInfo:
        return task_info(self.config, self.chain_classes)

    # -- the plan
    def plan(self, index: int) -> ChainPlan:
        """The draws of chain ``index`` (module docstring), in a fixed order."""
        cfg, n_classes = self.config, len(self.chain_classes)
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        label = index % len(self.classes)
        if cfg.task == "order":
            sequence = list(permutations(range(n_classes), cfg.k))[label]
        elif cfg.task == "count":
            target = self.chain_classes.index(count_class(cfg, self.chain_classes))
            others = [c for c in range(n_classes) if c != target]
            sequence = [others[i] for i in rng.integers(len(others), size=cfg.k)]
            for position in rng.choice(cfg.k, size=label, replace=False):
                sequence[position] = target
        else:
            sequence = rng.integers(n_classes, size=cfg.k).tolist()
        items = [0] * cfg.k
        for c in set(sequence):
            where = [j for j, s in enumerate(sequence) if s == c]
            pool = self.pools[c]
            for j, item in zip(where, rng.choice(pool, size=len(where), replace=len(pool) < len(where))):
                items[j] = int(item)
        low, high = cfg.gap_range
        if cfg.task == "interval":
            third = (high / low) ** (1 / 3)
            bands = ((low, low * third), (high / third, high))
            kinds = [label, *rng.integers(2, size=cfg.k - 2).tolist()]
            gaps = [_log_uniform(rng, *bands[kind]) for kind in kinds]
        else:
            gaps = [_log_uniform(rng, low, high) for _ in range(cfg.k - 1)]
        steps = rng.integers(cfg.gap_steps[0], cfg.gap_steps[1] + 1, size=cfg.k - 1)
        period = _log_uniform(rng, *cfg.window_range) if self.kind == "events" else 0.0
        stride = int(rng.integers(cfg.stride_range[0], cfg.stride_range[1] + 1)) if self.kind == "frames" else 1
        starts = rng.random(cfg.k)
        return ChainPlan(label, tuple(items), tuple(int(s) for s in sequence), tuple(gaps),
                         tuple(int(m) for m in steps), period, stride, tuple(float(s) for s in starts))

    # -- items
    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Chain ``index``: x (T, C, H, W) float32, t (T,) float64 seconds, label."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} chains")
        index %= len(self)
        plan = self.plan(index)
        x, t = self._events(plan) if self.kind == "events" else self._frames(plan)
        return torch.from_numpy(x), torch.from_numpy(t), plan.label

    def times(self, index: int) -> np.ndarray:
        """t (T,) float64 seconds of chain ``index`` without computing x (only the items' spans)."""
        plan = self.plan(index % len(self))
        if self.kind == "events":
            return us_to_s(self._event_schedule(plan)[1][1:])
        return self._frame_schedule(plan)[1]

    def _span(self, index: int) -> tuple[int, int]:
        """(first, last) event time, microseconds, of base recording ``index``; read once."""
        if index not in self._spans:
            t = self.base.events(index)["t"]
            self._spans[index] = (int(t[0]), int(t[-1]))
        return self._spans[index]

    def _event_schedule(self, plan: ChainPlan) -> tuple[list[tuple[int, int, int]], np.ndarray]:
        """Per item (span start, span end, its start on the chain clock), microseconds, and the
        window ends (the chain's frame clock) preceded by its start 0."""
        window = max(1, s_to_us(plan.period))
        keep = None if self.config.item_duration is None else max(1, s_to_us(self.config.item_duration))
        spans, ticks, clock = [], [np.zeros(1, np.int64)], 0
        for j, item in enumerate(plan.items):
            first, last = self._span(item)
            length = last + 1 - first
            if keep is not None and length > keep:
                first, length = first + int(plan.starts[j] * (length - keep)), keep
            spans.append((first, first + length, clock))
            n = -(-length // window)
            ticks.append(clock + window * np.arange(1, n + 1, dtype=np.int64))
            clock += n * window
            if j < len(plan.gaps):
                gap, m = s_to_us(plan.gaps[j]), plan.gap_steps[j]
                ticks.append(clock + gap * np.arange(1, m + 1, dtype=np.int64) // m)
                clock += gap
        return spans, np.concatenate(ticks)

    def _events(self, plan: ChainPlan) -> tuple[np.ndarray, np.ndarray]:
        base = self.base
        spans, ticks = self._event_schedule(plan)
        pieces, shifts = [], []
        for item, (start, end, at) in zip(plan.items, spans):
            events = base.events(item)
            lo, hi = np.searchsorted(events["t"], [start, end])
            pieces.append(events[lo:hi])
            shifts.append(np.full(hi - lo, at - start, np.int64))
        events = concat_events(pieces)  # a copy (k >= 2): its times can be moved in place
        events["t"] += np.concatenate(shifts)
        events = rescale_events(events, base.sensor_size, base.frame_size, base.downsample)
        cutter = WindowCutter(WindowSpec.frames(max(1, s_to_us(plan.period))), copy=False, frame_clock=True)
        cutter.push(events)
        windows = [w for tick in ticks for w in cutter.tick(int(tick))]
        assert not cutter.finish() and len(windows) == len(ticks) - 1, "a chain event after its last window"
        x = np.stack([base.representation(w.events, base.frame_size, t_start=w.t_start_us, t_end=w.t_end_us)
                      for w in windows]).astype(np.float32, copy=False)
        return x, us_to_s(ticks[1:])

    def _frame_schedule(self, plan: ChainPlan) -> tuple[list[tuple[int, np.ndarray] | int], np.ndarray]:
        """Per observation group, (video, frame indices) of an item or the number of blank frames of
        a gap, and the times (T,) seconds of every observation on the chain clock."""
        base, count = self.base, self.base.frames_per_clip
        parts, times, clock = [], [], 0.0
        for j, video in enumerate(plan.items):
            video_times = base.times[video]
            span = (count - 1) * plan.stride + 1
            start = int(plan.starts[j] * (max(len(video_times) - span, 0) + 1))
            frames = np.arange(start, len(video_times), plan.stride)[:count]
            parts.append((video, frames))
            times.append(video_times[frames] - video_times[frames[0]] + clock)
            clock = float(times[-1][-1])
            if j < len(plan.gaps):
                gap, m = plan.gaps[j], plan.gap_steps[j]
                parts.append(m)
                times.append(clock + gap * np.arange(1, m + 1) / (m + 1))
                clock += gap
        return parts, np.concatenate(times).astype(np.float64)

    def _frames(self, plan: ChainPlan) -> tuple[np.ndarray, np.ndarray]:
        base = self.base
        parts, t = self._frame_schedule(plan)
        width, height = base.size
        blank = np.zeros((1 if base.grey else 3, height, width), np.float32)
        frames = []
        for part in parts:
            if isinstance(part, int):
                frames += [blank] * part
                continue
            video, indices = part
            path, _ = base.videos[video]
            pixels = base._decode(path, base.times[video][indices]).astype(np.float32) / 255.0  # (T, H, W[, 3])
            frames += list(pixels[:, None] if base.grey else pixels.transpose(0, 3, 1, 2))
        return np.ascontiguousarray(np.stack(frames), np.float32), t


def chain_classes(config: ChainConfig, names: Sequence[str]) -> list[str]:
    """The base class names chains of ``config`` use, checked against the base's ``names``."""
    names = list(names)
    chosen = list(config.classes) if config.classes is not None else names
    unknown = [c for c in chosen if c not in names]
    if unknown:
        raise DataError(f"chain classes: unknown {unknown[0]!r}; the dataset's classes are: {', '.join(names)}")
    if config.task == "order" and len(chosen) < config.k:
        raise DataError(f"chain classes: the order task needs at least k = {config.k} classes; got {chosen}")
    if len(chosen) < 2 and config.task == "count":
        raise DataError(f"chain classes: the count task needs 2 classes or more; got {chosen}")
    if config.task == "count" and config.count_class is not None and config.count_class not in chosen:
        raise DataError(f"chain count_class: {config.count_class!r} is not one of the chain classes {chosen}")
    return chosen
