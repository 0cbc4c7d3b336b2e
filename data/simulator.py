"""An event-camera simulator: frames with timestamps in, canonical events out.

Model (our own, in the spirit of the DVS pixel): every pixel compares its log intensity
``L = log(I + eps)`` with a reference level. Between two frames ``L`` is taken to change linearly
in time; each time it crosses ``ref + C_on`` (``ref - C_off``) the pixel emits an ON (OFF) event at
the interpolated crossing time and the reference moves by one threshold, so a change spanning several
thresholds gives several events per frame interval. The thresholds ``C_on``, ``C_off`` vary from pixel
to pixel (Gaussian spread, drawn once per simulator state). A pixel that has emitted an event stays
silent for a refractory period; crossings in that period are lost, but the reference still moves, so
the pixel keeps tracking the signal. Background noise events arrive as a Poisson process per pixel and
do not touch the references or the refractory clocks.

Everything is vectorised over pixels; the only Python loops run over the frames and over the k-th
threshold crossing of a frame interval (k = 1 .. the largest number of crossings of any pixel).

Streaming: ``simulate_events`` returns a ``SimulatorState`` with which the next chunk of frames
continues where the last one stopped. Feeding frames in chunks, carrying the state and passing the
same ``Generator`` (continuing, not re-seeded), gives exactly (bit for bit) the events of one call over
all frames, noise included: the thresholds are drawn once when the state is created, and the noise of
each frame interval is drawn when that interval is processed, in the same order either way. With noise
off the generator is used only to draw the thresholds.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from data.errors import DataError
from data.events import EVENT_DTYPE, Events

_NO_EVENT_US = np.iinfo(np.int64).min // 4  # "never fired": far in the past, yet safe to subtract from
_LUMA = {"rgb": (0.299, 0.587, 0.114), "bgr": (0.114, 0.587, 0.299)}  # ITU-R BT.601, as OpenCV uses


@dataclass(frozen=True)
class SimulatorConfig:
    """Parameters of the simulated sensor.

    Attributes:
        threshold_on: mean ON contrast threshold C+ (log-intensity units).
        threshold_off: mean OFF contrast threshold C- (positive number).
        threshold_sigma: standard deviation of the per-pixel thresholds around their means.
        threshold_min: thresholds drawn below this are raised to it (keeps them positive).
        refractory_us: after an event, a pixel emits nothing for this long (microseconds; 0 = off).
        noise_rate_hz: background noise events per pixel per second, ON and OFF together (0 = off).
        noise_on_fraction: share of the noise events that are ON.
        eps: added to the intensity (1.0 = white) before the log, so dark pixels stay finite and
            their sensor noise does not explode into events.
        color_order: channel order of (T, H, W, 3) frames: "rgb", or "bgr" for OpenCV frames.
    """

    threshold_on: float = 0.2
    threshold_off: float = 0.2
    threshold_sigma: float = 0.03
    threshold_min: float = 0.01
    refractory_us: int = 100
    noise_rate_hz: float = 0.0
    noise_on_fraction: float = 0.5
    eps: float = 1e-2
    color_order: str = "rgb"

    def __post_init__(self) -> None:
        for name in ("threshold_on", "threshold_off", "threshold_min", "eps"):
            if not getattr(self, name) > 0:
                raise DataError(f"SimulatorConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("threshold_sigma", "refractory_us", "noise_rate_hz"):
            if not getattr(self, name) >= 0:
                raise DataError(f"SimulatorConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.noise_on_fraction <= 1:
            raise DataError(f"SimulatorConfig.noise_on_fraction must be in [0, 1], got {self.noise_on_fraction}")
        if self.color_order not in _LUMA:
            raise DataError(f"SimulatorConfig.color_order must be one of {sorted(_LUMA)}, got {self.color_order!r}")


@dataclass(frozen=True)
class SimulatorState:
    """Everything the simulator remembers between frames. Arrays are (H, W); never modified in place.

    Attributes:
        reference: log level at each pixel's last threshold crossing (or its first frame).
        threshold_on, threshold_off: the per-pixel thresholds, drawn once.
        log_frame: log intensity of the last frame.
        time_us: timestamp of the last frame (microseconds).
        last_event_us: time of each pixel's last emitted event (far in the past if none).
    """

    reference: np.ndarray
    threshold_on: np.ndarray
    threshold_off: np.ndarray
    log_frame: np.ndarray
    time_us: int
    last_event_us: np.ndarray = field(repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the frames this state belongs to."""
        return self.log_frame.shape

    def copy(self) -> SimulatorState:
        return SimulatorState(
            self.reference.copy(), self.threshold_on.copy(), self.threshold_off.copy(),
            self.log_frame.copy(), int(self.time_us), self.last_event_us.copy(),
        )


