"""``perception train``: LightningCLI over PerceptionModule and the data modules, with shipped YAML configs.

Conventions are LightningCLI's: ``--config FILE`` (repeatable), dotted overrides such as
``--model.head ltc`` or ``--trainer.max_epochs 3``, ``--print_config``. With no arguments it trains
the default model (``perception/configs/default.yaml``): small CNN + cfc head on the built-in
dataset as events, on the CPU. After fitting it evaluates the best checkpoint on the test split
(``test/acc``) and says where the checkpoint is and what to run next.

Runs are written to ``<save_dir>/<name>/version_N/`` (metrics.csv, TensorBoard events, config.yaml,
checkpoints/). ``--resume PATH`` (or ``--resume last``: the newest last.ckpt under the runs folder)
continues a run (its logs and new checkpoints go to the next version folder).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from perception._signals import StopSignals
from perception.errors import USER_ERRORS, PerceptionError
from perception.training.data import ClipDataModule
from perception.training.interrupt import check_resumable, fit_stoppably, report_stop
from perception.training.module import PerceptionModule

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


def list_configs() -> list[str]:
    """Names of the shipped configs (``--config NAME`` accepts these as well as paths)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_names(argv: list[str]) -> list[str]:
    """``--config NAME`` (or ``-c NAME``, ``--config=NAME``) of a shipped config -> its path; a
    file of that name in the working folder wins."""
    shipped = set(list_configs())

    def resolve(value: str) -> str:
        return str(CONFIG_DIR / f"{value}.yaml") if value in shipped and not Path(value).exists() else value

    out, take_next = [], False
    for arg in argv:
        if take_next:
            out.append(resolve(arg))
            take_next = False
        elif arg in ("--config", "-c"):
            out.append(arg)
            take_next = True
        elif arg.startswith("--config="):
            out.append("--config=" + resolve(arg.split("=", 1)[1]))
        else:
            out.append(arg)
    return out


class OneLineArgumentParser(LightningArgumentParser):
    """Parse errors as one line on stderr with exit status 2, like every user error, not a usage dump."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        text = " ".join(str(message).split())
        text = text if len(text) <= 400 else text[:397] + "..."
        sys.stderr.write(f"perception train: error: {text} (see perception train --help)\n")
        sys.exit(2)


class PerceptionCLI(LightningCLI):
    """LightningCLI with the data module's facts linked into the model and a few run-level options."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for source, target in (("classes", "class_names"), ("num_classes", "num_classes"),
                               ("in_channels", "in_channels"), ("preprocessing", "preprocessing")):
            parser.link_arguments(f"data.{source}", f"model.{target}", apply_on="instantiate")
        parser.add_argument("--resume", type=str | None, default=None,
                            help="continue from this checkpoint, or 'last' for the newest last.ckpt in the runs folder")
        parser.add_argument("--test", type=bool, default=True, help="evaluate the best checkpoint on the test split")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        self.config = parser.parse_args(args)

    def before_instantiate_classes(self) -> None:
        config = self.config
        if config.trainer.get("precision") is None and torch.cuda.is_available():
            config.trainer.precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        if config.resume == "last":
            config.resume = str(newest_last_checkpoint(_loggers(config)))
        if config.resume is not None and not Path(config.resume).is_file():
            raise PerceptionError(f"--resume: {config.resume}: checkpoint not found")
        if config.resume is not None:
            check_resumable(config.resume)
        _share_version(_loggers(config))


def _loggers(config) -> list:
    loggers = config.trainer.get("logger")
    return [ns for ns in (loggers if isinstance(loggers, list) else [loggers]) if hasattr(ns, "init_args")]


def _run_folder(logger) -> Path:
    args = logger.init_args
    return Path(args.get("save_dir") or "runs") / str(args.get("name") or "default")


