"""ChainDataModule: what it tells the model and a comparison, the split rule, and `perception train` on
the shipped chain configs, over tiny datasets written here in N-MNIST's and DVSGesture's layouts."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from data import WindowSpec
from data.events import make_events
from data.io import write_events
from perception.checkpoint import load_checkpoint
from perception.cli import main
from perception.errors import PerceptionError
from perception.training.chains import ChainDataModule
from perception.training.module import PerceptionModule

TINY = {"train_size": 8, "val_size": 4, "test_size": 4, "batch_size": 4}


def _nmnist(root: Path, per_class=(3, 2)) -> Path:
    """NMNIST/{Train,Test}/<digit>/<id>.bin (ATIS binary), digits 3, 7 and 8, 200-300 ms each."""
    rng = np.random.default_rng(0)
    for split, count in zip(("Train", "Test"), per_class):
        for digit in (3, 7, 8):
            for i in range(count):
                n = 300
                t = np.sort(rng.integers(0, int(rng.integers(200_000, 300_000)), n))
                events = make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), t, rng.integers(0, 2, n))
                path = root / "NMNIST" / split / str(digit) / f"{i:05d}.bin"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_events(path, events, (34, 34), format="atis_bin")
    return root


def _dvsgesture(root: Path) -> Path:
    """DVSGesture/ibmGesture{Train,Test}/<user>/<label>.npy, columns x, y, p, t (ms), labels 0 and 7."""
    rng = np.random.default_rng(1)
    for split, users in (("Train", 3), ("Test", 1)):
        for u in range(users):
            for label in (0, 7):
                n = 1500
                cols = [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                        np.sort(rng.integers(0, 2000, n))]
                path = root / "DVSGesture" / f"ibmGesture{split}" / f"user{u:02d}_led" / f"{label}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.stack(cols, axis=1).astype(np.int64))
    return root


def _used(dm: ChainDataModule, split: str) -> set[Path]:
    chains = dm.split(split)
    return {chains.base.samples[item][0] for i in range(len(chains)) for item in chains.plan(i).items}


def test_facts_for_the_model_and_the_comparison(tmp_path):
    dm = ChainDataModule("nmnist", str(_nmnist(tmp_path)), classes=["3", "7", "8"], **TINY)
    assert dm.classes == ["3<then>7", "3<then>8", "7<then>3", "7<then>8", "8<then>3", "8<then>7"]
    assert dm.num_classes == 6 and dm.in_channels == 5
    task = dm.tasks()[0]
    assert (task.name, task.needs_time, task.chance, task.blind_ceiling) == ("order", True, 1 / 6, 0.5)
    assert set(dm.pair_kinds().values()) == {"order"} and list(dm.pair_kinds()) == dm.classes
    pre = dm.preprocessing
    assert 0.03 <= dm.time_scale <= 0.08 and pre.time_scale == dm.time_scale  # the median window
    assert pre.window == WindowSpec.frames(round(dm.time_scale * 1e6)) and pre.frame_size == (34, 34)
    counting = ChainDataModule("nmnist", str(tmp_path), task="count", k=3, classes=["7", "3"], **TINY)
    assert counting.classes == [f"7<count>{n}" for n in range(4)] and not counting.tasks()[0].needs_time


def test_splits_never_share_a_recording(tmp_path):
    dm = ChainDataModule("nmnist", str(_nmnist(tmp_path)), classes=["3", "7"], val_fraction=0.34,
                         train_size=40, val_size=20, test_size=20)
    train, val, test = (_used(dm, s) for s in ("train", "val", "test"))
    assert train and val and test and not (train & val) and not (train & test) and not (val & test)
    assert all("Test" in p.parts for p in test) and all("Train" in p.parts for p in train | val)
    again = ChainDataModule("nmnist", str(tmp_path), classes=["3", "7"], val_fraction=0.34,
                            train_size=40, val_size=20, test_size=20)
    assert _used(again, "val") == val  # the hold-out depends on the seed alone


def test_bad_options_are_one_line_errors(tmp_path):
    root = str(_nmnist(tmp_path))
    for options, match in (({"dataset": "mnist"}, "data.dataset: unknown 'mnist'"),
                           ({"task": "sort"}, "data.task: must be one of"),
                           ({"k": 7}, r"data.k: expected an integer in 2..4"),
                           ({"gap_range": [0.5, 0.1]}, "data.gap_range"),
                           ({"val_fraction": 1.5}, "data.val_fraction")):
        with pytest.raises(PerceptionError, match=match):
            ChainDataModule(**{"dataset": "nmnist", "root": root, **options})
    with pytest.raises(ValueError, match="unknown '11'"):  # a DataError: the CLI prints it as one line
        _ = ChainDataModule("nmnist", root, classes=["3", "11"]).classes
    with pytest.raises(ValueError, match="no recordings of class '9'"):  # a digit this folder lacks
        ChainDataModule("nmnist", root, classes=["3", "9"]).split("train")


def test_fits_a_batch_on_dvsgesture_chains(tmp_path):
    torch.set_num_threads(1)
    dm = ChainDataModule("dvsgesture", str(_dvsgesture(tmp_path)), task="interval", classes=["hand clapping", "arm roll"],
                         item_duration=0.5, window_range=[0.1, 0.2], downsample=4, val_fraction=0.34, **TINY)
    assert dm.classes == ["short gap", "long gap"] and dm.preprocessing.frame_size == (32, 32)
    module = PerceptionModule(num_classes=dm.num_classes, in_channels=dm.in_channels, class_names=dm.classes,
                              preprocessing=dm.preprocessing, backbone_kwargs={"width": 0.5})
    trainer = L.Trainer(fast_dev_run=True, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape[2:] == (5, 32, 32) and (batch["dt"][batch["mask"]] > 0).all()
    kept = ChainDataModule(**{**dm.hparams, "in_memory": True})
    x, t, y = dm.split("val")[1]
    item = kept.split("val")[1]
    assert kept.time_scale == dm.time_scale and torch.equal(item["t"], t) and item["y"] == y
    assert torch.allclose(item["x"], x, rtol=1e-3, atol=1e-3)  # float16 inside


def test_video_folder_chains(tmp_path, h264):
    for label, level in (("a", 40), ("b", 200)):
        for k in range(4):
            h264(tmp_path / "videos" / label / f"v{k}.mp4", np.full((8, 32, 32, 3), level, np.uint8))
    dm = ChainDataModule("video_folder", str(tmp_path / "videos"), frames_per_item=3, size=[32, 32], grey=True,
                         test_fraction=0.25, val_fraction=0.34, **TINY)
    assert dm.classes == ["a<then>b", "b<then>a"] and dm.in_channels == 1 and dm.preprocessing.modality == "frames"
    train, val, test = (_used_videos(dm, s) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)
    x, t, _ = dm.split("test")[0]
    assert x.shape[1:] == (1, 32, 32) and len(x) == len(t) >= 7


def _used_videos(dm: ChainDataModule, split: str) -> set[Path]:
    chains = dm.split(split)
    return {chains.base.videos[item][0] for i in range(len(chains)) for item in chains.plan(i).items}




def test_shipped_chain_configs_by_name(in_tmp, capsys):
    for name, dataset in (("nmnist_chain", "nmnist"), ("dvsgesture_chain", "dvsgesture")):
        with pytest.raises(SystemExit) as stop:
            main(["train", "--config", name, "--data.task", "interval", "--print_config"])
        assert stop.value.code == 0
        out = capsys.readouterr().out
        assert "ChainDataModule" in out and f"dataset: {dataset}" in out and "task: interval" in out


@pytest.mark.slow
def test_train_on_the_nmnist_chain_config(in_tmp, capsys):
    root = _nmnist(in_tmp / "datasets")
    args = ["train", "--config", "nmnist_chain", "--data.root", str(root), "--data.k", "3",
            "--data.classes", "[3, 7, 8]", *(f"--data.{k}={v}" for k, v in TINY.items()),
            "--model.backbone_kwargs", "{width: 0.5}", "--trainer.max_epochs", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    assert main(args) == 0
    assert "test/acc: " in capsys.readouterr().out
    best = next((in_tmp / "runs" / "nmnist_chain").glob("version_0/checkpoints/best-*.ckpt"))
    loaded = load_checkpoint(best)
    assert len(loaded.classes) == 6 and loaded.classes[0] == "3<then>7<then>8"
    assert loaded.preprocessing.window.mode == "frames" and loaded.preprocessing.sensor_size == (34, 34)


def _budget(quick: bool, epochs=None, train_size=None):
    from argparse import Namespace

    from perception.evaluation.run import budget_of

    return budget_of(Namespace(quick=quick, seeds=None, lrs=None, epochs=epochs, train_size=train_size, test_size=None))


def test_evaluate_budget_bounds_a_chain_config(in_tmp):
    """perception evaluate on nmnist_chain: the budget's epochs and chain counts replace the config's
    (4000 / 400 / 1000 chains, 10 epochs), unless the command line gives them."""
    from perception.evaluation.run import Trainer

    root = str(_nmnist(in_tmp / "datasets"))
    config = ["--config", "nmnist_chain", "--data.root", root]

    quick = Trainer(config, _budget(quick=True), in_tmp / "out")
    assert quick.epochs == 4 and quick.config_epochs == 10
    assert {name: len(quick.datamodule.split(name)) for name in ("train", "val", "test")} == \
        {"train": 384, "val": 96, "test": 160}
    assert quick.datamodule.hparams.in_memory is True  # small splits: computed once for every run

    default = Trainer(config, _budget(quick=False), in_tmp / "out")
    assert default.epochs == 8 and default.datamodule.sizes == {"train": 1536, "val": 256, "test": 400}
    assert default.datamodule.hparams.in_memory is False  # the config's

    # the command line wins: evaluate's own options and perception train's
    given = Trainer([*config, "--data.val_size=12", "--data.init_args.in_memory", "false",
                     "--trainer.max_epochs", "2"], _budget(quick=True, train_size=20), in_tmp / "out")
    assert given.epochs is None and given.config_epochs == 2
    assert given.datamodule.sizes == {"train": 20, "val": 12, "test": 160}
    assert given.datamodule.hparams.in_memory is False
    # --epochs (passed to Trainer as run() does) wins over --trainer.max_epochs
    assert Trainer([*config, "--trainer.max_epochs", "2"], _budget(quick=True, epochs=3), in_tmp / "out",
                   epochs=3).epochs == 3


@pytest.mark.slow
def test_evaluate_on_the_nmnist_chain_config(in_tmp):
    """The issue's command (perception evaluate --quick --config nmnist_chain) on a folder in
    N-MNIST's layout, made small: the order task is scored with chance 1/2, the CNN alone included."""
    import csv

    root = str(_nmnist(in_tmp / "datasets"))
    out = in_tmp / "report"
    assert main(["evaluate", "--quick", "--config", "nmnist_chain", "--data.root", root, "--heads", "gru_dt,none",
                 "--seeds", "0,1", "--lrs", "0.01", "--train-size", "8", "--test-size", "6", "--data.val_size", "4",
                 "--model.backbone_kwargs", "{width: 0.5}", "--threads", "1", "--output", str(out),
                 "--no-plots"]) == 0
    summary = list(csv.DictReader((out / "summary.csv").open()))
    order = [s for s in summary if s["task"] == "order" and s["condition"] == "train_timing"]
    assert {s["head"] for s in order} == {"gru_dt", "none", "linear"}
    assert {s["chance"] for s in order} == {"0.5"} and {s["needs_time"] for s in order} == {"True"}
    assert all(s["seeds"] == "2" for s in order if s["head"] != "linear")
    report = (out / "report.md").read_text()
    assert "- train clips: 8" in report and "- test clips: 6" in report and "- epochs: 4" in report
