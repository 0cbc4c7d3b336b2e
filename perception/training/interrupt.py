"""Stopping ``perception train`` on a signal with a checkpoint to resume from, and its other exits.

A cluster pre-empts a job with SIGTERM and expects it to save its state and exit non-zero; a user
stops one with Ctrl-C. Under ``perception._signals.StopSignals`` both ask Lightning to stop after
the batch under way (its own SIGTERM flag, ``received_sigterm``: the loops then raise
``SIGTERMException`` at a point where their state is consistent), ``SaveOnStop`` writes a
resumable checkpoint there (``last.ckpt`` in the run's checkpoint folder, so ``--resume last``
finds it), and the command prints how to resume and exits 130 (SIGINT) / 143 (SIGTERM). A second
signal stops at once, saving nothing more (the last checkpoint written stays).

Also here: ``check_resumable`` (``--resume`` needs a training checkpoint, not a model-only one) and
``write_failed`` (a full disk while writing a checkpoint or the logs is one line, exit 2).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from perception._signals import StopSignals, exit_status, signal_name
from perception.errors import PerceptionError

# What Lightning needs to resume a run, beyond the weights (a model-only checkpoint lacks them).
TRAINING_KEYS = ("optimizer_states", "loops", "epoch", "global_step")
LAST = "last.ckpt"


class SaveOnStop(L.Callback):
    """Write a resumable checkpoint when fitting stops at a signal (module docstring).

    Attributes:
        saved: the checkpoint written, or None.
        error: why writing it failed, or None.
    """

    def __init__(self) -> None:
        self.saved: Path | None = None
        self.error: str | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return  # a second signal stops mid-step: that state is not worth resuming from
        folder = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        path = Path(folder or Path(trainer.default_root_dir) / "checkpoints") / LAST
        try:
            trainer.save_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - reported with the stop, which goes on
            self.error = " ".join(str(exc).split())[:200]
        else:
            self.saved = path


def fit_stoppably(trainer: L.Trainer, stop: StopSignals, fit) -> SaveOnStop:
    """Run ``fit()`` with ``trainer`` stopping cleanly at a signal; returns the callback that saved.
    An OSError (a full disk under the logs) becomes one line (``write_failed``)."""
    saver = SaveOnStop()
    trainer.callbacks.append(saver)

    def request(signum: int) -> None:
        trainer._signal_connector.received_sigterm = True  # Lightning's own flag: stop after this batch

    stop.on_request, stop.deferring = request, True
    try:
        fit()
    except (SIGTERMException, KeyboardInterrupt, SystemExit):
        if stop.signum is None:
            raise
    except OSError as exc:  # a full disk under the logs (the checkpoints' writer says so itself)
        raise write_failed(exc) from None
    finally:
        stop.deferring = False
        trainer.callbacks.remove(saver)
    return saver


def report_stop(trainer: L.Trainer, stop: StopSignals, saver: SaveOnStop, argv: list[str]) -> int:
    """Print where training stopped and how to resume; return the exit status (130 / 143)."""
    name = signal_name(stop.signum)
    where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
    if saver.saved is not None:
        resume = [a for a in _without_resume(argv)] + ["--resume", str(saver.saved)]
        print(f"perception train: stopped by {name} at {where}; a resumable checkpoint: {saver.saved}", file=sys.stderr)
        print(f"resume: perception train {shlex.join(resume)}", file=sys.stderr)
    else:
        why = f" (writing it failed: {saver.error})" if saver.error else ""
        print(f"perception train: stopped by {name} at {where} before a resumable checkpoint was written{why}; "
              "resume from the last one written with --resume last", file=sys.stderr)
    return exit_status(stop.signum)


def _without_resume(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--resume":
            skip = True
        elif not arg.startswith("--resume="):
            out.append(arg)
    return out


def check_resumable(path: str) -> None:
    """``--resume PATH`` needs a training checkpoint; a one-line PerceptionError otherwise."""
    from perception.checkpoint import read_checkpoint

    raw: dict[str, Any] = read_checkpoint(path)  # refuses a corrupt or unsafe file in one line
    missing = [key for key in TRAINING_KEYS if key not in raw]
    if missing:
        raise PerceptionError(f"--resume {path}: a model-only checkpoint (no {', '.join(missing)}), as "
                              "save_checkpoint and perception evaluate write; resuming needs a training "
                              "checkpoint: a run's checkpoints/last.ckpt (or --resume last)")


def write_failed(exc: OSError) -> PerceptionError:
    """A full disk (or another write error) while training, as one line."""
    where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
    return PerceptionError(f"writing the run's files failed{where} ({exc.strerror or exc}); "
                           "the checkpoints written before are untouched")
