"""Where streaming results go: JSON lines, an annotated video, a live window.

Files are written to a temporary name beside the target and renamed onto it by ``close(keep=True)``
when the stream ends (also on SIGINT / SIGTERM, or a live camera that fails: its steps cannot be
recorded again); ``close(keep=False)``, for a recording whose run failed, removes the temporary file
and leaves the previous one untouched. So a crash never leaves half a file under the final name. A
write that fails (a full disk) is one PerceptionError line naming the file, and that file is never
kept; ``close`` may be called again, and then does nothing.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from collections import deque
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from perception._files import atomic_file
from perception.errors import PerceptionError
from perception.streaming.runner import StepResult

PANEL_W = 220          # width of the side panel with the probability plot
HISTORY = 120          # steps shown in the plot
MIN_DISPLAY_H = 240    # small model inputs (event images) are scaled up to at least this height


def _write_failed(path: Path, error: OSError) -> PerceptionError:
    detail = error.strerror or str(error) or type(error).__name__
    return PerceptionError(f"{path}: writing failed ({detail}); the previous file is untouched")


class _PendingFile:
    """The temporary file of a sink's target, kept (renamed onto it) or discarded once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.pending = atomic_file(self.path)
        self.closed = False
        self.broken = False  # a write failed: the file is incomplete and is never kept

    def failed(self, error: OSError) -> PerceptionError:
        """Mark the file broken; the one-line error to raise."""
        self.broken = True
        return _write_failed(self.path, error)

    def finish(self, keep: bool, close_writer) -> None:
        """Close the writer (``close_writer(keep)``), then keep or discard the file; OSError -> one line."""
        if self.closed:
            return
        self.closed = True
        keep = keep and not self.broken
        try:
            close_writer(keep)
        except OSError as exc:
            self.pending.discard()
            if keep:
                raise _write_failed(self.path, exc) from None
            return  # discarded anyway
        except BaseException:
            self.pending.discard()
            raise
        if not keep:
            self.pending.discard()
            return
        try:
            self.pending.commit()  # removes the temporary file when the rename fails
        except OSError as exc:
            raise _write_failed(self.path, exc) from None


class JsonlSink:
    """One JSON object per step: t, dt, label, score, probs, skipped, latency_ms (and events)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.out = _PendingFile(self.path)  # renamed onto the path when the stream closes
        self.file = self.out.pending.tmp.open("w")

    def write(self, result: StepResult) -> None:
        try:
            self.file.write(json.dumps(result.record(), allow_nan=False) + "\n")
        except OSError as exc:
            raise self.out.failed(exc) from None

    def close(self, keep: bool = True) -> None:
        self.out.finish(keep, lambda keep: self.file.close())


class Overlay:
    """Draws label, score, frames per second and a plot of the class probabilities over time."""

    def __init__(self, classes: list[str]) -> None:
        self.classes = classes
        self.history: deque = deque(maxlen=HISTORY)
        self.clock: deque = deque(maxlen=30)
        rng = np.random.default_rng(7)
        self.colours = [tuple(int(c) for c in rng.integers(40, 220, 3)) for _ in classes]

    def draw(self, result: StepResult) -> np.ndarray:
        self.history.append(result.probs)
        self.clock.append(time.perf_counter())
        image = result.image
        if image.shape[0] < MIN_DISPLAY_H:
            scale = int(np.ceil(MIN_DISPLAY_H / image.shape[0]))
            image = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
        height = image.shape[0]
        canvas = np.full((height, image.shape[1] + PANEL_W, 3), 250, np.uint8)
        canvas[:, : image.shape[1]] = image
        fps = (len(self.clock) - 1) / (self.clock[-1] - self.clock[0]) if len(self.clock) > 1 else 0.0
        text = [f"{result.label} {100 * result.score:.0f}%", f"t {result.t:.3f} s  dt {1e3 * result.dt:.1f} ms",
                f"{fps:.1f} steps/s  {result.latency_ms:.1f} ms"]
        if result.skipped:
            text.append(f"skipped {result.skipped}")
        x0 = image.shape[1] + 8
        for i, line in enumerate(text):
            cv2.putText(canvas, line, (x0, 20 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
        top, bottom = 20 + 18 * len(text) + 6, height - 8
        if bottom - top > 20 and len(self.history) > 1:
            probs = np.asarray(self.history)                        # (steps, K)
            xs = x0 + np.linspace(0, PANEL_W - 16, len(probs)).astype(np.int32)
            for k in range(probs.shape[1]):
                ys = (bottom - probs[:, k] * (bottom - top)).astype(np.int32)
                cv2.polylines(canvas, [np.stack([xs, ys], 1)], False, self.colours[k % len(self.colours)], 1, cv2.LINE_AA)
            cv2.rectangle(canvas, (x0, top), (x0 + PANEL_W - 16, bottom), (160, 160, 160), 1)
        return canvas


class VideoSink:
    """The annotated stream as an H.264 MP4 (PyAV), at the source's own timestamps."""

    def __init__(self, path: Path, classes: list[str]) -> None:
        self.path = Path(path)
        self.overlay = Overlay(classes)
        self.out = _PendingFile(self.path)  # renamed onto the path when the stream closes
        self.pending = self.out.pending
        self.container = None
        self.last_pts = -1

    def write(self, result: StepResult) -> None:
        import av

        canvas = self.overlay.draw(result)
        canvas = canvas[: canvas.shape[0] // 2 * 2, : canvas.shape[1] // 2 * 2]  # yuv420p needs even sides
        if self.container is None:
            self.container = av.open(str(self.pending.tmp), "w", format="mp4")
            self.stream = self.container.add_stream("libx264", rate=30)
            self.stream.width, self.stream.height = canvas.shape[1], canvas.shape[0]
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = self.stream.codec_context.time_base = Fraction(1, 1000)
            self.t0 = result.t
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(canvas), format="rgb24")
        pts = max(self.last_pts + 1, int(round((result.t - self.t0) * 1000)))
        frame.pts, frame.time_base, self.last_pts = pts, Fraction(1, 1000), pts
        try:
            self.container.mux(self.stream.encode(frame))
        except OSError as exc:
            raise self.out.failed(exc) from None  # close() then only releases the container

    def close(self, keep: bool = True) -> None:
        self.out.finish(keep and self.container is not None, self._close_container)

    def _close_container(self, keep: bool) -> None:
        container, self.container = self.container, None
        if container is None:
            return
        if keep:  # not after a failed write: the muxer is then in an error state
            container.mux(self.stream.encode())  # flush the encoder
        container.close()  # writes the MP4 index; on a failed one, only releases it


