"""Checkpoints: rebuilt from plain config, read without running code, bad files refused clearly."""
import os
import pickle

import tracemalloc

import pytest
import torch

from data import Preprocessing, WindowSpec
from perception import checkpoint as checkpoint_module
from perception.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from perception.errors import PerceptionError
from perception.model import PerceptionModel

PRE = Preprocessing.frames((32, 32), 1, 0.04)


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


def _with_preprocessing(tmp_path, name, preprocessing, in_channels=1):
    """A copy of a saved frames checkpoint with ``preprocessing`` as its raw entry."""
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["perception"]["preprocessing"] = preprocessing
    payload["perception"]["model"]["in_channels"] = in_channels
    torch.save(payload, tmp_path / name)
    return tmp_path / name


def test_a_checkpoint_written_before_the_preprocessing_had_a_version_loads(tmp_path):
    old = _with_preprocessing(tmp_path, "old.ckpt", {"modality": "frames", "size": [32, 32], "grey": True})
    loaded = load_checkpoint(old)
    assert loaded.preprocessing == Preprocessing.frames((32, 32), 1, 0.04)  # the model's time scale
    events = {"modality": "events", "sensor_size": [64, 64], "frame_size": [32, 32], "downsample": 2,
              "representation": {"name": "histogram", "bins": 1, "polarity": "split"},
              "window": {"mode": "duration", "size": 40_000, "overlap": 0}}
    model = PerceptionModel(2, 3, backbone_kwargs={"width": 0.5}, time_scale=0.04).eval()
    new = Preprocessing.events((64, 64), (32, 32), events["representation"], WindowSpec.duration(40_000), 0.04,
                               downsample=2)
    path = save_checkpoint(tmp_path / "events.ckpt", model, ["a", "b", "c"], new)
    payload = torch.load(path, weights_only=True)
    payload["perception"]["preprocessing"] = events
    torch.save(payload, tmp_path / "old_events.ckpt")
    loaded = load_checkpoint(tmp_path / "old_events.ckpt")
    assert loaded.preprocessing == new and loaded.model.in_channels == 2
    # a preprocessing that does not fit the model is refused before the model is built
    payload["perception"]["model"]["in_channels"] = 5
    torch.save(payload, tmp_path / "mismatch.ckpt")
    with pytest.raises(PerceptionError, match="mismatch.ckpt: the preprocessing makes 2-channel inputs, the model takes 5"):
        load_checkpoint(tmp_path / "mismatch.ckpt")


def test_a_malformed_preprocessing_fails_in_one_line_before_anything_is_built(tmp_path, monkeypatch):
    huge = _with_preprocessing(tmp_path, "huge.ckpt", {**PRE.to_dict(), "frame_size": [100_000, 100_000]})
    old_huge = _with_preprocessing(tmp_path, "old_huge.ckpt", {"modality": "frames", "size": [100_000, 100_000]})

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built from a malformed checkpoint")

    monkeypatch.setattr(checkpoint_module, "PerceptionModel", refuse)
    for path in (huge, old_huge):
        tracemalloc.start()
        with pytest.raises(PerceptionError) as caught:
            load_checkpoint(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        message = str(caught.value)
        assert message.startswith(f"{path}: preprocessing.frame_size: expected (width, height)") and "\n" not in message
        assert peak < 20 * 2**20  # nothing of the 10^10 pixels was allocated
    missing = _with_preprocessing(tmp_path, "none.ckpt", None)
    with pytest.raises(PerceptionError, match="none.ckpt: preprocessing: expected a dict, got NoneType"):
        load_checkpoint(missing)


def test_the_cli_reports_a_malformed_checkpoint_in_one_line(tmp_path, capsys):
    from perception.cli import main

    bad = _with_preprocessing(tmp_path, "bad.ckpt", {**PRE.to_dict(), "channels": 2})
    assert main(["export", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.ckpt: preprocessing.channels: frames have 1 (grey) or 3 (RGB) channels; got 2" in err
    assert len(err.splitlines()) == 1
