"""The class-folder video dataset: layout, clip sampling, real times, timing augmentation, index cache."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import data.video_folder as video_folder
from data.collate import collate_clips
from data.errors import DataError
from data.video_folder import TimingAugment, VideoFolderDataset

VFR_TIMES = np.round(np.cumsum([0] + [0.02, 0.05, 0.03, 0.1] * 5), 3)  # 21 irregular frames


def level(i: int) -> int:
    """Grey level that identifies frame i (< 43), so tests can tell which frames a clip holds."""
    return 20 + 5 * i


def write_video(path: Path, times, codec="libx264", time_base=Fraction(1, 1000)) -> Path:
    """A 32x24 video whose frame i is uniformly level(i), at the given times (seconds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height = 32, 24
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), level(i), np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_indices(x: torch.Tensor) -> list[int]:
    """Which frames a clip x (T, C, H, W) holds, read back from their grey levels."""
    levels = (x.mean(dim=(1, 2, 3)) * 255).numpy()
    table = np.array([level(i) for i in range(40)])
    found = [int(np.argmin(np.abs(table - v))) for v in levels]
    assert all(abs(table[i] - v) < 2.5 for i, v in zip(found, levels))
    return found


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """cat/ 40 frames at 25 fps (MP4) and 12 frames (AVI); dog/ 21 frames at irregular times (MKV)."""
    root = tmp_path_factory.mktemp("folder")
    write_video(root / "cat" / "long.mp4", np.arange(40) / 25, time_base=Fraction(1, 25))
    write_video(root / "cat" / "short.avi", np.arange(12) / 25, codec="mjpeg", time_base=Fraction(1, 25))
    write_video(root / "dog" / "irregular.mkv", VFR_TIMES)
    (root / "dog" / "notes.txt").write_text("not a video")
    (root / "README").write_text("files directly under the root are ignored")
    (root / ".cache").mkdir()
    return root


def test_classes_videos_and_item_contract(root):
    ds = VideoFolderDataset(root, frames_per_clip=8, size=(16, 12))
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [(p.name, y) for p, y in ds.videos] == [("long.mp4", 0), ("short.avi", 0), ("irregular.mkv", 1)]
    assert len(ds) == 3
    x, t, label = ds[0]
    assert x.shape == (8, 3, 12, 16) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert t.shape == (8,) and t.dtype == torch.float64 and t[0] == 0
    assert label == 0 and isinstance(label, int)
    x, _, label = ds[-1]
    assert label == 1 and x.shape[0] == 8


def test_centre_clip_holds_the_right_frames_and_times(root):
    ds = VideoFolderDataset(root, frames_per_clip=10, stride=2, size=None)
    x, t, _ = ds[0]  # long.mp4, 40 frames: span 19, max start 21, centre start 10
    assert frame_indices(x) == list(range(10, 30, 2))
    np.testing.assert_allclose(t.numpy(), np.arange(10) * 2 / 25, atol=1e-9)
    assert x.shape[-2:] == (24, 32)


def test_short_video_gives_a_short_clip(root):
    ds = VideoFolderDataset(root, frames_per_clip=16, size=None)
    x, t, _ = ds[1]  # short.avi: 12 frames
    assert x.shape[0] == t.shape[0] == 12 and frame_indices(x) == list(range(12))


def test_variable_frame_rate_times_reach_the_clip(root):
    ds = VideoFolderDataset(root, frames_per_clip=21, grey=True, size=(8, 8))
    x, t, label = ds[2]
    assert x.shape == (21, 1, 8, 8) and label == 1
    np.testing.assert_allclose(t.numpy(), VFR_TIMES, atol=1e-9)


def test_all_clips_sliding_with_step(root):
    ds = VideoFolderDataset(root, frames_per_clip=8, clips_per_video="all", step=4, size=(8, 8))
    # long: (40 - 8) // 4 + 1 = 9, short: (12 - 8) // 4 + 1 = 2, irregular: (21 - 8) // 4 + 1 = 4
    assert len(ds) == 15
    assert frame_indices(ds[1][0]) == list(range(4, 12))
    default_step = VideoFolderDataset(root, frames_per_clip=8, clips_per_video="all", size=(8, 8))
    assert len(default_step) == 5 + 1 + 2  # windows do not overlap


def test_several_evenly_spaced_clips(root):
    ds = VideoFolderDataset(root, frames_per_clip=8, clips_per_video=3, size=(8, 8))
    assert len(ds) == 9
    starts = [ds.clip_frames(i)[0] for i in range(3)]
    assert starts == [0, 16, 32]


def test_random_clip_is_reproducible_per_seed_and_epoch(root):
    ds = VideoFolderDataset(root, frames_per_clip=4, random_clip=True, size=(8, 8), seed=3)
    starts = [ds.clip_frames(0)[0] for _ in range(3)]
    assert len(set(starts)) == 1  # same item, same draw
    by_epoch = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        by_epoch.add(int(ds.clip_frames(0)[0]))
    assert len(by_epoch) > 1


def test_timing_augment_drops_and_jitters_reproducibly(root):
    timing = TimingAugment(drop_prob=0.4, jitter_std=0.005)
    ds = VideoFolderDataset(root, frames_per_clip=16, size=None, timing=timing, seed=1)
    x1, t1, _ = ds[0]
    x2, t2, _ = ds[0]
    assert torch.equal(x1, x2) and torch.equal(t1, t2)
    lengths = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        x, t, _ = ds[0]
        frames = frame_indices(x)
        assert x.shape[0] == len(t) and 1 <= len(t) <= 16
        assert all(a < b for a, b in zip(frames, frames[1:]))  # kept frames, in order
        t = t.numpy()
        assert (t >= 0).all() and (np.diff(t) >= 0).all()
        # Each time is its frame's true time from the clip start (12, centre) plus small jitter.
        np.testing.assert_allclose(t, (np.array(frames) - 12) / 25, atol=0.03)
        lengths.add(len(t))
    assert len(lengths) > 1


