"""`perception infer`'s live window: the CLI runs under a virtual X server (Xvfb) and the test reads
the server's screen while the stream plays; a display that cannot take a window is a one-line error.

The screen is read from Xvfb's own framebuffer file (``-fbdir``, XWD format), so no screenshot tool
is needed. Skips where Xvfb is not installed or OpenCV has no GUI backend (opencv-python-headless).
"""
from __future__ import annotations

import os
import re
import select
import shutil
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from perception.cli import main
from perception.streaming.sinks import PANEL_W, gui_backend

pytestmark = pytest.mark.slow

FRAMES, FPS = 40, 10        # a 4 s recording, played at its recorded pace (--realtime)
BAR, BACKGROUND = 230, 60   # the recording: a bright bar moving over a dark grey background
PANEL = 250                 # the overlay's side panel
CANVAS_H = 256              # 32 x 32 model input, scaled up (8x) to at least MIN_DISPLAY_H
RUN_TIMEOUT_S = 240         # torch's import alone can take 20 s on a loaded machine


def _bar_video(path: Path) -> Path:
    """A 64 x 48 video of a bar moving 4 px per frame, FRAMES frames at FPS."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(FRAMES):
            image = np.full((48, 64, 3), BACKGROUND, np.uint8)
            image[:, (4 * i) % 58 : (4 * i) % 58 + 6] = BAR
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i * 1000 // FPS, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture
def xvfb(tmp_path):
    """``(DISPLAY, framebuffer file)`` of a private Xvfb on a display number it picks itself; killed after."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    if gui_backend() == "NONE":
        pytest.skip("this OpenCV has no GUI backend (opencv-python-headless is installed; install opencv-python)")
    fbdir = tmp_path / "xvfb"
    fbdir.mkdir()
    read_fd, write_fd = os.pipe()
    # -displayfd: the server takes a free display number itself and writes it here once it accepts
    # clients, so parallel runs never race for one; -br: a black root, so only windows are non-black
    with (tmp_path / "xvfb.log").open("w") as log:
        server = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "800x600x24", "-fbdir", str(fbdir),
             "-nolisten", "tcp", "-br"],
            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=log)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 20)
        number = os.read(read_fd, 16).decode().strip() if ready else ""
        if not number:
            log = (tmp_path / "xvfb.log").read_text()[-2000:]
            pytest.fail(f"Xvfb did not start within 20 s (exit status {server.poll()}):\n{log}")
        yield f":{number}", fbdir / "Xvfb_screen0"
    finally:
        os.close(read_fd)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def _screen(framebuffer: Path) -> np.ndarray:
    """The virtual screen now, (H, W, 3) uint8 RGB, read from Xvfb's XWD framebuffer file."""
    raw = framebuffer.read_bytes()
    (header_size, _, pixmap_format, _, width, height, _, byte_order, _, _, _, bits_per_pixel,
     bytes_per_line, _, red_mask, _, _, _, _, ncolors) = struct.unpack(">20I", raw[:80])
    assert (pixmap_format, bits_per_pixel, byte_order, red_mask) == (2, 32, 0, 0xFF0000), \
        "expected a 32-bit little-endian ZPixmap framebuffer (Xvfb -screen 0 WxHx24)"
    offset = header_size + 12 * ncolors  # after the header and the colour map
    rows = np.frombuffer(raw, np.uint8, height * bytes_per_line, offset).reshape(height, bytes_per_line)
    return rows[:, : 4 * width].reshape(height, width, 4)[..., 2::-1].copy()  # B, G, R, pad -> RGB


def _near(image: np.ndarray, colour, tolerance: int = 6) -> np.ndarray:
    return (np.abs(image.astype(np.int16) - np.asarray(colour, np.int16)) <= tolerance).all(-1)


# frames: the window opens by default where a display answers; events: asked for with --show
@pytest.mark.parametrize("modality, view", [("frames", []), ("events", ["--show"])],
                         ids=["frames-default", "events-show"])
