"""Writing files so that a crash or a full disk never leaves half a file in place of a good one."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from perception.errors import PerceptionError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``.

    Raises:
        PerceptionError: the folder cannot be created or written (names the path and the reason).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise PerceptionError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        raise PerceptionError(f"{path}: writing failed ({exc.strerror or exc}); the previous file is untouched") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
