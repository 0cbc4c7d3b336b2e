"""`perception infer camera:N`: live event cameras through dv_processing and metavision_core.

No event camera is attached here, so the libraries are replaced by fakes (put in ``sys.modules``)
that copy the API surface the source uses: dv_processing 2.x ``io.camera.discover()`` /
``io.camera.open(descriptor)`` / ``getNextEventBatch()`` (None while nothing is new) /
``isRunning()`` / ``EventStore.numpy()``, and Metavision's ``metavision_hal.DeviceDiscovery.list()``
and ``metavision_core.event_io.EventsIterator``. They deliver batches with realistic timestamps in
real time, then disconnect. The real dv_processing, when installed, is checked with no device
attached and with a real recording standing in for a camera.
"""
import gc
import json
import sys
import time
import types
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from data import WindowSpec, make_events, read_events, slice_windows
from perception.cli import main
from perception.streaming.event_cameras import METAVISION_SLICE_US

CLASSES = ["a", "b", "c"]  # the tiny checkpoint's (conftest.py)
WINDOW_US = 50_000  # its windows
SENSOR = (64, 48)  # (W, H) of the fake cameras; the model was trained on 32 x 32 (the source rescales)
EPOCH_US = 1_714_000_000_123_456  # dv_processing stamps events with the host's clock: µs since 1970
# The real dtypes, as the libraries hand them over:
DV_DTYPE = np.dtype({"names": ["timestamp", "x", "y", "polarity"], "formats": ["<i8", "<i2", "<i2", "i1"],
                     "offsets": [0, 8, 10, 12], "itemsize": 16})                       # EventStore.numpy()
METAVISION_DTYPE = np.dtype({"names": ["x", "y", "p", "t"], "formats": ["<u2", "<u2", "<i2", "<i8"],
                             "offsets": [0, 2, 4, 8], "itemsize": 16})                  # metavision EventCD


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module", autouse=True)
def warm_event_kernels(tmp_path_factory, tiny_checkpoint):
    """The first runner in a process compiles the event kernels (about half a second): done once here,
    so that the fake cameras' real-time streams do not all queue up behind it in the first test."""
    from perception.checkpoint import load_checkpoint
    from perception.streaming.runner import StreamRunner
    from perception.streaming.sources import Source

    checkpoint = load_checkpoint(tiny_checkpoint(tmp_path_factory.mktemp("warm")))
    StreamRunner(checkpoint, Source("warm", "events", False, iter(())))




def _batches(dtype, fields, start_us: int, n: int = 60, span_us: int = 10_000, seed: int = 0,
             still: tuple[int, ...] = ()) -> list[np.ndarray]:
    """``n`` batches of ``span_us`` each from ``start_us``, ~200 events each, times sorted within and
    across batches; the batches listed in ``still`` are empty (a still scene)."""
    rng = np.random.default_rng(seed)
    x, y, t, p = fields
    out = []
    for i in range(n):
        count = 0 if i in still else int(rng.integers(150, 250))
        batch = np.zeros(count, dtype)
        batch[t] = np.sort(start_us + i * span_us + rng.integers(0, span_us, count))
        batch[x], batch[y] = rng.integers(0, SENSOR[0], count), rng.integers(0, SENSOR[1], count)
        batch[p] = rng.integers(0, 2, count)
        out.append(batch)
    return out


def _expected_windows(batches: list[np.ndarray], fields) -> list:
    """The checkpoint's windows over everything the camera sent, t counted from its first event."""
    x, y, t, p = fields
    every = np.concatenate(batches)
    return list(slice_windows(make_events(every[x], every[y], every[t] - every[t][0], every[p]),
                              WindowSpec("duration", WINDOW_US)))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_steps(lines: list[dict], windows: list) -> None:
    """Every window is in exactly one step: alone, or merged with the ones that queued up before it
    (``skipped`` of them); a step's t is its last window's end, its events those of its windows."""
    assert lines, "no step was written"
    i = 0
    for r in lines:
        merged = windows[i : i + r["skipped"] + 1]
        assert r["t"] == pytest.approx(merged[-1].t_end_us * 1e-6, abs=1e-6)
        assert r["events"] == sum(len(w.events) for w in merged)
        assert r["label"] in CLASSES and sum(r["probs"]) == pytest.approx(1, abs=1e-4)
        i += len(merged)
    assert i == len(windows)  # no event lost, none made up
    times = np.asarray([r["t"] for r in lines])
    np.testing.assert_allclose([r["dt"] for r in lines[1:]], np.diff(times), atol=1e-6)
    if lines[0]["skipped"] == 0:
        assert lines[0]["dt"] == pytest.approx(WINDOW_US * 1e-6)  # the first window's duration


