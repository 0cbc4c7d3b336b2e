"""The comparison's report folder: results.csv (one row per head and seed), summary.csv (mean and
spread per head), report.md (the table and what it shows), and PNG plots.

The prose is generated from the numbers: it names the best head per measure and says plainly where
the liquid heads (cfc, ltc) do not come first.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from perception._files import atomic_write

LIQUID = ("cfc", "ltc")


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarise(rows: list[dict], keys: list[str]) -> list[dict]:
    """Per head: mean and sample standard deviation over seeds of every key."""
    out = []
    for head in dict.fromkeys(r["head"] for r in rows):
        mine = [r for r in rows if r["head"] == head]
        entry = {"head": head, "seeds": len(mine)}
        for key in keys:
            entry[key], entry[f"{key}_sd"] = _mean_sd([r.get(key) for r in mine])
        out.append(entry)
    return out


def _csv_text(rows: list[dict]) -> str:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buffer.getvalue()


def _fmt(mean: float, sd: float, pct: bool = True, spread: bool = True) -> str:
    """``mean ± sd`` (in % when ``pct``); the mean alone without ``spread`` (a single seed)."""
    if math.isnan(mean):
        return "n/a"
    if pct:
        return f"{100 * mean:.1f} ± {100 * sd:.1f}" if spread else f"{100 * mean:.1f}"
    return f"{mean:.3g} ± {sd:.2g}" if spread else f"{mean:.3g}"


def _best(summary: list[dict], key: str, higher: bool = True) -> dict | None:
    valid = [s for s in summary if not math.isnan(s[key])]
    if not valid:
        return None
    return max(valid, key=lambda s: s[key]) if higher else min(valid, key=lambda s: s[key])


def findings(summary: list[dict], measures: list[tuple[str, str]]) -> list[str]:
    """Sentences stating what the numbers show: the best head per measure, and the liquid heads' place."""
    lines = []
    liquid = [s for s in summary if s["head"] in LIQUID]
    for key, label in measures:
        best = _best(summary, key)
        if best is None:
            continue
        tied = [s["head"] for s in summary if abs(s[key] - best[key]) < 5e-4]
        if len(tied) > 1:
            line = f"{label}: {', '.join(tied)} tie at {100 * best[key]:.1f}%"
        else:
            line = f"{label}: best {best['head']} ({100 * best[key]:.1f}%)"
        if liquid and not set(tied) & set(LIQUID):
            top = max(liquid, key=lambda s: s[key])
            line += f"; the best liquid head, {top['head']}, reached {100 * top[key]:.1f}% (not first here)"
        others = sorted((s for s in summary if s["head"] not in tied), key=lambda s: s[key], reverse=True)
        if others:  # within the seed spread: the gap is smaller than the two heads' standard deviations together
            runner = others[0]
            spread = np.nansum([best[f"{key}_sd"], runner[f"{key}_sd"]])
            if spread and best[key] - runner[key] < spread:
                line += f"; {runner['head']} ({100 * runner[key]:.1f}%) is within the seed spread"
        lines.append(line + ".")
    aware = [s for s in summary if s.get("time_aware")]
    blind = [s for s in summary if s.get("time_aware") is False]
    if aware and blind and "speed" in summary[0]:
        lines.append(
            "Speed pair (needs the real dt): heads that use dt averaged "
            f"{100 * np.nanmean([s['speed'] for s in aware]):.1f}%, heads that ignore it "
            f"{100 * np.nanmean([s['speed'] for s in blind]):.1f}% (chance within the pair: 50%)."
        )
    fastest = _best(summary, "latency_us", higher=False)
    if fastest is not None:
        lines.append(f"Fastest streaming step: {fastest['head']} ({fastest['latency_us']:.0f} µs at batch 1).")
    return lines


def _curve(s: dict, points: list, base: str | None) -> tuple[list, list, list]:
    """x, y (%), error (%) of one head over ``points`` (conditions), starting at x = 0 from ``base``."""
    xs = ([0.0] if base else []) + [c.level for c in points]
    names = ([base] if base else []) + [c.name for c in points]
    return xs, [100 * s[n] for n in names], [100 * s[f"{n}_sd"] for n in names]


