"""Fixtures of the perception tests: a tiny untrained checkpoint for the streaming commands, and a
working folder for commands that write runs."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch

from data import Preprocessing, WindowSpec
from perception.checkpoint import save_checkpoint
from perception.model import PerceptionModel

CLASSES = ["a", "b", "c"]


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    """Run in ``tmp_path`` (no dataset folder from the environment, one torch thread), with Lightning's
    log handlers on this test's stderr: they keep the stderr of the test that imported Lightning, a
    capture closed since."""
    from data.event_datasets.discovery import DATA_DIR_ENV

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(logging, "raiseExceptions", False)  # a handler left on a closed capture stays quiet
    torch.set_num_threads(1)
    for logger in [logging.getLogger()] + [v for v in logging.Logger.manager.loggerDict.values()
                                           if isinstance(v, logging.Logger)]:
        for handler in logger.handlers:
            if type(handler) is logging.StreamHandler:
                handler.stream = sys.stderr
    return tmp_path
WINDOW_US = 50_000  # the event checkpoint's duration windows
REPRESENTATION = {"name": "voxel_grid", "bins": 5, "polarity": "signed", "normalize": "standard"}


def _tiny_checkpoint(folder: Path, modality: str = "events") -> Path:
    """A small-backbone model (untrained, seeded) saved with the preprocessing of a 32 x 32 grey
    video model or of a 32 x 32 sensor, 5-bin voxel-grid event model with 50 ms windows."""
    torch.manual_seed(0)
    if modality == "frames":
        model = PerceptionModel(1, 3, backbone_kwargs={"width": 0.5}, time_scale=0.05)
        pre = Preprocessing.frames((32, 32), 1, 0.05)
    else:
        model = PerceptionModel(5, 3, backbone_kwargs={"width": 0.5}, time_scale=0.05)
        pre = Preprocessing.events((32, 32), (32, 32), REPRESENTATION, WindowSpec.duration(WINDOW_US), 0.05)
    return save_checkpoint(Path(folder) / f"{modality}.ckpt", model.eval(), CLASSES, pre)


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """``make(folder, modality="events") -> path`` of a tiny checkpoint (see ``_tiny_checkpoint``)."""
    return _tiny_checkpoint
