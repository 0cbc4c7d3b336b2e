"""`perception benchmark train`: the main job, measured.

Runs ``perception train`` with the default config (or the extra options given) in a fresh working
folder, as a user would, and reports its wall time, the peak resident memory of the training
process and the test accuracy it printed, against the targets: at most 10 minutes on 2 CPU cores
and at least 90 % test accuracy.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 600.0
TARGET_ACCURACY = 0.90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--args", default="", help="extra options for perception train, quoted (default: none)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the run writes runs/ (default: a temporary folder, removed afterwards)")


class _Output:
    def __init__(self, text: str, returncode: int) -> None:
        self.text, self.returncode = text, returncode


def _run_showing(command: list[str], cwd: Path, env: dict) -> _Output:
    """Run ``command``, passing its output (progress bar included) through as it comes, and keep it."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE)
    kept = bytearray()
    while chunk := os.read(process.stdout.fileno(), 4096):
        kept += chunk
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
    return _Output(kept.decode(errors="replace"), process.wait())


def run(args: argparse.Namespace) -> dict:
    from perception.errors import PerceptionError

    extra = shlex.split(args.args)
    command = [sys.executable, "-m", "perception.cli", "train", *extra]
    env = dict(os.environ)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="perception-train-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"running: {' '.join(command[2:])} (in {workdir}); its output follows", flush=True)
        start = time.perf_counter()
        output = _run_showing(command, workdir, env)
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if output.returncode != 0:
        raise PerceptionError(f"perception train exited with status {output.returncode}")
    found = re.search(r"^test/acc: ([0-9.]+)$", output.text, re.MULTILINE)
    if found is None:
        raise PerceptionError("perception train printed no test/acc line")
    accuracy = float(found.group(1))
    checks = {
        "time_s": (seconds, seconds <= TARGET_SECONDS, f"<= {TARGET_SECONDS:.0f} s"),
        "test_acc": (accuracy, accuracy >= TARGET_ACCURACY, f">= {TARGET_ACCURACY:.2f}"),
    }
    print(f"\nmain job: {seconds:.0f} s wall, peak memory {peak_mb:.0f} MB, test/acc {accuracy:.4f}")
    for name, (value, ok, target) in checks.items():
        print(f"{name}: {value:.4g} (target {target}) {'PASS' if ok else 'MISS'}")
    return {"command": command[2:], "time_s": seconds, "peak_rss_mb": peak_mb, "test_acc": accuracy,
            "cpu_count": os.cpu_count(), "targets": {k: {"value": v, "pass": ok, "target": t}
                                                      for k, (v, ok, t) in checks.items()}}
