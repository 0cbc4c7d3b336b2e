"""The built-in dataset: short clips of a moving shape, as frames or as simulated events.

Classes come in pairs; within a pair the two classes differ in one way only, named by the pair's
task, so evaluation can report accuracy per task (``TASKS`` says which tasks need time). The default
set has one control task and three that need time; in each of those, no single frame or event
window tells the pair apart (tests and ``perception evaluate``'s CNN-alone column check it):

- ``appearance`` (the control, needs no time): ``square`` (filled) / ``circle`` (an outline: the
  pair should differ at the coarse resolution a small CNN sees) drift the same way (random direction
  and speed); a single frame tells them apart.
- ``order``: ``square_then_ring`` / ``ring_then_square``: two static shapes, each at its own random
  place, are shown one after the other with a blank gap between them (each visible 1.5 to 3
  periods, the gap 1.5 to 3 periods, at a random start). Every frame, and every event window (an
  onset or an offset of one shape), is a plausible one of the partner: only the order of the
  observations tells them apart, and an average over steps forgets it.
- ``duration``: ``flash_short`` / ``flash_long``: a static cross is shown once, for a short or a
  long time. The number of periods it stays visible, s, is log-uniform on [2, 5] in both classes
  (so the count of frames or windows that see it is distributed alike); the duration D in seconds is
  log-uniform on the lower or upper quarter (in log scale) of the range every s / D stays inside
  ``fps_range``; the clip's frame rate is s / D. Only the real time between observations separates
  the classes.
- ``speed``: ``fall_slow`` / ``fall_fast`` (a cross moving down). The displacement per step, in
  pixels, has the same distribution in both classes; the frame rates differ, so only the displacement
  divided by the real time between frames separates them. Construction: d (px/step) is log-uniform
  on [d0, 4 d0] for both (the clip travels 14 % to 56 % of the image); the speed v (px/s) is
  log-uniform on a slow or a fast band of [4 d0 f_min, d0 f_max] (its lower or upper quarter in log
  scale: fast is at least (f_max / 4 f_min) ** 0.5 = 1.7x slow at the default 5..60 fps); the
  clip's frame rate is v / d, which stays inside ``fps_range``. Equal displacement distributions
  force the frame rates to differ, but they overlap widely (slow 5..24 fps, fast 13..60 fps by
  default): the displacement alone is at chance and the frame rate alone reaches about 80 %.
- ``direction`` (not in the default set): ``swipe_left`` / ``swipe_right`` (an upright slab crossing
  the image, like the edge of a hand) and ``rotate_cw`` / ``rotate_ccw`` (a clock hand, a stick with a
  ball at its tip, sweeping about its pivot through 75 to 160 degrees around "up", clockwise as seen
  on screen with y down). As frames, a clip played backwards is a clip of the partner, so only the
  order of frames tells them apart; as events, one window already shows which way an edge moves
  (the time bins of a voxel grid), so the task does not need time there.

Because a window's duration must not give the time away, the built-in event sensor has no
background noise (its count per window grows with the window's duration: with it, the CNN alone
reached 81 % on the speed pair); the ``noise`` test condition adds it.

Every clip draws its own frame rate (log-uniform over ``fps_range``, except the speed pair, above) and
jitters each observation after the first by up to +-jitter/2 periods, so dt varies within and across
clips. Position, size, contrast (brighter or darker than the background), background level and
texture, and the frames' pixel noise are random too.

Events: each interval between observations is rendered at ``substeps`` evenly spaced frames (motion
is analytic, so any time can be drawn) and run through ``data.simulator``, with one more interval of
one nominal period before t = 0, so that the first step has a window too. The simulated camera is
read out at every observation: the clip is cut by ``data.windows.WindowCutter`` with the frames
spec of ``window_spec`` (the one the data module's preprocessing declares, so ``perception infer``
cuts a simulated stream the same way), ticking at the observation times. Step i's representation
is built from the events in [t[i-1], t[i]) (before the first step, t = -period), with the window's
bounds as its time range; events stamped exactly at the last observation come after every window
and are dropped (``drop_last``). Events are in microseconds on the clip's clock, so the first
window's are negative. An events item's times are its windows' ends counted from the first
window's start (t[i] + period), as every event clip counts them (``data.timing``): its first step
covers one period, and says so (dt[0] = t[0]).
The frames that feed the simulator carry no pixel noise: the sensor's noise is the simulator's.

Determinism: clip ``i`` of a split depends only on (seed, split, i, config), through its own
generator ``numpy.random.default_rng([seed, split code, i])``; splits use different codes, so
train, val and test never share a stream. The frames and the events of one clip show the same scene.
Labels cycle through the classes (clip i has class i mod K), so every split is balanced. The dataset
generates all its clips when built and keeps them in memory (frames as uint8, events as event arrays);
epochs reuse them, and DataLoader workers inherit them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from data.augment import add_background_noise
from data.errors import DataError
from data.events import Events
from data.representations import create_representation
from data.simulator import SimulatorConfig, SimulatorState, apply_refractory, initial_state, simulate_events
from data.timing import s_to_us, us_to_s
from data.windows import Window, WindowCutter, WindowSpec

SPLITS = {"train": 0, "val": 1, "test": 2}
MODALITIES = ("frames", "events")
# Task -> whether its label needs time (more than one observation; the real dt for duration and speed).
TASKS = {"appearance": False, "order": True, "duration": True, "speed": True, "direction": True}
PAIR_KINDS = tuple(TASKS)
DEFAULT_SIZES = {"train": 2000, "val": 400, "test": 400}


@dataclass(frozen=True)
class ClassSpec:
    """One class: what moves and how, and the partner it differs from in one way (``pair_kind``)."""

    name: str
    pair_kind: str
    partner: str
    shape: str
    motion: str
    direction: int = 1      # swipe: +1 right; rotate: +1 clockwise on screen; flash pair: +1 shape first
    band: str = ""          # speed and duration pairs: "slow"/"fast", "short"/"long"
    second: str = ""        # flash pair: the other shape


CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("square", "appearance", "circle", "square", "drift"),
    ClassSpec("circle", "appearance", "square", "ring", "drift"),
    ClassSpec("square_then_ring", "order", "ring_then_square", "square", "flash_pair", 1, second="ring"),
    ClassSpec("ring_then_square", "order", "square_then_ring", "square", "flash_pair", -1, second="ring"),
    ClassSpec("flash_short", "duration", "flash_long", "cross", "flash", band="short"),
    ClassSpec("flash_long", "duration", "flash_short", "cross", "flash", band="long"),
    ClassSpec("fall_slow", "speed", "fall_fast", "cross", "fall", band="slow"),
    ClassSpec("fall_fast", "speed", "fall_slow", "cross", "fall", band="fast"),
    ClassSpec("swipe_left", "direction", "swipe_right", "slab", "swipe", -1),
    ClassSpec("swipe_right", "direction", "swipe_left", "slab", "swipe", 1),
    ClassSpec("rotate_cw", "direction", "rotate_ccw", "hand", "rotate", 1),
    ClassSpec("rotate_ccw", "direction", "rotate_cw", "hand", "rotate", -1),
)
_BY_NAME = {spec.name: spec for spec in CLASSES}
ALL_CLASSES = tuple(_BY_NAME)
# The default set: the appearance control and the three tasks that need time on both modalities.
DEFAULT_CLASSES = ("square", "circle", "square_then_ring", "ring_then_square", "flash_short", "flash_long",
                   "fall_slow", "fall_fast")


def _default_representation() -> dict:
    return {"name": "voxel_grid", "bins": 5, "polarity": "signed"}


@dataclass(frozen=True)
class SyntheticConfig:
    """How clips are made.

    Attributes:
        size: frame height and width H = W in pixels (>= 16; 32, 48 and 64 all work).
        steps: observations per clip, T.
        fps_range: (min, max) frame rate per clip; the speed and duration pairs need max / min >= 8.
        jitter: each observation after the first moves by up to +-jitter/2 periods (0 <= jitter < 1).
        rate: observe each scene at ``rate`` times its drawn frame rate, over the same time span
            (ceil((steps - 1) * rate) + 1 observations): the scene is the one drawn at rate 1, so
            ``rate`` 4 or 0.25 shows a model the same clips sampled outside its training rates.
        classes: class names, in label order (default ``DEFAULT_CLASSES``).
        frame_noise: the largest per-clip standard deviation of the frames' Gaussian pixel noise.
        texture: the largest amplitude of the static background texture (intensity, 1 = white).
        substeps: frames rendered per observation interval for the event simulator.
        representation: options of ``data.representations.create_representation`` for events.
        simulator: the simulated sensor.
    """

    size: int = 64
    steps: int = 12
    fps_range: tuple[float, float] = (5.0, 60.0)
    jitter: float = 0.3
    rate: float = 1.0
    classes: tuple[str, ...] = DEFAULT_CLASSES
    frame_noise: float = 0.02
    texture: float = 0.12
    substeps: int = 4
    representation: dict = field(default_factory=_default_representation)
    # no background noise: its count per window would tell the window's duration (module docstring)
    simulator: SimulatorConfig = SimulatorConfig(noise_rate_hz=0.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "fps_range", tuple(float(f) for f in self.fps_range))
        if self.size < 16 or self.steps < 2 or self.substeps < 1:
            raise DataError(f"SyntheticConfig: need size >= 16, steps >= 2, substeps >= 1; got "
                            f"{self.size}, {self.steps}, {self.substeps}")
        unknown = [c for c in self.classes if c not in _BY_NAME]
        if unknown or len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise DataError(f"SyntheticConfig.classes: need two or more distinct names from {list(ALL_CLASSES)}; "
                            f"got {list(self.classes)}")
        low, high = self.fps_range
        if not 0 < low <= high:
            raise DataError(f"SyntheticConfig.fps_range: need 0 < min <= max, got {self.fps_range}")
        if any(_BY_NAME[c].motion in ("fall", "flash") for c in self.classes) and high / low < 8:
            raise DataError(f"SyntheticConfig.fps_range: the speed and duration pairs need max / min >= 8, "
                            f"got {self.fps_range}")
        if not (isinstance(self.rate, (int, float)) and 0.01 <= self.rate <= 100):
            raise DataError(f"SyntheticConfig.rate: need 0.01 <= rate <= 100, got {self.rate!r}")
        if not 0 <= self.jitter < 1:
            raise DataError(f"SyntheticConfig.jitter: need 0 <= jitter < 1, got {self.jitter}")
        if not (self.frame_noise >= 0 and 0 <= self.texture <= 0.5):
            raise DataError("SyntheticConfig: need frame_noise >= 0 and 0 <= texture <= 0.5")
        self.make_representation()  # fails early, with the representation's own message

    def make_representation(self):
        """The configured event representation: ``rep(events, sensor_size, t_start=, t_end=)``."""
        return create_representation(**self.representation)


def window_spec(period_us: int) -> WindowSpec:
    """How event clips are cut: one window between consecutive observations (the simulated camera is
    read out at each), the events after the last one dropped; a stream without frames is cut every
    ``period_us`` microseconds (the nominal period) instead."""
    return WindowSpec.frames(period_us, drop_last=True)


def class_names(config: SyntheticConfig = SyntheticConfig()) -> tuple[str, ...]:
    """Class names in label order."""
    return config.classes


def pair_kinds(config: SyntheticConfig = SyntheticConfig()) -> dict[str, str]:
    """Class name -> the task of its pair (a key of ``TASKS``)."""
    return {name: _BY_NAME[name].pair_kind for name in config.classes}


def partners(config: SyntheticConfig = SyntheticConfig()) -> dict[str, str]:
    """Class name -> the class it differs from in one way only."""
    return {name: _BY_NAME[name].partner for name in config.classes}


@dataclass(frozen=True)
class Clip:
    """One generated clip. ``frames`` (T, H, W) uint8 or ``events`` (N,), depending on the modality.

    Attributes:
        label: class index into ``config.classes``.
        t: (T,) observation times, seconds from the clip's start (t[0] = 0).
        period: the clip's nominal frame period in seconds (1 / fps).
        info: the drawn parameters (fps, px_per_step, speed_px_s, ...), for tests and analysis.
    """

    label: int
    t: np.ndarray
    period: float
    info: dict
    frames: np.ndarray | None = None
    events: Events | None = None


# --------------------------------------------------------------------------------------------
# Motions: each draws the clip's frame rate and its motion; registered by name.

_MOTIONS = {}
RADIUS = (0.15, 0.2)  # of the image side: a ring shows its hole and a square its corners even at 32 x 32
FALL_TRAVEL = (0.14, 0.56)  # the speed pair's travel over a clip, as fractions of the image size
ROTATE_STEP_RAD = (0.12, 0.25)  # the hand's turn per step: 75 to 160 degrees over 12 steps


def _motion(name: str):
    def register(fn):
        _MOTIONS[name] = fn
        return fn
    return register


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _centre(rng: np.random.Generator, size: int, reach: float, travel: float) -> float:
    """Mid-path coordinate that keeps an object of half-extent ``reach`` inside while it travels."""
    slack = size / 2 - reach - travel / 2 - 1
    return size / 2 + (rng.uniform(-slack, slack) if slack > 0 else 0.0)


@_motion("drift")
def _drift(rng, spec, cfg, fps, reach):
    travel = rng.uniform(0.25, 0.5) * cfg.size  # enough motion for an event camera to show the outline
    angle = rng.uniform(0, 2 * np.pi)
    speed = travel / (cfg.steps - 1) * fps
    mid = [_centre(rng, cfg.size, reach, abs(travel * np.cos(angle))),
           _centre(rng, cfg.size, reach, abs(travel * np.sin(angle)))]
    return fps, {"mid": mid, "velocity": [speed * np.cos(angle), speed * np.sin(angle)]}


@_motion("swipe")
def _swipe(rng, spec, cfg, fps, reach):
    travel = rng.uniform(0.3, 0.6) * cfg.size
    speed = travel / (cfg.steps - 1) * fps
    mid = [_centre(rng, cfg.size, reach, travel), _centre(rng, cfg.size, reach, 0.0)]
    tilt = rng.uniform(-0.2, 0.2)                                # the slab stands upright, give or take
    return fps, {"mid": mid, "velocity": [spec.direction * speed, 0.0], "orientation": tilt}


@_motion("rotate")
def _rotate(rng, spec, cfg, fps, reach):
    per_step = rng.uniform(*ROTATE_STEP_RAD)
    heading = -np.pi / 2 + rng.uniform(-np.pi / 4, np.pi / 4)   # mid-clip: pointing up, give or take
    mid = [_centre(rng, cfg.size, reach, 0.0), _centre(rng, cfg.size, reach, 0.0)]
    return fps, {"mid": mid, "velocity": [0.0, 0.0], "orientation": heading,
                 "spin": spec.direction * per_step * fps}


def _band(low: float, high: float, upper: bool) -> tuple[float, float]:
    """The lower or upper quarter, in log scale, of [low, high]: the two classes of a pair that
    differ only in real time draw from these."""
    ratio = high / low
    return (low * ratio**0.75, high) if upper else (low, low * ratio**0.25)


FLASH_STEPS = (2.0, 5.0)  # the duration pair: periods the cross stays visible, in both classes
# The order pair, as fractions of the clip's span (steps - 1 periods): each shape's showing, the gap.
# The gap is longer than any window (1 + jitter periods at most) so no window holds both an offset and
# the next onset.
PAIR_SHOWN, PAIR_GAP = (0.12, 0.24), (0.19, 0.27)


@_motion("flash")
def _flash(rng, spec, cfg, fps, reach):
    low, high = cfg.fps_range
    s0, s1 = FLASH_STEPS
    visible = _log_uniform(rng, s0, s1)                           # periods: same law in both classes
    duration = _log_uniform(rng, *_band(s1 / high, s0 / low, upper=spec.band == "long"))  # s / D in fps_range
    fps = visible / duration
    start = rng.uniform(*sorted((1.0, max(cfg.steps - 2.0 - visible, 0.0)))) / fps  # short clips: as room allows
    mid = [_centre(rng, cfg.size, reach, 0.0), _centre(rng, cfg.size, reach, 0.0)]
    return fps, {"mid": mid, "velocity": [0.0, 0.0], "flashes": [(spec.shape, mid, start, start + duration)]}


@_motion("flash_pair")
def _flash_pair(rng, spec, cfg, fps, reach):
    span = cfg.steps - 1.0
    shown = rng.uniform(*PAIR_SHOWN, 2) * span                    # periods
    gap = rng.uniform(*PAIR_GAP) * span
    start = rng.uniform(0.04 * span, 0.96 * span - shown.sum() - gap)
    places = [[_centre(rng, cfg.size, reach, 0.0), _centre(rng, cfg.size, reach, 0.0)] for _ in range(2)]
    shapes = (spec.shape, spec.second)[::spec.direction]           # the partner shows them the other way round
    on = np.array([start, start + shown[0] + gap]) / fps
    flashes = [(shape, place, t_on, t_on + length / fps) for shape, place, t_on, length in zip(shapes, places, on, shown)]
    return fps, {"mid": places[0], "velocity": [0.0, 0.0], "flashes": flashes}


@_motion("fall")
def _fall(rng, spec, cfg, fps, reach):
    low, high = cfg.fps_range
    d0, d1 = (f * cfg.size / (cfg.steps - 1) for f in FALL_TRAVEL)  # px/step: d log-uniform on [d0, d1]
    v_min, v_max = d1 * low, d0 * high                           # every v / d stays inside fps_range
    step = _log_uniform(rng, d0, d1)
    speed = _log_uniform(rng, *_band(v_min, v_max, upper=spec.band == "fast"))
    fps = speed / step
    mid = [_centre(rng, cfg.size, reach, 0.0), _centre(rng, cfg.size, reach, step * (cfg.steps - 1))]
    return fps, {"mid": mid, "velocity": [0.0, speed]}


# --------------------------------------------------------------------------------------------
# Shapes: signed distance (negative inside) in the object's frame, for radius r.

_SHAPES = {
    "square": lambda u, v, r: np.maximum(np.abs(u), np.abs(v)) - 0.85 * r,
    "slab": lambda u, v, r: np.maximum(np.abs(u) - 0.35 * r, np.abs(v) - 1.4 * r),  # upright at angle 0
    "ring": lambda u, v, r: np.abs(np.hypot(u, v) - 0.75 * r) - 0.25 * r,       # a hole of 0.5 r
    "hand": lambda u, v, r: np.minimum(np.maximum(np.abs(u - r) - r, np.abs(v) - 0.2 * r),
                                       np.hypot(u - 2 * r, v) - 0.5 * r),    # pivot at (0, 0), tip at 2 r
    "cross": lambda u, v, r: np.minimum(np.maximum(np.abs(u) - r, np.abs(v) - 0.3 * r),
                                        np.maximum(np.abs(u) - 0.3 * r, np.abs(v) - r)),
}
_REACH = {"square": 1.5, "ring": 1.5, "slab": 1.5, "cross": 1.5, "hand": 2.5}  # half-extents in radii
# (1.5 for all but the hand, so that shapes of the appearance pair are placed alike)


def _draw_scene(rng: np.random.Generator, spec: ClassSpec, cfg: SyntheticConfig) -> dict:
    """Everything about a clip except the modality-specific noise, in a fixed order of draws."""
    import cv2

    radius = rng.uniform(*RADIUS) * cfg.size
    background = rng.uniform(0.25, 0.75)
    contrast = rng.uniform(0.25, 0.5) * rng.choice([-1.0, 1.0])
    if not 0.05 <= background + contrast <= 0.95:
        contrast = -contrast
    coarse = rng.random((5, 5)).astype(np.float32)
    texture = cv2.resize(coarse, (cfg.size, cfg.size), interpolation=cv2.INTER_CUBIC)
    texture = rng.uniform(0, cfg.texture) * (2 * texture - 1)
    orientation = rng.uniform(0, np.pi)
    fps = _log_uniform(rng, *cfg.fps_range)
    fps, motion = _MOTIONS[spec.motion](rng, spec, cfg, fps, _REACH[spec.shape] * radius)
    period = 1.0 / fps
    t = _observation_times(rng, cfg.steps, period, cfg.jitter)
    t_mid = t[-1] / 2
    if cfg.rate != 1.0:  # the same scene (every draw above), observed at another rate over the same span
        period /= cfg.rate
        t = _observation_times(rng, int(np.ceil((cfg.steps - 1) * cfg.rate - 1e-9)) + 1, period, cfg.jitter)
    return {
        "radius": radius, "background": background, "contrast": contrast,
        "texture": np.clip(background + texture, 0, 1).astype(np.float32), "orientation": orientation,
        "t": t, "period": period, "t_mid": t_mid, **motion,
    }


def _observation_times(rng: np.random.Generator, steps: int, period: float, jitter: float) -> np.ndarray:
    """(steps,) seconds: every period, each after the first moved by up to +-jitter/2 periods."""
    offsets = rng.uniform(-0.5, 0.5, steps) * jitter
    offsets[0] = 0.0
    return (np.arange(steps) + offsets) * period


def _render(scene: dict, spec: ClassSpec, times: np.ndarray, size: int) -> np.ndarray:
    """Float32 frames (T', H, W) in [0, 1] of the scene at ``times`` (T',) seconds, without noise:
    the moving shape, or the static shapes of the ``flashes`` shown at those times."""
    if "flashes" in scene:
        cover = np.zeros((len(times), size, size), np.float32)
        for shape, place, t_on, t_off in scene["flashes"]:
            shown = np.flatnonzero((times >= t_on) & (times < t_off))
            if shown.size:
                where = np.repeat(np.asarray([place], float), shown.size, axis=0)
                cover[shown] = np.maximum(cover[shown], _place(shape, scene["radius"], where,
                                                               np.full(shown.size, scene["orientation"]), size))
    else:
        dt = times - scene["t_mid"]
        centres = np.asarray(scene["mid"])[None, :] + np.asarray(scene["velocity"])[None, :] * dt[:, None]  # (T', 2)
        cover = _place(spec.shape, scene["radius"], centres, scene["orientation"] + scene.get("spin", 0.0) * dt, size)
    level = np.float32(scene["background"] + scene["contrast"])
    texture = scene["texture"]
    cover *= level - texture
    cover += texture
    return cover


def _place(shape: str, radius: float, centres: np.ndarray, angles: np.ndarray, size: int) -> np.ndarray:
    """Coverage (T', H, W) float32 in [0, 1] of ``shape`` at ``centres`` (T', 2) px and ``angles`` (T',).

    The shape is drawn once, anti-aliased over one pixel, as a sprite at angle 0; each frame places
    it with one affine warp (rotation and sub-pixel translation, bilinear), which costs far less than
    evaluating the shape at every pixel of every frame.
    """
    import cv2

    radius = np.float32(radius)
    half = int(np.ceil(_REACH[shape] * radius)) + 2          # holds the shape at any angle
    local = np.arange(2 * half, dtype=np.float32) + np.float32(0.5 - half)
    sprite = np.clip(0.5 - _SHAPES[shape](local[None, :], local[:, None], radius), 0, 1).astype(np.float32)
    cos, sin = np.cos(angles), np.sin(angles)
    # Affine maps (T', 2, 3) from sprite pixels to frame pixels: pixel (i, j) has its centre at
    # (j + 0.5, i + 0.5), sprite pixels likewise about the sprite's middle.
    maps = np.empty((len(centres), 2, 3))
    maps[:, 0, 0], maps[:, 0, 1], maps[:, 1, 0], maps[:, 1, 1] = cos, -sin, sin, cos
    maps[:, :, 2] = (0.5 - half) * (maps[:, :, 0] + maps[:, :, 1]) + centres - 0.5
    cover = np.empty((len(centres), size, size), np.float32)
    for k in range(len(centres)):
        cover[k] = cv2.warpAffine(sprite, maps[k], (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return cover


def _seed(seed: int, split: str, index: int, stream: int = 0) -> list[int]:
    """Entropy of clip ``index``'s generators: stream 0 the scene, 1 the pixel noise, 2 the sensor."""
    return [seed, SPLITS[split], index, stream]


def make_clip(index: int, *, split: str = "train", seed: int = 0, modality: str = "frames",
              config: SyntheticConfig = SyntheticConfig()) -> Clip:
    """Clip ``index`` of a split, the same every time for the same arguments (module docstring)."""
    return make_clips([index], split=split, seed=seed, modality=modality, config=config)[0]


def make_clips(indices, *, split: str = "train", seed: int = 0, modality: str = "frames",
               config: SyntheticConfig = SyntheticConfig(), batch: int = 32) -> list[Clip]:
    """Clips ``indices`` of a split; each is the same as ``make_clip`` of its index alone.

    Events are simulated ``batch`` clips at a time (``_simulate_batch``), which amortises the
    simulator's per-frame cost over many small frames.
    """
    _check_choice("split", split, tuple(SPLITS))
    _check_choice("modality", modality, MODALITIES)
    indices = [int(i) for i in indices]
    clips = []
    for index in indices:
        spec = _BY_NAME[config.classes[index % len(config.classes)]]
        scene = _draw_scene(np.random.default_rng(_seed(seed, split, index)), spec, config)
        speed = float(np.hypot(*scene["velocity"]))
        info = {"class": spec.name, "pair_kind": spec.pair_kind, "fps": 1 / scene["period"], "speed_px_s": speed,
                "px_per_step": speed * scene["period"], "spin_rad_s": float(scene.get("spin", 0.0)),
                "mid": tuple(scene["mid"]), "radius": scene["radius"], "scene": scene, "spec": spec,
                # flash classes: (shape, shown from, until) in seconds
                "flashes": [(shape, float(on), float(off)) for shape, _, on, off in scene.get("flashes", ())]}
        clips.append(Clip(index % len(config.classes), scene["t"], scene["period"], info))
    if modality == "frames":
        return [_with_frames(clip, config, np.random.default_rng(_seed(seed, split, i, 1)))
                for clip, i in zip(clips, indices)]
    out = []
    for start in range(0, len(clips), batch):
        part = clips[start:start + batch]
        rngs = [np.random.default_rng(_seed(seed, split, i, 2)) for i in indices[start:start + batch]]
        out += [_public(clip, events=events) for clip, events in zip(part, _simulate_batch(part, config, rngs))]
    return out


def _public(clip: Clip, **data) -> Clip:
    """The clip with its data, and only plain values in ``info``."""
    info = {k: v for k, v in clip.info.items() if k not in ("scene", "spec")}
    return Clip(clip.label, clip.t, clip.period, info, **data)


def _with_frames(clip: Clip, config: SyntheticConfig, rng: np.random.Generator) -> Clip:
    frames = _render(clip.info["scene"], clip.info["spec"], clip.t, config.size)     # (T, H, W)
    sigma = rng.uniform(0, config.frame_noise)
    frames += rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(sigma)
    return _public(clip, frames=np.rint(np.clip(frames, 0, 1) * 255).astype(np.uint8))


_VIRTUAL_US = 1_000_000  # the shared clock of a batch: one frame interval = one virtual second


def _simulate_batch(clips: list[Clip], config: SyntheticConfig, rngs: list[np.random.Generator]) -> list[Events]:
    """Events of several clips from one simulator run: their frames stacked on top of each other.

    The clips' frame times differ, so the run uses a shared virtual clock (render frame j at j
    virtual seconds) and each event's time is mapped back onto its own clip's clock; the simulator
    interpolates linearly inside a frame interval, so the mapping is exact up to rounding to 1 us.
    The simulator treats pixels independently, and each clip draws its thresholds and its noise from
    its own generator, so a clip's events do not depend on the rest of its batch. The refractory
    period and the noise are applied per clip on the real clock afterwards, which is equivalent
    (``apply_refractory``).
    """
    size, sim = config.size, config.simulator
    fractions = np.arange(config.substeps) / config.substeps
    n_frames = config.substeps * len(clips[0].t) + 1                              # every clip has T steps
    frames = np.empty((n_frames, len(clips) * size, size), np.uint8)              # (F, B * H, W)
    times_us, states = [], []
    for c, (clip, rng) in enumerate(zip(clips, rngs)):
        edges = np.concatenate([[-clip.period], clip.t])                             # (T + 1,)
        times = np.append((edges[:-1, None] + np.diff(edges)[:, None] * fractions).ravel(), edges[-1])
        # 8-bit frames, as from a video: the simulator then takes the log by table lookup.
        mine = frames[:, c * size:(c + 1) * size]
        np.rint(_render(clip.info["scene"], clip.info["spec"], times, size) * 255, out=mine, casting="unsafe")
        times_us.append(s_to_us(times))
        states.append(initial_state(mine[0], 0.0, config=sim, rng=rng))
    state = SimulatorState(
        *(np.concatenate([getattr(s, name) for s in states]) for name in
          ("reference", "threshold_on", "threshold_off", "log_frame")),
        time_us=0, last_event_us=np.concatenate([s.last_event_us for s in states]),
    )
    virtual = np.arange(1, len(frames)) * us_to_s(_VIRTUAL_US)
    shared = replace(sim, refractory_us=0, noise_rate_hz=0.0)
    events, _ = simulate_events(frames[1:], virtual, config=shared, rng=rngs[0], state=state)
    owner = events["y"] // size
    order = np.argsort(owner, kind="stable")                                         # by clip, then time
    bounds = np.searchsorted(owner[order], np.arange(len(clips) + 1))
    out = []
    for c, (rng, real) in enumerate(zip(rngs, times_us)):
        mine = events[order[bounds[c]:bounds[c + 1]]]
        interval = (mine["t"] - 1) // _VIRTUAL_US                                     # events lie in (j, j + 1] s
        frac = (mine["t"] - interval * _VIRTUAL_US) / _VIRTUAL_US
        mine["t"] = real[interval] + np.rint(frac * (real[interval + 1] - real[interval])).astype(np.int64)
        mine["y"] -= c * size
        mine = apply_refractory(mine, sim.refractory_us)
        if sim.noise_rate_hz > 0:
            mine = add_background_noise(mine, (size, size), rng, sim.noise_rate_hz,
                                        t_start=int(real[0]) + 1, t_end=int(real[-1]))
        out.append(mine)
    return out


def _check_choice(option: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise DataError(f"SyntheticMotionDataset: {option} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


class SyntheticMotionDataset(torch.utils.data.Dataset):
    """The built-in dataset; items are dicts ``x`` (T, C, H, W) float32, ``t`` (T,) float64 seconds, ``y`` int.

    Frames: C = 1, values in [0, 1], t the frame times (t[0] = 0). Events: C = the representation's
    channels (default a signed voxel grid of 5 bins), one window per step, t the windows' ends from
    the first window's start (module docstring). All clips are generated when the dataset is built
    (about a second per thousand frame clips) and kept in memory.

    Args:
        split: "train", "val" or "test"; each has its own random streams.
        size: number of clips N (default 2000 for train, 400 for val and test).
        modality: "frames" or "events".
        seed: base seed; the same seed, split and config give the same clips.
        config: how clips are made.
    """

    def __init__(self, split: str = "train", size: int | None = None, modality: str = "frames",
                 seed: int = 0, config: SyntheticConfig = SyntheticConfig()):
        _check_choice("split", split, tuple(SPLITS))
        _check_choice("modality", modality, MODALITIES)
        size = DEFAULT_SIZES[split] if size is None else size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise DataError(f"SyntheticMotionDataset: size must be a positive integer; got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DataError(f"SyntheticMotionDataset: seed must be a non-negative integer; got {seed!r}")
        self.split, self.modality, self.seed, self.config = split, modality, int(seed), config
        self.classes = class_names(config)
        self.representation = config.make_representation() if modality == "events" else None
        self.clips = make_clips(range(size), split=split, seed=self.seed, modality=modality, config=config)
        self.labels = np.array([clip.label for clip in self.clips], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def channels(self) -> int:
        """C of the items."""
        return 1 if self.representation is None else self.representation.channels

    def info(self, index: int) -> dict:
        """The clip's drawn parameters (class, pair_kind, fps, px_per_step, speed_px_s, ...)."""
        return dict(self.clips[index].info)

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        if clip.frames is not None:
            x = torch.from_numpy(clip.frames).unsqueeze(1).float().div_(255.0)      # (T, 1, H, W)
        else:
            x = torch.from_numpy(self.voxels(index))
        return {"x": x, "t": torch.from_numpy(self.times(index)), "y": clip.label}

    def _edges(self, index: int, keep: np.ndarray | None) -> np.ndarray:
        """(T' + 1,) int64 us: the frame one period before the first observation, then the kept ones."""
        clip = self.clips[index]
        steps = np.flatnonzero(np.ones(len(clip.t), bool) if keep is None else keep)
        return s_to_us(np.concatenate([[-clip.period], clip.t[steps]]))

    def times(self, index: int, keep: np.ndarray | None = None) -> np.ndarray:
        """t (T',) float64 seconds of item ``index`` (its kept steps), without computing x: frame
        times, or the event windows' ends from the first window's start (class docstring)."""
        clip = self.clips[index]
        if clip.events is None:
            return clip.t.copy() if keep is None else clip.t[keep]
        edges = self._edges(index, keep)
        return us_to_s(edges[1:] - edges[0])

    def windows(self, index: int, keep: np.ndarray | None = None, events: Events | None = None) -> list[Window]:
        """The event windows of clip ``index``, one per kept step (module docstring).

        Args:
            keep: (T,) bool, the observations to keep (default all). A step's window starts where the
                previous kept step's ended, so dropping observations merges their windows: no event
                is lost, the model just sees fewer, longer windows (as from a slower or stalling reader).
            events: the clip's events to use instead of its own (e.g. with added noise).
        """
        clip = self.clips[index]
        if clip.events is None:
            raise DataError("SyntheticMotionDataset.windows: this dataset holds frames (modality='frames')")
        edges = self._edges(index, keep)
        # The camera is read out at every kept observation: a frame clock ticking at the edges.
        cutter = WindowCutter(window_spec(s_to_us(clip.period)), t_start_us=int(edges[0]), copy=False,
                              frame_clock=True)
        out = cutter.push(clip.events if events is None else events)
        for edge in edges[1:]:
            out += cutter.tick(int(edge))
        return out + cutter.finish()

    def voxels(self, index: int, keep: np.ndarray | None = None, events: Events | None = None) -> np.ndarray:
        """The events modality's input (T', C, H, W) float32 for clip ``index``: the representation of
        each of its ``windows`` (same arguments) over the window's time range."""
        sensor = (self.config.size, self.config.size)
        return np.stack([self.representation(w.events, sensor, t_start=w.t_start_us, t_end=w.t_end_us)
                         for w in self.windows(index, keep, events)])

    def perturbed(self, index: int, rng: np.random.Generator, drop: float = 0.0, noise: float = 0.0) -> dict:
        """Item ``index`` under test-time perturbations, for robustness evaluation.

        Args:
            rng: the generator of the perturbations.
            drop: each observation after the first is dropped with this probability (the dt of the
                next kept one grows; for events the windows merge, see ``voxels``).
            noise: frames: the standard deviation of added Gaussian pixel noise (intensity, 1 =
                white; clipped to [0, 1]); events: extra background noise events per pixel per second.

        Returns:
            A dict like ``__getitem__``'s: x (T', C, H, W), t (T',) seconds, y.
        """
        if not 0.0 <= drop < 1.0 or not noise >= 0.0:
            raise DataError(f"SyntheticMotionDataset.perturbed: need 0 <= drop < 1 and noise >= 0; got {drop}, {noise}")
        clip = self.clips[index]
        keep = rng.random(len(clip.t)) >= drop
        keep[0] = True
        if clip.frames is not None:
            x = clip.frames[keep].astype(np.float32) / 255.0
            if noise > 0:
                x = np.clip(x + rng.normal(0.0, noise, x.shape).astype(np.float32), 0.0, 1.0)
            x = torch.from_numpy(x).unsqueeze(1)
        else:
            events = clip.events
            if noise > 0:
                span = (s_to_us(-clip.period), s_to_us(clip.t[-1]))
                events = add_background_noise(events, (self.config.size,) * 2, rng, noise, t_start=span[0], t_end=span[1])
            x = torch.from_numpy(self.voxels(index, keep, events))
        return {"x": x, "t": torch.from_numpy(self.times(index, keep)), "y": clip.label}
