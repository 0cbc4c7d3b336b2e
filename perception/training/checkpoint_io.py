"""How the Trainer writes and reads checkpoint files.

Writes go to a temporary file beside the target and are renamed over it, so a crash or a full disk
never leaves half a checkpoint where a good one was; a failed write is one PerceptionError line. Reads (resuming) use ``weights_only=True``, as
every checkpoint read in this project does.
"""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from perception._files import atomic_write
from perception.checkpoint import read_checkpoint
from perception.errors import PerceptionError


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO with atomic writes and code-free reads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        try:
            atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))
        except RuntimeError as exc:  # torch's zip writer reports a full disk as a RuntimeError, not an OSError
            detail = " ".join(str(exc).split())[:160]
            raise PerceptionError(f"{path}: writing the checkpoint failed ({detail}; is the disk full?); "
                                  "the previous file is untouched") from None

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path)
