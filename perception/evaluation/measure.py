"""What the comparison measures: accuracy per task, operations and latency per step (and resident memory)."""
from __future__ import annotations

import os
import resource
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
    """Logits (N, K) at each clip's last real step, and the true labels (N,)."""
    model.eval()
    logits, labels = [], []
    for batch in loader:
        out, _ = model(batch["x"], batch["dt"], batch["mask"])
        logits.append(last_valid(out, batch["lengths"]).float().numpy())
        labels.append(batch["y"].numpy())
    return np.concatenate(logits), np.concatenate(labels)


def task_accuracy(logits: np.ndarray, labels: np.ndarray, classes: list[int]) -> float:
    """Accuracy on the clips whose label is in ``classes``, choosing among those classes only (so
    chance is the share of the task's most frequent class, whatever the other tasks' classes do)."""
    chosen = np.isin(labels, classes)
    if not chosen.any():
        return float("nan")
    picks = np.asarray(classes)[logits[chosen][:, classes].argmax(1)]
    return float((picks == labels[chosen]).mean())


def chance(labels: np.ndarray, classes: list[int]) -> float:
    """The accuracy of always answering the task's most frequent class."""
    mine = labels[np.isin(labels, classes)]
    return float(np.bincount(mine).max() / mine.size) if mine.size else float("nan")


@torch.inference_mode()
def _addmm_flops(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``addmm_`` (self += a @ b), a (m, k), b (k, n): 2 m k n, as torch counts addmm."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def ops_per_step(model: PerceptionModel, frame_shape: tuple[int, int, int], loader=None, batches: int = 2) -> float:
    """Operations of one streaming step at batch 1: multiply-accumulates of the dense layers (counted
    by ``torch.utils.flop_counter``, 2 FLOPs = 1 MAC), except that a linear layer fed by spikes (0/1
    inputs) costs one accumulate per spike and target (synaptic operations), at the spike rate
    measured on the first ``batches`` batches of ``loader``."""
    import copy

    from torch.utils import flop_counter

    if torch.ops.aten.addmm_ not in flop_counter.flop_registry:  # torch counts addmm, not its in-place form
        flop_counter.register_flop_formula(torch.ops.aten.addmm_)(_addmm_flops)
    model.eval()
    # Counted on a float64 copy: the counter sees torch ops only, and the float32 CPU steps of cfc and
    # ltc are compiled kernels (numba) it cannot see; in float64 every head runs its torch ops.
    counted = copy.deepcopy(model).double()
    x = torch.zeros(1, *frame_shape, dtype=torch.float64)
    dt = torch.full((1, 1), float(model.time_scale), dtype=torch.float64)
    with flop_counter.FlopCounterMode(display=False) as counter, torch.no_grad():
        counted.step(x, dt, None)
    macs = counter.get_total_flops() / 2
    if loader is None:
        return float(macs)
    seen: dict[torch.nn.Linear, list[float]] = {}                     # layer -> [rows, spikes]

    def count(layer, inputs, _output):
        value = inputs[0]
        if value.numel() and bool(((value == 0) | (value == 1)).all()):
            tally = seen.setdefault(layer, [0.0, 0.0])
            tally[0] += value.numel() / layer.in_features                # rows: clips x steps
            tally[1] += float(value.count_nonzero())

    hooks = [m.register_forward_hook(count) for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
    try:
        for k, batch in enumerate(loader):
            if k == batches:
                break
            model(batch["x"], batch["dt"], batch["mask"])
    finally:
        for hook in hooks:
            hook.remove()
    # a spike-fed layer costs (spikes per row) x targets instead of inputs x targets
    return float(macs + sum((spikes / rows - layer.in_features) * layer.out_features
                            for layer, (rows, spikes) in seen.items()))
