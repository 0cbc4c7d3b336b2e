"""The LightningModule: a ``PerceptionModel`` built from registry names, its loss, metrics and optimiser.

Batches as ``data.collate_clips`` makes them: x (B, T, C, H, W), dt (B, T) seconds, mask (B, T), y (B,),
lengths (B,). The recurrent state lives inside one forward call: it starts fresh for every clip,
so nothing about it is ever shared between processes under DDP (only gradients are).
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from data import Preprocessing
from heads import head_entry
from perception.checkpoint import checkpoint_payload
from perception.errors import PerceptionError
from perception.model import PerceptionModel
from perception.training.resume import RNG_KEY, load_pending_loader_states, rng_state, set_rng_state

LOSSES = ("last", "every")


def last_valid(values: Tensor, lengths: Tensor) -> Tensor:
    """values (B, T, ...) -> (B, ...) at each clip's last real step, lengths (B,)."""
    return values[torch.arange(values.shape[0], device=values.device), lengths.to(values.device) - 1]


class PerceptionModule(L.LightningModule):
    """Trains a backbone + temporal head + classifier on clip batches.

    Args:
        backbone, head: registry names; ``backbone_kwargs``, ``head_kwargs`` their options.
        dropout: dropout before the classifier.
        loss: ``"last"``: cross-entropy at each clip's last real step (clip recognition);
            ``"every"``: at every real step (online recognition: the answer at any moment).
        lr: peak learning rate of the one-cycle schedule (AdamW).
        weight_decay: AdamW weight decay.
        num_classes, in_channels, class_names, preprocessing: filled in from the data module by the
            CLI; ``class_names`` and ``preprocessing`` (a ``data.Preprocessing``) are stored in
            checkpoints for inference.
        time_scale: seconds per unit of head time; None takes the training data's median dt.
        dt_transform, feature_norm, output_integrator: ``perception.model.PerceptionModel``'s options
            (what the head gets from dt; the LayerNorm on the backbone's features; a leaky integrator
            with learned time constants between a time-aware head and the classifier).
            ``output_integrator`` None (the default) turns it on for the heads that read dt and off
            for the others: ``perception evaluate --ablation`` measured it better than without, beyond
            the noise, for cfc (+3.9 points on the built-in tasks that need time) and ltc (+30).
        warmup: the part of the training steps over which the learning rate rises linearly to
            ``lr`` (0: none), before the cosine decay.
    """

    def __init__(
        self,
        backbone: str = "small",
        head: str = "cfc",
        backbone_kwargs: dict[str, Any] | None = None,
        head_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.0,
        loss: str = "last",
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        num_classes: int = 2,
        in_channels: int = 1,
        class_names: list[str] | None = None,
        preprocessing: Preprocessing | None = None,
        time_scale: float | None = None,
        dt_transform: str = "scale",
        feature_norm: bool = True,
        output_integrator: bool | None = None,
        warmup: float = 0.15,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise PerceptionError(f"model.loss: must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
        if not lr > 0:
            raise PerceptionError(f"model.lr: expected a positive learning rate, got {lr!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < 1:
            raise PerceptionError(f"model.warmup: expected a fraction of the steps in [0, 1), got {warmup!r}")
        if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
            raise PerceptionError(f"model.preprocessing: expected a data.Preprocessing, got {type(preprocessing).__name__}")
        self.preprocessing = preprocessing
        # Hyperparameters go into checkpoints (read with weights_only=True) and logs: plain values
        # only, so the preprocessing goes in as its dict.
        self.save_hyperparameters(ignore=["preprocessing"])
        self.save_hyperparameters({"preprocessing": None if preprocessing is None else preprocessing.to_dict()})
        self.model = PerceptionModel(
            in_channels, num_classes, backbone, head, backbone_kwargs, head_kwargs,
            time_scale=1.0 if time_scale is None else time_scale, dropout=dropout, feature_norm=feature_norm,
            dt_transform=dt_transform,
            output_integrator=head_entry(head).time_aware if output_integrator is None else output_integrator,
        )
        self.classes = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        # The epoch's running train/acc goes into checkpoints: a run resumed mid-epoch reports the
        # same train/acc for that epoch as an uninterrupted one (on_train_batch_start empties it when
        # the resumed run starts a new epoch).
        self.train_acc.persistent(True)
        self._resumed_rng: dict[str, Any] | None = None

    # -- set-up
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.hparams.time_scale is None and stage == "fit" and datamodule is not None:
            self.model.set_time_scale(datamodule.time_scale)

    def on_train_start(self) -> None:
        # Resuming: the train loader's place in its pass, then the random generators as they were when
        # the checkpoint was written (last, so that nothing draws from them in between).
        if self.trainer.ckpt_path is not None:
            load_pending_loader_states(self.trainer)
            if self._resumed_rng is not None:
                set_rng_state(self._resumed_rng)
        self._resumed_rng = None

    def on_train_batch_start(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # Lightning empties the running train/acc after each epoch, but a run resumed from a
        # checkpoint written at an epoch's end goes on to the next epoch without that step.
        if batch_idx == 0:
            self.train_acc.reset()

    # -- the steps
    def forward(self, x: Tensor, dt: Tensor, mask: Tensor | None = None) -> Tensor:
        """x (B, T, C, H, W), dt (B, T), mask (B, T) -> logits (B, T, K)."""
        return self.model(x, dt, mask)[0]

    def _shared_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits = self(batch["x"], batch["dt"], batch["mask"])  # (B, T, K)
        final = last_valid(logits, batch["lengths"])           # (B, K)
        if self.hparams.loss == "last":
            loss = F.cross_entropy(final.float(), batch["y"])
        else:
            mask = batch["mask"]
            targets = batch["y"].unsqueeze(1).expand_as(mask)
            loss = F.cross_entropy(logits[mask].float(), targets[mask])
        return loss, final

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, final = self._shared_step(batch)
        self.train_acc(final, batch["y"])
        size = batch["y"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, final = self._shared_step(batch)
        self.val_acc(final, batch["y"])
        size = batch["y"].shape[0]
        self.log("val/loss", loss, sync_dist=True, batch_size=size)
        self.log("val/acc", self.val_acc, prog_bar=True, batch_size=size)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, final = self._shared_step(batch)
        self.test_acc(final, batch["y"])
        size = batch["y"].shape[0]
        self.log("test/loss", loss, sync_dist=True, batch_size=size)
        self.log("test/acc", self.test_acc, batch_size=size)

    # -- optimisation
    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        # A lambda (not OneCycleLR) so that the schedule follows the run's current length: a run
        # resumed with more epochs stretches its schedule instead of failing on a stored step count.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: self.lr_factor(step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def lr_factor(self, step: int) -> float:
        """Linear warm-up over the first ``warmup`` of the steps, then cosine decay to 2 % of the peak."""
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        warm = int(self.hparams.warmup * total)
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))

    # -- checkpoints carry what inference needs, as plain values (perception/checkpoint.py), and the
    # random state a resumed run continues from
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint.update(checkpoint_payload(self.model, self.classes, self.preprocessing))
        checkpoint[RNG_KEY] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)  # applied at train start, after the set-up has drawn
