"""The test conditions of the head comparison: the same test clips, observed differently.

Every condition is built from the data module's own test split, so it applies to any data:

- ``train_timing``: the test split as training saw its timing.
- ``regular``: a constant rate (the built-in dataset only: its scenes are drawn again with no
  per-frame jitter; a recording's sampling cannot be made regular after the fact).
- ``rate_x0.25`` and ``rate_x4``: sampled at a quarter and at four times the training rate, outside
  the training range: the built-in dataset observes the same scenes at that rate; event datasets
  are cut again into windows 4x longer or 4x shorter (over the same span of each recording); other
  data keeps every fourth step (``rate_x0.25``; ``rate_x4`` needs a source that can be sampled
  faster, so it is left out).
- ``drop_0.3``: each observation after the first is dropped with probability 0.3 and its time goes
  into the next step's dt. Event windows merge: exactly on the built-in dataset; elsewhere the merged
  step's input is the sum of its windows' inputs (exact for count-like representations).
- ``noise``: events get extra background events (``NOISE["events"]`` per pixel per second: the
  built-in dataset and registered event datasets), frames Gaussian pixel noise.
- ``dt_shuffled`` (a control): the ``train_timing`` clips with their dt permuted within each clip;
  the inputs are unchanged. A head that uses the real time must lose accuracy on the tasks that
  need the order of the time steps; a head that ignores dt cannot change. A permutation keeps a
  clip's rate (the sum and the mean of its dt), and a task decided by the rate (a duration or a
  speed over a clip sampled at its own rate) survives it; hence the second control:
- ``dt_swapped``: the same clips with the dt sequence of another test clip, paired by a fixed random
  permutation without fixed points (so the partner's class is unrelated to the clip's: the built-in
  splits cycle through their classes, and a pairing by index offset would pair clips of one class),
  so the timing no longer belongs to the inputs. A head that uses dt loses the tasks that need the real
  time; one that ignores it, again, cannot change.

Every random draw comes from ``default_rng((seed, condition code, clip index))``: each head sees
exactly the same clips under each condition.
"""
from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from data import EventClipDataset, WindowSpec, collate_clips
from data.augment import BackgroundNoise
from data.geometry import frame_size
from data.synthetic import SyntheticMotionDataset
from data.timing import first_dt

CONDITIONS = ("train_timing", "regular", "rate_x0.25", "rate_x4", "drop_0.3", "noise", "dt_shuffled", "dt_swapped")
RATES = {"rate_x0.25": 0.25, "rate_x4": 4.0}
DROP = 0.3
NOISE = {"events": 0.3, "frames": 0.1}  # extra events per pixel per second / pixel standard deviation
NOISE_UNIT = {"events": "Hz/pixel", "frames": "std"}
_CODES = {name: k for k, name in enumerate(CONDITIONS)}


def describe(name: str, modality: str) -> str:
    """One line saying what condition ``name`` changes."""
    return {
        "train_timing": "the test clips with the training timing",
        "regular": "the same scenes at a constant rate (no per-frame jitter)",
        "rate_x0.25": "sampled at 0.25x the training rate (windows 4x longer)",
        "rate_x4": "sampled at 4x the training rate (windows 4x shorter)",
        "drop_0.3": f"{DROP:.0%} of the observations dropped, their time added to the next dt",
        "noise": f"added noise: {NOISE[modality]:g} {NOISE_UNIT[modality]}",
        "dt_shuffled": "control: dt permuted within each clip, inputs unchanged (each clip keeps its rate)",
        "dt_swapped": "control: each clip gets another test clip's dt sequence, inputs unchanged",
    }[name]


def _item(item) -> dict:
    """A clip as a dict with x (T, C, H, W), t (T,) float64 seconds and y."""
    if isinstance(item, dict):
        return item
    x, t, y = item
    return {"x": x, "t": t, "y": y}


