"""Hostile or unlucky input to the commands: crafted recordings, checkpoints and output paths, full
disks, signals. Each ends with one line and exit status 2 (or streams with bounded memory), never
loses an output, and stops on SIGINT / SIGTERM with the summary and status 130 / 143.

Every input is crafted here. Commands that could run away (memory, time) run in a subprocess under
a watchdog that kills them past ``MAX_RSS`` or ``TIMEOUT_S``.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from perception.cli import main  # noqa: F401 - run_cli calls it

REPO = Path(__file__).resolve().parents[2]
MAX_RSS = 2.5e9     # bytes: the bound every crafted input must stay under
TIMEOUT_S = 60
CLI = "import sys; from perception.cli import main; sys.exit(main())"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def run_bounded(argv: list[str], cwd: Path, timeout: float = TIMEOUT_S, on_output=None) -> dict:
    """``perception ARGV`` in a subprocess, killed past MAX_RSS or ``timeout``; its status, output,
    peak resident memory (bytes) and wall time. ``on_output(process, text so far)`` is called as
    stdout/stderr lines arrive (to send a signal at the right moment)."""
    process = subprocess.Popen([sys.executable, "-c", CLI, *argv], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    start, peak, killed, seen = time.monotonic(), 0, None, 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak = max(peak, int(status.split("VmRSS:")[1].split()[0]) * 1024)
        except (OSError, IndexError):
            pass
        if peak > MAX_RSS:
            killed = "memory"
        elif time.monotonic() - start > timeout:
            killed = "time"
        if killed:
            process.kill()
            break
        if on_output is not None and len(lines) != seen:
            seen = len(lines)
            on_output(process, "".join(lines))
        time.sleep(0.02)
    process.wait()
    reader.join(5)
    return {"status": process.returncode, "output": "".join(lines), "peak": peak,
            "wall": time.monotonic() - start, "killed": killed}


def run_cli(argv: list[str]) -> int:
    """``main(argv)``'s status, also when a parser exits (SystemExit) instead of returning it."""
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code




def _one_error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in output, output[-2000:]
    return errors[0]


def _no_temporary_files(folder: Path) -> None:
    assert not [p.name for p in folder.rglob(".*.tmp")]


# --- 1. crafted recordings: bounded memory and time --------------------------------------------------


def _gap_text(folder: Path) -> Path:
    path = folder / "gap.txt"
    path.write_text("32 32\n0.0 1 1 1\n500000.0 2 2 0\n")  # two events 5.8 days apart, 31 bytes
    return path


def _zeros_bin(folder: Path) -> Path:
    path = folder / "zeros.bin"
    with open(path, "wb") as file:
        file.truncate(2_000_000_000)  # sparse: 400 M events at t = 0, no disk used
    return path


def _hdf5_declaring(folder: Path) -> Path:
    import h5py

    path = folder / "declares.h5"
    with h5py.File(path, "w") as file:
        for name in "xytp":
            file.create_dataset(f"events/{name}", shape=(2_000_000_000,), dtype="i8" if name == "t" else "u2")
        file.attrs["width"], file.attrs["height"] = 32, 32
    return path


def _alternating_evt3(folder: Path) -> Path:
    n = 4_000  # TIME_HIGH 0xFFF, 0, 0xFFF, ...: a wrap every other word, 16.8 s silences
    high = np.where(np.arange(n) % 2 == 0, 0x8FFF, 0x8000).astype("<u2")
    words = np.stack([high, np.full(n, 0x0001, "<u2"), np.full(n, 0x2001, "<u2")], 1).ravel()
    path = folder / "alternating.raw"
    path.write_bytes(b"% evt 3.0\n% format EVT3;width=32;height=32\n% end\n" + words.tobytes())
    return path


@pytest.mark.slow
@pytest.mark.parametrize("make, status, expected", [
    (_gap_text, 0, "done: 2 steps"),
    (_alternating_evt3, 0, "done: "),
    (_zeros_bin, 2, "more than 10,000,000 events in the window from t=0 us"),
    (_hdf5_declaring, 2, "events/x declares 2,000,000,000 values"),
])
def test_crafted_recordings_end_in_bounded_time_and_memory(tmp_path, tiny_checkpoint, make, status, expected):
    recording = make(tmp_path)
    result = run_bounded(["infer", str(recording), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                          "--quiet", "--threads", "1", "--jsonl", str(tmp_path / "out.jsonl")], tmp_path)
    assert result["killed"] is None, result
    assert result["status"] == status, result["output"][-2000:]
    assert expected in result["output"]
    if status == 2:
        assert str(recording) in _one_error_line(result["output"])
        assert not (tmp_path / "out.jsonl").exists()
    _no_temporary_files(tmp_path)


