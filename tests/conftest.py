"""Fixtures shared by all tests: where the shared real recordings are; hypothesis's settings.

The recordings live beside the repository (``../shared/data``), never inside it; ``LP_SHARED_DATA``
points elsewhere. Tests that need them skip with the reason when the folder is absent.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

REPO = Path(__file__).resolve().parents[1]

# Property tests keep no example database, and hypothesis's other files (its cache of constants) go
# to a temporary folder: it would otherwise write .hypothesis/ into the working folder (the repository).
settings.register_profile("liquid-perception", database=None)
settings.load_profile("liquid-perception")
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "liquid-perception-hypothesis")


def shared_data_dir() -> Path:
    """The shared data folder: $LP_SHARED_DATA, else ../shared/data beside the repository."""
    override = os.environ.get("LP_SHARED_DATA")
    return Path(override) if override else REPO / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (holds ``events/`` and ``video/``); skips the test when it is absent."""
    folder = shared_data_dir().resolve()
    if not folder.is_dir():
        pytest.skip(f"the shared recordings are not at {folder} (set LP_SHARED_DATA to their folder)")
    return folder


def write_h264(path: Path, frames, fps: int = 10) -> Path:
    """Write ``frames`` (N, H, W, 3) uint8 RGB as an H.264 MP4 at ``fps``, making its folder."""
    from fractions import Fraction

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    step = 1000 // fps  # ms per frame, on a millisecond time base
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i * step, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture()
def h264():
    """``write_h264``, for tests that make their own video files."""
    return write_h264