def _rng(seed: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng((seed, _CODES[name], index))


def merge_steps(item: dict, keep: np.ndarray, modality: str) -> dict:
    """The clip observed only at the ``keep`` (T,) bool steps: each kept step's dt covers the dropped
    steps before it; events also keep the dropped windows' input, added into the next kept step."""
    x, t = item["x"], np.asarray(item["t"], dtype=np.float64)
    kept = np.flatnonzero(keep)
    if modality == "events":
        bounds = np.concatenate([[-1], kept])
        x = torch.stack([x[a + 1:b + 1].sum(0) for a, b in zip(bounds[:-1], bounds[1:])])
    else:
        x = x[torch.from_numpy(kept)]
    return {**item, "x": x, "t": torch.from_numpy(t[kept])}


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) a random permutation with no index mapped to itself (the identity when n = 1)."""
    order = rng.permutation(n)
    return np.roll(order, 1)[np.argsort(order)] if n > 1 else np.arange(n)


def clip_dts(t, default_period: float) -> np.ndarray:
    """(T,) the dt of each step of a clip with times ``t`` (the first by ``data.timing.first_dt``)."""
    t = np.asarray(t, dtype=np.float64)
    return np.diff(t, prepend=t[0] - first_dt(float(t[0]), 0.0, default_period))


def shuffle_dt(item: dict, rng: np.random.Generator, default_period: float) -> dict:
    """The clip with its dt permuted; t is rebuilt from them."""
    return {**item, "t": torch.from_numpy(np.cumsum(rng.permutation(clip_dts(item["t"], default_period))))}


def swap_dt(item: dict, other_t, default_period: float) -> dict:
    """The clip with the dt sequence of another clip (times ``other_t``): cut to this clip's length, or
    continued with the other clip's median dt when it is shorter."""
    mine, theirs = len(item["t"]), clip_dts(other_t, default_period)
    dt = np.concatenate([theirs, np.full(max(0, mine - len(theirs)), np.median(theirs))])[:mine]
    return {**item, "t": torch.from_numpy(np.cumsum(dt))}


class ConditionClips(Dataset):
    """The clips of ``base`` under one generic condition (drop, subsampling, noise on frames, dt shuffle)."""

    def __init__(self, base: Dataset, name: str, modality: str, seed: int, default_period: float) -> None:
        self.base, self.name, self.modality, self.seed = base, name, modality, seed
        self.default_period = default_period
        self.partners = derangement(len(base), np.random.default_rng((seed, _CODES[name])))

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = _item(self.base[index])
        rng = _rng(self.seed, self.name, index)
        steps = len(item["t"])
        if self.name == "dt_shuffled":
            return shuffle_dt(item, rng, self.default_period)
        if self.name == "dt_swapped":
            other = _item(self.base[int(self.partners[index])])
            return swap_dt(item, other["t"], self.default_period)
        if self.name == "drop_0.3":
            keep = rng.random(steps) >= DROP
            keep[0] = True
            return merge_steps(item, keep, self.modality)
        if self.name == "rate_x0.25":  # every fourth step, ending on the last one: nothing at the end is lost
            return merge_steps(item, (np.arange(steps) - steps + 1) % 4 == 0, self.modality)
        if self.name == "noise" and self.modality == "frames":
            noise = rng.normal(0.0, NOISE["frames"], tuple(item["x"].shape)).astype(np.float32)
            return {**item, "x": item["x"] + torch.from_numpy(noise)}
        raise ValueError(f"no generic form of condition {self.name!r} for {self.modality}")


class SyntheticClips(Dataset):
    """The built-in dataset's test clips under ``drop_0.3`` or ``noise`` (``SyntheticMotionDataset.perturbed``)."""

    def __init__(self, base: SyntheticMotionDataset, name: str, seed: int) -> None:
        self.base, self.name, self.seed = base, name, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        rng = _rng(self.seed, self.name, index)
        if self.name == "drop_0.3":
            return self.base.perturbed(index, rng, drop=DROP)
        return self.base.perturbed(index, rng, noise=NOISE[self.base.modality])


