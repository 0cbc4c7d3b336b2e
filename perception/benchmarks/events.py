"""`perception benchmark events`: our event representations against tonic's, in one run.

Workload: N random events (uniform pixels and polarities, sorted uniform integer times over one
second) for N in {1 M, 10 M} on a 346 x 260 (DAVIS346) and a 640 x 480 (Prophesee Gen3) sensor
(``--quick``: 200 k and 1 M on 346 x 260 only). For each case it times, one thread, median of
``--repeats`` calls (ours and tonic's alternate, so both see the same load on a shared machine):

- voxel grid: ``data.to_voxel_grid(bins=B, polarity="signed")`` vs ``tonic.transforms.ToVoxelGrid``
  with the same B, called as a user would (it copies its input), and the largest difference of
  ours from a float64 implementation of the definition, relative to the grid's largest value;
- histogram: ``data.to_event_histogram`` (counts per polarity) vs ``tonic.transforms.ToFrame``
  with ``n_time_bins=1``;
- time surface: ``data.to_time_surface`` vs ``tonic.transforms.ToTimesurface`` with dt = the
  whole window (one surface).

``--case N:WxH`` (repeatable) and ``--only REPRESENTATION`` narrow the run to what you are working
on; the PASS/MISS verdict then covers only the cases run.

Figures are millions of events per second of wall time; "ratio" is tonic's time over ours, and
"CPU-time ratio" the same in this thread's CPU time (less disturbed by other processes on a shared
machine; the target is on wall time). The first call of each numba kernel (compilation, or
loading it from numba's on-disk cache) is timed separately and excluded from the medians.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

TARGETS = {"voxel_grid_min_speedup_vs_tonic": 10.0}
FULL_CASES = [(1_000_000, (346, 260)), (1_000_000, (640, 480)), (10_000_000, (346, 260)), (10_000_000, (640, 480))]
QUICK_CASES = [(200_000, (346, 260)), (1_000_000, (346, 260))]
DURATION_US = 1_000_000
REPRESENTATIONS = ("voxel_grid", "histogram", "time_surface")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bins", type=int, default=5, help="voxel grid time bins B (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of ours per case (default: %(default)s)")
    parser.add_argument(
        "--tonic-repeats", type=int, default=3, help="timed calls of tonic per case (default: %(default)s)"
    )
    parser.add_argument("--tau-us", type=float, default=50_000.0, help="time surface decay (default: %(default)s)")
    parser.add_argument("--no-tonic", action="store_true", help="time ours only")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (200 k and 1 M events, 346 x 260)")
    parser.add_argument(
        "--case", action="append", metavar="N:WxH",
        help="only this workload, e.g. 1000000:640x480 (repeatable; default: the full set)",
    )
    parser.add_argument(
        "--only", action="append", choices=REPRESENTATIONS, help="only this representation (repeatable; default: all)"
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from perception.benchmarks._timing import format_table
    from perception.errors import PerceptionError

    start = time.perf_counter()
    from data import representations as reps  # imports numba with it

    import_s = time.perf_counter() - start

    if args.bins < 1 or args.repeats < 1 or args.tonic_repeats < 1 or not args.tau_us > 0:
        raise PerceptionError("--bins, --repeats and --tonic-repeats must be at least 1 and --tau-us positive")
    cases = [_parse_case(text) for text in args.case] if args.case else (QUICK_CASES if args.quick else FULL_CASES)
    only = set(args.only or REPRESENTATIONS)
    tonic = None if args.no_tonic else _import_tonic()
    rng = np.random.default_rng(args.seed)
    compile_s = {"import_representations": import_s, **_first_calls(reps, args.bins, args.tau_us, rng)}

    rows: list[dict] = []
    for n, sensor in cases:
        events = _synthetic_events(n, sensor, rng)
        label = f"{sensor[0]}x{sensor[1]}"
        for rep, ours, theirs in _cases(reps, tonic, sensor, args.bins, args.tau_us):
            if rep not in only:
                continue
            row = {"representation": rep, "events": n, "sensor": label}
            seconds = _time_pair(ours, theirs, events, args.repeats, args.tonic_repeats)
            row["ours_mev_s"] = n / seconds["ours"] / 1e6
            if "tonic" in seconds:
                row["tonic_mev_s"] = n / seconds["tonic"] / 1e6
                row["ratio"] = seconds["tonic"] / seconds["ours"]
                row["cpu_ratio"] = seconds["tonic_cpu"] / seconds["ours_cpu"]
            if rep == "voxel_grid":
                row["max_rel_error"] = _relative_error(ours(events), _reference_voxel_grid(events, sensor, args.bins))
            rows.append(row)
        del events

    print(
        format_table(
            rows,
            [("representation", "representation", "s"), ("events", "events", ",d"), ("sensor", "sensor", "s"),
             ("ours_mev_s", "ours M ev/s", ".1f"), ("tonic_mev_s", "tonic M ev/s", ".2f"), ("ratio", "ratio", ".1f"),
             ("cpu_ratio", "CPU-time ratio", ".1f"), ("max_rel_error", "max error", ".1e")],
        )
    )
    print("\nimport and first calls (numba compile or cache load), excluded above: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in compile_s.items()))
    ratios = {}
    for rep in REPRESENTATIONS:
        values = [r["ratio"] for r in rows if r["representation"] == rep and "ratio" in r]
        if values:
            ratios[f"{rep}_min_speedup_vs_tonic"] = min(values)
    verdicts = {}
    for key, target in TARGETS.items():
        if key in ratios:
            verdicts[key] = ratios[key] >= target
            print(f"{key}: {ratios[key]:.1f}x (target >= {target}x) {'PASS' if verdicts[key] else 'MISS'}")
    errors = [r["max_rel_error"] for r in rows if "max_rel_error" in r]
    if errors:
        verdicts["voxel_grid_max_rel_error"] = max(errors) <= 1e-5
        print(f"voxel grid max error vs float64 reference: {max(errors):.1e} (target <= 1e-5) "
              f"{'PASS' if verdicts['voxel_grid_max_rel_error'] else 'MISS'}")
    return {
        "workload": {"bins": args.bins, "tau_us": args.tau_us, "repeats": args.repeats,
                     "tonic_repeats": args.tonic_repeats, "duration_us": DURATION_US, "seed": args.seed,
                     "quick": bool(args.quick), "cases": [f"{n}:{w}x{h}" for n, (w, h) in cases],
                     "representations": [rep for rep in REPRESENTATIONS if rep in only]},
        "first_call_s": compile_s,
        "rows": rows,
        "ratios": ratios,
        "targets_met": verdicts,
        "environment": {
            "numpy": np.__version__,
            "numba": _version("numba") if reps.numba_available() else None,
            "tonic": getattr(tonic, "__version__", None),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "load_average_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }


def _parse_case(text: str) -> tuple[int, tuple[int, int]]:
    """'1000000:640x480' -> (1000000, (640, 480))."""
    from perception.errors import PerceptionError

    try:
        count, size = text.split(":")
        width, height = size.lower().split("x")
        n, sensor = int(count.replace("_", "")), (int(width), int(height))
    except ValueError:
        n, sensor = 0, (0, 0)
    if n < 2 or min(sensor) < 1:
        raise PerceptionError(
            f"--case {text!r}: expected EVENTS:WIDTHxHEIGHT with at least 2 events, e.g. 1000000:640x480"
        )
    return n, sensor


def _import_tonic():
    from perception.errors import PerceptionError

    try:
        import tonic
        import tonic.transforms  # noqa: F401
    except ImportError as exc:
        raise PerceptionError(f"tonic is not importable ({exc}); install it or pass --no-tonic") from exc
    return tonic


def _version(module: str) -> str:
    return __import__(module).__version__


def _synthetic_events(n: int, sensor: tuple[int, int], rng):
    """N events, uniform over the sensor and polarities, sorted uniform times in one second."""
    import numpy as np

    from data.events import EVENT_DTYPE

    events = np.empty(n, EVENT_DTYPE)
    events["x"] = rng.integers(0, sensor[0], n)
    events["y"] = rng.integers(0, sensor[1], n)
    events["t"] = np.sort(rng.integers(0, DURATION_US, n))
    events["p"] = rng.integers(0, 2, n)
    return events


def _cases(reps, tonic, sensor, bins: int, tau_us: float):
    """(name, ours(events), tonic's(events) or None) for the three representations."""
    tonic_sensor = (sensor[0], sensor[1], 2)
    transforms = None if tonic is None else tonic.transforms
    return [
        ("voxel_grid", lambda e: reps.to_voxel_grid(e, sensor, bins),
         None if tonic is None else transforms.ToVoxelGrid(sensor_size=tonic_sensor, n_time_bins=bins)),
        ("histogram", lambda e: reps.to_event_histogram(e, sensor),
         None if tonic is None else transforms.ToFrame(sensor_size=tonic_sensor, n_time_bins=1)),
        ("time_surface", lambda e: reps.to_time_surface(e, sensor, tau=tau_us),
         None if tonic is None else transforms.ToTimesurface(sensor_size=tonic_sensor, dt=DURATION_US, tau=tau_us)),
    ]


def _first_calls(reps, bins: int, tau_us: float, rng) -> dict[str, float]:
    """Seconds of the first call of each kernel on a small input (compilation, or loading it from
    numba's cache in ``data/representations/__pycache__``; the first of all also starts numba's
    runtime). The voxel grid is called on a sparse and on a dense window, which use different
    kernels."""
    events = _synthetic_events(1_000, (346, 260), rng)
    dense = _synthetic_events(1_000, (16, 12), rng)
    seconds = {}
    calls = {
        "voxel_grid_sparse": lambda: reps.to_voxel_grid(events, (346, 260), bins),
        "voxel_grid_dense": lambda: reps.to_voxel_grid(dense, (16, 12), bins),
        "histogram": lambda: reps.to_event_histogram(events, (346, 260)),
        "time_surface": lambda: reps.to_time_surface(events, (346, 260), tau=tau_us),
    }
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        seconds[name] = time.perf_counter() - start
    return seconds


def _time_pair(ours, theirs, events, repeats: int, tonic_repeats: int) -> dict[str, float]:
    """Median wall and CPU (this thread's) seconds per call of ours and of theirs, the calls
    alternating, after one warm-up call of ours. CPU time leaves out the time other processes
    held the core, which on a shared machine is most of the wall-time noise."""
    import statistics

    ours(events)
    times: dict[str, list[float]] = {"ours": [], "ours_cpu": [], "tonic": [], "tonic_cpu": []}
    for i in range(max(repeats, tonic_repeats if theirs is not None else 0)):
        for name, call, count in (("ours", ours, repeats), ("tonic", theirs, tonic_repeats)):
            if call is None or i >= count:
                continue
            wall, cpu = time.perf_counter(), time.thread_time()
            call(events)
            times[f"{name}_cpu"].append(time.thread_time() - cpu)
            times[name].append(time.perf_counter() - wall)
    return {name: statistics.median(values) for name, values in times.items() if values}


def _reference_voxel_grid(events, sensor: tuple[int, int], bins: int):
    """The definition in float64 with numpy (signed polarity, range = first to last event)."""
    import numpy as np

    width, height = sensor
    t = events["t"].astype(np.float64)
    span = t[-1] - t[0]
    tstar = (bins - 1) * (t - t[0]) / span if span > 0 else np.zeros_like(t)
    lo = np.floor(tstar).astype(np.int64)
    frac = tstar - lo
    weight = np.where(events["p"] > 0, 1.0, -1.0)
    pixel = events["y"].astype(np.int64) * width + events["x"]
    grid = np.zeros(bins * height * width)
    np.add.at(grid, lo * height * width + pixel, weight * (1.0 - frac))
    upper = lo + 1 < bins
    np.add.at(grid, (lo[upper] + 1) * height * width + pixel[upper], (weight * frac)[upper])
    return grid.reshape(bins, height, width)


def _relative_error(ours, reference) -> float:
    import numpy as np

    scale = max(float(np.abs(reference).max()), 1.0)
    return float(np.abs(ours.astype(np.float64) - reference).max() / scale)