def log_intensity(frames: np.ndarray, config: SimulatorConfig = SimulatorConfig()) -> np.ndarray:
    """``log(I + eps)`` of grey (T, H, W) or colour (T, H, W, 3) frames, as float32 (T, H, W).

    uint8 frames are divided by 255 and uint16 by 65535; float frames are taken as intensities with
    1.0 = white. Colour is turned into luminance (BT.601 weights) first.
    """
    frames = _check_frames(np.asarray(frames), None)
    return _log(frames, config, colour=frames.ndim == 4)


def _log(frames: np.ndarray, config: SimulatorConfig, colour: bool) -> np.ndarray:
    """log intensity of frames (..., H, W) or, when ``colour``, (..., H, W, 3) -> float32 (..., H, W)."""
    if frames.dtype == np.uint8 and not colour and frames.size:
        import cv2  # its table lookup is several times faster than numpy's, which beats the log

        flat = np.ascontiguousarray(frames).reshape(-1, frames.shape[-1])                # 2-D: one channel
        return cv2.LUT(flat, _uint8_table(config.eps)).reshape(frames.shape)
    if frames.dtype == np.uint8:
        scale = 1 / 255.0
    elif frames.dtype == np.uint16:
        scale = 1 / 65535.0
    elif frames.dtype.kind == "f" or frames.dtype == np.bool_:
        scale = 1.0
    else:
        raise DataError(f"frames: dtype {frames.dtype} is not supported (use uint8, uint16 or float)")
    intensity = frames.astype(np.float32) * np.float32(scale)
    if colour:
        intensity = intensity @ np.asarray(_LUMA[config.color_order], dtype=np.float32)
    return np.log(intensity + np.float32(config.eps))


@functools.lru_cache(maxsize=8)
def _uint8_table(eps: float) -> np.ndarray:
    return np.log(np.arange(256, dtype=np.float64) / 255.0 + eps).astype(np.float32)


def initial_state(
    frame: np.ndarray, time: float, *, config: SimulatorConfig = SimulatorConfig(), rng: np.random.Generator
) -> SimulatorState:
    """A fresh state whose references are the log intensity of ``frame`` (H, W) or (H, W, 3) at ``time`` s.

    Draws the per-pixel thresholds from ``rng`` (on first, then off).
    """
    frames = _check_frames(np.asarray(frame)[None], None)
    log_frame = _log(frames, config, colour=frames.ndim == 4)[0]
    shape = log_frame.shape
    return SimulatorState(
        reference=log_frame.copy(),
        threshold_on=_draw_thresholds(rng, shape, config.threshold_on, config),
        threshold_off=_draw_thresholds(rng, shape, config.threshold_off, config),
        log_frame=log_frame,
        time_us=int(_to_us(np.asarray([time], dtype=np.float64), "time")[0]),
        last_event_us=np.full(shape, _NO_EVENT_US, dtype=np.int64),
    )


def simulate_events(
    frames: np.ndarray,
    times: np.ndarray,
    *,
    config: SimulatorConfig = SimulatorConfig(),
    rng: np.random.Generator,
    state: SimulatorState | None = None,
) -> tuple[Events, SimulatorState]:
    """Events an event camera would see while watching ``frames``.

    Args:
        frames: (T, H, W) grey or (T, H, W, 3) colour frames, uint8, uint16 or float (1.0 = white).
        times: (T,) timestamps in seconds, non-decreasing (and not before ``state``'s last frame).
        config: the sensor's parameters; keep it the same for every chunk of one stream.
        rng: draws the thresholds (when ``state`` is None) and the noise events.
        state: where the previous chunk left off; None starts a new stream, whose first frame only
            sets the references (it produces no events).

    Returns:
        (events, state): canonical events (N,) sorted by t (microseconds, on the same clock as
        ``times``), and the state to pass with the next chunk. The given state is not modified.
    """
    frames = _check_frames(np.asarray(frames), state)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != (len(frames),):
        raise DataError(f"times: expected shape ({len(frames)},) to match the frames, got {times.shape}")
    times_us = _to_us(times, "times")
    if state is None:
        if len(frames) == 0:
            raise DataError("frames: a new stream needs at least one frame")
        state = initial_state(frames[0], times[0], config=config, rng=rng)
        frames, times_us = frames[1:], times_us[1:]
    else:
        state = state.copy()
    if times_us.size and times_us[0] < state.time_us:
        raise DataError(f"times: the chunk starts at {times_us[0]} us, before the previous frame at {state.time_us} us")
    events, time_us = _advance(state, frames, times_us, config, rng)
    return events, SimulatorState(
        state.reference, state.threshold_on, state.threshold_off, state.log_frame, time_us, state.last_event_us
    )


