"""``perception evaluate``: compare temporal heads on the same data, backbone and training budget.

Each head is trained by the code of ``perception train`` (the same LightningCLI, configs and
``--data.*`` / ``--model.*`` / ``--trainer.*`` options; only the head, its learning rate, its size
and the seed change between runs), so any data a config describes can be compared. Per head:

1. tuning: one run per learning rate of the budget's grid (seed 0); the best validation accuracy
   picks the rate (in the report);
2. seeds: more runs at that rate, so every accuracy has a mean and a 95 % interval;
3. size: with the default budget, the same at a second, smaller hidden size.

Every final model (its best-on-validation checkpoint) is tested under every condition of
``perception.evaluation.conditions`` and scored per task (``tasks``): the built-in dataset's pairs,
a data module's own ``tasks()``, or one task of all classes. Parameters, operations per step
(``measure.ops_per_step``) and the streaming step latency complete a row; a logistic regression on
each clip's mean input is the linear floor. ``perception.evaluation.report`` writes the folder.

The budget bounds every run on any data (``BUDGETS``; ``--quick`` picks the small one): its epochs
replace the config's (``--epochs`` or ``--trainer.max_epochs`` on the command line win), and a data
module that takes ``train_size``, ``val_size``, ``test_size`` or ``in_memory`` (the built-in dataset,
chains) gets the budget's values for them unless the command line gives them (``--train-size``,
``--test-size``, ``--data.val_size``, ...). The built-in dataset also gets the budget's clip size,
steps and batch size, and the CNN at half width.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from data.synthetic import TASKS
from heads import head_entry, list_heads
from perception._files import atomic_write
from perception.checkpoint import load_checkpoint, read_checkpoint
from perception.errors import PerceptionError
from perception.evaluation.ablation import ABLATION_CONDITIONS, Variant, ablation_variants, variant_args, write_ablation
from perception.evaluation.conditions import ConditionSets
from perception.evaluation.measure import chance, ops_per_step, predict, step_latency_us, task_accuracy
from perception.evaluation.report import write_report
from perception.model import DEFAULT_HIDDEN, count_parameters


@dataclass(frozen=True)
class Budget:
    """What every head gets: seeds, the learning-rate grid, hidden sizes (the first is the main one),
    epochs, data options for any data module that takes them (``data``) and the built-in dataset's
    own (``builtin``)."""

    seeds: int
    lrs: tuple[float, ...]
    hidden: tuple[int, ...]
    epochs: int
    data: dict
    builtin: dict
    size_seeds: int = 2  # seeds at the other hidden sizes (their accuracy still gets an interval)


BUDGETS = {
    # about 45 minutes on 2 idle cores for the seven heads (47 runs of 768 steps)
    "default": Budget(seeds=3, lrs=(1e-3, 3e-3, 1e-2), hidden=(DEFAULT_HIDDEN, 16), epochs=8,
                      data={"train_size": 1536, "val_size": 256, "test_size": 400},
                      builtin={"size": 32, "batch_size": 16}),
    # about 8 minutes: 21 runs of 96 steps on 8-step clips; a first look, not a verdict. Small splits
    # are kept in memory (chains: computed once for every run instead of once per epoch and run).
    "quick": Budget(seeds=2, lrs=(3e-3, 1e-2), hidden=(DEFAULT_HIDDEN,), epochs=4,
                    data={"train_size": 384, "val_size": 96, "test_size": 160, "in_memory": True},
                    builtin={"size": 32, "steps": 8, "batch_size": 16}),
}
# On the built-in dataset the CNN is the small one at half width: the heads are what is compared, and
# the backbone is most of the cost of a run.
BUILTIN_MODEL = {"backbone": "small", "backbone_kwargs": {"width": 0.5}}
# Options of perception train that evaluate passes on; the rest are evaluate's own.
FINISHED = "finished.json"  # written in a run's folder when its training ends (``--reuse-runs``)
TRAIN_OPTIONS = ("--config", "-c", "--data", "--model.", "--trainer.", "--seed_everything")


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise PerceptionError(f"{option}: expected a comma-separated list, got {text!r}")
    return names


def _numbers(text: str, option: str, kind=float) -> list:
    try:
        values = [kind(s) for s in _names(text, option)]
    except ValueError:
        raise PerceptionError(f"{option}: expected comma-separated {kind.__name__}s, got {text!r}") from None
    if any(not v > 0 for v in values) if kind is float else any(v < 0 for v in values):
        raise PerceptionError(f"{option}: expected {'positive' if kind is float else 'non-negative'} values, got {text!r}")
    return values


def budget_of(args: argparse.Namespace) -> Budget:
    base = BUDGETS["quick" if args.quick else "default"]
    values = {}
    if args.seeds is not None:
        values["seeds"] = len(_numbers(args.seeds, "--seeds", int))
    if args.lrs is not None:
        values["lrs"] = tuple(_numbers(args.lrs, "--lrs"))
    if args.epochs is not None:
        if args.epochs < 1:
            raise PerceptionError(f"--epochs: expected a positive integer, got {args.epochs}")
        values["epochs"] = args.epochs
    data = dict(base.data)
    for option in ("train_size", "test_size"):
        value = getattr(args, option)
        if value is not None:
            if value < 1:
                raise PerceptionError(f"--{option.replace('_', '-')}: expected a positive integer, got {value}")
            data[option] = value
    return Budget(**{**base.__dict__, **values, "data": data})


def seeds_of(args: argparse.Namespace, budget: Budget) -> list[int]:
    return _numbers(args.seeds, "--seeds", int) if args.seeds is not None else list(range(budget.seeds))


def check_train_args(extra: list[str]) -> list[str]:
    """The options meant for ``perception train`` (``--config``, ``--data.*``, ...); others are refused."""
    expect_value = False
    for arg in extra:
        if expect_value or not arg.startswith("-"):
            expect_value = False
            continue
        if not arg.startswith(TRAIN_OPTIONS):
            raise PerceptionError(f"unrecognized option {arg!r} (evaluate passes --config, --data.*, --model.* and "
                                  "--trainer.* to perception train; see perception evaluate --help)")
        expect_value = "=" not in arg
    return extra


# ------------------------------------------------------------------------------------------------
# Training one head: the code path of perception train.

def _quiet_lightning() -> None:
    """Many short fits: keep Lightning's per-fit banners and tips out of the progress display."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (".*LeafSpec.*", ".*does not have many workers.*", ".*is smaller than the logging interval.*",
                    ".*Checkpoint directory .* exists and is not empty.*"):
        warnings.filterwarnings("ignore", message=message)


