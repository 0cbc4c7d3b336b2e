"""Video sources: files decoded with PyAV, and webcams through OpenCV.

A source yields observations ``(t, frame)``: ``t`` in seconds, ``frame`` uint8, (H, W, 3) RGB or (H, W)
grey. File times come from each frame's presentation timestamp (pts x time_base), never from a frame
counter or the nominal frame rate, so a variable-frame-rate file gives its true irregular times and a
file whose header frame count is wrong is still read to its real end (OpenCV's CAP_PROP_FRAME_COUNT
and CAP_PROP_POS_MSEC are unreliable for both; see PEERS.md).

Time rules, shared by every function here:
- t is relative to the stream's start time (the first frame of an ordinary file is at 0).
- Times never go backwards. Equal pts are kept as equal times (dt = 0 is a legal step). A pts earlier
  than the previous frame's (broken muxing) is clamped to the previous time, so no frame is lost.
- A frame without a pts (raw elementary streams) is placed one nominal period after the previous one.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

# cv2 before av: PyAV's wheel bundles a private libxcb, and OpenCV's Qt window, loaded after it,
# binds to that copy and freezes (PyAV-Org/PyAV#1050).
import cv2  # isort: skip
import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from data.errors import DataError

Size = tuple[int, int]  # (width, height)
Frame = np.ndarray  # uint8, (H, W, 3) RGB or (H, W) grey
Observation = tuple[float, Frame]

_FALLBACK_FPS = 30.0  # period for pts-less frames when the stream states no rate at all
DEFAULT_MAX_BYTES = 2 << 30  # read_video refuses to hold more decoded frames than this


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's headers say (nothing is decoded).

    Attributes:
        path: the file.
        width, height: the coded picture size in pixels.
        fps: the nominal frame rate, or None when the file states none. For a variable-frame-rate
            file it is an average at best; read the frame times instead.
        duration: seconds, from the stream or container header, or None when unknown.
        frame_count: the header's frame count, or None when absent. It can be wrong (either way).
        codec: the decoder's name, e.g. "h264".
    """

    path: Path
    width: int
    height: int
    fps: float | None
    duration: float | None
    frame_count: int | None
    codec: str


def check_size(size: Size | None, name: str = "size") -> Size | None:
    """Validate a ``(width, height)`` option (or None) and return it as a tuple of ints."""
    if size is None:
        return None
    try:
        width, height = size
        valid = int(width) == width and int(height) == height and width > 0 and height > 0
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise DataError(f"{name}: expected (width, height) as two positive integers, got {size!r}")
    return int(width), int(height)


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and return its container and first video stream, or raise DataError."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable video ({_reason(error)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream in the file")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # PyAV leaves it None when FFmpeg has no decoder for the codec
        container.close()
        raise DataError(f"{path}: unsupported video codec: this FFmpeg build has no decoder for it")
    return container, stream


def _where(t: float | None, decoded: int) -> str:
    return "before the first frame" if t is None else f"after t = {t:.3f} s ({decoded} frames)"


def _nominal_period(stream: av.video.stream.VideoStream) -> float:
    rate = stream.guessed_rate or stream.average_rate or stream.base_rate
    return 1.0 / float(rate) if rate else 1.0 / _FALLBACK_FPS


class _Clock:
    """Turns pts into seconds from the stream start, applying the module's time rules."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self.time_base: Fraction = stream.time_base or Fraction(1, 1)
        self.origin: int | None = stream.start_time  # None: taken from the first pts seen
        self.period = _nominal_period(stream)
        self.last: float | None = None

    def __call__(self, pts: int | None) -> float:
        if pts is None:
            t = 0.0 if self.last is None else self.last + self.period
        else:
            if self.origin is None:
                self.origin = pts
            t = float((pts - self.origin) * self.time_base)
        if self.last is not None and t < self.last:
            t = self.last
        self.last = t
        return t


def _converter(size: Size | None, grey: bool) -> Callable[[av.VideoFrame], Frame]:
    """Frame -> uint8 array; resizing and colour conversion happen in one swscale pass."""
    fmt = "gray" if grey else "rgb24"
    if size is None:
        return lambda frame: frame.to_ndarray(format=fmt)
    width, height = size
    reformatter = VideoReformatter()  # reused across frames so swscale's context is cached
    # AREA: measured faster than bilinear in swscale and than cv2.resize after a full-size
    # conversion, and it averages properly when shrinking.
    return lambda frame: reformatter.reformat(
        frame, width=width, height=height, format=fmt, interpolation=Interpolation.AREA
    ).to_ndarray()


def _primed(generator: Iterator) -> Iterator:
    """Run a generator to its first (sentinel) yield, so opening errors raise at call time and
    ``close()`` on the returned iterator always reaches the generator's ``finally``."""
    next(generator)
    return generator


