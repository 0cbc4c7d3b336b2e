"""Observation -> model input, with the same code and options as training (the checkpoint's
``data.Preprocessing``).

Frames: resized to the training frame size (W, H), grey when trained with one channel, scaled to
[0, 1] -> (1, C, H, W).
Events: coordinates mapped from the sensor onto the training frame size (``data.rescale_events``, as
the training data did, downsampling included), then the checkpoint's representation over the
window's own time range (its bounds in microseconds, as the source cut it) -> (1, C, H, W).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from data import Preprocessing, rescale_events
from perception.errors import PerceptionError
from perception.streaming.sources import Observation


class Preprocessor:
    """Callable: ``Observation -> (tensor (1, C, H, W) float32, display)``, where ``display()`` makes
    the (H', W', 3) uint8 picture for sinks that show one (drawing a dense window's events costs more
    than the model step, so it is only done on demand)."""

    def __init__(self, preprocessing: Preprocessing, sensor_size: tuple[int, int] | None = None) -> None:
        if not isinstance(preprocessing, Preprocessing):
            raise PerceptionError(f"Preprocessor: expected a data.Preprocessing, got {type(preprocessing).__name__}")
        self.modality = preprocessing.modality
        self.frame_size = preprocessing.frame_size   # (W, H)
        if self.modality == "frames":
            self.grey = preprocessing.channels == 1
        else:
            self.representation = preprocessing.make_representation()
            self.sensor_size = tuple(sensor_size) if sensor_size is not None else self.frame_size
            # The training data's mapping; a source with another sensor is scaled by size instead.
            trained_on = preprocessing.sensor_size
            self.downsample = preprocessing.downsample if trained_on == self.sensor_size else 1
            self._scratch = None

    def __call__(self, obs: Observation):
        if obs.kind == "frame":
            return self._frame(obs.data)
        return self._events(obs)

    def _frame(self, frame: np.ndarray):
        if frame.ndim not in (2, 3):
            raise PerceptionError(f"frame: expected (H, W) or (H, W, 3) pixels, got shape {frame.shape}")
        size = self.frame_size
        resized = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if frame.shape[1::-1] != size else frame
        if self.grey:
            pixels = cv2.cvtColor(resized, cv2.COLOR_RGB2GRAY)[None] if resized.ndim == 3 else resized[None]
        else:
            pixels = np.repeat(resized[None], 3, 0) if resized.ndim == 2 else resized.transpose(2, 0, 1)
        x = torch.from_numpy(np.ascontiguousarray(pixels)).float().div_(255.0).unsqueeze(0)
        return x, lambda: frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)

    def _events(self, obs: Observation):
        events = obs.data
        width, height = self.frame_size
        if self.sensor_size != self.frame_size and len(events):
            if self._scratch is None or len(self._scratch) < len(events):
                # reused from step to step: a fresh array per dense window costs more in page faults
                # than the mapping itself
                grown = 0 if self._scratch is None else 2 * len(self._scratch)
                self._scratch = np.empty(max(len(events), grown), dtype=events.dtype)
            events = rescale_events(events, self.sensor_size, self.frame_size, self.downsample, out=self._scratch)
        if obs.span_us is None:
            raise PerceptionError("events observation: no window bounds (span_us); make it with Observation.of_window")
        t_start, t_end = obs.span_us
        if len(events):  # merged live windows: the range covers them all
            t_start = min(t_start, int(events["t"][0]))
            t_end = max(t_end, int(events["t"][-1]))
        grid = self.representation(events, (width, height), t_start=t_start, t_end=t_end)
        return torch.from_numpy(grid).unsqueeze(0), lambda: event_image(events, width, height)


def event_image(events, width: int, height: int) -> np.ndarray:
    """An (H, W, 3) uint8 picture of a window: ON events blue, OFF events red, on white."""
    image = np.full((height, width, 3), 255, np.uint8)
    if len(events):
        on = events["p"] > 0
        image[events["y"][on], events["x"][on]] = (40, 90, 220)
        image[events["y"][~on], events["x"][~on]] = (220, 50, 40)
    return image