def test_the_window_shows_the_stream_live(tmp_path, xvfb, tiny_checkpoint, modality, view):
    display, framebuffer = xvfb
    video = _bar_video(tmp_path / "bar.mp4")
    source = str(video) if modality == "frames" else f"sim:{video}"
    # the console script's own code, on this interpreter: `perception infer ... --show --realtime`
    command = [sys.executable, "-c", "import sys; from perception.cli import main; sys.exit(main())",
               "infer", source, "--checkpoint", str(tiny_checkpoint(tmp_path, modality)), *view,
               "--realtime", "--threads", "1", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"} | {"DISPLAY": display}
    shots = []
    with (tmp_path / "infer.log").open("w+") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                screen = _screen(framebuffer)
                if _near(screen, (PANEL,) * 3, 0).sum() > 10_000:  # the window is up (not just the cursor)
                    shots.append(screen)
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        log.seek(0)
        output = log.read()
    assert process.returncode == 0, output
    expected_steps = FRAMES if modality == "frames" else None
    assert "done:" in output and (expected_steps is None or f"done: {expected_steps} steps" in output), output

    assert len(shots) >= 5, f"the window was seen on {len(shots)} screenshots only\n{output}"
    rows, cols = np.nonzero(shots[-1].any(-1))
    assert np.ptp(rows) + 1 >= CANVAS_H and np.ptp(cols) + 1 >= CANVAS_H + PANEL_W  # the whole overlay fits
    if modality == "frames":
        background, marks = (BACKGROUND,) * 3, (BAR,) * 3
    else:  # the event picture: white, ON events blue, OFF events red
        background, marks = (255, 255, 255), (40, 90, 220)
    for screen in shots:
        assert _near(screen, (PANEL,) * 3, 0).sum() > 0.5 * PANEL_W * CANVAS_H   # the side panel
        assert _near(screen, background).sum() > 0.4 * CANVAS_H * CANVAS_H       # the picture
    # live: the moving bar (or its events) is drawn at new places as the stream plays
    placements = {np.flatnonzero(_near(screen, marks).sum(0) >= 8).tobytes() for screen in shots}
    assert len(placements) >= 3, f"the picture changed {len(placements) - 1} times in {len(shots)} screenshots"
    if modality == "events":
        assert any(_near(screen, (220, 50, 40), 10).sum() > 20 for screen in shots)  # OFF events too
    # and the window is gone once the stream ends: only the cursor is left on the black screen
    deadline = time.monotonic() + 5  # the server takes the window down a moment after the client left
    while _screen(framebuffer).any(-1).sum() >= 1000 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _screen(framebuffer).any(-1).sum() < 1000


def test_show_without_a_display_is_a_one_line_error(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    # an X display that does not answer: OpenCV's Qt would abort the whole process on it
    if not sys.platform.startswith("linux"):
        pytest.skip("the X display check is Linux's")
    if Path("/tmp/.X11-unix/X5917").exists():
        pytest.skip("an X server runs on display :5917 here")
    monkeypatch.setenv("DISPLAY", ":5917")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    video = _bar_video(tmp_path / "bar.mp4")
    assert main(["infer", str(video), "--checkpoint", str(tiny_checkpoint(tmp_path, "frames")), "--show"]) == 2
    err = capsys.readouterr().err.strip()
    reason = "built without GUI support" if gui_backend() == "NONE" else "the X display :5917 cannot be opened"
    assert reason in err and "use --headless" in err and len(err.splitlines()) == 1, err


def test_a_window_that_would_freeze_is_refused(xvfb):
    """PyAV loaded before OpenCV: its private libxcb would make OpenCV's Qt spin forever in imshow."""
    import cv2

    def bundled(module, folder: str) -> set[str]:
        return {p.name for p in (Path(module.__file__).resolve().parents[1] / folder).glob("libxcb*")}

    if not bundled(av, "av.libs") & bundled(cv2, "opencv_python.libs"):
        pytest.skip("these PyAV and OpenCV wheels share no bundled libxcb (nothing to clash)")
    display, _ = xvfb
    code = "import av, cv2; from perception.streaming.sinks import display_problem; print(display_problem())"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, DISPLAY=display), capture_output=True,
                         text=True, timeout=RUN_TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"OpenCV's window would freeze: av\.libs/libxcb\S+ was loaded before OpenCV "
                        r"\(import cv2 before av\)\n", out.stdout), out.stdout