class WindowSink:
    """A live window (OpenCV) with the overlay; closing it (or q / Esc) stops the stream."""

    def __init__(self, classes: list[str], title: str = "perception") -> None:
        problem = display_problem()
        if problem is not None:
            raise PerceptionError(f"--show: {problem}; use --headless with --output FILE.mp4 or --jsonl FILE")
        self.overlay, self.title, self.stopped = Overlay(classes), title, False

    def write(self, result: StepResult) -> None:
        cv2.imshow(self.title, cv2.cvtColor(self.overlay.draw(result), cv2.COLOR_RGB2BGR))
        # waitKey also runs the GUI's event loop: without it the window is never painted
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.stopped = True

    def close(self, keep: bool = True) -> None:
        cv2.destroyAllWindows()


def gui_backend() -> str:
    """OpenCV's GUI backend as its build information names it ("QT5", "GTK3", "WIN32UI", ...; "NONE")."""
    info = cv2.getBuildInformation()
    return info.split("GUI:", 1)[1].split("\n", 1)[0].strip().upper() if "GUI:" in info else "NONE"


def display_problem() -> str | None:
    """Why no window can be shown here, or None when one can."""
    gui = gui_backend()
    if gui == "NONE":
        return "this OpenCV was built without GUI support (opencv-python-headless?); install opencv-python"
    if os.name == "nt":
        return None
    display, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if sys.platform.startswith("linux"):
        # OpenCV's Qt aborts the whole process when it cannot reach the X server: ask the server first
        if display and _x_server_answers(display):
            clash = _foreign_xcb()
            if clash is not None:
                return (f"OpenCV's window would freeze: {clash} was loaded before OpenCV "
                        "(import cv2 before av)")
            return None
        if wayland and gui.startswith("GTK"):  # the Qt in OpenCV's wheels speaks X11 only; GTK also Wayland
            return None
        return f"the X display {display} cannot be opened" if display else "no display here (DISPLAY is not set)"
    return None if display or wayland else "no display here (DISPLAY is not set)"


def display_available() -> bool:
    """Whether a window can be shown: a display that answers and an OpenCV with GUI support."""
    return display_problem() is None


def _x_server_answers(display: str) -> bool:
    """Whether the X server ``display`` accepts a connection, asked through libxcb as Qt's X11 plugin does."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:  # no libxcb: no X11 client can run here
        return False
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)  # never NULL: a failed one carries the error
    try:
        return xcb.xcb_connection_has_error(connection) == 0
    finally:
        xcb.xcb_disconnect(connection)


def _foreign_xcb() -> str | None:
    """The private libxcb copy of another wheel (PyAV's) that OpenCV's Qt would bind to, or None.

    Wheels bundle X libraries under the same hashed names; whichever loads first is the one the
    process uses, and OpenCV's Qt on PyAV's copy spins forever in its first ``imshow``.
    """
    ours = Path(cv2.__file__).resolve().parent.parent / "opencv_python.libs"
    try:
        names = {path.name for path in ours.glob("libxcb*")}
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = Path(line.split(maxsplit=5)[-1])
        if path.name in names and path.parent.name != ours.name:
            return f"{path.parent.name}/{path.name}"
    return None
