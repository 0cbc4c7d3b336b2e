"""What a checkpoint needs, beyond Lightning's own state, for a resumed run to end as an uninterrupted one.

Lightning restores the weights, the optimiser, the schedulers, the loops and the callbacks. Two more
things decide the rest of a run:

- where the training pass stood: ``ResumableLoader`` follows Lightning's stateful-loader interface
  (``state_dict`` / ``load_state_dict`` on the train dataloader, kept in the fit loop's checkpoint
  entry), so a run resumed in the middle of an epoch carries on with the batch after the last one
  it trained on;
- the global random generators (torch, CUDA, numpy, python ``random``): ``rng_state`` and
  ``set_rng_state`` turn them into tensors and plain numbers, so checkpoints still load with
  ``torch.load(weights_only=True)``.

Data loading draws nothing from the global generators: the order comes from ``(seed, epoch)``,
augmentation from ``(seed, epoch, index)`` per item, and every loader has its own generator for its
worker seeds.
"""
from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

RNG_KEY = "rng_states"  # the checkpoint entry


class ResumableLoader(DataLoader):
    """A DataLoader whose pass can be resumed where a checkpoint left it (Lightning's stateful loaders).

    The state is the epoch of the pass under way and the batches it has handed out. A resumed pass
    in that same epoch skips those batches' indices without loading them; a pass in a later epoch
    (the checkpoint was written at an epoch's end) starts from its beginning. Skipping happens after
    any sharding Lightning adds, so every DDP process skips its own first batches.
    """

    _epoch = 0                                  # the pass under way: its epoch ...
    _handed_out = 0                             # ... and its batches so far, skipped ones included
    _pending: tuple[int, int] | None = None     # (epoch, batches) from a checkpoint, until a pass takes it
    _skip = 0                                   # batches the index sampler being built drops

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._pending = (int(state["epoch"]), int(state["batches"]))

    def __iter__(self) -> Iterator:
        # A generator: the pass (and any workers) starts at the first batch asked for, after Lightning
        # has set the sampler's epoch, not when the fit loop builds its iterator ahead of time.
        epoch = _sampler_epoch(self)
        pending, self._pending = self._pending, None
        skip = pending[1] if pending is not None and pending[0] == epoch else 0
        self._epoch, self._handed_out, self._skip = epoch, skip, skip
        try:
            batches = super().__iter__()  # reads _index_sampler, now with the skip
        finally:
            self._skip = 0
        for batch in batches:
            self._handed_out += 1
            yield batch

    @property
    def _index_sampler(self):
        # DataLoader's (private) hook for where its iterators take indices from: the only place a
        # skip applies before workers start prefetching.
        sampler = super()._index_sampler
        return _SkipOnce(sampler, self._skip) if self._skip else sampler


class _SkipOnce:
    """``sampler`` without its first ``count`` items the first time it is read from (persistent
    workers iterate the same index sampler again in later epochs)."""

    def __init__(self, sampler, count: int) -> None:
        self.sampler, self.count = sampler, count

    def __iter__(self) -> Iterator:
        # A generator, so the skip goes to the first iterator read from: DataLoader iterators with
        # workers call iter() twice while starting and read only the second.
        count, self.count = self.count, 0
        yield from itertools.islice(iter(self.sampler), count, None)

    def __len__(self) -> int:
        return len(self.sampler)


def _sampler_epoch(loader: DataLoader) -> int:
    """The epoch Lightning last gave the loader's sampler (``set_epoch``; 0 if it has none)."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    for sampler in (loader.sampler, getattr(batch_sampler, "sampler", None)):
        if hasattr(sampler, "epoch"):
            return int(sampler.epoch)
    return 0


def load_pending_loader_states(trainer: L.Trainer) -> None:
    """Hand the checkpoint's loader states to the train loaders if Lightning has not (call at train start).

    Lightning loads them while it builds the train loaders during the fit loop's start, but skips that
    when ``trainer.estimated_stepping_batches`` built them earlier, in ``configure_optimizers``, as the
    learning-rate schedule does (Lightning issue #20550). Our loaders start their pass lazily, so
    loading the state now, before the first batch, is in time.
    """
    fit_loop = trainer.fit_loop
    if getattr(fit_loop, "_combined_loader_states_to_load", None):
        fit_loop._load_combined_loader_states()


def rng_state() -> dict[str, Any]:
    """The global generators' states, as tensors and plain numbers (``weights_only`` loadable)."""
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this process's device only (DDP: one each)
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put the global generators back as ``rng_state`` found them."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
