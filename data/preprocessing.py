"""The preprocessing contract: how an observation becomes a model input, from training to streaming.

A ``Preprocessing`` is what a data module says about its inputs, what a checkpoint records
(``to_dict()``, plain values only: checkpoints are read with ``torch.load(weights_only=True)``) and
what streaming inference reads back (``from_dict``) to feed the model exactly as training did.

Fields (``VERSION`` 1):

- ``modality``: ``"frames"`` or ``"events"``.
- ``frame_size``: (W, H) of the model input, for both modalities: frames are resized to it, event
  coordinates mapped onto it.
- ``channels``: C of the model input: 1 (grey) or 3 (RGB) for frames, the representation's
  channels for events.
- ``time_scale``: the nominal period, seconds: the training data's median dt (``data.timing``), the
  dt of a stream's first frame.
- events only: ``sensor_size`` (W, H) of the recordings trained on; ``downsample`` (k >= 1: the
  coordinates were x // k, and then ``frame_size`` is the sensor's size divided by k, rounded up; 1:
  x * W' // W); ``representation`` (the ``create_representation`` config); ``window`` (the
  ``WindowSpec`` that cut the training recordings).

Every field is checked on construction (and so by ``from_dict``) before anything is allocated, with
one ``DataError`` line naming the field: sizes are positive integers of at most ``MAX_SIDE`` per
side, the frame at most ``MAX_PIXELS`` pixels and ``MAX_VALUES`` values with its channels.

``to_dict()`` writes ``{"version": 1, ...}``. ``from_dict`` also reads the layout written before
the version key existed (frames ``{"modality", "size", "grey"}``; events ``{"modality",
"sensor_size", "frame_size", "downsample"?, "representation", "window": {"mode", "size",
"overlap"}}``), which held no time scale: the caller passes the one the model was trained with.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from data.errors import DataError
from data.representations import Representation, create_representation
from data.timing import check_period
from data.windows import WindowSpec

VERSION = 1
MODALITIES = ("frames", "events")
FRAME_CHANNELS = (1, 3)       # grey or RGB
MAX_SIDE = 65_536             # event coordinates are uint16
MAX_PIXELS = 1 << 24          # a 4096 x 4096 model input
MAX_CHANNELS = 1024
MAX_VALUES = 1 << 28          # C * H * W of one input: 1 GiB as float32
_OLD_KEYS = {"frames": {"modality", "size", "grey"},
             "events": {"modality", "sensor_size", "frame_size", "downsample", "representation", "window"}}


def _fail(field: str, problem: str) -> DataError:
    return DataError(f"preprocessing.{field}: {problem}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _size(field: str, value) -> tuple[int, int]:
    """(W, H) of positive integers of at most MAX_SIDE."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) for v in value)
            and all(1 <= v <= MAX_SIDE for v in value)):
        raise _fail(field, f"expected (width, height), integers in 1..{MAX_SIDE}; got {value!r}")
    return int(value[0]), int(value[1])


def _representation(value) -> Representation:
    if isinstance(value, Representation):
        return value
    if not (isinstance(value, Mapping) and all(isinstance(k, str) for k in value) and "name" in value):
        raise _fail("representation", f"expected a config dict with a 'name'; got {value!r}")
    try:
        return create_representation(**value)
    except (DataError, TypeError, ValueError) as exc:
        raise _fail("representation", " ".join(str(exc).split())) from None


