"""Writing files so that a crash or a full disk never leaves half a file in place of a good one.

The policy (a temporary file beside the target, renamed onto it when complete, removed on failure)
lives in ``data.files``; this module raises perception's errors for it.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from data.errors import DataError
from data.files import AtomicFile
from perception.errors import PerceptionError


def atomic_file(path: str | os.PathLike) -> AtomicFile:
    """A ``data.files.AtomicFile`` for ``path``, its folders created (``with`` it, or commit / discard it).

    Raises:
        PerceptionError: the folder cannot be created or written (names the path and the reason).
    """
    try:
        return AtomicFile(path, parents=True)
    except DataError as error:
        reason = error.__cause__ or error  # AtomicFile chains the OSError
        detail = getattr(reason, "strerror", None) or reason
        raise PerceptionError(f"{Path(path)}: cannot write here ({detail})") from None


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    Raises:
        PerceptionError: the folder cannot be created or written, or writing fails (an OSError;
            the previous file is then untouched). Other errors of ``write`` pass through.
    """
    pending = atomic_file(path)
    try:
        with pending as tmp:
            write(tmp)
    except OSError as exc:
        detail = exc.strerror or exc
        raise PerceptionError(f"{pending.path}: writing failed ({detail}); the previous file is untouched") from None
    return pending.path


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
