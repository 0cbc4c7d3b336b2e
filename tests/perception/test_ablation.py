"""`perception evaluate --ablation`: variants of the liquid heads, one option changed at a time, trained
through perception train's code and judged on the tasks that need time; the options they change."""
import csv
from types import SimpleNamespace

import pytest
import torch

from perception.checkpoint import load_checkpoint
from perception.cli import main
from perception.errors import PerceptionError
from perception.evaluation import ablation
from perception.evaluation.ablation import (ABLATION_CONDITIONS, ABLATIONS, Variant, ablation_rows, ablation_variants,
                                            goal, variant_args)
from perception.training.module import PerceptionModule

TASKS = [{"task": "appearance", "needs_time": False}, {"task": "order", "needs_time": True},
         {"task": "duration", "needs_time": True}]


def test_variants_of_the_named_ablations_then_the_references():
    variants = ablation_variants("ltc")
    assert [v.name for v in variants] == [v.name for v in ABLATIONS["ltc"] + ABLATIONS["references"]]
    assert variants[0].change == "" and all(v.change for v in ABLATIONS["ltc"][1:])
    assert len({v.name for v in ablation_variants("cfc,ltc,cfc")}) == len(ABLATIONS["cfc"]) + len(ABLATIONS["ltc"]) + len(ABLATIONS["references"])
    for bad in ("", "gru", "references", "cfc,nope"):
        with pytest.raises(PerceptionError, match="--ablation: expected a comma-separated list of cfc, ltc"):
            ablation_variants(bad)


def test_variant_args_pass_model_and_trainer_options():
    variant = Variant("x", "cfc", "c", model={"dt_transform": "log1p", "feature_norm": False, "time_scale_factor": 10.0},
                      trainer={"gradient_clip_val": 1.0})
    # a variant that does not set the integrator has it off (the ablation's defaults)
    assert variant_args(Variant("y", "cfc", model={"output_integrator": True}), 1.0) == ["--model.output_integrator", "true"]
    assert variant_args(variant, median_dt=0.04) == [
        "--model.output_integrator", "false", "--model.dt_transform", "log1p", "--model.feature_norm", "false", "--model.time_scale", "0.4",
        "--trainer.gradient_clip_val", "1.0"]


def _result_rows(name, accs_per_seed, condition="train_timing"):
    """Rows as evaluate writes them: one per seed and task."""
    return [{"head": name, "seed": seed, "condition": condition, "task": task, "acc": acc}
            for seed, per_task in enumerate(accs_per_seed) for task, acc in per_task.items()]


def test_table_averages_the_timed_tasks_per_seed_and_judges_against_the_default():
    variants = [Variant("cfc", "cfc"), Variant("cfc a", "cfc", "a"), Variant("cfc b", "cfc", "b"), Variant("gru", "gru")]
    rows = (_result_rows("cfc", [{"appearance": 1.0, "order": 0.5, "duration": 0.7}] * 2
                         + [{"appearance": 1.0, "order": 0.52, "duration": 0.72}])
            + _result_rows("cfc a", [{"appearance": 0.0, "order": 0.9, "duration": 0.9},
                                     {"appearance": 0.0, "order": 0.92, "duration": 0.9},
                                     {"appearance": 0.0, "order": 0.9, "duration": 0.92}])
            + _result_rows("cfc b", [{"order": 0.4, "duration": 0.9}, {"order": 0.7, "duration": 0.5},
                                     {"order": 0.6, "duration": 0.6}])
            + _result_rows("gru", [{"order": 0.95, "duration": 0.95}] * 3)
            + _result_rows("gru", [{"order": 0.5, "duration": 0.5}] * 3, condition="rate_x4")
            + _result_rows("cfc a", [{"order": 0.8, "duration": 0.8}] * 3, condition="rate_x4"))
    table = {(r["variant"], r["condition"]): r for r in ablation_rows(rows, variants, TASKS)}
    base, better, noisy = table[("cfc", "train_timing")], table[("cfc a", "train_timing")], table[("cfc b", "train_timing")]
    assert base["time_acc_mean"] == pytest.approx((0.6 + 0.6 + 0.62) / 3)  # appearance left out
    assert base["seeds"] == 3 and base["order_mean"] == pytest.approx((0.5 + 0.5 + 0.52) / 3)
    assert better["delta"] == pytest.approx(better["time_acc_mean"] - base["time_acc_mean"])
    assert (base["verdict"], better["verdict"], noisy["verdict"]) == ("", "better", "within noise")
    # the difference is paired by seed: a variant a little but always better than the default with the
    # same seed is better, though the two seed intervals overlap
    steady = ablation_rows(rows + _result_rows("cfc c", [{"order": 0.52, "duration": 0.71}] * 2
                                               + [{"order": 0.54, "duration": 0.73}]),
                           [variants[0], Variant("cfc c", "cfc", "c")], TASKS)
    steady = next(r for r in steady if r["variant"] == "cfc c" and r["condition"] == "train_timing")
    assert steady["delta"] == pytest.approx(0.015) and steady["delta_ci_low"] > 0 and steady["verdict"] == "better"
    worse = ablation_rows(rows + _result_rows("cfc d", [{"order": 0.4, "duration": 0.6}] * 3), [variants[0], Variant("cfc d", "cfc", "d")], TASKS)
    worse = next(r for r in worse if r["variant"] == "cfc d" and r["condition"] == "train_timing")
    assert worse["delta_ci_high"] < 0 and worse["verdict"] == "worse"
    assert table[("gru", "train_timing")]["verdict"] == ""  # a reference has no default to beat
    lines = goal(list(table.values()))
    assert "best liquid variant `cfc a` 90.7 %" in lines[0] and "best other head `gru` 95.0 %" in lines[0]
    assert "4.3 points behind (goal of 2 points NOT met)" in lines[0]
    assert "`rate_x4`: `cfc a` 80.0 (80-80) vs `gru` 50.0 (50-50): ahead beyond the intervals (goal met)." in lines


