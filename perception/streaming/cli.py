"""``perception infer SOURCE --checkpoint CKPT``: run a trained model over a live or recorded stream."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SOURCE_HELP = ("webcam:N, sim:webcam:N (events simulated from the camera), a video file, sim:VIDEO, "
               "an event recording (any format the data layer reads), or camera:N (a live event camera)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by perception train")
    parser.add_argument("--jsonl", type=Path, default=None, help="write one JSON line per step here")
    parser.add_argument("--output", type=Path, default=None, help="write the annotated stream as an MP4 video here")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--show", action="store_true", help="show a live window (default when a display is there)")
    view.add_argument("--headless", action="store_true", help="no window, whatever the display")
    parser.add_argument("--realtime", action="store_true", help="play a recording at its recorded pace")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: what torch picks)")
    parser.add_argument("--quiet", action="store_true", help="no per-step lines on stdout")


def run(args: argparse.Namespace) -> int:
    # OpenCV before anything that loads PyAV (the data layer does): PyAV's wheel bundles a private libxcb,
    # and OpenCV's Qt window, loaded after it, binds to that copy and freezes (PyAV-Org/PyAV#1050)
    import cv2  # noqa: F401
    import torch

    from perception.checkpoint import load_checkpoint
    from perception.errors import PerceptionError
    from perception.streaming.runner import StreamRunner
    from perception.streaming.sinks import JsonlSink, VideoSink, WindowSink, display_available
    from perception.streaming.sources import open_source

    if args.threads is not None:
        if args.threads < 1:
            raise PerceptionError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.max_steps is not None and args.max_steps < 1:
        raise PerceptionError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.output is not None and args.output.suffix.lower() != ".mp4":
        raise PerceptionError(f"--output {args.output}: expected a .mp4 file name")
    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    source = open_source(args.source, checkpoint.preprocessing)
    sinks = []
    try:
        if args.jsonl is not None:
            sinks.append(JsonlSink(args.jsonl))
        if args.output is not None:
            sinks.append(VideoSink(args.output, checkpoint.classes))
        if args.show or (not args.headless and display_available()):
            sinks.append(WindowSink(checkpoint.classes))
        runner = StreamRunner(checkpoint, source, args.device)
        start = time.perf_counter()
        interrupted = False
        try:
            for result in runner.run(realtime=args.realtime, max_steps=args.max_steps):
                for sink in sinks:
                    sink.write(result)
                if not args.quiet and (result.index < 5 or result.index % 50 == 0):
                    print(f"step {result.index:6d}  t {result.t:9.3f} s  dt {1e3 * result.dt:7.1f} ms  "
                          f"{result.label} {100 * result.score:.0f}%", flush=True)
                if any(getattr(sink, "stopped", False) for sink in sinks):
                    break
        except KeyboardInterrupt:
            interrupted = True
        wall = time.perf_counter() - start
    finally:
        source.close()
        for sink in sinks:
            sink.close()
    summary = runner.summary(wall)
    _print_summary(summary, interrupted, args)
    return 130 if interrupted else 0


def _print_summary(summary: dict, interrupted: bool, args: argparse.Namespace) -> None:
    how = "interrupted" if interrupted else "done"
    rate = f"{summary['steps_per_s']:.1f} steps/s"
    if "events_per_s" in summary:
        rate += f", {summary['events_per_s'] / 1e6:.2f} M events/s ({summary['events']:,} events)"
    print(f"{how}: {summary['steps']} steps in {summary['wall_s']:.2f} s ({rate}); "
          f"stream time {summary['stream_s']:.2f} s; skipped {summary['skipped']}", file=sys.stderr)
    print(f"step latency ms: p50 {summary['latency_ms_p50']:.2f}, p90 {summary['latency_ms_p90']:.2f}, "
          f"p99 {summary['latency_ms_p99']:.2f}", file=sys.stderr)
    for option, path in (("jsonl", args.jsonl), ("video", args.output)):
        if path is not None:
            print(f"{option}: {path}", file=sys.stderr)
    if not args.quiet:
        print(json.dumps({"summary": summary}), file=sys.stderr)
