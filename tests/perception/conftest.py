"""Fixtures of the perception tests: a tiny untrained checkpoint for the streaming commands."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perception.checkpoint import save_checkpoint
from perception.model import PerceptionModel

CLASSES = ["a", "b", "c"]
WINDOW_US = 50_000  # the event checkpoint's duration windows


def _tiny_checkpoint(folder: Path, modality: str = "events") -> Path:
    """A small-backbone model (untrained, seeded) saved with the preprocessing of a 32 x 32 grey
    video model or of a 32 x 32 sensor, 5-bin voxel-grid event model with 50 ms windows."""
    torch.manual_seed(0)
    if modality == "frames":
        model = PerceptionModel(1, 3, backbone_kwargs={"width": 0.5}, time_scale=0.05)
        pre = {"modality": "frames", "size": [32, 32], "grey": True}
    else:
        model = PerceptionModel(5, 3, backbone_kwargs={"width": 0.5}, time_scale=0.05)
        pre = {"modality": "events", "sensor_size": [32, 32], "frame_size": [32, 32],
               "representation": {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": "standard"},
               "window": {"mode": "duration", "size": WINDOW_US, "overlap": 0}}
    return save_checkpoint(Path(folder) / f"{modality}.ckpt", model.eval(), CLASSES, pre)


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """``make(folder, modality="events") -> path`` of a tiny checkpoint (see ``_tiny_checkpoint``)."""
    return _tiny_checkpoint