# --------------------------------------------------------------------------------------------
# Fakes of the two libraries


class FakeEventStore:
    def __init__(self, events: np.ndarray) -> None:
        self.events = events

    def numpy(self) -> np.ndarray:
        return self.events


class FakeDvCamera:
    """A dv_processing 2.x camera (CameraInputBase): a batch every ``period`` seconds of wall time,
    None when polled before the next one is due, then unplugged (isRunning() False) after the last."""

    def __init__(self, batches, period: float = 0.002, fail_after: int | None = None) -> None:
        self.batches: Iterator[np.ndarray] = iter(batches)
        self.period, self.fail_after, self.sent = period, fail_after, 0
        self.running, self.due = True, time.perf_counter() + period

    def getEventResolution(self):
        return SENSOR

    def isRunning(self) -> bool:
        return self.running

    def getNextEventBatch(self):
        if not self.running or time.perf_counter() < self.due:
            return None
        if self.fail_after is not None and self.sent == self.fail_after:
            raise RuntimeError("libusb: LIBUSB_ERROR_IO\n(transfer failed)")
        batch = next(self.batches, None)
        if batch is None:
            self.running = False  # unplugged
            return None
        self.sent += 1
        self.due += self.period
        return FakeEventStore(batch)


def fake_dv(cameras: list) -> types.ModuleType:
    """A ``dv_processing`` whose ``io.camera.discover()`` finds one descriptor per factory in ``cameras``;
    ``opened`` keeps a weak reference to every camera object it made."""
    dv = types.ModuleType("dv_processing")
    descriptors = [types.SimpleNamespace(cameraModel=types.SimpleNamespace(name="DVXPLORER"),
                                         serialNumber=f"DXA0009{i}", make=make) for i, make in enumerate(cameras)]
    dv.opened = []

    def open_camera(descriptor):
        camera = descriptor.make()
        dv.opened.append(weakref.ref(camera))
        return camera

    dv.io = types.SimpleNamespace(camera=types.SimpleNamespace(discover=lambda: list(descriptors), open=open_camera))
    return dv


class FakeEventsIterator:
    """metavision_core.event_io.EventsIterator over a live camera: one slice per ``delta_t`` of
    camera time, delivered in real time; ends when the camera is unplugged."""

    slices: list[np.ndarray] = []
    made: list["FakeEventsIterator"] = []

    def __init__(self, input_path, start_ts=0, mode="delta_t", delta_t=10000, **kwargs) -> None:
        self.input_path, self.mode, self.delta_t, self.released = input_path, mode, delta_t, False
        FakeEventsIterator.made.append(self)

    def get_size(self):
        return SENSOR[1], SENSOR[0]  # (height, width)

    def __iter__(self):
        try:
            for events in self.slices:
                time.sleep(0.002)
                yield events
        finally:
            self.released = True


def install_metavision(monkeypatch, serials: list[str], slices: list[np.ndarray] = ()) -> None:
    names = ("metavision_core", "metavision_core.event_io", "metavision_hal")
    core, event_io, hal = (types.ModuleType(name) for name in names)
    event_io.EventsIterator = FakeEventsIterator
    core.event_io = event_io
    hal.DeviceDiscovery = types.SimpleNamespace(list=lambda: list(serials))
    monkeypatch.setattr(FakeEventsIterator, "slices", list(slices))
    monkeypatch.setattr(FakeEventsIterator, "made", [])
    for module in (core, event_io, hal):
        monkeypatch.setitem(sys.modules, module.__name__, module)


