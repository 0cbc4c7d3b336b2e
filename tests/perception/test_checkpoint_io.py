"""Checkpoint writes during training are atomic: a full disk leaves the earlier file intact."""
import errno

import pytest
import torch

from perception.errors import PerceptionError
from perception.training.checkpoint_io import AtomicCheckpointIO


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    good = {"state_dict": {"w": torch.ones(3)}, "perception": {"format": 1, "model": {}}, "epoch": 1}
    io.save_checkpoint(good, path)
    before = path.read_bytes()

    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(PerceptionError, match=r"last.ckpt: writing failed \(No space left on device\); the previous file is untouched"):
        io.save_checkpoint({**good, "epoch": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary file left behind
    assert io.load_checkpoint(path)["epoch"] == 1


def test_a_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PerceptionError, match="cannot write here"):
        AtomicCheckpointIO().save_checkpoint({"x": 1}, blocker / "sub" / "last.ckpt")
