"""Video file and webcam sources: real timestamps, lying headers, damaged files, camera release."""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import data.video as video
from data.errors import DataError
from data.video import iter_video, iter_webcam, read_video, video_info, video_times

VFR_TIMES = np.round(np.cumsum([0, 0.03, 0.05, 0.01, 0.2, 0.033, 0.033, 0.1, 0.04, 0.02, 0.5, 0.016]), 3)


def level(i: int) -> int:
    """Grey level that identifies frame i, so tests can tell which frame was decoded."""
    return 16 + (i * 23) % 224


def write_video(
    path: Path, times, size=(64, 48), codec="libx264", options=None, time_base=Fraction(1, 1000)
) -> Path:
    """Write frames filled with level(i) (R), 255 - level(i) (G), 128 (B) at the given times (seconds)."""
    width, height = size
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base
        for i, t in enumerate(times):
            rgb = np.empty((height, width, 3), np.uint8)
            rgb[..., 0], rgb[..., 1], rgb[..., 2] = level(i), 255 - level(i), 128
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = round(t / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def set_avi_frame_count(path: Path, count: int) -> None:
    """Overwrite the frame counts an AVI header states (avih dwTotalFrames, strh dwLength)."""
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    struct.pack_into("<I", data, avih + 8 + 16, count)
    struct.pack_into("<I", data, strh + 8 + 32, count)
    path.write_bytes(bytes(data))


def assert_frames_are(frames: np.ndarray, indices) -> None:
    """frames (T, H, W, 3) RGB show frames `indices` of a write_video file."""
    red = frames[..., 0].reshape(len(frames), -1).mean(axis=1)
    np.testing.assert_allclose(red, [level(i) for i in indices], atol=6)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    cfr, tick = np.arange(30) / 25.0, Fraction(1, 25)
    return {
        "cfr_mp4": write_video(root / "cfr.mp4", cfr, time_base=tick),
        "vfr_mp4": write_video(root / "vfr.mp4", VFR_TIMES),
        "vfr_mkv": write_video(root / "vfr.mkv", VFR_TIMES),
        "vfr_avi": write_video(root / "vfr.avi", VFR_TIMES, codec="mjpeg"),
        "cfr_avi": write_video(root / "cfr.avi", cfr, codec="mjpeg", time_base=tick),
        "faststart": write_video(
            root / "faststart.mp4", cfr, size=(160, 120), options={"movflags": "faststart"}, time_base=tick
        ),
    }


def test_constant_rate_file_times_shapes_and_order(files):
    times, frames = read_video(files["cfr_mp4"])
    np.testing.assert_allclose(times, np.arange(30) / 25.0, atol=1e-9)
    assert times.dtype == np.float64 and frames.dtype == np.uint8 and frames.shape == (30, 48, 64, 3)
    assert_frames_are(frames, range(30))  # presentation order although libx264 reorders (B-frames)


@pytest.mark.parametrize("name", ["vfr_mp4", "vfr_mkv", "vfr_avi"])
def test_variable_frame_rate_gives_true_irregular_times(files, name):
    times, frames = read_video(files[name])
    np.testing.assert_allclose(times, VFR_TIMES, atol=1e-9)
    assert_frames_are(frames, range(len(VFR_TIMES)))
    np.testing.assert_array_equal(video_times(files[name]), times)


@pytest.mark.parametrize("stated", [10, 682])
def test_lying_header_frame_count_is_read_to_the_real_end(files, tmp_path, stated):
    path = tmp_path / "lying.avi"
    path.write_bytes(files["cfr_avi"].read_bytes())
    set_avi_frame_count(path, stated)
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) == stated  # the header does lie
    assert video_info(path).frame_count == stated
    times, frames = read_video(path)
    assert len(times) == len(frames) == 30
    assert_frames_are(frames, range(30))
    assert len(video_times(path)) == 30


def test_variable_rate_avi_header_counts_ticks_not_frames(files):
    # AVI is constant-rate: a 1 ms time base makes the header count 1 ms ticks (~517), not 12 frames.
    assert video_info(files["vfr_avi"]).frame_count != len(VFR_TIMES)
    assert len(read_video(files["vfr_avi"])[0]) == len(VFR_TIMES)


def test_size_and_grey(files):
    times, frames = read_video(files["cfr_mp4"], size=(20, 10))
    assert frames.shape == (30, 10, 20, 3)
    _, grey = read_video(files["cfr_mp4"], size=(20, 10), grey=True)
    assert grey.shape == (30, 10, 20) and grey.dtype == np.uint8
    _, native_grey = read_video(files["cfr_mp4"], grey=True)
    assert native_grey.shape == (30, 48, 64)
    # Luma of the coded colour: 0.299 R + 0.587 G + 0.114 B (BT.601, the decoder's default).
    expected = [0.299 * level(i) + 0.587 * (255 - level(i)) + 0.114 * 128 for i in range(30)]
    np.testing.assert_allclose(grey.reshape(30, -1).mean(axis=1), expected, atol=6)


