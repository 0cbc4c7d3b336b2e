"""The comparison's report folder.

- ``results.csv``: one row per head x size x seed x task x condition (and the linear floor's rows);
- ``summary.csv``: one row per task x condition x head at the main size, with exactly the columns
  ``SUMMARY_COLUMNS`` (accuracies as fractions; the interval is the 95 % Student-t interval of the
  mean over seeds, empty with one seed);
- ``sizes.csv``: accuracy against parameters and operations for every head size;
- ``report.md``: the set-up, the learning rate each head chose, the tasks and their controls, the
  tables, and the findings, every one computed from the numbers; ``*.png``: plots with interval bars.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from perception._files import atomic_write
from perception.evaluation.conditions import describe

LIQUID = ("cfc", "ltc")
SUMMARY_COLUMNS = ("task", "needs_time", "chance", "condition", "head", "seeds", "acc_mean", "acc_ci_low",
                   "acc_ci_high", "params", "ops_per_step", "latency_us")
CHANCE_MARGIN = 0.10  # a task that needs time has the CNN alone within this of chance


def interval(values: Sequence[float], bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % Student-t interval of the mean, kept within ``bounds`` (accuracies:
    [0, 1]; differences of accuracies: [-1, 1]); low = high = nan for one value."""
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(arr.mean())
    if arr.size < 2:
        return mean, float("nan"), float("nan")
    from scipy.stats import t

    half = float(t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
    return mean, max(bounds[0], mean - half), min(bounds[1], mean + half)


def summarise(rows: list[dict], main_hidden: dict[str, object]) -> list[dict]:
    """One entry per task x condition x head (the head's main size): mean, interval, cost columns."""
    out = []
    keys = dict.fromkeys((r["task"], r["condition"], r["head"]) for r in rows)
    for task, condition, head in keys:
        mine = [r for r in rows if r["task"] == task and r["condition"] == condition and r["head"] == head
                and r["hidden"] == main_hidden.get(head, r["hidden"])]
        if not mine:
            continue
        mean, low, high = interval([r["acc"] for r in mine])
        out.append({"task": task, "needs_time": mine[0]["needs_time"], "chance": mine[0]["chance"],
                    "condition": condition, "head": head, "seeds": len(mine), "acc_mean": mean, "acc_ci_low": low,
                    "acc_ci_high": high, "params": mine[0]["params"],
                    "ops_per_step": float(np.mean([r["ops_per_step"] for r in mine])),
                    "latency_us": float(np.median([r["latency_us"] for r in mine]))})
    return out


def sizes(rows: list[dict]) -> list[dict]:
    """Per head and size: parameters, operations per step and overall accuracy under the training timing."""
    out = []
    chosen = [r for r in rows if r["task"] == "all" and r["condition"] == "train_timing"]
    for head, hidden in dict.fromkeys((r["head"], r["hidden"]) for r in chosen):
        mine = [r for r in chosen if r["head"] == head and r["hidden"] == hidden]
        mean, low, high = interval([r["acc"] for r in mine])
        out.append({"head": head, "hidden": hidden, "seeds": len(mine), "params": mine[0]["params"],
                    "ops_per_step": float(np.mean([r["ops_per_step"] for r in mine])), "acc_mean": mean,
                    "acc_ci_low": low, "acc_ci_high": high})
    return out


def _csv_text(rows: list[dict], fields: Sequence[str] | None = None) -> str:
    fields = list(fields or dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}" if isinstance(v, float) else v)
                         for k, v in r.items()})
    return buffer.getvalue()


def _pct(entry: dict | None) -> str:
    """``mean [low, high]`` in %; the mean alone with one seed; n/a when missing."""
    if entry is None or math.isnan(entry["acc_mean"]):
        return "n/a"
    if math.isnan(entry["acc_ci_low"]):
        return f"{100 * entry['acc_mean']:.1f}"
    return f"{100 * entry['acc_mean']:.1f} [{100 * entry['acc_ci_low']:.1f}, {100 * entry['acc_ci_high']:.1f}]"


def _lookup(summary: list[dict]) -> dict:
    return {(s["task"], s["condition"], s["head"]): s for s in summary}


