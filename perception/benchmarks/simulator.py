"""`perception benchmark simulator`: how much faster than real time the event simulator runs.

Workload: a grey uint8 video of a textured scene (smooth texture plus sharp-edged blocks) panning
diagonally by a few pixels per frame, at 30 fps, at 346 x 260 (DAVIS346) and 640 x 480. Every pixel
sees motion, so this is close to the worst case for an event camera. Two ways of running it:

- one call: ``simulate_events`` over one second of frames at once;
- feed: ``EventSimulator.feed`` frame by frame, as a live webcam stream does.

The real-time factor is seconds of video per second of computing (> 1: faster than real time). numpy
runs these kernels on one core, so the figures are single-core figures. Both the wall time and the
process's CPU time are reported (medians over repeated runs): on a shared machine the CPU time says
what the code costs, the wall time what a user waits.
"""
from __future__ import annotations

import argparse
import platform

TARGET_REALTIME_FACTOR = 1.0  # at 346 x 260, 30 fps, one core


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="346x260,640x480", help="comma-separated WxH (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the video (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of the video (default: %(default)s)")
    parser.add_argument("--speed", type=float, default=3.0, help="pan speed, pixels per frame (default: %(default)s)")
    parser.add_argument("--noise-rate", type=float, default=0.0, help="background noise, Hz per pixel (default: 0)")
    parser.add_argument("--quick", action="store_true", help="shorter timing runs (noisier)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from data.simulator import EventSimulator, SimulatorConfig, simulate_events
    from perception.benchmarks._timing import format_table
    from perception.errors import PerceptionError

    sizes = _parse_sizes(args.sizes)
    if args.fps <= 0 or args.seconds <= 0:
        raise PerceptionError(f"--fps and --seconds must be positive, got {args.fps} and {args.seconds}")
    config = SimulatorConfig(noise_rate_hz=args.noise_rate)
    steps = max(2, int(round(args.fps * args.seconds)) + 1)
    times = np.arange(steps) / args.fps
    duration = times[-1]
    rows = []
    for width, height in sizes:
        frames = _panning_video(width, height, steps, args.speed, np.random.default_rng(args.seed))

        def one_call() -> None:
            simulate_events(frames, times, config=config, rng=np.random.default_rng(args.seed))

        def feed() -> None:
            simulator = EventSimulator(config, np.random.default_rng(args.seed))
            for frame, t in zip(frames, times):
                simulator.feed(frame, t)

        events, _ = simulate_events(frames, times, config=config, rng=np.random.default_rng(args.seed))
        min_time = 0.5 if args.quick else 2.0
        call_wall, call_cpu = _median_times(one_call, min_time)
        feed_wall, feed_cpu = _median_times(feed, min_time)
        rows.append({
            "size": f"{width}x{height}",
            "frames": steps,
            "video_s": duration,
            "events_per_video_s": events.size / duration,
            "call_wall_ms_per_video_s": 1e3 * call_wall / duration,
            "call_cpu_ms_per_video_s": 1e3 * call_cpu / duration,
            "call_realtime_factor": duration / call_wall,
            "call_cpu_realtime_factor": duration / call_cpu,
            "feed_realtime_factor": duration / feed_wall,
            "feed_cpu_realtime_factor": duration / feed_cpu,
            "events_per_cpu_s": events.size / call_cpu,
        })

    print(format_table(rows, [
        ("size", "size", "s"), ("frames", "frames", "d"), ("events_per_video_s", "events/video s", ".3g"),
        ("call_wall_ms_per_video_s", "wall ms/video s", ".0f"), ("call_cpu_ms_per_video_s", "cpu ms/video s", ".0f"),
        ("call_realtime_factor", "x real time", ".1f"), ("call_cpu_realtime_factor", "x (cpu)", ".1f"),
        ("feed_realtime_factor", "x feed", ".1f"), ("feed_cpu_realtime_factor", "x feed (cpu)", ".1f"),
        ("events_per_cpu_s", "events/cpu s", ".3g"),
    ]))
    verdicts = {}
    for row in rows:
        if row["size"] == "346x260" and abs(args.fps - 30) < 1e-9:
            factor = min(row["call_realtime_factor"], row["feed_realtime_factor"])
            verdicts["realtime_346x260_30fps"] = factor >= TARGET_REALTIME_FACTOR
            print(f"346x260 at 30 fps: {factor:.1f}x real time, wall clock, slower of call and feed "
                  f"(target >= {TARGET_REALTIME_FACTOR}x) {'PASS' if verdicts['realtime_346x260_30fps'] else 'MISS'}")
    return {
        "workload": {"fps": args.fps, "seconds": args.seconds, "pan_px_per_frame": args.speed,
                     "noise_rate_hz": args.noise_rate, "config": config.__dict__},
        "rows": rows,
        "targets_met": verdicts,
        "environment": {"numpy": np.__version__, "machine": platform.machine(), "processor": platform.processor()},
    }


def _median_times(fn, min_time: float) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over runs repeated for at least ``min_time`` s (3 runs at least)."""
    import statistics
    import time

    fn()  # warm-up: first-call costs (imports, caches) are not the simulator's speed
    walls, cpus = [], []
    start = time.perf_counter()
    while len(walls) < 3 or time.perf_counter() - start < min_time:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    from perception.errors import PerceptionError

    sizes = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        try:
            width, height = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise PerceptionError(f"--sizes: {item!r} is not WxH (e.g. 346x260)") from None
        if width < 1 or height < 1:
            raise PerceptionError(f"--sizes: {item!r} must be at least 1x1")
        sizes.append((width, height))
    if not sizes:
        raise PerceptionError("--sizes: give at least one WxH")
    return sizes


def _panning_video(width: int, height: int, steps: int, speed: float, rng):
    """uint8 frames (T, H, W): a window sliding diagonally over a larger textured scene."""
    import cv2
    import numpy as np

    margin = int(np.ceil(speed * steps)) + 2
    scene_h, scene_w = height + margin, width + margin
    smooth = cv2.resize(rng.random((scene_h // 16 + 2, scene_w // 16 + 2)), (scene_w, scene_h),
                        interpolation=cv2.INTER_CUBIC)
    blocks = cv2.resize(rng.random((scene_h // 24 + 2, scene_w // 24 + 2)), (scene_w, scene_h),
                        interpolation=cv2.INTER_NEAREST)
    scene = np.clip(0.15 + 0.45 * smooth + 0.4 * (blocks > 0.6), 0, 1).astype(np.float32)
    frames = np.empty((steps, height, width), np.uint8)
    for k in range(steps):
        shift = np.float32([[1, 0, -speed * k], [0, 1, -0.5 * speed * k]])  # sub-pixel pan, bilinear
        view = cv2.warpAffine(scene, shift, (scene_w, scene_h), flags=cv2.INTER_LINEAR)
        frames[k] = np.rint(255 * view[:height, :width])
    return frames
