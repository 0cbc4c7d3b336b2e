"""`perception benchmark ...`: every benchmark runs at tiny sizes, measures and writes its JSON.

These check that the figures are measured (positive, finite) and written with the expected keys and
rows, never how fast anything is: timings on a shared machine are not test material.
"""
import json
import math
import shlex

import pytest
import torch

from data.io import writable_formats
from perception.cli import main

EVT3_SAMPLE = ("events", "expelliarmus_evt3_sample.raw")
EVT3_EVENTS, EVT3_SPAN_US = 219_596, 8_811  # from ../shared/data/README.md
# As test_train_cli's TINY: the built-in dataset at a size that trains in seconds.
TINY_TRAIN = ["--data.train_size", "16", "--data.val_size", "8", "--data.test_size", "8", "--data.size", "32",
              "--data.steps", "4", "--data.batch_size", "8", "--model.backbone_kwargs", "{width: 0.5}",
              "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
              "--trainer.max_epochs", "1"]


@pytest.fixture(autouse=True)
def torch_threads():
    """A benchmark given --threads (infer's default is 1) sets torch's thread count for the whole
    process: give the next test the count it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_benchmark(name: str, argv: list[str], tmp_path) -> dict:
    """Run ``perception benchmark NAME ARGV`` into tmp_path and return its JSON."""
    out = tmp_path / f"{name}.json"
    assert main(["benchmark", name, *argv, "--output", str(out)]) == 0
    assert not list(tmp_path.glob(f".{name}.json.*")), "the JSON is written through a temporary file"
    return json.loads(out.read_text())


def measured(value) -> bool:
    """A figure that was really measured: a positive finite number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_benchmark_heads_writes_json(tmp_path, capsys):
    figures = run_benchmark("heads", ["--heads", "none,gru", "--no-peers", "--quick", "--batch", "2", "--steps", "3"],
                            tmp_path)
    models = [row["model"] for row in figures["rows"]]
    assert models == ["none", "gru"]
    for row in figures["rows"]:
        assert measured(row["train_ms"]) and measured(row["infer_ms"]) and measured(row["step_us"])
    assert "train ms" in capsys.readouterr().out


@pytest.mark.slow
def test_benchmark_heads_against_ncps_checks_equal_outputs(tmp_path):
    pytest.importorskip("ncps")
    figures = run_benchmark("heads", ["--heads", "cfc,ltc", "--quick", "--batch", "2", "--steps", "3"], tmp_path)
    models = {row["model"] for row in figures["rows"]}
    assert {"ncps CfCCell", "cfc (from ncps)", "ncps LTCCell", "ltc (from ncps)", "torch.nn.GRU"} <= models
    for key, diff in figures["checks"].items():
        assert diff < 1e-5, key
    assert set(figures["ratios"]) == {"cfc_train_speedup_vs_ncps", "cfc_infer_speedup_vs_ncps",
                                      "ltc_train_speedup_vs_ncps", "ltc_infer_speedup_vs_ncps", "cfc_train_vs_lstm"}
    assert all(measured(ratio) for ratio in figures["ratios"].values())
    versus = figures["cfc_train_vs_lstm"]  # measured interleaved with torch.nn.LSTM in the same run
    assert versus["rounds"] >= 10 and versus["q1"] <= versus["median"] <= versus["q3"]
    assert measured(versus["cfc_ms"]) and measured(versus["lstm_ms"])
    assert "cfc_train_vs_lstm" in figures["targets_met"] and "cfc_step_us" in figures["targets_met"]


def test_benchmark_events_measures_ours_and_tonic(tmp_path, capsys):
    figures = run_benchmark("events", ["--case", "20000:64x48", "--repeats", "1", "--tonic-repeats", "1"], tmp_path)
    rows = figures["rows"]
    assert [(r["representation"], r["events"], r["sensor"]) for r in rows] == [
        ("voxel_grid", 20000, "64x48"), ("histogram", 20000, "64x48"), ("time_surface", 20000, "64x48")]
    for row in rows:
        for key in ("ours_mev_s", "tonic_mev_s", "ratio", "cpu_ratio"):
            assert measured(row[key]), (row["representation"], key)
    assert 0 <= rows[0]["max_rel_error"] <= 1e-5
    assert all(measured(seconds) for seconds in figures["first_call_s"].values())
    assert set(figures["ratios"]) == {f"{r}_min_speedup_vs_tonic" for r in ("voxel_grid", "histogram", "time_surface")}
    assert set(figures["targets_met"]) == {"voxel_grid_min_speedup_vs_tonic", "voxel_grid_max_rel_error"}
    out = capsys.readouterr().out
    assert "ours M ev/s" in out and "voxel_grid_min_speedup_vs_tonic" in out