def plot(summary: list[dict], conditions, modality: str, noise_unit: str, folder: Path, base: str) -> list[Path]:
    """PNG plots: accuracy vs timing irregularity and dropped steps, vs noise, vs latency, vs parameters.

    ``base`` names the training-timing condition: the drop and noise curves start from it at x = 0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        path = folder / name
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        written.append(path)

    families = {f: [c for c in conditions if c.family == f] for f in ("timing", "drop", "noise")}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, family, xlabel in ((axes[0], "timing", "per-frame timing jitter (periods)"),
                               (axes[1], "drop", "probability of dropping an observation")):
        for s in summary:
            xs, ys, es = _curve(s, families[family], base if family == "drop" else None)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=s["head"])
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Accuracy against timing irregularity ({modality})")
    save(fig, "accuracy_vs_timing.png")

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for s in summary:
        xs, ys, es = _curve(s, families["noise"], base)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=s["head"])
    ax.set_xlabel(f"added input noise ({noise_unit})")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Accuracy against input noise ({modality})")
    save(fig, "accuracy_vs_noise.png")

    for key, xlabel, name, log in (("latency_us", "streaming step latency at batch 1 (µs)", "accuracy_vs_latency.png", False),
                                   ("params", "parameters", "accuracy_vs_params.png", True)):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for s in summary:
            ax.errorbar(s[key], 100 * s["acc"], yerr=100 * s["acc_sd"], marker="o", capsize=3)
            ax.annotate(s["head"], (s[key], 100 * s["acc"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%), training timing")
        ax.grid(alpha=0.3)
        save(fig, name)
    return written


def write_report(folder: Path, rows: list[dict], summary: list[dict], conditions, setup: dict,
                 modality: str, noise_unit: str, make_plots: bool = True, training: str = "timing=0.3") -> list[Path]:
    """Write results.csv, summary.csv, report.md and the plots into ``folder``; the paths written.

    ``training`` names the condition with the models' training timing (``timing=<jitter>``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = [atomic_write(folder / "results.csv", lambda tmp: tmp.write_text(_csv_text(rows))),
               atomic_write(folder / "summary.csv", lambda tmp: tmp.write_text(_csv_text(summary)))]
    plots = plot(summary, conditions, modality, noise_unit, folder, training) if make_plots else []
    written += plots

    has_pairs = "appearance" in summary[0]
    header = ["head", "acc (training timing)", "regular", "most irregular", "dropped", "noisiest"]
    header += ["appearance", "order", "speed"] if has_pairs else []
    header += ["params", "train s", "step µs", "peak MB"]
    timing = [c for c in conditions if c.family == "timing"]
    drops = [c for c in conditions if c.family == "drop"]
    noises = [c for c in conditions if c.family == "noise"]
    picks = [timing[0].name, timing[-1].name, drops[len(drops) // 2].name, noises[-1].name]
    lines = ["# Temporal heads compared", "",
             "Same backbone, data and training budget for every head; "
             + (f"mean ± standard deviation over {setup['seeds']} seeds. " if setup["seeds"] > 1 else "one seed (no spread). ")
             + f"Accuracy in %, on {setup['test_size']} test clips per condition.", "",
             "## Set-up", ""]
    lines += [f"- {k}: {v}" for k, v in setup.items()] + [f"- training timing: {training}"]
    lines += ["", "## Results", "",
              f"Columns: regular = {timing[0].name}, most irregular = {timing[-1].name}, dropped = "
              f"{drops[len(drops) // 2].name}, noisiest = {noises[-1].name} ({noise_unit}). Every condition "
              "is in summary.csv.", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for s in summary:
        many = s["seeds"] > 1
        cells = [s["head"]] + [_fmt(s[k], s[f"{k}_sd"], spread=many) for k in ["acc", *picks]]
        if has_pairs:
            cells += [_fmt(s[k], s[f"{k}_sd"], spread=many) for k in ("appearance", "order", "speed")]
        cells += [f"{s['params']:,.0f}"] + [_fmt(s[k], s[f"{k}_sd"], pct=False, spread=many)
                                            for k in ("train_s", "latency_us", "peak_mb")]
        lines.append("| " + " | ".join(cells) + " |")
    measures = [("acc", "Accuracy under the training timing"), (picks[0], "Regular timing"),
                (picks[1], "Most irregular timing"), (picks[2], "Dropped observations"), (picks[3], "Most noise")]
    if has_pairs:
        measures += [("appearance", "Appearance pair"), ("order", "Order pairs"), ("speed", "Speed pair")]
    lines += ["", "## What it shows", ""] + [f"- {f}" for f in findings(summary, measures)]
    lines += ["", "Only what was measured here: one dataset, one backbone, one training budget. "
              "Peak MB is the resident memory added during training.", ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    written.insert(0, atomic_write(folder / "report.md", lambda tmp: tmp.write_text("\n".join(lines))))
    return written