def test_start_end_window_matches_a_full_read(files):
    all_times, all_frames = read_video(files["faststart"])
    for start, end in [(0.0, 0.2), (0.5, 0.9), (1.0, None), (0.41, 0.43)]:
        times, frames = read_video(files["faststart"], start=start, end=end)
        keep = (all_times >= start) & (all_times < (np.inf if end is None else end))
        np.testing.assert_array_equal(times, all_times[keep])
        np.testing.assert_array_equal(frames, all_frames[keep])
    times, frames = read_video(files["faststart"], start=100.0)
    assert times.shape == (0,) and frames.shape == (0, 120, 160, 3)


def test_iter_video_yields_observations_and_can_stop_early(files):
    frames = iter_video(files["vfr_mp4"], grey=True)
    t0, f0 = next(frames)
    t1, _ = next(frames)
    frames.close()
    assert (t0, t1) == (0.0, pytest.approx(0.03)) and f0.shape == (48, 64)


def test_single_threaded_decoding_gives_the_same_frames(files):
    times, frames = read_video(files["vfr_mp4"])
    times_1, frames_1 = read_video(files["vfr_mp4"], threads=1)
    np.testing.assert_array_equal(times, times_1)
    np.testing.assert_array_equal(frames, frames_1)


def test_video_info(files):
    info = video_info(files["cfr_mp4"])
    assert (info.width, info.height, info.codec, info.frame_count) == (64, 48, "h264", 30)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(1.2, abs=0.05)
    assert info.path == files["cfr_mp4"]


class FakePts:
    """The stream attributes the clock reads."""

    def __init__(self, start_time=0, time_base=Fraction(1, 100), rate=Fraction(10)):
        self.start_time, self.time_base = start_time, time_base
        self.average_rate = self.guessed_rate = self.base_rate = rate


def test_time_rules_equal_backwards_and_missing_pts():
    clock = video._Clock(FakePts(start_time=50))
    # equal pts kept equal; a backwards pts clamped to the previous time; no pts: + nominal period
    got = [clock(p) for p in [50, 60, 60, 55, 70, None, 90]]
    np.testing.assert_allclose(got, [0.0, 0.1, 0.1, 0.1, 0.2, 0.3, 0.4])
    clock = video._Clock(FakePts(start_time=None))
    assert [clock(p) for p in [7, 8]] == [0.0, pytest.approx(0.01)]  # origin: the first pts


@pytest.mark.real_data
def test_real_60fps_mp4(shared_data):
    path = shared_data / "video" / "faery_mp4_example.mp4"
    times, frames = read_video(path)
    assert frames.shape == (60, 240, 320, 3)
    np.testing.assert_allclose(times, np.arange(60) / 60, atol=1e-9)
    # Same pictures as OpenCV decodes (OpenCV gives BGR).
    capture = cv2.VideoCapture(str(path))
    for i in range(3):
        ok, bgr = capture.read()
        assert ok
        assert np.abs(frames[i].astype(int) - bgr[..., ::-1].astype(int)).mean() < 2
    capture.release()


@pytest.mark.real_data
def test_real_ntsc_rate_mp4(shared_data):
    path = shared_data / "video" / "pyscenedetect_testvideo.mp4"
    info = video_info(path)
    assert (info.width, info.height, info.frame_count) == (1280, 720, 720)
    assert info.fps == pytest.approx(30000 / 1001)
    np.testing.assert_allclose(video_times(path), np.arange(720) * 1001 / 30000, atol=1e-9)


@pytest.mark.real_data
@pytest.mark.slow
def test_real_file_seek_window_equals_decoding_from_the_start(shared_data):
    path = shared_data / "video" / "pyscenedetect_testvideo.mp4"
    t, frames = read_video(path, size=(128, 128), grey=True, start=10.0, end=11.0)  # seeks
    assert frames.shape == (30, 128, 128)
    all_t, all_frames = read_video(path, size=(128, 128), grey=True, end=11.0)
    window = all_t >= 10
    np.testing.assert_array_equal(t, all_t[window])
    np.testing.assert_array_equal(frames, all_frames[window])


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope\.mp4: no such file"):
        iter_video(tmp_path / "nope.mp4")
    with pytest.raises(DataError, match="not a file"):
        read_video(tmp_path)


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 50)
    for call in (read_video, video_info, video_times):
        with pytest.raises(DataError, match=r"notes\.mp4: not a readable video"):
            call(path)


