"""`perception evaluate`: trains each head through perception train's code, tunes its learning rate,
tests it under every condition, scores each task, and writes the report folder."""
import csv

import numpy as np
import pytest
import torch

from perception.cli import main
from perception.evaluation.conditions import CONDITIONS, ConditionSets, merge_steps, shuffle_dt, swap_dt
from perception.evaluation.measure import chance, ops_per_step, task_accuracy
from perception.evaluation.report import SUMMARY_COLUMNS, findings, interval

TINY = ["--quick", "--train-size", "48", "--test-size", "16", "--epochs", "1", "--threads", "1",
        "--data.init_args.val_size", "16", "--data.init_args.size", "24"]


def _rows(path):
    return list(csv.DictReader(path.open()))


@pytest.mark.slow
def test_train_tune_and_compare_two_heads(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["evaluate", *TINY, "--heads", "cfc,none", "--seeds", "0,1", "--lrs", "0.003,0.01",
                 "--output", str(out)]) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    tasks = ["all", "appearance", "order", "duration", "speed"]
    rows = _rows(out / "results.csv")
    trained = [r for r in rows if r["head"] != "linear"]
    # one row per head x seed x task x condition, each accuracy a fraction
    assert len(trained) == 2 * 2 * len(tasks) * len(CONDITIONS)
    assert {(r["head"], r["seed"], r["task"], r["condition"]) for r in trained} == {
        (h, s, t, c) for h in ("cfc", "none") for s in ("0", "1") for t in tasks for c in CONDITIONS}
    for r in trained:
        assert 0.0 <= float(r["acc"]) <= 1.0 and r["lr"] in ("0.003", "0.01")
        assert int(r["params"]) > 0 and float(r["ops_per_step"]) > 0 and float(r["latency_us"]) > 0
    # each head ran both learning rates with seed 0 and kept the better on validation
    assert sorted(p.name for p in (out / "runs" / "cfc").iterdir()) == [
        "cfc-h64-lr0.003-seed0", "cfc-h64-lr0.01-seed0", "cfc-h64-lr0.01-seed1"] or \
        sorted(p.name for p in (out / "runs" / "cfc").iterdir()) == [
        "cfc-h64-lr0.003-seed0", "cfc-h64-lr0.003-seed1", "cfc-h64-lr0.01-seed0"]
    # the linear floor: one row per task, training timing only
    assert {r["task"] for r in rows if r["head"] == "linear"} == set(tasks)

    with (out / "summary.csv").open() as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        summary = list(reader)
    assert len([s for s in summary if s["head"] != "linear"]) == 2 * len(tasks) * len(CONDITIONS)
    for s in summary:
        if s["head"] != "linear":
            assert s["seeds"] == "2" and float(s["acc_ci_low"]) <= float(s["acc_mean"]) <= float(s["acc_ci_high"])
        assert float(s["chance"]) == pytest.approx(0.125 if s["task"] == "all" else 0.5)
    assert {s["needs_time"] for s in summary if s["task"] == "order"} == {"True"}
    assert {s["needs_time"] for s in summary if s["task"] == "appearance"} == {"False"}

    report = (out / "report.md").read_text()
    for heading in ("## Learning rate chosen per head", "## Tasks and their controls", "## Task: duration",
                    "## Size and cost", "## What it shows"):
        assert heading in report
    assert "dt shuffled within each clip" in report and "linear floor" in report
    for name in ("accuracy_per_task", "accuracy_per_condition", "accuracy_vs_params", "accuracy_vs_ops"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compare_heads_on_an_event_dataset_through_a_config(tmp_path):
    """--config and --data.* as for perception train: a POKER-DVS folder made here, two heads."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data" / "POKERDVS"
    for split, count in (("pips_train", 12), ("pips_test", 8)):
        for suit, code in enumerate(("cl", "he", "di", "sp")):
            folder = root / split / f"pip{code}"
            folder.mkdir(parents=True)
            for k in range(count // 4 + 1):
                n = 400
                t = np.sort(rng.integers(0, 200_000, n))
                x = np.clip(rng.normal(8 + 6 * suit, 2, n), 0, 34).astype(int)
                y = rng.integers(0, 35, n)
                np.save(folder / f"{k}.npy", np.stack([t, x, y, rng.integers(0, 2, n)], 1))
    config = tmp_path / "poker.yaml"
    config.write_text(
        "data:\n  class_path: perception.training.data.EventDataModule\n  init_args:\n"
        "    dataset: pokerdvs\n    window_size: 50000\n    max_steps: 4\n    batch_size: 4\n    val_fraction: 0.25\n")
    out = tmp_path / "report"
    assert main(["evaluate", "--quick", "--config", str(config), "--data.root", str(tmp_path / "data"),
                 "--heads", "cfc,none", "--seeds", "0,1", "--lrs", "0.003", "--epochs", "1", "--threads", "1",
                 "--output", str(out), "--no-plots"]) == 0
    summary = _rows(out / "summary.csv")
    # a recording's sampling cannot be made regular: every other condition is there
    assert {s["condition"] for s in summary if s["head"] == "cfc"} == set(CONDITIONS) - {"regular"}
    assert {s["task"] for s in summary} == {"all", "classes"}
    # rate_x4 cuts the recordings again into 4x shorter windows: 16 steps where training had 4
    rows = _rows(out / "results.csv")
    assert all(0 <= float(r["acc"]) <= 1 for r in rows)


def test_bad_options_are_one_line(tmp_path, capsys):
    for args, message in ((["--heads", "cfc,nope"], "--heads: unknown 'nope'"),
                          (["--seeds", "1,x"], "--seeds: expected comma-separated ints"),
                          (["--lrs", "0.1,-1"], "--lrs: expected positive values"),
                          (["--epochs", "0"], "--epochs: expected a positive integer"),
                          (["--bogus", "3"], "unrecognized option '--bogus'"),
                          (["--checkpoints", "missing.ckpt"], "missing.ckpt: checkpoint not found")):
        assert main(["evaluate", "--output", str(tmp_path / "r"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)
    with pytest.raises(SystemExit):  # other commands still refuse options they do not know
        main(["export", "x.ckpt", "--data.root", "d"])


def test_conditions_on_generic_clips():
    x = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 2, 3, 3).clone()
    item = {"x": x, "t": torch.arange(1, 9, dtype=torch.float64) * 0.1, "y": 1}
    keep = np.array([1, 0, 0, 1, 1, 0, 1, 0], bool)
    merged = merge_steps(item, keep, "events")       # dropped windows' input goes into the next kept step
    assert merged["x"][:, 0, 0, 0].tolist() == [0.0, 1 + 2 + 3, 4.0, 5 + 6]
    assert merged["t"].tolist() == pytest.approx([0.1, 0.4, 0.5, 0.7])
    frames = merge_steps(item, keep, "frames")       # frames are just not seen
    assert frames["x"][:, 0, 0, 0].tolist() == [0.0, 3.0, 4.0, 6.0]
    uneven = {**item, "t": torch.tensor([0.0, 0.1, 0.35, 0.4, 0.9, 1.0, 1.05, 1.5], dtype=torch.float64)}
    shuffled = shuffle_dt(uneven, np.random.default_rng(0), default_period=0.1)
    dt = np.diff(uneven["t"].numpy(), prepend=-0.1)
    new_dt = np.diff(shuffled["t"].numpy(), prepend=0.0)
    assert sorted(new_dt) == pytest.approx(sorted(dt)) and not np.allclose(new_dt, dt)
    assert torch.equal(shuffled["x"], uneven["x"])
    # swapped: another clip's dt sequence, cut or continued with its median dt
    swapped = swap_dt(uneven, np.array([0.2, 0.4, 0.5]), default_period=0.1)
    assert np.diff(swapped["t"].numpy(), prepend=0.0) == pytest.approx([0.2, 0.2, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2])
    assert torch.equal(swapped["x"], uneven["x"])


def test_builtin_conditions_change_only_what_they_name():
    from perception.training.data import SyntheticDataModule

    dm = SyntheticDataModule(train_size=8, val_size=8, test_size=8, size=24)
    sets = ConditionSets(dm, batch_size=8)
    assert sets.names() == list(CONDITIONS)
    base = sets.dataset("train_timing")
    steps = {name: sets.dataset(name)[0]["x"].shape[0] for name in ("train_timing", "regular", "rate_x0.25", "rate_x4")}
    assert steps == {"train_timing": 12, "regular": 12, "rate_x0.25": 4, "rate_x4": 45}
    regular = np.diff(sets.dataset("regular")[1]["t"].numpy())
    assert regular == pytest.approx(np.full(11, regular[0]), abs=2e-6)              # a constant rate (to 1 us)
    shuffled = sets.dataset("dt_shuffled")[1]
    assert torch.equal(shuffled["x"], base[1]["x"]) and not torch.equal(shuffled["t"], base[1]["t"])
    partners = sets.dataset("dt_swapped").partners               # another clip's timing, never its own
    assert sorted(partners) == list(range(8)) and (partners != np.arange(8)).all()
    swapped = sets.dataset("dt_swapped")[1]
    assert torch.equal(swapped["x"], base[1]["x"]) and torch.allclose(swapped["t"], base[int(partners[1])]["t"])
    assert sets.dataset("drop_0.3")[1]["x"].shape[0] < 12


def test_task_accuracy_and_chance_choose_within_the_task():
    logits = np.array([[5.0, 1.0, 2.0, 0.0], [5.0, 0.0, 1.0, 2.0], [0.0, 9.0, 1.0, 0.0]])
    labels = np.array([2, 3, 1])
    # task {2, 3}: the first clip picks 2 (right), the second 3 (right), though class 0 scores higher
    assert task_accuracy(logits, labels, [2, 3]) == 1.0
    assert task_accuracy(logits, labels, [0, 1]) == 1.0 and np.isnan(task_accuracy(logits, labels[:0], [0]))
    assert chance(np.array([0, 0, 0, 1, 2, 2]), [0, 1]) == 0.75


def test_ops_per_step_counts_spikes_as_synaptic_operations():
    from perception.model import PerceptionModel

    torch.manual_seed(0)
    shape = (2, 24, 24)
    dense = PerceptionModel(2, 4, head="gru", backbone_kwargs={"width": 0.5}).eval()
    spiking = PerceptionModel(2, 4, head="spiking", backbone_kwargs={"width": 0.5}).eval()
    backbone = ops_per_step(PerceptionModel(2, 4, head="none", backbone_kwargs={"width": 0.5}).eval(), shape)
    gru = ops_per_step(dense, shape)
    assert gru - backbone == pytest.approx(3 * (64 * dense.backbone.num_features + 64 * 64) + 64 * 4 - 4 * 64, rel=0.05)
    batch = {"x": torch.randn(2, 5, *shape), "dt": torch.full((2, 5), 0.05), "mask": torch.ones(2, 5, dtype=torch.bool)}
    as_dense = ops_per_step(spiking, shape)
    measured = ops_per_step(spiking, shape, [batch])
    assert backbone < measured < as_dense              # fewer than dense: only spikes cost, once per target


def test_ops_per_step_counts_the_compiled_heads():
    """cfc and ltc step through compiled (numba) kernels in float32, which a FLOP counter cannot see:
    their operations must still be counted (each at least its head's matrix products)."""
    from perception.model import PerceptionModel

    shape = (2, 24, 24)
    models = {}
    for head in ("none", "cfc", "ltc"):
        torch.manual_seed(0)
        models[head] = PerceptionModel(2, 4, head=head, backbone_kwargs={"width": 0.5}).eval()
    backbone = ops_per_step(models["none"], shape)
    features = models["none"].backbone.num_features
    # cfc: its backbone Linear over [features; 64 state] to 128 units, then the heads Linear 128 -> 4 x 64
    assert ops_per_step(models["cfc"], shape) - backbone >= (features + 64) * 128 + 128 * 256
    # ltc: 6 ODE unfolds, each at least the 64 x 64 recurrent synapses
    assert ops_per_step(models["ltc"], shape) - backbone >= 6 * 64 * 64
    assert next(models["cfc"].parameters()).dtype == torch.float32   # the model itself is left as it was


def test_interval_and_findings():
    mean, low, high = interval([0.8, 0.9, 0.85])
    assert mean == pytest.approx(0.85) and low < 0.85 < high and high <= 1.0
    assert np.isnan(interval([0.5])[1])
    tasks = [{"task": "speed", "classes": [0, 1], "needs_time": True}]

    def entry(head, condition, acc, half):
        return {"task": "speed", "condition": condition, "head": head, "acc_mean": acc, "acc_ci_low": acc - half,
                "acc_ci_high": acc + half, "chance": 0.5, "seeds": 3}

    summary = [entry("none", "train_timing", 0.52, 0.03), entry("gru", "train_timing", 0.55, 0.03),
               entry("cfc", "train_timing", 0.90, 0.02), entry("linear", "train_timing", 0.60, float("nan")),
               entry("cfc", "dt_shuffled", 0.55, 0.02), entry("none", "dt_shuffled", 0.52, 0.03),
               entry("gru", "dt_shuffled", 0.55, 0.03)]
    lines = findings(summary, tasks, ["train_timing", "dt_shuffled"])
    assert lines[0].startswith("Task speed (needs time): the CNN alone reached 52.0% against chance 50.0% (+2.0 points)")
    assert "the control holds" in lines[0]
    assert lines[1] == ("speed, train_timing: best cfc 90.0%, then gru 55.0%; the lead is larger than the intervals.")
    assert lines[2] == "speed: the linear floor (logistic regression on the mean input) reached 60.0%; not beaten by none, gru."
    assert lines[3] == ("speed, dt shuffled within each clip (accuracy lost, points; * beyond the intervals): "
                        "none +0.0, gru +0.0, cfc +35.0*.")


@pytest.mark.slow
def test_compare_heads_on_nmnist_official_layout(tmp_path):
    """The shipped nmnist config on a folder in N-MNIST's layout (the stand-in maker writes one)."""
    from data.nmnist_standin import StandinConfig, make_nmnist_standin

    make_nmnist_standin(tmp_path / "data", StandinConfig(train=30, test=20, frame_rate_hz=500.0))
    out = tmp_path / "report"
    assert main(["evaluate", "--quick", "--config", "nmnist", "--data.root", str(tmp_path / "data"),
                 "--data.init_args.cache_dir", "null", "--heads", "cfc,none", "--lrs", "0.003", "--epochs", "1",
                 "--threads", "1", "--output", str(out), "--no-plots"]) == 0
    summary = _rows(out / "summary.csv")
    assert {(s["head"], s["condition"]) for s in summary if s["task"] == "classes"} >= {
        ("cfc", c) for c in CONDITIONS if c != "regular"} | {("none", "dt_shuffled"), ("linear", "train_timing")}
    assert all(s["chance"] == "0.1" for s in summary if s["task"] == "classes")       # 2 test recordings per digit
    assert "## Task: classes" in (out / "report.md").read_text()


def test_compare_saved_checkpoints(tmp_path):
    """--checkpoints: models trained on the built-in dataset, tested on its test split under every
    condition, with the data options they were trained with (here jitter 0.45, 24 x 24)."""
    from perception.checkpoint import save_checkpoint
    from perception.model import PerceptionModel
    from perception.training.data import SyntheticDataModule

    datamodule = SyntheticDataModule(size=24, jitter=0.45, train_size=8, val_size=8, test_size=8)
    paths = []
    for head in ("gru", "none"):
        torch.manual_seed(0)
        model = PerceptionModel(datamodule.in_channels, datamodule.num_classes, head=head,
                                backbone_kwargs={"width": 0.5}, time_scale=0.05).eval()
        paths.append(save_checkpoint(tmp_path / f"{head}.ckpt", model, datamodule.classes, datamodule.preprocessing,
                                     {"datamodule_hyper_parameters": dict(datamodule.hparams)}))
    out = tmp_path / "report"
    assert main(["evaluate", "--checkpoints", ",".join(map(str, paths)), "--test-size", "16", "--threads", "1",
                 "--output", str(out), "--no-plots"]) == 0
    rows = _rows(out / "results.csv")
    assert {(r["head"], r["checkpoint"]) for r in rows} == {("gru", str(paths[0])), ("none", str(paths[1]))}
    assert {r["condition"] for r in rows} == set(CONDITIONS)
    assert "- data: built-in dataset (events, 24 x 24)" in (out / "report.md").read_text()
