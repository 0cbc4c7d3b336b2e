"""Chains (data.chain) over tiny datasets written here in the official layouts, and over real recordings.

Each class of the made-up recordings fires only in its own band of columns, so the class an event
window shows can be read off the window: the tests read the chain's order, its gaps and its labels
from the tensors alone and compare them with the chain's plan.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from data.chain import ChainConfig, ChainDataset, split_by_class, task_info
from data.errors import DataError
from data.event_datasets import EventClipDataset
from data.events import make_events
from data.io import read_events, write_events
from data.video_folder import VideoFolderDataset

BAND = 10  # columns per class band: class d fires in x in [BAND * d, BAND * d + 6)
COUNTS = {"name": "histogram", "bins": 1, "polarity": "merged", "normalize": None}  # x = events per pixel


def _recording(rng: np.random.Generator, band: int, width: int, height: int, duration_us: int, n: int = 400):
    t = np.sort(rng.integers(0, duration_us, n))
    t -= t[0]  # every recording starts at its first event
    x = band * BAND + rng.integers(0, 6, n)
    return make_events(np.minimum(x, width - 1), rng.integers(0, height, n), t + 1000, rng.integers(0, 2, n))


def build_nmnist(root: Path, digits=(0, 1, 2), per_class=(4, 2)) -> Path:
    """N-MNIST's layout, NMNIST/{Train,Test}/<digit>/<id>.bin (ATIS binary), 200-400 ms recordings."""
    rng = np.random.default_rng(0)
    for split, count in zip(("Train", "Test"), per_class):
        for d in digits:
            for i in range(count):
                events = _recording(rng, d, 34, 34, int(rng.integers(200_000, 400_000)))
                path = root / "NMNIST" / split / str(d) / f"{i:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_events(path, events, (34, 34), format="atis_bin")
    return root