@pytest.mark.parametrize("name", ["cfr_mp4", "faststart", "cfr_avi"])
def test_truncated_file(files, tmp_path, name):
    data = files[name].read_bytes()
    path = tmp_path / ("cut" + files[name].suffix)
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(DataError, match=r"cut\.(mp4|avi): (not a readable video|truncated or corrupt)"):
        read_video(path)
    with pytest.raises(DataError, match=r"cut\.(mp4|avi)"):
        video_times(path)


def test_unsupported_codec(files, tmp_path):
    path = tmp_path / "alien.avi"
    path.write_bytes(files["cfr_avi"].read_bytes().replace(b"MJPG", b"ZZZZ"))
    with pytest.raises(DataError, match=r"alien\.avi: unsupported video codec"):
        read_video(path)


def test_bad_options(files):
    with pytest.raises(DataError, match="size"):
        read_video(files["cfr_mp4"], size=(0, 10))
    with pytest.raises(DataError, match="size"):
        read_video(files["cfr_mp4"], size=(10,))
    with pytest.raises(DataError, match="start"):
        read_video(files["cfr_mp4"], start=-1.0)
    with pytest.raises(DataError, match="end"):
        read_video(files["cfr_mp4"], start=1.0, end=0.5)
    with pytest.raises(DataError, match="threads"):
        read_video(files["cfr_mp4"], threads=-1)
    with pytest.raises(DataError, match="max_bytes"):
        read_video(files["cfr_mp4"], max_bytes=64 * 48 * 3 * 5)


class FakeCapture:
    """Stands in for cv2.VideoCapture: serves `frames` (BGR), then fails to grab."""

    instances: list[FakeCapture] = []

    def __init__(self, index, frames=(), opened=True):
        self.index, self.frames, self.opened = index, list(frames), opened
        self.released, self.props = False, {}
        FakeCapture.instances.append(self)

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def grab(self):
        return bool(self.frames)

    def retrieve(self):
        return True, self.frames.pop(0)

    def release(self):
        self.released = True


def fake_camera(monkeypatch, frames=(), opened=True) -> list[FakeCapture]:
    FakeCapture.instances = []
    monkeypatch.setattr(video.cv2, "VideoCapture", lambda index: FakeCapture(index, frames, opened))
    return FakeCapture.instances


def bgr_frames(n: int, size=(40, 30)) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[..., 0], frame[..., 2] = 10 * i, 200  # B varies, R = 200
        frames.append(frame)
    return frames


def test_webcam_yields_rgb_frames_with_monotonic_times_and_releases(monkeypatch):
    cams = fake_camera(monkeypatch, bgr_frames(5))
    observations = list(iter_webcam(2))
    assert cams[0].index == 2 and cams[0].released
    times = [t for t, _ in observations]
    assert len(times) == 5 and times[0] >= 0 and all(b >= a for a, b in zip(times, times[1:]))
    frame = observations[3][1]
    assert frame.shape == (30, 40, 3) and frame[0, 0, 0] == 200 and frame[0, 0, 2] == 30  # RGB order


def test_webcam_size_grey_and_release_on_close(monkeypatch):
    cams = fake_camera(monkeypatch, bgr_frames(5))
    frames = iter_webcam(0, size=(20, 10), grey=True)
    t, frame = next(frames)
    assert frame.shape == (10, 20) and frame.dtype == np.uint8
    assert cams[0].props == {cv2.CAP_PROP_FRAME_WIDTH: 20, cv2.CAP_PROP_FRAME_HEIGHT: 10}
    assert not cams[0].released
    frames.close()
    assert cams[0].released
    unused = iter_webcam(0)  # closing before the first frame releases too
    unused.close()
    assert cams[1].released


def test_webcam_cannot_open(monkeypatch):
    cams = fake_camera(monkeypatch, opened=False)
    with pytest.raises(DataError, match=r"^webcam:3: cannot open camera 3 \("):
        iter_webcam(3)
    assert cams[0].released


def test_webcam_without_a_first_frame(monkeypatch):
    cams = fake_camera(monkeypatch, frames=())
    with pytest.raises(DataError, match="webcam:0: camera 0 opened but delivered no frame"):
        next(iter_webcam(0))
    assert cams[0].released


def test_webcam_absent_device_real_opencv():
    # Index 99: below 100, where OpenCV starts reading indices as backend choices.
    with pytest.raises(DataError, match="webcam:99: cannot open camera 99"):
        iter_webcam(99)


def test_webcam_bad_size():
    with pytest.raises(DataError, match="size"):
        iter_webcam(0, size=(-1, 5))