def iter_video(
    path: str | Path,
    *,
    size: Size | None = None,
    grey: bool = False,
    start: float = 0.0,
    end: float | None = None,
    threads: int = 0,
) -> Iterator[Observation]:
    """Decode a video file frame by frame.

    Args:
        path: the video file (anything FFmpeg reads: MP4, AVI, MKV, ...).
        size: (width, height) to resize to, or None for the file's size.
        grey: yield (H, W) luminance instead of (H, W, 3) RGB.
        start: first time to yield, in seconds (inclusive); earlier frames are skipped after seeking
            to the keyframe before it.
        end: time to stop at, in seconds (exclusive), or None for the real end of the file.
        threads: decoder threads; 0 lets FFmpeg use one per core (frame and slice threads), 1 decodes
            in the calling thread (DataLoader workers already decode in parallel).

    Yields:
        (t, frame): t seconds from the stream start (module docstring: time rules), frame uint8.

    Raises:
        DataError: naming the path, for a missing file, a file that is not a video, an unsupported
            codec, or data the demuxer or decoder rejects (a truncated MP4, corrupt packets). The file
            is opened before this returns, so most of these raise here, not at the first frame.

    A container that simply ends early (a truncated MKV, an AVI cut between two frames) yields the
    frames it holds: nothing in such a file says more were meant to follow.
    """
    path = Path(path)
    size = check_size(size)
    if not (isinstance(start, (int, float)) and np.isfinite(start) and start >= 0):
        raise DataError(f"{path}: start must be a finite time >= 0 seconds, got {start!r}")
    if end is not None and not (isinstance(end, (int, float)) and end > start):
        raise DataError(f"{path}: end ({end!r} s) must be after start ({start!r} s)")
    if not (isinstance(threads, int) and threads >= 0):
        raise DataError(f"threads: expected an integer >= 0 (0 = automatic), got {threads!r}")
    return _primed(_decode(path, size, grey, float(start), end, threads))


def _set_threads(stream: av.video.stream.VideoStream, threads: int) -> None:
    stream.codec_context.thread_count = threads
    if threads != 1:
        stream.thread_type = "AUTO"  # frame + slice threads; frames still come out in order


def _decode(path: Path, size: Size | None, grey: bool, start: float, end: float | None, threads: int):
    container, stream = _open(path)
    try:
        _set_threads(stream, threads)
        clock = _Clock(stream)
        convert = _converter(size, grey)
        if start > 0 and clock.origin is not None:
            try:
                container.seek(clock.origin + int(start / clock.time_base), stream=stream, backward=True)
            except av.FFmpegError:  # unseekable: decode from the beginning instead
                container.close()
                container, stream = _open(path)
                _set_threads(stream, threads)
        yield None
        decoded, t = 0, None
        try:
            # Demux by hand to see the corrupt flag: with frame threads the decoder drops a truncated
            # last packet silently, so this flag is how a cut-off MP4 or AVI is noticed.
            for packet in container.demux(stream):
                if packet.is_corrupt:
                    raise DataError(f"{path}: truncated or corrupt data {_where(t, decoded)}")
                for frame in packet.decode():
                    decoded += 1
                    t = clock(frame.pts)
                    if t < start:
                        continue
                    if end is not None and t >= end:
                        return
                    yield t, convert(frame)
        except av.FFmpegError as error:
            raise DataError(f"{path}: cannot decode {_where(t, decoded)}: {_reason(error)}") from None
        if decoded == 0 and start == 0:
            raise DataError(f"{path}: no frame could be decoded")
    finally:
        container.close()