def test_benchmark_readers_measures_every_writable_format(tmp_path, capsys):
    figures = run_benchmark("readers", ["--data-dir", str(tmp_path / "absent"), "--events", "3000",
                                        "--text-events", "500", "--repeats", "1"], tmp_path)
    rows = figures["rows"]
    assert all(row["kind"] == "synthetic" for row in rows)
    assert sorted(row["format"] for row in rows) == sorted([*writable_formats(), "raw"])  # raw: EVT 2.0 and 3.0
    assert "synthetic EVT 3.0.raw" in {row["file"] for row in rows}
    for row in rows:
        assert row["events"] == (500 if row["format"] == "text" else 3000)
        assert measured(row["read_meps"]) and measured(row["read_cpu_meps"]) and measured(row["stream_meps"])
        assert row["faery_meps"] is None or measured(row["faery_meps"])
    assert measured(next(r for r in rows if r["format"] == "aedat4")["faery_meps"])  # the peer is timed too
    assert len(figures["skipped"]) == 1 and "only synthetic files were measured" in figures["skipped"][0]
    assert "read_events M/s" in capsys.readouterr().out


@pytest.mark.real_data
def test_benchmark_readers_reads_the_real_recordings(tmp_path, shared_data):
    figures = run_benchmark("readers", ["--data-dir", str(shared_data), "--events", "1000", "--text-events", "100",
                                        "--repeats", "1", "--no-peers"], tmp_path)
    real = {row["file"]: row for row in figures["rows"] if row["kind"] == "real"}
    assert set(real) == {"tonic_sample.aedat4", "expelliarmus_evt2_sample.raw", "expelliarmus_evt3_sample.raw",
                         "tonic_sample_ncars.dat", "tonic_sample_nmnist.bin"}
    assert real[EVT3_SAMPLE[1]]["events"] == EVT3_EVENTS
    assert all(measured(row["read_meps"]) and measured(row["stream_meps"]) for row in real.values())
    assert figures["skipped"] == []


def test_benchmark_simulator_measures_call_and_feed(tmp_path, capsys):
    figures = run_benchmark("simulator", ["--sizes", "346x260", "--seconds", "0.1", "--quick"], tmp_path)
    [row] = figures["rows"]
    assert row["size"] == "346x260" and row["frames"] == 4
    for key in ("video_s", "events_per_video_s", "call_wall_ms_per_video_s", "call_cpu_ms_per_video_s",
                "call_realtime_factor", "call_cpu_realtime_factor", "feed_realtime_factor",
                "feed_cpu_realtime_factor", "events_per_cpu_s"):
        assert measured(row[key]), key
    assert set(figures["targets_met"]) == {"realtime_346x260_30fps"}
    assert "346x260 at 30 fps" in capsys.readouterr().out


@pytest.mark.slow
def test_benchmark_train_runs_the_main_job(tmp_path, capsys):
    work = tmp_path / "work"
    figures = run_benchmark("train", ["--args", shlex.join(TINY_TRAIN), "--workdir", str(work), "--threads", "1"],
                            tmp_path)
    assert figures["command"][1:3] == ["train", "--data.train_size"]
    assert measured(figures["time_s"]) and measured(figures["peak_rss_mb"])
    assert 0 <= figures["test_acc"] <= 1
    assert set(figures["targets"]) == {"time_s", "test_acc"}
    assert (work / "runs" / "default" / "version_0" / "checkpoints" / "last.ckpt").is_file()
    assert "main job:" in capsys.readouterr().out


@pytest.mark.real_data
def test_benchmark_infer_times_a_stream_of_windows(tmp_path, shared_data, capsys):
    recording = shared_data.joinpath(*EVT3_SAMPLE)
    figures = run_benchmark("infer", ["--frames", "6", "--windows", "2", "--repeats", "1",
                                      "--recording", str(recording)], tmp_path)
    video, events = figures["video"], figures["events"]
    assert video["frames"] == 6 and figures["torch_threads"] == 1
    # 2 windows of 58.9 ms need 14 copies of the 8.8 ms sample; the stream then ends inside a third
    copies = math.ceil(2 * 58_900 / (EVT3_SPAN_US + 1))
    assert (events["copies"], events["events"], events["windows"]) == (copies, copies * EVT3_EVENTS, 3)
    assert events["recorded_s"] == pytest.approx((copies * (EVT3_SPAN_US + 1) - 1) * 1e-6)
    assert events["recorded_rate_events_per_s"] == pytest.approx(EVT3_EVENTS / (EVT3_SPAN_US * 1e-6), rel=0.01)
    for workload, keys in ((video, ["frames_per_s"]), (events, ["events_per_s", "realtime_factor", "file_megabytes"])):
        for key in ["wall_s", "cpu_s", "cpu_main_thread_s", "steps_per_s", "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", *keys]:
            assert measured(workload[key]), key
        assert workload["latency_ms_p50"] <= workload["latency_ms_p90"] <= workload["latency_ms_p99"]
        assert len(workload["runs_wall_s"]) == workload["repeats"] == 1
    assert set(figures["targets"]) == {"video_frames_per_s", "events_realtime_factor"}
    assert figures["targets"]["events_realtime_factor"]["target"] == 2.0
    out = capsys.readouterr().out
    assert "x real time" in out and "events_realtime_factor:" in out


@pytest.mark.parametrize("argv, expected", [
    (["--windows", "0"], "--windows and --repeats >= 1"),
    (["--frames", "1"], "--frames must be >= 2"),
    (["--recording", "{tmp}/none.raw"], "none.raw: recording not found"),
])
def test_benchmark_infer_refuses_bad_sizes(argv, expected, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["benchmark", "infer", *argv, "--output", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.json").exists()
