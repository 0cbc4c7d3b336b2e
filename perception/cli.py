"""The ``perception`` command line.

Every subcommand reports a user's mistake (a bad option, a missing file, a bad value) as one line on
stderr and exits with status 2, without a traceback (``perception.errors``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# name -> (module, one-line help). Benchmark modules keep heavy imports inside run(), so building
# the parser (which asks each for its options) stays fast.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "heads": ("perception.benchmarks.heads", "temporal heads vs ncps, torch and snntorch: train, inference, streaming"),
    "events": ("perception.benchmarks.events", "event representations (voxel grid, histogram, time surface) vs tonic"),
    "readers": ("perception.benchmarks.readers", "event file readers: events per second per format"),
    "simulator": ("perception.benchmarks.simulator", "event simulator: real-time factor on generated video"),
    "infer": ("perception.benchmarks.infer", "streaming inference end to end: 640x480 video fps, EVT 3.0 real-time factor"),
    "train": ("perception.benchmarks.train", "the main job (perception train): time, peak memory, test accuracy"),
}


# Subcommands whose options belong to another parser (LightningCLI / jsonargparse): the rest of the
# command line goes to it untouched. name -> (module, function, one-line help).
DELEGATED: dict[str, tuple[str, str, str]] = {
    "train": ("perception.training.cli", "train", "train a model (LightningCLI: --config, --print_config, overrides)"),
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``perception <cmd>: error: ...``) and exit 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="perception",
        description="liquid-perception: CNN backbones with liquid, spiking, GRU, LSTM or no temporal head, "
        "for video and event cameras.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    commands.required = True

    for name, (_, _, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    infer = commands.add_parser(
        "infer", help="run a trained model on a webcam, video file or event recording, step by step",
        description="Run a trained model step by step over a live or recorded stream, with the real dt.",
    )
    from perception.streaming.cli import add_arguments as infer_options

    infer_options(infer)
    infer.set_defaults(run=_run_infer)
    export = commands.add_parser(
        "export", help="write the single-step model as ONNX or TorchScript, checked against PyTorch",
        description="Export a checkpoint's single-step model (inputs: x, dt, state; outputs: logits, state).",
    )
    _export_options(export)
    export.set_defaults(run=_run_export)
    evaluate = commands.add_parser(
        "evaluate", help="compare temporal heads (accuracy under timing, drops, noise; latency; memory)",
        description="Compare temporal heads on the same backbone, data and training budget, and write a report folder.",
    )
    from perception.evaluation.options import add_arguments as evaluation_options

    evaluation_options(evaluate)
    evaluate.set_defaults(run=_run_evaluation)
    bench = commands.add_parser("benchmark", help="measure speed against the peer libraries")
    kinds = bench.add_subparsers(dest="benchmark", metavar="WHAT", parser_class=OneLineParser)
    kinds.required = True
    for name, (module, help_text) in BENCHMARKS.items():
        sub = kinds.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--output",
            type=Path,
            default=Path("benchmark-results") / f"{name}.json",
            help="where to write the figures as JSON (default: %(default)s)",
        )
        sub.add_argument("--threads", type=int, default=None,
                         help="torch threads (default: %(default)s, where None is what torch picks)")
        sub.set_defaults(run=_run_benchmark, module=module)
        importlib.import_module(module).add_arguments(sub)  # may set its own --threads default
    return parser


def _run_benchmark(args: argparse.Namespace) -> int:
    from perception._files import write_json

    set_threads(args.threads)
    figures = importlib.import_module(args.module).run(args)
    path = write_json(args.output, figures)
    print(f"figures written to {path}")
    return 0


def set_threads(threads: int | None) -> None:
    """Give torch ``threads`` threads (None: leave torch's choice), at least 1 and at most the cores here."""
    if threads is None:
        return
    import torch

    check_threads(threads)
    torch.set_num_threads(threads)


def check_threads(threads: int | None) -> None:
    """``--threads``: None, or 1 up to the cores here (more only slows torch down, and 100000
    threads cannot even start)."""
    cores = os.cpu_count() or 1
    if threads is not None and threads < 1:
        raise _user_error(f"--threads must be at least 1, got {threads}")
    if threads is not None and threads > cores:
        raise _user_error(f"--threads {threads}: more than the {cores} cores here; use 1..{cores}")


def _run_infer(args: argparse.Namespace) -> int:
    from perception.streaming.cli import run

    return run(args)


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a checkpoint written by perception train")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="(default: %(default)s)")
    parser.add_argument("--output", type=Path, default=None, help="the file to write (default: beside the checkpoint)")
    parser.add_argument("--stream", default=None,
                        help="check on this recorded stream (a SOURCE as for perception infer; default: random inputs)")
    parser.add_argument("--steps", type=int, default=50, help="streaming steps of the check (default: %(default)s)")
    parser.add_argument("--no-check", action="store_true", help="skip the check against PyTorch")


def _run_export(args: argparse.Namespace) -> int:
    from perception.export import run

    return run(args)


def _run_evaluation(args: argparse.Namespace) -> int:
    check_threads(args.threads)
    from perception.evaluation.run import run

    run(args)
    return 0


def _user_error(message: str) -> Exception:
    from perception.errors import PerceptionError

    return PerceptionError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``perception`` console script; returns the exit status."""
    from perception._layout import check_layout

    try:
        check_layout()
    except ImportError as exc:
        print(f"perception: error: {exc}", file=sys.stderr)
        return 2
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        command = argv[0]
        module, function, _ = DELEGATED[command]
        run = lambda: getattr(importlib.import_module(module), function)(argv[1:])  # noqa: E731
    else:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "evaluate":  # only evaluate passes options on (to perception train)
            parser.parse_args(argv)
        args.train_args = extra
        command, run = args.command, lambda: args.run(args)
    try:
        return run()
    except Exception as exc:
        # Imported here, not at the top: the error classes pull in torch, which --help does not need.
        from perception.errors import USER_ERRORS

        if not isinstance(exc, USER_ERRORS):
            raise
        print(f"perception {command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # perception._signals.Interrupted carries SIGTERM's 143
        status = getattr(exc, "exit_status", 130)
        print(f"perception {command}: interrupted ({exc or 'SIGINT'}) before it could stop cleanly", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
