"""Run by test_ddp.py under torchrun (2 CPU processes, gloo): a few DDP training steps, with evidence.

Each rank writes ``rank<R>.json`` into OUT: hashes of the training batches it saw, a checksum of its
final parameters, the val/acc the trainer logged, and (rank 0) the checkpoint path and the accuracy
of the final model on the whole validation split computed in this one process.
"""
import hashlib
import json
import sys
from pathlib import Path

import lightning as L
import torch

from perception.training.data import SyntheticDataModule
from perception.training.module import PerceptionModule, last_valid


class SeenBatches(L.Callback):
    def __init__(self):
        self.hashes = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for clip in batch["x"]:
            self.hashes.append([trainer.current_epoch, hashlib.sha1(clip.numpy().tobytes()).hexdigest()])


def main(out: Path) -> None:
    L.seed_everything(0)
    data = SyntheticDataModule(modality="frames", train_size=32, val_size=16, test_size=8, size=32, steps=4,
                               classes=["square", "circle", "swipe_left", "swipe_right"], batch_size=4)
    model = PerceptionModule(head="cfc", num_classes=data.num_classes, in_channels=data.in_channels,
                             class_names=data.classes, preprocessing=data.preprocessing,
                             backbone_kwargs={"width": 0.5})
    seen = SeenBatches()
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "checkpoints", save_last=True)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                        callbacks=[seen, checkpoint], enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    params = torch.cat([p.detach().flatten() for p in model.parameters()])
    record = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "seen": seen.hashes,
        "param_sum": float(params.double().sum()),
        "param_abs_sum": float(params.double().abs().sum()),
        "val_acc": float(trainer.callback_metrics["val/acc"]),
    }
    if trainer.is_global_zero:
        record["checkpoint"] = checkpoint.last_model_path
        model.eval()
        correct = total = 0
        with torch.no_grad():
            for batch in data.val_dataloader():
                final = last_valid(model(batch["x"], batch["dt"], batch["mask"]), batch["lengths"])
                correct += int((final.argmax(1) == batch["y"]).sum())
                total += len(batch["y"])
        record["val_acc_one_process"] = correct / total
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
