"""`perception benchmark infer`: streaming throughput end to end, with the default model.

Two workloads, each run through ``open_source`` and ``StreamRunner`` exactly as
``perception infer --headless SOURCE`` runs them (no sinks), with the default architecture (small
CNN + cfc head; weights untrained, which does not change the cost):

- video: a generated 640 x 480 H.264 file (moving shapes, ``--frames`` frames), frames model as
  trained on the built-in dataset (64 x 64 grey): decode, resize, backbone, head.
  Target: >= 200 frames per second.
- events: a stream of hundreds of windows made from the densest recording in the shared data
  (EVT 3.0, 1280 x 720, 219,596 events in 8.8 ms, about 25 million events per second): its events
  repeated back to back, each copy shifted by the sample's span plus 1 us so that the event rate
  stays the recorded one, written with faery's EVT 3.0 encoder to a temporary file long enough for
  ``--windows`` windows of the events model (5-bin voxel grid at 64 x 64, the default 58.9 ms
  windows; 100 windows: 5.9 s, 147 M events, about 390 MB). Read, decode, cut into windows,
  rescale, voxel grid, model. Target: >= 2x real time (recorded seconds per wall second).

Torch runs one intra-op thread unless ``--threads`` says otherwise: a recorded source decodes
ahead in a thread of its own (``sources.ReadAhead``), which takes the second core, and a batch-1
step of a 64 x 64 CNN gains nothing from a second torch thread, whose spin-waiting starves the
decoding (measured on 2 cores, one of them busy with another process: 61 video frames/s and 8x the
CPU time with 2 torch threads, 300 to 600 frames/s with 1).

Each workload runs a few warm-up steps (numba kernels, torch buffers), then is timed ``--repeats``
times; the median run (by wall time) is reported. Step latency is the runner's: from a window or
frame in hand to the model's output (preprocessing + model); reading, decoding and window cutting
are outside it.
The process's CPU time is reported beside the wall time, with the main thread's share (window
cutting, preprocessing, model; the rest is decoding ahead): on two free cores the wall time
approaches the larger of the two, and a wall time longer than the CPU time means that other
processes held the cores.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

TARGET_VIDEO_FPS = 200.0
TARGET_EVENTS_REALTIME = 2.0
DENSEST = Path("events") / "expelliarmus_evt3_sample.raw"
WARM_UP_STEPS = 3
DEFAULT_THREADS = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=300, help="frames of the generated video (default: %(default)s)")
    parser.add_argument("--windows", type=int, default=100,
                        help="event windows (58.9 ms each) the long recording must fill (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per workload (default: %(default)s)")
    parser.add_argument("--recording", type=Path, default=None,
                        help="event recording to repeat (default: the EVT 3.0 sample in $LP_SHARED_DATA "
                             "or ../shared/data)")
    # One torch thread here, not what torch picks: see the module docstring.
    parser.set_defaults(threads=DEFAULT_THREADS)


def _default_recording() -> Path:
    from perception._layout import package_root

    override = os.environ.get("LP_SHARED_DATA")
    shared = Path(override) if override else package_root() / ".." / "shared" / "data"
    return (shared / DENSEST).resolve()


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

    from data import Preprocessing, WindowSpec, s_to_us
    from data.synthetic import SyntheticConfig
    from perception.checkpoint import save_checkpoint
    from perception.model import PerceptionModel

    config = SyntheticConfig()
    side = (config.size, config.size)
    time_scale = 0.0589  # the built-in dataset's median dt (seconds)
    if modality == "frames":
        model, pre = PerceptionModel(1, 8, time_scale=time_scale), Preprocessing.frames(side, 1, time_scale)
    else:
        rep = {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": "standard"}
        model = PerceptionModel(5, 8, time_scale=time_scale)
        # A recording has no frames: the windows the built-in dataset's model cuts it into.
        pre = Preprocessing.events(side, side, rep, WindowSpec.duration(s_to_us(time_scale)), time_scale)
    torch.manual_seed(0)
    return save_checkpoint(folder / f"{modality}.ckpt", model.eval(), [str(k) for k in range(8)], pre)


def _long_recording(path: Path, recording: Path, windows: int, window_us: int) -> dict:
    """Write ``recording``'s events again and again, back to back, as one EVT 3.0 file at ``path``
    that spans at least ``windows`` windows of ``window_us``; returns what was written."""
    from faery import file_encoder

    from data import read_events
    from data.io._faery import to_faery

    source = read_events(recording)
    sample = to_faery(source.events)
    first, last = int(sample["t"][0]), int(sample["t"][-1])
    # Copy k starts 1 us after copy k - 1 ends: the event rate stays the recorded one.
    period = last - first + 1
    sample["t"] -= first
    copies = math.ceil(windows * window_us / period)

    def blocks():
        for k in range(copies):
            block = sample.copy()
            block["t"] += k * period
            yield block

    file_encoder.events_to_file(stream=blocks(), path=path, dimensions=tuple(source.sensor_size), file_type="evt",
                                version="evt3", zero_t0=True, use_write_suffix=False)
    count = copies * len(sample)
    span_s = ((copies - 1) * period + last - first) * 1e-6
    return {"recording": str(recording), "sample_events": len(sample), "sample_s": (last - first) * 1e-6,
            "copies": copies, "events": count, "recorded_s": span_s, "recorded_rate_events_per_s": count / span_s,
            "sensor_size": list(source.sensor_size), "file_megabytes": path.stat().st_size / 1e6}


def _stream(loaded, source_spec: str, max_steps: int | None = None) -> dict:
    """One run of ``loaded`` over the source, timed as ``perception infer --headless`` times it."""
    from perception.streaming.runner import StreamRunner
    from perception.streaming.sources import open_source

    source = open_source(source_spec, loaded.preprocessing)
    try:
        runner = StreamRunner(loaded, source)
        start, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
        for _ in runner.run(max_steps=max_steps):
            pass
        wall, cpu, main = time.perf_counter() - start, time.process_time() - cpu, time.thread_time() - main
    finally:
        source.close()
    return {**runner.summary(wall), "cpu_s": cpu, "cpu_main_thread_s": main}


def _time_runs(checkpoint: Path, source_spec: str, repeats: int) -> dict:
    """The median of ``repeats`` timed runs (by wall time), after a few warm-up steps, with every
    run's wall time in ``runs_wall_s``."""
    from perception.checkpoint import load_checkpoint

    loaded = load_checkpoint(checkpoint)
    _stream(loaded, source_spec, max_steps=WARM_UP_STEPS)  # numba kernels, torch buffers, the page cache
    runs = sorted((_stream(loaded, source_spec) for _ in range(repeats)), key=lambda r: r["wall_s"])
    median = runs[len(runs) // 2]
    return {**median, "runs_wall_s": [r["wall_s"] for r in runs], "repeats": repeats}


def _cpu(figures: dict) -> str:
    return (f"{figures['wall_s']:.2f} s wall, {figures['cpu_s']:.2f} s CPU ({figures['cpu_main_thread_s']:.2f} s "
            f"in the main thread, {figures['cpu_s'] - figures['cpu_main_thread_s']:.2f} s in the others)")


def _latencies(figures: dict) -> str:
    return (f"step latency p50 {figures['latency_ms_p50']:.2f} ms, p90 {figures['latency_ms_p90']:.2f} ms, "
            f"p99 {figures['latency_ms_p99']:.2f} ms")


def _common(timed: dict) -> dict:
    """The figures both workloads report, from a ``_time_runs`` result."""
    keys = ("wall_s", "cpu_s", "cpu_main_thread_s", "steps_per_s", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99",
            "repeats", "runs_wall_s")
    return {key: timed[key] for key in keys}


def run(args: argparse.Namespace) -> dict:
    import torch

    from perception.checkpoint import load_checkpoint
    from perception.errors import PerceptionError

    if args.frames < 2 or args.repeats < 1 or args.windows < 1:
        raise PerceptionError(f"--frames must be >= 2, --windows and --repeats >= 1; got {args.frames}, "
                              f"{args.windows} and {args.repeats}")
    recording = args.recording if args.recording is not None else _default_recording()
    if not recording.is_file():
        raise PerceptionError(f"{recording}: recording not found (pass --recording FILE)")
    figures: dict = {"torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory(prefix="perception-infer-") as tmp:
        folder = Path(tmp)
        video = _video(folder / "video_640x480.mp4", args.frames)
        timed = _time_runs(_checkpoint(folder, "frames"), str(video), args.repeats)
        figures["video"] = {"frames": timed["steps"], **_common(timed), "frames_per_s": timed["steps_per_s"]}

        checkpoint = _checkpoint(folder, "events")
        window_us = load_checkpoint(checkpoint).preprocessing.window.size
        print(f"writing {args.windows} windows of {window_us / 1e3:g} ms of {recording.name}, repeated, "
              f"as EVT 3.0 ...", flush=True)
        stream = _long_recording(folder / "stream_evt3.raw", recording, args.windows, window_us)
        timed = _time_runs(checkpoint, str(folder / "stream_evt3.raw"), args.repeats)
        if timed["events"] != stream["events"]:
            raise PerceptionError(f"the runner saw {timed['events']:,} events of the {stream['events']:,} written")
        figures["events"] = {**stream, "window_us": window_us, "windows": timed["steps"], **_common(timed),
                             "events_per_s": timed["events_per_s"],
                             "realtime_factor": stream["recorded_s"] / timed["wall_s"]}

    v, e = figures["video"], figures["events"]
    runs = f"median of {args.repeats} run{'s' if args.repeats > 1 else ''}, torch threads {figures['torch_threads']}"
    print(f"video 640x480 -> 64x64 grey, {v['frames']} frames ({runs}): {v['frames_per_s']:.0f} frames/s end to end, "
          f"{_cpu(v)}; {_latencies(v)}")
    print(f"events: {Path(e['recording']).name} ({e['sample_events']:,} events in {1e3 * e['sample_s']:.1f} ms) "
          f"x {e['copies']} back to back = {e['events'] / 1e6:.1f} M events over {e['recorded_s']:.2f} s "
          f"({e['recorded_rate_events_per_s'] / 1e6:.1f} M ev/s recorded), EVT 3.0, {e['file_megabytes']:.0f} MB")
    print(f"  {e['windows']} windows of {e['window_us'] / 1e3:g} ms ({runs}): {_cpu(e)}")
    print(f"  {e['events_per_s'] / 1e6:.1f} M ev/s, {e['steps_per_s']:.1f} windows/s, "
          f"{e['realtime_factor']:.2f}x real time; {_latencies(e)}")
    checks = {"video_frames_per_s": (v["frames_per_s"], TARGET_VIDEO_FPS),
              "events_realtime_factor": (e["realtime_factor"], TARGET_EVENTS_REALTIME)}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None:
        print(f"load average {load:.1f} on {os.cpu_count()} CPUs at the end (other processes count too)")
    for name, (value, target) in checks.items():
        print(f"{name}: {value:.3g} (target >= {target:g}) {'PASS' if value >= target else 'MISS'}")
    figures["targets"] = {k: {"value": v_, "target": t, "pass": v_ >= t} for k, (v_, t) in checks.items()}
    figures["environment"] = {"cpus": os.cpu_count(), "load_average_1min_at_end": load, "torch": torch.__version__}
    return figures