class EventSimulator:
    """The simulator for one live stream: feed it frames one at a time (a webcam, a video file).

    ``feed(frame, t)`` gives the same events as ``simulate_events`` over all frames so far, with the
    same generator. The first frame only sets the references and returns no events.
    """

    def __init__(self, config: SimulatorConfig, rng: np.random.Generator):
        if not isinstance(rng, np.random.Generator):
            raise DataError(f"EventSimulator: rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self.config = config
        self.rng = rng
        self._state: SimulatorState | None = None

    @property
    def state(self) -> SimulatorState | None:
        """A copy of the current state (None before the first frame)."""
        return None if self._state is None else self._state.copy()

    def reset(self) -> None:
        """Forget the stream; the next frame starts a new one (with new thresholds)."""
        self._state = None

    def feed(self, frame: np.ndarray, t: float) -> Events:
        """Events (N,) between the previous frame and ``frame`` (H, W) or (H, W, 3) taken at ``t`` s."""
        if self._state is None:
            self._state = initial_state(frame, t, config=self.config, rng=self.rng)
            return np.empty(0, dtype=EVENT_DTYPE)
        frames = _check_frames(np.asarray(frame)[None], self._state)
        t_us = _to_us(np.asarray([t], dtype=np.float64), "t")
        if t_us[0] < self._state.time_us:
            raise DataError(f"t: {t_us[0]} us is before the previous frame at {self._state.time_us} us")
        # The simulator owns its state, so it advances it in place instead of copying every frame.
        events, time_us = _advance(self._state, frames, t_us, self.config, self.rng)
        s = self._state
        self._state = SimulatorState(s.reference, s.threshold_on, s.threshold_off, s.log_frame, time_us, s.last_event_us)
        return events


def apply_refractory(events: Events, refractory_us: int) -> Events:
    """Drop each event that comes less than ``refractory_us`` after the previous kept event of its pixel.

    The simulator's own refractory rule, as a filter: since lost crossings still move the reference,
    simulating with no refractory period and filtering afterwards gives the same events.

    Args:
        events: (N,) canonical events sorted by t.
        refractory_us: the period in microseconds (0 keeps everything).

    Returns:
        (M,) the kept events, in their original order (a new array).
    """
    if refractory_us < 0:
        raise DataError(f"apply_refractory: refractory_us must be >= 0, got {refractory_us}")
    if refractory_us == 0 or events.size < 2:
        return events.copy()
    pixel = (events["y"].astype(np.int64) << 16) | events["x"]
    order = np.argsort(pixel, kind="stable")                              # by pixel, then time (input order)
    t = events["t"][order]
    starts = np.flatnonzero(np.diff(pixel[order], prepend=-1))            # (M,) first row of each pixel
    count = np.diff(np.append(starts, t.size))
    owner = np.repeat(np.arange(starts.size), count)
    keep_sorted, _ = _refractory(t, owner, starts, count, np.full(starts.size, _NO_EVENT_US), refractory_us)
    keep = np.empty(events.size, dtype=bool)
    keep[order] = keep_sorted
    return events[keep]


def _advance(
    state: SimulatorState, frames: np.ndarray, times_us: np.ndarray, config: SimulatorConfig, rng: np.random.Generator
) -> tuple[Events, int]:
    """Run frames (T, H, W[, 3]) at times_us (T,) through ``state``, updating its arrays in place.

    Returns the events and the time of the last frame.
    """
    ref = state.reference.reshape(-1)            # (P,) views: updates land in the state's arrays
    thr_on = state.threshold_on.reshape(-1)
    thr_off = state.threshold_off.reshape(-1)
    neg_thr_off = -thr_off
    last_event = state.last_event_us.reshape(-1)
    log_prev = state.log_frame.reshape(-1).copy()
    colour = frames.ndim == 4
    t_prev = int(state.time_us)
    packing = _Packing(*state.shape)
    intervals: list[tuple[int, np.ndarray]] = []  # (t0, sorted event keys) per frame interval
    for frame, t_next in zip(frames, times_us.tolist()):
        if t_next - t_prev > packing.longest_us:
            raise DataError(f"times: a gap of {(t_next - t_prev) / 1e6:.0f} s between frames is too long to simulate")
        log_next = _log(frame, config, colour).reshape(-1)
        change = log_next - ref
        pixels = np.flatnonzero((change >= thr_on) | (change <= neg_thr_off))
        pieces = []  # (pixel, t, p) triples
        if pixels.size:
            pieces.append(_crossings(pixels, change[pixels], log_prev[pixels], log_next[pixels], ref, thr_on,
                                     thr_off, last_event, t_prev, t_next, config.refractory_us))
        if config.noise_rate_hz > 0:
            pieces.append(_noise(rng, ref.size, t_prev, t_next, config))
        if pieces:
            intervals.append((t_prev, packing.sorted_keys(pieces, t_prev)))
        log_prev, t_prev = log_next, t_next
    state.log_frame.reshape(-1)[:] = log_prev
    return packing.decode(intervals), t_prev


def _crossings(pixels, change, log0, log1, ref, thr_on, thr_off, last_event, t0: int, t1: int, refractory_us: int):
    """Threshold crossings of the pixels (M,) that changed by at least one threshold since their reference.

    Updates ``ref`` and ``last_event`` for those pixels; returns (pixel, t, p) arrays (E,) of the
    events, grouped by pixel and in time order within a pixel.
    """
    on = change > 0
    step = np.where(on, thr_on[pixels], thr_off[pixels])                  # (M,) threshold crossed
    count = np.floor(np.abs(change) / step).astype(np.int64)              # (M,) crossings, >= 1
    sign = np.where(on, np.float32(1), np.float32(-1))
    ref0 = ref[pixels]
    new_ref = ref0 + sign * count.astype(np.float32) * step               # float32, as stored in ref
    # Rounding can leave a full threshold between the new reference and log1; count it here, or the
    # next (unchanged) frame would fire it. The test below is the same float32 expression as the caller's.
    rest = log1 - new_ref
    missed = np.where(on, rest >= step, rest <= -step)
    if missed.any():
        count[missed] += 1
        new_ref[missed] = ref0[missed] + sign[missed] * count[missed].astype(np.float32) * step[missed]
    ref[pixels] = new_ref

    # One row per crossing (E,): crossing k of a pixel is where the linear path log0 -> log1 reaches
    # ref0 + sign * k * step.
    owner = np.repeat(np.arange(pixels.size), count)                      # (E,) index into the M pixels
    first = np.cumsum(count) - count                                      # (M,) each pixel's first row
    k = np.arange(owner.size) - first[owner] + 1                          # (E,) 1, 2, ... per pixel
    slope = (log1 - log0).astype(np.float64)
    flat = slope == 0                                                     # only after rounding: put at t1
    slope[flat] = 1.0
    offset = (ref0.astype(np.float64) - log0) / slope                     # (M,) path fraction per unit of level
    delta = (sign * step).astype(np.float64) / slope
    frac = np.clip(offset[owner] + k * delta[owner], 0.0, 1.0)
    frac[flat[owner]] = 1.0
    t = t0 + np.rint(frac * float(t1 - t0)).astype(np.int64)              # (E,) microseconds
    last = first + count - 1                                              # (M,) each pixel's last row
    keep = None
    if refractory_us > 0:
        previous = np.empty_like(t)
        previous[1:] = t[:-1]
        previous[first] = last_event[pixels]
        if (t - previous < refractory_us).any():
            keep, latest = _refractory(t, owner, first, count, last_event[pixels], refractory_us)
            last_event[pixels] = latest
    if keep is None:
        last_event[pixels] = t[last]
        return pixels[owner], t, on[owner]
    return pixels[owner[keep]], t[keep], on[owner[keep]]


def _refractory(t, owner, first, count, latest, refractory_us: int):
    """Which crossings (E,) survive the refractory period, and each pixel's last event time (M,).

    A crossing is dropped when it comes less than ``refractory_us`` after the pixel's last *kept*
    event, so it is decided in order: one vectorised pass per k, over the pixels in conflict only.
    """
    keep = np.ones(t.size, dtype=bool)
    latest = latest.copy()
    previous = np.concatenate([latest[:1], t[:-1]])
    previous[first] = latest
    conflicted = np.zeros(count.size, dtype=bool)
    conflicted[owner[t - previous < refractory_us]] = True
    pixels = np.flatnonzero(conflicted)                                   # (m,) into the M pixels
    ok = np.flatnonzero(~conflicted)
    latest[ok] = t[first[ok] + count[ok] - 1]                            # no conflict: the last crossing
    for k in range(int(count[pixels].max()) if pixels.size else 0):
        pixels = pixels[count[pixels] > k]
        rows = first[pixels] + k
        allowed = t[rows] - latest[pixels] >= refractory_us
        keep[rows[~allowed]] = False
        latest[pixels[allowed]] = t[rows[allowed]]
    return keep, latest


def _noise(rng: np.random.Generator, n_pixels: int, t0: int, t1: int, config: SimulatorConfig):
    """Background noise in (t0, t1]: a Poisson number of events at uniform pixels and times."""
    span = t1 - t0
    count = int(rng.poisson(config.noise_rate_hz * n_pixels * span * 1e-6)) if span > 0 else 0
    pix = rng.integers(0, n_pixels, count)
    t = t0 + rng.integers(1, span + 1, count) if span > 0 else np.zeros(0, dtype=np.int64)
    p = rng.random(count) < config.noise_on_fraction
    return pix, t.astype(np.int64), p


class _Packing:
    """Events of one frame interval packed into unique int64 keys: (t - t0 | y | x | p) bit fields.

    Sorting the keys orders the events by time, then y, x and polarity, whatever order they were
    generated in, and sorting plain integers then unpacking them with shifts is several times faster
    than an argsort followed by gathers.
    """

    def __init__(self, height: int, width: int):
        self.width = width
        self.x_bits = max(1, (width - 1).bit_length())
        self.y_bits = max(1, (height - 1).bit_length())
        self.t_shift = self.x_bits + self.y_bits + 1
        self.longest_us = (1 << (63 - self.t_shift)) - 1

    def sorted_keys(self, pieces, t0: int) -> np.ndarray:
        pix = np.concatenate([piece[0] for piece in pieces])
        t = np.concatenate([piece[1] for piece in pieces])
        p = np.concatenate([piece[2] for piece in pieces]).astype(np.int64)
        y, x = np.divmod(pix, self.width)
        keys = ((t - t0) << self.t_shift) | (y << (self.x_bits + 1)) | (x << 1) | p
        keys.sort()
        return keys

    def decode(self, intervals: list[tuple[int, np.ndarray]]) -> Events:
        """Canonical events (N,) from the sorted keys of consecutive frame intervals."""
        events = np.empty(sum(keys.size for _, keys in intervals), dtype=EVENT_DTYPE)
        start = 0
        for t0, keys in intervals:
            part = events[start:start + keys.size]
            start += keys.size
            part["t"] = (keys >> self.t_shift) + t0
            part["y"] = (keys >> (self.x_bits + 1)) & ((1 << self.y_bits) - 1)
            part["x"] = (keys >> 1) & ((1 << self.x_bits) - 1)
            part["p"] = keys & 1
        return events


def _draw_thresholds(rng: np.random.Generator, shape, mean: float, config: SimulatorConfig) -> np.ndarray:
    values = mean + config.threshold_sigma * rng.standard_normal(shape)
    return np.maximum(values, config.threshold_min).astype(np.float32)


def _check_frames(frames: np.ndarray, state: SimulatorState | None) -> np.ndarray:
    colour = frames.ndim == 4 and frames.shape[-1] == 3
    if frames.ndim != 3 and not colour:
        raise DataError(f"frames: expected (T, H, W) grey or (T, H, W, 3) colour, got shape {frames.shape}")
    if state is not None and frames.shape[1:3] != state.shape:
        raise DataError(f"frames: size {frames.shape[1:3]} (H, W) differs from the stream's {state.shape}")
    if frames.dtype.kind == "f" and frames.size and not (np.isfinite(frames).all() and frames.min() >= 0):
        raise DataError("frames: float intensities must be finite and >= 0 (1.0 = white)")
    return frames


def _to_us(times: np.ndarray, name: str) -> np.ndarray:
    """Seconds (T,) -> integer microseconds (T,), checking they are finite and non-decreasing."""
    if not np.isfinite(times).all():
        raise DataError(f"{name}: timestamps must be finite")
    times_us = np.rint(times * 1e6).astype(np.int64)
    if times_us.size > 1 and (np.diff(times_us) < 0).any():
        i = int(np.flatnonzero(np.diff(times_us) < 0)[0]) + 1
        raise DataError(f"{name}: timestamps go backwards at frame {i} ({times[i - 1]} -> {times[i]} s)")
    return times_us