class ConditionSets:
    """The test clips of every condition available for one data module, built once each."""

    def __init__(self, datamodule, batch_size: int = 32, seed: int = 0) -> None:
        self.datamodule, self.batch_size, self.seed = datamodule, batch_size, seed
        self.modality = datamodule.preprocessing.modality
        self._sets: dict[str, Dataset] = {}

    @property
    def builtin(self) -> bool:
        from perception.training.data import SyntheticDataModule

        return isinstance(self.datamodule, SyntheticDataModule)

    @property
    def event_dataset(self) -> bool:
        return isinstance(_base_of(self.datamodule.split("test")), EventClipDataset)

    def names(self) -> list[str]:
        """The conditions this data can be tested under (module docstring)."""
        out = []
        for name in CONDITIONS:
            if name == "regular" and not self.builtin:
                continue
            if name == "rate_x4" and not (self.builtin or self.event_dataset):
                continue
            if name == "noise" and self.modality == "events" and not (self.builtin or self.event_dataset):
                continue
            out.append(name)
        return out

    def dataset(self, name: str) -> Dataset:
        if name not in self._sets:
            self._sets[name] = self._build(name)
        return self._sets[name]

    def _build(self, name: str) -> Dataset:
        dm, test = self.datamodule, self.datamodule.split("test")
        if name == "train_timing":
            return test
        if name in ("dt_shuffled", "dt_swapped"):
            return ConditionClips(test, name, self.modality, self.seed, dm.time_scale)
        if self.builtin:
            config = dm.config
            if name == "regular":
                config = replace(config, jitter=0.0)
            elif name in RATES:
                config = replace(config, rate=RATES[name])
            base = SyntheticMotionDataset("test", len(test), dm.modality, dm.seed, config)
            return SyntheticClips(base, name, self.seed) if name in ("drop_0.3", "noise") else base
        if self.event_dataset and name in (*RATES, "noise"):
            return self._event_dataset(test, name)
        return ConditionClips(test, name, self.modality, self.seed, dm.time_scale)

    def _event_dataset(self, test: Dataset, name: str) -> Dataset:
        """A registered event dataset's test split cut again (rates) or with background noise."""
        base = _base_of(test)
        window, steps, transform = base.window, base.max_steps, None
        if name in RATES:
            rate = RATES[name]
            window = WindowSpec(window.mode, max(1, round(window.size / rate)), round(window.overlap / rate),
                                drop_last=window.drop_last)
            steps = None if steps is None else max(1, round(steps * rate))
        else:
            transform = BackgroundNoise(NOISE["events"])
        # the frame size given as a downsampling factor, or as a size (they cannot both be passed)
        by_factor = frame_size(base.sensor_size, base.downsample, None) == tuple(base.frame_size)
        other = EventClipDataset(base.name, base.root, split=base.split, window=window,
                                 representation=base.representation, max_steps=steps, sensor_size=base.sensor_size,
                                 downsample=base.downsample if by_factor else 1,
                                 size=None if by_factor else base.frame_size, transform=transform, seed=self.seed)
        return Subset(other, test.indices) if isinstance(test, Subset) else other

    def loader(self, name: str, nominal_period: float) -> DataLoader:
        """The condition's clips, batched as in training: a clip starting at 0 gets ``nominal_period``
        (the model's training time scale) as its first dt."""
        collate = partial(collate_clips, default_period=nominal_period)
        return DataLoader(self.dataset(name), batch_size=self.batch_size, shuffle=False, collate_fn=collate)


def _base_of(dataset: Dataset) -> Dataset:
    """The dataset under a ``Subset`` or an in-memory cache."""
    while isinstance(dataset, Subset) or hasattr(dataset, "dataset"):
        dataset = dataset.dataset
    return dataset