def _separated(a: dict, b: dict) -> bool:
    """True when a's interval lies wholly above b's (both need 2+ seeds)."""
    return not math.isnan(a["acc_ci_low"]) and not math.isnan(b["acc_ci_high"]) and a["acc_ci_low"] > b["acc_ci_high"]


def findings(summary: list[dict], tasks: list[dict], conditions: list[str]) -> list[str]:
    """Sentences computed from the summary: task controls, the best head per task and whether its lead
    is larger than the intervals, the liquid heads' place, rate generalisation, the dt control, the
    linear floor."""
    at = _lookup(summary)
    heads = [h for h in dict.fromkeys(s["head"] for s in summary) if h != "linear"]
    lines = []
    for task in tasks:
        name = task["task"]
        none = at.get((name, "train_timing", "none"))
        if task["needs_time"] is True and none is not None:
            gap = none["acc_mean"] - none["chance"]
            verdict = "holds" if abs(gap) <= CHANCE_MARGIN else "FAILS"
            lines.append(f"Task {name} (needs time): the CNN alone reached {100 * none['acc_mean']:.1f}% against "
                         f"chance {100 * none['chance']:.1f}% ({100 * gap:+.1f} points): the control {verdict} "
                         f"(within {100 * CHANCE_MARGIN:.0f} points).")
        for condition in ("train_timing", "rate_x0.25", "rate_x4"):
            if condition not in conditions:
                continue
            entries = sorted((at[(name, condition, h)] for h in heads if (name, condition, h) in at),
                             key=lambda s: s["acc_mean"], reverse=True)
            if len(entries) < 2:
                continue
            best, runner = entries[0], entries[1]
            line = (f"{name}, {condition}: best {best['head']} {100 * best['acc_mean']:.1f}%, then {runner['head']} "
                    f"{100 * runner['acc_mean']:.1f}%; ")
            line += ("the lead is larger than the intervals" if _separated(best, runner)
                     else "the lead is within the intervals")
            liquid = [e for e in entries if e["head"] in LIQUID]
            if liquid and best["head"] not in LIQUID:
                top = liquid[0]
                line += (f"; the best liquid head, {top['head']}, reached {100 * top['acc_mean']:.1f}% "
                         f"({100 * (top['acc_mean'] - best['acc_mean']):+.1f} points"
                         + (", behind beyond the intervals)" if _separated(best, top) else ", within the intervals)"))
            floor = at.get((name, condition, "linear"))
            lines.append(line + ".")
        floor = at.get((name, "train_timing", "linear"))
        if floor is not None:
            below = [h for h in heads if (name, "train_timing", h) in at
                     and at[(name, "train_timing", h)]["acc_mean"] <= floor["acc_mean"]]
            lines.append(f"{name}: the linear floor (logistic regression on the mean input) reached "
                         f"{100 * floor['acc_mean']:.1f}%; "
                         + (f"not beaten by {', '.join(below)}." if below else "every head beats it."))
        for control, label in (("dt_shuffled", "dt shuffled within each clip"),
                               ("dt_swapped", "dt taken from another clip")):
            if control not in conditions or task["needs_time"] is not True:
                continue
            drops = []
            for h in heads:
                base, changed = at.get((name, "train_timing", h)), at.get((name, control, h))
                if base is None or changed is None:
                    continue
                drops.append(f"{h} {100 * (base['acc_mean'] - changed['acc_mean']):+.1f}"
                             + ("*" if _separated(base, changed) else ""))
            if drops:
                lines.append(f"{name}, {label} (accuracy lost, points; * beyond the intervals): {', '.join(drops)}.")
    return lines


# ------------------------------------------------------------------------------------------------
# Plots.

