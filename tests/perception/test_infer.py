"""`perception infer`: every source kind headless, JSONL times against the source's own timestamps."""
import json
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from data import Preprocessing, Window, WindowSpec, read_events, slice_windows, video_times
from perception.cli import main
from perception.streaming.sources import Observation, Source, live

CLASSES = ["a", "b", "c"]
REPO = Path(__file__).resolve().parents[2]




def _vfr_video(path: Path, times) -> Path:
    """A moving bar at irregular (variable-frame-rate) times."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            image = np.full((48, 64, 3), 60, np.uint8)
            image[:, (4 * i) % 60 : (4 * i) % 60 + 6] = 230
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def test_video_file_times_and_dt_come_from_the_container(tmp_path, capsys, tiny_checkpoint):
    times = np.cumsum([0.0, 0.04, 0.04, 0.1, 0.033, 0.2, 0.05, 0.05, 0.3, 0.04])
    video = _vfr_video(tmp_path / "vfr.mp4", times)
    out = tmp_path / "steps.jsonl"
    mp4 = tmp_path / "annotated.mp4"
    assert main(["infer", str(video), "--checkpoint", str(tiny_checkpoint(tmp_path, "frames")), "--headless",
                 "--jsonl", str(out), "--output", str(mp4), "--quiet"]) == 0
    lines = _lines(out)
    np.testing.assert_allclose([r["t"] for r in lines], video_times(video), atol=1e-6)
    np.testing.assert_allclose([r["dt"] for r in lines[1:]], np.diff(video_times(video)), atol=1e-6)
    assert lines[0]["dt"] == pytest.approx(0.05)  # the model's time scale: the nominal period
    for r in lines:
        assert r["label"] in CLASSES and sum(r["probs"]) == pytest.approx(1, abs=1e-4)
        assert r["score"] == pytest.approx(max(r["probs"]))
    assert len(video_times(mp4)) == len(lines)
    err = capsys.readouterr().err
    assert f"done: {len(lines)} steps" in err and "p50" in err and "p99" in err


@pytest.mark.parametrize("name", ["tonic_sample.aedat4", "expelliarmus_evt2_sample.raw", "expelliarmus_evt3_sample.raw",
                                  "tonic_sample_ncars.dat", "tonic_sample_nmnist.bin"])
def test_event_recording_windows_match_the_checkpoint(tmp_path, shared_data, name, tiny_checkpoint):
    recording = shared_data / "events" / name
    out = tmp_path / "steps.jsonl"
    assert main(["infer", str(recording), "--checkpoint", str(tiny_checkpoint(tmp_path, "events")), "--headless",
                 "--jsonl", str(out), "--quiet"]) == 0
    lines = _lines(out)
    windows = list(slice_windows(read_events(recording).events, WindowSpec("duration", 50_000)))
    assert len(lines) == len(windows) >= 1
    np.testing.assert_allclose([r["t"] for r in lines], [w.t_end_us * 1e-6 for w in windows], atol=1e-6)
    assert [r["events"] for r in lines] == [len(w.events) for w in windows]
    np.testing.assert_allclose([r["dt"] for r in lines[1:]], 0.05, atol=1e-6)
    assert lines[0]["dt"] == pytest.approx((windows[0].t_end_us - windows[0].t_start_us) * 1e-6)


def test_simulated_events_from_the_real_video(tmp_path, shared_data, tiny_checkpoint):
    video = shared_data / "video" / "faery_mp4_example.mp4"
    out = tmp_path / "sim.jsonl"
    assert main(["infer", f"sim:{video}", "--checkpoint", str(tiny_checkpoint(tmp_path, "events")), "--headless",
                 "--jsonl", str(out), "--quiet"]) == 0
    lines = _lines(out)
    frame_times = video_times(video)
    assert len(lines) == int(np.ceil((frame_times[-1] - frame_times[0]) / 0.05 - 1e-9)) and sum(r["events"] for r in lines) > 0
    assert lines[-1]["t"] <= frame_times[-1] + 0.05


def test_simulated_events_from_a_video(tmp_path, tiny_checkpoint):
    times = np.arange(30) / 30.0
    video = _vfr_video(tmp_path / "v.mp4", times)
    out = tmp_path / "sim.jsonl"
    assert main(["infer", f"sim:{video}", "--checkpoint", str(tiny_checkpoint(tmp_path, "events")), "--headless",
                 "--jsonl", str(out), "--quiet"]) == 0
    lines = _lines(out)
    assert len(lines) >= 15 and sum(r["events"] for r in lines) > 0
    ends = np.asarray([r["t"] for r in lines])
    assert ends[-1] <= times[-1] + 0.05 + 1e-6 and (np.diff(ends) > 0).all()


def test_max_steps_and_source_errors(tmp_path, capsys, tiny_checkpoint):
    frames_ckpt, events_ckpt = tiny_checkpoint(tmp_path, "frames"), tiny_checkpoint(tmp_path, "events")
    video = _vfr_video(tmp_path / "v.mp4", np.arange(12) / 10)
    out = tmp_path / "few.jsonl"
    assert main(["infer", str(video), "--checkpoint", str(frames_ckpt), "--headless", "--jsonl", str(out),
                 "--max-steps", "3", "--quiet"]) == 0
    assert len(_lines(out)) == 3
    capsys.readouterr()
    for args, message in (
        ([str(video), "--checkpoint", str(events_ckpt)], "the checkpoint's model takes events, this source gives frames"),
        ([f"sim:{video}", "--checkpoint", str(frames_ckpt)], "the checkpoint's model takes frames"),
        ([str(tmp_path / "nothere.raw"), "--checkpoint", str(events_ckpt)], "nothere.raw: no such file"),
        (["camera:0", "--checkpoint", str(events_ckpt)], "camera:0: no event"),  # no library, or no camera
        (["webcam:x", "--checkpoint", str(frames_ckpt)], "webcam:x: expected webcam:N"),
        ([str(video), "--checkpoint", str(tmp_path / "no.ckpt")], "no.ckpt: checkpoint not found"),
        ([str(video), "--checkpoint", str(frames_ckpt), "--output", str(tmp_path / "x.avi")], "expected a .mp4"),
    ):
        assert main(["infer", *args, "--headless"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_ctrl_c_closes_the_outputs(tmp_path, monkeypatch, capsys, tiny_checkpoint):
    video = _vfr_video(tmp_path / "v.mp4", np.arange(20) / 10)
    out = tmp_path / "steps.jsonl"
    from perception.streaming import sinks

    written = []
    original = sinks.JsonlSink.write

    def interrupt_after_four(self, result):
        original(self, result)
        written.append(result.index)
        if len(written) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(sinks.JsonlSink, "write", interrupt_after_four)
    status = main(["infer", str(video), "--checkpoint", str(tiny_checkpoint(tmp_path, "frames")), "--headless",
                   "--jsonl", str(out), "--quiet"])
    assert status == 130
    assert [r["step"] for r in _lines(out)] == [0, 1, 2, 3]  # flushed and complete
    assert not list(tmp_path.glob(".steps.jsonl.*"))       # no temporary file left
    assert "interrupted: 4 steps" in capsys.readouterr().err


def _fast_source(n: int, period: float, kind: str = "frame") -> Source:
    def produce():
        for i in range(n):
            time.sleep(period)
            if kind == "frame":
                yield Observation(i * period, "frame", np.full((4, 4), i, np.uint8))
            else:
                events = np.zeros(3, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "i1")])
                events["t"] = int(i * period * 1e6)
                yield Observation.of_window(Window(events, int(i * period * 1e6), int((i + 1) * period * 1e6)))
    return Source("fake", kind, True, produce())


def test_a_live_source_skips_frames_instead_of_lagging():
    source = live(_fast_source(60, 0.002))
    seen = []
    for obs in source:
        seen.append(obs)
        time.sleep(0.02)  # a model ten times slower than the camera
    assert sum(o.skipped for o in seen) + len(seen) == 60  # every frame is either seen or counted
    assert sum(o.skipped for o in seen) > 30
    assert seen[-1].t == pytest.approx(59 * 0.002)          # never behind: the newest frame comes out
    assert len(seen) < 20


def test_a_live_event_source_merges_windows_and_loses_no_event():
    source = live(_fast_source(40, 0.002, kind="events"))
    seen = []
    for obs in source:
        seen.append(obs)
        time.sleep(0.02)
    assert sum(len(o.data) for o in seen) == 40 * 3
    assert any(o.skipped for o in seen) and seen[-1].t == pytest.approx(40 * 0.002)


class _Camera:
    """A stand-in for cv2.VideoCapture: ``frames`` BGR frames, delivered ``period`` seconds apart."""

    def __init__(self, frames, period=0.01):
        self.frames, self.period, self.released = list(frames), period, False

    def isOpened(self):
        return True

    def set(self, prop, value):
        return True

    def grab(self):
        time.sleep(self.period)
        return bool(self.frames)

    def retrieve(self):
        return True, self.frames.pop(0)

    def release(self):
        self.released = True


@pytest.mark.parametrize("spec, modality", [("webcam:0", "frames"), ("sim:webcam:0", "events")])
def test_webcam_sources_headless(tmp_path, monkeypatch, spec, modality, tiny_checkpoint):
    from data import video

    frames = []
    for i in range(40):
        image = np.full((48, 64, 3), 50, np.uint8)
        image[:, (3 * i) % 58 : (3 * i) % 58 + 6] = 220
        frames.append(image)
    cameras = []
    monkeypatch.setattr(video.cv2, "VideoCapture", lambda index: cameras.append(_Camera(frames)) or cameras[-1])
    out = tmp_path / "cam.jsonl"
    assert main(["infer", spec, "--checkpoint", str(tiny_checkpoint(tmp_path, modality)), "--headless",
                 "--jsonl", str(out), "--quiet"]) == 0
    lines = _lines(out)
    times = np.asarray([r["t"] for r in lines])
    assert len(lines) >= 2 and (np.diff(times) > 0).all() and times[-1] < 5
    np.testing.assert_allclose([r["dt"] for r in lines[1:]], np.diff(times), atol=1e-6)
    if modality == "frames":  # every frame is either processed or counted as skipped
        assert len(lines) + sum(r["skipped"] for r in lines) == 40
    else:
        assert sum(r["events"] for r in lines) > 0
    assert cameras and cameras[0].released  # the camera is released at the end of the stream


def test_the_runner_memory_stays_flat_over_a_long_stream(tmp_path, tiny_checkpoint):
    from perception.checkpoint import load_checkpoint
    from perception.evaluation.measure import rss_bytes
    from perception.streaming.runner import StreamRunner

    loaded = load_checkpoint(tiny_checkpoint(tmp_path, "frames"))
    frame = np.full((32, 32), 128, np.uint8)
    source = Source("long", "frame", False, (Observation(i * 0.05, "frame", frame) for i in range(6000)))
    runner = StreamRunner(loaded, source)
    rss = {}
    for result in runner.run():
        if result.index in (1000, 5999):
            rss[result.index] = rss_bytes()
    growth_mb = (rss[5999] - rss[1000]) / 2**20
    assert runner.summary(1.0)["steps"] == 6000
    print(f"runner RSS growth over steps 1000..5999: {growth_mb:.2f} MB")
    assert growth_mb < 8, f"resident memory grew by {growth_mb:.1f} MB over 5000 steps"


def test_reservoir_keeps_a_bounded_uniform_sample():
    from perception.streaming.runner import Reservoir

    reservoir = Reservoir(size=1000)
    for value in range(100_000):
        reservoir.add(float(value))
    sample = reservoir.sample()
    assert len(sample) == 1000 and reservoir.seen == 100_000
    assert 40_000 < np.median(sample) < 60_000  # uniform over the whole stream, not its start


def test_streaming_maps_event_coordinates_as_the_training_data_did():
    from data import make_events, rescale_events, to_voxel_grid
    from perception.streaming.preprocess import Preprocessor

    # 100 px downsampled by 3 -> 34 px: x // 3 and x * 34 // 100 differ (x = 50: 16 against 17)
    pre = Preprocessing.events((100, 100), (34, 34), {"name": "voxel_grid", "bins": 2, "polarity": "signed"},
                               WindowSpec.duration(1000), 1e-3, downsample=3)
    rng = np.random.default_rng(0)
    events = make_events(rng.integers(0, 100, 500), rng.integers(0, 100, 500), np.sort(rng.integers(0, 1000, 500)),
                         rng.integers(0, 2, 500))
    x, _ = Preprocessor(pre, (100, 100))(Observation.of_window(Window(events, 0, 1000)))
    trained = rescale_events(events, (100, 100), (34, 34), 3)
    np.testing.assert_array_equal(trained["x"], events["x"] // 3)
    expected = to_voxel_grid(trained, (34, 34), 2, t_start=0, t_end=1000)
    np.testing.assert_array_equal(x[0].numpy(), expected)


def test_a_model_trained_between_frames_sees_simulated_events_between_frames(tmp_path, shared_data):
    """A frames-window checkpoint (the built-in dataset's): a simulated source is cut at its video's
    frame times (the simulator is read out at every frame); a recording, which has no frames, into
    windows of the nominal period."""
    from data import Preprocessing
    from perception.checkpoint import save_checkpoint
    from perception.model import PerceptionModel

    torch.manual_seed(0)
    model = PerceptionModel(5, 3, backbone_kwargs={"width": 0.5}, time_scale=0.05).eval()
    pre = Preprocessing.events((32, 32), (32, 32), {"name": "voxel_grid", "bins": 5, "normalize": "standard"},
                               WindowSpec.frames(50_000, drop_last=True), 0.05)
    ckpt = save_checkpoint(tmp_path / "frames_windows.ckpt", model, CLASSES, pre)
    times = np.cumsum([0.0, 0.04, 0.04, 0.1, 0.033, 0.2, 0.05, 0.05, 0.3, 0.04])
    video = _vfr_video(tmp_path / "vfr.mp4", times)
    out = tmp_path / "sim.jsonl"
    assert main(["infer", f"sim:{video}", "--checkpoint", str(ckpt), "--headless", "--jsonl", str(out), "--quiet"]) == 0
    lines = _lines(out)
    frames = video_times(video)
    np.testing.assert_allclose([r["t"] for r in lines], frames[1:], atol=1e-6)   # one window per frame interval
    np.testing.assert_allclose([r["dt"] for r in lines], np.diff(frames), atol=1e-6)
    recording = shared_data / "events" / "tonic_sample.aedat4"
    assert main(["infer", str(recording), "--checkpoint", str(ckpt), "--headless", "--jsonl", str(out), "--quiet"]) == 0
    windows = list(slice_windows(read_events(recording).events, WindowSpec("duration", 50_000, drop_last=True)))
    np.testing.assert_allclose([r["t"] for r in _lines(out)], [w.t_end_us * 1e-6 for w in windows], atol=1e-6)
