"""Live event cameras for ``perception infer camera:N``: discovery and capture through a camera library.

Libraries, tried in this order; both are optional (the project runs without either):
    dv_processing     iniVation cameras (DVXplorer, DAVIS, DVS128): ``pip install dv-processing``
    metavision_core   Prophesee cameras, through OpenEB or the Metavision SDK (not on PyPI)

``camera:N`` is the N-th camera over all of them: dv_processing's cameras in the order it discovers
them, then Metavision's. An opened camera gives chunks of canonical events (``data.EVENT_DTYPE``;
``t`` in microseconds since the camera's first event, on the camera's own clock), which
``sources.py`` cuts into the checkpoint's windows exactly as it does for a recording.

The stream ends cleanly when the library says the camera stopped (unplugged: dv_processing's
``isRunning()`` turns false, Metavision's iterator ends). An exception from the library while
reading is reported as one line naming the camera.
"""
from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from data import Events, check_events, make_events
from perception.errors import PerceptionError

POLL_S = 0.001               # dv_processing's getNextEventBatch() never blocks: wait this long when it has nothing
METAVISION_SLICE_US = 5_000  # Metavision hands events over in slices of this much camera time: the latency it adds
INSTALL_HINTS = {"dv_processing": "pip install dv-processing (iniVation cameras)",
                 "metavision_core": "OpenEB or the Metavision SDK (Prophesee cameras; not on PyPI)"}


@dataclass
class LiveCamera:
    """An opened camera. ``chunks`` yields (N,) canonical event arrays as they arrive; ``stop()``
    (safe from any thread) makes it end at its next poll and release the device."""

    name: str
    sensor_size: tuple[int, int]   # (W, H)
    chunks: Iterator[Events]
    stop: Callable[[], None]


@dataclass(frozen=True)
class Camera:
    """A camera a library found; ``open(spec)`` starts it streaming."""

    library: str
    name: str
    open: Callable[[str], LiveCamera]


# library name -> discover(module) -> the cameras it can see; a library is added by registering one
_LIBRARIES: dict[str, Callable[[Any], list[Camera]]] = {}


def register_library(name: str):
    """Decorator: ``discover(module) -> [Camera]`` for the library importable as ``name``."""
    def register(discover: Callable[[Any], list[Camera]]):
        if name in _LIBRARIES:
            raise ValueError(f"event-camera library {name!r} is already registered")
        _LIBRARIES[name] = discover
        return discover
    return register


def find_cameras() -> tuple[list[Camera], dict[str, str]]:
    """Every camera the installed libraries see, and for each library what happened (for messages)."""
    cameras: list[Camera] = []
    notes: dict[str, str] = {}
    for library, discover in _LIBRARIES.items():
        try:
            module = importlib.import_module(library)
            found = discover(module)
        except ImportError as exc:
            missing = isinstance(exc, ModuleNotFoundError) and exc.name == library
            notes[library] = "not installed" if missing else f"cannot be imported ({_one_line(exc)})"
            continue
        except Exception as exc:  # a driver or USB failure while listing: say so, and try the next library
            notes[library] = f"discovery failed ({_one_line(exc)})"
            continue
        notes[library] = f"found {len(found)}" if found else "found none"
        cameras += found
    return cameras, notes


def open_camera(spec: str, index: int) -> LiveCamera:
    """Open the ``index``-th camera over all installed libraries.

    Raises:
        PerceptionError: one line naming ``spec``: no library, no camera, no such index, or the
            library failed to open it.
    """
    cameras, notes = find_cameras()
    looked = "; ".join(f"{library}: {note}" for library, note in notes.items())
    fallback = "record to a file and pass the file, or use sim:webcam:N to simulate events from a webcam"
    if all(note == "not installed" for note in notes.values()):
        hints = "; ".join(INSTALL_HINTS.get(library, library) for library in notes)
        raise PerceptionError(f"{spec}: no event-camera library is installed (looked for {', '.join(notes)}; "
                              f"install one: {hints}); or {fallback}")
    if not cameras:
        raise PerceptionError(f"{spec}: no event camera found ({looked}); plug one in, or {fallback}")
    if index >= len(cameras):
        listing = ", ".join(f"camera:{i} = {c.name} ({c.library})" for i, c in enumerate(cameras))
        raise PerceptionError(f"{spec}: only {len(cameras)} event camera(s) found: {listing}")
    camera = cameras[index]
    try:
        return camera.open(spec)
    except PerceptionError:
        raise
    except Exception as exc:
        raise PerceptionError(f"{spec}: {camera.library} cannot open {camera.name} ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    """A library's message (C++ ones can span lines) as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _checked(spec: str, name: str, batches: Iterator[np.ndarray], fields: tuple[str, str, str, str],
             sensor_size: tuple[int, int]) -> Iterator[Events]:
    """Canonical, validated chunks from a library's batches, whose fields ``fields`` names x, y,
    t (us), p (> 0 is ON); t counts from the first event."""
    x, y, t, p = fields
    origin = last = None
    for batch in batches:
        if len(batch) == 0:
            continue
        if origin is None:
            origin = int(batch[t][0])
        # make_events copies (libraries reuse their buffers); a negative coordinate wraps to >= 32768
        # there and check_events refuses it as outside the sensor.
        events = check_events(make_events(batch[x], batch[y], batch[t] - origin, batch[p]), sensor_size,
                              name=f"{spec} ({name})")
        if last is not None and events["t"][0] < last:
            raise PerceptionError(f"{spec} ({name}): the camera's timestamps went backwards "
                                  f"({last} -> {int(events['t'][0])} us after its first event)")
        last = int(events["t"][-1])
        yield events


