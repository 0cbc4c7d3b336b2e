"""The streaming runner: the model step by step over a source, carrying the head's state, fed the real dt.

dt of a step is the time since the previous processed observation (seconds, from the source's own
timestamps, so frames a live source skipped make it longer); the first step's follows
``data.timing.first_dt``, the rule training batches follow: an event window's duration, or for a
frame the checkpoint's time scale (the nominal period it was trained at). Event windows' dts come
from their integer microsecond bounds (exact even at a camera's epoch timestamps, where seconds as
floats are not), converted once.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from data import Window, s_to_us, step_dt, us_to_s
from perception.checkpoint import LoadedCheckpoint
from perception.streaming.preprocess import Preprocessor
from perception.streaming.sources import Observation, Source


@dataclass
class StepResult:
    """One step's output, with the observation's display image for sinks."""

    index: int
    t: float
    dt: float
    label: str
    score: float
    probs: np.ndarray          # (K,)
    skipped: int
    latency_ms: float          # preprocessing + model, this step
    display: Callable[[], np.ndarray]  # makes the (H, W, 3) uint8 picture of the observation
    n_events: int | None = None

    @property
    def image(self) -> np.ndarray:
        return self.display()

    def record(self) -> dict:
        """The JSON-lines record of this step."""
        out = {"step": self.index, "t": round(self.t, 6), "dt": round(self.dt, 6), "label": self.label,
               "score": _number(self.score), "probs": [_number(p) for p in self.probs],
               "skipped": self.skipped, "latency_ms": round(self.latency_ms, 3)}
        if self.n_events is not None:
            out["events"] = self.n_events
        return out


def _number(value: float) -> float | None:
    """A probability for JSON: rounded to 6 decimals; None (null) when not finite, which JSON cannot hold."""
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


class Reservoir:
    """A uniform sample of at most ``size`` values from a stream of any length (Vitter's algorithm R):
    latency percentiles of a stream of days take the same memory as those of a minute."""

    def __init__(self, size: int = 10_000, seed: int = 0) -> None:
        self.values = np.empty(size)
        self.seen = 0
        self.rng = np.random.default_rng(seed)

    def add(self, value: float) -> None:
        if self.seen < len(self.values):
            self.values[self.seen] = value
        else:
            slot = int(self.rng.integers(0, self.seen + 1))
            if slot < len(self.values):
                self.values[slot] = value
        self.seen += 1

    def sample(self) -> np.ndarray:
        return self.values[: min(self.seen, len(self.values))]


class StreamRunner:
    """Runs a loaded checkpoint over a source; iterate ``run()`` for StepResults."""

    def __init__(self, checkpoint: LoadedCheckpoint, source: Source, device: str = "cpu") -> None:
        self.model, self.classes = checkpoint.model.to(device).eval(), checkpoint.classes
        self.preprocess = Preprocessor(checkpoint.preprocessing, source.sensor_size)
        self.source, self.device = source, device
        self.nominal_dt = checkpoint.preprocessing.time_scale
        self._nominal_us = s_to_us(self.nominal_dt)  # the same period, for event windows' integer bounds
        self.latencies = Reservoir()
        self.observed = 0        # observations processed (frames or windows)
        self.events = 0          # events processed (event sources)
        self.skipped = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self._last_us: int | None = None  # the previous event window's end
        self._warm_up()

    @torch.inference_mode()
    def _warm_up(self) -> None:
        """One throwaway step (compiles the event kernels, sizes torch's buffers) so that the first
        real step's latency is the steady one."""
        from data.events import make_events

        pre = self.preprocess
        if pre.modality == "frames":
            width, height = pre.frame_size
            obs = Observation(0.0, "frame", np.zeros((height, width, 3), np.uint8))
        else:
            width, height = pre.sensor_size
            events = make_events([0, width - 1], [0, height - 1], [0, 1000], [0, 1])
            obs = Observation.of_window(Window(events, 0, 1000))
        x, _ = pre(obs)
        self.model.step(x.to(self.device), torch.full((1, 1), self.nominal_dt, device=self.device))

    def _dt(self, obs: Observation) -> float:
        if obs.span_us is None:
            return step_dt(obs.t, self.last_t, obs.t_start, self.nominal_dt)
        start, end = obs.span_us
        dt_us = step_dt(end, self._last_us, start, self._nominal_us)
        self._last_us = end
        return us_to_s(dt_us)

    def inputs(self, realtime: bool = False, max_steps: int | None = None):
        """(observation, x (1, C, H, W), display() -> image, dt seconds) per step, in stream order."""
        wall_start = time.perf_counter()
        for index, obs in enumerate(self.source):
            if max_steps is not None and index >= max_steps:
                break
            if realtime and not self.source.live:  # pace a recording at its recorded speed
                if self.first_t is None:
                    self.first_t, wall_start = obs.t, time.perf_counter()
                ahead = (obs.t - self.first_t) - (time.perf_counter() - wall_start)
                if ahead > 0:
                    time.sleep(ahead)
            self._started = time.perf_counter()
            x, image = self.preprocess(obs)
            dt = self._dt(obs)
            self.first_t = obs.t if self.first_t is None else self.first_t
            self.last_t = obs.t
            yield obs, x, image, dt

    @torch.inference_mode()
    def run(self, realtime: bool = False, max_steps: int | None = None) -> Iterator[StepResult]:
        state = None
        for index, (obs, x, image, dt) in enumerate(self.inputs(realtime, max_steps)):
            logits, state = self.model.step(x.to(self.device), torch.tensor([[dt]], device=self.device), state)
            probs = torch.softmax(logits[0].float(), 0).cpu().numpy()
            latency = (time.perf_counter() - self._started) * 1e3
            k = int(probs.argmax())
            self.latencies.add(latency)
            self.observed += 1
            self.skipped += obs.skipped
            n_events = len(obs.data) if obs.kind == "events" else None
            self.events += n_events or 0
            yield StepResult(index, obs.t, dt, self.classes[k] if k < len(self.classes) else str(k), float(probs[k]),
                             probs, obs.skipped, latency, image, n_events)

    def summary(self, wall_seconds: float) -> dict:
        lat = self.latencies.sample() if self.latencies.seen else np.zeros(1)
        span = (self.last_t - self.first_t) if self.first_t is not None and self.last_t is not None else 0.0
        out = {"steps": self.observed, "skipped": self.skipped, "wall_s": wall_seconds, "stream_s": span,
               "steps_per_s": self.observed / wall_seconds if wall_seconds > 0 else float("nan"),
               "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p90": float(np.percentile(lat, 90)),
               "latency_ms_p99": float(np.percentile(lat, 99))}
        if self.source.kind == "events":
            out["events"] = self.events
            out["events_per_s"] = self.events / wall_seconds if wall_seconds > 0 else float("nan")
        return out
