"""EventDataModule's augmentations: training clips only, drawn from (seed, epoch, index), so runs repeat."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.events import make_events
from data.io import write_events
from perception.errors import PerceptionError
from perception.training.data import EventDataModule

AUGMENT = {"translate": {"max_shift": 2}, "drop_events": {"fraction": 0.2}, "time_stretch": {"max_factor": 1.2}}


def _nmnist(root: Path) -> Path:
    """NMNIST/{Train,Test}/<digit>/<id>.bin with crafted events: a bar sweeping right for 300 ms."""
    rng = np.random.default_rng(0)
    for split, n in (("Train", 4), ("Test", 2)):
        for digit in (0, 1):
            for i in range(n):
                t = np.sort(rng.integers(0, 300_000, 2000))
                x = np.clip(t * 30 // 300_000 + rng.integers(0, 4, t.size), 0, 33)
                events = make_events(x, rng.integers(0, 34, t.size), t, rng.integers(0, 2, t.size))
                path = root / "NMNIST" / split / str(digit) / f"{i:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_events(path, events, (34, 34), format="atis_bin")
    return root


def _module(root: Path, augment=AUGMENT, seed: int = 0) -> EventDataModule:
    return EventDataModule("nmnist", root=str(root), window_size=50_000, max_steps=8, val_fraction=0.25,
                           augment=augment, seed=seed, batch_size=4)


def _clips(dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, t) for x, t, _ in (dataset[i] for i in range(len(dataset)))]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) and torch.equal(s, u)
                                    for (x, s), (y, u) in zip(a, b))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return _nmnist(tmp_path_factory.mktemp("datasets"))


def test_training_clips_are_augmented_and_held_out_clips_are_not(root):
    augmented, plain = _module(root), _module(root, augment=None)
    assert _same(_clips(augmented.split("val")), _clips(plain.split("val")))
    assert _same(_clips(augmented.split("test")), _clips(plain.split("test")))
    train, reference = _clips(augmented.split("train")), _clips(plain.split("train"))
    assert all(a[0].shape != b[0].shape or not torch.equal(a[0], b[0]) for a, b in zip(train, reference))
    assert augmented.split("train").indices == plain.split("train").indices  # the same recordings
    assert augmented.split("val").dataset.transform is None and augmented.split("test").transform is None


def test_draws_follow_seed_epoch_and_index_so_a_resumed_run_repeats(root):
    module = _module(root)
    train = module.split("train")
    loader = module.train_dataloader()
    first = _clips(train)
    assert _same(first, _clips(train))  # the same epoch: the same clips
    loader.sampler.set_epoch(1)  # what Lightning calls before each epoch reaches the dataset
    assert train.dataset.epoch == 1
    second = _clips(train)
    assert not _same(first, second)  # a new epoch: new draws
    fresh = _module(root)  # a resumed run: a new module, set to the same epoch
    fresh.train_dataloader().sampler.set_epoch(1)
    assert _same(_clips(fresh.split("train")), second)
    other_seed = _module(root, seed=1)  # the seed moves the draws (and the hold-out)
    other_seed.train_dataloader().sampler.set_epoch(1)
    assert not _same(_clips(other_seed.split("train")), second)


def test_batches_of_augmented_clips_keep_the_clip_contract(root):
    module = _module(root)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    x, mask = batch["x"], batch["mask"]
    assert x.shape[0] == 4 and x.shape[2:] == (module.in_channels, 34, 34) and x.dtype == torch.float32
    assert mask[:, 0].all() and torch.isfinite(x).all()
    assert (batch["dt"][mask] >= 0).all()


def test_bad_augmentations_are_one_line_errors(root):
    with pytest.raises(PerceptionError, match="data.augment: augmentations: unknown 'mirror'"):
        _module(root, augment={"mirror": {}})
    with pytest.raises(PerceptionError, match="data.augment: .*max_shift must be a non-negative integer"):
        _module(root, augment={"translate": {"max_shift": -1}})