class Trainer:
    """Builds each run with ``perception train``'s CLI and fits it; the data module is built once
    (every run shares its data options) and reused."""

    def __init__(self, train_args: list[str], budget: Budget, output: Path, epochs: int | None = None) -> None:
        from perception.training.cli import build_cli
        from perception.training.data import SyntheticDataModule

        self.build_cli, self.output = build_cli, output
        probe = build_cli([*train_args, "--trainer.logger", "false"])
        self.builtin = isinstance(probe.datamodule, SyntheticDataModule)
        # the budget's data options the data module takes, unless the command line gives them
        takes = _init_options(type(probe.datamodule))
        options = {**budget.data, **(budget.builtin if self.builtin else {})}
        self.data_args = [arg for key, value in options.items() if key in takes and not _given(train_args, "data", key)
                          for arg in (f"--data.init_args.{key}", json.dumps(value))]
        if self.builtin:  # the CNN at half width, unless the command line says otherwise
            self.data_args += [arg for key, value in BUILTIN_MODEL.items() if not _given(train_args, "model", key)
                               for arg in (f"--model.{key}", value if isinstance(value, str) else json.dumps(value))]
        if self.data_args:
            probe = build_cli([*train_args, *self.data_args, "--trainer.logger", "false"])
        self.train_args, self.datamodule = train_args, probe.datamodule
        # the budget's epochs on any data, unless --epochs or --trainer.max_epochs says otherwise
        if epochs is None:
            epochs = None if _given(train_args, "trainer", "max_epochs") else budget.epochs
        self.epochs = epochs
        self.config_epochs = probe.config.trainer.get("max_epochs")

    def run_of(self, variant: Variant, lr: float, seed: int, hidden: int | None) -> tuple[Path, list[str]]:
        """The run's folder and its ``perception train`` options."""
        name = f"{variant.name.replace(' ', '_')}-h{hidden or 0}-lr{lr:g}-seed{seed}"
        logger = [{"class_path": "lightning.pytorch.loggers.CSVLogger",
                   "init_args": {"save_dir": str(self.output / "runs"), "name": variant.head, "version": name}}]
        kwargs = {**variant.head_kwargs, **({"hidden_size": hidden} if hidden else {})}
        argv = [*self.train_args, *self.data_args, "--model.head", variant.head, "--model.lr", str(lr),
                "--model.head_kwargs", json.dumps(kwargs), "--seed_everything", str(seed),
                "--trainer.logger", json.dumps(logger), "--trainer.enable_progress_bar", "false",
                "--trainer.enable_model_summary", "false",
                *variant_args(variant, float(self.datamodule.time_scale))]
        if self.epochs is not None:
            argv += ["--trainer.max_epochs", str(self.epochs)]
        return self.output / "runs" / variant.head / name, argv

    def fit(self, variant: Variant, lr: float, seed: int, hidden: int | None, reuse: bool = False) -> dict:
        """Train one model; its best checkpoint, best validation accuracy and training seconds. With
        ``reuse``, a run that finished before with the same options (its ``finished.json``) is not
        trained again."""
        folder, argv = self.run_of(variant, lr, seed, hidden)
        name = folder.name
        marker = folder / FINISHED
        if reuse and marker.is_file():
            done = json.loads(marker.read_text())
            if done.get("argv") == argv and Path(done.get("checkpoint", "")).is_file():
                return {**done, "reused": True}
        cli = self.build_cli(argv)
        self.datamodule.shuffle_seed = seed  # the training order follows the run's seed, as in perception train
        start = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=self.datamodule)
        seconds = time.perf_counter() - start
        callback = cli.trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        score = callback.best_model_score if callback is not None else None
        if not best:
            raise PerceptionError(f"{name}: training wrote no checkpoint (the config needs a ModelCheckpoint on val/acc)")
        done = {"checkpoint": best, "val_acc": float(score) if score is not None else float("nan"),
                "train_s": seconds, "argv": argv}
        atomic_write(marker, lambda tmp: tmp.write_text(json.dumps(done)))
        return done