@dataclass(frozen=True)
class Preprocessing:
    """How observations become model inputs (module docstring). Build with ``frames`` or ``events``.

    Attributes:
        modality: "frames" or "events".
        frame_size: (W, H) of the model input.
        channels: C of the model input.
        time_scale: the nominal period, seconds.
        sensor_size: events: (W, H) of the recordings trained on; None for frames.
        downsample: events: the coordinate divisor k (1: scaled by size).
        representation: events: the ``create_representation`` config; None for frames.
        window: events: how streams are cut into steps; None for frames.
    """

    modality: str
    frame_size: tuple[int, int]
    channels: int
    time_scale: float
    sensor_size: tuple[int, int] | None = None
    downsample: int = 1
    representation: dict[str, Any] | None = None
    window: WindowSpec | None = None

    def __post_init__(self) -> None:
        set_ = self._set
        if self.modality not in MODALITIES:
            raise _fail("modality", f"expected one of {', '.join(map(repr, MODALITIES))}; got {self.modality!r}")
        width, height = _size("frame_size", self.frame_size)
        set_("frame_size", (width, height))
        if width * height > MAX_PIXELS:
            raise _fail("frame_size", f"{width} x {height} is more than {MAX_PIXELS:,} pixels")
        if not (_is_int(self.channels) and 1 <= self.channels <= MAX_CHANNELS):
            raise _fail("channels", f"expected an integer in 1..{MAX_CHANNELS}; got {self.channels!r}")
        set_("channels", int(self.channels))
        if self.channels * width * height > MAX_VALUES:
            raise _fail("channels", f"{self.channels} x {height} x {width} inputs hold more than {MAX_VALUES:,} values")
        set_("time_scale", check_period("preprocessing.time_scale", self.time_scale))
        if not (_is_int(self.downsample) and 1 <= self.downsample <= MAX_SIDE):
            raise _fail("downsample", f"expected an integer in 1..{MAX_SIDE}; got {self.downsample!r}")
        set_("downsample", int(self.downsample))
        if self.modality == "frames":
            self._check_frames()
        else:
            self._check_events()

    def _set(self, name: str, value) -> None:
        """Store a field's checked, normalised value (the dataclass is frozen)."""
        object.__setattr__(self, name, value)

    def _check_frames(self) -> None:
        if self.channels not in FRAME_CHANNELS:
            raise _fail("channels", f"frames have 1 (grey) or 3 (RGB) channels; got {self.channels}")
        for name in ("sensor_size", "representation", "window"):
            if getattr(self, name) is not None:
                raise _fail(name, "frames have none (events only); expected None")
        if self.downsample != 1:
            raise _fail("downsample", f"frames are resized, not downsampled; expected 1, got {self.downsample}")

    def _check_events(self) -> None:
        set_ = self._set
        if self.sensor_size is None:
            raise _fail("sensor_size", "events need the (width, height) of the recordings trained on")
        sensor = _size("sensor_size", self.sensor_size)
        set_("sensor_size", sensor)
        if self.downsample > 1:
            expected = tuple(math.ceil(side / self.downsample) for side in sensor)
            if self.frame_size != expected:
                raise _fail("frame_size", f"{self.frame_size[0]} x {self.frame_size[1]} is not the {sensor[0]} x "
                                          f"{sensor[1]} sensor downsampled by {self.downsample} ({expected[0]} x {expected[1]})")
        elif self.frame_size[0] > sensor[0] or self.frame_size[1] > sensor[1]:
            raise _fail("frame_size", f"{self.frame_size[0]} x {self.frame_size[1]} is larger than the {sensor[0]} x "
                                      f"{sensor[1]} sensor")
        if self.representation is None:
            raise _fail("representation", "events need a representation config")
        representation = _representation(self.representation)
        set_("representation", representation.to_config())
        if representation.channels != self.channels:
            raise _fail("channels", f"{self.channels} does not match the representation's {representation.channels}")
        if not isinstance(self.window, WindowSpec):
            raise _fail("window", f"events need a WindowSpec; got {self.window!r}")

    # -- building
    @classmethod
    def frames(cls, frame_size: tuple[int, int], channels: int, time_scale: float) -> "Preprocessing":
        """Frames resized to ``frame_size`` (W, H), grey (1 channel) or RGB (3)."""
        return cls("frames", tuple(frame_size), channels, time_scale)

    @classmethod
    def events(cls, sensor_size: tuple[int, int], frame_size: tuple[int, int],
               representation: Representation | Mapping[str, Any], window: WindowSpec, time_scale: float,
               downsample: int = 1) -> "Preprocessing":
        """Events of a ``sensor_size`` sensor mapped onto ``frame_size``, ``representation`` per window."""
        rep = _representation(representation)
        return cls("events", tuple(frame_size), rep.channels, time_scale, tuple(sensor_size), downsample,
                   rep.to_config(), window)

    def make_representation(self) -> Representation:
        """The events' representation: ``rep(events, frame_size, t_start=, t_end=)`` -> (C, H, W)."""
        if self.representation is None:
            raise DataError("preprocessing: frames have no representation")
        return create_representation(**self.representation)

    # -- plain values
    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, numbers, strings, None), with the layout's ``version``."""
        return {"version": VERSION, "modality": self.modality, "frame_size": list(self.frame_size),
                "channels": self.channels, "time_scale": self.time_scale,
                "sensor_size": None if self.sensor_size is None else list(self.sensor_size),
                "downsample": self.downsample,
                "representation": None if self.representation is None else dict(self.representation),
                "window": None if self.window is None else self.window.to_config()}

    @classmethod
    def from_dict(cls, data: Any, *, time_scale: float | None = None) -> "Preprocessing":
        """Rebuild from ``to_dict`` output, or from the layout without a version (module docstring),
        checking every field.

        Args:
            data: the dict.
            time_scale: seconds, for the old layout only (it held none): the model's time scale.

        Raises:
            DataError: one line naming the field and the problem.
        """
        if not isinstance(data, Mapping):
            raise DataError(f"preprocessing: expected a dict, got {type(data).__name__}")
        if "version" not in data:
            return cls._from_old_layout(data, time_scale)
        version = data["version"]
        if not _is_int(version) or version != VERSION:
            raise _fail("version", f"this version reads layout {VERSION}; got {version!r}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(map(str, set(data) - set(names) - {"version"}))
        if unknown:
            raise DataError(f"preprocessing: unknown keys {unknown}; allowed: version, {', '.join(names)}")
        missing = [name for name in ("modality", "frame_size", "channels", "time_scale") if name not in data]
        if missing:
            raise DataError(f"preprocessing: missing keys {missing}")
        values = {name: data[name] for name in names if name in data}
        values["window"] = _window(values.get("window"))
        return cls(**values)

    @classmethod
    def _from_old_layout(cls, data: Mapping, time_scale: float | None) -> "Preprocessing":
        modality = data.get("modality")
        if modality not in MODALITIES:
            raise _fail("modality", f"expected one of {', '.join(map(repr, MODALITIES))}; got {modality!r}")
        unknown = sorted(map(str, set(data) - _OLD_KEYS[modality]))
        if unknown:
            raise DataError(f"preprocessing: unknown keys {unknown} in a layout without a version; rebuild it "
                            f"with data.Preprocessing.{modality}(...) and save its to_dict()")
        if time_scale is None:
            raise DataError("preprocessing: a layout without a version holds no time scale; pass the model's "
                            "(time_scale=)")
        if modality == "frames":
            grey = data.get("grey", False)
            if not isinstance(grey, bool):
                raise _fail("grey", f"expected True or False; got {grey!r}")
            return cls("frames", data.get("size"), 1 if grey else 3, time_scale)
        for key in ("sensor_size", "frame_size", "representation", "window"):
            if key not in data:
                raise DataError(f"preprocessing: missing key {key!r}")
        rep = _representation(data["representation"])
        return cls("events", data["frame_size"], rep.channels, time_scale, data["sensor_size"],
                   data.get("downsample", 1), rep.to_config(), _window(data["window"]))


def _window(value) -> WindowSpec | None:
    if value is None or isinstance(value, WindowSpec):
        return value
    if not isinstance(value, Mapping):
        raise _fail("window", f"expected a dict (mode, size, overlap, drop_last); got {value!r}")
    try:
        return WindowSpec.from_config(dict(value))
    except (DataError, TypeError) as exc:
        raise _fail("window", " ".join(str(exc).split())) from None
