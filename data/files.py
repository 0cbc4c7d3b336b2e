"""Writing a file atomically: a temporary file beside the target, renamed onto it when complete.

Renaming within one folder is atomic, so the target is always either the old file or the complete
new one, never half a file: not after an error in the writer, a full disk, Ctrl-C or a crash.

The temporary file is ``.<target name>.<random>.tmp`` in the target's folder (hidden, so folder
listings pass it over). On commit it gets the mode a plain ``open(path, "w")`` would give (0o666
less the umask) instead of mkstemp's 0o600, then replaces the target. When the writer fails or is
interrupted (any BaseException) the temporary file is removed and the target left as it was.

``AtomicFile`` serves in two forms, with the same policy:

- ``with AtomicFile(path) as tmp: write(tmp)``, for a file written in one go;
- ``pending = AtomicFile(path)``, write ``pending.tmp``, then ``pending.commit()`` or
  ``pending.discard()``, for a file kept open across many calls (a stream's output, written until
  the stream ends).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from data.errors import DataError


def _new_file_mode() -> int:
    """The mode a plain ``open(path, 'w')`` would give: 0o666 less the process umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


class AtomicFile:
    """A temporary file beside ``path`` that replaces ``path`` on ``commit()`` (module docstring).

    Args:
        path: the file to write in the end.
        parents: create the missing folders above ``path``; False: a missing folder is an error.

    Attributes:
        path: the target. tmp: the temporary file to write (created empty).

    Raises:
        DataError: the folder does not exist (``parents=False``), or it or the temporary file
            cannot be created; chained to the OSError when there is one.
    """

    def __init__(self, path: str | os.PathLike, *, parents: bool = False) -> None:
        self.path = Path(os.fspath(path))
        parent = self.path.parent
        if not parents and not parent.is_dir():
            raise DataError(f"{self.path}: the folder {parent} does not exist")
        try:
            if parents:
                parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as error:
            raise DataError(f"{self.path}: cannot create a file in {parent} ({error.strerror or error})") from error
        os.close(fd)
        self.tmp = Path(name)

    def commit(self) -> Path:
        """Rename the temporary file onto ``path`` (with the usual mode) and return ``path``.

        An OSError here (the rename failed) propagates after the temporary file is removed.
        """
        try:
            os.chmod(self.tmp, _new_file_mode())
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (if it is still there); ``path`` is left as it was."""
        with contextlib.suppress(OSError):
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Path:
        """The temporary path, committed when the ``with`` block ends normally, else discarded."""
        return self.tmp

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: object) -> None:
        if kind is None:
            self.commit()
        else:  # any BaseException: an error in the writer, Ctrl-C, SystemExit
            self.discard()

    def __repr__(self) -> str:
        return f"AtomicFile({str(self.path)!r}, tmp={self.tmp.name!r})"
