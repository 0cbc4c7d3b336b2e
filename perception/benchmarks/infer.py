"""`perception benchmark infer`: streaming throughput end to end, with the default model.

Two workloads, each run through ``StreamRunner`` exactly as ``perception infer --headless`` runs it
(no sinks), with the default architecture (small CNN + cfc head; weights untrained, which does not
change the cost):

- video: a generated 640 x 480 H.264 file (moving shapes), frames model as trained on the built-in
  dataset (64 x 64 grey): decode, resize, backbone, head. Target: >= 200 frames per second.
- events: the densest recording in the shared data (EVT 3.0, about 25 million events per second),
  events model (5-bin voxel grid at 64 x 64, the default 59 ms windows): read, window, voxel grid,
  model. Target: at least as fast as real time (recorded seconds per wall second >= 1).

Each workload is timed several times; the median run is reported.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

TARGET_VIDEO_FPS = 200.0
TARGET_EVENTS_REALTIME = 1.0
DENSEST = Path("events") / "expelliarmus_evt3_sample.raw"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated video (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per workload (default: %(default)s)")
    parser.add_argument("--recording", type=Path, default=None,
                        help="event recording to use (default: the EVT 3.0 sample in ../shared/data)")


def _video(path: Path, frames: int) -> Path:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 640, 480, "yuv420p"
        for i in range(frames):
            image = np.full((480, 640, 3), 90, np.uint8)
            x = (7 * i) % 600
            image[200:280, x : x + 40] = rng.integers(150, 255, 3, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def _checkpoint(folder: Path, modality: str) -> Path:
    import torch

    from data.synthetic import SyntheticConfig
    from perception.checkpoint import save_checkpoint
    from perception.model import PerceptionModel

    config = SyntheticConfig()
    side = [config.size, config.size]
    time_scale = 0.0589  # the built-in dataset's median dt (seconds)
    if modality == "frames":
        model, pre = PerceptionModel(1, 8, time_scale=time_scale), {"modality": "frames", "size": side, "grey": True}
    else:
        rep = {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": "standard"}
        model = PerceptionModel(5, 8, time_scale=time_scale)
        pre = {"modality": "events", "sensor_size": side, "frame_size": side, "representation": rep,
               "window": {"mode": "duration", "size": int(time_scale * 1e6), "overlap": 0}}
    torch.manual_seed(0)
    return save_checkpoint(folder / f"{modality}.ckpt", model.eval(), [str(k) for k in range(8)], pre)


def _time_runs(checkpoint: Path, source_spec: str, repeats: int) -> list[dict]:
    from perception.checkpoint import load_checkpoint
    from perception.streaming.runner import StreamRunner
    from perception.streaming.sources import open_source

    loaded = load_checkpoint(checkpoint)
    runs = []
    for _ in range(repeats + 1):  # the first run warms caches (file system, numba, torch) and is dropped
        source = open_source(source_spec, loaded.preprocessing)
        runner = StreamRunner(loaded, source)
        start = time.perf_counter()
        for _ in runner.run():
            pass
        wall = time.perf_counter() - start
        source.close()
        runs.append({"wall_s": wall, **runner.summary(wall)})
    runs = runs[1:]
    return sorted(runs, key=lambda r: r["wall_s"])


def run(args: argparse.Namespace) -> dict:
    from perception.errors import PerceptionError

    if args.frames < 2 or args.repeats < 1:
        raise PerceptionError(f"--frames must be >= 2 and --repeats >= 1, got {args.frames} and {args.repeats}")
    recording = args.recording
    if recording is None:
        shared = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
        recording = (shared / DENSEST).resolve()
    if not recording.is_file():
        raise PerceptionError(f"{recording}: recording not found (pass --recording FILE)")
    from data import read_events

    events = read_events(recording).events  # once, for the count and the recorded span (not timed)
    count, span = len(events), (int(events["t"][-1]) - int(events["t"][0])) * 1e-6
    del events
    figures = {}
    with tempfile.TemporaryDirectory(prefix="perception-infer-") as tmp:
        folder = Path(tmp)
        video = _video(folder / "video_640x480.mp4", args.frames)
        runs = _time_runs(_checkpoint(folder, "frames"), str(video), args.repeats)
        median = runs[len(runs) // 2]
        fps = median["steps"] / median["wall_s"]
        figures["video"] = {"frames": median["steps"], "wall_s": median["wall_s"], "frames_per_s": fps,
                            "latency_ms_p50": median["latency_ms_p50"], "latency_ms_p99": median["latency_ms_p99"]}
        runs = _time_runs(_checkpoint(folder, "events"), str(recording), args.repeats)
        median = runs[len(runs) // 2]
        factor = span / median["wall_s"]  # recorded seconds per wall second
        figures["events"] = {"recording": str(recording), "events": count, "recorded_s": span,
                             "wall_s": median["wall_s"], "steps": median["steps"],
                             "events_per_s": count / median["wall_s"], "realtime_factor": factor,
                             "recorded_rate_events_per_s": count / span if span > 0 else None}
    v, e = figures["video"], figures["events"]
    print(f"video 640x480 -> 64x64 grey, {v['frames']} frames: {v['frames_per_s']:.0f} frames/s end to end "
          f"(step latency p50 {v['latency_ms_p50']:.2f} ms, p99 {v['latency_ms_p99']:.2f} ms)")
    print(f"events {Path(e['recording']).name} ({e['events']:,} events over {1e3 * e['recorded_s']:.1f} ms, "
          f"{e['recorded_rate_events_per_s'] / 1e6:.1f} M ev/s recorded): {e['wall_s'] * 1e3:.1f} ms wall, "
          f"{e['events_per_s'] / 1e6:.2f} M ev/s, {e['realtime_factor']:.2f}x real time")
    checks = {"video_frames_per_s": (v["frames_per_s"], TARGET_VIDEO_FPS),
              "events_realtime_factor": (e["realtime_factor"], TARGET_EVENTS_REALTIME)}
    for name, (value, target) in checks.items():
        print(f"{name}: {value:.3g} (target >= {target:g}) {'PASS' if value >= target else 'MISS'}")
    figures["targets"] = {k: {"value": v_, "target": t, "pass": v_ >= t} for k, (v_, t) in checks.items()}
    return figures
