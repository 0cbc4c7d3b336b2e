"""The `perception` command line: help, and one-line errors with exit status 2."""
import subprocess
import sys
from pathlib import Path

import pytest

from perception.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_console_script_help_lists_the_subcommands():
    exe = Path(sys.executable).with_name("perception")
    assert exe.exists(), "the console script `perception` is not installed in this environment"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in ("train", "infer", "export", "evaluate", "benchmark"):
        assert command in out.stdout


@pytest.mark.parametrize("what", ["heads", "events", "readers", "simulator", "train", "infer"])
def test_every_benchmark_has_help(what, capsys):
    assert run_cli(["benchmark", what, "--help"]) == 0
    assert "--output" in capsys.readouterr().out


def test_script_entry_point_runs_the_same_cli():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "heads", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "--heads" in out.stdout


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["benchmark", "heads", "--batch", "many"], "invalid int value: 'many'"),
        (["benchmark", "heads", "--heads", "cfc,nope", "--output", "{tmp}/x.json"], "unknown head 'nope'"),
        (["benchmark", "heads", "--batch", "0", "--output", "{tmp}/x.json"], "must all be at least 1"),
        (["benchmark", "heads", "--threads", "0", "--output", "{tmp}/x.json"], "--threads must be at least 1"),
        (["train", "--no-such-option", "1"], "unrecognized arguments: --no-such-option"),
        (["infer"], "the following arguments are required: source, --checkpoint"),
        (["infer", "video.mp4", "--checkpoint", "{tmp}/missing.ckpt"], "missing.ckpt: checkpoint not found"),
        (["export", "{tmp}/missing.ckpt", "--format", "tflite"], "invalid choice: 'tflite'"),
        (["export", "{tmp}/missing.ckpt"], "missing.ckpt: checkpoint not found"),
        (["evaluate", "--modality", "sound"], "invalid choice: 'sound'"),
        (["evaluate", "--heads", "cfc,nope", "--output", "{tmp}/r"], "--heads: unknown 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, expected, capsys, tmp_path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    status = run_cli(argv)
    err = capsys.readouterr().err
    assert status == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.json").exists()


def run_cli(argv) -> int:
    """The exit status of `perception ARGV`, whether argparse exits or main returns."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code