def build_dvsgesture(root: Path, labels=(0, 3), users=(("Train", 3), ("Test", 2))) -> Path:
    """DVSGesture's layout, ibmGesture{Train,Test}/<user>/<label>.npy with columns x, y, p, t (ms)."""
    rng = np.random.default_rng(1)
    for split, n_users in users:
        for u in range(n_users):
            for band, label in enumerate(labels):
                e = _recording(rng, band, 128, 128, int(rng.integers(2_000_000, 3_000_000)), 2000)
                cols = [e["x"], e["y"], e["p"], e["t"] // 1000]
                path = root / "DVSGesture" / f"ibmGesture{split}" / f"user{u:02d}{split[:2]}_led" / f"{label}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.stack(cols, axis=1).astype(np.int64))
    return root


def nmnist_chains(root: Path, split: str = "train", size: int = 24, seed: int = 0, **options) -> ChainDataset:
    base = EventClipDataset("nmnist", root, split="test" if split == "test" else "train", representation=COUNTS)
    config = ChainConfig(**{"classes": ("0", "1", "2"), **options})
    return ChainDataset(base, range(len(base)), size, split, config, seed)


def runs(x: torch.Tensor, band: int = BAND) -> tuple[list[int | None], list[int]]:
    """(per step the class band its events lie in, None for no events; the classes of the steps
    with empty steps and repeats removed)."""
    columns = x.sum(dim=(1, 2)).numpy()  # (T, W)
    per_step: list[int | None] = []
    for profile in columns:
        bands = sorted({int(c) // band for c in np.flatnonzero(profile)})
        assert len(bands) <= 1, f"a window shows events of two items: bands {bands}"
        per_step.append(bands[0] if bands else None)
    return per_step, [c for i, c in enumerate(per_step) if c is not None and (i == 0 or per_step[i - 1] != c)]


def gap_steps(per_step: list[int | None]) -> list[list[int]]:
    """Indices of the empty steps between items, one list per gap."""
    gaps, current, seen_item = [], [], False
    for i, c in enumerate(per_step):
        if c is None and seen_item:
            current.append(i)
        elif c is not None:
            if current:
                gaps.append(current)
            current, seen_item = [], True
    return gaps


@pytest.fixture(scope="module")
def nmnist_root(tmp_path_factory) -> Path:
    return build_nmnist(tmp_path_factory.mktemp("chains"))


@pytest.mark.parametrize("k", [2, 3])
def test_order_chains_show_their_items_in_order_with_empty_gaps_between(nmnist_root, k):
    chains = nmnist_chains(nmnist_root, k=k, gap_steps=(1, 3))
    assert len(chains.classes) == 6  # 3 * 2 and 3 * 2 * 1 orderings of 3 classes
    base = chains.base
    for i in range(len(chains)):
        x, t, y = chains[i]
        plan = chains.plan(i)
        per_step, sequence = runs(x)
        names = [chains.chain_classes[c] for c in plan.classes]
        assert sequence == [int(n) for n in names] and chains.classes[y] == "<then>".join(names)
        assert len(set(plan.items)) == k and len(set(plan.classes)) == k
        # every event of every item is in the chain, once
        assert x.sum().item() == sum(len(base.events(item)) for item in plan.items)
        gaps = gap_steps(per_step)
        assert [len(g) for g in gaps] == list(plan.gap_steps)
        dt = np.diff(t.numpy(), prepend=0.0)
        for steps, gap in zip(gaps, plan.gaps):
            assert dt[steps].sum() == pytest.approx(gap, abs=1e-6)
        items = [i for i, c in enumerate(per_step) if c is not None]
        assert np.allclose(dt[items], plan.period, atol=1e-6) and t.dtype == torch.float64 and y == plan.label


def test_count_labels_count_the_class(nmnist_root):
    chains = nmnist_chains(nmnist_root, task="count", k=4, count_class="1", size=30)
    assert chains.classes == [f"1<count>{n}" for n in range(5)]
    assert task_info(chains.config, chains.chain_classes).needs_time is False  # an average keeps counts
    for i in range(len(chains)):
        x, _, y = chains[i]
        per_step, _ = runs(x)  # items of one class in a row are told apart by the gap between them
        items = [c for j, c in enumerate(per_step) if c is not None and (j == 0 or per_step[j - 1] is None)]
        assert len(items) == 4 and items.count(1) == y
    assert sorted(chains.plan(i).label for i in range(30)) == sorted(i % 5 for i in range(30))  # balanced


def test_interval_gaps_differ_in_time_only(nmnist_root):
    chains = nmnist_chains(nmnist_root, task="interval", k=3, size=400, gap_range=(0.05, 1.35))
    assert chains.classes == ["short gap", "long gap"]
    info = task_info(chains.config, chains.chain_classes)
    assert info.needs_time and info.chance == info.blind_ceiling == 0.5
    plans = [chains.plan(i) for i in range(len(chains))]
    for plan in plans:  # short: the lower third of the range in log scale, long: the upper third
        assert (0.05 <= plan.gaps[0] <= 0.15) if plan.label == 0 else (0.45 <= plan.gaps[0] <= 1.35)
    by_label = [[p for p in plans if p.label == label] for label in (0, 1)]
    # the number of steps covering a gap, the windows and the other gap do not depend on the label
    for draw in (lambda p: p.gap_steps[0], lambda p: p.gap_steps[1], lambda p: p.gaps[1] > 0.3):
        freq = [np.mean([draw(p) for p in group]) for group in by_label]
        assert abs(freq[0] - freq[1]) < 0.25
    assert abs(np.median([p.period for p in by_label[0]]) / np.median([p.period for p in by_label[1]]) - 1) < 0.15
    x, t, y = chains[0]
    per_step, _ = runs(x)
    gap = gap_steps(per_step)[0]
    assert np.diff(t.numpy(), prepend=0.0)[gap].sum() == pytest.approx(plans[0].gaps[0], abs=1e-6)


def test_interval_inputs_do_not_depend_on_the_gap(nmnist_root):
    """Only t tells a short gap from a long one: the same chain with a 5x longer first gap has the same
    inputs x (same steps, same values) and a later end; so a head that ignores dt is at chance."""
    chains = nmnist_chains(nmnist_root, task="interval", k=3, size=6, gap_range=(0.05, 1.35))
    for i in range(len(chains)):
        plan = chains.plan(i)
        longer = replace(plan, gaps=(plan.gaps[0] * 5, *plan.gaps[1:]))
        (x, t), (x_longer, t_longer) = chains._events(plan), chains._events(longer)
        assert x.shape == x_longer.shape and np.array_equal(x, x_longer)
        assert t_longer[-1] - t[-1] == pytest.approx(plan.gaps[0] * 4, abs=1e-5)


def test_chains_are_deterministic_per_seed_split_and_index(nmnist_root):
    a, b = nmnist_chains(nmnist_root), nmnist_chains(nmnist_root)
    backwards = [b[i] for i in reversed(range(len(b)))][::-1]  # the order of access changes nothing
    for i in range(len(a)):
        assert torch.equal(a[i][0], backwards[i][0]) and torch.equal(a[i][1], backwards[i][1])
        assert a[i][2] == backwards[i][2] and np.array_equal(a.times(i), a[i][1].numpy())
    other_seed, other_split = nmnist_chains(nmnist_root, seed=1), nmnist_chains(nmnist_root, split="val")
    assert [a.plan(i) for i in range(8)] != [other_seed.plan(i) for i in range(8)]
    assert [a.plan(i) for i in range(8)] != [other_split.plan(i) for i in range(8)]
    periods = {round(a.plan(i).period, 6) for i in range(len(a))}
    assert len(periods) == len(a)  # every chain its own sampling rate


def test_chains_use_only_their_pool(nmnist_root):
    base = EventClipDataset("nmnist", nmnist_root, split="train")
    train, held = split_by_class(base.targets, 0.25, seed=0)
    assert not set(train) & set(held) and sorted(train + held) == list(range(len(base)))
    for label in set(base.targets):  # each class on both sides
        assert any(base.targets[i] == label for i in held) and any(base.targets[i] == label for i in train)
    config = ChainConfig(classes=("0", "1", "2"))
    for pool in (train, held):
        chains = ChainDataset(base, pool, 40, "train", config)
        assert {item for i in range(40) for item in chains.plan(i).items} <= set(pool)


def test_dvsgesture_chains_of_named_classes_keep_a_span_of_each_recording(tmp_path):
    root = build_dvsgesture(tmp_path)
    base = EventClipDataset("dvsgesture", root, split="test", representation=COUNTS, downsample=2)
    config = ChainConfig(classes=("right arm cw", "hand clapping"), item_duration=0.5, window_range=(0.05, 0.05))
    chains = ChainDataset(base, range(len(base)), 6, "test", config)
    assert chains.classes == ["right arm cw<then>hand clapping", "hand clapping<then>right arm cw"]
    for i in range(len(chains)):
        x, t, y = chains[i]
        assert x.shape[1:] == (1, 64, 64)
        per_step, sequence = runs(x, BAND // 2)  # downsampled by 2: the bands are half as wide
        plan = chains.plan(i)
        assert len(per_step) == 2 * 10 + sum(plan.gap_steps)  # 0.5 s of each in 50 ms windows
        order = [chains.chain_classes[c] for c in plan.classes]
        band = {"hand clapping": 0, "right arm cw": 1}  # label 0 in band 0, label 3 in band 1
        assert sequence == [band[c] for c in order] and chains.classes[y] == "<then>".join(order)
        assert t[-1].item() == pytest.approx(1.0 + sum(plan.gaps), abs=1e-5)


def test_bad_options_are_data_errors(nmnist_root):
    base = EventClipDataset("nmnist", nmnist_root, split="train")
    for options, match in (({"task": "sort"}, "task"), ({"k": 5}, "k"), ({"gap_range": (1.0, 0.5)}, "gap_range"),
                           ({"gap_steps": (0, 2)}, "gap_steps"), ({"item_duration": -1}, "item_duration")):
        with pytest.raises(DataError, match=match):
            ChainConfig(**options)
    with pytest.raises(DataError, match="unknown '11'"):
        ChainDataset(base, range(len(base)), 4, "train", ChainConfig(classes=("1", "11")))
    with pytest.raises(DataError, match="at least k = 3"):
        ChainDataset(base, range(len(base)), 4, "train", ChainConfig(classes=("1", "2"), k=3))
    with pytest.raises(DataError, match="no recordings of class '2'"):
        ChainDataset(base, [0, 4], 4, "train", ChainConfig(classes=("0", "2")))


def _videos(root: Path, h264) -> Path:
    """Two classes (dark, bright), three 10 fps videos each, 12 frames."""
    for label, level in (("dark", 40), ("bright", 200)):
        for k in range(3):
            h264(root / label / f"v{k}.mp4", np.full((12, 32, 32, 3), level, np.uint8))
    return root


def test_video_chains_put_blank_frames_in_the_gaps(tmp_path, h264):
    base = VideoFolderDataset(_videos(tmp_path, h264), frames_per_clip=4, size=(32, 32), grey=True)
    chains = ChainDataset(base, range(len(base)), 6, "train", ChainConfig(stride_range=(1, 2)))
    assert chains.classes == ["bright<then>dark", "dark<then>bright"]
    for i in range(len(chains)):
        x, t, y = chains[i]
        plan = chains.plan(i)
        level = x.mean(dim=(1, 2, 3)).numpy()
        blank = np.flatnonzero(level == 0)
        assert len(x) == 8 + plan.gap_steps[0] and blank.tolist() == list(range(4, 4 + plan.gap_steps[0]))
        first, second = level[:4].mean(), level[-4:].mean()
        assert (first > second) == (chains.classes[y] == "bright<then>dark")
        dt = np.diff(t.numpy())
        assert t[0] == 0 and np.allclose(dt[:3], 0.1 * plan.stride, atol=1e-3)
        assert dt[3: 4 + plan.gap_steps[0]].sum() == pytest.approx(plan.gaps[0], abs=1e-6)


@pytest.mark.real_data
def test_chains_of_a_real_nmnist_recording_hold_every_event_once(tmp_path, shared_data):
    for split, digit, n in (("Train", 3, 2), ("Train", 7, 2), ("Test", 3, 1), ("Test", 7, 1)):
        for i in range(n):
            path = tmp_path / "NMNIST" / split / str(digit) / f"{i:05d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared_data / "events" / "tonic_sample_nmnist.bin", path)
    events = read_events(shared_data / "events" / "tonic_sample_nmnist.bin").events
    span = int(events["t"][-1]) + 1 - int(events["t"][0])
    base = EventClipDataset("nmnist", tmp_path, split="test", representation=COUNTS)
    chains = ChainDataset(base, range(len(base)), 4, "test", ChainConfig(classes=("3", "7")))
    for i in range(len(chains)):
        x, t, _ = chains[i]
        plan = chains.plan(i)
        window = plan.period
        per_item = -(-span // round(window * 1e6))
        assert x.sum().item() == 2 * len(events) and len(x) == 2 * per_item + plan.gap_steps[0]
        dt = np.diff(t.numpy(), prepend=0.0)
        assert dt[per_item: per_item + plan.gap_steps[0]].sum() == pytest.approx(plan.gaps[0], abs=1e-6)
        assert x[per_item: per_item + plan.gap_steps[0]].abs().sum() == 0  # the gap holds no event
