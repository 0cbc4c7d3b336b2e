"""`perception evaluate`: trains each head on the same budget, measures it, writes the report folder."""
import csv

import pytest
import torch

from perception.checkpoint import load_checkpoint
from perception.cli import main
from perception.evaluation.conditions import list_conditions
from perception.evaluation.report import findings

TINY = ["--quick", "--train-size", "48", "--test-size", "16", "--epochs", "1", "--threads", "1"]


def _rows(path):
    return list(csv.DictReader(path.open()))


@pytest.mark.slow
def test_train_and_compare_two_heads_then_reload_their_checkpoints(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", *TINY, "--heads", "cfc,none", "--output", str(out)]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    rows = _rows(out / "results.csv")
    assert [r["head"] for r in rows] == ["cfc", "none"]
    conditions = [c.name for c in list_conditions("events", quick=True)]
    for row in rows:
        for key in ["acc", "appearance", "order", "speed", *conditions]:
            assert 0.0 <= float(row[key]) <= 1.0, key
        assert int(row["params"]) > 0 and float(row["latency_us"]) > 0 and float(row["train_s"]) > 0
    assert rows[0]["time_aware"] == "True" and rows[1]["time_aware"] == "False"
    report = (out / "report.md").read_text()
    assert "| cfc |" in report and "| none |" in report and "## What it shows" in report
    for name in ("accuracy_vs_timing", "accuracy_vs_noise", "accuracy_vs_latency", "accuracy_vs_params"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The saved models reload (weights_only) and, compared from their checkpoints, give the same accuracy.
    ckpts = [out / "checkpoints" / f"{h}-seed0.ckpt" for h in ("cfc", "none")]
    assert load_checkpoint(ckpts[0]).model.head_name == "cfc"
    again = tmp_path / "again"
    assert main(["evaluate", *TINY, "--checkpoints", ",".join(map(str, ckpts)), "--output", str(again),
                 "--no-plots"]) == 0
    reloaded = _rows(again / "results.csv")
    for before, after in zip(rows, reloaded):
        assert after["head"] == before["head"]
        for key in ["acc", *conditions]:
            assert float(after[key]) == pytest.approx(float(before[key])), key


@pytest.mark.parametrize("args, message", [
    (["--heads", "cfc,nope"], "--heads: unknown 'nope'"),
    (["--seeds", "1,x"], "--seeds: expected comma-separated integers"),
    (["--epochs", "0"], "--epochs: expected a positive integer"),
    (["--checkpoints", "missing.ckpt"], "missing.ckpt: checkpoint not found"),
])
def test_bad_options_are_one_line(tmp_path, capsys, args, message):
    assert main(["evaluate", "--output", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_findings_say_where_the_liquid_heads_do_not_win():
    summary = [
        {"head": "cfc", "acc": 0.80, "acc_sd": 0.01, "speed": 0.9, "speed_sd": 0.0, "time_aware": True, "latency_us": 900.0},
        {"head": "gru", "acc": 0.85, "acc_sd": 0.01, "speed": 0.5, "speed_sd": 0.0, "time_aware": False, "latency_us": 400.0},
    ]
    lines = findings(summary, [("acc", "Accuracy"), ("speed", "Speed pair")])
    assert lines[0] == "Accuracy: best gru (85.0%); the best liquid head, cfc, reached 80.0% (not first here)."
    assert lines[1] == "Speed pair: best cfc (90.0%)."
    assert "heads that use dt averaged 90.0%, heads that ignore it 50.0%" in lines[2]
    assert lines[3] == "Fastest streaming step: gru (400 µs at batch 1)."


def test_checkpoints_are_measured_under_their_own_training_timing(tmp_path):
    """A model trained with jitter 0.45 has its `acc` (training timing) measured at timing=0.45."""
    import csv as _csv

    from perception.checkpoint import save_checkpoint
    from perception.model import PerceptionModel
    from perception.training.data import SyntheticDataModule

    datamodule = SyntheticDataModule(modality="events", size=32, jitter=0.45, normalize="standard")
    torch.manual_seed(0)
    model = PerceptionModel(datamodule.in_channels, datamodule.num_classes, backbone_kwargs={"width": 0.5},
                            head="gru", time_scale=0.05).eval()
    ckpt = save_checkpoint(tmp_path / "gru.ckpt", model, datamodule.classes, datamodule.preprocessing,
                           {"datamodule_hyper_parameters": dict(datamodule.hparams)})
    out = tmp_path / "report"
    assert main(["evaluate", *TINY, "--checkpoints", str(ckpt), "--output", str(out), "--no-plots"]) == 0
    (row,) = list(_csv.DictReader((out / "results.csv").open()))
    assert "timing=0.45" in row and "timing=0.3" not in row
    assert float(row["acc"]) == float(row["timing=0.45"])
    assert "- training timing: timing=0.45" in (out / "report.md").read_text()
