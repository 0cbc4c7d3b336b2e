"""``perception infer SOURCE --checkpoint CKPT``: run a trained model over a live or recorded stream.

Outputs are checked before anything is loaded: a folder, an empty name, the recording or the
checkpoint itself, or one file named twice is refused in one line. They are written to temporary
files and renamed when the stream ends: on its end, ``--max-steps``, a closed window, SIGINT or
SIGTERM (``perception._signals``: the step under way finishes, the outputs are closed and kept, the
summary is printed, exit status 130 / 143). A run over a recording that fails (a corrupt file, a
full disk) leaves the previous files untouched and no temporary file; a live source that fails
keeps the steps before the fault (they cannot be recorded again), except in a file whose own write
failed.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

SOURCE_HELP = ("webcam:N, sim:webcam:N (events simulated from the camera), a video file, sim:VIDEO, "
               "an event recording (any format the data layer reads), or camera:N (a live event camera)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help=SOURCE_HELP)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint written by perception train")
    parser.add_argument("--jsonl", type=_file_name, default=None, help="write one JSON line per step here")
    parser.add_argument("--output", type=_file_name, default=None,
                        help="write the annotated stream as an MP4 video here")
    view = parser.add_mutually_exclusive_group()
    view.add_argument("--show", action="store_true", help="show a live window (default when a display is there)")
    view.add_argument("--headless", action="store_true", help="no window, whatever the display")
    parser.add_argument("--realtime", action="store_true", help="play a recording at its recorded pace")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: what torch picks)")
    parser.add_argument("--quiet", action="store_true", help="no per-step lines on stdout")


def _file_name(text: str) -> Path:
    """An output file's name as argparse reads it: not empty, not ending in a separator."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file name, got an empty one")
    if text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r} names a folder; expected a file name")
    return Path(text)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, outputs that could not be written or would destroy an input."""
    from perception.errors import PerceptionError

    source = args.source[4:] if args.source.startswith("sim:") else args.source
    inputs = [("the checkpoint", args.checkpoint), ("the source", Path(source))]
    outputs = [(option, path) for option, path in (("--jsonl", args.jsonl), ("--output", args.output))
               if path is not None]
    for option, path in outputs:
        if path.is_dir():
            raise PerceptionError(f"{option} {path}: is a folder; expected a file name")
        if path.exists() and not path.is_file():
            raise PerceptionError(f"{option} {path}: is not a regular file; expected a file name")
        for what, other in inputs + [(o, p) for o, p in outputs if o != option]:
            if _same_file(path, other):
                raise PerceptionError(f"{option} {path}: is {what}; writing there would destroy it")
        folder = next(p for p in [path.absolute().parent, *path.absolute().parents] if p.exists())
        if not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
            raise PerceptionError(f"{option} {path}: cannot write in {folder} (permission denied)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    from perception._signals import StopSignals

    with StopSignals() as stop:
        return _run(args, stop)


def _run(args: argparse.Namespace, stop) -> int:
    # OpenCV before anything that loads PyAV (the data layer does): PyAV's wheel bundles a private libxcb,
    # and OpenCV's Qt window, loaded after it, binds to that copy and freezes (PyAV-Org/PyAV#1050)
    import cv2  # noqa: F401
    import torch

    from perception.checkpoint import load_checkpoint
    from perception.errors import PerceptionError
    from perception.streaming.runner import StreamRunner
    from perception.streaming.sinks import JsonlSink, VideoSink, WindowSink, display_available
    from perception.streaming.sources import open_source

    from perception._signals import exit_status, signal_name
    from perception.cli import set_threads

    set_threads(args.threads)
    if args.max_steps is not None and args.max_steps < 1:
        raise PerceptionError(f"--max-steps must be at least 1, got {args.max_steps}")
    if args.output is not None and args.output.suffix.lower() != ".mp4":
        raise PerceptionError(f"--output {args.output}: expected a .mp4 file name")
    check_outputs(args)  # before anything is loaded or read
    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    source = open_source(args.source, checkpoint.preprocessing)
    sinks, kept = [], False
    try:
        if args.jsonl is not None:
            sinks.append(JsonlSink(args.jsonl))
        if args.output is not None:
            sinks.append(VideoSink(args.output, checkpoint.classes))
        if args.show or (not args.headless and display_available()):
            sinks.append(WindowSink(checkpoint.classes))
        runner = StreamRunner(checkpoint, source, args.device)
        start = time.perf_counter()
        stop.deferring = True  # from here a signal ends the stream after the step under way
        try:
            for result in runner.run(realtime=args.realtime, max_steps=args.max_steps):
                for sink in sinks:
                    sink.write(result)
                if not args.quiet and (result.index < 5 or result.index % 50 == 0):
                    print(f"step {result.index:6d}  t {result.t:9.3f} s  dt {1e3 * result.dt:7.1f} ms  "
                          f"{result.label} {100 * result.score:.0f}%", flush=True)
                if stop.requested or any(getattr(sink, "stopped", False) for sink in sinks):
                    break
        except KeyboardInterrupt as exc:  # a second signal (perception._signals.Interrupted): stop now
            stop.signum = stop.signum or getattr(exc, "signum", signal.SIGINT)
        wall = time.perf_counter() - start
        kept = True
    except Exception:
        kept = source.live  # a live stream's steps cannot be recorded again: keep them (healthy sinks only)
        raise
    finally:
        stop.deferring = False
        source.close()
        _close(sinks, kept)
    summary = runner.summary(wall)
    _print_summary(summary, None if stop.signum is None else signal_name(stop.signum), args)
    return exit_status(stop.signum)


def _close(sinks: list, keep: bool) -> None:
    """Close every sink: keep its file (renamed onto the target) or discard it; the first error
    (a full disk while flushing) is raised after all are closed, their files discarded."""
    error = None
    for sink in sinks:
        try:
            sink.close(keep=keep and error is None)
        except Exception as exc:  # noqa: BLE001 - raised below, after the other sinks are closed
            error = error or exc
            keep = False
    if error is not None:
        for sink in sinks:
            sink.close(keep=False)  # a sink kept before the failure stays; the others are discarded
        raise error


def _print_summary(summary: dict, stopped_by: str | None, args: argparse.Namespace) -> None:
    how = "done" if stopped_by is None else "interrupted"
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
    if stopped_by is not None:
        print(f"stopped by {stopped_by} after step {summary['steps'] - 1}: the outputs hold every step done; "
              "a recording starts again from its beginning when run again", file=sys.stderr)
    if not args.quiet:
        print(json.dumps({"summary": summary}), file=sys.stderr)
