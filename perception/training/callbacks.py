"""Training callbacks used by the shipped configs."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint, with ``last.ckpt`` (``save_last``) kept current.

    Lightning writes ``last.ckpt`` only when it writes another checkpoint: with a monitored metric
    that stops improving, ``last.ckpt`` stays at the best epoch and ``--resume last`` trains the
    later epochs again. This one also writes it at the end of every training epoch and at the end
    of training, unless a checkpoint was already written at that step.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_if_behind(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        self._save_last_if_behind(trainer)

    def _save_last_if_behind(self, trainer: L.Trainer) -> None:
        # _should_skip_saving_checkpoint: also true when this step is saved already (then last.ckpt
        # was written with it), during sanity checks and outside fitting.
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