def test_a_long_gap_is_one_step_with_its_dt(tmp_path, tiny_checkpoint):
    out = tmp_path / "steps.jsonl"
    assert run_cli(["infer", str(_gap_text(tmp_path)), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                 "--quiet", "--jsonl", str(out)]) == 0
    steps = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["dt"] for s in steps] == [0.05, 500_000.0]


# --- 2. crafted checkpoints: validated before anything is allocated ----------------------------------


def _edit(raw: dict, where: str, value) -> None:
    """Set (or, for value ``...``, delete) the entry at the dotted path ``where``."""
    *parents, last = where.split(".")
    for key in parents:
        raw = raw[key]
    if value is ...:
        del raw[last]
    else:
        raw[last] = value


def _first_weight_nan(raw: dict) -> None:
    name = next(k for k in raw["state_dict"] if k.endswith("weight"))
    raw["state_dict"][name] = torch.full_like(raw["state_dict"][name], float("nan"))


BAD_CHECKPOINTS = [
    ("perception.model.num_classes", 10**9, "num_classes = 1,000,000,000 is more than"),
    ("perception.model.num_classes", 1e9, "num_classes: expected int"),
    ("perception.model.head_kwargs.hidden_size", 10**7, "hidden_size = 10,000,000 is more than"),
    ("perception.model.backbone_kwargs.width", 1e4, "the weights do not match the model its config describes"),
    ("perception.model", "cfc", "the model config: expected a dict"),
    ("perception.preprocessing.frame_size", [100_000, 100_000], "preprocessing.frame_size"),
    ("perception.preprocessing.frame_size", [0, -1], "preprocessing.frame_size"),
    ("perception.preprocessing.frame_size", ..., "missing keys ['frame_size']"),
    ("perception.preprocessing", "voxel_grid", "preprocessing: expected a dict, got str"),
    ("perception.classes", "abc", "classes: expected a list of names"),
    ("state_dict", [1, 2], "state_dict: expected a dict of tensors, got list"),
    ("nan", None, "holds 360 non-finite values"),
]


def _craft(tmp_path: Path, tiny_checkpoint, where: str, value) -> Path:
    raw = torch.load(tiny_checkpoint(tmp_path), weights_only=True)
    _first_weight_nan(raw) if where == "nan" else _edit(raw, where, value)
    path = tmp_path / "crafted.ckpt"
    torch.save(raw, path)
    return path


