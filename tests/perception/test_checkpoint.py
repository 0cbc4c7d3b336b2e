"""Checkpoints: rebuilt from plain config, read without running code, bad files refused clearly."""
import os
import pickle

import pytest
import torch

from perception.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from perception.errors import PerceptionError
from perception.model import PerceptionModel

PRE = {"modality": "frames", "size": [32, 32], "grey": True}


def _saved(tmp_path, head="cfc"):
    torch.manual_seed(0)
    model = PerceptionModel(1, 3, head=head, backbone_kwargs={"width": 0.5}, time_scale=0.04).eval()
    path = save_checkpoint(tmp_path / f"{head}.ckpt", model, ["a", "b", "c"], PRE)
    return model, path


def test_round_trip(tmp_path):
    model, path = _saved(tmp_path)
    loaded = load_checkpoint(path)
    assert loaded.classes == ["a", "b", "c"] and loaded.preprocessing == PRE
    assert float(loaded.model.time_scale) == pytest.approx(0.04)
    x, dt = torch.rand(2, 3, 1, 32, 32), torch.full((2, 3), 0.04)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x, dt)[0], model(x, dt)[0])
    torch.load(path, weights_only=True)  # plain values only


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # unpickling this would create the marker file


def test_a_checkpoint_that_runs_code_is_refused(tmp_path):
    model, path = _saved(tmp_path)
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.ckpt"
    payload = torch.load(path, weights_only=True)
    payload["perception"]["extra"] = _RunsCode(str(marker))
    torch.save(payload, evil)
    with pytest.raises(PerceptionError, match="refused"):
        load_checkpoint(evil)
    assert not marker.exists()
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(PerceptionError, match="refused|not a readable"):
        load_checkpoint(raw)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path):
    _, path = _saved(tmp_path)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(PerceptionError, match="cut.ckpt: not a readable checkpoint"):
        load_checkpoint(cut)
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(PerceptionError, match="not a liquid-perception checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(PerceptionError, match="missing.ckpt: checkpoint not found"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_weights_of_another_model(tmp_path):
    _, cfc_path = _saved(tmp_path, "cfc")
    _, gru_path = _saved(tmp_path, "gru")
    mixed = torch.load(cfc_path, weights_only=True)
    mixed["perception"] = torch.load(gru_path, weights_only=True)["perception"]
    torch.save(mixed, tmp_path / "mixed.ckpt")
    with pytest.raises(PerceptionError, match="weights do not match"):
        load_checkpoint(tmp_path / "mixed.ckpt")
