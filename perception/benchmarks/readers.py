"""`perception benchmark readers`: event-file read throughput, per format, in million events per second.

Workload: every real recording in ``<data-dir>/events`` (the shared samples, 2 k to 540 k events), and
a synthetic recording of ``--events`` events written into a temporary folder in every format we can
write (Prophesee RAW twice: EVT 2.0 from our writer and EVT 3.0 from faery's encoder; text capped at
``--text-events`` because it parses at about 1 M events/s). For each file it times ``read_events``
(whole file) and ``iter_events`` (streamed in chunks of ``--chunk-size``), median of ``--repeats``
runs after one warm-up run (so the file is in the page cache: this measures decoding, not the disk);
``read_events`` is also reported per CPU second of this process, steadier on a shared machine.
Where faery decodes the format, faery's own decoder (packets concatenated, no conversion) is timed
alongside for reference.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SYNTHETIC_SIZE = (240, 180)  # fits every writable format (the ATIS binary holds y < 240)


def _default_data_dir() -> Path:
    from perception._layout import package_root

    override = os.environ.get("LP_SHARED_DATA")
    return Path(override) if override else package_root() / ".." / "shared" / "data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding events/ with the real recordings (default: $LP_SHARED_DATA "
                             "or ../shared/data beside the repository)")
    parser.add_argument("--events", type=int, default=2_000_000,
                        help="events in each synthetic file (default: %(default)s)")
    parser.add_argument("--text-events", type=int, default=500_000,
                        help="events in the synthetic text file (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per file; the median is reported (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=1 << 20,
                        help="events per chunk when streaming (default: %(default)s)")
    parser.add_argument("--no-peers", action="store_true", help="skip timing faery's own decoders")
    parser.add_argument("--seed", type=int, default=0)


def _median_seconds(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (this process) of one call, after a warm-up call.

    CPU time is reported too because the machines this runs on are often shared: other processes
    stretch wall time, much less the CPU time the call itself used.
    """
    fn()  # warm-up: page cache, lazy imports
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _faery_reader(path: Path, fmt: str) -> Callable[[], object] | None:
    """faery's decoder for this file, as a callable that decodes it all, or None when it has none."""
    import numpy as np
    from faery.extension import aedat, dat, es, evt

    def concatenate(packets: list) -> object:
        return np.concatenate(packets) if packets else None

    if fmt == "aedat4":
        return lambda: concatenate([p for track, p in aedat.Decoder(path) if track.data_type == "events"])
    if fmt == "es":
        return lambda: concatenate(list(es.Decoder(path, 0)))
    if fmt == "raw":
        return lambda: concatenate([p["events"] for p in evt.Decoder(path, (65535, 65535), None) if "events" in p])
    if fmt == "dat":
        with dat.Decoder(path, (65535, 65535), None) as decoder:
            if decoder.event_type != "cd":
                return None  # faery refuses '2d'
        return lambda: concatenate(list(dat.Decoder(path, (65535, 65535), None)))
    return None


def _measure(path: Path, kind: str, args: argparse.Namespace, label: str | None = None) -> dict:
    from data.io import iter_events, read_events

    recording = read_events(path)
    n = len(recording.events)
    read_s, read_cpu_s = _median_seconds(lambda: read_events(path), args.repeats)
    stream_s, _ = _median_seconds(
        lambda: sum(len(chunk) for chunk in iter_events(path, chunk_size=args.chunk_size)), args.repeats
    )
    row = {
        "file": label or path.name,
        "kind": kind,
        "format": recording.format,
        "events": n,
        "megabytes": path.stat().st_size / 1e6,
        "read_meps": n / read_s / 1e6,
        "read_cpu_meps": n / read_cpu_s / 1e6 if read_cpu_s > 0 else None,
        "stream_meps": n / stream_s / 1e6,
        "faery_meps": None,
    }
    peer = None if args.no_peers else _faery_reader(path, recording.format)
    if peer is not None:
        row["faery_meps"] = n / _median_seconds(peer, args.repeats)[0] / 1e6
    return row


def _synthetic(n: int, seed: int):
    import numpy as np

    from data.events import make_events

    rng = np.random.default_rng(seed)
    # About 1 M events per second of recording, with repeated timestamps, as a busy camera gives.
    t = 1_000_000 + np.sort(rng.integers(0, max(n, 1), n))
    width, height = SYNTHETIC_SIZE
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n))


def _write_synthetic(folder: Path, args: argparse.Namespace) -> list[tuple[Path, str]]:
    from data.io import available_formats, writable_formats, write_events
    from data.io._faery import faery_write

    events = _synthetic(args.events, args.seed)
    files = []
    for fmt in writable_formats():
        suffix = available_formats()[fmt].suffixes[0]
        data = events[: args.text_events] if fmt == "text" else events
        label = "synthetic EVT 2.0" + suffix if fmt == "raw" else f"synthetic{suffix}"
        files.append((write_events(folder / f"synthetic{suffix}", data, SYNTHETIC_SIZE), label))
    evt3 = folder / "synthetic_evt3.raw"  # we write EVT 2.0; EVT 3.0 comes from faery's encoder
    faery_write(evt3, events, SYNTHETIC_SIZE, "evt", version="evt3", zero_t0=True)
    files.append((evt3, "synthetic EVT 3.0.raw"))
    return files


def run(args: argparse.Namespace) -> dict:
    from data.errors import DataError
    from data.io import available_formats
    from perception.benchmarks._timing import format_table
    from perception.errors import PerceptionError

    if args.events < 1 or args.text_events < 1 or args.repeats < 1 or args.chunk_size < 1:
        raise PerceptionError("--events, --text-events, --repeats and --chunk-size must all be at least 1")
    data_dir = (args.data_dir or _default_data_dir()).resolve()
    events_dir = data_dir / "events" if (data_dir / "events").is_dir() else data_dir
    suffixes = {s for spec in available_formats().values() for s in spec.suffixes}
    rows: list[dict] = []
    skipped: list[str] = []
    if events_dir.is_dir():
        for path in sorted(events_dir.iterdir()):
            if path.suffix.lower() not in suffixes or path.name.endswith(".reference.npy"):
                continue
            try:
                rows.append(_measure(path, "real", args))
            except DataError as error:
                skipped.append(str(error))
    else:
        skipped.append(f"{events_dir}: no such folder; only synthetic files were measured")
    with tempfile.TemporaryDirectory(prefix="lp-readers-") as folder:
        for path, label in _write_synthetic(Path(folder), args):
            rows.append(_measure(path, "synthetic", args, label))

    print(format_table(rows, [
        ("file", "file", ""), ("format", "format", ""), ("events", "events", ",d"), ("megabytes", "MB", ".1f"),
        ("read_meps", "read_events M/s", ".1f"), ("read_cpu_meps", "(CPU time) M/s", ".1f"),
        ("stream_meps", "iter_events M/s", ".1f"), ("faery_meps", "faery M/s", ".1f"),
    ]))
    print(f"\nM/s: million events per second, median of {args.repeats} runs after a warm-up (files in the page "
          f"cache); chunk size {args.chunk_size}")
    for line in skipped:
        print(f"skipped: {line}")
    return {
        "workload": {
            "data_dir": str(events_dir), "synthetic_events": args.events, "text_events": args.text_events,
            "repeats": args.repeats, "chunk_size": args.chunk_size, "sensor_size": list(SYNTHETIC_SIZE),
        },
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "rows": rows,
        "skipped": skipped,
    }
