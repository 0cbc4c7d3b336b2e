"""A training run killed in the middle resumes from its last checkpoint and ends as an uninterrupted one."""
import lightning as L
import pytest
import torch

from perception.training.data import SyntheticDataModule
from perception.training.module import PerceptionModule


class KillAtEpoch(L.Callback):
    """Stands for a killed process: Ctrl-C at the first batch of ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == 0:
            raise KeyboardInterrupt


def _run(tmp_path, name, callbacks=(), resume=None):
    L.seed_everything(0, verbose=False)
    data = SyntheticDataModule(modality="frames", train_size=24, val_size=8, test_size=8, size=32, steps=4,
                               classes=["square", "circle", "swipe_left", "swipe_right"], batch_size=8)
    module = PerceptionModule(num_classes=data.num_classes, in_channels=1, class_names=data.classes,
                              preprocessing=data.preprocessing, backbone_kwargs={"width": 0.5}, head="gru_dt")
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / name, save_last=True)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[checkpoint, *callbacks], accelerator="cpu", devices=1)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    except SystemExit:  # Lightning's answer to Ctrl-C: shut down, exit status 1
        pass
    return trainer, module


@pytest.mark.slow
def test_resume_after_a_kill_matches_the_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    whole, whole_module = _run(tmp_path, "whole")
    killed, _ = _run(tmp_path, "killed", callbacks=[KillAtEpoch(2)])
    assert killed.interrupted and killed.current_epoch == 2
    assert torch.load(tmp_path / "killed" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed, resumed_module = _run(tmp_path, "killed", resume=str(tmp_path / "killed" / "last.ckpt"))
    assert resumed.current_epoch == whole.current_epoch == 3 and resumed.global_step == whole.global_step
    for (name, a), (_, b) in zip(whole_module.state_dict().items(), resumed_module.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    assert float(resumed.callback_metrics["val/acc"]) == float(whole.callback_metrics["val/acc"])
    assert float(resumed.callback_metrics["val/loss"]) == pytest.approx(float(whole.callback_metrics["val/loss"]))