def hide(monkeypatch, *names: str) -> None:
    """Make ``import name`` fail as if the library were not installed."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def infer(tmp_path, tiny_checkpoint):
    """``infer(spec, *options, modality="events") -> exit status`` of a headless run on a tiny checkpoint."""
    def run(spec: str, *more: str, modality: str = "events") -> int:
        return main(["infer", spec, "--checkpoint", str(tiny_checkpoint(tmp_path, modality)), "--headless", *more])
    return run


# --------------------------------------------------------------------------------------------
# Streams


DV_FIELDS = ("x", "y", "timestamp", "polarity")
MV_FIELDS = ("x", "y", "t", "p")


def test_dv_processing_camera_steps_follow_its_timestamps_until_it_is_unplugged(tmp_path, monkeypatch, capsys, infer):
    batches = _batches(DV_DTYPE, DV_FIELDS, EPOCH_US, n=100, still=(20, 21, 22))
    dv = fake_dv([lambda: FakeDvCamera(batches, period=0.004)])  # 1 s of events in 0.4 s: faster than real time
    monkeypatch.setitem(sys.modules, "dv_processing", dv)
    hide(monkeypatch, "metavision_core")
    out = tmp_path / "steps.jsonl"
    assert infer("camera:0", "--jsonl", str(out), "--quiet") == 0
    lines = _lines(out)
    _check_steps(lines, _expected_windows(batches, DV_FIELDS))
    assert len(lines) >= 3  # windows stream out one by one once the model keeps up (the first ones queue up)
    assert f"done: {len(lines)} steps" in capsys.readouterr().err  # unplugged: a clean end
    gc.collect()
    assert len(dv.opened) == 1 and dv.opened[0]() is None  # the library's camera object was let go


def test_metavision_camera_is_counted_after_dv_processing_ones(tmp_path, monkeypatch, infer):
    slices = _batches(METAVISION_DTYPE, MV_FIELDS, 1_234, span_us=METAVISION_SLICE_US, n=120, still=(40, 41))
    dv = fake_dv([lambda: pytest.fail("camera:1 is the Metavision camera, not the dv_processing one")])
    monkeypatch.setitem(sys.modules, "dv_processing", dv)
    install_metavision(monkeypatch, ["00050423"], slices)
    out = tmp_path / "steps.jsonl"
    assert infer("camera:1", "--jsonl", str(out), "--quiet") == 0
    _check_steps(_lines(out), _expected_windows(slices, MV_FIELDS))
    [iterator] = FakeEventsIterator.made
    assert (iterator.input_path, iterator.mode, iterator.delta_t) == ("00050423", "delta_t", METAVISION_SLICE_US)
    assert iterator.released and not dv.opened


def test_stopping_early_releases_the_camera(tmp_path, monkeypatch, infer):
    def endless():
        start = EPOCH_US
        while True:
            yield from _batches(DV_DTYPE, DV_FIELDS, start, n=10)
            start += 10 * 10_000

    dv = fake_dv([lambda: FakeDvCamera(endless())])
    monkeypatch.setitem(sys.modules, "dv_processing", dv)
    hide(monkeypatch, "metavision_core")
    out = tmp_path / "steps.jsonl"
    assert infer("camera:0", "--jsonl", str(out), "--max-steps", "3", "--quiet") == 0
    assert len(_lines(out)) == 3
    gc.collect()
    assert dv.opened[0]() is None  # the reader thread stopped polling and let the camera go


# --------------------------------------------------------------------------------------------
# Messages: one line each, exit status 2


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_no_library_says_which_were_looked_for(tmp_path, monkeypatch, capsys, infer):
    hide(monkeypatch, "dv_processing", "metavision_core")
    assert infer("camera:0") == 2
    err = _error(capsys)
    assert "camera:0: no event-camera library is installed (looked for dv_processing, metavision_core" in err
    assert "pip install dv-processing" in err and "record to a file" in err and "sim:webcam:N" in err


@pytest.mark.parametrize("libraries", ["dv_processing", "metavision_core", "both"])
def test_no_camera_says_which_libraries_looked(tmp_path, monkeypatch, capsys, libraries, infer):
    if libraries in ("dv_processing", "both"):
        monkeypatch.setitem(sys.modules, "dv_processing", fake_dv([]))
    else:
        hide(monkeypatch, "dv_processing")
    if libraries in ("metavision_core", "both"):
        install_metavision(monkeypatch, [])
    else:
        hide(monkeypatch, "metavision_core")
    assert infer("camera:0") == 2
    err = _error(capsys)
    assert "camera:0: no event camera found (" in err and "sim:webcam:N" in err
    for library in ("dv_processing", "metavision_core"):
        assert f"{library}: {'found none' if libraries in (library, 'both') else 'not installed'}" in err


def test_bad_camera_specs(tmp_path, monkeypatch, capsys, infer):
    monkeypatch.setitem(sys.modules, "dv_processing", fake_dv([lambda: FakeDvCamera([])]))
    hide(monkeypatch, "metavision_core")
    for spec, message, modality in (
        ("camera:2", "camera:2: only 1 event camera(s) found: camera:0 = DVXPLORER DXA00090 (dv_processing)", "events"),
        ("camera:x", "camera:x: expected camera:N with N a camera index", "events"),
        ("camera:-1", "camera:-1: the camera index must be >= 0", "events"),
        ("sim:camera:0", "sim:camera:0: camera:N is an event camera already", "events"),
        ("camera:0", "camera:0: the checkpoint's model takes frames, this source gives events", "frames"),
    ):
        assert infer(spec, modality=modality) == 2
        assert message in _error(capsys)


def test_a_broken_library_install_is_named(tmp_path, monkeypatch, capsys, infer):
    hide(monkeypatch, "dv_processing")
    install_metavision(monkeypatch, ["1"])
    hide(monkeypatch, "metavision_hal")  # metavision_core without its HAL module: a broken install
    assert infer("camera:0") == 2
    err = _error(capsys)
    assert "no event camera found (dv_processing: not installed; metavision_core: cannot be imported (" in err


@pytest.mark.parametrize("fault", ["library error", "time goes back", "outside the sensor"])
def test_a_faulty_stream_stops_with_one_line_and_keeps_the_steps(tmp_path, monkeypatch, capsys, fault, infer):
    batches = _batches(DV_DTYPE, DV_FIELDS, EPOCH_US)
    if fault == "time goes back":
        batches[30]["timestamp"] -= 200_000
    if fault == "outside the sensor":
        batches[30]["x"][5] = -3  # int16 in the library: a negative column
    camera = lambda: FakeDvCamera(batches, fail_after=30 if fault == "library error" else None)  # noqa: E731
    monkeypatch.setitem(sys.modules, "dv_processing", fake_dv([camera]))
    hide(monkeypatch, "metavision_core")
    out = tmp_path / "steps.jsonl"
    assert infer("camera:0", "--jsonl", str(out), "--quiet") == 2
    err = _error(capsys)
    expected = {"library error": "camera:0: DVXPLORER DXA00090 (dv_processing) failed while streaming "
                                 "(libusb: LIBUSB_ERROR_IO (transfer failed))",
                "time goes back": "camera:0 (DVXPLORER DXA00090): the camera's timestamps went backwards",
                "outside the sensor": "camera:0 (DVXPLORER DXA00090): events outside the 64 x 48 sensor"}[fault]
    assert expected in err
    assert 1 <= len(_lines(out)) <= 6  # the steps before the fault (300 ms of events) are kept


# --------------------------------------------------------------------------------------------
# The real dv_processing


def test_real_dv_processing_without_a_camera_says_none_was_found(tmp_path, monkeypatch, capsys, infer):
    dv = pytest.importorskip("dv_processing", reason="dv-processing is not installed (pip install dv-processing)")
    if dv.io.camera.discover():
        pytest.skip("an iniVation camera is attached: this test needs none")
    hide(monkeypatch, "metavision_core")
    assert infer("camera:0") == 2
    expected = "camera:0: no event camera found (dv_processing: found none; metavision_core: not installed)"
    assert expected in _error(capsys)


def test_real_dv_processing_batches_from_a_recording_standing_in_for_a_camera(tmp_path, monkeypatch, shared_data, infer):
    """The real library's EventStore batches (a DVXplorer recording read through dv.io, which shares
    the camera's InputBase API) give the windows the project's own AEDAT 4 reader gives."""
    dv = pytest.importorskip("dv_processing", reason="dv-processing is not installed (pip install dv-processing)")
    recording = shared_data / "events" / "tonic_sample.aedat4"
    descriptor = types.SimpleNamespace(cameraModel=dv.io.camera.CameraModel.DVXPLORER, serialNumber="DXB00010")
    monkeypatch.setattr(dv.io.camera, "discover", lambda: [descriptor])
    monkeypatch.setattr(dv.io.camera, "open", lambda d: dv.io.MonoCameraRecording(str(recording)))
    hide(monkeypatch, "metavision_core")
    out = tmp_path / "steps.jsonl"
    assert infer("camera:0", "--jsonl", str(out), "--quiet") == 0
    events = read_events(recording).events.copy()
    events["t"] -= events["t"][0]
    _check_steps(_lines(out), list(slice_windows(events, WindowSpec("duration", WINDOW_US))))
