"""Timing helpers shared by the benchmarks: medians from torch.utils.benchmark, in one process."""
from __future__ import annotations

from collections.abc import Callable


def median_seconds(fn: Callable[[], object], min_run_time: float, warmup: int = 2) -> float:
    """Median wall time of one call of ``fn`` in seconds, with torch's current thread count.

    torch.utils.benchmark runs ``fn`` in blocks until ``min_run_time`` has passed and reports the
    median block time per call, which is robust to the odd slow run on a shared machine.
    """
    import torch
    from torch.utils import benchmark

    for _ in range(warmup):
        fn()
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A fixed-width text table. ``columns``: (key, title, format spec); missing values print as '-'."""
    cells = [[title for _, title, _ in columns]]
    for row in rows:
        cells.append(
            [format(row[key], spec) if row.get(key) is not None else "-" for key, _, spec in columns]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
