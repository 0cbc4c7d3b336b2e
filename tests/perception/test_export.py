"""`perception export`: every head's single-step model as ONNX and TorchScript, equal to PyTorch."""
import json

import pytest
import torch

import heads
from data import Preprocessing, WindowSpec
from perception.checkpoint import load_checkpoint, save_checkpoint
from perception.cli import main
from perception.export import check, export, random_inputs
from perception.model import PerceptionModel

PRE = Preprocessing.events((32, 32), (32, 32), {"name": "voxel_grid", "bins": 5, "polarity": "signed",
                                                "normalize": "standard"}, WindowSpec.duration(50_000), 0.05)


def _checkpoint(tmp_path, head, **options):
    torch.manual_seed(0)
    model = PerceptionModel(5, 3, head=head, backbone_kwargs={"width": 0.5}, time_scale=0.05, **options).eval()
    if options.get("dt_transform") == "learned":
        with torch.no_grad():
            model.dt_gain.fill_(0.4)  # not the identity: the exported graph must carry it
    return save_checkpoint(tmp_path / f"{head}.ckpt", model, ["a", "b", "c"], PRE)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("head", heads.list_heads())
def test_every_head_exports_and_matches_pytorch(tmp_path, head, fmt):
    torch.set_num_threads(1)
    loaded = load_checkpoint(_checkpoint(tmp_path, head))
    path = export(loaded, tmp_path / f"{head}.{fmt}", fmt)
    worst, steps = check(loaded, path, fmt, random_inputs(loaded, 30))
    assert steps == 30 and worst <= 1e-4
    meta = json.loads(path.with_suffix(path.suffix + ".json").read_text())
    assert meta["classes"] == ["a", "b", "c"] and Preprocessing.from_dict(meta["preprocessing"]) == PRE
    assert meta["outputs"][0] == "logits" and len(meta["state_shapes"]) == len(meta["outputs"]) - 1


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("options", [{"dt_transform": "log1p"}, {"dt_transform": "learned"},
                                     {"output_integrator": True, "head_kwargs": {"mixed_memory": True}}])
def test_model_options_export_and_match_pytorch(tmp_path, options, fmt):
    torch.set_num_threads(1)
    loaded = load_checkpoint(_checkpoint(tmp_path, "cfc", **options))
    assert loaded.model.config()["dt_transform"] == options.get("dt_transform", "scale")
    path = export(loaded, tmp_path / f"cfc.{fmt}", fmt)
    worst, steps = check(loaded, path, fmt, random_inputs(loaded, 20))
    assert steps == 20 and worst <= 1e-4


def test_cli_checks_on_a_recorded_stream(tmp_path, shared_data, capsys):
    ckpt = _checkpoint(tmp_path, "cfc")
    out = tmp_path / "model.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--output", str(out),
                 "--stream", str(shared_data / "events" / "tonic_sample.aedat4")]) == 0
    printed = capsys.readouterr().out
    assert "tonic_sample.aedat4: max |logits - PyTorch| over 12 steps" in printed  # 590 ms in 50 ms windows
    assert "PASS" in printed
    assert out.is_file()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt: checkpoint not found" in capsys.readouterr().err
    assert main(["export", str(_checkpoint(tmp_path, "gru")), "--steps", "0"]) == 2
    assert "--steps must be at least 1" in capsys.readouterr().err
