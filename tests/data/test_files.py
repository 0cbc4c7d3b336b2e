"""AtomicFile: the target is the old file or the complete new one; no temporary file is left behind."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from data.errors import DataError
from data.files import AtomicFile


def test_with_block_writes_the_target_with_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with AtomicFile(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.") and tmp.suffix == ".tmp"
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing changes before the commit
    assert target.read_bytes() == b"new"
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_write_keeps_the_old_file(tmp_path: Path, error: BaseException) -> None:
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(error)):
        with AtomicFile(target) as tmp:
            tmp.write_bytes(b"half")
            raise error
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_commit_and_discard_outside_a_with_block(tmp_path: Path) -> None:
    pending = AtomicFile(tmp_path / "a" / "b" / "stream.jsonl", parents=True)
    with pending.tmp.open("w") as file:  # kept open across a whole stream in the sinks
        file.write("{}\n")
    assert pending.commit() == tmp_path / "a" / "b" / "stream.jsonl"
    assert pending.path.read_text() == "{}\n"
    dropped = AtomicFile(tmp_path / "dropped.mp4")
    dropped.discard()
    assert not dropped.tmp.exists() and not dropped.path.exists()


def test_folders_that_are_missing_or_cannot_be_created(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.npz: the folder .*no does not exist"):
        AtomicFile(tmp_path / "no" / "missing.npz")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(DataError, match=r"x\.npz: cannot create a file in .*file/sub") as caught:
        AtomicFile(blocker / "sub" / "x.npz", parents=True)
    assert isinstance(caught.value.__cause__, OSError)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