def test_output_integrator_is_on_by_default_for_heads_that_read_dt():
    assert PerceptionModule(head="cfc").model.integrator is not None
    assert PerceptionModule(head="gru_dt").model.integrator is not None
    for head in ("gru", "lstm", "none"):  # the controls keep no dt-driven memory
        assert PerceptionModule(head=head).model.integrator is None
    assert PerceptionModule(head="cfc", output_integrator=False).model.integrator is None
    with pytest.raises(PerceptionError, match="output_integrator: the head 'gru' ignores dt"):
        PerceptionModule(head="gru", output_integrator=True)


def test_warmup_option_shapes_the_learning_rate():
    for warmup, first in ((0.0, 1.0), (0.15, 1 / 15), (0.5, 1 / 50)):
        module = PerceptionModule(warmup=warmup)
        module._trainer = SimpleNamespace(estimated_stepping_batches=100)
        assert module.lr_factor(0) == pytest.approx(first)
        assert module.lr_factor(99) == pytest.approx(0.02, abs=0.01)  # the cosine ends near 2 % of the peak
    with pytest.raises(PerceptionError, match="model.warmup"):
        PerceptionModule(warmup=1.0)


@pytest.mark.slow
def test_ablation_end_to_end(tmp_path, monkeypatch, capsys):
    small = {"cfc": [Variant("cfc", "cfc"), Variant("cfc dt=log1p", "cfc", "log dt", model={"dt_transform": "log1p"}),
                     Variant("cfc time_scale x10", "cfc", "slow clock", model={"time_scale_factor": 10.0},
                             head_kwargs={"time_gate_bias": [1.0, 0.0]}, lr=1e-2)],
             "references": [Variant("gru_dt", "gru_dt")]}
    monkeypatch.setattr(ablation, "ABLATIONS", small)
    out = tmp_path / "ablation"
    argv = ["evaluate", "--quick", "--train-size", "32", "--test-size", "16", "--epochs", "1", "--threads", "1",
            "--data.init_args.val_size", "16", "--data.init_args.size", "24", "--ablation", "cfc",
            "--seeds", "0,1", "--no-plots", "--output", str(out)]
    assert main(argv) == 0
    assert f"report: {out / 'ablation.md'}" in capsys.readouterr().out
    results = list(csv.DictReader((out / "results.csv").open()))
    # called again with --reuse-runs: every finished run is reused, and scores the same
    again = [*argv, "--reuse-runs"]
    assert main(again) == 0
    assert capsys.readouterr().out.count("(reused)") == 8
    assert [r["acc"] for r in csv.DictReader((out / "results.csv").open())] == [r["acc"] for r in results]
    # a run whose options changed (here its epochs) is trained again
    assert main([*again, "--epochs", "2"]) == 0
    assert "(reused)" not in capsys.readouterr().out
    trained = [r for r in results if r["head"] != "linear"]
    assert {r["condition"] for r in trained} == set(ABLATION_CONDITIONS)
    assert {(r["head"], r["seed"], r["lr"]) for r in trained} == {
        (name, seed, lr) for name, lr in (("cfc", "0.003"), ("cfc dt=log1p", "0.003"), ("cfc time_scale x10", "0.01"),
                                          ("gru_dt", "0.003")) for seed in ("0", "1")}
    table = list(csv.DictReader((out / "ablation.csv").open()))
    assert {(r["variant"], r["condition"]) for r in table} == {
        (v, c) for v in ("cfc", "cfc dt=log1p", "cfc time_scale x10", "gru_dt") for c in ABLATION_CONDITIONS}
    report = (out / "ablation.md").read_text()
    assert "| cfc dt=log1p | log dt |" in report and "## The goal" in report and "best other head `gru_dt`" in report
    # each variant's options reached the trained model
    runs = {p.name: p for p in (out / "runs" / "cfc").iterdir()}
    assert sorted(runs) == ["cfc-h64-lr0.003-seed0", "cfc-h64-lr0.003-seed1", "cfc_dt=log1p-h64-lr0.003-seed0",
                            "cfc_dt=log1p-h64-lr0.003-seed1", "cfc_time_scale_x10-h64-lr0.01-seed0",
                            "cfc_time_scale_x10-h64-lr0.01-seed1"]

    def model(run):
        return load_checkpoint(next((runs[run] / "checkpoints").glob("best-*.ckpt"))).model

    plain, logged, slow = (model(f"{n}-h64-lr{lr}-seed0") for n, lr in
                           (("cfc", "0.003"), ("cfc_dt=log1p", "0.003"), ("cfc_time_scale_x10", "0.01")))
    assert plain.dt_transform == "scale" and logged.dt_transform == "log1p"
    assert float(slow.time_scale) == pytest.approx(10 * float(plain.time_scale))
    assert slow.head_kwargs["time_gate_bias"] == [1.0, 0.0]
    assert not torch.equal(slow.head.layers[0].heads.bias, plain.head.layers[0].heads.bias)
