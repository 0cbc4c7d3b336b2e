"""SIGINT and SIGTERM: finish the step under way, close the outputs, report, exit 130 / 143.

A scheduler (SLURM, Kubernetes, systemd) stops a job with SIGTERM, a user with Ctrl-C (SIGINT). By
default Python dies at once on SIGTERM (no summary, a temporary file left behind) and raises
KeyboardInterrupt at any bytecode on SIGINT (half a training step). ``StopSignals`` turns both into
one policy, shared by ``perception infer`` and ``perception train``:

- while ``deferring`` (a stream's loop, a training loop) the first signal only records itself
  (``signum``); the loop checks ``requested`` after each step and stops cleanly: its outputs are
  closed and kept (they hold every step done), the summary is printed, and the exit status is
  ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), as a shell reports a job killed by it;
- outside such a loop (loading, opening files), or at a second signal, ``Interrupted`` is raised
  at once: a KeyboardInterrupt, so the ``finally`` blocks on the way out still remove temporary
  files, and the CLI exits with the same status.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop requested by a signal; ``exit_status`` is what the command returns (128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def exit_status(signum: int | None) -> int:
    """The exit status of a command stopped by ``signum`` (0 when none stopped it)."""
    return 0 if signum is None else 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopSignals:
    """Handlers for SIGINT and SIGTERM while ``with``-ed (module docstring); the previous handlers
    come back on exit. Outside the main thread (where Python allows no handlers) it does nothing.

    Attributes:
        signum: the first signal received, or None.
        deferring: True while a loop checks ``requested`` after each step.
    """

    def __init__(self, on_request=None) -> None:
        self.signum: int | None = None
        self.deferring = False
        self.on_request = on_request  # called with the signal number at the first signal (a trainer's flag)
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self.deferring:
            if self.on_request is not None:
                self.on_request(signum)
            return
        raise Interrupted(self.signum if first else signum)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
