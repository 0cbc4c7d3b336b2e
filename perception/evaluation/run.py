"""``perception evaluate``: compare temporal heads on the same backbone, data and training budget.

For each head (trained here, one run per seed, or loaded from ``--checkpoints``) it measures test
accuracy under every condition of ``perception.evaluation.conditions`` (timing irregularity, dropped
observations, input noise), accuracy per kind of class pair of the built-in dataset (appearance,
order, speed), parameters, training time, streaming latency per step and peak memory during
training; then writes the report folder (``perception.evaluation.report``).
"""
from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
import lightning as L
import torch
from tqdm.auto import tqdm

from heads import head_entry, list_heads
from perception.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from perception.errors import PerceptionError
from perception.evaluation.conditions import NOISE_UNIT, Condition, ConditionSets, list_conditions
from perception.evaluation.measure import PeakMemory, accuracy_by_group, predict, step_latency_us
from perception.evaluation.report import summarise, write_report
from perception.model import count_parameters
from perception.training.data import SyntheticDataModule
from perception.training.module import PerceptionModule



@dataclass(frozen=True)
class Budget:
    """The data and training budget every head gets."""

    train_size: int
    test_size: int
    epochs: int
    size: int
    batch_size: int = 32
    lr: float = 3e-3


BUDGETS = {
    # about 40 minutes on 2 CPU cores for the seven default heads and two seeds
    "default": Budget(train_size=1600, test_size=300, epochs=8, size=64),
    # about 4 minutes: seven heads, one seed, smaller frames
    "quick": Budget(train_size=1000, test_size=128, epochs=6, size=48),
}


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PerceptionError(f"{option}: expected a comma-separated list, got {text!r}")
    return names


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in _names(text, "--seeds")]
    except ValueError:
        raise PerceptionError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if any(s < 0 for s in seeds):
        raise PerceptionError(f"--seeds: seeds must be >= 0, got {text!r}")
    return seeds


def _budget(args: argparse.Namespace) -> Budget:
    base = BUDGETS["quick" if args.quick else "default"]
    values = {"train_size": args.train_size, "test_size": args.test_size, "epochs": args.epochs}
    for option, value in values.items():
        if value is not None and value < 1:
            raise PerceptionError(f"--{option.replace('_', '-')}: expected a positive integer, got {value}")
    return Budget(**{**base.__dict__, **{k: v for k, v in values.items() if v is not None}})