# ------------------------------------------------------------------------------------------------
# Tasks and measurements.

def tasks_of(datamodule) -> list[dict]:
    """The tasks to score: name, class indices, needs_time (True, False or "unknown")."""
    classes = list(datamodule.classes)
    if callable(getattr(datamodule, "tasks", None)):  # the data module says (chains): each over its labels
        kinds = datamodule.pair_kinds() if callable(getattr(datamodule, "pair_kinds", None)) else {}
        out = []
        for info in datamodule.tasks():
            info = info.to_dict() if hasattr(info, "to_dict") else dict(info)
            members = [k for k, name in enumerate(classes) if kinds.get(name, info["name"]) == info["name"]]
            out.append({"task": info["name"], "classes": members, "needs_time": info["needs_time"]})
        return out
    if hasattr(datamodule, "pair_kinds"):  # the built-in dataset: one task per pair kind
        kinds = datamodule.pair_kinds()
        out = {}
        for k, name in enumerate(classes):
            out.setdefault(kinds[name], []).append(k)
        return [{"task": task, "classes": members, "needs_time": TASKS[task]} for task, members in out.items()]
    return [{"task": "classes", "classes": list(range(len(classes))), "needs_time": "unknown"}]


class Scorer:
    """Tests models under every condition of ``sets`` and turns the scores into result rows (one per
    task and condition), with each task's chance and whether it needs time."""

    def __init__(self, sets: ConditionSets, tasks: list[dict], frame_shape: tuple[int, int, int],
                 only: tuple[str, ...] | None = None) -> None:
        self.sets, self.tasks, self.frame_shape = sets, tasks, frame_shape
        self.conditions = [c for c in sets.names() if only is None or c in only]
        labels = _labels(sets.loader("train_timing", 1.0))  # the labels only: any first dt will do
        self.chances = {"all": chance(labels, list(range(len(sets.datamodule.classes))))}
        self.chances.update({t["task"]: chance(labels, t["classes"]) for t in tasks})

    def row(self, score: dict, **info) -> dict:
        return {**info, **score, "needs_time": _needs_time(score["task"], self.tasks),
                "chance": self.chances[score["task"]]}

    def rows(self, model, **info) -> list[dict]:
        """Result rows of ``model`` (its parameters, operations and latency measured here) with ``info``."""
        nominal = float(model.time_scale)
        info.update({"time_aware": head_entry(model.head_name).time_aware, "params": count_parameters(model),
                     "ops_per_step": ops_per_step(model, self.frame_shape, self.sets.loader("train_timing", nominal)),
                     "latency_us": step_latency_us(model, self.frame_shape)})
        return [self.row(score, **info) for score in _score(model, self.sets, self.conditions, self.tasks, nominal)]


