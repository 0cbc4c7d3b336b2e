"""The test conditions of the head comparison, all on the built-in dataset's test split.

- timing irregularity: the same scenes with per-frame jitter 0 (regular), 0.3, 0.6 and 0.9 periods,
  and the jitter the models were trained with (0.3 by default; a checkpoint's own otherwise): only the
  observation times change (``SyntheticConfig.jitter`` scales the same random draws);
- dropped observations: each observation after the first dropped with probability 0.15, 0.3, 0.5
  (event windows merge, so dt grows and nothing is lost);
- input noise: frames get Gaussian pixel noise, events extra background events per pixel per second.

Every perturbation is drawn from ``default_rng((seed, condition, clip))``: each head sees exactly the
same perturbed clips.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from torch.utils.data import DataLoader, Dataset

from data import collate_clips
from data.synthetic import SyntheticMotionDataset

JITTER_LEVELS = (0.0, 0.3, 0.6, 0.9)
DROP_LEVELS = (0.15, 0.3, 0.5)
# Extra noise: events per pixel per second (the training data's sensor has 0.1), or pixel std.
# (measured: at 3 Hz/pixel every head fell to near chance, so the levels stop at 1)
NOISE_LEVELS = {"events": (0.1, 0.3, 1.0), "frames": (0.05, 0.1, 0.2)}
NOISE_UNIT = {"events": "Hz/pixel", "frames": "std"}
TRAINING_JITTER = 0.3


@dataclass(frozen=True)
class Condition:
    """One test set: ``family`` is "timing", "drop" or "noise"; ``level`` its strength."""

    family: str
    level: float

    @property
    def name(self) -> str:
        return f"{self.family}={self.level:g}"


def list_conditions(modality: str, quick: bool = False, training_jitter: float = TRAINING_JITTER) -> list[Condition]:
    """The test conditions; the timing levels always include ``training_jitter`` (the training timing)."""
    jitters = sorted({*((0.0, 0.9) if quick else JITTER_LEVELS), float(training_jitter)})
    drops = (0.3,) if quick else DROP_LEVELS
    noises = NOISE_LEVELS[modality][1:2] if quick else NOISE_LEVELS[modality]
    return ([Condition("timing", j) for j in jitters] + [Condition("drop", d) for d in drops]
            + [Condition("noise", n) for n in noises])


class PerturbedClips(Dataset):
    """The clips of ``base`` under one condition's drop / noise, drawn per clip from a fixed seed."""

    def __init__(self, base: SyntheticMotionDataset, condition: Condition, seed: int) -> None:
        self.base, self.condition, self.seed = base, condition, seed
        self.code = {"timing": 0, "drop": 1, "noise": 2}[condition.family]

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        if self.condition.family == "timing":
            return self.base[index]
        rng = np.random.default_rng((self.seed, self.code, int(self.condition.level * 1000), index))
        if self.condition.family == "drop":
            return self.base.perturbed(index, rng, drop=self.condition.level)
        return self.base.perturbed(index, rng, noise=self.condition.level)


class ConditionSets:
    """Builds (once) and serves the test loaders of every condition for one data configuration."""

    def __init__(self, datamodule, conditions: list[Condition], test_size: int, batch_size: int = 32) -> None:
        self.datamodule, self.conditions = datamodule, conditions
        self.test_size, self.batch_size = test_size, batch_size
        self._bases: dict[float, SyntheticMotionDataset] = {}

    def base(self, jitter: float) -> SyntheticMotionDataset:
        if jitter not in self._bases:
            dm = self.datamodule
            config = replace(dm.config, jitter=jitter)
            self._bases[jitter] = SyntheticMotionDataset("test", self.test_size, dm.modality, dm.seed, config)
        return self._bases[jitter]

    @property
    def training_jitter(self) -> float:
        """The timing jitter of the training data: drop and noise conditions perturb clips timed so."""
        return float(self.datamodule.config.jitter)

    def loader(self, condition: Condition, nominal_period: float) -> DataLoader:
        """The condition's test clips, batched as in training: a clip starting at 0 gets
        ``nominal_period`` (the model's training time scale) as its first dt."""
        jitter = condition.level if condition.family == "timing" else self.training_jitter
        dataset = PerturbedClips(self.base(jitter), condition, seed=self.datamodule.seed)
        collate = partial(collate_clips, default_period=nominal_period)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, collate_fn=collate)

    def labels(self) -> np.ndarray:
        return self.base(self.training_jitter).labels