def _datamodule(budget: Budget, modality: str, seed: int = 0) -> SyntheticDataModule:
    return SyntheticDataModule(modality=modality, train_size=budget.train_size, val_size=max(32, budget.test_size // 4),
                               test_size=budget.test_size, size=budget.size, seed=seed, batch_size=budget.batch_size,
                               normalize="standard" if modality == "events" else None)


def _train(head: str, seed: int, datamodule: SyntheticDataModule, budget: Budget) -> tuple[PerceptionModule, float, float]:
    L.seed_everything(seed, verbose=False)
    datamodule.shuffle_seed = seed
    module = PerceptionModule(head=head, lr=budget.lr, num_classes=datamodule.num_classes,
                              in_channels=datamodule.in_channels, class_names=datamodule.classes,
                              preprocessing=datamodule.preprocessing)
    trainer = L.Trainer(max_epochs=budget.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                        devices=1)
    with PeakMemory() as memory:
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        seconds = time.perf_counter() - start
    return module, seconds, memory.peak_mb


def _measure(model, nominal_period: float, sets: ConditionSets, conditions: list[Condition],
             pair_of: dict[int, str]) -> dict:
    """Accuracy under every condition (and per pair kind under the training timing) of one model,
    trained on clips of ``nominal_period`` (its preprocessing's time scale)."""
    row = {}
    for condition in conditions:
        preds, labels = predict(model, sets.loader(condition, nominal_period))
        row[condition.name] = float((preds == labels).mean())
        if condition.family == "timing" and condition.level == sets.training_jitter:
            row["acc"] = row[condition.name]
            row.update(accuracy_by_group(preds, labels, pair_of))
    return row


def _from_checkpoints(paths: list[str]) -> tuple[list[tuple[str, object, float, float, float]], dict]:
    """(name, model, train s, peak MB, nominal period s) per checkpoint, and the built-in dataset
    options they share."""
    models, data = [], None
    for path in paths:
        raw = read_checkpoint(path)
        options = raw.get("datamodule_hyper_parameters")
        if not isinstance(options, dict) or "modality" not in options or "fps_range" not in options:
            raise PerceptionError(f"{path}: not trained on the built-in dataset (perception evaluate compares those)")
        key = {k: options.get(k) for k in ("modality", "size", "steps", "classes", "bins", "normalize", "fps_range",
                                           "jitter", "seed")}
        if data is not None and key != data:
            raise PerceptionError(f"{path}: trained on other data than {paths[0]} ({key} vs {data})")
        data = key
        loaded = load_checkpoint(path)
        models.append((loaded.model.head_name, loaded.model, float("nan"), float("nan"),
                       loaded.preprocessing.time_scale))
    return models, data


def _quiet_lightning() -> None:
    """Many short fits: keep Lightning's per-fit banners and tips out of the progress display."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def run(args: argparse.Namespace) -> dict:
    _quiet_lightning()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    budget = _budget(args)
    seeds = _seeds(args.seeds or ("0" if args.quick else "0,1"))
    modality = args.modality
    if args.checkpoints:
        loaded, options = _from_checkpoints(_names(args.checkpoints, "--checkpoints"))
        modality = options["modality"]
        budget = Budget(**{**budget.__dict__, "size": options["size"]})
        datamodule = SyntheticDataModule(modality=modality, size=options["size"], steps=options["steps"],
                                         classes=options["classes"], bins=options["bins"] or 5,
                                         normalize=options["normalize"], test_size=budget.test_size,
                                         fps_range=tuple(options["fps_range"]), jitter=options["jitter"],
                                         seed=options["seed"])
        jobs = [(name, None) for name, *_ in loaded]
    else:
        heads = _names(args.heads, "--heads")
        unknown = [h for h in heads if h not in list_heads()]
        if unknown:
            raise PerceptionError(f"--heads: unknown {', '.join(map(repr, unknown))}; choose from: {', '.join(list_heads())}")
        datamodule = _datamodule(budget, modality)
        jobs = [(head, seed) for head in heads for seed in seeds]

    if not args.checkpoints:  # build (and cache) the training clips now, so no head's memory figure includes them
        train = datamodule.split("train")
        for i in range(len(train)):
            train[i]
    conditions = list_conditions(modality, quick=args.quick, training_jitter=datamodule.config.jitter)
    sets = ConditionSets(datamodule, conditions, budget.test_size, budget.batch_size)
    kinds = datamodule.pair_kinds()
    pair_of = {k: kinds[name] for k, name in enumerate(datamodule.classes)}
    frame_shape = (datamodule.in_channels, budget.size, budget.size)
    rows = []
    progress = tqdm(jobs, desc="evaluate", unit="run")
    for index, (head, seed) in enumerate(progress):
        progress.set_postfix_str(f"{head} seed {seed}" if seed is not None else head)
        if seed is None:
            _, model, train_s, peak_mb, nominal = loaded[index]
        else:
            module, train_s, peak_mb = _train(head, seed, datamodule, budget)
            model, nominal = module.model.eval(), datamodule.time_scale
            save_checkpoint(args.output / "checkpoints" / f"{head}-seed{seed}.ckpt", model, datamodule.classes,
                            datamodule.preprocessing, {"datamodule_hyper_parameters": dict(datamodule.hparams)})
        row = {"head": head, "seed": seed if seed is not None else "", "time_aware": head_entry(model.head_name).time_aware,
               "params": count_parameters(model), "train_s": train_s, "peak_mb": peak_mb,
               "latency_us": step_latency_us(model, frame_shape)}
        row.update(_measure(model, nominal, sets, conditions, pair_of))
        rows.append(row)
        tqdm.write(f"{head:>8} seed {row['seed'] if seed is not None else '-'}: acc {100 * row['acc']:.1f}%  "
                   f"({', '.join(f'{k} {100 * row[k]:.0f}%' for k in ('appearance', 'order', 'speed'))}), "
                   f"train {'n/a' if train_s != train_s else f'{train_s:.0f} s'}, step {row['latency_us']:.0f} us")
    keys = ["acc", *(c.name for c in conditions), "appearance", "order", "speed", "params", "train_s",
            "latency_us", "peak_mb"]
    summary = summarise(rows, keys)
    for s in summary:
        s["time_aware"] = head_entry(s["head"]).time_aware
    setup = {"modality": modality, "backbone": "small", "train clips": budget.train_size if not args.checkpoints else "n/a",
             "epochs": budget.epochs if not args.checkpoints else "n/a", "frame size": f"{budget.size} x {budget.size}",
             "test_size": budget.test_size, "seeds": len(seeds) if not args.checkpoints else 1,
             "torch threads": torch.get_num_threads()}
    written = write_report(args.output, rows, summary, conditions, setup, modality, NOISE_UNIT[modality],
                           make_plots=not args.no_plots, training=f"timing={sets.training_jitter:g}")
    print(f"report: {written[0]}")
    return {"rows": rows, "summary": summary}
