"""Errors a user can cause, and how the command line reports them.

Each leaf package has its own error class (a leaf never imports another leaf or ``perception``);
all of them are ValueErrors whose message names the input and the problem. The CLI prints such an
error as one line and exits with status 2. Nothing a user passes may make the program hang, run
out of memory silently, or leave half a file in place of a good one (files are written to a
temporary name and renamed).
"""
from __future__ import annotations

from backbones import BackboneError
from data.errors import DataError
from heads import HeadError


class PerceptionError(ValueError):
    """Bad input to model assembly, training, streaming or evaluation (a checkpoint, a config, a source)."""


USER_ERRORS: tuple[type[Exception], ...] = (PerceptionError, DataError, HeadError, BackboneError)