def read_video(path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Decode a whole video (or the window ``[start, end)``) into memory.

    Args:
        path: the video file.
        max_bytes: refuse (DataError) rather than hold more decoded pixels than this.
        options: ``size``, ``grey``, ``start``, ``end``, ``threads``, as for ``iter_video``.

    Returns:
        times (T,) float64 seconds, and frames (T, H, W, 3) or (T, H, W) uint8.
    """
    path = Path(path)
    times: list[float] = []
    frames: list[Frame] = []
    held = 0
    frame_iter = iter_video(path, **options)
    try:
        for t, frame in frame_iter:
            held += frame.nbytes
            if held > max_bytes:
                raise DataError(
                    f"{path}: decoded frames exceed max_bytes = {max_bytes} after {len(frames)} frames; "
                    "use iter_video, a smaller size, or a start/end window"
                )
            times.append(t)
            frames.append(frame)
    finally:
        frame_iter.close()
    if not frames:
        info = video_info(path)
        width, height = options.get("size") or (info.width, info.height)
        shape = (0, height, width) if options.get("grey") else (0, height, width, 3)
        return np.zeros(0, np.float64), np.zeros(shape, np.uint8)
    return np.asarray(times, np.float64), np.stack(frames)


def video_times(path: str | Path) -> np.ndarray:
    """The frame times of a video, (T,) float64 seconds, without decoding pictures when possible.

    Reads packet timestamps from the container (a fast pass, no decoding) and sorts them into
    presentation order; falls back to decoding when packets carry no pts. Same time rules as
    ``iter_video``, so the result matches its times for well-formed files.
    """
    path = Path(path)
    container, stream = _open(path)
    try:
        pts: list[int] = []
        try:
            for packet in container.demux(stream):
                if packet.is_corrupt:
                    raise DataError(f"{path}: truncated or corrupt data after {len(pts)} packets")
                if packet.size == 0 or packet.is_discard:  # flush packets, edit-list pre-roll
                    continue
                if packet.pts is None:
                    pts = []
                    break
                pts.append(packet.pts)
            else:
                if pts:
                    clock = _Clock(stream)
                    return np.array([clock(p) for p in sorted(pts)], np.float64)
        except av.FFmpegError as error:
            raise DataError(f"{path}: cannot read packets ({_reason(error)})") from None
    finally:
        container.close()
    frame_iter = iter_video(path, grey=True, size=(16, 16))
    try:
        return np.array([t for t, _ in frame_iter], np.float64)
    finally:
        frame_iter.close()


def video_info(path: str | Path) -> VideoInfo:
    """Read a video's headers (size, nominal fps, duration, frame count when stated)."""
    path = Path(path)
    container, stream = _open(path)
    try:
        rate = stream.guessed_rate or stream.average_rate  # FFmpeg's own best guess first
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        ctx = stream.codec_context
        return VideoInfo(
            path=path,
            width=int(ctx.width),
            height=int(ctx.height),
            fps=float(rate) if rate else None,
            duration=duration,
            frame_count=int(stream.frames) if stream.frames else None,
            codec=ctx.name,
        )
    finally:
        container.close()


def iter_webcam(index: int = 0, *, size: Size | None = None, grey: bool = False) -> Iterator[Observation]:
    """Capture frames from a camera through OpenCV.

    Args:
        index: the camera's OpenCV index (0 = the first camera).
        size: (width, height): asked of the camera, then enforced with a resize (cameras pick the
            nearest mode they support).
        grey: yield (H, W) luminance instead of (H, W, 3) RGB.

    Yields:
        (t, frame): t seconds since the camera was opened, measured with ``time.monotonic`` when
        the frame was grabbed (camera clocks and CAP_PROP_POS_MSEC are not trusted); frame uint8.
        The stream ends when the camera stops delivering frames (e.g. it was unplugged).

    Raises:
        DataError: ``webcam:N: ...`` when the camera cannot be opened or gives no first frame;
            raised here, at call time.

    The camera is released when the iterator is exhausted or closed (``close()``, or leaving a
    ``for`` loop over ``contextlib.closing(...)``).
    """
    size = check_size(size)
    return _primed(_capture(index, size, grey))


def _capture(index: int, size: Size | None, grey: bool):
    name = f"webcam:{index}"
    capture = cv2.VideoCapture(index)
    try:
        if not capture.isOpened():
            raise DataError(f"{name}: cannot open camera {index} (no camera with that index, or it is in use)")
        if size is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        t0 = time.monotonic()
        yield None
        first = True
        while True:
            # Time the grab, not the retrieve: grab returns when the frame arrived; retrieve decodes.
            grabbed = capture.grab()
            t = time.monotonic() - t0
            ok, bgr = capture.retrieve() if grabbed else (False, None)
            if not ok or bgr is None:
                if first:
                    raise DataError(f"{name}: camera {index} opened but delivered no frame")
                return
            first = False
            yield t, _convert_bgr(bgr, size, grey)
    finally:
        capture.release()


def _convert_bgr(bgr: np.ndarray, size: Size | None, grey: bool) -> Frame:
    """OpenCV BGR (H, W, 3) -> RGB (H, W, 3) or grey (H, W), resized to ``size`` if given."""
    if size is not None and (bgr.shape[1], bgr.shape[0]) != size:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    if bgr.ndim == 2:  # some drivers deliver grey already
        return bgr if grey else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY if grey else cv2.COLOR_BGR2RGB)