def test_timing_augment_rate_factors_stretch_the_clip(root):
    ds = VideoFolderDataset(root, frames_per_clip=5, size=(8, 8), timing=TimingAugment(rate_factors=(1, 3)))
    gaps = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        x, t, _ = ds[0]
        assert len(t) == 5
        frames = frame_indices(x)
        gaps.add(frames[1] - frames[0])
        np.testing.assert_allclose(np.diff(t.numpy()), (frames[1] - frames[0]) / 25, atol=1e-9)
    assert gaps == {1, 3}


def test_timing_augment_unit():
    rng = np.random.default_rng(0)
    keep, t = TimingAugment(drop_prob=0.99)(np.arange(10) * 0.1, rng)
    assert len(keep) >= 1 and len(t) == len(keep)
    keep, t = TimingAugment(jitter_std=0.5)(np.arange(10) * 0.1, rng)
    assert keep.tolist() == list(range(10)) and t[0] == 0 and (np.diff(t) >= 0).all()
    t_in = np.arange(4) * 0.1
    keep, t = TimingAugment()(t_in, rng)
    assert keep.tolist() == [0, 1, 2, 3] and np.array_equal(t, t_in)


@pytest.mark.parametrize(
    "kwargs, field",
    [({"drop_prob": 1.0}, "drop_prob"), ({"jitter_std": -1.0}, "jitter_std"),
     ({"rate_factors": ()}, "rate_factors"), ({"rate_factors": (0,)}, "rate_factors")],
)
def test_timing_augment_validates(kwargs, field):
    with pytest.raises(DataError, match=f"TimingAugment.{field}"):
        TimingAugment(**kwargs)


def test_split_file(root, tmp_path):
    split = tmp_path / "trainlist01.txt"
    split.write_text("# UCF101 style\nCAT/Long.mp4 1\n\ndog/irregular.mkv 2\n")  # case differs: still found
    ds = VideoFolderDataset(root, split=split, size=(8, 8))
    assert ds.classes == ["cat", "dog"]
    assert [p.name for p, _ in ds.videos] == ["long.mp4", "irregular.mkv"]
    split.write_text("cat/long.mp4\ncat/missing.avi\n")
    with pytest.raises(DataError, match=r"trainlist01\.txt:2: cat/missing\.avi is not a video"):
        VideoFolderDataset(root, split=split)
    with pytest.raises(DataError, match="no such split file"):
        VideoFolderDataset(root, split=tmp_path / "absent.txt")


def test_index_cache_is_reused_and_refreshed(root, tmp_path, monkeypatch):
    cache = tmp_path / "index.npz"
    first = VideoFolderDataset(root, size=(8, 8), index_cache=cache)
    assert cache.is_file()

    def no_indexing(path):
        raise AssertionError(f"indexed {path} again")

    monkeypatch.setattr(video_folder, "video_times", no_indexing)
    second = VideoFolderDataset(root, size=(8, 8), index_cache=cache)
    for a, b in zip(first.times, second.times):
        np.testing.assert_array_equal(a, b)
    # A changed file (new mtime) is indexed again, and only that one.
    indexed = []
    monkeypatch.setattr(video_folder, "video_times", lambda p: indexed.append(p.name) or np.arange(3) / 10)
    target = root / "cat" / "short.avi"
    stat = target.stat()
    try:
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        third = VideoFolderDataset(root, size=(8, 8), index_cache=cache)
    finally:
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert indexed == ["short.avi"] and len(third.times[1]) == 3


def test_dataloader_with_collate(root):
    ds = VideoFolderDataset(root, frames_per_clip=16, size=(8, 8), timing=TimingAugment(drop_prob=0.3))
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_clips)))
    assert batch["x"].shape[:2] == batch["mask"].shape and batch["x"].shape[2:] == (3, 8, 8)
    assert batch["y"].tolist() == [0, 0, 1]
    assert batch["mask"].sum(dim=1).tolist() == batch["lengths"].tolist()


@pytest.mark.slow
def test_dataloader_worker_processes(root):
    ds = VideoFolderDataset(root, frames_per_clip=4, size=(8, 8), timing=TimingAugment(jitter_std=0.01))
    loaded = [b["dt"] for b in DataLoader(ds, batch_size=3, collate_fn=collate_clips, num_workers=1)]
    inline = [b["dt"] for b in DataLoader(ds, batch_size=3, collate_fn=collate_clips)]
    assert torch.equal(loaded[0], inline[0])  # per-item seeding: same draws in a worker


def test_empty_and_missing_roots(tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        VideoFolderDataset(tmp_path / "absent")
    with pytest.raises(DataError, match="no class folders"):
        VideoFolderDataset(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"no videos with extensions"):
        VideoFolderDataset(tmp_path)


def test_unreadable_video_is_named(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(DataError, match=r"broken\.mp4"):
        VideoFolderDataset(tmp_path)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"frames_per_clip": 0}, "frames_per_clip"), ({"stride": 1.5}, "stride"),
     ({"clips_per_video": "some"}, "clips_per_video"), ({"step": 0}, "step"),
     ({"size": (8, -8)}, "size"), ({"seed": -1}, "seed"), ({"timing": 0.5}, "timing")],
)
def test_bad_options(root, kwargs, name):
    with pytest.raises(DataError, match=name):
        VideoFolderDataset(root, **kwargs)