def _score(model, sets: ConditionSets, conditions: list[str], tasks: list[dict], nominal: float) -> list[dict]:
    """Accuracy per condition and task (plus "all": every class) of one model."""
    out = []
    for condition in conditions:
        logits, labels = predict(model, sets.loader(condition, nominal))
        out.append({"condition": condition, "task": "all", "acc": float((logits.argmax(1) == labels).mean())})
        for task in tasks:
            out.append({"condition": condition, "task": task["task"],
                        "acc": task_accuracy(logits, labels, task["classes"])})
    return out


def linear_floor(datamodule, tasks: list[dict], limit: int = 4000) -> tuple[list[dict], int]:
    """A logistic regression on each clip's mean input (the event-count image for events, the mean
    frame for video), trained on the training split, tested under the training timing; and its
    parameter count."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        dataset = datamodule.split(split)
        rows, labels = [], []
        for i in range(min(len(dataset), limit)):
            item = dataset[i]
            x, y = (item["x"], item["y"]) if isinstance(item, dict) else (item[0], item[2])
            rows.append(x.float().mean(0).flatten().numpy())
            labels.append(int(y))
        return np.stack(rows), np.asarray(labels)

    x_train, y_train = features("train")
    x_test, y_test = features("test")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x_train, y_train)
    regression = model[-1]
    logits = np.full((len(y_test), len(datamodule.classes)), -np.inf)
    logits[:, regression.classes_] = model.decision_function(x_test).reshape(len(y_test), -1) \
        if len(regression.classes_) > 2 else np.stack([-model.decision_function(x_test), model.decision_function(x_test)], 1)
    rows = [{"condition": "train_timing", "task": "all", "acc": float((logits.argmax(1) == y_test).mean())}]
    rows += [{"condition": "train_timing", "task": t["task"], "acc": task_accuracy(logits, y_test, t["classes"])}
             for t in tasks]
    return rows, int(regression.coef_.size + regression.intercept_.size)


# ------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    _quiet_lightning()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    budget = budget_of(args)
    seeds = seeds_of(args, budget)
    if args.checkpoints:
        return run_checkpoints(args, budget)
    if args.ablation:
        variants = ablation_variants(args.ablation)
    else:
        heads = _names(args.heads, "--heads")
        unknown = [h for h in heads if h not in list_heads()]
        if unknown:
            raise PerceptionError(f"--heads: unknown {', '.join(map(repr, unknown))}; choose from: {', '.join(list_heads())}")
        variants = [Variant(head, head) for head in heads]
    train_args = check_train_args(list(getattr(args, "train_args", []) or []))
    if args.modality != "events" and not any(a.startswith(("--config", "-c", "--data")) for a in train_args):
        train_args = ["--data.init_args.modality", args.modality, *train_args]
    output = Path(args.output)
    started = time.perf_counter()
    trainer = Trainer(train_args, budget, output, epochs=args.epochs)
    datamodule = trainer.datamodule
    datamodule.prepare_data()
    for split in ("train", "val", "test"):  # built (and cached) once, before any timing or memory figure
        dataset = datamodule.split(split)
        for i in range(len(dataset)):
            dataset[i]
    tasks = tasks_of(datamodule)
    scorer = Scorer(ConditionSets(datamodule, batch_size=datamodule.batch_size), tasks,
                    (datamodule.in_channels, *datamodule.preprocessing.frame_size[::-1]),
                    only=ABLATION_CONDITIONS if args.ablation else None)

    # an ablation trains each variant at its own learning rate (the rate is one of the ablated options)
    plan = []
    for variant in variants:
        sizes = budget.hidden if "hidden_size" in _head_options(variant.head) else (None,)
        lrs = (variant.lr,) if args.ablation and args.lrs is None else budget.lrs
        plan += [(variant, lr, seeds[0], sizes[0], "tune", len(lrs)) for lr in lrs]
        plan += [(variant, None, seed, sizes[0], "seed", 0) for seed in seeds[1:variant.seeds or len(seeds)]]
        if not args.ablation:
            plan += [(variant, None, seed, size, "size", 0) for size in sizes[1:] for seed in seeds[:budget.size_seeds]]
    rows, choices, models = [], {}, {}
    reused, train_seconds = 0, []
    progress = tqdm(plan, desc="ablation" if args.ablation else "evaluate", unit="run")
    for variant, lr, seed, hidden, stage, grid_size in progress:
        name = variant.name
        if lr is None:
            lr = choices[name]["lr"]
        progress.set_postfix_str(f"{name} lr {lr:g} seed {seed}" + (f" hidden {hidden}" if hidden else ""))
        fitted = trainer.fit(variant, lr, seed, hidden, reuse=args.reuse_runs)
        if fitted.get("reused"):
            reused += 1
            train_seconds.append(fitted["train_s"] if math.isfinite(fitted["train_s"]) else 0.0)
        if stage == "tune":
            choices.setdefault(name, {"grid": {}})["grid"][lr] = fitted["val_acc"]
            models[(name, lr)] = (fitted, seed, hidden)
            if len(choices[name]["grid"]) < grid_size:
                continue
            grid = choices[name]["grid"]
            best_lr = max(grid, key=lambda k: (grid[k] if not math.isnan(grid[k]) else -1.0, -k))
            choices[name]["lr"] = best_lr
            fitted, seed, hidden = models.pop((name, best_lr))
            lr = best_lr
            for key in [k for k in models if k[0] == name]:
                models.pop(key)
        mine = scorer.rows(load_checkpoint(fitted["checkpoint"]).model.eval(), head=name, hidden=hidden or "",
                           seed=seed, lr=lr, train_s=fitted["train_s"], val_acc=fitted["val_acc"])
        rows += mine
        mine = [r for r in mine if r["condition"] == "train_timing"]
        tqdm.write(f"{name:>8} seed {seed}" + (f" hidden {hidden}" if hidden else "") + f" lr {lr:g}: "
                   + ", ".join(f"{r['task']} {100 * r['acc']:.0f}%" for r in mine)
                   + ("  (reused)" if fitted.get("reused") else f"  (train {fitted['train_s']:.0f} s)"))

    floor_rows, floor_params = linear_floor(datamodule, tasks)
    rows += [scorer.row(score, head="linear", hidden="", seed=0, lr="", time_aware=False, params=floor_params,
                        ops_per_step=float(floor_params), latency_us=float("nan"), train_s=float("nan"),
                        val_acc=float("nan")) for score in floor_rows]
    setup = {
        "data": _data_label(trainer), "classes": len(datamodule.classes), "modality": datamodule.preprocessing.modality,
        "train clips": len(datamodule.split("train")), "validation clips": len(datamodule.split("val")),
        "test clips": len(datamodule.split("test")), "epochs": trainer.epochs or trainer.config_epochs,
        "seeds": len(seeds), "learning-rate grid": ", ".join(f"{lr:g}" for lr in budget.lrs),
        "hidden sizes": ", ".join(map(str, budget.hidden[:1] if args.ablation else budget.hidden)),
        "torch threads": torch.get_num_threads(),
        "budget": "quick" if args.quick else "default",
    }
    setup["wall time"] = f"{(time.perf_counter() - started) / 60:.1f} min"
    if reused:
        setup["wall time"] += (f" ({reused} of {len(plan)} runs reused from an earlier call, --reuse-runs; their "
                               f"training took {sum(train_seconds) / 60:.1f} min then)")
    if args.ablation:
        grid = setup.pop("learning-rate grid")
        setup["learning rate"] = "each variant's own (3e-3 unless it is a learning-rate variant)" \
            if args.lrs is None else f"picked per variant from {grid}"
        if args.lrs is None:
            choices = {}  # one rate per variant: nothing was chosen
    written = write_report(output, rows, scorer.conditions, tasks, choices, setup, make_plots=not args.no_plots)
    if args.ablation:
        written = write_ablation(output, rows, variants, tasks, setup) + written
    print(f"report: {written[0]}")
    return {"rows": rows, "choices": choices}


def _labels(loader) -> np.ndarray:
    return np.concatenate([batch["y"].numpy() for batch in loader])


def _needs_time(task: str, tasks: list[dict]):
    if task == "all":
        return any(t["needs_time"] is True for t in tasks) or "unknown"
    return next(t["needs_time"] for t in tasks if t["task"] == task)


def _given(train_args: list[str], group: str, key: str) -> bool:
    """Whether the command line gives option ``key`` of ``group`` ("data", "model", "trainer")."""
    names = {f"--{group}.{key}", f"--{group}.init_args.{key}"}
    return any(arg.split("=", 1)[0] in names for arg in train_args)


def _init_options(cls) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def _head_options(head: str) -> set[str]:
    import inspect

    return set(inspect.signature(head_entry(head).factory).parameters)


def _data_label(trainer: Trainer) -> str:
    dm = trainer.datamodule
    if trainer.builtin:
        return f"built-in dataset ({dm.modality}, {dm.config.size} x {dm.config.size}, {dm.config.steps} steps)"
    name = getattr(getattr(dm, "hparams", {}), "get", lambda *_: None)("dataset")
    return f"{type(dm).__name__}" + (f" ({name})" if name else "")


def run_checkpoints(args: argparse.Namespace, budget: Budget) -> dict:
    """Compare trained checkpoints (built-in dataset) under the conditions, one row set per file."""
    from perception.training.data import SyntheticDataModule

    paths = _names(args.checkpoints, "--checkpoints")
    data, loaded = None, []
    for path in paths:
        raw = read_checkpoint(path)
        options = raw.get("datamodule_hyper_parameters")
        if not isinstance(options, dict) or "modality" not in options or "fps_range" not in options:
            raise PerceptionError(f"{path}: not trained on the built-in dataset (--checkpoints compares those)")
        key = {k: options.get(k) for k in ("modality", "size", "steps", "classes", "bins", "normalize", "fps_range",
                                           "jitter", "seed")}
        if data is not None and key != data:
            raise PerceptionError(f"{path}: trained on other data than {paths[0]} ({key} vs {data})")
        data = key
        loaded.append(load_checkpoint(path).model.eval())
    test_size = args.test_size or budget.data["test_size"]
    datamodule = SyntheticDataModule(modality=data["modality"], size=data["size"], steps=data["steps"],
                                     classes=data["classes"], bins=data["bins"] or 5, normalize=data["normalize"],
                                     fps_range=tuple(data["fps_range"]), jitter=data["jitter"], seed=data["seed"],
                                     train_size=64, val_size=32, test_size=test_size)
    tasks = tasks_of(datamodule)
    scorer = Scorer(ConditionSets(datamodule, batch_size=32), tasks, (datamodule.in_channels, data["size"], data["size"]))
    rows = []
    for path, model in zip(tqdm(paths, desc="evaluate", unit="model"), loaded):
        rows += scorer.rows(model, head=model.head_name, hidden=model.head_kwargs.get("hidden_size", ""), seed=0, lr="",
                            train_s=float("nan"), val_acc=float("nan"), checkpoint=str(path))
    setup = {"data": f"built-in dataset ({data['modality']}, {data['size']} x {data['size']})",
             "checkpoints": ", ".join(paths), "test clips": test_size, "seeds": 1,
             "torch threads": torch.get_num_threads()}
    written = write_report(Path(args.output), rows, scorer.conditions, tasks, {}, setup, make_plots=not args.no_plots)
    print(f"report: {written[0]}")
    return {"rows": rows, "choices": {}}
