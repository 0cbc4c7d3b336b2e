"""A training run killed in the middle resumes from its last checkpoint and ends as an uninterrupted one."""
import random

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from perception.training.data import SyntheticDataModule
from perception.training.module import PerceptionModule
from perception.training.resume import rng_state, set_rng_state


class KillAtEpoch(L.Callback):
    """Stands for a killed process: Ctrl-C at the first batch of ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 0:
            raise KeyboardInterrupt


class KillAtStep(L.Callback):
    """Stands for a killed process: Ctrl-C before optimizer step ``step`` (0-based) is taken."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def _run(folder, callbacks=(), resume=None, train_size=24, dropout=0.0, num_workers=0, every_n_train_steps=None):
    L.seed_everything(0, verbose=False)
    data = SyntheticDataModule(modality="frames", train_size=train_size, val_size=8, test_size=8, size=32, steps=4,
                               classes=["square", "circle", "swipe_left", "swipe_right"], batch_size=8,
                               num_workers=num_workers)
    module = PerceptionModule(num_classes=data.num_classes, in_channels=1, class_names=data.classes,
                              preprocessing=data.preprocessing, backbone_kwargs={"width": 0.5}, head="gru_dt",
                              dropout=dropout)
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=folder, save_last=True,
                                                     every_n_train_steps=every_n_train_steps)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[checkpoint, *callbacks], accelerator="cpu", devices=1)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    except SystemExit:  # Lightning's answer to Ctrl-C: shut down, exit status 1
        pass
    return trainer, module


def _assert_same_end(resumed, resumed_module, whole, whole_module, exact=False):
    assert resumed.current_epoch == whole.current_epoch == 3 and resumed.global_step == whole.global_step
    for (name, a), (_, b) in zip(whole_module.state_dict().items(), resumed_module.state_dict().items()):
        if exact:
            assert torch.equal(a, b), f"{name}: max |difference| {float((a - b).abs().max()):.3e}"
        else:
            torch.testing.assert_close(a, b, msg=name)
    assert float(resumed.callback_metrics["val/acc"]) == float(whole.callback_metrics["val/acc"])
    assert float(resumed.callback_metrics["val/loss"]) == pytest.approx(float(whole.callback_metrics["val/loss"]))


@pytest.mark.slow
def test_resume_after_a_kill_matches_the_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    whole, whole_module = _run(tmp_path / "whole")
    killed, _ = _run(tmp_path / "killed", callbacks=[KillAtEpoch(2)])
    assert killed.interrupted and killed.current_epoch == 2
    assert torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed, resumed_module = _run(tmp_path / "killed", resume=str(tmp_path / "killed" / "last.ckpt"))
    _assert_same_end(resumed, resumed_module, whole, whole_module)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference for the mid-epoch kills: 3 epochs of 5 steps, dropout on (the model draws random numbers)."""
    torch.set_num_threads(1)
    return _run(tmp_path_factory.mktemp("whole"), train_size=40, dropout=0.2, every_n_train_steps=2)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at, saved_at, num_workers", [
    (3, 2, 0),    # epoch 0, 2 of its 5 steps done
    (9, 8, 0),    # epoch 1, 3 steps done, and one more lost with the kill
    (11, 10, 0),  # saved after epoch 1's last step, before its validation
    (13, 12, 2),  # DataLoader workers
])
def test_resume_inside_an_epoch_matches_the_uninterrupted_run_exactly(tmp_path, uninterrupted, kill_at, saved_at,
                                                                     num_workers):
    """Checkpoints every 2 steps, a kill, a resume from last.ckpt: the same weights, bit for bit, and
    the same metrics as the run that was never stopped (the training order, the position in it, the
    random generators and the epoch's running train/acc all come back)."""
    torch.set_num_threads(1)
    whole, whole_module = uninterrupted
    options = {"train_size": 40, "dropout": 0.2, "every_n_train_steps": 2, "num_workers": num_workers}
    killed, _ = _run(tmp_path, callbacks=[KillAtStep(kill_at)], **options)
    assert killed.interrupted and killed.global_step == kill_at
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == saved_at
    resumed, resumed_module = _run(tmp_path, resume=str(tmp_path / "last.ckpt"), **options)
    _assert_same_end(resumed, resumed_module, whole, whole_module, exact=True)
    assert float(resumed.callback_metrics["train/acc"]) == float(whole.callback_metrics["train/acc"])


def test_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1)  # a cached second gaussian is part of the state too
    torch.save({"rng": rng_state()}, tmp_path / "state.ckpt")
    first = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())
    set_rng_state(torch.load(tmp_path / "state.ckpt", weights_only=True)["rng"])
    again = (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(), torch.rand(3).tolist())
    assert again == first


class _EpochClips(Dataset):
    """One-step clips that show the dataset's epoch (its augmentation draws would follow it)."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {"x": torch.full((1, 1, 1, 1), float(self.epoch)), "t": np.zeros(1), "y": index}


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_training_epoch_reaches_the_dataset_and_its_workers(num_workers):
    data = SyntheticDataModule(batch_size=2, num_workers=num_workers)
    data.splits["train"] = _EpochClips()
    loader = data.train_dataloader()
    for epoch in (0, 3, 4):
        loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
        assert [float(v) for batch in loader for v in batch["x"].flatten()] == [epoch] * 4
