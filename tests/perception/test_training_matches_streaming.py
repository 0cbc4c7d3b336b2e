"""A clip of the built-in dataset and the same stretch of a stream give the same windows, the same
inputs and the same dts: the dataset and ``perception infer`` cut with one cutter and one spec (the
checkpoint's preprocessing), and batches and the runner share one first-dt rule (``data.timing``)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from data import s_to_us
from data.collate import collate_clips
from perception.checkpoint import LoadedCheckpoint
from perception.model import PerceptionModel
from perception.streaming.runner import StreamRunner
from perception.streaming.sources import Source, event_windows
from perception.training.data import SyntheticDataModule


def _readouts(events: np.ndarray, frames_us: np.ndarray, rng: np.random.Generator):
    """The simulated camera as a stream of (events, clock in us): at every frame, the events up to and
    including its time (as the simulator stamps them) in chunks of random sizes, the clock reaching
    the frame with the last chunk."""
    start, clock = 0, int(frames_us[0])
    for frame in frames_us:
        end = int(np.searchsorted(events["t"], frame, side="right"))
        cuts = np.sort(rng.integers(start, end + 1, 3))
        for lo, hi in zip([start, *cuts], [*cuts]):
            yield events[lo:hi], clock
        yield events[cuts[-1]:end], int(frame)
        start, clock = end, int(frame)


@pytest.fixture(scope="module")
def datamodule():
    torch.set_num_threads(1)
    return SyntheticDataModule(modality="events", train_size=8, val_size=8, test_size=8, size=32, steps=6, bins=3)


def test_a_clip_and_the_same_stream_give_the_same_windows_inputs_and_dts(datamodule):
    pre = datamodule.preprocessing
    assert pre.window.mode == "frames"
    dataset = datamodule.split("train").dataset  # the clips themselves (not the float16 cache)
    model = PerceptionModel(pre.channels, datamodule.num_classes, backbone_kwargs={"width": 0.5},
                            time_scale=pre.time_scale).eval()
    checkpoint = LoadedCheckpoint(model, datamodule.classes, pre, Path("memory"), {})
    rng = np.random.default_rng(0)
    batch = collate_clips([dataset[i] for i in range(4)], default_period=pre.time_scale)
    for index in range(4):
        clip = dataset.clips[index]
        frames_us = s_to_us(np.concatenate([[-clip.period], clip.t]))
        observations = list(event_windows(_readouts(clip.events, frames_us, rng), pre.window, frame_clock=True))
        windows = dataset.windows(index)
        assert [o.span_us for o in observations] == [(w.t_start_us, w.t_end_us) for w in windows]
        for o, w in zip(observations, windows):
            np.testing.assert_array_equal(o.data, w.events)
        source = Source("clip", "events", False, iter(observations), pre.sensor_size)
        steps = list(StreamRunner(checkpoint, source).inputs())
        x = torch.cat([step[1] for step in steps])
        torch.testing.assert_close(x, dataset[index]["x"], rtol=0, atol=0)
        np.testing.assert_allclose([step[3] for step in steps], batch["dt"][index].numpy(), rtol=1e-6, atol=1e-9)
        assert steps[0][3] == pytest.approx(clip.period, abs=1e-6)  # the first window's duration


def test_a_stream_without_frames_is_cut_at_the_nominal_period(datamodule):
    pre = datamodule.preprocessing
    clip = datamodule.split("train").dataset.clips[0]
    observations = list(event_windows([clip.events], pre.window))
    spans = np.diff(np.array([o.span_us for o in observations]), axis=1).ravel()
    assert (spans == s_to_us(pre.time_scale)).all()
