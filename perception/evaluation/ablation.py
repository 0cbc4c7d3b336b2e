"""``perception evaluate --ablation cfc,ltc``: one change at a time to a liquid head, on the tasks that
need time, against the best heads of other kinds.

A variant is a head with one option changed from ``perception train``'s defaults with the output
integrator off (the defaults when the ablation was measured; it found the integrator the one change
that helps, and it is now on by default for time-aware heads) (``Variant``): a head
option (``--model.head_kwargs``), a model or training option (``--model.*``: the dt transform, the
time scale, the feature LayerNorm, the learning rate and its warm-up) or a trainer option
(``--trainer.gradient_clip_val``). Every variant and every reference head is trained by the code of
``perception evaluate`` (which is ``perception train``'s) with the same data, seeds and budget, at
the learning rate it names (the defaults' 3e-3 unless it is the learning-rate variant: the rate is
one of the ablated options, not tuned away), and tested under the training timing and at the unseen
sampling rates. ``write_ablation`` adds ``ablation.md`` and ``ablation.csv`` to the report folder:
per variant, the mean accuracy over the tasks that need time under each of those conditions with its
95 % interval over seeds, the difference from its head's default and whether that difference is
larger than both intervals; then the goal: the best liquid variant against the best other head.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception._files import atomic_write
from perception.errors import PerceptionError
from perception.evaluation.report import _csv_text, interval

DEFAULT_LR = 3e-3  # perception train's default (perception/configs/default.yaml)
# The conditions an ablation is judged on: the training timing and the unseen sampling rates.
ABLATION_CONDITIONS = ("train_timing", "rate_x0.25", "rate_x4")


@dataclass(frozen=True)
class Variant:
    """One contender: ``name`` labels its rows; ``head`` with ``head_kwargs``; ``model`` holds
    ``--model.*`` values (``time_scale_factor`` multiplies the training data's median dt into
    ``--model.time_scale``); ``trainer`` holds ``--trainer.*`` values; ``change`` says in words what
    differs from the head's default (empty for the default itself); ``seeds``, when set, caps the
    number of seeds it is trained with (its first ones)."""

    name: str
    head: str
    change: str = ""
    head_kwargs: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    trainer: dict = field(default_factory=dict)
    lr: float = DEFAULT_LR
    seeds: int | None = None

    @property
    def liquid(self) -> bool:
        return self.head in LIQUID_HEADS


LIQUID_HEADS = ("cfc", "ltc")


def _cfc(name: str, change: str, **options) -> Variant:
    return Variant(f"cfc {name}", "cfc", change, **options)


def _ltc(name: str, change: str, **options) -> Variant:
    return Variant(f"ltc {name}", "ltc", change, seeds=LTC_SEEDS, **options)


LTC_SEEDS = 2  # ltc trains about 6x slower than cfc: two seeds each


ABLATIONS: dict[str, list[Variant]] = {
    "cfc": [
        Variant("cfc", "cfc"),
        _cfc("mixed_memory", "an LSTM cell in front of the CfC cell (mixed memory)",
             head_kwargs={"mixed_memory": True}),
        _cfc("layers=0", "no backbone layer inside the cell", head_kwargs={"backbone_layers": 0}),
        _cfc("layers=2", "two backbone layers inside the cell", head_kwargs={"backbone_layers": 2}),
        _cfc("units=64", "backbone units 64 (default 128)", head_kwargs={"backbone_units": 64}),
        _cfc("units=256", "backbone units 256 (default 128)", head_kwargs={"backbone_units": 256}),
        _cfc("integrator", "a leaky integrator with learned time constants between head and classifier",
             model={"output_integrator": True}),
        _cfc("no_gate", "mode no_gate: h = tanh(f1) + g tanh(f2)", head_kwargs={"mode": "no_gate"}),
        _cfc("gate_a=+1", "time gate a-bias starts at +1 (gate opens with elapsed time)",
             head_kwargs={"time_gate_bias": [1.0, 0.0]}),
        _cfc("dt=log1p", "the head gets log(1 + dt / time_scale)", model={"dt_transform": "log1p"}),
        _cfc("dt=learned", "a learned gain on dt / time_scale", model={"dt_transform": "learned"}),
        _cfc("time_scale x0.1", "time_scale = 0.1 x the median dt (head steps of about 10)",
             model={"time_scale_factor": 0.1}),
        _cfc("time_scale x10", "time_scale = 10 x the median dt (head steps of about 0.1)",
             model={"time_scale_factor": 10.0}),
        _cfc("no feature_norm", "no LayerNorm on the backbone features", model={"feature_norm": False}),
        _cfc("clip=1", "gradient norm clipped at 1", trainer={"gradient_clip_val": 1.0}),
        _cfc("lr 1e-3", "learning rate 1e-3 (default 3e-3)", lr=1e-3),
        _cfc("lr 1e-2", "learning rate 1e-2 (default 3e-3)", lr=1e-2),
        _cfc("warmup 0", "no learning-rate warm-up (default 15 % of the steps)", model={"warmup": 0.0}),
        _cfc("warmup 0.3", "warm-up over 30 % of the steps", model={"warmup": 0.3}),
    ],
    # ltc trains about 6x slower than cfc on 2 cores: its list is the options the cfc list does not
    # cover, and the integrator, with two seeds each
    "ltc": [
        Variant("ltc", "ltc", seeds=LTC_SEEDS),
        _ltc("unfolds=3", "3 ODE unfolds per step (default 6)", head_kwargs={"ode_unfolds": 3}),
        _ltc("wiring=autoncp", "sparse NCP wiring (autoncp, 16 motor neurons) instead of dense",
             head_kwargs={"wiring": "autoncp", "wiring_kwargs": {"output_size": 16}}),
        _ltc("integrator", "a leaky integrator with learned time constants between head and classifier",
             model={"output_integrator": True}),
    ],
    # the best heads of other kinds on the comparison's tasks that need time, at the same budget
    # (gru_dt also with the output integrator: it is not specific to the liquid heads)
    "references": [Variant("gru_dt", "gru_dt"), Variant("gru", "gru"), Variant("lstm", "lstm"),
                   Variant("gru_dt integrator", "gru_dt", "gru_dt with the output integrator",
                           model={"output_integrator": True})],
}


def ablation_variants(text: str) -> list[Variant]:
    """The variants of the comma-separated ablation names, then the reference heads."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ABLATIONS or n == "references"]
    if not names or unknown:
        raise PerceptionError(f"--ablation: expected a comma-separated list of {', '.join(k for k in ABLATIONS if k != 'references')}, "
                              f"got {text!r}")
    return [v for n in dict.fromkeys(names) for v in ABLATIONS[n]] + ABLATIONS["references"]


