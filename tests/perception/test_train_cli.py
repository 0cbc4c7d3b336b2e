"""`perception train` end to end on a tiny built-in dataset: logs, checkpoints, test/acc, resume, errors."""
import csv

import pytest
import torch

from perception.checkpoint import load_checkpoint
from perception.cli import main

TINY = ["--data.train_size", "16", "--data.val_size", "8", "--data.test_size", "8", "--data.size", "32",
        "--data.steps", "4", "--data.batch_size", "8", "--model.backbone_kwargs", "{width: 0.5}",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]




@pytest.mark.slow
def test_train_writes_a_checkpoint_and_resumes(in_tmp, capsys):
    assert main(["train", *TINY, "--trainer.max_epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "test/acc: " in out
    run = in_tmp / "runs" / "default" / "version_0"
    best = [p for p in (run / "checkpoints").glob("best-*.ckpt")]
    assert len(best) == 1 and (run / "checkpoints" / "last.ckpt").is_file()
    assert f"checkpoint: {best[0].relative_to(in_tmp)}" in out
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert any(row.get("val/acc") for row in rows) and any(row.get("test/acc") for row in rows)

    loaded = load_checkpoint(best[0])  # weights_only=True inside
    assert loaded.model.head_name == "cfc" and len(loaded.classes) == 8
    assert loaded.preprocessing.modality == "events" and loaded.preprocessing.window.mode == "frames"
    assert loaded.preprocessing.representation["name"] == "voxel_grid"
    assert 0 < float(loaded.model.time_scale) < 1  # the data's median dt, seconds
    assert loaded.preprocessing.time_scale == float(loaded.model.time_scale)

    # Resume the last checkpoint for one more epoch: the step count continues, the first run's
    # files stay as they were, the resumed run writes into the next version folder.
    first_metrics = (run / "metrics.csv").read_text()
    assert main(["train", *TINY, "--trainer.max_epochs", "2", "--resume", "last", "--test", "false"]) == 0
    resumed = torch.load(in_tmp / "runs" / "default" / "version_1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 4
    assert (run / "metrics.csv").read_text() == first_metrics


def test_print_config_shows_the_defaults(in_tmp, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--print_config"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "head: cfc" in out and "SyntheticDataModule" in out and "modality: events" in out


@pytest.mark.parametrize("args, message", [
    (["--model.head", "nope"], "unknown head 'nope'"),
    (["--model.loss", "sometimes"], "model.loss"),
    (["--resume", "missing.ckpt"], "missing.ckpt: checkpoint not found"),
])
def test_bad_values_are_one_line(in_tmp, capsys, args, message):
    assert main(["train", *TINY, *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("perception train: error:")


def test_bad_option_is_one_line(in_tmp, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--model.no_such_option", "3"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_option" in err


def test_shipped_configs_by_name(in_tmp, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--config", "dvsgesture", "--print_config"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "EventDataModule" in out and "dataset: dvsgesture" in out and "head: cfc" in out
    with pytest.raises(SystemExit):
        main(["train", "--config=video_folder", "--print_config"])
    assert "VideoFolderDataModule" in capsys.readouterr().out


@pytest.mark.slow
def test_last_checkpoint_is_the_final_epoch_when_validation_stops_improving(in_tmp):
    # A learning rate too small to change any prediction: val/acc never improves after epoch 0, so
    # the only best checkpoint is epoch 0's; last.ckpt must still hold the end of the run. (Without the
    # output integrator: its outputs start near zero, so logits start near a tie that the tiniest
    # update can tip.)
    tiny = ["--model.lr", "1e-9", "--model.output_integrator", "false"]
    assert main(["train", *TINY, "--trainer.max_epochs", "3", *tiny, "--test", "false"]) == 0
    checkpoints = in_tmp / "runs" / "default" / "version_0" / "checkpoints"
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-00.ckpt"]
    last = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 3 * 16 // 8

    # --resume last continues from there: the run is complete, nothing is trained again.
    assert main(["train", *TINY, "--trainer.max_epochs", "3", *tiny, "--resume", "last", "--test", "false"]) == 0
    metrics = in_tmp / "runs" / "default" / "version_1" / "metrics.csv"
    rows = list(csv.DictReader(metrics.open())) if metrics.exists() else []
    assert not any(row.get("train/acc") or row.get("val/acc") for row in rows)