def _reading_errors(spec: str, name: str, library: str, batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """A library exception while streaming becomes one line naming the camera."""
    try:
        yield from batches
    except Exception as exc:
        raise PerceptionError(f"{spec}: {name} ({library}) failed while streaming ({_one_line(exc)})") from None


# --------------------------------------------------------------------------------------------
# dv-processing (iniVation). 2.x: io.camera.discover() -> [DeviceDescriptor], io.camera.open(descriptor);
# 1.x: io.discoverDevices() -> [name], io.CameraCapture(cameraName=name). Both give an InputBase with
# getEventResolution() -> (W, H) or None, isRunning(), getNextEventBatch() -> EventStore or None
# (None: nothing new yet), and EventStore.numpy() -> (N,) timestamp <i8 µs, x <i2, y <i2, polarity i1.

DV_FIELDS = ("x", "y", "timestamp", "polarity")


@register_library("dv_processing")
def _dv_cameras(dv) -> list[Camera]:
    cameras = getattr(dv.io, "camera", None)
    if cameras is not None and hasattr(cameras, "discover"):   # 2.x
        return [Camera("dv_processing", _dv_name(d), partial(_open_dv, cameras.open, d, _dv_name(d)))
                for d in cameras.discover()]
    def capture(name: str):  # 1.x
        return dv.io.CameraCapture(cameraName=name)

    return [Camera("dv_processing", str(n), partial(_open_dv, capture, n, str(n))) for n in dv.io.discoverDevices()]


def _dv_name(descriptor) -> str:
    model = getattr(descriptor.cameraModel, "name", descriptor.cameraModel)
    return f"{model} {descriptor.serialNumber}"


def _open_dv(open_device: Callable, which, name: str, spec: str) -> LiveCamera:
    device = open_device(which)
    resolution = device.getEventResolution()
    if resolution is None:
        raise PerceptionError(f"{spec}: {name} gives no event stream (dv_processing)")
    size = (int(resolution[0]), int(resolution[1]))
    stopping = threading.Event()
    batches = _dv_batches(device, stopping)
    del device  # the generator holds the only reference: dropping it there releases the camera
    chunks = _checked(spec, name, _reading_errors(spec, name, "dv_processing", batches), DV_FIELDS, size)
    return LiveCamera(f"{name} (dv_processing)", size, chunks, stopping.set)


def _dv_batches(device, stopping: threading.Event) -> Iterator[np.ndarray]:
    try:
        while not stopping.is_set():
            batch = device.getNextEventBatch()
            if batch is None:
                if not device.isRunning():  # unplugged or stopped, and nothing left to read
                    return
                time.sleep(POLL_S)
                continue
            yield batch.numpy()
    finally:
        del device  # dv_processing closes the camera when its object goes away


# --------------------------------------------------------------------------------------------
# Metavision / OpenEB. metavision_hal.DeviceDiscovery.list() -> [serial]; metavision_core.event_io.
# EventsIterator(input_path=serial, mode="delta_t", delta_t=µs) opens that camera ("" = the first one)
# and yields (N,) x <u2, y <u2, p <i2, t <i8 µs per slice (empty when the scene is still);
# get_size() -> (H, W). The iterator ends when the camera stops delivering (unplugged).

METAVISION_FIELDS = ("x", "y", "t", "p")


@register_library("metavision_core")
def _metavision_cameras(module) -> list[Camera]:
    from metavision_core.event_io import EventsIterator
    from metavision_hal import DeviceDiscovery

    return [Camera("metavision_core", str(serial), partial(_open_metavision, EventsIterator, str(serial)))
            for serial in DeviceDiscovery.list()]


def _open_metavision(events_iterator: Callable, serial: str, spec: str) -> LiveCamera:
    iterator = events_iterator(input_path=serial, mode="delta_t", delta_t=METAVISION_SLICE_US)
    height, width = iterator.get_size()
    if not height or not width:
        raise PerceptionError(f"{spec}: Metavision camera {serial} does not report its sensor size")
    size = (int(width), int(height))
    stopping = threading.Event()
    batches = _metavision_batches(iterator, stopping)
    batches = _reading_errors(spec, serial, "metavision_core", batches)
    chunks = _checked(spec, serial, batches, METAVISION_FIELDS, size)
    return LiveCamera(f"{serial} (metavision_core)", size, chunks, stopping.set)


def _metavision_batches(iterator, stopping: threading.Event) -> Iterator[np.ndarray]:
    slices = iter(iterator)
    try:
        for events in slices:
            if stopping.is_set():
                return
            yield events
    finally:
        slices.close()  # leaves the reader's context: the camera stops streaming