def newest_last_checkpoint(loggers: list) -> Path:
    folder = _run_folder(loggers[0]) if loggers else Path("runs")
    found = sorted(folder.glob("**/checkpoints/last*.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise PerceptionError(f"--resume last: no last.ckpt under {folder}")
    return found[-1]


def _share_version(loggers: list) -> None:
    """Give every logger the same, next free version_N folder (a resumed run gets a new one too:
    the CSV logger would otherwise overwrite the earlier run's metrics)."""
    if not loggers or any(ns.init_args.get("version") is not None for ns in loggers):
        return
    folder = _run_folder(loggers[0])
    taken = [int(m.group(1)) for p in folder.glob("version_*") if (m := re.fullmatch(r"version_(\d+)", p.name))]
    for ns in loggers:
        ns.init_args.version = max(taken, default=-1) + 1


def train(argv: list[str]) -> int:
    """Run ``perception train ARGV``; returns the exit status (130 / 143 when a signal stopped it:
    ``perception.training.interrupt``)."""
    with StopSignals() as stop:
        return _run(build_cli(argv), stop, list(argv))


def build_cli(argv: list[str]) -> PerceptionCLI:
    """The model, data module and trainer of ``perception train ARGV``, built but not fitted
    (``perception evaluate`` trains each head through this too)."""
    try:
        return _build_cli(resolve_config_names(list(argv)))
    except (ValueError, MisconfigurationException) as exc:  # a bad value met while building the classes
        raise user_error_in(exc) from None


def _build_cli(argv: list[str]) -> PerceptionCLI:
    return PerceptionCLI(
        PerceptionModule,
        ClipDataModule,
        subclass_mode_data=True,
        run=False,
        parser_class=OneLineArgumentParser,
        auto_configure_optimizers=False,  # the module's own AdamW + one-cycle (model.lr, model.weight_decay)
        args=argv,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_config_files": [str(DEFAULT_CONFIG)], "prog": "perception train",
                       "description": "Train a backbone + temporal head (LightningCLI; see --help)."},
    )


def user_error_in(exc: BaseException) -> Exception:
    """The project error behind ``exc`` (jsonargparse wraps them), or ``exc`` as one PerceptionError line."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, USER_ERRORS):
            return cause
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split())
    return PerceptionError(text if len(text) <= 400 else text[:397] + "...")


def _run(cli: PerceptionCLI, stop: StopSignals, argv: list[str]) -> int:
    trainer, model, datamodule = cli.trainer, cli.model, cli.datamodule
    seed = cli.config.get("seed_everything")
    if isinstance(seed, int) and not isinstance(seed, bool):
        datamodule.shuffle_seed = seed  # the training order follows the run's seed
    saver = fit_stoppably(trainer, stop, lambda: trainer.fit(model, datamodule=datamodule, ckpt_path=cli.config.resume))
    if stop.requested:  # SIGINT / SIGTERM: a resumable checkpoint, how to resume, exit 130 / 143
        return report_stop(trainer, stop, saver, argv)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
    results = {}
    if cli.config.test and not trainer.interrupted:
        results = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    if trainer.is_global_zero:
        _report(results, best or last, trainer.log_dir)
    return 0


def checkpoint_modality(path: str) -> str | None:
    from perception.checkpoint import read_checkpoint, read_preprocessing

    try:
        return read_preprocessing(read_checkpoint(path), path).modality
    except PerceptionError:
        return None


def _report(results: dict, checkpoint: str, log_dir: str | None) -> None:
    out = sys.stdout
    for key in ("test/acc", "test/loss"):
        if key in results:
            print(f"{key}: {results[key]:.4f}", file=out)
    if log_dir:
        print(f"logs: {log_dir} (metrics.csv; tensorboard --logdir {log_dir})", file=out)
    if checkpoint:
        print(f"checkpoint: {checkpoint}", file=out)
        source = "sim:webcam:0" if checkpoint_modality(checkpoint) == "events" else "webcam:0"
        print(f"next: perception infer {source} --checkpoint {checkpoint}   (run it live; or pass a recording)",
              file=out)
        print(f"      perception evaluate --checkpoints {checkpoint}   (compare it with other heads)", file=out)