@pytest.mark.parametrize("where, value, expected", BAD_CHECKPOINTS)
def test_malformed_checkpoints_are_one_line(tmp_path, capsys, tiny_checkpoint, where, value, expected):
    checkpoint = _craft(tmp_path, tiny_checkpoint, where, value)
    status = run_cli(["infer", str(_gap_text(tmp_path)), "--checkpoint", str(checkpoint), "--headless", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and expected in err and str(checkpoint) in err and len(err.strip().splitlines()) == 1, err


def test_a_list_as_state_dict_is_one_line_in_export_and_resume(tmp_path, capsys, tiny_checkpoint, in_tmp):
    checkpoint = _craft(tmp_path, tiny_checkpoint, "state_dict", [1, 2])
    assert run_cli(["export", str(checkpoint), "--no-check"]) == 2
    assert "state_dict: expected a dict of tensors" in capsys.readouterr().err
    assert run_cli(["train", "--resume", str(checkpoint), "--trainer.max_epochs", "1"]) == 2
    assert "state_dict: expected a dict of tensors" in _one_error_line(capsys.readouterr().err)


def test_export_never_writes_over_its_checkpoint(tmp_path, capsys, tiny_checkpoint):
    checkpoint = tiny_checkpoint(tmp_path).rename(tmp_path / "model.pt")  # torchscript's own suffix
    before = checkpoint.read_bytes()
    assert run_cli(["export", str(checkpoint), "--format", "torchscript", "--no-check"]) == 2
    assert "is the checkpoint" in capsys.readouterr().err and checkpoint.read_bytes() == before
    assert run_cli(["export", str(checkpoint), "--output", str(tmp_path), "--no-check"]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_resume_from_a_model_only_checkpoint_says_what_it_needs(tmp_path, capsys, tiny_checkpoint, in_tmp):
    checkpoint = tiny_checkpoint(tmp_path)  # written by save_checkpoint: no optimizer, no loops
    assert run_cli(["train", "--resume", str(checkpoint), "--trainer.max_epochs", "1"]) == 2
    err = _one_error_line(capsys.readouterr().err)
    assert "a model-only checkpoint" in err and "resuming needs a training checkpoint" in err


def test_a_checkpoint_failing_its_crc_is_refused(tmp_path, capsys, tiny_checkpoint):
    path = tiny_checkpoint(tmp_path)
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    data[member.header_offset + 30 + len(member.filename.encode()) + len(member.extra) + 100] ^= 0xFF
    path.write_bytes(bytes(data))  # one flipped bit inside a stored weight: torch.load would not notice
    assert run_cli(["infer", str(_gap_text(tmp_path)), "--checkpoint", str(path), "--headless", "--quiet"]) == 2
    assert "fails its CRC check" in capsys.readouterr().err


def test_non_finite_probabilities_are_json_null():
    from perception.streaming.runner import StepResult

    record = StepResult(0, 0.0, 0.05, "a", float("nan"), np.array([np.nan, np.inf, 0.5]), 0, 1.0, lambda: None).record()
    assert record["score"] is None and record["probs"] == [None, None, 0.5]
    json.dumps(record, allow_nan=False)


# --- 3. outputs: checked first, never lost ------------------------------------------------------------


@pytest.mark.parametrize("option, target, expected", [
    ("--jsonl", "{tmp}", "is a folder"),
    ("--output", "{tmp}/folder.mp4", "is a folder"),
    ("--jsonl", "", "expected a file name, got an empty one"),
    ("--jsonl", "{tmp}/sub/", "names a folder"),
    ("--jsonl", "{source}", "is the source; writing there would destroy it"),
    ("--jsonl", "{checkpoint}", "is the checkpoint; writing there would destroy it"),
])
def test_bad_output_paths_are_refused_before_the_stream(tmp_path, capsys, tiny_checkpoint, option, target, expected):
    checkpoint, source = tiny_checkpoint(tmp_path), _gap_text(tmp_path)
    (tmp_path / "folder.mp4").mkdir()
    before = {p: p.read_bytes() for p in (checkpoint, source)}
    target = target.format(tmp=tmp_path, source=source, checkpoint=checkpoint)
    status = run_cli(["infer", str(source), "--checkpoint", str(checkpoint), "--headless", "--quiet", option, target])
    err = capsys.readouterr()
    assert status == 2 and expected in err.err and len(err.err.strip().splitlines()) == 1, err.err
    assert "step" not in err.out and "done" not in err.err  # refused before the stream started
    assert {p: p.read_bytes() for p in before} == before
    _no_temporary_files(tmp_path)


def test_one_file_named_twice_is_refused(tmp_path, capsys, tiny_checkpoint):
    both = str(tmp_path / "out.mp4")
    assert run_cli(["infer", str(_gap_text(tmp_path)), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                 "--jsonl", both, "--output", both]) == 2
    assert "is --output" in capsys.readouterr().err


def test_a_failed_run_leaves_the_previous_outputs_untouched(tmp_path, capsys, tiny_checkpoint, monkeypatch):
    from data import DataError
    from perception.streaming.runner import StreamRunner

    jsonl, video = tmp_path / "steps.jsonl", tmp_path / "steps.mp4"
    jsonl.write_text("previous\n")
    video.write_bytes(b"previous video")
    original = StreamRunner.run

    def fail_after_three(self, *args, **kwargs):
        for result in original(self, *args, **kwargs):
            if result.index == 3:
                raise DataError("crafted.txt: corrupt in the middle")
            yield result

    monkeypatch.setattr(StreamRunner, "run", fail_after_three)
    text = tmp_path / "long.txt"
    text.write_text("32 32\n" + "".join(f"{i / 1000:.6f} {i % 32} {i % 29} {i % 2}\n" for i in range(2000)))
    status = run_cli(["infer", str(text), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless", "--quiet",
                   "--jsonl", str(jsonl), "--output", str(video)])
    assert status == 2 and "corrupt in the middle" in capsys.readouterr().err
    assert jsonl.read_text() == "previous\n" and video.read_bytes() == b"previous video"
    _no_temporary_files(tmp_path)


# --- 4. full disks and signals ------------------------------------------------------------------------


def test_a_full_disk_during_infer_is_one_line(tmp_path, capsys, tiny_checkpoint, monkeypatch):
    from perception.streaming import sinks

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass

    original = sinks.JsonlSink.__init__

    def full(self, path):
        original(self, path)
        self.file.close()
        self.file = FullDisk()

    monkeypatch.setattr(sinks.JsonlSink, "__init__", full)
    out = tmp_path / "steps.jsonl"
    out.write_text("previous\n")
    status = run_cli(["infer", str(_gap_text(tmp_path)), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                   "--quiet", "--jsonl", str(out)])
    err = capsys.readouterr().err
    assert status == 2 and "No space left on device" in err and len(err.strip().splitlines()) == 1
    assert out.read_text() == "previous\n"
    _no_temporary_files(tmp_path)


@pytest.fixture()
def small_disk(tmp_path):
    """A 256 KB tmpfs, nearly full; skips where mounting is not permitted (not root, a container)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    try:
        (mount / "fill").write_bytes(b"\0" * (256 * 1024 - 8 * 1024))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("option, name", [("--jsonl", "steps.jsonl"), ("--output", "steps.mp4")])
def test_a_really_full_disk_keeps_the_previous_file(tmp_path, small_disk, tiny_checkpoint, option, name):
    target = small_disk / name
    target.write_bytes(b"previous")
    text = tmp_path / "long.txt"
    text.write_text("32 32\n" + "".join(f"{i / 1000:.6f} {i % 32} {i % 29} {i % 2}\n" for i in range(20_000)))
    result = run_bounded(["infer", str(text), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                          "--quiet", "--threads", "1", option, str(target)], tmp_path)
    assert result["status"] == 2, result["output"][-2000:]
    assert "No space left on device" in _one_error_line(result["output"])
    assert target.read_bytes() == b"previous"
    _no_temporary_files(small_disk)


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_infer_cleanly(tmp_path, tiny_checkpoint, signum, status):
    text = tmp_path / "long.txt"  # 100 s of events, played at its recorded pace
    text.write_text("32 32\n" + "".join(f"{i / 100:.6f} {i % 32} {i % 29} {i % 2}\n" for i in range(10_000)))
    out = tmp_path / "steps.jsonl"
    sent = []

    def stop_after_steps(process, text):
        if not sent and "step      3" in text:
            process.send_signal(signum)
            sent.append(True)

    result = run_bounded(["infer", str(text), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                          "--realtime", "--threads", "1", "--jsonl", str(out)], tmp_path, on_output=stop_after_steps)
    assert sent and result["status"] == status, result["output"][-2000:]
    assert "interrupted: " in result["output"] and f"stopped by {signal.Signals(signum).name}" in result["output"]
    steps = [json.loads(line) for line in out.read_text().splitlines()]  # complete lines only
    assert [s["step"] for s in steps] == list(range(len(steps))) and 4 <= len(steps) < 1000
    _no_temporary_files(tmp_path)


TINY_TRAIN = ["--data.train_size", "256", "--data.val_size", "8", "--data.test_size", "8", "--data.size", "32",
              "--data.steps", "4", "--data.batch_size", "8", "--model.backbone_kwargs", "{width: 0.5}",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.max_epochs", "20", "--test", "false"]


@pytest.mark.slow
def test_sigterm_in_train_saves_a_resumable_checkpoint(tmp_path):
    sent = []

    def stop_once_training(process, text):
        if not sent and "Loading `train_dataloader`" in text:  # fitting begins: let it take a few steps
            time.sleep(4)
            process.send_signal(signal.SIGTERM)
            sent.append(True)

    result = run_bounded(["train", *TINY_TRAIN], tmp_path, timeout=240, on_output=stop_once_training)
    assert sent and result["status"] == 143, result["output"][-3000:]
    line = next(l for l in result["output"].splitlines() if "a resumable checkpoint:" in l)
    checkpoint = tmp_path / line.rsplit(": ", 1)[1]
    raw = torch.load(checkpoint, weights_only=True)
    assert {"optimizer_states", "loops", "epoch", "global_step"} <= set(raw)
    assert f"--resume {line.rsplit(': ', 1)[1]}" in result["output"]
    _no_temporary_files(tmp_path)


def test_a_full_disk_while_training_is_one_line(tmp_path, capsys, monkeypatch, in_tmp):
    from perception.training import checkpoint_io

    def full_disk(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(checkpoint_io.torch, "save", full_disk)
    small = {"256": "16", "20": "1"}  # 16 clips, one epoch
    status = run_cli(["train", *[small.get(arg, arg) for arg in TINY_TRAIN]])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert "writing the checkpoint failed" in err[-1] and "is the disk full?" in err[-1]
    assert "Traceback" not in "\n".join(err)
    _no_temporary_files(tmp_path)


# --- 5. command-line misuse ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv, expected", [
    (["--device", "bogus"], "--device 'bogus': not a torch device"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "--device cuda"),
    (["--threads", "100000"], "--threads 100000: more than the"),
])
def test_infer_misuse_is_one_line(tmp_path, capsys, tiny_checkpoint, argv, expected):
    status = run_cli(["infer", str(_gap_text(tmp_path)), "--checkpoint", str(tiny_checkpoint(tmp_path)), "--headless",
                   "--quiet", *argv])
    err = capsys.readouterr().err
    assert status == 2 and expected in err and len(err.strip().splitlines()) == 1, err


def test_negative_max_epochs_is_one_line(capsys, in_tmp):
    assert run_cli(["train", "--trainer.max_epochs", "-5"]) == 2
    assert "max_epochs" in _one_error_line(capsys.readouterr().err)