def _bars(ax, summary: list[dict], heads: list[str], groups: list[tuple[str, str]], title: str) -> None:
    """Grouped bars: one group per (task, condition), one bar per head, with interval whiskers."""
    at = _lookup(summary)
    width = 0.8 / max(1, len(heads))
    for k, head in enumerate(heads):
        means, errs = [], [[], []]
        for task, condition in groups:
            s = at.get((task, condition, head))
            mean = 100 * s["acc_mean"] if s else np.nan
            low = 100 * s["acc_ci_low"] if s and not math.isnan(s["acc_ci_low"]) else mean
            high = 100 * s["acc_ci_high"] if s and not math.isnan(s["acc_ci_high"]) else mean
            means.append(mean)
            errs[0].append(mean - low)
            errs[1].append(high - mean)
        xs = np.arange(len(groups)) + (k - (len(heads) - 1) / 2) * width
        ax.bar(xs, means, width, yerr=errs, capsize=2, label=head)
    ax.set_xticks(np.arange(len(groups)))
    ax.set_xticklabels([f"{t}\n{c}" if c != "train_timing" else t for t, c in groups], fontsize=7, rotation=30)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title)


def plot(summary: list[dict], size_rows: list[dict], tasks: list[dict], conditions: list[str],
         folder: Path) -> list[Path]:
    """PNG plots: accuracy per task, per condition (tasks that need time), against parameters and
    against operations per step; interval bars where there are 2+ seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        path = folder / name
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        written.append(path)

    heads = list(dict.fromkeys(s["head"] for s in summary))
    names = [t["task"] for t in tasks]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    _bars(ax, summary, heads, [(n, "train_timing") for n in names], "Accuracy per task (training timing; chance dashed)")
    for k, task in enumerate(tasks):
        s = _lookup(summary).get((task["task"], "train_timing", "none")) or next(
            (e for e in summary if e["task"] == task["task"]), None)
        if s is not None:
            ax.hlines(100 * s["chance"], k - 0.45, k + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.legend(fontsize=7, ncol=4)
    save(fig, "accuracy_per_task.png")

    timed = [t["task"] for t in tasks if t["needs_time"] is True] or names
    fig, axes = plt.subplots(len(timed), 1, figsize=(max(7, 1.2 * len(conditions) * 1.3), 3.2 * len(timed)),
                             squeeze=False)
    trained = [h for h in heads if h != "linear"]
    for ax, task in zip(axes[:, 0], timed):
        _bars(ax, summary, trained, [(task, c) for c in conditions], f"{task}: accuracy per condition")
        ax.set_xticklabels(conditions, fontsize=7, rotation=20)
    axes[0, 0].legend(fontsize=7, ncol=4)
    fig.subplots_adjust(hspace=0.5)  # room for each panel's condition labels under it
    save(fig, "accuracy_per_condition.png")

    for key, label, name in (("params", "parameters", "accuracy_vs_params.png"),
                             ("ops_per_step", "operations per step (MAC; synaptic ops for spikes)",
                              "accuracy_vs_ops.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for head in dict.fromkeys(r["head"] for r in size_rows):
            mine = sorted((r for r in size_rows if r["head"] == head), key=lambda r: r[key])
            xs = [r[key] for r in mine]
            ys = [100 * r["acc_mean"] for r in mine]
            lows = [0 if math.isnan(r["acc_ci_low"]) else 100 * (r["acc_mean"] - r["acc_ci_low"]) for r in mine]
            highs = [0 if math.isnan(r["acc_ci_high"]) else 100 * (r["acc_ci_high"] - r["acc_mean"]) for r in mine]
            ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3, label=head)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy, all classes (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, name)
    return written


# ------------------------------------------------------------------------------------------------

def write_report(folder: Path, rows: list[dict], conditions: list[str], tasks: list[dict], choices: dict,
                 setup: dict, make_plots: bool = True) -> list[Path]:
    """Write results.csv, summary.csv, sizes.csv, report.md and the plots into ``folder``; the paths
    written (report.md first)."""
    folder.mkdir(parents=True, exist_ok=True)
    main_hidden = {}
    for r in rows:
        main_hidden.setdefault(r["head"], r["hidden"])
    summary = summarise(rows, main_hidden)
    size_rows = sizes([r for r in rows if r["head"] != "linear"])
    written = [atomic_write(folder / "results.csv", lambda tmp: tmp.write_text(_csv_text(rows))),
               atomic_write(folder / "summary.csv", lambda tmp: tmp.write_text(_csv_text(summary, SUMMARY_COLUMNS))),
               atomic_write(folder / "sizes.csv", lambda tmp: tmp.write_text(_csv_text(size_rows)))]
    plots = plot(summary, size_rows, tasks, conditions, folder) if make_plots else []
    written += plots
    at = _lookup(summary)
    heads = list(dict.fromkeys(s["head"] for s in summary))
    seeds = max((s["seeds"] for s in summary if s["head"] != "linear"), default=1)

    lines = ["# Temporal heads compared", "",
             "Same data, backbone and training budget for every head; each head picked its learning rate on "
             "the validation split. Accuracy in %, "
             + (f"mean over {seeds} seeds with its 95 % interval in brackets." if seeds > 1 else "one seed (no interval).")
             + " Per task, a head chooses among the task's own classes, so chance is the task's most frequent class.",
             "", "## Set-up", ""]
    lines += [f"- {k}: {v}" for k, v in setup.items()]
    if choices:
        lines += ["", "## Learning rate chosen per head (validation accuracy per rate)", "",
                  "| head | chosen | " + " | ".join(f"lr {lr:g}" for lr in next(iter(choices.values()))["grid"]) + " |",
                  "|---|---|" + "---|" * len(next(iter(choices.values()))["grid"])]
        for head, choice in choices.items():
            lines.append(f"| {head} | {choice.get('lr', float('nan')):g} | "
                         + " | ".join(f"{100 * v:.1f}" for v in choice["grid"].values()) + " |")
    lines += ["", "## Tasks and their controls", "",
              "A task that needs time must leave the CNN alone (`none`: the mean of its per-step features) within "
              f"{100 * CHANCE_MARGIN:.0f} points of chance: then no single frame or window answers it.", "",
              "| task | needs time | chance | CNN alone | linear floor | control |", "|---|---|---|---|---|---|"]
    for task in tasks:
        none, floor = at.get((task["task"], "train_timing", "none")), at.get((task["task"], "train_timing", "linear"))
        chance = (none or floor or {}).get("chance", float("nan"))
        control = "n/a"
        if task["needs_time"] is True and none is not None:
            control = "holds" if abs(none["acc_mean"] - chance) <= CHANCE_MARGIN else "FAILS"
        lines.append(f"| {task['task']} | {task['needs_time']} | {100 * chance:.1f} | {_pct(none)} | {_pct(floor)} | {control} |")
    lines += ["", "## Conditions", ""] + [f"- `{c}`: {describe(c, setup.get('modality', 'events'))}" for c in conditions]
    for task in [{"task": "all"}, *tasks]:
        name = task["task"]
        lines += ["", f"## Task: {name}" + (" (every class)" if name == "all" else ""), "",
                  "| head | " + " | ".join(conditions) + " |", "|---|" + "---|" * len(conditions)]
        for head in heads:
            if (name, "train_timing", head) in at:
                lines.append(f"| {head} | " + " | ".join(_pct(at.get((name, c, head))) for c in conditions) + " |")
    lines += ["", "## Size and cost", "",
              "Operations per step: multiply-accumulates of the backbone, head and classifier at batch 1; a layer "
              "fed by spikes counts one accumulate per spike and target (synaptic operations) at the spike rate "
              "measured on test clips. Latency: median wall time of one streaming step at batch 1.", "",
              "| head | hidden | params | ops per step | step µs | accuracy, all classes |", "|---|---|---|---|---|---|"]
    for r in size_rows:
        latency = next((s["latency_us"] for s in summary if s["head"] == r["head"]), float("nan"))
        lines.append(f"| {r['head']} | {r['hidden']} | {r['params']:,} | {r['ops_per_step']:,.0f} | "
                     f"{latency:.0f} | {_pct(r)} |")
    lines += ["", "## What it shows", ""] + [f"- {f}" for f in findings(summary, tasks, conditions)]
    lines += ["", "Only what was measured here: this data, this backbone, this training budget.", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    written.insert(0, atomic_write(folder / "report.md", lambda tmp: tmp.write_text("\n".join(lines))))
    return written