def variant_args(variant: Variant, median_dt: float) -> list[str]:
    """``perception train`` options for ``variant`` (the head options go in with the hidden size)."""
    # Every variant says whether it has the output integrator: its rows are one change from the
    # defaults as they were when the ablation was measured (no integrator), whatever the defaults now.
    model = {"output_integrator": False, **variant.model}
    argv = []
    for key, value in model.items():
        if key == "time_scale_factor":
            argv += ["--model.time_scale", repr(float(value) * median_dt)]
        else:
            argv += [f"--model.{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    for key, value in variant.trainer.items():
        argv += [f"--trainer.{key}", str(value)]
    return argv


# ------------------------------------------------------------------------------------------------
# The table.

def ablation_rows(rows: list[dict], variants: list[Variant], tasks: list[dict]) -> list[dict]:
    """Per variant and condition: the mean accuracy over the tasks that need time (per seed, then
    mean and 95 % interval over seeds), the same per task, and the difference from its head's
    default paired by seed (a seed fixes the initialisation and the data order of both runs), with
    that difference's 95 % interval."""
    timed = [t["task"] for t in tasks if t["needs_time"] is True]
    if not timed:
        raise PerceptionError("the ablation needs tasks that need time (the built-in dataset has them)")
    out = []
    for variant in variants:
        mine = [r for r in rows if r["head"] == variant.name]
        for condition in ABLATION_CONDITIONS:
            per_seed: dict = {}
            per_task: dict[str, list[float]] = {}
            for r in mine:
                if r["condition"] == condition and r["task"] in timed:
                    per_seed.setdefault(r["seed"], []).append(r["acc"])
                    per_task.setdefault(r["task"], []).append(r["acc"])
            if not per_seed:
                continue
            seeds = {seed: float(np.mean(v)) for seed, v in per_seed.items()}
            mean, low, high = interval(list(seeds.values()))
            row = {"variant": variant.name, "head": variant.head, "change": variant.change or "(the default)",
                   "condition": condition, "seeds": len(per_seed), "time_acc_mean": mean,
                   "time_acc_ci_low": low, "time_acc_ci_high": high, "_per_seed": seeds}
            row.update({f"{t}_mean": float(np.mean(per_task[t])) for t in timed if t in per_task})
            out.append(row)
    defaults = {(r["head"], r["condition"]): r for r in out if r["change"] == "(the default)"}
    for r in out:
        base = defaults.get((r["head"], r["condition"]))
        paired = [] if base is None or base is r else \
            [r["_per_seed"][s] - base["_per_seed"][s] for s in r["_per_seed"] if s in base["_per_seed"]]
        r["delta"], r["delta_ci_low"], r["delta_ci_high"] = interval(paired, (-1.0, 1.0)) if paired else (float("nan"),) * 3
        r["verdict"] = _verdict(r, base, len(paired))
    for r in out:
        del r["_per_seed"]
    return out


def _verdict(row: dict, base: dict | None, pairs: int) -> str:
    if base is None or base is row:
        return ""
    if pairs < 2:
        return "one seed: no interval"
    if row["delta_ci_low"] > 0:
        return "better"
    if row["delta_ci_high"] < 0:
        return "worse"
    return "within noise"


def goal(table: list[dict]) -> list[str]:
    """The goal, read off the table: the best liquid variant within 2 points of the best other head
    under the training timing, and ahead of it at each unseen rate (there: the training-timing best
    of each kind, then each kind's best at that rate)."""
    lines = []
    at = {(r["variant"], r["condition"]): r for r in table}

    def best(condition: str, liquid: bool) -> dict | None:
        rows = [r for r in table if r["condition"] == condition and (r["head"] in LIQUID_HEADS) == liquid]
        return max(rows, key=lambda r: r["time_acc_mean"]) if rows else None

    best_l, best_o = best("train_timing", True), best("train_timing", False)
    if best_l is None or best_o is None:
        return lines
    gap = 100 * (best_o["time_acc_mean"] - best_l["time_acc_mean"])
    lines.append(f"Training timing: best liquid variant `{best_l['variant']}` {100 * best_l['time_acc_mean']:.1f} %, "
                 f"best other head `{best_o['variant']}` {100 * best_o['time_acc_mean']:.1f} %: "
                 + ("within 2 points (goal met)" if gap <= 2 else f"{gap:.1f} points behind (goal of 2 points NOT met)")
                 + ".")
    for condition in ABLATION_CONDITIONS[1:]:
        pairs = [(at.get((best_l["variant"], condition)), at.get((best_o["variant"], condition)))]
        pairs.append((best(condition, True), best(condition, False)))
        for mine, theirs in pairs:
            if mine is None or theirs is None:
                continue
            ahead = mine["time_acc_ci_low"] > theirs["time_acc_ci_high"]
            line = (f"`{condition}`: `{mine['variant']}` {cell_text(mine)} vs `{theirs['variant']}` {cell_text(theirs)}: "
                    + ("ahead beyond the intervals (goal met)." if ahead else "not ahead beyond the intervals "
                       "(goal NOT met)."))
            if line not in lines:
                lines.append(line)
    return lines


def cell_text(r: dict | None) -> str:
    """``mean (low-high)`` in % of a table row's accuracy over the tasks that need time."""
    if r is None:
        return "n/a"
    return f"{100 * r['time_acc_mean']:.1f} ({100 * r['time_acc_ci_low']:.0f}-{100 * r['time_acc_ci_high']:.0f})"


def write_ablation(folder: Path, rows: list[dict], variants: list[Variant], tasks: list[dict],
                   setup: dict) -> list[Path]:
    """ablation.csv and ablation.md in ``folder``; the paths written."""
    table = ablation_rows(rows, variants, tasks)
    timed = [t["task"] for t in tasks if t["needs_time"] is True]
    written = [atomic_write(folder / "ablation.csv", lambda tmp: tmp.write_text(_csv_text(table)))]
    at = {(r["variant"], r["condition"]): r for r in table}

    seeds = max((r["seeds"] for r in table), default=1)
    lines = ["# Ablation of the liquid heads", "",
             f"One change at a time from each head's defaults; accuracy in % averaged over the tasks that need "
             f"time ({', '.join(timed)}; chance 50 each), mean over {seeds} seeds with its 95 % interval. "
             "`vs default`: the difference from its head's default under the training timing, paired by seed "
             "(a seed fixes the initialisation and the data order of both runs), with its 95 % interval; the "
             "verdict says `better` or `worse` only when that interval excludes 0.", "", "## Set-up", ""]
    lines += [f"- {k}: {v}" for k, v in setup.items()]
    lines += ["", "## Table", "",
              "| variant | change | " + " | ".join(ABLATION_CONDITIONS) + " | "
              + " | ".join(f"{t} (train timing)" for t in timed) + " | vs default | verdict |",
              "|---|---|" + "---|" * (len(ABLATION_CONDITIONS) + len(timed) + 2)]
    for variant in variants:
        base = at.get((variant.name, "train_timing"))
        if base is None:
            continue
        lines.append(f"| {variant.name} | {base['change']} | "
                     + " | ".join(cell_text(at.get((variant.name, c))) for c in ABLATION_CONDITIONS) + " | "
                     + " | ".join(f"{100 * base.get(f'{t}_mean', float('nan')):.1f}" for t in timed) + " | "
                     + ("" if base["change"] == "(the default)" or np.isnan(base["delta"])
                        else f"{100 * base['delta']:+.1f} ({100 * base['delta_ci_low']:+.1f} to "
                             f"{100 * base['delta_ci_high']:+.1f})") + f" | {base['verdict']} |")
    lines += ["", "## The goal", ""] + [f"- {line}" for line in goal(table)]
    lines += ["", "Only what was measured here: this data, this backbone, this budget.", ""]
    written.insert(0, atomic_write(folder / "ablation.md", lambda tmp: tmp.write_text("\n".join(lines))))
    return written
