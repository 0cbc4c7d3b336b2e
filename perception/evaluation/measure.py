"""What the comparison measures besides accuracy: step latency, peak memory, accuracy per class."""
from __future__ import annotations

import os
import resource
import threading
import time

import numpy as np
import torch

from perception.model import PerceptionModel
from perception.training.module import last_valid


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc), or its peak so far elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Context manager sampling RSS every ``interval`` s; ``.peak_mb`` = peak above the level at entry."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, rss_bytes())

    def __enter__(self) -> "PeakMemory":
        self._start = self._peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_bytes())
        self.peak_mb = (self._peak - self._start) / 2**20


@torch.inference_mode()
def step_latency_us(model: PerceptionModel, frame_shape: tuple[int, int, int], steps: int = 200,
                    warmup: int = 20) -> float:
    """Median wall time (microseconds) of one streaming step (backbone + head + classifier) at batch 1."""
    model.eval()
    x = torch.randn(1, *frame_shape)
    dt = torch.full((1, 1), float(model.time_scale))
    state = None
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        _, state = model.step(x, dt, state)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e6)


@torch.inference_mode()
def predict(model: PerceptionModel, loader) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true labels (N,) at each clip's last real step."""
    model.eval()
    preds, labels = [], []
    for batch in loader:
        logits, _ = model(batch["x"], batch["dt"], batch["mask"])
        preds.append(last_valid(logits, batch["lengths"]).argmax(1).numpy())
        labels.append(batch["y"].numpy())
    return np.concatenate(preds), np.concatenate(labels)


def accuracy_by_group(preds: np.ndarray, labels: np.ndarray, groups: dict[int, str]) -> dict[str, float]:
    """Accuracy over the clips of each group of labels (e.g. label -> pair kind)."""
    out = {}
    for name in dict.fromkeys(groups.values()):
        chosen = np.isin(labels, [k for k, g in groups.items() if g == name])
        out[name] = float((preds[chosen] == labels[chosen]).mean()) if chosen.any() else float("nan")
    return out
