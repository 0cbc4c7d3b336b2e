"""The data modules for tonic event datasets and video folders, on tiny folders made here."""
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from data import Preprocessing, WindowSpec
from data.timing import known_dts
from perception.errors import PerceptionError
from perception.training.data import EventDataModule, SyntheticDataModule, VideoFolderDataModule
from perception.training.module import PerceptionModule


def _dvsgesture(root: Path) -> Path:
    """DVSGesture's layout: ibmGesture{Train,Test}/<user>/<label>.npy with columns x, y, p, t (ms)."""
    rng = np.random.default_rng(0)
    for split, users in (("Train", ["user01_led", "user02_led", "user03_led"]), ("Test", ["user24_led"])):
        for user in users:
            for label in (0, 4):
                n, span_ms = 2000, 600
                cols = [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                        np.sort(rng.integers(0, span_ms, n))]
                path = root / "DVSGesture" / f"ibmGesture{split}" / user / f"{label}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.stack(cols, axis=1).astype(np.int64))
    return root


def _videos(root: Path, h264) -> Path:
    """Two classes, four short videos each, 10 fps; class b is brighter, and a line sweeps across."""
    for label, level in (("a", 40), ("b", 200)):
        for k in range(4):
            frames = np.full((12, 48, 64, 3), level, np.uint8)
            for i in range(12):
                frames[i, :, (i * 5) % 64] = 255 - level
            h264(root / label / f"v{k}.mp4", frames)
    return root


def _fit_one_batch(datamodule) -> PerceptionModule:
    module = PerceptionModule(num_classes=datamodule.num_classes, in_channels=datamodule.in_channels,
                              class_names=datamodule.classes, preprocessing=datamodule.preprocessing,
                              backbone_kwargs={"width": 0.5})
    trainer = L.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return module


def test_event_datamodule_on_a_dvsgesture_folder(tmp_path):
    torch.set_num_threads(1)
    dm = EventDataModule("dvsgesture", root=str(_dvsgesture(tmp_path)), window_size=100_000, max_steps=4,
                         downsample=4, val_fraction=0.34, batch_size=2)
    assert dm.classes[0] and dm.num_classes == 11 and dm.in_channels == 5
    pre = dm.preprocessing
    assert pre.window == WindowSpec.duration(100_000)
    assert pre.frame_size == (32, 32) and pre.sensor_size == (128, 128) and pre.downsample == 4
    assert pre.channels == 5 and pre.time_scale == dm.time_scale
    dm.setup("fit")
    dm.setup("test")
    assert (len(dm.split("train")), len(dm.split("val")), len(dm.split("test"))) == (4, 2, 2)
    assert set(dm.split("train").indices).isdisjoint(dm.split("val").indices)
    assert dm.time_scale == pytest.approx(0.1)  # 100 ms windows
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (2, 4, 5, 32, 32) and batch["mask"].all()
    module = _fit_one_batch(dm)
    assert float(module.model.time_scale) == pytest.approx(0.1)


def test_event_time_scale_needs_no_representation(tmp_path, monkeypatch):
    """The median dt comes from the window ends alone, equal to the items' own times (count windows
    give variable dt), without computing a single voxel grid."""
    options = dict(root=str(_dvsgesture(tmp_path)), window_mode="count", window_size=300, max_steps=6,
                   downsample=4, val_fraction=0.34)
    train = EventDataModule("dvsgesture", **options).split("train")
    expected = [train[i][1].numpy() for i in range(len(train))]
    dts = np.concatenate([known_dts(t) for t in expected])
    assert np.unique(np.round(dts, 6)).size > 1  # really variable
    fresh = EventDataModule("dvsgesture", **options)

    def refuse(*args, **kwargs):
        raise AssertionError("a representation was computed")

    monkeypatch.setattr(type(fresh.representation), "__call__", refuse)
    times = fresh.clip_times(fresh.split("train"))
    assert len(times) == len(expected) and all(np.array_equal(a, b) for a, b in zip(times, expected))
    assert fresh.time_scale == pytest.approx(float(np.median(dts[dts > 0])))


def test_event_datamodule_refuses_frames_windows(tmp_path):
    with pytest.raises(PerceptionError, match="data.window_mode: 'frames' windows need a frame clock"):
        EventDataModule("dvsgesture", root=str(tmp_path), window_mode="frames")


def test_video_folder_datamodule(tmp_path, h264):
    torch.set_num_threads(1)
    dm = VideoFolderDataModule(root=str(_videos(tmp_path, h264)), frames_per_clip=6, size=(32, 32), grey=True,
                               test_fraction=0.25, val_fraction=0.2, batch_size=2)
    assert dm.classes == ["a", "b"] and dm.in_channels == 1
    assert dm.preprocessing == Preprocessing.frames((32, 32), 1, dm.time_scale)
    dm.setup("fit")
    dm.setup("test")
    sizes = [len(dm.split(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == 8 and sizes[2] == 2 and min(sizes) >= 1
    assert dm.time_scale == pytest.approx(0.1)  # 10 fps
    batch = next(iter(dm.test_dataloader()))
    assert batch["x"].shape[2:] == (1, 32, 32) and batch["x"].shape[1] == 6
    _fit_one_batch(dm)


def test_synthetic_datamodule_frames_and_events():
    frames = SyntheticDataModule(modality="frames", train_size=8, val_size=8, test_size=8, size=32, steps=4)
    events = SyntheticDataModule(modality="events", train_size=8, val_size=8, test_size=8, size=32, steps=4, bins=3)
    assert frames.in_channels == 1 and events.in_channels == 3
    assert frames.preprocessing == Preprocessing.frames((32, 32), 1, frames.time_scale)
    assert events.preprocessing.representation["bins"] == 3 and events.preprocessing.channels == 3
    # the windows the clips are cut with: between frames; a stream without frames, the nominal period
    assert events.preprocessing.window == WindowSpec.frames(round(events.time_scale * 1e6), drop_last=True)
    frames.setup("fit")
    batch = next(iter(frames.train_dataloader()))
    assert batch["x"].shape == (8, 4, 1, 32, 32) and (batch["dt"] > 0).all()


def test_in_memory_cache_is_float16_inside_and_float32_outside():
    from perception.training.data import InMemory

    events = SyntheticDataModule(modality="events", train_size=4, val_size=4, test_size=4, size=32, steps=3)
    base = events.make_split("train").dataset
    cached = InMemory(base)
    first = cached[1]
    assert first["x"].dtype == torch.float32 and cached.items[1]["x"].dtype == torch.float16
    torch.testing.assert_close(first["x"], base[1]["x"], rtol=1e-3, atol=1e-3)
    assert cached[1]["y"] == base[1]["y"] and torch.equal(cached[1]["t"], base[1]["t"])
